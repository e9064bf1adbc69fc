//! The typed client the `berth` CLI (and tests) use: a gRPC channel over the daemon's unix
//! socket (`berth_proto::connect`).

use std::path::Path;

use berth_proto::netd::networks_client::NetworksClient;
use tonic::transport::Channel;

pub use berth_proto::connect::ConnectError;

pub type Client = NetworksClient<Channel>;

/// Connect to the daemon listening on `socket`.
pub async fn connect(socket: &Path) -> Result<Client, ConnectError> {
    let channel = berth_proto::connect::channel(socket, "berth-netd").await?;
    Ok(NetworksClient::new(channel))
}
