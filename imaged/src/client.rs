//! The typed client the `berth` CLI (and tests) use: a gRPC channel over the daemon's unix
//! socket (`berth_proto::connect`).

use std::path::Path;

use berth_proto::imaged::images_client::ImagesClient;
use tonic::transport::Channel;

pub use berth_proto::connect::ConnectError;

pub type Client = ImagesClient<Channel>;

/// Connect to the daemon listening on `socket`.
pub async fn connect(socket: &Path) -> Result<Client, ConnectError> {
    let channel = berth_proto::connect::channel(socket, "berth-imaged").await?;
    Ok(ImagesClient::new(channel)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20))
}
