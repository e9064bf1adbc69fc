//! `commit` and `diff` of a container's snapshot. The upper directory becomes a gzip layer,
//! written and hashed in one pass; the new image is its parent plus that layer, with the
//! config, history and manifest Docker would write. The layer is then unpacked like a
//! pulled one, so the new image runs on exactly the bytes it would push.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use berth_proto::imaged as pb;
use serde_json::json;
use tonic::Status;

use crate::daemon::{now_rfc3339, Daemon};
use crate::digest::{Digest, Hasher};
use crate::layer::{diff_without, unpack, Compression, UnpackOptions};
use crate::placeholders::placeholders;
use crate::reference::Reference;
use crate::service::{active_status, image_status};
use crate::store::meta::{ImageRecord, LayerRef, SnapshotRecord};
use crate::store::snapshots::disk_usage;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

fn internal(e: impl std::fmt::Display) -> Status {
    Status::internal(e.to_string())
}

/// A `Write` that hashes and counts what goes through it.
struct Hashing<W> {
    inner: W,
    hasher: Hasher,
    size: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

pub fn commit(d: &Daemon, req: &pb::CommitRequest) -> Result<Digest, Status> {
    let store = &d.store;
    let parent = if req.empty_layer && req.key.is_empty() {
        // A build's config-only step needs no snapshot: preparing one per ENV or LABEL
        // would cost a directory and two metadata writes for nothing.
        match req.parent.as_str() {
            "" => None,
            p => Some(store.resolve(p).map_err(image_status)?),
        }
    } else {
        let active = store.active_record(&req.key).map_err(active_status)?;
        match &active.image {
            Some(id) => Some(store.meta.image(id).map_err(internal)?.ok_or_else(|| {
                Status::not_found(format!("image {id} of snapshot {} is gone", req.key))
            })?),
            None => None,
        }
    };
    let parent_config = match &parent {
        Some(p) => store.config(p).map_err(image_status)?,
        None => json!({
            "architecture": crate::registry::Platform::host().architecture,
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": []},
            "history": []
        }),
    };
    let target = if req.reference.is_empty() {
        None
    } else {
        Some(
            Reference::parse(&req.reference)
                .map_err(|e| Status::invalid_argument(e.to_string()))?,
        )
    };

    if req.empty_layer {
        return commit_config_only(d, req, parent, parent_config, target);
    }
    let active = store.active_record(&req.key).map_err(active_status)?;

    // The layer: the upper directory as a gzip tar, hashed compressed and uncompressed,
    // without the engine's mount points.
    let upper = store.snapshots.fs(active.dir);
    let skip = if req.init_paths.is_empty() {
        Default::default()
    } else {
        let m = store.mounts(&req.key).map_err(active_status)?;
        placeholders(&upper, &m.lowers, &req.init_paths)
    };
    let tmp = tempfile::NamedTempFile::new_in(store.content.ingest_dir()).map_err(internal)?;
    let mut hashing = Hashing {
        inner: io::BufWriter::with_capacity(1 << 20, tmp.reopen().map_err(internal)?),
        hasher: Hasher::new(),
        size: 0,
    };
    let report = {
        let mut gz = Compression::Gzip.writer(&mut hashing).map_err(internal)?;
        let report = diff_without(&upper, &mut gz, &skip)
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        gz.finish().map_err(internal)?;
        report
    };
    hashing.flush().map_err(internal)?;
    let (layer_digest, layer_size) = (hashing.hasher.clone().finish(), hashing.size);
    drop(hashing);
    tmp.as_file().sync_all().map_err(internal)?;
    store
        .content
        .adopt(tmp, &layer_digest)
        .map_err(|e| Status::internal(e.to_string()))?;

    let created = now_rfc3339();
    let config = child_config(parent_config, req, &created, Some(&report.diff_id))?;

    let (_, _, layer_type) = media_types(parent.as_ref());
    let mut layers: Vec<LayerRef> = parent
        .as_ref()
        .map(|p| p.layers.clone())
        .unwrap_or_default();
    let parent_chain = layers.last().map(|l| l.chain_id.clone());
    let chain = match &parent_chain {
        None => report.diff_id.clone(),
        Some(p) => Digest::of(format!("{p} {}", report.diff_id).as_bytes()),
    };
    layers.push(LayerRef {
        digest: layer_digest.clone(),
        media_type: layer_type.to_string(),
        size: layer_size,
        diff_id: report.diff_id.clone(),
        chain_id: chain.clone(),
    });
    // The new layer's snapshot, unpacked from the blob itself.
    if store.meta.snapshot(&chain).map_err(internal)?.is_none() {
        let tmpdir = store.snapshots.temp().map_err(internal)?;
        let blob = store.content.open_blob(&layer_digest).map_err(internal)?;
        unpack(
            io::BufReader::with_capacity(1 << 20, blob),
            &tmpdir.path().join("fs"),
            &UnpackOptions::new(layer_digest.to_string()),
        )
        .map_err(|e| Status::internal(e.to_string()))?;
        let disk_size = disk_usage(&tmpdir.path().join("fs"));
        let n = store.meta.write(|t| t.next_dir()).map_err(internal)?;
        store.snapshots.commit_temp(tmpdir, n).map_err(internal)?;
        store
            .meta
            .write(|t| {
                t.put_snapshot(&SnapshotRecord {
                    chain_id: chain.clone(),
                    parent: parent_chain.clone(),
                    dir: n,
                    diff_id: report.diff_id.clone(),
                    disk_size,
                    refs: 0,
                })
            })
            .map_err(internal)?;
    }
    store_image(store, parent.as_ref(), layers, &config, created, target)
}

/// A new image with the parent's layers and a changed config, as Docker's classic builder
/// commits each ENV, CMD or LABEL: the history entry says `empty_layer`.
fn commit_config_only(
    d: &Daemon,
    req: &pb::CommitRequest,
    parent: Option<ImageRecord>,
    parent_config: serde_json::Value,
    target: Option<Reference>,
) -> Result<Digest, Status> {
    let created = now_rfc3339();
    let config = child_config(parent_config, req, &created, None)?;
    let layers = parent
        .as_ref()
        .map(|p| p.layers.clone())
        .unwrap_or_default();
    store_image(&d.store, parent.as_ref(), layers, &config, created, target)
}

/// Docker's media types on a Docker parent, OCI's otherwise (one manifest never mixes
/// them): manifest, config, gzip layer.
fn media_types(parent: Option<&ImageRecord>) -> (&'static str, &'static str, &'static str) {
    if parent.is_some_and(|p| p.manifest_media_type == DOCKER_MANIFEST) {
        (DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER_GZIP)
    } else {
        (OCI_MANIFEST, OCI_CONFIG, OCI_LAYER_GZIP)
    }
}

/// The child's config: the parent's, with the request's config, author and time, and one
/// history entry; `diff_id` is the new layer's, None for a config-only step (`empty_layer`).
fn child_config(
    mut config: serde_json::Value,
    req: &pb::CommitRequest,
    created: &str,
    diff_id: Option<&Digest>,
) -> Result<serde_json::Value, Status> {
    if !req.config_json.is_empty() {
        config["config"] = serde_json::from_str(&req.config_json)
            .map_err(|e| Status::invalid_argument(format!("config_json: {e}")))?;
    }
    config["created"] = json!(created);
    if !req.author.is_empty() {
        config["author"] = json!(req.author);
    }
    let mut entry = json!({"created": created, "created_by": req.created_by});
    match diff_id {
        Some(id) => config["rootfs"]["diff_ids"]
            .as_array_mut()
            .ok_or_else(|| Status::failed_precondition("the parent config has no rootfs.diff_ids"))?
            .push(json!(id.to_string())),
        None => entry["empty_layer"] = json!(true),
    }
    if !req.author.is_empty() {
        entry["author"] = json!(req.author);
    }
    if !req.message.is_empty() {
        entry["comment"] = json!(req.message);
    }
    match config["history"].as_array_mut() {
        Some(h) => h.push(entry),
        None => config["history"] = json!([entry]),
    }
    Ok(config)
}

/// The config blob, a manifest over `layers`, then the image record (tagged `target`):
/// the record last, so a crash before it leaves only unreferenced blobs. The image id.
fn store_image(
    store: &crate::store::Store,
    parent: Option<&ImageRecord>,
    layers: Vec<LayerRef>,
    config: &serde_json::Value,
    created: String,
    target: Option<Reference>,
) -> Result<Digest, Status> {
    let (manifest_type, config_type, _) = media_types(parent);
    let config_bytes = serde_json::to_vec(config).map_err(internal)?;
    let config_digest = store.content.put(&config_bytes).map_err(internal)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": {"mediaType": config_type, "digest": config_digest.to_string(), "size": config_bytes.len()},
        "layers": layers.iter().map(|l| json!({
            "mediaType": l.media_type, "digest": l.digest.to_string(), "size": l.size
        })).collect::<Vec<_>>()
    });
    let manifest_bytes = serde_json::to_vec(&manifest).map_err(internal)?;
    let manifest_digest = store.content.put(&manifest_bytes).map_err(internal)?;
    let record = ImageRecord {
        id: config_digest.clone(),
        manifest: manifest_digest,
        manifest_media_type: manifest_type.to_string(),
        layers,
        repo_digests: Vec::new(),
        added: created,
        parent: parent.map(|p| p.id.clone()),
    };
    store
        .meta
        .write(|t| {
            t.put_image(&record)?;
            if let Some(r) = &target {
                t.set_tag(&r.to_string(), &record.id)?;
            }
            Ok::<_, crate::store::meta::MetaError>(())
        })
        .map_err(internal)?;
    Ok(config_digest)
}

