//! berth-imaged as a library: the content store, registry client, layer unpacking and
//! snapshots behind the daemon's gRPC API (`proto/proto/imaged.proto`), and the typed client
//! the `berth` CLI uses.

pub mod digest;
pub mod images;
pub mod reference;
pub mod registry;
pub mod store;
pub mod layer;
