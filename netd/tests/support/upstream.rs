//! Fake upstream DNS servers and a tiny resolver, for tests that look at what netd's DNS
//! servers forward. Sockets are made in a chosen network namespace (on a short-lived thread
//! that entered it) and served from ordinary threads; everything stops when dropped.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, OpCode, Query};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};

/// Runs `f` on a thread inside the network namespace at `ns`.
pub fn in_netns<T: Send + 'static>(ns: &Path, f: impl FnOnce() -> T + Send + 'static) -> T {
    let file = std::fs::File::open(ns).unwrap();
    std::thread::spawn(move || {
        nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        f()
    })
    .join()
    .unwrap()
}

/// What an upstream does with queries.
#[derive(Clone, Copy)]
pub enum Behaviour {
    /// Reads and never answers: a dead resolver whose packets are dropped.
    Silent,
    /// Answers every name with this address and TTL; names starting with `big.` get 40
    /// addresses, which over UDP come back truncated (TC, no records).
    Answer(Ipv4Addr, u32),
}

pub struct FakeDns {
    pub udp: Arc<AtomicUsize>,
    pub tcp: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

fn reply(query: &[u8], how: Behaviour, tcp: bool) -> Option<Vec<u8>> {
    let Behaviour::Answer(ip, ttl) = how else {
        return None;
    };
    let q = Message::from_vec(query).ok()?;
    let mut r = Message::response(q.metadata.id, OpCode::Query);
    r.metadata.recursion_available = true;
    r.metadata.recursion_desired = q.metadata.recursion_desired;
    let question = q.queries.first()?.clone();
    let name = question.name().clone();
    r.add_query(question);
    let big = name.to_ascii().to_ascii_lowercase().starts_with("big.");
    if big && !tcp {
        r.metadata.truncation = true;
    } else {
        let n = if big { 40 } else { 1 };
        for i in 0..n {
            let o = ip.octets();
            let ip = Ipv4Addr::new(o[0], o[1], o[2], o[3].wrapping_add(i));
            r.add_answer(Record::from_rdata(name.clone(), ttl, RData::A(A(ip))));
        }
    }
    r.to_vec().ok()
}

impl FakeDns {
    /// A server on `ip`:53 (UDP and TCP) in the namespace at `ns`.
    pub fn start(ns: &Path, ip: &str, how: Behaviour) -> FakeDns {
        let addr = format!("{ip}:53");
        let (udp, tcp) = in_netns(ns, move || {
            (
                UdpSocket::bind(&addr).unwrap(),
                TcpListener::bind(&addr).unwrap(),
            )
        });
        let stop = Arc::new(AtomicBool::new(false));
        let (nu, nt) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let mut threads = Vec::new();
        {
            let (stop, count) = (stop.clone(), nu.clone());
            udp.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            threads.push(std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while !stop.load(Ordering::SeqCst) {
                    let Ok((n, peer)) = udp.recv_from(&mut buf) else {
                        continue;
                    };
                    count.fetch_add(1, Ordering::SeqCst);
                    if let Some(r) = reply(&buf[..n], how, false) {
                        let _ = udp.send_to(&r, peer);
                    }
                }
            }));
        }
        {
            let (stop, count) = (stop.clone(), nt.clone());
            tcp.set_nonblocking(true).unwrap();
            threads.push(std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let Ok((mut s, _)) = tcp.accept() else {
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    };
                    let _ = s.set_nonblocking(false);
                    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                    let mut len = [0u8; 2];
                    if s.read_exact(&mut len).is_err() {
                        continue;
                    }
                    let mut q = vec![0u8; u16::from_be_bytes(len) as usize];
                    if s.read_exact(&mut q).is_err() {
                        continue;
                    }
                    count.fetch_add(1, Ordering::SeqCst);
                    if let Some(r) = reply(&q, how, true) {
                        let _ = s.write_all(&(r.len() as u16).to_be_bytes());
                        let _ = s.write_all(&r);
                    }
                }
            }));
        }
        FakeDns {
            udp: nu,
            tcp: nt,
            stop,
            threads,
        }
    }

    pub fn queries(&self) -> usize {
        self.udp.load(Ordering::SeqCst) + self.tcp.load(Ordering::SeqCst)
    }
}

impl Drop for FakeDns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// One answer as a test looks at it.
#[derive(Debug)]
pub struct Answer {
    pub rcode: String,
    pub ips: Vec<Ipv4Addr>,
    pub truncated: bool,
    pub took: Duration,
}

/// Asks `server`:53 for the A records of `name` from inside the namespace at `ns`, over UDP
/// or TCP; None when nothing came back within 6 s (longer than glibc's 5 s).
pub fn ask(ns: &Path, server: &str, name: &str, tcp: bool) -> Option<Answer> {
    let server = format!("{server}:53");
    let name = name.to_string();
    in_netns(ns, move || {
        let mut m = Message::query();
        m.metadata.id = 4242;
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_str(&name).unwrap(), RecordType::A));
        let q = m.to_vec().unwrap();
        let t = Instant::now();
        let wait = Duration::from_secs(6);
        let bytes = if tcp {
            let mut s = TcpStream::connect_timeout(&server.parse().unwrap(), wait).ok()?;
            s.set_read_timeout(Some(wait)).unwrap();
            s.write_all(&(q.len() as u16).to_be_bytes()).unwrap();
            s.write_all(&q).unwrap();
            let mut len = [0u8; 2];
            s.read_exact(&mut len).ok()?;
            let mut b = vec![0u8; u16::from_be_bytes(len) as usize];
            s.read_exact(&mut b).ok()?;
            b
        } else {
            let s = UdpSocket::bind("0.0.0.0:0").unwrap();
            s.set_read_timeout(Some(wait)).unwrap();
            s.send_to(&q, &server).unwrap();
            let mut b = vec![0u8; 4096];
            let n = s.recv(&mut b).ok()?;
            b.truncate(n);
            b
        };
        let took = t.elapsed();
        let r = Message::from_vec(&bytes).unwrap();
        assert_eq!(r.metadata.id, 4242);
        Some(Answer {
            rcode: format!("{:?}", r.metadata.response_code),
            ips: r
                .answers
                .iter()
                .filter_map(|a| match a.data {
                    RData::A(A(ip)) => Some(ip),
                    _ => None,
                })
                .collect(),
            truncated: r.metadata.truncation,
            took,
        })
    })
}

/// Whether a TCP connection to `addr` from the namespace at `ns` is made within a second.
pub fn connects(ns: &Path, addr: &str) -> bool {
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    in_netns(ns, move || {
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
    })
}

/// A TCP listener on `addr` in the namespace at `ns`, accepting (and closing) until dropped.
pub struct Listener {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Listener {
    pub fn start(ns: &Path, addr: &str) -> Listener {
        let a = addr.to_string();
        let l = in_netns(ns, move || TcpListener::bind(&a).unwrap());
        l.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                if l.accept().is_err() {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        });
        Listener {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
