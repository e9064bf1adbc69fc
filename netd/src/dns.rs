//! The DNS server of each user-defined network: on the gateway address (UDP port 53), it
//! answers the names of the containers on that network (container name, hostname, short id,
//! `--network-alias`) with every address holding them, rotated on each answer; an unknown
//! single-label name gets NXDOMAIN at once; anything else is relayed to the host's resolvers.
//!
//! Messages are parsed and built with hickory-proto. hickory-server's Authority/Catalog model
//! fits zone files; ours is a small table that changes on every connect, so the socket loop
//! here is shorter than adapting it.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};
use tokio::net::UdpSocket;

/// name (lower case, no trailing dot) → addresses, for one network.
pub type Names = HashMap<String, Vec<Ipv4Addr>>;

/// The names of every network, shared by its server and the daemon that updates it.
#[derive(Default)]
pub struct Table {
    nets: RwLock<HashMap<String, Arc<Names>>>,
}

impl Table {
    pub fn set(&self, network_id: &str, names: Names) {
        self.nets
            .write()
            .expect("dns table lock")
            .insert(network_id.to_string(), Arc::new(names));
    }
    pub fn remove(&self, network_id: &str) {
        self.nets
            .write()
            .expect("dns table lock")
            .remove(network_id);
    }
    fn get(&self, network_id: &str) -> Option<Arc<Names>> {
        self.nets
            .read()
            .expect("dns table lock")
            .get(network_id)
            .cloned()
    }
}

/// The host's resolvers, read from resolv.conf on every relay (it is small, and a changed
/// file then takes effect at once). Never written.
pub fn upstreams(resolv_conf: &str) -> Vec<SocketAddr> {
    std::fs::read_to_string(resolv_conf)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("nameserver"))
                .then(|| w.next()?.parse::<IpAddr>().ok())
                .flatten()
        })
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

pub struct Server {
    pub network_id: String,
    pub network_name: String,
    pub table: Arc<Table>,
    pub resolv_conf: String,
    rotate: AtomicUsize,
}

impl Server {
    pub fn new(network_id: &str, network_name: &str, table: Arc<Table>, resolv_conf: &str) -> Self {
        Server {
            network_id: network_id.into(),
            network_name: network_name.to_lowercase(),
            table,
            resolv_conf: resolv_conf.into(),
            rotate: AtomicUsize::new(0),
        }
    }

    /// Serves on `sock` until the task is aborted.
    pub async fn run(self: Arc<Self>, sock: UdpSocket) {
        let sock = Arc::new(sock);
        let mut buf = vec![0u8; 4096];
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
                if let Some(reply) = me.answer(&query).await {
                    let _ = sock.send_to(&reply, peer).await;
                }
            });
        }
    }

    /// The reply to one query; None when there is nothing to say (garbage, not a query).
    pub async fn answer(&self, query: &[u8]) -> Option<Vec<u8>> {
        let msg = Message::from_vec(query).ok()?;
        if msg.metadata.message_type != MessageType::Query || msg.metadata.op_code != OpCode::Query
        {
            return None;
        }
        let q = msg.queries.first()?.clone();
        let name = q.name().to_ascii().to_lowercase();
        let name = name.trim_end_matches('.');
        let suffix = format!(".{}", self.network_name);
        let short = name.strip_suffix(&suffix).unwrap_or(name);
        let names = self.table.get(&self.network_id).unwrap_or_default();
        let mut reply = Message::response(msg.metadata.id, OpCode::Query);
        reply.metadata.recursion_desired = msg.metadata.recursion_desired;
        reply.metadata.recursion_available = true;
        reply.add_query(q.clone());
        if let Some(addrs) = names.get(short) {
            reply.metadata.authoritative = true;
            if q.query_type() == RecordType::A || q.query_type() == RecordType::ANY {
                let k = self.rotate.fetch_add(1, Ordering::Relaxed) % addrs.len().max(1);
                for ip in addrs[k..].iter().chain(&addrs[..k]) {
                    reply.add_answer(Record::from_rdata(q.name().clone(), 0, RData::A(A(*ip))));
                }
            }
            return reply.to_vec().ok();
        }
        if !short.contains('.') {
            // A bare name that no container holds: containers ask us first, so say it now
            // rather than after a round trip to the host's resolvers.
            reply.metadata.response_code = ResponseCode::NXDomain;
            reply.metadata.authoritative = true;
            return reply.to_vec().ok();
        }
        match self.relay(query).await {
            Some(r) => Some(r),
            None => {
                reply.metadata.response_code = ResponseCode::ServFail;
                reply.to_vec().ok()
            }
        }
    }

    /// Relays the query to the host's resolvers in turn, one second each.
    async fn relay(&self, query: &[u8]) -> Option<Vec<u8>> {
        for up in upstreams(&self.resolv_conf) {
            let bind: SocketAddr = if up.is_ipv4() {
                (Ipv4Addr::UNSPECIFIED, 0).into()
            } else {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            };
            let Ok(s) = UdpSocket::bind(bind).await else {
                continue;
            };
            if s.send_to(query, up).await.is_err() {
                continue;
            }
            let mut buf = vec![0u8; 4096];
            if let Ok(Ok((n, _))) =
                tokio::time::timeout(Duration::from_secs(1), s.recv_from(&mut buf)).await
            {
                buf.truncate(n);
                return Some(buf);
            }
            tracing::debug!("dns {}: upstream {up} did not answer", self.network_name);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;
    use hickory_proto::rr::Name;
    use std::str::FromStr;

    fn query(name: &str) -> Vec<u8> {
        let mut m = Message::query();
        m.metadata.id = 7;
        m.add_query(Query::query(Name::from_str(name).unwrap(), RecordType::A));
        m.to_vec().unwrap()
    }

    fn addrs(reply: &[u8]) -> (ResponseCode, Vec<Ipv4Addr>) {
        let m = Message::from_vec(reply).unwrap();
        let ips = m
            .answers
            .iter()
            .filter_map(|r| match r.data {
                RData::A(A(ip)) => Some(ip),
                _ => None,
            })
            .collect();
        (m.metadata.response_code, ips)
    }

    #[tokio::test]
    async fn names_rotate_and_unknown_is_nxdomain() {
        let table = Arc::new(Table::default());
        let a: Ipv4Addr = "10.234.1.2".parse().unwrap();
        let b: Ipv4Addr = "10.234.1.3".parse().unwrap();
        table.set(
            "n",
            [("web".to_string(), vec![a, b]), ("db".to_string(), vec![a])].into(),
        );
        let s = Server::new("n", "mynet", table, "/nonexistent");
        let (rc, first) = addrs(&s.answer(&query("web.")).await.unwrap());
        assert_eq!(rc, ResponseCode::NoError);
        assert_eq!(first.len(), 2);
        let (_, second) = addrs(&s.answer(&query("WEB.mynet.")).await.unwrap());
        assert_eq!(second.len(), 2);
        assert_ne!(first[0], second[0], "rotated");
        let (rc, none) = addrs(&s.answer(&query("nothere.")).await.unwrap());
        assert_eq!((rc, none.len()), (ResponseCode::NXDomain, 0));
        // No upstream to relay to: SERVFAIL, not silence.
        let (rc, _) = addrs(&s.answer(&query("example.org.")).await.unwrap());
        assert_eq!(rc, ResponseCode::ServFail);
    }
}
