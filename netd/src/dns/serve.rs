//! The socket side of a network's DNS server: UDP datagrams and TCP connections on the
//! gateway, each query answered by `Server::answer` on a task of its own so a slow upstream
//! holds up nobody else.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinSet;

use super::{Server, Transport};

/// A TCP client that sends nothing for this long is dropped (RFC 7766 suggests seconds).
const TCP_IDLE: Duration = Duration::from_secs(10);
/// TCP connections served at once per network; more wait in the listen queue.
const TCP_MAX: usize = 64;

/// `reply` as it may go back over UDP to a client that asked with `query`: within the size
/// the client accepts (512 bytes, or its EDNS size), else truncated so it asks again over TCP.
pub fn fit(query: &[u8], reply: Vec<u8>) -> Vec<u8> {
    let limit = Message::from_vec(query)
        .map(|q| q.max_payload())
        .unwrap_or(512) as usize;
    if reply.len() <= limit {
        return reply;
    }
    match Message::from_vec(&reply) {
        Ok(m) => m.truncate().to_vec().unwrap_or(reply),
        Err(_) => reply,
    }
}

impl Server {
    /// Serves on `udp` and, when given, `tcp` until the task is aborted (which also ends the
    /// TCP connections: they live in a set owned by this future).
    pub async fn run(self: Arc<Self>, udp: UdpSocket, tcp: Option<TcpListener>) {
        let udp_loop = self.clone().serve_udp(udp);
        match tcp {
            Some(l) => {
                tokio::join!(udp_loop, self.serve_tcp(l));
            }
            None => udp_loop.await,
        }
    }

    async fn serve_udp(self: Arc<Self>, sock: UdpSocket) {
        let sock = Arc::new(sock);
        let mut buf = vec![0u8; 65535];
        loop {
            let (n, peer) = match sock.recv_from(&mut buf).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!("dns {}: receive: {e}", self.network_name);
                    continue;
                }
            };
            let query = buf[..n].to_vec();
            let me = self.clone();
            let sock = sock.clone();
            tokio::spawn(async move {
                if let Some(reply) = me.answer(&query, Transport::Udp, peer.ip()).await {
                    let _ = sock.send_to(&fit(&query, reply), peer).await;
                }
            });
        }
    }

    async fn serve_tcp(self: Arc<Self>, listener: TcpListener) {
        let mut conns = JoinSet::new();
        loop {
            while conns.len() >= TCP_MAX {
                conns.join_next().await;
            }
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        conns.spawn(self.clone().serve_conn(stream, peer.ip()));
                    }
                    Err(e) => {
                        tracing::warn!("dns {}: accept: {e}", self.network_name);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
    }

    /// Length-prefixed queries on one connection, answered in order, until the client closes
    /// or goes quiet.
    async fn serve_conn(self: Arc<Self>, mut stream: TcpStream, from: IpAddr) {
        loop {
            let Ok(Ok(len)) = tokio::time::timeout(TCP_IDLE, stream.read_u16()).await else {
                return;
            };
            let mut query = vec![0u8; len as usize];
            if !matches!(
                tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut query)).await,
                Ok(Ok(_))
            ) {
                return;
            }
            let Some(reply) = self.answer(&query, Transport::Tcp, from).await else {
                return;
            };
            let Ok(n) = u16::try_from(reply.len()) else {
                return;
            };
            let mut out = n.to_be_bytes().to_vec();
            out.extend_from_slice(&reply);
            if stream.write_all(&out).await.is_err() {
                return;
            }
        }
    }
}
