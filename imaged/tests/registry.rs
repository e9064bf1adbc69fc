//! The registry client against a real registry (Debian's docker-registry, distribution 2.8)
//! holding the busybox fixture as berth/busybox:{latest,docker,multi}, with skopeo as the
//! second opinion on digests both ways.

mod common;

use berth_imaged::digest::Digest;
use berth_imaged::registry::{ErrorKind, ManifestKind, Platform, RegistryClient};
use berth_tests::{Registry, TestEnv};
use bytes::Bytes;
use common::*;

/// Fields drop in order: the registry stops before the env removes its directory.
struct Setup {
    client: RegistryClient,
    registry: Registry,
    env: TestEnv,
}

fn setup(name: &str) -> Option<Setup> {
    if !host_ready() {
        return None;
    }
    let env = TestEnv::new(name);
    let registry = Registry::start(&env);
    let client = client_with(&env.path().join("docker"), |_| {});
    Some(Setup {
        env,
        registry,
        client,
    })
}

/// The digest skopeo computes for what the registry serves.
fn skopeo_digest(reference: &str) -> Digest {
    let raw = skopeo_inspect(reference, true, None);
    sha(&raw)
}

#[test]
fn pulls_every_fixture_manifest_with_skopeos_digests() {
    let Some(s) = setup("pull_manifests") else {
        return;
    };
    let rt = runtime();
    for (tag, kind) in [
        ("latest", ManifestKind::OciManifest),
        ("docker", ManifestKind::DockerManifest),
        ("multi", ManifestKind::OciIndex),
    ] {
        let name = s.registry.reference(&format!("berth/busybox:{tag}"));
        let r = reference(&name);
        let m = rt.block_on(s.client.get_manifest(&r)).unwrap();
        assert_eq!(m.kind, kind, "{name}");
        assert_eq!(m.digest, Digest::of(&m.bytes), "{name}");
        assert_eq!(m.digest, skopeo_digest(&name), "{name}: skopeo's digest");
        // By digest, and by tag and digest: the same bytes.
        let pinned = rt
            .block_on(s.client.get_manifest(&r.with_digest(m.digest.clone())))
            .unwrap();
        assert_eq!(pinned.bytes, m.bytes);
        let by_digest = rt
            .block_on(s.client.get_manifest(&r.by_digest(m.digest.clone())))
            .unwrap();
        assert_eq!(by_digest.bytes, m.bytes);
        assert_eq!(rt.block_on(s.client.manifest_digest(&r)).unwrap(), m.digest);
        if kind.is_index() {
            assert!(m.image().is_err());
            assert_eq!(m.index().unwrap().manifests.len(), 1);
        } else {
            let image = m.image().unwrap();
            assert_eq!(image.layers.len(), 1, "{name}");
        }
    }
    assert!(rt
        .block_on(
            s.client
                .list_tags(&reference(&s.registry.reference("berth/busybox")))
        )
        .unwrap()
        .iter()
        .any(|t| t == "multi"));
}

#[test]
fn resolves_the_index_for_a_platform() {
    let Some(s) = setup("resolve_index") else {
        return;
    };
    let rt = runtime();
    let multi = reference(&s.registry.reference("berth/busybox:multi"));
    let latest = reference(&s.registry.reference("berth/busybox:latest"));
    let amd64 = Platform::parse("linux/amd64").unwrap();
    let (index, image) = rt
        .block_on(s.client.get_image_manifest(&multi, &amd64))
        .unwrap();
    assert_eq!(index.unwrap().kind, ManifestKind::OciIndex);
    let direct = rt.block_on(s.client.get_manifest(&latest)).unwrap();
    assert_eq!(image.digest, direct.digest);
    assert_eq!(image.kind, ManifestKind::OciManifest);
    if Platform::host() == amd64 {
        let (_, host_image) = rt
            .block_on(s.client.get_image_manifest(&multi, &Platform::host()))
            .unwrap();
        assert_eq!(host_image.digest, direct.digest);
    }
    // An image manifest needs no resolving.
    let (none, same) = rt
        .block_on(s.client.get_image_manifest(&latest, &amd64))
        .unwrap();
    assert!(none.is_none());
    assert_eq!(same.digest, direct.digest);

    let arm = Platform::parse("linux/arm64/v8").unwrap();
    let e = rt
        .block_on(s.client.get_image_manifest(&multi, &arm))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "pull {}: no image for platform linux/arm64; the index has linux/amd64",
            multi
        )
    );
}

