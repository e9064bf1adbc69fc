//! `--internal` networks: their containers reach each other and their network's DNS server
//! (which answers their names and forwards nothing), and nothing else: not another host (a
//! namespace on a veth standing for the outside), not the host's own addresses (Docker's
//! internal networks reach the host), not other networks; and nothing outside reaches them.
//! A network that is not internal, beside it, shows each path exists.

mod support;

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use berth_proto::netd as pb;
use berth_tests::{run_timeout, TestEnv};
use support::upstream::{ask, connects, Behaviour, FakeDns, Listener};
use support::*;

#[tokio::test]
async fn internal_network_reaches_only_its_peers_and_its_dns_server() {
    if !skip_unless_able() {
        return;
    }
    let env = TestEnv::new("internal_net");
    let host = host_ns(&env);
    let hp = ns_path(&host);
    // The outside: another namespace on a veth, routing back through the host.
    let other = env.unique("o");
    let veth = env.unique("vo");
    let sh = |args: &[&str]| {
        let out = run_timeout(Command::new("ip").args(args), T);
        assert!(out.success(), "ip {args:?}: {}", out.stderr);
    };
    sh(&["netns", "add", &other]);
    sh(&[
        "link", "add", &veth, "netns", &host, "type", "veth", "peer", "name", "eth0", "netns",
        &other,
    ]);
    let op = ns_path(&other);
    for (ns, args) in [
        (
            &hp,
            &["ip", "addr", "add", "10.234.251.1/24", "dev", &veth][..],
        ),
        (&hp, &["ip", "link", "set", &veth, "up"]),
        (
            &op,
            &["ip", "addr", "add", "10.234.251.2/24", "dev", "eth0"],
        ),
        (&op, &["ip", "link", "set", "eth0", "up"]),
        (&op, &["ip", "link", "set", "lo", "up"]),
        (
            &op,
            &["ip", "route", "add", "default", "via", "10.234.251.1"],
        ),
    ] {
        let out = in_ns(ns, args);
        assert!(out.success(), "{args:?}: {}", out.stderr);
    }
    let _outside = Listener::start(&op, "0.0.0.0:8000");
    let _host_service = Listener::start(&hp, "0.0.0.0:8001");
    let _host_service6 = Listener::start(&hp, "[::]:8005");
    let stub = FakeDns::start(
        &hp,
        "127.0.0.53",
        Behaviour::Answer("10.99.0.1".parse().unwrap(), 60),
    );
    std::fs::write(env.path().join("resolv.conf"), "nameserver 127.0.0.53\n").unwrap();

    let mut d = Netd::start(&env, &host, &[]).await;
    d.client
        .create_network(pb::CreateNetworkRequest {
            name: "priv".into(),
            subnet: "10.234.40.0/24".into(),
            internal: true,
            ..Default::default()
        })
        .await
        .unwrap();
    d.create("pub", "10.234.41.0/24").await.unwrap();
    let mut sb = Vec::new();
    for (c, net) in [("i1", "priv"), ("i2", "priv"), ("p1", "pub")] {
        d.sandbox(c, vec![]).await.unwrap();
        sb.push(d.connect(c, net, &[]).await.unwrap());
    }
    let (i1, i2, p1) = (
        PathBuf::from(&sb[0].netns_path),
        PathBuf::from(&sb[1].netns_path),
        PathBuf::from(&sb[2].netns_path),
    );
    let (i1_ip, i2_ip, p1_ip) = (
        ip_on(&sb[0], "priv"),
        ip_on(&sb[1], "priv"),
        ip_on(&sb[2], "pub"),
    );
    let _in_i1 = Listener::start(&i1, "0.0.0.0:8004");
    let _in_i2 = Listener::start(&i2, "0.0.0.0:8002");
    let _in_p1 = Listener::start(&p1, "0.0.0.0:8003");
    // Isolation must not rest on the missing default route: a container with NET_ADMIN can
    // add one.
    let out = in_ns(
        &i1,
        &["ip", "route", "add", "default", "via", "10.234.40.1"],
    );
    assert!(out.success(), "{}", out.stderr);

    // Peers and the DNS server.
    assert_eq!(sb[0].resolv_conf, "nameserver 10.234.40.1\n");
    assert!(connects(&i1, &format!("{i2_ip}:8002")), "i1 reaches i2");
    let i2_addr: Ipv4Addr = i2_ip.parse().unwrap();
    for (name, tcp) in [("i2.", false), ("I2.priv.", false), ("i2.", true)] {
        let r = ask(&i1, "10.234.40.1", name, tcp).expect("the network's DNS answers");
        assert_eq!(
            (r.rcode.as_str(), r.ips),
            ("NoError", vec![i2_addr]),
            "{name}"
        );
    }
    // Names not on the network: answered at once, and no upstream is asked.
    let r = ask(&i1, "10.234.40.1", "nosuch.", false).unwrap();
    assert_eq!(r.rcode, "NXDomain");
    let r = ask(&i1, "10.234.40.1", "www.example.", false).unwrap();
    assert_eq!(r.rcode, "ServFail");
    assert!(r.took < Duration::from_millis(500), "{:?}", r.took);
    assert_eq!(
        stub.queries(),
        0,
        "an internal network's query left the host"
    );
    // The same name from the public network is forwarded.
    let r = ask(&p1, "10.234.41.1", "www.example.", false).unwrap();
    assert_eq!(r.rcode, "NoError");
    assert_eq!(stub.queries(), 1);

    // The outside: not from the internal network, yes from the public one.
    assert!(
        !connects(&i1, "10.234.251.2:8000"),
        "internal reached outside"
    );
    assert!(connects(&p1, "10.234.251.2:8000"), "public reaches outside");
    // The host's own addresses: its gateway and its other links.
    assert!(
        !connects(&i1, "10.234.40.1:8001"),
        "internal reached the host (gateway)"
    );
    assert!(
        !connects(&i1, "10.234.251.1:8001"),
        "internal reached the host"
    );
    assert!(connects(&p1, "10.234.41.1:8001"), "public reaches the host");
    // Also over IPv6: the bridge's link-local address is the host's too.
    if let (Some(internal_ll), Some(public_ll)) = (
        link_local(&hp, "10.234.40.1"),
        link_local(&hp, "10.234.41.1"),
    ) {
        assert!(
            connects(&p1, &format!("[{public_ll}%{}]:8005", ifindex(&p1, "eth0"))),
            "public reaches the host's link-local address"
        );
        assert!(
            !connects(
                &i1,
                &format!("[{internal_ll}%{}]:8005", ifindex(&i1, "eth0"))
            ),
            "internal reached the host over IPv6"
        );
    }
    // Other networks, both ways.
    assert!(
        !connects(&i1, &format!("{p1_ip}:8003")),
        "internal reached pub"
    );
    let out = in_ns(
        &p1,
        &["ip", "route", "add", "10.234.40.0/24", "via", "10.234.41.1"],
    );
    assert!(out.success(), "{}", out.stderr);
    assert!(
        !connects(&p1, &format!("{i1_ip}:8004")),
        "pub reached internal"
    );
    // And from the outside in, even with a route.
    let out = in_ns(
        &op,
        &[
            "ip",
            "route",
            "add",
            "10.234.40.0/24",
            "via",
            "10.234.251.1",
        ],
    );
    assert!(out.success(), "{}", out.stderr);
    assert!(
        !connects(&op, &format!("{i1_ip}:8004")),
        "outside reached internal"
    );
}

/// The IPv6 link-local address of the link holding `v4` in the namespace at `ns`, once it is
/// usable (duplicate address detection done); None when the host has IPv6 off.
fn link_local(ns: &std::path::Path, v4: &str) -> Option<String> {
    let out = in_ns(ns, &["ip", "-o", "-4", "addr", "show", "to", v4]);
    let dev = out.stdout.split_whitespace().nth(1)?.to_string();
    for _ in 0..50 {
        let out = in_ns(
            ns,
            &[
                "ip", "-o", "-6", "addr", "show", "dev", &dev, "scope", "link",
            ],
        );
        if out.stdout.is_empty() {
            return None;
        }
        if !out.stdout.contains("tentative") {
            let addr = out.stdout.split_whitespace().nth(3)?;
            return addr.split('/').next().map(String::from);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{dev}: link-local address still tentative");
}

fn ifindex(ns: &std::path::Path, dev: &str) -> u32 {
    let out = in_ns(ns, &["ip", "-o", "link", "show", dev]);
    out.stdout
        .split(':')
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}