/// `docker diff`: A (added), C (changed), D (deleted) under the snapshot's upper directory,
/// judged against the layers below; parents of a change count as changed, as in Docker.
/// The engine's mount points among `init_paths` are not the container's changes.
pub fn changes(d: &Daemon, key: &str, init_paths: &[String]) -> Result<Vec<pb::Change>, Status> {
    let m = d.store.mounts(key).map_err(active_status)?;
    let skip = placeholders(&m.upper, &m.lowers, init_paths);
    let mut out: BTreeMap<String, i32> = BTreeMap::new();
    walk(&m.upper, Path::new("/"), &m.lowers, &skip, &mut out).map_err(internal)?;
    Ok(out
        .into_iter()
        .map(|(path, kind)| pb::Change { kind, path })
        .collect())
}

const MODIFIED: i32 = 0;
const ADDED: i32 = 1;
const DELETED: i32 = 2;

fn in_lowers(lowers: &[PathBuf], rel: &Path) -> bool {
    let rel = rel.strip_prefix("/").unwrap_or(rel);
    lowers
        .iter()
        .any(|l| l.join(rel).symlink_metadata().is_ok())
}

fn walk(
    dir: &Path,
    rel: &Path,
    lowers: &[PathBuf],
    skip: &HashSet<Vec<u8>>,
    out: &mut BTreeMap<String, i32>,
) -> io::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir)?.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = rel.join(e.file_name());
        if skip.contains(
            path.strip_prefix("/")
                .unwrap_or(&path)
                .as_os_str()
                .as_bytes(),
        ) {
            continue;
        }
        let shown = path.display().to_string();
        let m = e.path().symlink_metadata()?;
        let whiteout = m.file_type().is_char_device() && m.rdev() == 0;
        let kind = if whiteout {
            DELETED
        } else if in_lowers(lowers, &path) {
            MODIFIED
        } else {
            ADDED
        };
        out.insert(shown, kind);
        if m.is_dir() && !whiteout {
            walk(&e.path(), &path, lowers, skip, out)?;
        }
    }
    Ok(())
}
