//! Forwarding to the host's resolvers: the nameservers of the host's resolv.conf (re-read
//! when it changes), tried in order with a head start each instead of a full timeout each, so
//! a dead first nameserver costs a fraction of a second once, not five seconds per query.
//!
//! netd runs in the host's network namespace, so a resolver on loopback (systemd-resolved's
//! 127.0.0.53, a local dnsmasq) is reached like any other; containers never see it.
//!
//! A query that came over UDP goes out over UDP; a truncated reply is passed back as it is
//! (not cached), so the client retries over TCP, and a query that came over TCP goes out over
//! TCP. Answers are cached (see `cache`), shared by every network's server.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use hickory_proto::op::{Message, MessageType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::cache::{Cache, Key};
use super::resolv::Watch;

/// How a query reached us, and so how it goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

#[derive(Debug, Clone)]
pub struct Timing {
    /// How long an upstream has alone before the next one is asked too.
    pub head_start: Duration,
    /// When the whole attempt gives up (below the 5 s a glibc client waits for us).
    pub deadline: Duration,
    /// How long an upstream that failed to answer is asked last.
    pub penalty: Duration,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            head_start: Duration::from_millis(400),
            deadline: Duration::from_millis(3000),
            penalty: Duration::from_secs(30),
        }
    }
}

/// Entries in the shared answer cache.
pub const CACHE_SIZE: usize = 4096;
/// Queries forwarded at once (each holds a socket for up to the deadline); beyond, a flood
/// from one container gets SERVFAIL instead of exhausting the daemon's file descriptors.
pub const MAX_IN_FLIGHT: usize = 512;

pub struct Forwarder {
    resolv: Watch,
    cache: Mutex<Cache>,
    /// Upstreams that last failed to answer, and when.
    failed: Mutex<Vec<(SocketAddr, Instant)>>,
    in_flight: tokio::sync::Semaphore,
    timing: Timing,
}

impl Forwarder {
    pub fn new(resolv_conf: impl Into<PathBuf>) -> Forwarder {
        Forwarder::with_timing(resolv_conf, Timing::default())
    }

    /// Forwarding to `servers`, never to the host's: a container's `--dns`.
    pub fn fixed(servers: Vec<SocketAddr>) -> Forwarder {
        Forwarder::with_watch(Watch::fixed(servers), Timing::default())
    }

    /// The servers of [`Forwarder::fixed`]; empty for one that follows a resolv.conf.
    pub fn fixed_servers(&self) -> &[SocketAddr] {
        self.resolv.fixed_servers()
    }

    pub fn with_timing(resolv_conf: impl Into<PathBuf>, timing: Timing) -> Forwarder {
        Forwarder::with_watch(Watch::new(resolv_conf), timing)
    }

    fn with_watch(resolv: Watch, timing: Timing) -> Forwarder {
        Forwarder {
            resolv,
            cache: Mutex::new(Cache::new(CACHE_SIZE)),
            failed: Mutex::new(Vec::new()),
            in_flight: tokio::sync::Semaphore::new(MAX_IN_FLIGHT),
            timing,
        }
    }

    /// The upstreams to ask, in order: resolv.conf's, with those that failed lately last.
    fn upstreams(&self) -> Vec<SocketAddr> {
        let (conf, changed) = self.resolv.get();
        if changed {
            // Other servers may answer differently (split DNS, a new network).
            self.cache.lock().expect("dns cache lock").clear();
        }
        let now = Instant::now();
        let mut failed = self.failed.lock().expect("dns health lock");
        failed.retain(|(_, at)| now.duration_since(*at) < self.timing.penalty);
        let mut ups = conf.nameservers.clone();
        ups.sort_by_key(|u| failed.iter().any(|(f, _)| f == u));
        ups
    }

    fn mark(&self, up: SocketAddr, answered: bool) {
        let mut failed = self.failed.lock().expect("dns health lock");
        failed.retain(|(f, _)| *f != up);
        if !answered {
            tracing::debug!("dns upstream {up} did not answer");
            failed.push((up, Instant::now()));
        }
    }

