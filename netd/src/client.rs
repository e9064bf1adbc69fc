//! The typed client the `berth` CLI (and tests) use: a gRPC channel over netd's unix
//! socket.

use std::path::{Path, PathBuf};

use berth_proto::netd::networks_client::NetworksClient;
use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

pub type Client = NetworksClient<Channel>;

#[derive(Debug, thiserror::Error)]
#[error("connect to berth-netd at {}: {source}", .socket.display())]
pub struct ConnectError {
    pub socket: PathBuf,
    #[source]
    pub source: tonic::transport::Error,
}

/// Connect to the daemon listening on `socket`.
pub async fn connect(socket: &Path) -> Result<Client, ConnectError> {
    let path = socket.to_path_buf();
    // The URI is required by the API and ignored: the connector dials the socket.
    let channel = Endpoint::from_static("http://netd.sock")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                let s = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(TokioIo::new(s))
            }
        }))
        .await
        .map_err(|source| ConnectError {
            socket: socket.to_path_buf(),
            source,
        })?;
    Ok(NetworksClient::new(channel)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20))
}
