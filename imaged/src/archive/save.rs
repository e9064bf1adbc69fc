//! `save`: images and their tags as one tar.
//!
//! Both formats are one OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/` with
//! every manifest, config and layer as stored); a docker-archive adds `manifest.json` and
//! `repositories`, Docker's own index of the same blobs. That is what Docker 25 writes, and
//! what Docker 20.10's `docker load` and skopeo's `docker-archive:` read (they take the
//! paths manifest.json gives and decompress gzip layers). Layers go as stored, compressed,
//! so the archive keeps the image's manifest digest and is as small as a pull.
//!
//! The metadata comes first in the tar, the blobs after it: a reader that streams learns
//! what to expect before the large files arrive.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{self, Read, Write};

use serde_json::{json, Value};

use super::ArchiveError;
use crate::digest::Digest;
use crate::images::familiar;
use crate::layer::hashing::HashReader;
use crate::layer::{Compression, MAGIC_LEN};
use crate::reference::{parse_any, AnyReference, Reference};
use crate::store::meta::ImageRecord;
use crate::store::Store;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `docker save`: manifest.json, repositories, and the OCI layout.
    DockerArchive,
    /// The OCI image layout alone.
    OciArchive,
}

impl Format {
    pub fn parse(s: &str) -> Result<Format, ArchiveError> {
        match s {
            "" | "docker-archive" => Ok(Format::DockerArchive),
            "oci-archive" => Ok(Format::OciArchive),
            other => Err(ArchiveError::Request(format!(
                "unknown archive format {other:?}: docker-archive or oci-archive"
            ))),
        }
    }
}

/// `org.opencontainers.image.ref.name`: the tag, as Docker and containerd write it.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// `io.containerd.image.name`: the full name, which the tag alone cannot give.
pub const IMAGE_NAME: &str = "io.containerd.image.name";

/// One image to save and the tags that go with it.
struct Saved {
    record: ImageRecord,
    tags: Vec<Reference>,
    /// The manifest the archive holds: the image's own, or one made for a docker-archive
    /// whose zstd layers are written uncompressed.
    manifest: Digest,
    /// The layer blobs the archive holds, bottom first.
    layers: Vec<Digest>,
    /// The config's `created`, as seconds: the mtime Docker gives an image's config.
    created: u64,
    platform: Value,
}

/// A blob of the archive, open before the first byte is written: a removal meanwhile
/// cannot take it away from under the stream.
struct OpenBlob {
    digest: Digest,
    body: Body,
    size: u64,
    mtime: u64,
}

enum Body {
    /// As stored.
    Stored(File),
    /// A zstd layer, decompressed on the way out.
    Unzstd(File),
    /// Made for this archive.
    Memory(Vec<u8>),
}

/// Everything one save writes, decided (and every blob opened) before it starts.
pub struct Plan {
    format: Format,
    images: Vec<Saved>,
    blobs: Vec<OpenBlob>,
}

