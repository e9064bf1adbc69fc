//! A client's channel to a daemon's unix socket; the typed clients of imaged and netd wrap
//! it.

use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

#[derive(Debug, thiserror::Error)]
#[error("connect to {daemon} at {}: {source}", .socket.display())]
pub struct ConnectError {
    pub daemon: &'static str,
    pub socket: PathBuf,
    #[source]
    pub source: tonic::transport::Error,
}

/// A gRPC channel to the daemon listening on `socket`.
pub async fn channel(socket: &Path, daemon: &'static str) -> Result<Channel, ConnectError> {
    let path = socket.to_path_buf();
    // The URI is required by the API and ignored: the connector dials the socket.
    Endpoint::from_static("http://berth.sock")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                let s = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(TokioIo::new(s))
            }
        }))
        .await
        .map_err(|source| ConnectError {
            daemon,
            socket: socket.to_path_buf(),
            source,
        })
}
