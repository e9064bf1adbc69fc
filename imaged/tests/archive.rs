//! Save, load, import and export end to end: a real daemon, the registry with the busybox
//! fixture, and the tools whose archives must agree with ours: skopeo (`docker-archive:`,
//! `oci-archive:`) and, where a private dockerd can run, `docker load` and `docker save`.

mod daemon_support;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::Command;

use berth_imaged::images::familiar;
use berth_proto::imaged as pb;
use berth_tests::{fixtures, require_cmds, require_root, Registry, TestEnv};
use daemon_support::dockerd::Dockerd;
use daemon_support::*;
use serde_json::{json, Value};

fn can_run() -> bool {
    require_root() && require_cmds(&["docker-registry", "skopeo", "du"])
}

#[track_caller]
fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn skopeo() -> Command {
    let mut c = Command::new("skopeo");
    c.arg("--insecure-policy");
    c
}

/// Prepare a snapshot on `image`, add `/hello.txt`, commit it as `target`, drop the snapshot.
async fn commit_hello(d: &mut Imaged, image: &str, target: &str) -> String {
    let m = d
        .client
        .prepare(pb::PrepareRequest {
            key: "hello".into(),
            image: image.into(),
        })
        .await
        .unwrap()
        .into_inner();
    std::fs::write(Path::new(&m.upper).join("hello.txt"), "hi\n").unwrap();
    let id = d
        .client
        .commit(pb::CommitRequest {
            key: "hello".into(),
            reference: target.into(),
            created_by: "add hello".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .image_id;
    d.client
        .remove_snapshot(pb::SnapshotRequest {
            key: "hello".into(),
        })
        .await
        .unwrap();
    id
}

/// What must survive a save and load: the id, the layers, the manifest digest.
fn identity(v: &Value) -> Value {
    json!({
        "Id": v["Id"],
        "Layers": v["RootFS"]["Layers"],
        "Manifest": v["Descriptor"]["digest"],
        "Config": v["Config"],
    })
}

/// The first lower directory of an image: its top layer, unpacked.
fn top_layer(v: &Value) -> std::path::PathBuf {
    let lower = v["GraphDriver"]["Data"]["LowerDir"].as_str().unwrap();
    lower.split(':').next().unwrap().into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn save_then_load_into_a_fresh_daemon_keeps_ids_tags_and_digests() {
    if !can_run() {
        return;
    }
    let env = TestEnv::new("imaged-save");
    let reg = Registry::start(&env);
    let mut a = Imaged::start(&env).await;
    let oci = reg.reference("berth/busybox:latest");
    let docker = reg.reference("berth/busybox:docker");
    pull(&mut a.client, &oci).await.unwrap();
    pull(&mut a.client, &docker).await.unwrap();
    a.client
        .tag(pb::TagRequest {
            source: oci.clone(),
            target: "mine/bb:1".into(),
        })
        .await
        .unwrap();
    commit_hello(&mut a, &oci, "mine/hello:1").await;
    // A zstd layer: an oci-archive keeps it; a docker-archive holds it uncompressed (Docker
    // 20.10 cannot read zstd), under a manifest of its own.
    let zst = zstd::encode_all(rootfs_tar().as_slice(), 3).unwrap();
    import(&mut a.client, "mine/zstd:1", &[], "", &zst)
        .await
        .unwrap();
    let names = [
        oci.as_str(),
        docker.as_str(),
        "mine/bb:1",
        "mine/hello:1",
        "mine/zstd:1",
    ];
    let mut want = BTreeMap::new();
    for n in names {
        want.insert(n, identity(&inspect(&mut a.client, n).await.unwrap()));
    }

    for format in ["docker-archive", "oci-archive"] {
        let file = env.path().join(format!("{format}.tar"));
        save(&mut a.client, &names, format, &file).await.unwrap();
        // The same images give the same bytes.
        let again = env.path().join("again.tar");
        save(&mut a.client, &names, format, &again).await.unwrap();
        assert!(
            std::fs::read(&file).unwrap() == std::fs::read(&again).unwrap(),
            "{format}: two saves differ"
        );
        let entries = tar_entries(&std::fs::read(&file).unwrap());
        assert!(entries.contains_key("index.json") && entries.contains_key("oci-layout"));
        assert_eq!(
            entries.contains_key("manifest.json"),
            format == "docker-archive",
            "{format}: {:?}",
            entries.keys()
        );

        // Plain, then gzip-compressed as `docker save | gzip` gives it, each into a new store.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&std::fs::read(&file).unwrap()).unwrap();
        let gz = gz.finish().unwrap();
        for (how, data) in [("plain", std::fs::read(&file).unwrap()), ("gzip", gz)] {
            let env_b = TestEnv::new("imaged-save-b");
            let mut b = Imaged::start(&env_b).await;
            let lines = load_bytes(&mut b.client, &data)
                .await
                .unwrap_or_else(|e| panic!("{format} {how}: {e}"));
            for n in names {
                let line = format!(
                    "Loaded image: {}",
                    familiar(&Reference::parse(n).unwrap().to_string())
                );
                assert!(
                    lines.contains(&line),
                    "{format} {how}: {line:?} not in {lines:?}"
                );
                let mut got = identity(&inspect(&mut b.client, n).await.unwrap());
                let mut want = want[n].clone();
                if format == "docker-archive" && n == "mine/zstd:1" {
                    assert_ne!(got["Manifest"], want["Manifest"]);
                    got["Manifest"] = Value::Null;
                    want["Manifest"] = Value::Null;
                }
                assert_eq!(got, want, "{format} {how}: {n}");
            }
            let v = inspect(&mut b.client, "mine/hello:1").await.unwrap();
            assert_eq!(
                std::fs::read_to_string(top_layer(&v).join("hello.txt")).unwrap(),
                "hi\n"
            );
            assert!(
                b.client
                    .list(pb::ListRequest::default())
                    .await
                    .unwrap()
                    .into_inner()
                    .images
                    .len()
                    <= 3
            );
            // Loading the same archive again changes nothing and says the same.
            let twice = load_bytes(&mut b.client, &data).await.unwrap();
            assert_eq!(twice, lines, "{format} {how}");
        }
    }

    // Docker's name rules: a repository without a tag brings every tag it has.
    let file = env.path().join("repo.tar");
    save(&mut a.client, &["mine/bb"], "", &file).await.unwrap();
    let m: Value = serde_json::from_slice(
        tar_entries(&std::fs::read(&file).unwrap())["manifest.json"]
            .as_ref()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(m[0]["RepoTags"], json!(["mine/bb:1"]), "{m}");
    let e = save(&mut a.client, &["no/such:image"], "", &file)
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e}");
    let e = save(&mut a.client, &["mine/bb:1"], "tarball", &file)
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
}

use berth_imaged::reference::Reference;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_reads_our_archives_and_we_load_what_skopeo_and_the_fixtures_give() {
    if !can_run() {
        return;
    }
    let env = TestEnv::new("imaged-skopeo");
    let reg = Registry::start(&env);
    let mut a = Imaged::start(&env).await;
    let oci = reg.reference("berth/busybox:latest");
    pull(&mut a.client, &oci).await.unwrap();
    let ours = inspect(&mut a.client, &oci).await.unwrap();

    // Ours, read by skopeo: every blob checked against its digest on the way.
    let d_tar = env.path().join("d.tar");
    save(&mut a.client, &[&oci], "docker-archive", &d_tar)
        .await
        .unwrap();
    let v: Value = serde_json::from_str(&run_ok(
        skopeo()
            .arg("inspect")
            .arg(format!("docker-archive:{}", d_tar.display())),
    ))
    .unwrap();
    assert_eq!(v["Layers"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["RepoTags"], json!([]), "{v}");
    run_ok(
        skopeo()
            .arg("copy")
            .arg(format!("docker-archive:{}", d_tar.display()))
            .arg(format!(
                "oci:{}:x",
                env.path().join("from-docker").display()
            )),
    );
    let o_tar = env.path().join("o.tar");
    save(&mut a.client, &[&oci], "oci-archive", &o_tar)
        .await
        .unwrap();
    let dest = env.path().join("from-oci");
    run_ok(
        skopeo()
            .arg("copy")
            .arg(format!("oci-archive:{}:latest", o_tar.display()))
            .arg(format!("oci:{}:x", dest.display())),
    );
    // An OCI manifest needs no conversion: skopeo keeps its digest.
    let index: Value =
        serde_json::from_slice(&std::fs::read(dest.join("index.json")).unwrap()).unwrap();
    assert_eq!(
        index["manifests"][0]["digest"],
        ours["Descriptor"]["digest"]
    );

    // skopeo's, read by us, into a fresh store: the same image id.
    let env_b = TestEnv::new("imaged-skopeo-b");
    let mut b = Imaged::start(&env_b).await;
    let so_tar = env.path().join("so.tar");
    run_ok(
        skopeo()
            .args(["copy", "--src-tls-verify=false"])
            .arg(format!("docker://{oci}"))
            .arg(format!("oci-archive:{}:skopeo/bb:2", so_tar.display())),
    );
    let lines = load(&mut b.client, &so_tar).await.unwrap();
    assert_eq!(lines, vec!["Loaded image: skopeo/bb:2".to_string()]);
    let v = inspect(&mut b.client, "skopeo/bb:2").await.unwrap();
    assert_eq!(v["Id"], ours["Id"]);
    // The manifest skopeo wrote is the one the loaded image has (loaded first: an image
    // already in the store keeps its record when loaded again from another archive).
    let index: Value = serde_json::from_slice(
        tar_entries(&std::fs::read(&so_tar).unwrap())["index.json"]
            .as_ref()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(v["Descriptor"]["digest"], index["manifests"][0]["digest"]);

    let s_tar = env.path().join("s.tar");
    run_ok(
        skopeo()
            .args(["copy", "--src-tls-verify=false"])
            .arg(format!("docker://{oci}"))
            .arg(format!("docker-archive:{}:skopeo/bb:1", s_tar.display())),
    );
    let lines = load(&mut b.client, &s_tar).await.unwrap();
    assert_eq!(lines, vec!["Loaded image: skopeo/bb:1".to_string()]);
    assert_eq!(
        inspect(&mut b.client, "skopeo/bb:1").await.unwrap()["Id"],
        ours["Id"]
    );
    // The fixture files: a docker-archive, and an OCI layout whose tags are bare ("latest",
    // and "multi", an index resolved for this platform).
    let lines = load(&mut b.client, &fixtures().join("busybox.tar"))
        .await
        .unwrap();
    assert_eq!(lines, vec!["Loaded image: busybox:latest".to_string()]);
    let mut layout = tar::Builder::new(Vec::new());
    layout.follow_symlinks(false);
    layout
        .append_dir_all(".", fixtures().join("busybox-oci"))
        .unwrap();
    let lines = load_bytes(&mut b.client, &layout.into_inner().unwrap())
        .await
        .unwrap();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("Loaded image ID: sha256:"),
        "{lines:?}"
    );
    let v = inspect(&mut b.client, "busybox:latest").await.unwrap();
    assert!(top_layer(&v).join("bin/busybox").is_file());
    // One layer, whatever archive it came in: one snapshot.
    assert_eq!(
        std::fs::read_dir(env_b.root().join("snapshots"))
            .unwrap()
            .count(),
        1
    );
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_loads_our_save_and_we_load_dockers() {
    if !can_run() {
        return;
    }
    let env = TestEnv::new("imaged-docker");
    let Some(dockerd) = Dockerd::start(&env) else {
        return;
    };
    let reg = Registry::start(&env);
    let mut a = Imaged::start(&env).await;
    let oci = reg.reference("berth/busybox:latest");
    pull(&mut a.client, &oci).await.unwrap();
    let hello = commit_hello(&mut a, &oci, "mine/hello:1").await;
    let base = inspect(&mut a.client, &oci).await.unwrap()["Id"].clone();

    let zst = zstd::encode_all(rootfs_tar().as_slice(), 3).unwrap();
    import(&mut a.client, "mine/zstd:1", &[], "", &zst)
        .await
        .unwrap();
    let ours = env.path().join("ours.tar");
    save(
        &mut a.client,
        &[&oci, "mine/hello:1", "mine/zstd:1"],
        "",
        &ours,
    )
    .await
    .unwrap();
    let out = dockerd.run(&env, &["load", "-i", &ours.display().to_string()]);
    assert!(out.contains("Loaded image: mine/hello:1"), "{out}");
    assert!(out.contains(&format!("Loaded image: {oci}")), "{out}");
    // A zstd layer too (an import of a zstd tarball keeps it so): Docker 20.10 takes it.
    assert!(out.contains("Loaded image: mine/zstd:1"), "{out}");
    let out = dockerd.run(
        &env,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "mine/zstd:1",
            "/bin/busybox",
            "echo",
            "zstd",
        ],
    );
    assert_eq!(out, "zstd\n");
    let id = dockerd.run(
        &env,
        &["image", "inspect", "--format", "{{.Id}}", "mine/hello:1"],
    );
    assert_eq!(id.trim(), hello);
    let id = dockerd.run(&env, &["image", "inspect", "--format", "{{.Id}}", &oci]);
    assert_eq!(id.trim(), base.as_str().unwrap());
    // Docker unpacked our layers into a root it can run.
    let out = dockerd.run(
        &env,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "mine/hello:1",
            "cat",
            "/hello.txt",
        ],
    );
    assert_eq!(out, "hi\n");

    // Docker 20.10's own format back: <v1 id>/layer.tar, uncompressed; the shared base layer
    // is written once and linked from the second image's directory.
    dockerd.run(&env, &["tag", "mine/hello:1", "mine/hello:docker"]);
    let theirs = env.path().join("theirs.tar");
    dockerd.run(
        &env,
        &[
            "save",
            "-o",
            &theirs.display().to_string(),
            "mine/hello:docker",
            &oci,
        ],
    );
    let links = tar_symlinks(&std::fs::read(&theirs).unwrap());
    assert!(
        links.iter().any(|(name, _)| name.ends_with("/layer.tar")),
        "docker save linked no layer: {links:?}"
    );
    let env_b = TestEnv::new("imaged-docker-b");
    let mut b = Imaged::start(&env_b).await;
    let lines = load(&mut b.client, &theirs).await.unwrap();
    assert!(
        lines.contains(&"Loaded image: mine/hello:docker".to_string()),
        "{lines:?}"
    );
    let v = inspect(&mut b.client, "mine/hello:docker").await.unwrap();
    assert_eq!(v["Id"], hello.as_str());
    assert_eq!(
        std::fs::read_to_string(top_layer(&v).join("hello.txt")).unwrap(),
        "hi\n"
    );
    assert_eq!(inspect(&mut b.client, &oci).await.unwrap()["Id"], base);
}

/// A plain tar of the busybox fixture's root filesystem, as `tar -C rootfs -c .` makes it.
fn rootfs_tar() -> Vec<u8> {
    let mut t = tar::Builder::new(Vec::new());
    t.follow_symlinks(false);
    t.append_dir_all(".", fixtures().join("busybox/rootfs"))
        .unwrap();
    t.into_inner().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_makes_a_one_layer_image_as_docker_import_does() {
    // The fixtures' build needs python3 and runc.
    if !require_root() || !require_cmds(&["python3", "runc"]) {
        return;
    }
    let env = TestEnv::new("imaged-import");
    let mut d = Imaged::start(&env).await;
    let plain = rootfs_tar();
    let diff_id = format!("sha256:{}", sha256_hex(&plain));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&plain).unwrap();
    let gz = gz.finish().unwrap();
    let zst = zstd::encode_all(plain.as_slice(), 3).unwrap();

    let changes = [
        r#"CMD ["sh", "-c", "echo hi"]"#,
        "ENV GREETING=hello PATH=/bin:/usr/bin",
        "WORKDIR /srv",
        "USER nobody",
        "EXPOSE 8080",
        r#"LABEL org.example.name="imported busybox""#,
        "ENTRYPOINT [\"/bin/busybox\"]",
    ];
    let id = import(&mut d.client, "imported/bb:1", &changes, "", &gz)
        .await
        .unwrap();
    let v = inspect(&mut d.client, "imported/bb:1").await.unwrap();
    assert_eq!(v["Id"], id.as_str());
    assert_eq!(v["RootFS"]["Layers"], json!([diff_id]));
    assert_eq!(v["Comment"], "Imported from -");
    let c = &v["Config"];
    assert_eq!(c["Cmd"], json!(["sh", "-c", "echo hi"]));
    assert_eq!(c["Entrypoint"], json!(["/bin/busybox"]));
    assert_eq!(c["Env"], json!(["GREETING=hello", "PATH=/bin:/usr/bin"]));
    assert_eq!(c["WorkingDir"], "/srv");
    assert_eq!(c["User"], "nobody");
    assert_eq!(c["ExposedPorts"], json!({"8080/tcp": {}}));
    assert_eq!(c["Labels"], json!({"org.example.name": "imported busybox"}));
    assert!(top_layer(&v).join("bin/busybox").is_file());
    let hist = d
        .client
        .history(pb::HistoryRequest { image: id.clone() })
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert_eq!(hist.len(), 1);
    assert_eq!(hist[0].comment, "Imported from -");

    // Plain and zstd tarballs too; the same content is the same layer, unpacked once.
    let plain_id = import(&mut d.client, "", &[], "from a test", &plain)
        .await
        .unwrap();
    let v = inspect(&mut d.client, &plain_id).await.unwrap();
    assert_eq!(v["RepoTags"], json!([]));
    assert_eq!(v["Comment"], "from a test");
    let zst_id = import(&mut d.client, "imported/bb:zstd", &[], "", &zst)
        .await
        .unwrap();
    let v = inspect(&mut d.client, &zst_id).await.unwrap();
    assert_eq!(v["RootFS"]["Layers"], json!([diff_id]));
    assert_eq!(
        std::fs::read_dir(env.root().join("snapshots"))
            .unwrap()
            .count(),
        1
    );

    // Bad input says what is wrong and leaves nothing.
    let before = list(&mut d.client).await.len();
    let e = import(&mut d.client, "x:1", &["RUN rm -rf /"], "", &gz)
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
    assert!(
        e.message().contains("RUN is not a valid change command"),
        "{e}"
    );
    let e = import(&mut d.client, "x:1", &[], "", b"")
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
    let e = import(&mut d.client, "x:1", &[], "", &gz[..gz.len() / 2])
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
    assert_eq!(list(&mut d.client).await.len(), before);
    // Three images: three configs, three manifests, three layer blobs; one snapshot.
    assert_store_holds_only(&env.root(), 9, 1, "after refused imports");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_gives_the_merged_root_of_a_snapshot_and_leaves_no_mount() {
    if !can_run() {
        return;
    }
    let env = TestEnv::new("imaged-export");
    let reg = Registry::start(&env);
    let mut d = Imaged::start(&env).await;
    let image = reg.reference("berth/busybox:latest");
    pull(&mut d.client, &image).await.unwrap();
    let m = d
        .client
        .prepare(pb::PrepareRequest {
            key: "c1".into(),
            image: image.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let upper = Path::new(&m.upper);
    std::fs::write(upper.join("hello.txt"), "hi\n").unwrap();
    // What a container's `rm /bin/ls` leaves in its upper directory: a whiteout.
    std::fs::create_dir(upper.join("bin")).unwrap();
    nix::sys::stat::mknod(
        &upper.join("bin/ls"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::empty(),
        0,
    )
    .unwrap();

    // The container runs: its root is mounted (in a private namespace, as a runtime's would
    // be in the container's), and it deletes and writes through the mount while we export.
    let (mounted_tx, mounted_rx) = std::sync::mpsc::channel::<()>();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let rootfs = env.path().join("rootfs");
    std::fs::create_dir(&rootfs).unwrap();
    let container = {
        let (rootfs, options) = (rootfs.clone(), m.options.clone());
        std::thread::spawn(move || {
            use nix::mount::{mount, MsFlags};
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).unwrap();
            mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                None::<&str>,
            )
            .unwrap();
            mount(
                Some("overlay"),
                &rootfs,
                Some("overlay"),
                MsFlags::empty(),
                Some(options.as_str()),
            )
            .unwrap();
            std::fs::remove_file(rootfs.join("bin/cat")).unwrap();
            std::fs::write(rootfs.join("etc/motd"), "running\n").unwrap();
            mounted_tx.send(()).unwrap();
            // The mount goes with this thread's namespace.
            let _ = done_rx.recv();
        })
    };
    mounted_rx.recv().unwrap();
    let tar = export(&mut d.client, "c1").await;
    done_tx.send(()).unwrap();
    container.join().unwrap();
    let entries = tar_entries(&tar.unwrap());
    assert!(
        !entries.contains_key("bin/cat"),
        "deleted in the running container"
    );
    assert_eq!(entries["etc/motd"].as_deref(), Some(&b"running\n"[..]));
    assert_eq!(entries["hello.txt"].as_deref(), Some(&b"hi\n"[..]));
    let busybox = entries["bin/busybox"]
        .as_ref()
        .expect("bin/busybox is a file");
    assert!(busybox.len() > 500_000);
    assert!(entries.contains_key("bin/sh"), "{:?}", entries.keys());
    assert!(!entries.contains_key("bin/ls"), "the whiteout hides it");
    assert!(
        !entries
            .keys()
            .any(|k| k.starts_with('/') || k.starts_with("./")),
        "entries are relative, as docker export writes them"
    );

    // A snapshot on no image: its upper directory is the root.
    let m = d
        .client
        .prepare(pb::PrepareRequest {
            key: "c2".into(),
            image: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    std::fs::write(Path::new(&m.upper).join("only.txt"), "x").unwrap();
    let entries = tar_entries(&export(&mut d.client, "c2").await.unwrap());
    assert_eq!(entries.keys().collect::<Vec<_>>(), ["only.txt"]);

    let e = export(&mut d.client, "nope").await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e}");

    // No mount is left anywhere: not in our namespace, not in the daemon's, and the
    // mountpoints are gone.
    let run = env.run().display().to_string();
    for info in [
        "/proc/self/mountinfo".to_string(),
        format!("/proc/{}/mountinfo", d.child.id()),
    ] {
        let text = std::fs::read_to_string(&info).unwrap();
        assert!(!text.contains(&run), "{info} has a mount under {run}");
    }
    let left: Vec<_> = std::fs::read_dir(env.run())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().starts_with("export-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

// --- hostile and broken archives ---------------------------------------------------------

enum E<'a> {
    File(&'a str, Vec<u8>),
    Symlink(&'a str, &'a str),
}

/// A tar of `entries` with the names exactly as given (`..` and all).
fn raw_tar(entries: &[E<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        let (name, data, target): (&str, &[u8], Option<&str>) = match e {
            E::File(n, d) => (n, d, None),
            E::Symlink(n, t) => (n, &[], Some(t)),
        };
        h.set_entry_type(if target.is_some() {
            tar::EntryType::Symlink
        } else {
            tar::EntryType::Regular
        });
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(t) = target {
            h.as_old_mut().linkname[..t.len()].copy_from_slice(t.as_bytes());
        }
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

fn digest(data: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(data))
}

fn config(diff_ids: &[String]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap()
}

fn manifest_json(config: &str, tags: &[&str], layers: &[&str]) -> Vec<u8> {
    serde_json::to_vec(&json!([{"Config": config, "RepoTags": tags, "Layers": layers}])).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_or_hostile_archives_are_refused_and_leave_nothing() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("imaged-badload");
    let mut d = Imaged::start(&env).await;
    let good_layer = raw_tar(&[E::File("hello", b"hi\n".to_vec())]);
    let good_config = config(&[digest(&good_layer)]);
    let good = raw_tar(&[
        E::File("l/layer.tar", good_layer.clone()),
        E::File("c.json", good_config.clone()),
        E::File(
            "manifest.json",
            manifest_json("c.json", &["good:1"], &["l/layer.tar"]),
        ),
    ]);
    let lines = load_bytes(&mut d.client, &good).await.unwrap();
    assert_eq!(lines, vec!["Loaded image: good:1".to_string()]);
    // Config, manifest, layer; one snapshot.
    assert_store_holds_only(&env.root(), 3, 1, "after the good load");

    let other_layer = raw_tar(&[E::File("other", b"other".to_vec())]);
    let escaping_layer = raw_tar(&[E::File("../../escape", b"out".to_vec())]);
    let symlink_layer = raw_tar(&[
        E::Symlink("etc", "/etc"),
        E::File("etc/berth-escape", b"out".to_vec()),
    ]);
    let docker = |layer: &[u8], diff_id: String, tags: &[&str]| {
        raw_tar(&[
            E::File("x/layer.tar", layer.to_vec()),
            E::File("c.json", config(&[diff_id])),
            E::File(
                "manifest.json",
                manifest_json("c.json", tags, &["x/layer.tar"]),
            ),
        ])
    };
    // An OCI layout whose layer blob is not what its name says.
    let oci_bad_blob = {
        let cfg = config(&[digest(&other_layer)]);
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(&cfg), "size": cfg.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest(&other_layer), "size": other_layer.len()}],
        }))
        .unwrap();
        let index = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest(&manifest), "size": manifest.len()}],
        }))
        .unwrap();
        let blob = |d: &[u8]| format!("blobs/sha256/{}", sha256_hex(d));
        let (m, c, l) = (blob(&manifest), blob(&cfg), blob(&other_layer));
        let mut tampered = other_layer.clone();
        tampered[600] ^= 1;
        raw_tar(&[
            E::File("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
            E::File("index.json", index),
            E::File(&m, manifest.clone()),
            E::File(&c, cfg.clone()),
            E::File(&l, tampered),
        ])
    };
    // Two images: the first new and fine, the second wrong; nothing of the first may stay.
    let half_good = raw_tar(&[
        E::File("a/layer.tar", other_layer.clone()),
        E::File("a.json", config(&[digest(&other_layer)])),
        E::File("b/layer.tar", other_layer.clone()),
        E::File("b.json", config(&[digest(b"something else")])),
        E::File(
            "manifest.json",
            serde_json::to_vec(&json!([
                {"Config": "a.json", "RepoTags": ["half:a"], "Layers": ["a/layer.tar"]},
                {"Config": "b.json", "RepoTags": ["half:b"], "Layers": ["b/layer.tar"]},
            ]))
            .unwrap(),
        ),
    ]);
    let mut truncated = good.clone();
    truncated.truncate(good.len() / 2);

    let other_digest = digest(&other_layer);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("a blob that is not its digest", oci_bad_blob, &other_digest),
        (
            "a layer that is not its diff_id",
            docker(&other_layer, digest(b"not this"), &["bad:diff"]),
            "diff_id",
        ),
        (
            "a layer claiming an existing snapshot's diff_id",
            docker(&other_layer, digest(&good_layer), &["bad:reuse"]),
            "diff_id",
        ),
        ("two images, the second wrong", half_good, "diff_id"),
        (
            "an entry climbing out of the archive",
            raw_tar(&[E::File("../evil", b"x".to_vec())]),
            "climbs above the archive root",
        ),
        (
            "a layer file that is a symlink out",
            raw_tar(&[
                E::Symlink("x/layer.tar", "../../../../etc/passwd"),
                E::File("c.json", good_config.clone()),
                E::File(
                    "manifest.json",
                    manifest_json("c.json", &["bad:link"], &["x/layer.tar"]),
                ),
            ]),
            "outside the archive",
        ),
        (
            "a manifest naming a config outside",
            raw_tar(&[
                E::File("l/layer.tar", good_layer.clone()),
                E::File(
                    "manifest.json",
                    manifest_json("../../../etc/hostname", &["bad:cfg"], &["l/layer.tar"]),
                ),
            ]),
            "outside the archive",
        ),
        (
            "a missing layer file",
            raw_tar(&[
                E::File("c.json", good_config.clone()),
                E::File(
                    "manifest.json",
                    manifest_json("c.json", &["bad:miss"], &["l/layer.tar"]),
                ),
            ]),
            "no such file in the archive",
        ),
        (
            "a layer climbing out of its root",
            docker(&escaping_layer, digest(&escaping_layer), &["bad:escape"]),
            "climbs above the layer root",
        ),
        (
            "a layer writing through a symlink out",
            docker(&symlink_layer, digest(&symlink_layer), &["bad:symlink"]),
            "points outside the layer",
        ),
        ("a truncated archive", truncated, "reading the archive"),
        (
            "not an archive at all",
            b"this is not a tar file, not even close; it goes on for a while".repeat(20),
            "",
        ),
        (
            "a tar without image metadata",
            raw_tar(&[E::File("hello", b"hi".to_vec())]),
            "not an image archive",
        ),
    ];
    for (what, data, want) in cases {
        let e = load_bytes(&mut d.client, &data).await.expect_err(what);
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{what}: {e}");
        assert!(e.message().contains(want), "{what}: {e}");
        let tags: Vec<String> = list(&mut d.client)
            .await
            .into_iter()
            .flat_map(|i| i.repo_tags)
            .collect();
        assert_eq!(tags, vec!["good:1".to_string()], "{what}");
        assert_store_holds_only(&env.root(), 3, 1, what);
    }
    assert!(!env.root().join("escape").exists());
    assert!(!Path::new("/etc/berth-escape").exists());
    // The good image is still whole.
    let v = inspect(&mut d.client, "good:1").await.unwrap();
    assert_eq!(
        std::fs::read_to_string(top_layer(&v).join("hello")).unwrap(),
        "hi\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_loads_and_a_pull_of_one_image_share_one_snapshot() {
    if !can_run() {
        return;
    }
    let env = TestEnv::new("imaged-loadconc");
    let reg = Registry::start(&env);
    let d = Imaged::start(&env).await;
    let image = reg.reference("berth/busybox:latest");
    let data = std::fs::read(fixtures().join("busybox.tar")).unwrap();
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let (mut c, data) = (d.client.clone(), data.clone());
        tasks.push(tokio::spawn(async move {
            load_bytes(&mut c, &data).await.map(|_| ())
        }));
    }
    let (mut c, r) = (d.client.clone(), image.clone());
    tasks.push(tokio::spawn(
        async move { pull(&mut c, &r).await.map(|_| ()) },
    ));
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    // One layer, whoever unpacked it first; the others found it.
    assert_eq!(
        std::fs::read_dir(env.root().join("snapshots"))
            .unwrap()
            .count(),
        1
    );
    let mut c = d.client.clone();
    let v = inspect(&mut c, "busybox:latest").await.unwrap();
    assert_eq!(v["Id"], inspect(&mut c, &image).await.unwrap()["Id"]);
    // Counted right: removing the image frees the snapshot, nothing more is left.
    let r = remove(&mut c, &["busybox:latest", &image], true).await;
    assert!(r.errors.is_empty(), "{r:?}");
    assert!(list(&mut c).await.is_empty());
    assert_store_holds_only(&env.root(), 0, 0, "after removing the loaded image");
}
