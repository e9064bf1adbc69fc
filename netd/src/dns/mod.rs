//! The DNS server of each user-defined network: on the gateway address (port 53, UDP and
//! TCP), it answers the names of the containers on that network (container name, hostname,
//! short id, `--network-alias`) with every address holding them, rotated on each answer (A
//! records for IPv4, AAAA for IPv6 on dual-stack networks; a name holding no address of the
//! asked family gets an empty NOERROR answer, not NXDOMAIN, as Docker's server gives); an
//! unknown single-label name gets NXDOMAIN at once; anything else is forwarded to the host's
//! resolvers (`upstream`), or to a container's own (`--dns`, `custom`), except on `--internal`
//! networks, which reach nothing outside, not even through DNS: there such names get SERVFAIL
//! at once.
//!
//! Messages are parsed and built with hickory-proto. hickory-server's Authority/Catalog model
//! fits zone files; ours is a small table that changes on every connect, so the socket loops
//! here (`serve`) are shorter than adapting it.

pub mod cache;
pub mod custom;
pub mod resolv;
mod serve;
pub mod upstream;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{RData, Record, RecordType};

pub use custom::custom_upstreams;
pub use upstream::{Forwarder, Transport};
/// name (lower case, no trailing dot) → addresses of both families, for one network.
pub type Names = HashMap<String, Vec<IpAddr>>;

/// The names of every network, shared by its server and the daemon that updates it.
#[derive(Default)]
pub struct Table {
    nets: RwLock<HashMap<String, Arc<Names>>>,
    /// Where the queries of containers with servers of their own go.
    upstreams: custom::Upstreams,
}

impl Table {
    pub fn set_upstreams(&self, by_addr: HashMap<IpAddr, Vec<std::net::SocketAddr>>) {
        self.upstreams.set(by_addr);
    }
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

pub struct Server {
    pub network_id: String,
    pub network_name: String,
    /// Names not on the network are not forwarded.
    pub internal: bool,
    /// No names of its own: everything is forwarded (the default network's server).
    pub forward_only: bool,
    pub table: Arc<Table>,
    pub forwarder: Arc<Forwarder>,
    rotate: AtomicUsize,
}

impl Server {
    pub fn new(
        network_id: &str,
        network_name: &str,
        internal: bool,
        table: Arc<Table>,
        forwarder: Arc<Forwarder>,
    ) -> Self {
        Server {
            network_id: network_id.into(),
            network_name: network_name.to_lowercase(),
            internal,
            forward_only: false,
            table,
            forwarder,
            rotate: AtomicUsize::new(0),
        }
    }

    /// This server, answering no names itself: the default network's, there only to reach
    /// the host's loopback resolvers.
    pub fn forward_only(mut self) -> Self {
        self.forward_only = true;
        self
    }

