//! berth-imaged end to end: a real daemon, a real registry (Debian's docker-registry with
//! the busybox fixture), and skopeo to check that what we push and pull has the registry's
//! digests.

mod daemon_support;

use berth_proto::imaged as pb;
use berth_tests::{require_cmds, require_root, Registry, TestEnv};
use daemon_support::*;

fn can_run() -> bool {
    // unshare: the mount test mounts in a private namespace.
    require_root() && require_cmds(&["docker-registry", "skopeo", "du", "unshare"])
}

/// A registry with the fixtures, a daemon, and `berth/busybox:latest` pulled: the start of
/// most tests. Returns the env (dropped last), the registry, the daemon and the reference.
async fn with_busybox(name: &str) -> (TestEnv, Registry, Imaged, String) {
    let env = TestEnv::new(name);
    let reg = Registry::start(&env);
    let mut d = Imaged::start(&env).await;
    let r = reg.reference("berth/busybox:latest");
    pull(&mut d.client, &r)
        .await
        .unwrap_or_else(|e| panic!("pull {r}: {e}"));
    (env, reg, d, r)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_every_fixture_manifest_kind_and_lists_them_as_docker_does() {
    if !can_run() {
        return;
    }
    let env = TestEnv::new("imaged-pull");
    let reg = Registry::start(&env);
    let mut d = Imaged::start(&env).await;
    for tag in ["latest", "docker", "multi"] {
        let r = reg.reference(&format!("berth/busybox:{tag}"));
        let msgs = pull(&mut d.client, &r)
            .await
            .unwrap_or_else(|e| panic!("pull {r}: {e}"));
        let last = msgs.last().unwrap();
        assert_eq!(last.digest, skopeo_digest(&r), "{r}");
        assert!(last.image_id.starts_with("sha256:"), "{last:?}");
    }
    let images = list(&mut d.client).await;
    let tags: Vec<String> = images.iter().flat_map(|i| i.repo_tags.clone()).collect();
    for tag in ["latest", "docker", "multi"] {
        let want = reg.reference(&format!("berth/busybox:{tag}"));
        assert!(tags.contains(&want), "{want} not in {tags:?}");
    }
    // One busybox layer, whatever manifest named it: unpacked once.
    let snapshots = std::fs::read_dir(env.root().join("snapshots"))
        .unwrap()
        .count();
    let ids: std::collections::HashSet<_> = images.iter().map(|i| i.id.clone()).collect();
    assert!(
        snapshots <= ids.len(),
        "{snapshots} snapshot dirs for {} images",
        ids.len()
    );

    let v = inspect(&mut d.client, &reg.reference("berth/busybox:latest"))
        .await
        .unwrap();
    assert_eq!(v["Os"], "linux");
    assert_eq!(v["RootFS"]["Type"], "layers");
    assert!(v["Size"].as_u64().unwrap() > 500_000, "{v}");
    assert!(
        v["RepoDigests"][0].as_str().unwrap().contains("@sha256:"),
        "{v}"
    );
    // The layer is really there, busybox and all.
    let lower = v["GraphDriver"]["Data"]["LowerDir"]
        .as_str()
        .unwrap()
        .to_string();
    let bb = std::path::Path::new(lower.split(':').next().unwrap()).join("bin/busybox");
    assert!(bb.is_file(), "{}", bb.display());

    // By id prefix too, and a clear error for what does not exist.
    let id = v["Id"].as_str().unwrap().to_string();
    let by_prefix = inspect(&mut d.client, &id[7..19]).await.unwrap();
    assert_eq!(by_prefix["Id"], v["Id"]);
    let e = inspect(&mut d.client, "no/such:image").await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    assert!(e.message().contains("no/such:image"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_image_or_a_bad_reference_says_so() {
    if !can_run() {
        return;
    }
    let env = TestEnv::new("imaged-pullbad");
    let reg = Registry::start(&env);
    let mut d = Imaged::start(&env).await;
    let e = pull(&mut d.client, &reg.reference("berth/nothing:here"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e}");
    assert!(e.message().contains("berth/nothing"), "{e}");
    let e = pull(&mut d.client, "berth/BusyBox").await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
    let e = pull_platform(
        &mut d.client,
        &reg.reference("berth/busybox:multi"),
        "linux/s390x",
    )
    .await
    .unwrap_err();
    assert!(
        e.message().contains("linux/amd64"),
        "the available platforms are listed: {e}"
    );
    assert!(list(&mut d.client).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rmi_follows_dockers_rules_and_prune_frees_what_df_promised() {
    if !can_run() {
        return;
    }
    let (env, _reg, mut d, a) = with_busybox("imaged-rmi").await;
    d.client
        .tag(pb::TagRequest {
            source: a.clone(),
            target: "mine:1".into(),
        })
        .await
        .unwrap();
    // Two names: removing one only untags.
    let r = remove(&mut d.client, &["mine:1"], false).await;
    assert_eq!(r.lines, vec!["Untagged: mine:1".to_string()], "{r:?}");
    // Used by a container: refused without force.
    prepare(&mut d.client, "c1", &a).await.unwrap();
    let r = remove(&mut d.client, &[&a], false).await;
    assert!(
        r.errors[0].contains("must force") && r.errors[0].contains("c1"),
        "{r:?}"
    );
    d.client
        .remove_snapshot(pb::SnapshotRequest { key: "c1".into() })
        .await
        .unwrap();

    // df's reclaimable, prune's reclaimed and the disk agree.
    let before_du = du(&env.root());
    let u = usage(&mut d.client).await;
    assert_eq!(u.images, 1);
    assert!(u.reclaimable > 0 && u.reclaimable <= u.size, "{u:?}");
    let p = d
        .client
        .prune(pb::PruneRequest {
            all: true,
            filters: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(p.reclaimed, u.reclaimable, "{p:?} vs {u:?}");
    let freed_on_disk = before_du - du(&env.root());
    // The metadata database keeps its pages: allow its size, nothing more.
    let slack = std::fs::metadata(env.root().join("images.db"))
        .unwrap()
        .len();
    assert!(
        freed_on_disk + slack >= p.reclaimed && freed_on_disk <= p.reclaimed + slack,
        "du says {freed_on_disk} freed, prune says {}",
        p.reclaimed
    );
    assert!(list(&mut d.client).await.is_empty());
    let u = usage(&mut d.client).await;
    assert_eq!((u.images, u.blobs, u.snapshots), (0, 0, 0), "{u:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_that_drops_connections_mid_layer_is_resumed_not_restarted() {
    if !can_run() {
        return;
    }
    let env = TestEnv::new("imaged-drop");
    let reg = Registry::start(&env);
    let size = layer_size(&reg.reference("berth/busybox:latest"));
    // Every connection breaks after a third of the layer.
    let proxy = Proxy::start(reg.port(), None, Some(size / 3));
    let mut d = Imaged::start(&env).await;
    let msgs = pull(&mut d.client, &proxy.reference("berth/busybox:latest"))
        .await
        .expect("the pull resumes each time the connection drops");
    assert!(msgs.last().unwrap().done);
    // Resumed, not fetched again from the start: little more than the layer went through.
    assert!(
        proxy.bytes_down() < size + size / 5 + 64 * 1024,
        "{} bytes for a {size}-byte layer",
        proxy.bytes_down()
    );
    let v = inspect(&mut d.client, &proxy.reference("berth/busybox:latest"))
        .await
        .unwrap();
    assert_eq!(v["RootFS"]["Layers"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_pull_leaves_a_store_that_resumes_where_it_stopped() {
    if !can_run() {
        return;
    }
    let env = TestEnv::new("imaged-kill");
    let reg = Registry::start(&env);
    let size = layer_size(&reg.reference("berth/busybox:latest"));
    // Slow enough to be caught in the middle: the layer takes about two seconds.
    let slow = Proxy::start(reg.port(), Some(size / 2), None);
    let mut d = Imaged::start(&env).await;
    let r = slow.reference("berth/busybox:latest");
    let mut c = d.client.clone();
    let puller = tokio::spawn(async move { pull(&mut c, &r).await });
    let partial = env.root().join("content/ingest");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let got: u64 = std::fs::read_dir(&partial)
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0);
        if got > size / 3 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the download never got going"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    d.kill();
    let _ = puller.await;
    drop(d);

    // The next daemon finds no half-made snapshot, no image, and the partial blob kept.
    let counting = Proxy::start(reg.port(), None, None);
    let mut d = Imaged::start(&env).await;
    assert!(list(&mut d.client).await.is_empty());
    let leftovers: Vec<_> = std::fs::read_dir(env.root().join("snapshots"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        leftovers.is_empty(),
        "unfinished unpacks left: {leftovers:?}"
    );
    let msgs = pull(&mut d.client, &counting.reference("berth/busybox:latest"))
        .await
        .unwrap();
    let resumed = msgs.iter().map(|m| m.resumed).max().unwrap();
    assert!(
        resumed > size / 3,
        "resumed from {resumed} of {size}: {msgs:?}"
    );
    assert!(
        counting.bytes_down() < size - resumed + 64 * 1024,
        "fetched {} bytes again after keeping {resumed} of {size}",
        counting.bytes_down()
    );
    let v = inspect(&mut d.client, &counting.reference("berth/busybox:latest"))
        .await
        .unwrap();
    let lower = v["GraphDriver"]["Data"]["LowerDir"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(std::path::Path::new(&lower).join("bin/busybox").is_file());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pulls_of_one_image_fetch_each_blob_once() {
    if !can_run() {
        return;
    }
    let env = TestEnv::new("imaged-conc");
    let reg = Registry::start(&env);
    let size = layer_size(&reg.reference("berth/busybox:latest"));
    let proxy = Proxy::start(reg.port(), Some(size * 2), None);
    let d = Imaged::start(&env).await;
    let mut pulls = Vec::new();
    for tag in ["latest", "latest", "multi"] {
        let (mut c, r) = (
            d.client.clone(),
            proxy.reference(&format!("berth/busybox:{tag}")),
        );
        pulls.push(tokio::spawn(async move { pull(&mut c, &r).await }));
    }
    for p in pulls {
        p.await.unwrap().unwrap();
    }
    assert!(
        proxy.bytes_down() < size + size / 2,
        "{} bytes fetched for one {size}-byte layer",
        proxy.bytes_down()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_blob_is_refused_by_digest_and_leaves_nothing() {
    if !can_run() {
        return;
    }
    let env = TestEnv::new("imaged-corrupt");
    let reg = Registry::start(&env);
    let r = reg.reference("berth/busybox:docker");
    let raw = std::process::Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--raw"])
        .arg(format!("docker://{r}"))
        .output()
        .unwrap();
    let m: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    let layer = m["layers"][0]["digest"].as_str().unwrap().to_string();
    let hex = layer.trim_start_matches("sha256:");
    let data = reg
        .dir()
        .join("storage/docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data");
    let mut bytes = std::fs::read(&data).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&data, &bytes).unwrap();

    let mut d = Imaged::start(&env).await;
    let e = pull(&mut d.client, &r).await.unwrap_err();
    assert!(
        e.message().contains(&layer),
        "the error names the digest: {e}"
    );
    assert!(list(&mut d.client).await.is_empty());
    let u = usage(&mut d.client).await;
    assert_eq!((u.snapshots, u.partial), (0, 0), "{u:?}");
    let snaps: Vec<_> = std::fs::read_dir(env.root().join("snapshots"))
        .unwrap()
        .flatten()
        .collect();
    assert!(snaps.is_empty(), "{snaps:?}");
    assert!(!env.root().join("content/blobs/sha256").join(hex).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_then_push_gives_the_registry_our_digests() {
    if !can_run() {
        return;
    }
    let (env, reg, mut d, base) = with_busybox("imaged-commit").await;

    // A pulled image pushed elsewhere in the registry: same manifest, blobs mounted.
    let copy = reg.reference("berth/copy:1");
    d.client
        .tag(pb::TagRequest {
            source: base.clone(),
            target: copy.clone(),
        })
        .await
        .unwrap();
    let msgs = push(&mut d.client, &copy).await.unwrap();
    assert!(msgs.iter().any(|m| m.status == "mounted"), "{msgs:?}");
    assert_eq!(msgs.last().unwrap().digest, skopeo_digest(&base));
    assert_eq!(skopeo_digest(&copy), skopeo_digest(&base));

    // A container's change committed as a layer, pushed, and seen by skopeo.
    let m = prepare(&mut d.client, "c1", &base).await.unwrap();
    std::fs::write(std::path::Path::new(&m.upper).join("hello.txt"), "hi\n").unwrap();
    let changes = d
        .client
        .changes(pb::ChangesRequest {
            key: "c1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .changes;
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(
        (changes[0].kind, changes[0].path.as_str()),
        (1, "/hello.txt")
    );
    let target = reg.reference("berth/committed:1");
    let id = d
        .client
        .commit(pb::CommitRequest {
            key: "c1".into(),
            reference: target.clone(),
            author: "tester".into(),
            message: "add hello".into(),
            created_by: "berth commit".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .image_id;
    let v = inspect(&mut d.client, &target).await.unwrap();
    assert_eq!(v["Id"], id.as_str());
    assert_eq!(v["RootFS"]["Layers"].as_array().unwrap().len(), 2);
    assert_eq!(v["Author"], "tester");
    let hist = d
        .client
        .history(pb::HistoryRequest {
            image: target.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert_eq!(hist[0].created_by, "berth commit");
    assert_eq!(hist[0].comment, "add hello");
    let msgs = push(&mut d.client, &target).await.unwrap();
    assert_eq!(msgs.last().unwrap().digest, skopeo_digest(&target));
    // skopeo can fetch it whole, every blob checked against its digest.
    let out_dir = env.path().join("skopeo-out");
    let st = std::process::Command::new("skopeo")
        .args(["--insecure-policy", "copy", "--src-tls-verify=false"])
        .arg(format!("docker://{target}"))
        .arg(format!("oci:{}:x", out_dir.display()))
        .status()
        .unwrap();
    assert!(st.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_stores_credentials_that_pulls_then_use() {
    if !can_run() {
        return;
    }
    let env = TestEnv::new("imaged-login");
    let htpasswd = env.path().join("htpasswd");
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    std::fs::write(&htpasswd, format!("alice:{hash}\n")).unwrap();
    let reg = Registry::start_with_htpasswd(&env, &htpasswd, "alice", "s3cret");
    let docker_config = env.path().join("docker-config");
    let mut d = Imaged::start_with(&env, &[("DOCKER_CONFIG", &docker_config)]).await;
    let r = reg.reference("berth/busybox:latest");

    let e = pull(&mut d.client, &r).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e}");
    let login = |password: &str| pb::LoginRequest {
        registry: reg.host(),
        username: "alice".into(),
        password: password.into(),
    };
    let e = d.client.login(login("wrong")).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e}");
    assert!(!docker_config.join("config.json").exists());

    let stored = d.client.login(login("s3cret")).await.unwrap().into_inner();
    assert_eq!(
        stored.config_file,
        docker_config.join("config.json").display().to_string()
    );
    pull(&mut d.client, &r)
        .await
        .expect("pull with the stored credentials");
    let out = d
        .client
        .logout(pb::LogoutRequest {
            registry: reg.host(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(out.removed);
    let text = std::fs::read_to_string(docker_config.join("config.json")).unwrap();
    assert!(!text.contains(&reg.host()), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepared_snapshot_mounts_as_the_image_with_writes_in_its_upper() {
    if !can_run() {
        return;
    }
    let (env, _reg, mut d, r) = with_busybox("imaged-mount").await;
    let m = prepare(&mut d.client, "c1", &r).await.unwrap();
    assert!(!m.options.is_empty(), "{m:?}");
    let e = prepare(&mut d.client, "c1", &r).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::AlreadyExists, "{e}");
    // Mounted in a private mount namespace of a child, so nothing stays mounted on the host.
    let script = format!(
        "mkdir -p {t} && mount -t overlay overlay -o {o} {t} && test -x {t}/bin/busybox && echo hi > {t}/new && rm {t}/bin/ls && echo ok",
        t = env.path().join("rootfs").display(),
        o = m.options
    );
    let out = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "ok\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let upper = std::path::Path::new(&m.upper);
    assert_eq!(std::fs::read_to_string(upper.join("new")).unwrap(), "hi\n");
    let changes = d
        .client
        .changes(pb::ChangesRequest {
            key: "c1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .changes;
    let shown: Vec<(i32, &str)> = changes.iter().map(|c| (c.kind, c.path.as_str())).collect();
    assert!(
        shown.contains(&(1, "/new")) && shown.contains(&(2, "/bin/ls")),
        "{shown:?}"
    );
    d.client
        .remove_snapshot(pb::SnapshotRequest { key: "c1".into() })
        .await
        .unwrap();
    assert!(!upper.exists());
}

/// An OCI layout holding one image whose only layer is `layer_tar` (gzip-compressed here),
/// written for skopeo to push.
fn oci_layout_with_layer(dir: &std::path::Path, layer_tar: &[u8]) {
    use std::io::Write;
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |data: &[u8]| -> String {
        let hex = sha256_hex(data);
        std::fs::write(blobs.join(&hex), data).unwrap();
        format!("sha256:{hex}")
    };
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(layer_tar).unwrap();
    let layer_gz = gz.finish().unwrap();
    let layer = put(&layer_gz);
    let diff_id = format!("sha256:{}", sha256_hex(layer_tar));
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "hand-made"}]
    })
    .to_string();
    let config_digest = put(config.as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer, "size": layer_gz.len()}]
    })
    .to_string();
    let m = put(manifest.as_bytes());
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    std::fs::write(
        dir.join("index.json"),
        serde_json::json!({"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": m, "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": "evil"}
        }]})
        .to_string(),
    )
    .unwrap();
}

/// A tar whose second entry climbs out of the snapshot.
fn escaping_tar(name: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o755);
    h.set_size(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    b.append_data(&mut h, "etc/", std::io::empty()).unwrap();
    let data = b"pwned\n";
    let mut h = tar::Header::new_old();
    h.as_mut_bytes()[..name.len()].copy_from_slice(name.as_bytes());
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(data.len() as u64);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_cksum();
    b.append(&h, &data[..]).unwrap();
    b.into_inner().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layer_that_climbs_out_is_refused_naming_layer_and_entry() {
    if !can_run() {
        return;
    }
    let env = TestEnv::new("imaged-evil");
    let reg = Registry::start(&env);
    let layout = env.path().join("evil-layout");
    oci_layout_with_layer(
        &layout,
        &escaping_tar("../../../../../../tmp/berth-evil-escape"),
    );
    let target = reg.reference("berth/evil:1");
    let st = std::process::Command::new("skopeo")
        .args([
            "--insecure-policy",
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
        ])
        .arg(format!("oci:{}:evil", layout.display()))
        .arg(format!("docker://{target}"))
        .status()
        .unwrap();
    assert!(st.success());
    let mut d = Imaged::start(&env).await;
    let e = pull(&mut d.client, &target).await.unwrap_err();
    assert!(
        e.message().contains("berth-evil-escape"),
        "the entry is named: {e}"
    );
    assert!(e.message().contains("sha256:"), "the layer is named: {e}");
    assert!(!std::path::Path::new("/tmp/berth-evil-escape").exists());
    assert!(list(&mut d.client).await.is_empty());
    let left: Vec<_> = std::fs::read_dir(env.root().join("snapshots"))
        .unwrap()
        .flatten()
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let u = usage(&mut d.client).await;
    assert_eq!((u.snapshots, u.partial), (0, 0), "{u:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_any_moment_of_a_pull_never_breaks_the_store() {
    if !can_run() {
        return;
    }
    let env = TestEnv::new("imaged-kills");
    let reg = Registry::start(&env);
    let size = layer_size(&reg.reference("berth/busybox:latest"));
    let slow = Proxy::start(reg.port(), Some(size * 2), None);
    let r = slow.reference("berth/busybox:latest");
    // Killed at a different moment each time: before, during and after the download.
    for delay_ms in [5u64, 120, 260, 420, 600] {
        let mut d = Imaged::start(&env).await;
        let mut c = d.client.clone();
        let rr = r.clone();
        let p = tokio::spawn(async move { pull(&mut c, &rr).await });
        tokio::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
        d.kill();
        let _ = p.await;
        drop(d);
        let mut d = Imaged::start(&env).await;
        // Whatever was done is either whole or gone: a listed image inspects fine.
        for img in list(&mut d.client).await {
            inspect(&mut d.client, &img.id)
                .await
                .expect("a listed image is whole");
        }
        drop(d);
    }
    let mut d = Imaged::start(&env).await;
    pull(&mut d.client, &r)
        .await
        .expect("a pull after the kills completes");
    let v = inspect(&mut d.client, &r).await.unwrap();
    let lower = v["GraphDriver"]["Data"]["LowerDir"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(std::path::Path::new(&lower).join("bin/busybox").is_file());
    // Exactly one snapshot directory: nothing half-made stayed beside it.
    let dirs = std::fs::read_dir(env.root().join("snapshots"))
        .unwrap()
        .count();
    assert_eq!(dirs, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_layer_comes_in_parallel_ranges_once() {
    if !can_run() {
        return;
    }
    let env = TestEnv::new("imaged-ranges");
    let reg = Registry::start(&env);
    let size = layer_size(&reg.reference("berth/busybox:latest"));
    let proxy = Proxy::start(reg.port(), Some(size * 4), None);
    // Every blob above 100 kB counts as large here.
    let mut d = Imaged::start_args(&env, &[], &["--range-threshold", "100000"]).await;
    let r = proxy.reference("berth/busybox:latest");
    pull(&mut d.client, &r).await.unwrap();
    let v = inspect(&mut d.client, &r).await.unwrap();
    let lower = v["GraphDriver"]["Data"]["LowerDir"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(std::path::Path::new(&lower).join("bin/busybox").is_file());
    // The four ranges went side by side, and nothing came twice.
    assert!(
        proxy.conns.load(std::sync::atomic::Ordering::Relaxed) >= 4,
        "{} connections",
        proxy.conns.load(std::sync::atomic::Ordering::Relaxed)
    );
    assert!(
        proxy.bytes_down() < size + size / 10 + 64 * 1024,
        "{} for {size}",
        proxy.bytes_down()
    );
    let parts: Vec<_> = std::fs::read_dir(env.root().join("content/ingest"))
        .unwrap()
        .flatten()
        .collect();
    assert!(parts.is_empty(), "range files left: {parts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_commit_leaves_no_half_made_image() {
    if !can_run() {
        return;
    }
    let (env, _reg, mut d, base) = with_busybox("imaged-commitkill").await;
    let m = prepare(&mut d.client, "c1", &base).await.unwrap();
    // Enough incompressible data that the commit takes a while to write.
    let mut data = Vec::with_capacity(16 << 20);
    let mut x: u64 = 0x9e3779b97f4a7c15;
    while data.len() < 16 << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    std::fs::write(std::path::Path::new(&m.upper).join("big"), &data).unwrap();
    let mut c = d.client.clone();
    let commit = tokio::spawn(async move {
        c.commit(pb::CommitRequest {
            key: "c1".into(),
            reference: "committed:1".into(),
            ..Default::default()
        })
        .await
    });
    // Kill once the layer is being written.
    let ingest = env.root().join("content/ingest");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let writing = std::fs::read_dir(&ingest)
            .map(|rd| {
                rd.flatten()
                    .any(|e| e.metadata().map(|m| m.len() > 0).unwrap_or(false))
            })
            .unwrap_or(false);
        if writing || commit.is_finished() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the commit never started writing"
        );
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    d.kill();
    let finished_first = commit.await.map(|r| r.is_ok()).unwrap_or(false);
    drop(d);

    let mut d = Imaged::start(&env).await;
    let images = list(&mut d.client).await;
    if finished_first {
        assert_eq!(images.len(), 2, "{images:?}");
    } else {
        // No new image, no stray temp file; the container's snapshot is intact.
        assert_eq!(images.len(), 1, "{images:?}");
        let temps: Vec<_> = std::fs::read_dir(&ingest).unwrap().flatten().collect();
        assert!(temps.is_empty(), "{temps:?}");
    }
    assert!(std::path::Path::new(&m.upper).join("big").is_file());
    // And the commit works once the daemon is back.
    let id = d
        .client
        .commit(pb::CommitRequest {
            key: "c1".into(),
            reference: "committed:1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .image_id;
    let v = inspect(&mut d.client, "committed:1").await.unwrap();
    assert_eq!(v["Id"], id.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_push_leaves_a_store_that_pushes_again() {
    if !can_run() {
        return;
    }
    let (env, reg, mut d, base) = with_busybox("imaged-pushkill").await;
    let size = layer_size(&base);
    // Uploads go through a slow proxy, so the kill lands in the middle of the layer.
    let slow = Proxy::start(reg.port(), Some(size / 2), None);
    let target = slow.reference("berth/pushed:1");
    d.client
        .tag(pb::TagRequest {
            source: base.clone(),
            target: target.clone(),
        })
        .await
        .unwrap();
    let mut c = d.client.clone();
    let t = target.clone();
    let pushing = tokio::spawn(async move { push(&mut c, &t).await });
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    d.kill();
    let _ = pushing.await;
    drop(d);

    let mut d = Imaged::start(&env).await;
    // The image is whole, and a second push completes with the image's own digest.
    let v = inspect(&mut d.client, &target).await.unwrap();
    assert_eq!(v["RootFS"]["Layers"].as_array().unwrap().len(), 1);
    let msgs = push(&mut d.client, &target).await.unwrap();
    let direct = reg.reference("berth/pushed:1");
    assert_eq!(msgs.last().unwrap().digest, skopeo_digest(&direct));
    assert_eq!(skopeo_digest(&direct), skopeo_digest(&base));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_any_moment_of_an_rmi_leaves_it_done_or_undone() {
    if !can_run() {
        return;
    }
    let (env, _reg, mut d, base) = with_busybox("imaged-rmikill").await;
    for delay_us in [0u64, 500, 2_000, 5_000, 20_000] {
        if list(&mut d.client).await.is_empty() {
            pull(&mut d.client, &base).await.unwrap();
        }
        let mut c = d.client.clone();
        let b = base.clone();
        let rmi = tokio::spawn(async move {
            c.remove(pb::RemoveRequest {
                images: vec![b],
                force: false,
            })
            .await
        });
        tokio::time::sleep(std::time::Duration::from_micros(delay_us)).await;
        d.kill();
        let _ = rmi.await;
        drop(d);
        d = Imaged::start(&env).await;
        let dirs = std::fs::read_dir(env.root().join("snapshots"))
            .unwrap()
            .count();
        match list(&mut d.client).await.as_slice() {
            // Not removed: whole.
            [img] => {
                inspect(&mut d.client, &img.id)
                    .await
                    .expect("a listed image is whole");
                assert_eq!(dirs, 1, "after {delay_us} µs");
            }
            // Removed: nothing of it stays once the new daemon has swept.
            [] => {
                assert_eq!(dirs, 0, "after {delay_us} µs");
                let u = usage(&mut d.client).await;
                assert_eq!(u.snapshots, 0, "{u:?}");
            }
            more => panic!("{more:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_daemon_for_one_run_directory_is_refused() {
    if !can_run() {
        return;
    }
    let env = TestEnv::new("imaged-twice");
    let mut d = Imaged::start(&env).await;
    let out = berth_tests::run_timeout(
        env.command(berth_tests::bin("berth-imaged"))
            .arg("--root")
            .arg(env.root())
            .arg("--run")
            .arg(env.run()),
        std::time::Duration::from_secs(20),
    );
    out.assert_failure_mentioning("another berth-imaged is running");
    // The first one keeps its socket and answers.
    assert!(list(&mut d.client).await.is_empty());
    let mut again = berth_imaged::client::connect(&d.socket).await.unwrap();
    again
        .version(pb::VersionRequest {})
        .await
        .expect("the first daemon still serves");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_only_commits_add_an_empty_layer_history_entry() {
    if !can_run() {
        return;
    }
    let (_env, _reg, mut d, base) = with_busybox("imaged-cfgcommit").await;
    let before = inspect(&mut d.client, &base).await.unwrap();
    let commit = |parent: String, key: String, by: &'static str| pb::CommitRequest {
        key,
        parent,
        config_json: r#"{"Env":["A=1"],"Cmd":["sh"]}"#.into(),
        created_by: by.into(),
        empty_layer: true,
        ..Default::default()
    };
    // On an image, without a snapshot.
    let id = d
        .client
        .commit(commit(
            base.clone(),
            String::new(),
            "/bin/sh -c #(nop)  ENV A=1",
        ))
        .await
        .unwrap()
        .into_inner()
        .image_id;
    let v = inspect(&mut d.client, &id).await.unwrap();
    assert_eq!(v["RootFS"]["Layers"], before["RootFS"]["Layers"]);
    assert_eq!(v["Config"]["Env"][0], "A=1");
    let hist = d
        .client
        .history(pb::HistoryRequest { image: id.clone() })
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert_eq!(hist[0].created_by, "/bin/sh -c #(nop)  ENV A=1");
    assert_eq!(hist[0].size, 0);
    // On a snapshot: whatever it holds, no layer is written.
    let m = prepare(&mut d.client, "c-cfg", &id).await.unwrap();
    std::fs::write(std::path::Path::new(&m.upper).join("ignored"), "x").unwrap();
    let id2 = d
        .client
        .commit(commit(
            String::new(),
            "c-cfg".into(),
            "/bin/sh -c #(nop)  CMD [\"sh\"]",
        ))
        .await
        .unwrap()
        .into_inner()
        .image_id;
    let v2 = inspect(&mut d.client, &id2).await.unwrap();
    assert_eq!(v2["RootFS"]["Layers"], before["RootFS"]["Layers"]);
    // On nothing at all (FROM scratch then CMD): an image with no layers.
    let id3 = d
        .client
        .commit(commit(
            String::new(),
            String::new(),
            "/bin/sh -c #(nop)  CMD [\"x\"]",
        ))
        .await
        .unwrap()
        .into_inner()
        .image_id;
    let v3 = inspect(&mut d.client, &id3).await.unwrap();
    assert_eq!(v3["RootFS"]["Layers"].as_array().map_or(0, |l| l.len()), 0);
}