/// The images `names` give, with their tags, as `docker save` resolves them: `name:tag` is
/// that tag; a repository named without tag or digest brings every tag it has (or, with
/// none, is looked up as an id prefix); `name@digest`, an id or an id prefix brings the image
/// without a tag.
pub fn plan(store: &Store, names: &[String], format: Format) -> Result<Plan, ArchiveError> {
    if names.is_empty() {
        return Err(ArchiveError::Request(
            "save: no image given (name one or more images)".into(),
        ));
    }
    let all_tags = store.meta.tags()?;
    let mut images: Vec<Saved> = Vec::new();
    let mut add = |store: &Store, record: ImageRecord, tag: Option<Reference>| {
        let at = match images.iter().position(|s| s.record.id == record.id) {
            Some(i) => i,
            None => {
                images.push(saved(store, record)?);
                images.len() - 1
            }
        };
        if let Some(t) = tag {
            if !images[at].tags.contains(&t) {
                images[at].tags.push(t);
            }
        }
        Ok::<_, ArchiveError>(())
    };
    for name in names {
        match parse_any(name) {
            Ok(AnyReference::Named(r)) if r.digest().is_none() => {
                if name_only(name) {
                    let repo = r.name();
                    let mut found = false;
                    for (tag, id) in &all_tags {
                        let Ok(t) = Reference::parse(tag) else {
                            continue;
                        };
                        if t.name() == repo && t.digest().is_none() {
                            let record = store.meta.image(id)?.ok_or_else(|| {
                                ArchiveError::Conflict(format!("image {id} of tag {tag} is gone"))
                            })?;
                            add(store, record, Some(t))?;
                            found = true;
                        }
                    }
                    if !found {
                        add(store, store.resolve(name)?, None)?;
                    }
                } else {
                    add(store, store.resolve(name)?, Some(r))?;
                }
            }
            // By digest, by id, by id prefix: the image alone.
            _ => add(store, store.resolve(name)?, None)?,
        }
    }

    let mut blobs = Blobs::default();
    for s in &mut images {
        let zstd = zstd_layers(store, &s.record)?;
        if format == Format::DockerArchive && zstd.iter().any(|z| *z) {
            uncompress_zstd(store, s, &zstd, &mut blobs)?;
            continue;
        }
        let r = &s.record;
        blobs.stored(store, &r.id, &r.id, s.created)?;
        blobs.stored(store, &r.id, &r.manifest, 0)?;
        for l in &r.layers {
            blobs.stored(store, &r.id, &l.digest, 0)?;
        }
    }
    let blobs = blobs.list;
    Ok(Plan {
        format,
        images,
        blobs,
    })
}

/// The blobs of an archive, each once.
#[derive(Default)]
struct Blobs {
    list: Vec<OpenBlob>,
    seen: HashSet<Digest>,
}

impl Blobs {
    fn stored(
        &mut self,
        store: &Store,
        image: &Digest,
        d: &Digest,
        mtime: u64,
    ) -> Result<(), ArchiveError> {
        if !self.seen.insert(d.clone()) {
            return Ok(());
        }
        let (file, size) = open(store, image, d)?;
        self.list.push(OpenBlob {
            digest: d.clone(),
            body: Body::Stored(file),
            size,
            mtime,
        });
        Ok(())
    }

    fn push(&mut self, blob: OpenBlob) {
        if self.seen.insert(blob.digest.clone()) {
            self.list.push(blob);
        }
    }
}

fn open(store: &Store, image: &Digest, d: &Digest) -> Result<(File, u64), ArchiveError> {
    let file = store
        .content
        .open_blob(d)
        .map_err(|e| ArchiveError::Conflict(format!("save image {image}: {e}")))?;
    let size = file
        .metadata()
        .map_err(ArchiveError::io("stat", store.content.path(d)))?
        .len();
    Ok((file, size))
}

/// Which layers of an image are zstd, from their first bytes (media types lie).
fn zstd_layers(store: &Store, r: &ImageRecord) -> Result<Vec<bool>, ArchiveError> {
    r.layers
        .iter()
        .map(|l| {
            let (file, _) = open(store, &r.id, &l.digest)?;
            let mut magic = Vec::with_capacity(MAGIC_LEN);
            file.take(MAGIC_LEN as u64)
                .read_to_end(&mut magic)
                .map_err(ArchiveError::io("read", store.content.path(&l.digest)))?;
            Ok(Compression::detect(&magic) == Ok(Compression::Zstd))
        })
        .collect()
}

