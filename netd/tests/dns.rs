//! The DNS servers' forwarding, end to end: a container asks its network's gateway; netd
//! (in a namespace standing for the host) forwards to fake upstreams in that namespace, one
//! of them on loopback as systemd-resolved's 127.0.0.53 is, one dead. Failover, the cache,
//! a changed resolv.conf, TCP and truncation, the resolv.conf containers are given, and the
//! default network's forwarder for hosts whose resolvers are all on loopback.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use berth_proto::netd as pb;
use berth_tests::TestEnv;
use support::upstream::{ask, Behaviour, FakeDns};
use support::*;

#[tokio::test]
async fn forwarding_fails_over_caches_follows_resolv_conf_and_speaks_tcp() {
    if !skip_unless_able() {
        return;
    }
    let env = TestEnv::new("dns_forwarding");
    let host = host_ns(&env);
    let hp = ns_path(&host);
    // A dead resolver first (it reads and never answers; on an extra address of lo, as the
    // dummy driver may be missing), then a resolver on the host's loopback.
    let out = in_ns(&hp, &["ip", "addr", "add", "10.234.250.1/32", "dev", "lo"]);
    assert!(out.success(), "{}", out.stderr);
    let dead = FakeDns::start(&hp, "10.234.250.1", Behaviour::Silent);
    let stub = FakeDns::start(
        &hp,
        "127.0.0.53",
        Behaviour::Answer("10.99.0.1".parse().unwrap(), 60),
    );
    let resolv = env.path().join("resolv.conf");
    std::fs::write(
        &resolv,
        "nameserver 10.234.250.1\nnameserver 127.0.0.53\nsearch corp.example\n",
    )
    .unwrap();
    let mut d = Netd::start(&env, &host, &[]).await;
    d.create("app", "10.234.30.0/24").await.unwrap();
    d.sandbox("a", vec![]).await.unwrap();
    let sb_a = d.connect("a", "app", &[]).await.unwrap();
    let sb = sb_a.clone();
    let a = PathBuf::from(&sb.netns_path);
    assert_eq!(
        sb.resolv_conf,
        "nameserver 10.234.30.1\nsearch corp.example\n"
    );

    // The dead one costs its head start once, well under a second: seen by glibc in the
    // container, through the resolv.conf netd gave (when the host has python3 and unshare)...
    if berth_tests::has_cmd("python3") && berth_tests::has_cmd("unshare") {
        let conf = env.path().join("a-resolv.conf");
        std::fs::write(&conf, &sb.resolv_conf).unwrap();
        let script = format!(
            "mount --bind {} /etc/resolv.conf && python3 -c \"import socket, time; \
             t = time.monotonic(); ip = socket.gethostbyname('www.example'); \
             print(ip, time.monotonic() - t)\"",
            conf.display()
        );
        let out = in_ns(&a, &["unshare", "-m", "sh", "-c", &script]);
        assert!(out.success(), "{}", out.stderr);
        let (ip, took) = out.stdout.trim().split_once(' ').unwrap();
        assert_eq!(ip, "10.99.0.1");
        let took: f64 = took.parse().unwrap();
        assert!(took < 1.0, "glibc waited {took} s");
    } else {
        let r = ask(&a, "10.234.30.1", "www.example.", false).expect("an answer");
        assert_eq!(r.ips, ["10.99.0.1".parse::<std::net::Ipv4Addr>().unwrap()]);
        assert!(
            r.took < Duration::from_secs(1),
            "failover took {:?}",
            r.took
        );
    }
    assert_eq!(dead.queries(), 1);
    // ...and then nothing: it is asked last while it stays silent.
    let r = ask(&a, "10.234.30.1", "other.example.", false).unwrap();
    assert_eq!(r.rcode, "NoError");
    assert!(r.took < Duration::from_millis(300), "{:?}", r.took);
    assert_eq!(dead.queries(), 1);
    assert_eq!(stub.queries(), 2);

    // Cached for its TTL: asking again reaches no upstream.
    for _ in 0..3 {
        let r = ask(&a, "10.234.30.1", "WWW.example.", false).unwrap();
        assert_eq!(r.ips, ["10.99.0.1".parse::<std::net::Ipv4Addr>().unwrap()]);
    }
    assert_eq!(stub.queries(), 2, "answered from the cache");

    // Truncated over UDP (passed back, not cached), whole over TCP.
    let r = ask(&a, "10.234.30.1", "big.example.", false).unwrap();
    assert!(r.truncated && r.ips.is_empty(), "{r:?}");
    let r = ask(&a, "10.234.30.1", "big.example.", true).unwrap();
    assert_eq!((r.ips.len(), r.truncated), (40, false));
    assert_eq!(stub.tcp.load(std::sync::atomic::Ordering::SeqCst), 1);
    // Container names over TCP too.
    let r = ask(&a, "10.234.30.1", "a.", true).unwrap();
    assert_eq!(
        r.ips,
        [ip_on(&sb, "app").parse::<std::net::Ipv4Addr>().unwrap()]
    );

    // A new resolv.conf is used at once (and the old answers are forgotten).
    let other = FakeDns::start(
        &hp,
        "127.0.0.54",
        Behaviour::Answer("10.99.0.2".parse().unwrap(), 60),
    );
    std::fs::write(&resolv, "nameserver 127.0.0.54\n").unwrap();
    let r = ask(&a, "10.234.30.1", "www.example.", false).unwrap();
    assert_eq!(r.ips, ["10.99.0.2".parse::<std::net::Ipv4Addr>().unwrap()]);
    assert_eq!(other.queries(), 1);

    // No upstream answering at all: SERVFAIL before a client's 5 s timeout.
    std::fs::write(&resolv, "nameserver 10.234.250.1\n").unwrap();
    let r = ask(&a, "10.234.30.1", "gone.example.", false).expect("an answer, not silence");
    assert_eq!(r.rcode, "ServFail");
    assert!(r.took < Duration::from_secs(4), "{:?}", r.took);

    // The default network's containers get the host's resolvers, never a loopback one.
    std::fs::write(&resolv, "nameserver 127.0.0.53\nnameserver 10.234.250.1\n").unwrap();
    d.sandbox("b", vec![]).await.unwrap();
    let sb = d.connect("b", "bridge", &[]).await.unwrap();
    assert_eq!(sb.resolv_conf, "nameserver 10.234.250.1\n");
    // A host whose resolvers are all on loopback: the default network's gateway, which
    // forwards to them (Docker would hand out 8.8.8.8 and miss the host's resolver), and
    // still resolves no container names.
    std::fs::write(&resolv, "nameserver 127.0.0.53\noptions edns0\n").unwrap();
    let sb = d
        .client
        .inspect_sandbox(pb::InspectSandboxRequest {
            container_id: cid("b"),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(sb.resolv_conf, "nameserver 10.234.0.1\noptions edns0\n");
    let b = PathBuf::from(&sb.netns_path);
    let before = stub.queries();
    let r = ask(&b, "10.234.0.1", "default.example.", false).unwrap();
    assert_eq!(r.ips, ["10.99.0.1".parse::<std::net::Ipv4Addr>().unwrap()]);
    let r = ask(&b, "10.234.0.1", "a.", false).unwrap();
    assert_ne!(
        r.ips,
        [ip_on(&sb_a, "app").parse::<std::net::Ipv4Addr>().unwrap()]
    );
    assert_eq!(stub.queries(), before + 2, "both forwarded");
}
