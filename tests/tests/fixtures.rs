//! The fixtures are what every other test stands on: check that they are
//! valid for the tools that will consume them.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;

use berth_tests::{fixtures, require_cmds, require_root, run, workspace_root, Bundle, TestEnv};
use serde_json::Value;

fn read_json(path: &Path) -> Value {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn sha256_hex(path: &Path) -> String {
    let out = run(Command::new("sha256sum").arg(path));
    out.assert_success();
    out.stdout.split_whitespace().next().unwrap().to_string()
}

/// Reads a blob named by a descriptor, checking its size and digest.
fn blob(layout: &Path, descriptor: &Value) -> PathBuf {
    let digest = descriptor["digest"]
        .as_str()
        .expect("descriptor has a digest");
    let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
    let path = layout.join("blobs/sha256").join(hex);
    let size = fs::metadata(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .len();
    assert_eq!(Some(size), descriptor["size"].as_u64(), "size of {digest}");
    assert_eq!(sha256_hex(&path), hex, "content of {digest}");
    path
}

fn script(name: &str) -> PathBuf {
    workspace_root().join("tests/fixtures").join(name)
}

#[test]
fn busybox_bundle_has_a_usable_rootfs() {
    let bundle = fixtures().join("busybox");
    let rootfs = bundle.join("rootfs");
    assert!(rootfs.join("bin/busybox").is_file());
    for applet in ["bin/sh", "bin/ls", "bin/cat", "usr/bin/env", "sbin/ip"] {
        assert_eq!(
            fs::read_link(rootfs.join(applet)).unwrap_or_else(|e| panic!("{applet}: {e}")),
            PathBuf::from("/bin/busybox"),
            "{applet}"
        );
    }
    for dir in ["proc", "sys", "dev", "tmp", "etc", "root", "home"] {
        assert!(rootfs.join(dir).is_dir(), "{dir}/ missing");
    }
    let passwd = fs::read_to_string(rootfs.join("etc/passwd")).unwrap();
    assert!(passwd.lines().any(|l| l.starts_with("root:x:0:0:")));
    assert!(passwd
        .lines()
        .any(|l| l.starts_with("nobody:x:65534:65534:")));
    let group = fs::read_to_string(rootfs.join("etc/group")).unwrap();
    assert!(group.lines().any(|l| l.starts_with("root:x:0:")));
    assert!(group.lines().any(|l| l.starts_with("nobody:x:65534:")));

    let config = read_json(&bundle.join("config.json"));
    assert_eq!(config["process"]["terminal"], false);
    assert_eq!(
        config["process"]["args"],
        serde_json::json!(["sh", "-c", "echo hello from busybox"])
    );
    assert_eq!(config["root"]["path"], "rootfs");
}

#[test]
fn busybox_bundle_runs_under_runc() {
    if !require_root() || !require_cmds(&["runc"]) {
        return;
    }
    let env = TestEnv::new("runc-bundle");
    let bundle = Bundle::busybox(&env);
    let out = run(env
        .oci_runtime("runc")
        .args(["run", "--bundle"])
        .arg(bundle.path())
        .arg(env.unique("c")));
    out.assert_success();
    assert_eq!(out.stdout, "hello from busybox\n");

    bundle.args(&["sh", "-c", "exit 7"]);
    let out = run(env
        .oci_runtime("runc")
        .args(["run", "--bundle"])
        .arg(bundle.path())
        .arg(env.unique("c2")));
    out.assert_code(7);
}

#[test]
fn busybox_oci_layout_is_valid_and_tagged_latest() {
    let layout = fixtures().join("busybox-oci");
    assert_eq!(
        read_json(&layout.join("oci-layout"))["imageLayoutVersion"],
        "1.0.0"
    );
    let index = read_json(&layout.join("index.json"));
    let manifests = index["manifests"].as_array().unwrap();
    let tag = |d: &Value| d["annotations"]["org.opencontainers.image.ref.name"].clone();
    assert_eq!(manifests.len(), 2);
    assert_eq!(tag(&manifests[0]), "latest");
    assert_eq!(tag(&manifests[1]), "multi");
    // "multi" is an image index whose only entry is the "latest" manifest.
    let nested = read_json(&blob(&layout, &manifests[1]));
    assert_eq!(
        nested["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    assert_eq!(nested["manifests"][0]["digest"], manifests[0]["digest"]);
    assert_eq!(nested["manifests"][0]["platform"]["architecture"], "amd64");
    let manifest = read_json(&blob(&layout, &manifests[0]));
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    let config = read_json(&blob(&layout, &manifest["config"]));
    assert_eq!(config["config"]["Cmd"], serde_json::json!(["sh"]));
    assert!(config["config"]["Env"][0]
        .as_str()
        .unwrap()
        .starts_with("PATH="));
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    assert_eq!(
        layers[0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    let layer = blob(&layout, &layers[0]);
    // The diff id is the digest of the uncompressed layer.
    let unpacked = run(Command::new("sh")
        .arg("-c")
        .arg("gzip -dc \"$0\" | sha256sum")
        .arg(&layer));
    unpacked.assert_success();
    assert_eq!(
        config["rootfs"]["diff_ids"][0],
        format!(
            "sha256:{}",
            unpacked.stdout.split_whitespace().next().unwrap()
        )
    );
    let listing = run(Command::new("tar").arg("tzf").arg(&layer));
    listing.assert_success();
    assert!(listing.stdout.lines().any(|l| l == "bin/sh"));

    if require_cmds(&["skopeo", "umoci"]) {
        let out = run(Command::new("skopeo")
            .arg("inspect")
            .arg(format!("oci:{}:latest", layout.display())));
        out.assert_success();
        let out = run(Command::new("umoci")
            .args(["stat", "--image"])
            .arg(format!("{}:latest", layout.display())));
        out.assert_success();
    }
}

#[test]
fn docker_archive_holds_the_same_image() {
    if !require_cmds(&["skopeo"]) {
        return;
    }
    let fx = fixtures();
    let archive = run(Command::new("skopeo")
        .args(["inspect", "--config"])
        .arg(format!(
            "docker-archive:{}",
            fx.join("busybox.tar").display()
        )));
    archive.assert_success();
    let oci = run(Command::new("skopeo")
        .args(["inspect", "--config"])
        .arg(format!("oci:{}:latest", fx.join("busybox-oci").display())));
    oci.assert_success();
    let archive: Value = serde_json::from_str(&archive.stdout).unwrap();
    let oci: Value = serde_json::from_str(&oci.stdout).unwrap();
    assert_eq!(archive["rootfs"], oci["rootfs"]);
    assert_eq!(archive["config"], oci["config"]);

    let listing = run(Command::new("tar").arg("tf").arg(fx.join("busybox.tar")));
    listing.assert_success();
    let manifest = run(Command::new("tar")
        .arg("xOf")
        .arg(fx.join("busybox.tar"))
        .arg("manifest.json"));
    manifest.assert_success();
    let manifest: Value = serde_json::from_str(&manifest.stdout).unwrap();
    assert_eq!(
        manifest[0]["RepoTags"],
        serde_json::json!(["busybox:latest"])
    );
}

#[test]
fn build_is_idempotent_under_concurrent_callers() {
    let env = TestEnv::new("fixture-build");
    let out_dir = env.path().join("fixtures");
    let builders: Vec<_> = (0..2)
        .map(|_| {
            let mut cmd = env.command(script("build.sh"));
            cmd.env("BERTH_FIXTURES", &out_dir);
            thread::spawn(move || run(&mut cmd))
        })
        .collect();
    for b in builders {
        b.join().unwrap().assert_success();
    }
    let index = out_dir.join("busybox-oci/index.json");
    let first = fs::read(&index).unwrap();
    let inode = fs::metadata(&index).unwrap();
    // A third call finds everything current and leaves it alone.
    run(env
        .command(script("build.sh"))
        .env("BERTH_FIXTURES", &out_dir))
    .assert_success();
    let again = fs::metadata(&index).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(inode.ino(), again.ino(), "fixtures were rebuilt");
    // Reproducible: the same inputs give the same image as the shared copy.
    assert_eq!(
        first,
        fs::read(fixtures().join("busybox-oci/index.json")).unwrap()
    );
}

#[test]
fn build_fails_clearly_without_busybox() {
    let env = TestEnv::new("fixture-nobusybox");
    let out = run(env
        .command(script("build.sh"))
        .env("BERTH_FIXTURES", env.path().join("fixtures"))
        .env("BERTH_BUSYBOX", "/nonexistent/busybox"));
    out.assert_failure_mentioning("/nonexistent/busybox: missing");
}

#[test]
fn registry_serves_the_pushed_busybox_image() {
    if !require_cmds(&["docker-registry", "skopeo", "curl"]) {
        return;
    }
    let env = TestEnv::new("registry");
    let dir = env.path().join("registry");
    let started = run(env.command(script("registry.sh")).arg("start").arg(&dir));
    started.assert_success();
    let port: u16 = fs::read_to_string(dir.join("port"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(started.stdout.trim(), port.to_string());

    // Starting a second one on the same dir is refused.
    let again = run(env.command(script("registry.sh")).arg("start").arg(&dir));
    again.assert_failure_mentioning("already running");

    let catalog = run(Command::new("curl")
        .arg("-fsS")
        .arg(format!("http://127.0.0.1:{port}/v2/_catalog")));
    catalog.assert_success();
    assert!(
        catalog.stdout.contains("berth/busybox"),
        "{}",
        catalog.stdout
    );

    // Each tag has the manifest type it was pushed as.
    let accept = [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
    .join(", ");
    for (tag, media_type) in [
        ("latest", "application/vnd.oci.image.manifest.v1+json"),
        (
            "docker",
            "application/vnd.docker.distribution.manifest.v2+json",
        ),
        ("multi", "application/vnd.oci.image.index.v1+json"),
    ] {
        let out = run(Command::new("curl")
            .args(["-fsS", "-H"])
            .arg(format!("Accept: {accept}"))
            .arg(format!(
                "http://127.0.0.1:{port}/v2/berth/busybox/manifests/{tag}"
            )));
        out.assert_success();
        let manifest: Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(manifest["mediaType"], media_type, "tag {tag}");
    }

    // Pull it back and compare with the fixture, layer for layer.
    run(env.command(script("registry.sh")).arg("stop").arg(&dir)).assert_success();
    assert!(!dir.join("pid").exists());
    let gone = run(Command::new("curl")
        .arg("-fsS")
        .arg(format!("http://127.0.0.1:{port}/v2/")));
    gone.assert_failure();

    let stop_again = run(env.command(script("registry.sh")).arg("stop").arg(&dir));
    stop_again.assert_failure_mentioning("no registry started there");
}

/// Docker's default capability set, which nginx needs to drop privileges.
const DOCKER_CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

#[test]
fn debian_image_serves_http_under_runc() {
    let Some(debian) = berth_tests::debian_fixtures() else {
        eprintln!("skipped: set BERTH_E2E_FULL=1 for the Debian image tier");
        return;
    };
    if !require_root() || !require_cmds(&["runc", "umoci", "curl"]) {
        return;
    }
    let env = TestEnv::new("debian-nginx");
    let bundle_dir = env.path().join("nginx");
    run(Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:latest", debian.join("debian-oci").display()))
        .arg(&bundle_dir))
    .assert_success();
    let bundle = Bundle::at(&bundle_dir);
    bundle.edit_config(|c| {
        assert_eq!(
            c["process"]["args"],
            serde_json::json!(["nginx", "-g", "daemon off;"])
        );
        c["process"]["terminal"] = Value::from(false);
        for set in ["bounding", "effective", "permitted"] {
            c["process"]["capabilities"][set] = serde_json::json!(DOCKER_CAPS);
        }
    });
    let id = env.unique("nginx");
    run(env
        .oci_runtime("runc")
        .args(["run", "-d", "--bundle"])
        .arg(bundle.path())
        .arg(&id))
    .assert_success();
    let state = run(env.oci_runtime("runc").args(["state", &id]));
    state.assert_success();
    let pid = serde_json::from_str::<Value>(&state.stdout)
        .unwrap_or_else(|e| panic!("state is not JSON ({e}): {:?}", state.stdout))["pid"]
        .as_i64()
        .expect("state has a pid");

    // nginx needs a moment before it listens; ask until it answers.
    let mut page = None;
    for _ in 0..100 {
        let out = run(Command::new("nsenter")
            .args(["-t", &pid.to_string(), "-n", "curl", "-fsS"])
            .arg("http://127.0.0.1:80/"));
        if out.success() {
            page = Some(out.stdout);
            break;
        }
        thread::sleep(std::time::Duration::from_millis(100));
    }
    let page = page.expect("nginx never answered on port 80");
    assert!(page.contains("Welcome to nginx"), "{page}");
    run(env.oci_runtime("runc").args(["delete", "-f", &id])).assert_success();
}

#[test]
fn registry_wrapper_serves_until_dropped() {
    if !require_cmds(&["docker-registry", "skopeo", "curl"]) {
        return;
    }
    let env = TestEnv::new("registry-wrapper");
    let registry = berth_tests::Registry::start(&env);
    let reference = registry.reference("berth/busybox:multi");
    let out = run(Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{reference}")));
    out.assert_success();
    let index: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );

    let url = format!("http://{}/v2/", registry.host());
    drop(registry);
    run(Command::new("curl").arg("-fsS").arg(&url)).assert_failure();
}
