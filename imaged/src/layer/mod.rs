//! Image layers on disk: unpacking a layer tar into a snapshot directory for overlayfs,
//! turning an overlayfs upper directory back into a layer, and plain tars of a tree.
//!
//! Everything here is synchronous and streams: the daemon calls it from `spawn_blocking`
//! with the download (or the blob file) as the reader. What unpack accepts and refuses, and
//! why, is in imaged/README.md ("Layers").

pub(crate) mod budget;
mod compression;
mod error;
pub(crate) mod hashing;
mod meta;
mod name;
mod pack;
mod parents;
mod pipe;
mod resolve;
mod sys;
mod unpack;

pub use compression::{
    detect_and_decode, CompressWriter, Compression, UnsupportedCompression, MAGIC_LEN,
};
pub use error::{At, LayerError, Refusal};
pub use pack::{archive_dir, diff, diff_without, DiffReport};
pub use unpack::{unpack, UnpackOptions, UnpackReport};