#[test]
fn fetches_blobs_whose_digests_check_out() {
    let Some(s) = setup("fetch_blobs") else {
        return;
    };
    let rt = runtime();
    for tag in ["latest", "docker"] {
        let r = reference(&s.registry.reference(&format!("berth/busybox:{tag}")));
        let image = rt
            .block_on(s.client.get_manifest(&r))
            .unwrap()
            .image()
            .unwrap();
        for d in std::iter::once(&image.config).chain(&image.layers) {
            let bytes = rt.block_on(fetch_all(&s.client, &r, &d.digest));
            assert_eq!(bytes.len() as u64, d.size, "{tag} {}", d.digest);
            assert_eq!(sha(&bytes), d.digest, "{tag}");
            assert_eq!(
                rt.block_on(s.client.blob_size(&r, &d.digest)).unwrap(),
                d.size
            );
            assert!(rt.block_on(s.client.blob_exists(&r, &d.digest)).unwrap());
        }
    }
}

/// The fixture's layer: its repository, digest and size.
fn layer(
    s: &Setup,
    rt: &tokio::runtime::Runtime,
) -> (berth_imaged::reference::Reference, Digest, u64) {
    let r = reference(&s.registry.reference("berth/busybox:latest"));
    let image = rt
        .block_on(s.client.get_manifest(&r))
        .unwrap()
        .image()
        .unwrap();
    let l = &image.layers[0];
    (r, l.digest.clone(), l.size)
}

#[test]
fn resumes_a_blob_from_an_offset() {
    let Some(s) = setup("resume_offset") else {
        return;
    };
    let rt = runtime();
    let (r, digest, size) = layer(&s, &rt);
    let whole = rt.block_on(fetch_all(&s.client, &r, &digest));
    let offset = size / 3;
    let stream = rt
        .block_on(s.client.fetch_blob(&r, &digest, offset))
        .unwrap();
    assert_eq!(stream.start(), offset);
    assert!(!stream.range_ignored());
    assert_eq!(stream.total_size(), Some(size));
    assert_eq!(stream.end(), Some(size));
    let (rest, err) = rt.block_on(collect(stream));
    assert!(err.is_none(), "{err:?}");
    let mut joined = whole[..offset as usize].to_vec();
    joined.extend_from_slice(&rest);
    assert_eq!(sha(&joined), digest);

    // Asking from the end: nothing left, and the error says how big the blob is.
    let e = rt
        .block_on(s.client.fetch_blob(&r, &digest, size))
        .err()
        .unwrap();
    assert!(
        matches!(e.kind, ErrorKind::RangeNotSatisfiable { size: Some(n) } if n == size),
        "{e}"
    );
}

#[test]
fn a_registry_that_ignores_ranges_is_detected() {
    let Some(s) = setup("ignored_range") else {
        return;
    };
    let rt = runtime();
    let (_, digest, size) = layer(&s, &rt);
    let proxy = Proxy::hiding_ranges(s.registry.port());
    let r = reference(&format!("{}/berth/busybox:latest", proxy.host()));
    let stream = rt.block_on(s.client.fetch_blob(&r, &digest, 1000)).unwrap();
    assert!(stream.range_ignored());
    assert_eq!(stream.start(), 0);
    let (bytes, err) = rt.block_on(collect(stream));
    assert!(err.is_none(), "{err:?}");
    assert_eq!(bytes.len() as u64, size);
    assert_eq!(sha(&bytes), digest);
    let e = rt
        .block_on(s.client.fetch_range(&r, &digest, 0, 999))
        .err()
        .unwrap();
    assert!(matches!(e.kind, ErrorKind::RangeNotSupported), "{e}");
    assert_eq!(
        e.to_string(),
        format!(
            "fetch {}/berth/busybox@{digest}: the registry does not serve byte ranges (HTTP 200 instead of 206)",
            proxy.host()
        )
    );
    assert_eq!(proxy.count("xrnge: bytes=1000-"), 1);
}

#[test]
fn fetches_one_blob_in_parallel_ranges() {
    let Some(s) = setup("fetch_ranges") else {
        return;
    };
    let rt = runtime();
    let (r, digest, size) = layer(&s, &rt);
    let parts = 4u64;
    let piece = size.div_ceil(parts);
    let ranges: Vec<(u64, u64)> = (0..parts)
        .map(|i| (i * piece, ((i + 1) * piece).min(size) - 1))
        .collect();
    let pieces = rt.block_on(async {
        let futs = ranges.iter().map(|&(a, b)| {
            let (client, r, digest) = (&s.client, &r, &digest);
            async move {
                let stream = client.fetch_range(r, digest, a, b).await.unwrap();
                assert_eq!((stream.start(), stream.end()), (a, Some(b + 1)));
                let (bytes, err) = collect(stream).await;
                assert!(err.is_none(), "{err:?}");
                bytes
            }
        });
        futures_util::future::join_all(futs).await
    });
    let joined: Vec<u8> = pieces.concat();
    assert_eq!(joined.len() as u64, size);
    assert_eq!(sha(&joined), digest);

    let e = rt
        .block_on(s.client.fetch_range(&r, &digest, size + 10, size + 20))
        .err()
        .unwrap();
    assert!(
        matches!(e.kind, ErrorKind::RangeNotSatisfiable { .. }),
        "{e}"
    );
}