    /// The reply to `query` (whose wire form is `raw`) from the cache or an upstream, with
    /// the query's id; None when no upstream answered in time.
    pub async fn forward(&self, query: &Message, raw: &[u8], via: Transport) -> Option<Vec<u8>> {
        // First, so that a changed resolv.conf empties the cache before it is looked in.
        let ups = self.upstreams();
        let key = Key::of(query);
        if let Some(k) = &key {
            let hit = self
                .cache
                .lock()
                .expect("dns cache lock")
                .get(k, Instant::now());
            if let Some(mut reply) = hit {
                reply.metadata.id = query.metadata.id;
                reply.metadata.recursion_desired = query.metadata.recursion_desired;
                // The client's spelling of the name (some randomise its case).
                reply.queries = query.queries.clone();
                if query.edns.is_none() {
                    reply.edns = None;
                }
                return reply.to_vec().ok();
            }
        }
        let Ok(_permit) = self.in_flight.try_acquire() else {
            tracing::warn!("dns: {MAX_IN_FLIGHT} queries in flight, refusing more");
            return None;
        };
        let (reply, msg) = self.ask(&ups, query, raw, via).await?;
        if let Some(k) = key {
            self.cache
                .lock()
                .expect("dns cache lock")
                .insert(k, &msg, Instant::now());
        }
        Some(reply)
    }

    /// Asks the upstreams, each after the previous one's head start (at once when it refused),
    /// and takes the first proper reply.
    async fn ask(
        &self,
        ups: &[SocketAddr],
        query: &Message,
        raw: &[u8],
        via: Transport,
    ) -> Option<(Vec<u8>, Message)> {
        let deadline = tokio::time::Instant::now() + self.timing.deadline;
        let mut pending = FuturesUnordered::new();
        let mut asked = Vec::new();
        let mut next = ups.iter();
        let mut launch_at = tokio::time::Instant::now();
        loop {
            let more = asked.len() < ups.len();
            if more && (pending.is_empty() || tokio::time::Instant::now() >= launch_at) {
                let up = *next.next().expect("more upstreams");
                asked.push(up);
                pending.push(async move { (up, exchange(up, query, raw, via).await) });
                launch_at = tokio::time::Instant::now() + self.timing.head_start;
                continue;
            }
            if pending.is_empty() {
                return None; // none configured, or all refused
            }
            tokio::select! {
                Some((up, r)) = pending.next() => match r {
                    Ok(got) => {
                        self.mark(up, true);
                        // Those asked before and still silent lost their head start.
                        for slow in asked.iter().take_while(|a| **a != up) {
                            self.mark(*slow, false);
                        }
                        return Some(got);
                    }
                    Err(e) => {
                        tracing::debug!("dns upstream {up}: {e}");
                        self.mark(up, false);
                        launch_at = tokio::time::Instant::now();
                    }
                },
                _ = tokio::time::sleep_until(launch_at), if more => {}
                _ = tokio::time::sleep_until(deadline) => {
                    for up in asked {
                        self.mark(up, false);
                    }
                    return None;
                }
            }
        }
    }
}

/// One query to one upstream; the reply if it is the answer to this query.
async fn exchange(
    up: SocketAddr,
    query: &Message,
    raw: &[u8],
    via: Transport,
) -> std::io::Result<(Vec<u8>, Message)> {
    match via {
        Transport::Udp => {
            let any: SocketAddr = if up.is_ipv4() {
                (Ipv4Addr::UNSPECIFIED, 0).into()
            } else {
                (Ipv6Addr::UNSPECIFIED, 0).into()
            };
            let s = UdpSocket::bind(any).await?;
            // Connected: only this upstream's datagrams arrive, and a closed port shows as
            // ECONNREFUSED at once instead of silence.
            s.connect(up).await?;
            s.send(raw).await?;
            let mut buf = vec![0u8; 65535];
            loop {
                let n = s.recv(&mut buf).await?;
                if let Some(m) = reply_to(query, &buf[..n]) {
                    buf.truncate(n);
                    return Ok((buf, m));
                }
            }
        }
        Transport::Tcp => {
            let mut s = TcpStream::connect(up).await?;
            let len = u16::try_from(raw.len()).map_err(std::io::Error::other)?;
            let mut out = len.to_be_bytes().to_vec();
            out.extend_from_slice(raw);
            s.write_all(&out).await?;
            loop {
                let n = s.read_u16().await? as usize;
                let mut buf = vec![0u8; n];
                s.read_exact(&mut buf).await?;
                if let Some(m) = reply_to(query, &buf) {
                    return Ok((buf, m));
                }
            }
        }
    }
}