/// Docker's `docker load` (20.10 at least) takes gzip layers but not zstd: in a
/// docker-archive those go uncompressed, named by their diff_id as Docker 25 names all its
/// layers, under a manifest made for the archive. Their size is needed before the first
/// byte is written (the metadata comes first), so each is decompressed once here, which
/// also checks it against its diff_id.
fn uncompress_zstd(
    store: &Store,
    s: &mut Saved,
    zstd: &[bool],
    blobs: &mut Blobs,
) -> Result<(), ArchiveError> {
    let r = &s.record;
    blobs.stored(store, &r.id, &r.id, s.created)?;
    let raw = store.content.read(&r.manifest)?;
    let mut manifest: Value = serde_json::from_slice(&raw).map_err(|e| {
        ArchiveError::Conflict(format!("image {}: manifest {}: {e}", r.id, r.manifest))
    })?;
    let plain_type = if r.manifest_media_type == crate::registry::DOCKER_MANIFEST {
        "application/vnd.docker.image.rootfs.diff.tar"
    } else {
        "application/vnd.oci.image.layer.v1.tar"
    };
    for (i, (l, &is_zstd)) in r.layers.iter().zip(zstd).enumerate() {
        if !is_zstd {
            blobs.stored(store, &r.id, &l.digest, 0)?;
            continue;
        }
        let (file, _) = open(store, &r.id, &l.digest)?;
        let mut counted = HashReader::new(
            Compression::Zstd
                .decoder(io::BufReader::with_capacity(1 << 20, file))
                .map_err(ArchiveError::io("read", store.content.path(&l.digest)))?,
        );
        io::copy(&mut counted, &mut io::sink()).map_err(ArchiveError::io(
            "decompress",
            store.content.path(&l.digest),
        ))?;
        let (diff_id, size) = counted.finish();
        if diff_id != l.diff_id {
            return Err(ArchiveError::Conflict(format!(
                "image {}: layer {} decompresses to {diff_id}, not its diff_id {}",
                r.id, l.digest, l.diff_id
            )));
        }
        let (file, _) = open(store, &r.id, &l.digest)?;
        blobs.push(OpenBlob {
            digest: diff_id.clone(),
            body: Body::Unzstd(file),
            size,
            mtime: 0,
        });
        manifest["layers"][i] = json!({
            "mediaType": plain_type,
            "digest": diff_id.to_string(),
            "size": size,
        });
        s.layers[i] = diff_id;
    }
    let bytes = to_json(&manifest);
    s.manifest = Digest::of(&bytes);
    blobs.push(OpenBlob {
        digest: s.manifest.clone(),
        size: bytes.len() as u64,
        body: Body::Memory(bytes),
        mtime: 0,
    });
    Ok(())
}

/// An image to save, with what its config says of its time and platform.
fn saved(store: &Store, record: ImageRecord) -> Result<Saved, ArchiveError> {
    let config = store.config(&record)?;
    // RFC 3339, fractions and zone dropped: the mtime is whole seconds anyway.
    let created = config["created"]
        .as_str()
        .and_then(|c| {
            humantime::parse_rfc3339_weak(c.trim_end_matches('Z').split('.').next()?).ok()
        })
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    let mut platform = json!({
        "architecture": config["architecture"],
        "os": config["os"],
    });
    if let Some(v) = config["variant"].as_str() {
        platform["variant"] = json!(v);
    }
    Ok(Saved {
        manifest: record.manifest.clone(),
        layers: record.layers.iter().map(|l| l.digest.clone()).collect(),
        record,
        tags: Vec::new(),
        created,
        platform,
    })
}

/// A name without tag or digest: `busybox`, `127.0.0.1:5000/x` (the colon of a port is
/// in the first component, a tag's in the last).
fn name_only(name: &str) -> bool {
    !name.contains('@') && !name.rsplit('/').next().unwrap_or(name).contains(':')
}

fn blob_path(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

/// Write the archive `plan` describes.
pub fn write(plan: Plan, out: impl Write) -> Result<(), ArchiveError> {
    let mut tar = tar::Builder::new(out);
    let mut documents: Vec<(&str, Vec<u8>)> = vec![
        ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
        ("index.json", to_json(&index(&plan))),
    ];
    if plan.format == Format::DockerArchive {
        documents.push(("manifest.json", to_json(&docker_manifest(&plan))));
        let repos = repositories(&plan);
        if repos.as_object().is_some_and(|m| !m.is_empty()) {
            documents.push(("repositories", to_json(&repos)));
        }
    }
    for (name, data) in &documents {
        append(&mut tar, name, data.len() as u64, 0, &mut data.as_slice())?;
    }
    append_dir(&mut tar, "blobs/")?;
    append_dir(&mut tar, "blobs/sha256/")?;
    for b in plan.blobs {
        let path = blob_path(&b.digest);
        match b.body {
            Body::Stored(mut f) => append(&mut tar, &path, b.size, b.mtime, &mut f)?,
            Body::Memory(data) => append(&mut tar, &path, b.size, b.mtime, &mut data.as_slice())?,
            Body::Unzstd(f) => {
                let mut plain = Compression::Zstd
                    .decoder(io::BufReader::with_capacity(1 << 20, f))
                    .map_err(ArchiveError::Write)?;
                append(&mut tar, &path, b.size, b.mtime, &mut plain)?
            }
        }
    }
    tar.into_inner()
        .and_then(|mut w| w.flush())
        .map_err(ArchiveError::Write)
}

fn to_json(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("JSON values serialize")
}

/// index.json: one entry per tag (an image without one gets a bare entry), named as
/// Docker 25 and containerd name them.
fn index(plan: &Plan) -> Value {
    let mut manifests = Vec::new();
    for s in &plan.images {
        let desc = |annotations: Option<Value>| {
            let mut d = json!({
                "mediaType": s.record.manifest_media_type,
                "digest": s.manifest.to_string(),
                "size": plan.blobs.iter().find(|b| b.digest == s.manifest).map_or(0, |b| b.size),
                "platform": s.platform,
            });
            if let Some(a) = annotations {
                d["annotations"] = a;
            }
            d
        };
        if s.tags.is_empty() {
            manifests.push(desc(None));
        }
        for t in &s.tags {
            manifests.push(desc(Some(json!({
                IMAGE_NAME: t.to_string(),
                REF_NAME: t.tag().unwrap_or("latest"),
            }))));
        }
    }
    json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    })
}