#[test]
fn unknown_things_give_the_registrys_reason() {
    let Some(s) = setup("unknown") else {
        return;
    };
    let rt = runtime();
    let host = s.registry.host();
    let nope = reference(&format!("{host}/berth/busybox:nope"));
    let e = rt.block_on(s.client.get_manifest(&nope)).unwrap_err();
    assert!(
        e.to_string()
            .starts_with(&format!("pull {host}/berth/busybox:nope: manifest unknown")),
        "{e}"
    );
    assert!(e.is_not_found());

    let missing = Digest::of(b"no such blob");
    let e = rt
        .block_on(s.client.fetch_blob(&nope, &missing, 0))
        .err()
        .unwrap();
    assert_eq!(
        e.to_string(),
        format!("fetch {host}/berth/busybox@{missing}: blob unknown to registry")
    );
    assert!(!rt.block_on(s.client.blob_exists(&nope, &missing)).unwrap());

    // A digest the manifest does not have: the registry has no such manifest.
    let wrong = nope.by_digest(missing.clone());
    let e = rt.block_on(s.client.get_manifest(&wrong)).unwrap_err();
    assert!(e.is_not_found(), "{e}");

    let e = rt
        .block_on(
            s.client
                .get_manifest(&reference(&format!("{host}/no/such-repo"))),
        )
        .unwrap_err();
    assert!(e.to_string().contains("no/such-repo:latest"), "{e}");
    assert!(e.is_not_found(), "{e}");

    // Nobody listening: the error names the URL.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = dead.local_addr().unwrap().port();
    drop(dead);
    let e = rt
        .block_on(
            s.client
                .get_manifest(&reference(&format!("127.0.0.1:{port}/x"))),
        )
        .unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains(&format!(
            "cannot reach http://127.0.0.1:{port}/v2/x/manifests/latest"
        )) && text.to_lowercase().contains("refused"),
        "{text}"
    );
}

/// A made-up image: two layers (one pushed in chunks, one in one PUT), a config and an
/// OCI manifest.
struct Made {
    layers: Vec<Vec<u8>>,
    config: Vec<u8>,
    manifest: Vec<u8>,
}

fn make_image(seed: u64, big: usize) -> Made {
    let layers = vec![noise(big, seed), noise(40_000, seed + 1)];
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| sha(l).to_string()).collect::<Vec<_>>()},
    })
    .to_string()
    .into_bytes();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(&config), "size": config.len()},
        "layers": layers.iter().map(|l| serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": sha(l),
            "size": l.len(),
        })).collect::<Vec<_>>(),
    })
    .to_string()
    .into_bytes();
    Made {
        layers,
        config,
        manifest,
    }
}