    /// The reply to one query; None when there is nothing to say (garbage, not a query).
    /// Over UDP the caller still has to fit it into the client's size (`serve::fit`).
    /// `from` is the asking container's address: its own servers, if it has some, get the
    /// names the network does not hold.
    pub async fn answer(&self, query: &[u8], via: Transport, from: IpAddr) -> Option<Vec<u8>> {
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
        let names = match self.forward_only {
            true => Arc::default(),
            false => self.table.get(&self.network_id).unwrap_or_default(),
        };
        let mut reply = Message::response(msg.metadata.id, OpCode::Query);
        reply.metadata.recursion_desired = msg.metadata.recursion_desired;
        reply.metadata.recursion_available = true;
        reply.add_query(q.clone());
        if let Some(addrs) = names.get(short) {
            // Not authoritative (AA clear), as Docker's embedded server answers: `nslookup`
            // in a container prints "Non-authoritative answer" with both.
            // Only the asked family; none of it (an IPv4-only name asked for AAAA) is an
            // empty NOERROR, so a resolver asking both goes on with the A records.
            let wanted: Vec<&IpAddr> = addrs
                .iter()
                .filter(|ip| match q.query_type() {
                    RecordType::A => ip.is_ipv4(),
                    RecordType::AAAA => ip.is_ipv6(),
                    RecordType::ANY => true,
                    _ => false,
                })
                .collect();
            if !wanted.is_empty() {
                let k = self.rotate.fetch_add(1, Ordering::Relaxed) % wanted.len();
                for ip in wanted[k..].iter().chain(&wanted[..k]) {
                    let data = match **ip {
                        IpAddr::V4(v4) => RData::A(A(v4)),
                        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
                    };
                    reply.add_answer(Record::from_rdata(q.name().clone(), 0, data));
                }
            }
            return reply.to_vec().ok();
        }
        if !short.contains('.') && !self.forward_only {
            // A bare name that no container holds: containers ask us first, so say it now
            // rather than after a round trip to the host's resolvers.
            reply.metadata.response_code = ResponseCode::NXDomain;
            reply.metadata.authoritative = true;
            return reply.to_vec().ok();
        }
        if !self.internal {
            let forwarder = self
                .table
                .upstreams
                .get(from)
                .unwrap_or_else(|| self.forwarder.clone());
            if let Some(r) = forwarder.forward(&msg, query, via).await {
                return Some(r);
            }
        }
        reply.metadata.response_code = ResponseCode::ServFail;
        reply.to_vec().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;
    use hickory_proto::rr::Name;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::str::FromStr;

    const FROM: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 234, 1, 9));

    fn query(name: &str) -> Vec<u8> {
        query_of(name, RecordType::A)
    }

    fn query_of(name: &str, t: RecordType) -> Vec<u8> {
        let mut m = Message::query();
        m.metadata.id = 7;
        m.add_query(Query::query(Name::from_str(name).unwrap(), t));
        m.to_vec().unwrap()
    }

    fn addrs(reply: &[u8]) -> (ResponseCode, Vec<IpAddr>) {
        let m = Message::from_vec(reply).unwrap();
        let ips = m
            .answers
            .iter()
            .filter_map(|r| match r.data {
                RData::A(A(ip)) => Some(IpAddr::V4(ip)),
                RData::AAAA(AAAA(ip)) => Some(IpAddr::V6(ip)),
                _ => None,
            })
            .collect();
        (m.metadata.response_code, ips)
    }

    fn server(internal: bool, resolv_conf: &str) -> Server {
        let table = Arc::new(Table::default());
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let (a, b) = (ip("10.234.1.2"), ip("10.234.1.3"));
        let (a6, b6) = (ip("fd00:1::2"), ip("fd00:1::3"));
        table.set(
            "n",
            [
                ("web".to_string(), vec![a, a6, b, b6]),
                ("db".to_string(), vec![a]),
            ]
            .into(),
        );
        let fwd = Arc::new(Forwarder::new(resolv_conf));
        Server::new("n", "mynet", internal, table, fwd)
    }

    #[tokio::test]
    async fn names_rotate_and_unknown_is_nxdomain() {
        let s = server(false, "/nonexistent");
        let udp = Transport::Udp;
        let (rc, first) = addrs(&s.answer(&query("web."), udp, FROM).await.unwrap());
        assert_eq!(rc, ResponseCode::NoError);
        assert_eq!(first.len(), 2);
        assert!(
            first.iter().all(IpAddr::is_ipv4),
            "A records only: {first:?}"
        );
        let (_, second) = addrs(&s.answer(&query("WEB.mynet."), udp, FROM).await.unwrap());
        assert_eq!(second.len(), 2);
        assert_ne!(first[0], second[0], "rotated");
        let (rc, none) = addrs(&s.answer(&query("nothere."), udp, FROM).await.unwrap());
        assert_eq!((rc, none.len()), (ResponseCode::NXDomain, 0));
        // No upstream to relay to: SERVFAIL, not silence.
        let (rc, _) = addrs(&s.answer(&query("example.org."), udp, FROM).await.unwrap());
        assert_eq!(rc, ResponseCode::ServFail);
    }