/// `bytes` parsed, if they are a response to `query` (same id, same question).
fn reply_to(query: &Message, bytes: &[u8]) -> Option<Message> {
    let m = Message::from_vec(bytes).ok()?;
    let same_question = m.queries.len() == query.queries.len()
        && m.queries.iter().zip(&query.queries).all(|(a, b)| {
            a.query_type() == b.query_type()
                && a.query_class() == b.query_class()
                && a.name()
                    .to_ascii()
                    .eq_ignore_ascii_case(&b.name().to_ascii())
        });
    (m.metadata.id == query.metadata.id
        && m.metadata.message_type == MessageType::Response
        && same_question)
        .then_some(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{OpCode, Query};
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{Name, RData, Record, RecordType};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::net::TcpListener;

    /// Runs `f` on a thread in a network namespace of its own (lo up), so the fake upstreams
    /// can take port 53 on loopback addresses without touching the host.
    fn in_private_netns<F, Fut>(f: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()>,
    {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root for a network namespace");
            return;
        }
        std::thread::spawn(move || {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            // A child forked from this thread starts in its namespace.
            let st = std::process::Command::new("ip")
                .args(["link", "set", "lo", "up"])
                .status()
                .unwrap();
            assert!(st.success());
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(f());
        })
        .join()
        .unwrap();
    }

    #[derive(Default)]
    struct Counts {
        udp: AtomicUsize,
        tcp: AtomicUsize,
    }

    /// The reply of a fake upstream: `name` → 10.9.9.9 with `ttl`; names starting with
    /// `big.` get 40 records, truncated (no records, TC) over UDP.
    fn fake_reply(query: &[u8], ttl: u32, tcp: bool) -> Vec<u8> {
        let q = Message::from_vec(query).unwrap();
        let mut r = Message::response(q.metadata.id, OpCode::Query);
        r.add_query(q.queries[0].clone());
        let name = q.queries[0].name().clone();
        let big = name.to_ascii().starts_with("big.");
        if big && !tcp {
            r.metadata.truncation = true;
        } else {
            for i in 0..if big { 40 } else { 1 } {
                let ip = std::net::Ipv4Addr::new(10, 9, 9, 9 + i);
                r.add_answer(Record::from_rdata(name.clone(), ttl, RData::A(A(ip))));
            }
        }
        r.to_vec().unwrap()
    }

    /// A fake upstream on `ip`:53, UDP and TCP; it answers only when `answer` is true (a
    /// silent one stands for a dead resolver that drops queries).
    async fn fake(ip: &str, answer: bool, ttl: u32) -> Arc<Counts> {
        let counts = Arc::new(Counts::default());
        let udp = UdpSocket::bind((ip, 53)).await.unwrap();
        let tcp = TcpListener::bind((ip, 53)).await.unwrap();
        let c = counts.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let (n, peer) = udp.recv_from(&mut buf).await.unwrap();
                c.udp.fetch_add(1, Ordering::SeqCst);
                if answer {
                    let r = fake_reply(&buf[..n], ttl, false);
                    udp.send_to(&r, peer).await.unwrap();
                }
            }
        });
        let c = counts.clone();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = tcp.accept().await.unwrap();
                let c = c.clone();
                tokio::spawn(async move {
                    let n = s.read_u16().await.unwrap() as usize;
                    let mut q = vec![0u8; n];
                    s.read_exact(&mut q).await.unwrap();
                    c.tcp.fetch_add(1, Ordering::SeqCst);
                    if !answer {
                        tokio::time::sleep(Duration::from_secs(60)).await;
                    }
                    let r = fake_reply(&q, ttl, true);
                    s.write_all(&(r.len() as u16).to_be_bytes()).await.unwrap();
                    s.write_all(&r).await.unwrap();
                });
            }
        });
        counts
    }

    fn query(name: &str, id: u16) -> (Message, Vec<u8>) {
        let mut m = Message::query();
        m.metadata.id = id;
        m.metadata.recursion_desired = true;
        // from_ascii keeps the case (from_str would lower it).
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
        let raw = m.to_vec().unwrap();
        (m, raw)
    }

    async fn ask(f: &Forwarder, name: &str, id: u16, via: Transport) -> Option<Message> {
        let (m, raw) = query(name, id);
        let r = f.forward(&m, &raw, via).await?;
        let r = Message::from_vec(&r).unwrap();
        assert_eq!(r.metadata.id, id);
        Some(r)
    }

    fn conf(dir: &tempfile::TempDir, text: &str) -> PathBuf {
        let p = dir.path().join("resolv.conf");
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn a_dead_first_upstream_costs_one_head_start_then_nothing() {
        in_private_netns(|| async {
            let dead = fake("127.0.0.2", false, 60).await;
            let live = fake("127.0.0.3", true, 60).await;
            let dir = tempfile::tempdir().unwrap();
            let p = conf(&dir, "nameserver 127.0.0.2\nnameserver 127.0.0.3\n");
            let f = Forwarder::new(&p);
            let t = Instant::now();
            let r = ask(&f, "one.example.", 1, Transport::Udp).await.unwrap();
            let first = t.elapsed();
            assert_eq!(r.answers.len(), 1);
            assert!(first >= Duration::from_millis(350), "{first:?}");
            assert!(
                first < Duration::from_secs(1),
                "failover within a second: {first:?}"
            );
            // The dead one now goes last: the next name is answered at once.
            let t = Instant::now();
            ask(&f, "two.example.", 2, Transport::Udp).await.unwrap();
            assert!(
                t.elapsed() < Duration::from_millis(200),
                "{:?}",
                t.elapsed()
            );
            assert_eq!(dead.udp.load(Ordering::SeqCst), 1);
            assert_eq!(live.udp.load(Ordering::SeqCst), 2);
        });
    }

    #[test]
    fn a_refusing_upstream_is_skipped_at_once_and_none_answering_is_none() {
        in_private_netns(|| async {
            fake("127.0.0.3", true, 60).await;
            let dir = tempfile::tempdir().unwrap();
            // Nothing listens on 127.0.0.4: ICMP port unreachable, seen as ECONNREFUSED.
            let p = conf(&dir, "nameserver 127.0.0.4\nnameserver 127.0.0.3\n");
            let f = Forwarder::new(&p);
            let t = Instant::now();
            ask(&f, "one.example.", 1, Transport::Udp).await.unwrap();
            assert!(
                t.elapsed() < Duration::from_millis(200),
                "{:?}",
                t.elapsed()
            );
            // Only silent upstreams: the deadline, then nothing (the server says SERVFAIL).
            fake("127.0.0.5", false, 60).await;
            let p2 = conf(&dir, "nameserver 127.0.0.5\n");
            let f = Forwarder::with_timing(
                &p2,
                Timing {
                    deadline: Duration::from_millis(500),
                    ..Timing::default()
                },
            );
            let t = Instant::now();
            assert!(ask(&f, "x.example.", 3, Transport::Udp).await.is_none());
            assert!(t.elapsed() < Duration::from_millis(700));
        });
    }

    #[test]
    fn answers_are_cached_for_their_ttl_and_dropped_when_resolv_conf_changes() {
        in_private_netns(|| async {
            let a = fake("127.0.0.3", true, 2).await;
            let b = fake("127.0.0.6", true, 60).await;
            let dir = tempfile::tempdir().unwrap();
            let p = conf(&dir, "nameserver 127.0.0.3\n");
            let f = Forwarder::new(&p);
            for id in 1..=3 {
                let r = ask(&f, "Cached.Example.", id, Transport::Udp)
                    .await
                    .unwrap();
                // With the client's spelling, also from the cache (some clients randomise
                // the case and check it comes back).
                assert_eq!(r.queries[0].name().to_ascii(), "Cached.Example.");
            }
            assert_eq!(a.udp.load(Ordering::SeqCst), 1, "asked upstream once");
            tokio::time::sleep(Duration::from_millis(2100)).await;
            ask(&f, "cached.example.", 4, Transport::Udp).await.unwrap();
            assert_eq!(a.udp.load(Ordering::SeqCst), 2, "asked again after the TTL");
            // A new resolv.conf: new upstream, and the old answers are forgotten.
            std::thread::sleep(Duration::from_millis(10));
            conf(&dir, "nameserver 127.0.0.6\n");
            ask(&f, "cached.example.", 5, Transport::Udp).await.unwrap();
            assert_eq!(a.udp.load(Ordering::SeqCst), 2);
            assert_eq!(b.udp.load(Ordering::SeqCst), 1);
        });
    }

    #[test]
    fn truncated_answers_pass_back_and_tcp_queries_go_out_over_tcp() {
        in_private_netns(|| async {
            let up = fake("127.0.0.3", true, 60).await;
            let dir = tempfile::tempdir().unwrap();
            let p = conf(&dir, "nameserver 127.0.0.3\n");
            let f = Forwarder::new(&p);
            let r = ask(&f, "big.example.", 1, Transport::Udp).await.unwrap();
            assert!(r.metadata.truncation && r.answers.is_empty());
            // Not cached: the second UDP query goes upstream again.
            ask(&f, "big.example.", 2, Transport::Udp).await.unwrap();
            assert_eq!(up.udp.load(Ordering::SeqCst), 2);
            let r = ask(&f, "big.example.", 3, Transport::Tcp).await.unwrap();
            assert_eq!(r.answers.len(), 40);
            assert!(!r.metadata.truncation);
            assert_eq!(up.tcp.load(Ordering::SeqCst), 1);
        });
    }
}