#[test]
fn pushes_an_image_chunked_and_monolithic_and_skopeo_sees_it() {
    let Some(s) = setup("push") else {
        return;
    };
    let rt = runtime();
    // Through a proxy that counts requests, with a threshold that makes the big layer go
    // in chunks of 64 KiB and the small one in one PUT.
    let proxy = Proxy::start(s.registry.port(), None);
    let client = client_with(&s.env.path().join("docker"), |c| {
        c.chunk_threshold = 100_000;
        c.chunk_size = 64 << 10;
    });
    let made = make_image(7, 300_000);
    let target = reference(&format!("{}/berth/pushed:v1", proxy.host()));
    rt.block_on(async {
        for blob in made.layers.iter().chain([&made.config]) {
            let d = sha(blob);
            assert!(!client.blob_exists(&target, &d).await.unwrap());
            client
                .push_blob(
                    &target,
                    &d,
                    blob.len() as u64,
                    std::io::Cursor::new(blob.clone()),
                )
                .await
                .unwrap();
            assert!(client.blob_exists(&target, &d).await.unwrap());
        }
        let digest = client
            .put_manifest(
                &target,
                "v1",
                berth_imaged::registry::OCI_MANIFEST,
                Bytes::from(made.manifest.clone()),
            )
            .await
            .unwrap();
        assert_eq!(digest, sha(&made.manifest));
    });
    // 300 000 bytes in 64 KiB chunks: 5 PATCHes; the other two blobs in one PUT each.
    assert_eq!(proxy.count("PATCH /v2/berth/pushed/blobs/uploads/"), 5);
    assert_eq!(proxy.count("PUT /v2/berth/pushed/blobs/uploads/"), 3);

    // Pull it back, from the registry directly.
    let pulled_ref = reference(&s.registry.reference("berth/pushed:v1"));
    let m = rt.block_on(s.client.get_manifest(&pulled_ref)).unwrap();
    assert_eq!(m.bytes.as_ref(), made.manifest.as_slice());
    assert_eq!(m.kind, ManifestKind::OciManifest);
    for l in &made.layers {
        assert_eq!(&rt.block_on(fetch_all(&s.client, &pulled_ref, &sha(l))), l);
    }

    // skopeo sees the same manifest digest and layers.
    let name = s.registry.reference("berth/pushed:v1");
    assert_eq!(skopeo_digest(&name), m.digest);
    let info: serde_json::Value =
        serde_json::from_slice(&skopeo_inspect(&name, false, None)).unwrap();
    assert_eq!(info["Digest"], m.digest.to_string());
    let layers: Vec<String> = made.layers.iter().map(|l| sha(l).to_string()).collect();
    assert_eq!(info["Layers"], serde_json::json!(layers));

    // Pushing by digest works and must match the bytes.
    rt.block_on(s.client.put_manifest(
        &pulled_ref,
        &m.digest.to_string(),
        berth_imaged::registry::OCI_MANIFEST,
        m.bytes.clone(),
    ))
    .unwrap();
    let e = rt
        .block_on(s.client.put_manifest(
            &pulled_ref,
            &Digest::of(b"other").to_string(),
            berth_imaged::registry::OCI_MANIFEST,
            m.bytes.clone(),
        ))
        .unwrap_err();
    assert!(matches!(e.kind, ErrorKind::DigestMismatch { .. }), "{e}");
}

#[test]
fn a_blob_that_does_not_match_its_digest_is_refused() {
    let Some(s) = setup("push_wrong") else {
        return;
    };
    let rt = runtime();
    let target = reference(&s.registry.reference("berth/wrong:v1"));
    let claimed = Digest::of(b"what was announced");
    let data = b"what was sent".to_vec();
    for chunked in [false, true] {
        let e = rt
            .block_on(async {
                if chunked {
                    s.client
                        .push_blob_chunked(
                            &target,
                            &claimed,
                            data.len() as u64,
                            std::io::Cursor::new(data.clone()),
                            4,
                        )
                        .await
                } else {
                    s.client
                        .push_blob_monolithic(
                            &target,
                            &claimed,
                            data.len() as u64,
                            std::io::Cursor::new(data.clone()),
                        )
                        .await
                }
            })
            .unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with(&format!(
                "push {}/berth/wrong@{claimed}: ",
                s.registry.host()
            )) && text.contains("digest"),
            "{text}"
        );
        assert!(!rt
            .block_on(s.client.blob_exists(&target, &claimed))
            .unwrap());
    }
    // A source shorter than announced.
    let e = rt
        .block_on(s.client.push_blob_chunked(
            &target,
            &Digest::of(&data),
            100,
            std::io::Cursor::new(data.clone()),
            4,
        ))
        .unwrap_err();
    assert!(e.to_string().contains("ended after 13 of 100 bytes"), "{e}");
}

#[test]
fn mounts_blobs_across_repositories() {
    let Some(s) = setup("mount") else {
        return;
    };
    let rt = runtime();
    let (from, layer_digest, _) = layer(&s, &rt);
    let target = reference(&s.registry.reference("berth/mounted:v1"));
    rt.block_on(async {
        assert!(!s.client.blob_exists(&target, &layer_digest).await.unwrap());
        assert!(s
            .client
            .mount_blob(&target, &layer_digest, &from)
            .await
            .unwrap());
        assert!(s.client.blob_exists(&target, &layer_digest).await.unwrap());
        // A blob the source repository lacks: the registry offers an upload instead.
        let absent = Digest::of(b"never pushed");
        assert!(!s.client.mount_blob(&target, &absent, &from).await.unwrap());
        assert!(!s.client.blob_exists(&target, &absent).await.unwrap());
        // Another registry: no request at all.
        let elsewhere = reference("example.invalid/berth/busybox");
        assert!(!s
            .client
            .mount_blob(&target, &layer_digest, &elsewhere)
            .await
            .unwrap());
    });
    let bytes = rt.block_on(fetch_all(&s.client, &target, &layer_digest));
    assert_eq!(sha(&bytes), layer_digest);
}