    #[tokio::test]
    async fn internal_networks_answer_their_names_and_forward_nothing() {
        // An upstream that would answer if asked: a socket nobody reads would hold the
        // query for the whole deadline, so a quick SERVFAIL shows it was never asked.
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("resolv.conf");
        std::fs::write(&conf, "nameserver 127.0.0.1\n").unwrap();
        let s = server(true, conf.to_str().unwrap());
        let (rc, ips) = addrs(&s.answer(&query("db."), Transport::Udp, FROM).await.unwrap());
        assert_eq!((rc, ips.len()), (ResponseCode::NoError, 1));
        let t = std::time::Instant::now();
        let (rc, _) = addrs(
            &s.answer(&query("example.org."), Transport::Tcp, FROM)
                .await
                .unwrap(),
        );
        assert_eq!(rc, ResponseCode::ServFail);
        assert!(t.elapsed() < std::time::Duration::from_millis(100));
    }

    #[tokio::test]
    async fn aaaa_records_rotate_and_an_ipv4_only_name_gets_an_empty_noerror() {
        let s = server(false, "/nonexistent");
        let ask = |name: &str, t| {
            let q = query_of(name, t);
            let s = &s;
            async move { s.answer(&q, Transport::Udp, FROM).await }
        };
        let (rc, first) = addrs(&ask("web.", RecordType::AAAA).await.unwrap());
        assert_eq!(rc, ResponseCode::NoError);
        let want: Vec<IpAddr> = ["fd00:1::2", "fd00:1::3"]
            .map(|a| IpAddr::V6(a.parse::<Ipv6Addr>().unwrap()))
            .into();
        let mut sorted = first.clone();
        sorted.sort();
        assert_eq!(sorted, want);
        let (_, second) = addrs(&ask("web.mynet.", RecordType::AAAA).await.unwrap());
        assert_eq!(second.len(), 2);
        assert_ne!(first[0], second[0], "rotated");
        // IPv4 only: NOERROR with no answer (a resolver asking both keeps the A records).
        let reply = ask("db.", RecordType::AAAA).await.unwrap();
        let (rc, none) = addrs(&reply);
        assert_eq!((rc, none.len()), (ResponseCode::NoError, 0));
        assert!(!Message::from_vec(&reply).unwrap().metadata.authoritative);
        let (rc, v4) = addrs(&ask("db.", RecordType::A).await.unwrap());
        assert_eq!(
            (rc, v4),
            (
                ResponseCode::NoError,
                vec![IpAddr::V4(Ipv4Addr::new(10, 234, 1, 2))]
            )
        );
        // Other types of a known name: empty NOERROR too; unknown names stay NXDOMAIN.
        let (rc, none) = addrs(&ask("web.", RecordType::MX).await.unwrap());
        assert_eq!((rc, none.len()), (ResponseCode::NoError, 0));
        let (rc, _) = addrs(&ask("nothere.", RecordType::AAAA).await.unwrap());
        assert_eq!(rc, ResponseCode::NXDomain);
    }

    #[test]
    fn udp_replies_fit_the_client_or_are_truncated() {
        let q = query("many.");
        let mut big = Message::response(7, OpCode::Query);
        big.add_query(Message::from_vec(&q).unwrap().queries[0].clone());
        for i in 0..60u8 {
            let ip = Ipv4Addr::new(10, 0, 0, i);
            big.add_answer(Record::from_rdata(
                Name::from_str("many.").unwrap(),
                0,
                RData::A(A(ip)),
            ));
        }
        let big = big.to_vec().unwrap();
        assert!(big.len() > 512);
        let fitted = Message::from_vec(&serve::fit(&q, big.clone())).unwrap();
        assert!(fitted.metadata.truncation && fitted.answers.is_empty());
        assert_eq!(fitted.metadata.id, 7);
        let small = server_reply_small();
        assert_eq!(serve::fit(&q, small.clone()), small);
    }

    fn server_reply_small() -> Vec<u8> {
        let mut m = Message::response(7, OpCode::Query);
        m.add_query(Query::query(Name::from_str("x.").unwrap(), RecordType::A));
        m.to_vec().unwrap()
    }
}
