//! Authentication against real registries: docker-registry with htpasswd (basic) auth, and
//! with token auth backed by a token server this test runs; credentials from a Docker
//! `config.json` the test writes, never the host's.

mod common;

use std::fs;
use std::path::Path;

use berth_imaged::reference::Reference;
use berth_imaged::registry::{
    load_credentials, remove_credentials, store_credentials, Credentials, ErrorKind,
    RegistryClient, OCI_MANIFEST,
};
use berth_tests::{Registry, TestEnv};
use bytes::Bytes;
use common::token_server::{TokenServer, ISSUER, SERVICE};
use common::*;

/// Pushes a small made-up image (a chunked layer, a monolithic layer, config, manifest) to
/// `target` and pulls it back.
async fn push_and_pull(client: &RegistryClient, target: &Reference, seed: u64) {
    let layers = [noise(200_000, seed), noise(5_000, seed + 1)];
    let config = format!(r#"{{"architecture":"amd64","os":"linux","seed":{seed}}}"#).into_bytes();
    for blob in layers.iter().chain([&config]) {
        let d = sha(blob);
        let size = blob.len() as u64;
        let source = std::io::Cursor::new(blob.clone());
        if size > 100_000 {
            client
                .push_blob_chunked(target, &d, size, source, 64 << 10)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        } else {
            client
                .push_blob_monolithic(target, &d, size, source)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        assert!(client.blob_exists(target, &d).await.unwrap());
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(&config), "size": config.len()},
        "layers": layers.iter().map(|l| serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha(l), "size": l.len()
        })).collect::<Vec<_>>(),
    })
    .to_string();
    let digest = client
        .put_manifest(
            target,
            target.tag().unwrap(),
            OCI_MANIFEST,
            Bytes::from(manifest.clone()),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let back = client.get_manifest(target).await.unwrap();
    assert_eq!(back.digest, digest);
    assert_eq!(back.bytes, manifest.as_bytes());
    for l in &layers {
        assert_eq!(&fetch_all(client, target, &sha(l)).await, l);
    }
}

/// Pulls the fixture's OCI manifest and its layer.
async fn pull_fixture(client: &RegistryClient, registry: &Registry) {
    let r = reference(&registry.reference("berth/busybox:latest"));
    let m = client
        .get_manifest(&r)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let layer = &m.image().unwrap().layers[0];
    let bytes = fetch_all(client, &r, &layer.digest).await;
    assert_eq!(sha(&bytes), layer.digest);
    // The index, resolved.
    let multi = reference(&registry.reference("berth/busybox:multi"));
    let (_, image) = client
        .get_image_manifest(
            &multi,
            &berth_imaged::registry::Platform::parse("linux/amd64").unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(image.digest, m.digest);
}

fn config_file(dir: &Path) -> String {
    dir.join("config.json").display().to_string()
}

#[test]
fn basic_auth_with_credentials_from_docker_config() {
    if !host_ready() {
        return;
    }
    let env = TestEnv::new("basic_auth");
    let htpasswd = env.path().join("htpasswd");
    // Cost 4, bcrypt's least: the registry checks it on every request.
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    fs::write(&htpasswd, format!("alice:{hash}\n")).unwrap();
    let registry = Registry::start_with_htpasswd(&env, &htpasswd, "alice", "s3cret");
    let host = registry.host();
    let docker = env.path().join("docker");
    let client = client_with(&docker, |_| {});
    let rt = runtime();
    let r = reference(&registry.reference("berth/busybox:latest"));

    // No credentials at all.
    let e = rt.block_on(client.get_manifest(&r)).unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Unauthorized { .. }), "{e}");
    assert_eq!(
        e.to_string(),
        format!(
            "pull {r}: unauthorized: authentication required (no credentials for {host} in {})",
            config_file(&docker)
        )
    );

    // A wrong password in config.json: the same 401, saying whose credentials were sent.
    store_credentials(&docker, &host, &Credentials::new("alice", "wrong")).unwrap();
    let e = rt.block_on(client.get_manifest(&r)).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "pull {r}: unauthorized: authentication required (the credentials of user \"alice\" from {} were rejected)",
            config_file(&docker)
        )
    );
    let e = rt
        .block_on(client.check_login(&host, &Credentials::new("alice", "wrong")))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("login {host}: unauthorized: incorrect username or password for user \"alice\"")
    );

    // `berth login` checks, then stores; pulls and pushes then work.
    let right = Credentials::new("alice", "s3cret");
    rt.block_on(client.check_login(&host, &right)).unwrap();
    store_credentials(&docker, &host, &right).unwrap();
    assert_eq!(load_credentials(&docker, &host).unwrap(), Some(right));
    rt.block_on(pull_fixture(&client, &registry));
    let target = reference(&registry.reference("berth/basic:v1"));
    rt.block_on(push_and_pull(&client, &target, 21));
    let m = rt.block_on(client.get_manifest(&target)).unwrap();
    let raw = skopeo_inspect(
        &registry.reference("berth/basic:v1"),
        true,
        Some("alice:s3cret"),
    );
    assert_eq!(sha(&raw), m.digest);

    // `berth logout`: a new client has nothing to send.
    assert!(remove_credentials(&docker, &host).unwrap());
    let fresh = client_with(&docker, |_| {});
    let e = rt.block_on(fresh.get_manifest(&r)).unwrap_err();
    assert!(e.to_string().contains("no credentials for"), "{e}");
    drop(registry);
}