/// manifest.json: per image its config, familiar tags (null for none, as Docker writes)
/// and layers, bottom first.
fn docker_manifest(plan: &Plan) -> Value {
    Value::Array(
        plan.images
            .iter()
            .map(|s| {
                let tags: Vec<String> = s.tags.iter().map(|t| familiar(&t.to_string())).collect();
                json!({
                    "Config": blob_path(&s.record.id),
                    "RepoTags": if tags.is_empty() { Value::Null } else { json!(tags) },
                    "Layers": s.layers.iter().map(blob_path).collect::<Vec<_>>(),
                })
            })
            .collect(),
    )
}

/// repositories: familiar name -> tag -> the top layer's file name, as Docker 25 writes it
/// for loaders older than manifest.json.
fn repositories(plan: &Plan) -> Value {
    let mut repos: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for s in &plan.images {
        let Some(top) = s.layers.last() else {
            continue;
        };
        for t in &s.tags {
            repos.entry(t.familiar_name()).or_default().insert(
                t.tag().unwrap_or("latest").to_string(),
                top.hex().to_string(),
            );
        }
    }
    json!(repos)
}

fn header(kind: tar::EntryType, mode: u32, size: u64, mtime: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_size(size);
    h.set_mtime(mtime);
    h
}

fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    size: u64,
    mtime: u64,
    data: &mut impl io::Read,
) -> Result<(), ArchiveError> {
    let mut h = header(tar::EntryType::Regular, 0o644, size, mtime);
    // The tar crate pads what it copies, but a blob that changed size would shift every
    // entry after it: take exactly `size` bytes, and fail when there are fewer.
    let mut limited = io::Read::take(data, size);
    tar.append_data(&mut h, path, &mut limited)
        .map_err(ArchiveError::Write)?;
    if limited.limit() != 0 {
        return Err(ArchiveError::Write(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("{path}: the blob shrank while it was written"),
        )));
    }
    Ok(())
}

fn append_dir<W: Write>(tar: &mut tar::Builder<W>, path: &str) -> Result<(), ArchiveError> {
    let mut h = header(tar::EntryType::Directory, 0o755, 0, 0);
    tar.append_data(&mut h, path, io::empty())
        .map_err(ArchiveError::Write)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_without_tag_is_told_from_one_with_a_port() {
        assert!(name_only("busybox"));
        assert!(name_only("127.0.0.1:5000/berth/busybox"));
        assert!(!name_only("busybox:1"));
        assert!(!name_only("127.0.0.1:5000/berth/busybox:latest"));
        assert!(!name_only("busybox@sha256:abc"));
    }

    #[test]
    fn formats_are_docker_by_default() {
        assert_eq!(Format::parse("").unwrap(), Format::DockerArchive);
        assert_eq!(Format::parse("oci-archive").unwrap(), Format::OciArchive);
        let e = Format::parse("tarball").unwrap_err().to_string();
        assert!(e.contains("tarball") && e.contains("oci-archive"), "{e}");
    }
}
