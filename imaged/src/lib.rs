//! berth-imaged as a library: the content store, registry client, layer unpacking and
//! snapshots behind the daemon's gRPC API (`proto/proto/imaged.proto`), and the typed client
//! the `berth` CLI uses.

pub mod archive;
pub mod changes;
pub mod client;
pub mod commit;
pub mod daemon;
pub mod digest;
pub mod filters;
pub mod images;
pub mod layer;
pub mod placeholders;
pub mod pull;
pub mod push;
pub mod reference;
pub mod registry;
pub mod service;
pub mod store;
