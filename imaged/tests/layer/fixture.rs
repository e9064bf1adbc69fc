//! A real image's layer: the busybox fixture's OCI layout (tests/fixtures/build.sh).

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use berth_imaged::digest::Digest;
use berth_imaged::layer::{unpack, UnpackOptions};
use serde_json::Value;

use crate::support::*;

fn json(path: &Path) -> Value {
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

fn blob(layout: &Path, digest: &str) -> std::path::PathBuf {
    let d: Digest = digest.parse().unwrap();
    layout.join("blobs/sha256").join(d.hex())
}

#[test]
fn busybox_layer_unpacks() {
    if !root() || !berth_tests::require_cmds(&["busybox", "runc", "python3"]) {
        return;
    }
    let layout = berth_tests::fixtures().join("busybox-oci");
    let index = json(&layout.join("index.json"));
    let manifest_digest = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == "latest")
        .expect("tag latest")["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let manifest = json(&blob(&layout, &manifest_digest));
    let layer = &manifest["layers"][0];
    let config = json(&blob(
        &layout,
        manifest["config"]["digest"].as_str().unwrap(),
    ));

    let s = Scratch::new();
    let digest = layer["digest"].as_str().unwrap();
    let file = fs::File::open(blob(&layout, digest)).unwrap();
    let report = unpack(file, &s.dest, &UnpackOptions::new(digest)).unwrap();
    assert_eq!(
        report.diff_id.to_string(),
        config["rootfs"]["diff_ids"][0].as_str().unwrap(),
        "diff_id of the uncompressed stream"
    );
    let busybox = fs::symlink_metadata(s.dest.join("bin/busybox")).unwrap();
    assert!(busybox.is_file());
    assert_eq!(busybox.mode() & 0o7777, 0o755);
    assert_eq!(busybox.len(), fs::metadata("/bin/busybox").unwrap().len());
    assert_eq!(
        fs::read_link(s.dest.join("bin/sh")).unwrap(),
        Path::new("/bin/busybox")
    );
    assert_eq!(
        fs::metadata(s.dest.join("tmp")).unwrap().mode() & 0o7777,
        0o1777
    );
    s.assert_untouched();
}