/// A registry with token auth, its token server, and a client.
struct TokenSetup {
    registry: Registry,
    server: TokenServer,
    env: TestEnv,
}

fn token_setup(name: &str, access_token_field: bool) -> Option<TokenSetup> {
    if !host_ready() {
        return None;
    }
    let env = TestEnv::new(name);
    let server = TokenServer::start(env.path(), "bob", "hunter2", access_token_field);
    let registry = Registry::start_with_token(
        &env,
        &server.realm(),
        SERVICE,
        ISSUER,
        server.cert_file(),
        "bob",
        "hunter2",
    );
    Some(TokenSetup {
        registry,
        server,
        env,
    })
}

#[test]
fn token_auth_pull_push_mount_and_login() {
    let Some(s) = token_setup("token_auth", false) else {
        return;
    };
    let host = s.registry.host();
    let docker = s.env.path().join("docker");
    let client = client_with(&docker, |_| {});
    let rt = runtime();
    let r = reference(&s.registry.reference("berth/busybox:latest"));

    // Anonymous: the token server refuses, and the error says so and why.
    let e = rt.block_on(client.get_manifest(&r)).unwrap_err();
    let text = e.to_string();
    assert!(matches!(e.kind, ErrorKind::Unauthorized { .. }), "{text}");
    assert!(
        text.starts_with(&format!(
            "pull {r}: unauthorized: authentication required; no credentials for {host} in {}",
            config_file(&docker)
        )) && text.contains(&format!("token server {}", s.server.realm()))
            && text.contains("anonymous access is not allowed"),
        "{text}"
    );

    // A wrong password.
    store_credentials(&docker, &host, &Credentials::new("bob", "nope")).unwrap();
    let e = rt.block_on(client.get_manifest(&r)).unwrap_err();
    assert!(
        e.to_string()
            .contains("incorrect username or password for user \"bob\""),
        "{e}"
    );
    let e = rt
        .block_on(client.check_login(&host, &Credentials::new("bob", "nope")))
        .unwrap_err();
    assert!(
        e.to_string().starts_with(&format!(
            "login {host}: unauthorized: incorrect username or password for user \"bob\""
        )),
        "{e}"
    );

    let right = Credentials::new("bob", "hunter2");
    rt.block_on(client.check_login(&host, &right)).unwrap();
    store_credentials(&docker, &host, &right).unwrap();

    // Pulls: one token for the repository's pull scope, then reused.
    let before = s.server.requests();
    rt.block_on(pull_fixture(&client, &s.registry));
    rt.block_on(pull_fixture(&client, &s.registry));
    assert_eq!(
        s.server.requests() - before,
        1,
        "tokens are cached per scope"
    );

    // Pushes, and a mount whose token covers two repositories.
    let target = reference(&s.registry.reference("berth/tokened:v1"));
    rt.block_on(push_and_pull(&client, &target, 31));
    let layer = rt
        .block_on(client.get_manifest(&r))
        .unwrap()
        .image()
        .unwrap()
        .layers[0]
        .digest
        .clone();
    let mounted = reference(&s.registry.reference("berth/mounted:v1"));
    assert!(rt
        .block_on(client.mount_blob(&mounted, &layer, &r))
        .unwrap());
    assert!(rt.block_on(client.blob_exists(&mounted, &layer)).unwrap());

    // The registry does check signatures: a token from another key is refused.
    let forger_dir = s.env.path().join("forger");
    fs::create_dir(&forger_dir).unwrap();
    let forger = TokenServer::start(&forger_dir, "bob", "hunter2", false);
    let status = rt.block_on(async {
        let http = reqwest::Client::new();
        let body = http
            .get(forger.realm())
            .query(&[
                ("service", SERVICE),
                ("scope", "repository:berth/busybox:pull"),
            ])
            .basic_auth("bob", Some("hunter2"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let token: serde_json::Value = serde_json::from_slice(&body).unwrap();
        http.get(format!("http://{host}/v2/berth/busybox/manifests/latest"))
            .bearer_auth(token["token"].as_str().unwrap())
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(status.as_u16(), 401);

    // skopeo, with the same token server, sees what was pushed.
    let m = rt.block_on(client.get_manifest(&target)).unwrap();
    let raw = skopeo_inspect(
        &s.registry.reference("berth/tokened:v1"),
        true,
        Some("bob:hunter2"),
    );
    assert_eq!(sha(&raw), m.digest);
}

#[test]
fn token_server_answering_access_token() {
    let Some(s) = token_setup("token_access", true) else {
        return;
    };
    let docker = s.env.path().join("docker");
    store_credentials(
        &docker,
        &s.registry.host(),
        &Credentials::new("bob", "hunter2"),
    )
    .unwrap();
    let client = client_with(&docker, |_| {});
    let rt = runtime();
    rt.block_on(pull_fixture(&client, &s.registry));
}