#[test]
fn a_connection_dropped_mid_blob_names_the_digest_and_resumes() {
    let Some(s) = setup("dropped") else {
        return;
    };
    let rt = runtime();
    let (r, digest, size) = layer(&s, &rt);
    // The proxy forwards 100 000 bytes of each answer (headers included) and hangs up.
    let proxy = Proxy::start(s.registry.port(), Some(100_000));
    let via_proxy = reference(&format!("{}/berth/busybox:latest", proxy.host()));
    let client = client_with(&s.env.path().join("docker"), |_| {});
    let stream = rt
        .block_on(client.fetch_blob(&via_proxy, &digest, 0))
        .unwrap();
    let (got, err) = rt.block_on(collect(stream));
    let err = err.expect("the cut must surface as an error");
    let received = err.resume_offset().expect("an interrupted transfer");
    assert_eq!(received, got.len() as u64);
    assert!(received > 90_000 && received < 100_000, "{received}");
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "fetch {}/berth/busybox@{digest}: connection lost after {received} of {size} bytes",
            proxy.host()
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("resume from byte {received}")),
        "{text}"
    );

    // Resume from the registry itself.
    let stream = rt
        .block_on(s.client.fetch_blob(&r, &digest, received))
        .unwrap();
    assert_eq!(stream.start(), received);
    let (rest, err) = rt.block_on(collect(stream));
    assert!(err.is_none(), "{err:?}");
    let mut whole = got;
    whole.extend_from_slice(&rest);
    assert_eq!(sha(&whole), digest);
}

#[test]
fn mirrors_come_first_and_the_registry_when_they_fail() {
    let Some(s) = setup("mirrors") else {
        return;
    };
    let rt = runtime();
    // Mirrors in order: nobody listening, then a second registry (behind a counting
    // proxy) that has the fixtures but not what is pushed to the first one later.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    drop(dead);
    // A registry's directory is named after its env: the second one needs an env too.
    let mirror_env = TestEnv::new("mirrors_second");
    let mirror_registry = Registry::start(&mirror_env);
    let mirror = Proxy::start(mirror_registry.port(), None);
    let host = s.registry.host();
    let client = client_with(&s.env.path().join("docker"), |c| {
        c.mirrors.insert(
            host.clone(),
            vec![
                format!("http://127.0.0.1:{dead_port}"),
                format!("http://{}/", mirror.host()),
            ],
        );
    });
    let r = reference(&s.registry.reference("berth/busybox:latest"));
    let m = rt.block_on(client.get_manifest(&r)).unwrap();
    assert_eq!(mirror.count("GET /v2/berth/busybox/manifests/latest"), 1);
    let l = &m.image().unwrap().layers[0];
    let bytes = rt.block_on(fetch_all(&client, &r, &l.digest));
    assert_eq!(sha(&bytes), l.digest);
    assert_eq!(
        mirror.count(&format!("GET /v2/berth/busybox/blobs/{}", l.digest)),
        1
    );

    // Pushes go to the registry, never to a mirror; what the mirror lacks (404) comes
    // from the registry.
    let target = reference(&s.registry.reference("berth/only-upstream:v1"));
    let made = make_image(11, 1000);
    rt.block_on(async {
        for blob in made.layers.iter().chain([&made.config]) {
            client
                .push_blob(
                    &target,
                    &sha(blob),
                    blob.len() as u64,
                    std::io::Cursor::new(blob.clone()),
                )
                .await
                .unwrap();
        }
        client
            .put_manifest(
                &target,
                "v1",
                berth_imaged::registry::OCI_MANIFEST,
                Bytes::from(made.manifest.clone()),
            )
            .await
            .unwrap();
    });
    assert_eq!(mirror.count("POST "), 0);
    assert_eq!(mirror.count("PUT "), 0);
    let pulled = rt.block_on(client.get_manifest(&target)).unwrap();
    assert_eq!(pulled.bytes.as_ref(), made.manifest.as_slice());
    assert_eq!(
        mirror.count("GET /v2/berth/only-upstream/manifests/v1"),
        1,
        "the mirror is asked first"
    );
    let layer = rt.block_on(fetch_all(&client, &target, &sha(&made.layers[0])));
    assert_eq!(layer, made.layers[0]);
    drop(mirror_registry);
    drop(mirror_env);
}
