//! Docker's archive commands: `save` ([`save`]) and `load` ([`load`]) of images as
//! docker-archive or OCI layout tars, `import` ([`import`]) of a root filesystem tarball as a
//! one-layer image, and `export` ([`export`]) of a snapshot's merged filesystem.
//!
//! Archives stream through the daemon: `save` and `export` write the tar into the RPC's
//! response stream as they go, `load` and `import` read the request stream into temp files
//! in the content store's ingest directory (the blobs are then renamed into the store, not
//! copied). Nothing is recorded until every blob and layer of a load has been verified, and
//! then everything is recorded in one transaction; imaged/README.md ("Archives") has the
//! formats and the rules.

pub mod export;
pub mod import;
mod install;
pub mod load;
pub mod save;
mod staging;
pub mod stream;

use std::io;
use std::path::PathBuf;

use tonic::Status;

pub use stream::{ChannelReader, ChunkSender, CHUNK_SIZE};

use crate::digest::Digest;
use crate::images::ImageError;
use crate::layer::LayerError;
use crate::store::active::ActiveError;
use crate::store::content::ContentError;
use crate::store::meta::MetaError;

/// Largest JSON document (manifest.json, index.json, a manifest, a config) an archive may
/// hold: they are read into memory.
pub const MAX_DOCUMENT: u64 = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// An entry of the archive is refused: a name climbing out, a link pointing outside,
    /// an entry kind an image archive never holds.
    #[error("archive entry {entry:?}: {reason}")]
    Entry { entry: String, reason: String },
    /// A file that a manifest or index names cannot be taken from the archive.
    #[error("{what} {path:?}: {reason}")]
    Path {
        what: String,
        path: String,
        reason: String,
    },
    /// A blob whose content is not what its name or descriptor says.
    #[error("blob {expected} ({path} in the archive): its content has digest {actual}")]
    Digest {
        path: String,
        expected: Digest,
        actual: Digest,
    },
    #[error(
        "blob {digest} ({path} in the archive): {actual} bytes, but its descriptor says {expected}"
    )]
    Size {
        path: String,
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    /// A layer whose uncompressed content is not the one the image config lists.
    #[error("layer {layer} of image {image}: its content has diff_id {actual} but the config says {expected}")]
    DiffId {
        layer: String,
        image: Digest,
        expected: Digest,
        actual: Digest,
    },
    /// The archive is not one this loader knows.
    #[error("not an image archive: {0}")]
    Format(String),
    /// A document of the archive (manifest.json, index.json, a manifest, a config) is
    /// malformed or says something impossible.
    #[error("{path} in the archive: {reason}")]
    Document { path: String, reason: String },
    #[error(transparent)]
    Layer(#[from] LayerError),
    /// Reading the archive stream itself failed (a truncated tar, a corrupt gzip stream, the
    /// client went away).
    #[error("reading the archive: {0}")]
    Stream(io::Error),
    #[error("{op} {}: {source}", .path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// Writing the output stream failed (the client stopped reading).
    #[error("writing the archive: {0}")]
    Write(io::Error),
    #[error(transparent)]
    Content(#[from] ContentError),
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Active(#[from] ActiveError),
    /// The request itself is wrong: an unknown format, a change that is not an instruction.
    #[error("{0}")]
    Request(String),
    /// Something the operation relied on changed under it (an image removed meanwhile).
    #[error("{0}")]
    Conflict(String),
}

impl ArchiveError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| ArchiveError::Io { op, path, source }
    }

    pub(crate) fn document(path: &str, reason: impl std::fmt::Display) -> ArchiveError {
        ArchiveError::Document {
            path: path.to_string(),
            reason: reason.to_string(),
        }
    }
}

impl From<ArchiveError> for Status {
    fn from(e: ArchiveError) -> Status {
        let msg = e.to_string();
        match e {
            ArchiveError::Entry { .. }
            | ArchiveError::Path { .. }
            | ArchiveError::Digest { .. }
            | ArchiveError::Size { .. }
            | ArchiveError::DiffId { .. }
            | ArchiveError::Format(_)
            | ArchiveError::Document { .. }
            | ArchiveError::Stream(_)
            | ArchiveError::Request(_) => Status::invalid_argument(msg),
            // A layer refused or unreadable is bad input; the system failing to write one
            // is ours.
            ArchiveError::Layer(LayerError::Refused { .. } | LayerError::Stream { .. }) => {
                Status::invalid_argument(msg)
            }
            ArchiveError::Image(e) => crate::service::image_status(e),
            ArchiveError::Active(e) => crate::service::active_status(e),
            ArchiveError::Conflict(_) => Status::aborted(msg),
            ArchiveError::Write(_) => Status::cancelled(msg),
            _ => Status::internal(msg),
        }
    }
}
