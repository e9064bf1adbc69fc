//! Tests of berth_imaged::layer: unpack, diff and archive_dir, run as root in temp dirs.
//!
//! - `unpack`: what a layer's entries become on disk, and Docker's rules for entries that
//!   replace each other;
//! - `attacks`: layers that try to write outside their snapshot, one test per attack, each
//!   checking the error names the layer and the entry and nothing beside dest changed;
//! - `roundtrip`: unpack → diff → unpack keeps everything; gzip, zstd and plain;
//! - `overlay`: whiteouts and opaque directories seen through a real overlayfs mount, in a
//!   private mount namespace;
//! - `fixture`: the busybox image's real layer;
//! - `perf`: (ignored) the time to unpack a 65 MB gzip layer.

mod attacks;
mod fixture;
mod overlay;
mod perf;
mod roundtrip;
mod support;
mod unpack;
