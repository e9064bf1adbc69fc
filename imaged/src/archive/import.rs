//! `import`: a root filesystem tarball (plain, gzip or zstd) as a one-layer image, as
//! `docker import` makes it: the config has the changes applied and one history entry whose
//! comment is the message ("Imported from -" by default). The tarball is the layer blob as
//! it came, written to the store's ingest directory and unpacked in the same pass.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::install::{install, LayerLocks, NewImage, Unpacked};
use super::ArchiveError;
use crate::daemon::{now_rfc3339, Daemon};
use crate::digest::Digest;
use crate::layer::hashing::HashWriter;
use crate::layer::{unpack, UnpackOptions};
use crate::reference::Reference;
use crate::registry::{Descriptor, ImageManifest, Platform, OCI_CONFIG, OCI_MANIFEST};
use crate::store::meta::LayerRef;
use crate::store::snapshots::disk_usage;

/// What the first message of an import says.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    pub reference: Option<Reference>,
    /// The image's `config` object, changes applied.
    pub config: Map<String, Value>,
    pub message: String,
}

impl ImportOptions {
    /// Check the options before any data is read: a bad tag or change fails at once.
    pub fn new(
        reference: &str,
        changes: &[String],
        message: &str,
    ) -> Result<ImportOptions, ArchiveError> {
        let reference = if reference.is_empty() {
            None
        } else {
            let r = Reference::parse(reference)
                .map_err(|e| ArchiveError::Request(format!("import: {e}")))?;
            if r.digest().is_some() {
                return Err(ArchiveError::Request(format!(
                    "import: {reference:?}: a digest cannot be a tag"
                )));
            }
            Some(r)
        };
        let mut config = Map::new();
        crate::changes::apply(&mut config, changes)
            .map_err(|e| ArchiveError::Request(format!("import: {e}")))?;
        let message = if message.is_empty() {
            "Imported from -".to_string()
        } else {
            message.to_string()
        };
        Ok(ImportOptions {
            reference,
            config,
            message,
        })
    }
}

/// Reads through to the caller and writes every byte it hands out to `out`.
struct Tee<R, W: Write> {
    inner: R,
    out: W,
    failed: Option<io::Error>,
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Err(e) = self.out.write_all(&buf[..n]) {
            let err = io::Error::new(e.kind(), e.to_string());
            self.failed = Some(e);
            return Err(err);
        }
        Ok(n)
    }
}

/// Import the tarball `input` streams; returns the new image's id.
pub fn import(
    d: &Arc<Daemon>,
    opts: &ImportOptions,
    input: &mut impl Read,
) -> Result<Digest, ArchiveError> {
    let store = &d.store;
    let ingest = store.content.ingest_dir();
    let tmp = tempfile::Builder::new()
        .prefix(".import-")
        .tempfile_in(ingest)
        .map_err(ArchiveError::io("create a temp file in", ingest))?;
    let file = tmp.reopen().map_err(ArchiveError::io("open", tmp.path()))?;
    let dir = store.snapshots.temp().map_err(ArchiveError::io(
        "create a snapshot directory in",
        store.snapshots.root(),
    ))?;
    let mut tee = Tee {
        inner: &mut *input,
        out: HashWriter::new(BufWriter::with_capacity(1 << 20, file)),
        failed: None,
    };
    let report = unpack(
        &mut tee,
        &dir.path().join("fs"),
        &UnpackOptions::new("the imported tarball"),
    );
    if let Some(e) = tee.failed.take() {
        return Err(ArchiveError::Io {
            op: "write",
            path: tmp.path().to_path_buf(),
            source: e,
        });
    }
    let report = report?;
    let (blob_digest, blob_size, buffered) = tee.out.finish();
    // What follows the compressed stream is not part of the layer.
    let _ = io::copy(input, &mut io::sink());
    if report.tar_size == 0 {
        return Err(ArchiveError::Request("import: the tarball is empty".into()));
    }
    let file: File = buffered
        .into_inner()
        .map_err(|e| ArchiveError::io("write", tmp.path())(e.into_error()))?;
    file.sync_all()
        .map_err(ArchiveError::io("sync", tmp.path()))?;
    drop(file);

    let created = now_rfc3339();
    let host = Platform::host();
    let mut config = json!({
        "architecture": host.architecture,
        "os": "linux",
        "created": created,
        "comment": opts.message,
        "config": opts.config,
        "rootfs": {"type": "layers", "diff_ids": [report.diff_id.to_string()]},
        "history": [{"created": created, "comment": opts.message}],
    });
    if let Some(v) = &host.variant {
        config["variant"] = json!(v);
    }
    let config = serde_json::to_vec(&config).expect("configs serialize");
    let id = Digest::of(&config);
    let layer = LayerRef {
        digest: blob_digest.clone(),
        media_type: format!(
            "application/vnd.oci.image.layer.v1.tar{}",
            report.compression.media_type_suffix()
        ),
        size: blob_size,
        diff_id: report.diff_id.clone(),
        // A single layer's chain id is its diff_id.
        chain_id: report.diff_id.clone(),
    };
    let desc = |media_type: &str, digest: &Digest, size: u64| Descriptor {
        media_type: media_type.to_string(),
        digest: digest.clone(),
        size,
        platform: None,
        urls: Vec::new(),
        annotations: Default::default(),
    };
    let manifest = serde_json::to_vec(&ImageManifest {
        schema_version: 2,
        media_type: Some(OCI_MANIFEST.into()),
        config: desc(OCI_CONFIG, &id, config.len() as u64),
        layers: vec![desc(&layer.media_type, &layer.digest, layer.size)],
        annotations: Default::default(),
    })
    .expect("manifests serialize");

    let locks = LayerLocks::take(d, [layer.chain_id.clone()]);
    let unpacked = if store.meta.snapshot(&layer.chain_id)?.is_some() {
        Vec::new()
    } else {
        vec![Unpacked {
            chain_id: layer.chain_id.clone(),
            parent: None,
            diff_id: layer.diff_id.clone(),
            disk_size: disk_usage(&dir.path().join("fs")),
            dir,
        }]
    };
    let image = NewImage {
        id: id.clone(),
        config,
        manifest,
        manifest_media_type: OCI_MANIFEST.into(),
        layers: vec![layer],
        names: opts.reference.iter().cloned().collect(),
    };
    install(
        d,
        &[image],
        HashMap::from([(blob_digest, tmp.into_temp_path())]),
        unpacked,
    )?;
    drop(locks);
    Ok(id)
}
