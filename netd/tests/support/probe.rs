//! Traffic probes run from inside a namespace: ping, a TCP client of the echo server that
//! answers with the address it saw, and a DNS query.

use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::os::fd::AsFd;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{Name, RData, RecordType};

use super::in_ns;

/// Asks `server` for `name` from inside the namespace at `ns`: the A records in order.
pub fn dns_query(ns: &Path, server: &str, name: &str) -> (String, Vec<Ipv4Addr>) {
    let (rc, ips) = dns_ask(ns, server, name, RecordType::A);
    let v4 = ips
        .into_iter()
        .filter_map(|ip| match ip {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(_) => None,
        })
        .collect();
    (rc, v4)
}

/// Asks `server` for records of type `t` (A or AAAA) of `name` from inside the namespace
/// at `ns`: the response code and the addresses in order.
pub fn dns_ask(ns: &Path, server: &str, name: &str, t: RecordType) -> (String, Vec<IpAddr>) {
    let ns = std::fs::File::open(ns).unwrap();
    let server = format!("{server}:53");
    let name = name.to_string();
    std::thread::spawn(move || {
        nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut m = Message::query();
        m.metadata.id = 42;
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_str(&name).unwrap(), t));
        s.send_to(&m.to_vec().unwrap(), &server).unwrap();
        let mut buf = [0u8; 1500];
        let n = s.recv(&mut buf).expect("a DNS answer");
        let r = Message::from_vec(&buf[..n]).unwrap();
        let ips = r
            .answers
            .iter()
            .filter_map(|a| match a.data {
                RData::A(A(ip)) => Some(IpAddr::V4(ip)),
                RData::AAAA(AAAA(ip)) => Some(IpAddr::V6(ip)),
                _ => None,
            })
            .collect();
        (format!("{:?}", r.metadata.response_code), ips)
    })
    .join()
    .unwrap()
}

pub const ECHO_PEER: &str = "import socket\n\
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
s.bind(('0.0.0.0', 8080)); s.listen(8)\n\
while True:\n    c, a = s.accept(); c.sendall(a[0].encode()); c.close()\n";

/// Connects to addr:port from namespace `ns`; what the server said (the address it saw).
pub fn client(ns: &Path, addr: &str, port: u16) -> String {
    let code = format!(
        "import socket\ns = socket.create_connection(('{addr}', {port}), timeout=3)\nprint(s.recv(100).decode())"
    );
    let out = in_ns(ns, &["python3", "-c", &code]);
    assert!(out.success(), "client to {addr}:{port}: {}", out.stderr);
    out.stdout.trim().to_string()
}

/// Whether a TCP connection to addr:port from `ns` gets an answer within a second.
pub fn answers(ns: &Path, addr: &str, port: u16) -> bool {
    let code = format!(
        "import socket\ns = socket.create_connection(('{addr}', {port}), timeout=1)\nprint(s.recv(100).decode())"
    );
    in_ns(ns, &["python3", "-c", &code]).success()
}

pub fn ping(ns: &Path, ip: &str) -> bool {
    in_ns(ns, &["ping", "-c1", "-W1", ip]).success()
}

/// Starts the echo server (TCP 8080) inside `ns` and waits until it listens.
pub fn start_echo(env: &berth_tests::TestEnv, ns: &Path) -> std::process::Child {
    let child = env.spawn(
        std::process::Command::new("nsenter")
            .arg(format!("--net={}", ns.display()))
            .args(["python3", "-c", ECHO_PEER])
            .stdin(std::process::Stdio::null()),
    );
    let deadline = std::time::Instant::now() + super::T;
    while !in_ns(
        ns,
        &[
            "sh",
            "-c",
            "cat /proc/net/tcp | grep -q ':1F90 00000000:0000 0A'",
        ],
    )
    .success()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "echo server did not listen"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}
