//! Dual-stack networks: IPv6 addresses on endpoints, containers reaching each other and the
//! outside over IPv6, published ports answering over IPv6 with the client's own address
//! kept, and a port published on 127.0.0.1 not reachable over IPv6; AAAA records for the
//! names on them, and static `--ip6` addresses.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use std::net::IpAddr;

use berth_proto::netd as pb;
use berth_tests::TestEnv;
use hickory_proto::rr::RecordType;
use support::probe::*;
use support::*;

/// The echo server on both families (port 8080), answering with the client's address as
/// the client would write it (no `::ffff:` for IPv4 clients).
const ECHO_DUAL: &str = "import socket\n\
s = socket.socket(socket.AF_INET6); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)\n\
s.bind(('::', 8080)); s.listen(8)\n\
while True:\n    c, a = s.accept(); c.sendall(a[0].removeprefix('::ffff:').encode()); c.close()\n";

fn start_echo_dual(env: &TestEnv, ns: &Path) -> Child {
    let child = env.spawn(
        Command::new("nsenter")
            .arg(format!("--net={}", ns.display()))
            .args(["python3", "-c", ECHO_DUAL])
            .stdin(Stdio::null()),
    );
    let deadline = Instant::now() + T;
    while !in_ns(
        ns,
        &["sh", "-c", "grep -q ':1F90 0\\+:0000 0A' /proc/net/tcp6"],
    )
    .success()
    {
        assert!(Instant::now() < deadline, "echo server did not listen");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child
}

fn ping6(ns: &Path, ip: &str) -> bool {
    in_ns(ns, &["ping", "-6", "-c1", "-W1", ip]).success()
}

#[tokio::test]
async fn dual_stack_network_ports_over_ipv6_keep_the_client_address() {
    if !skip_unless_able() || !berth_tests::require_cmds(&["python3", "ping"]) {
        return;
    }
    if !berth_tests::features::ipv6() {
        berth_tests::host_lacks("IPv6");
        return;
    }
    let env = TestEnv::new("dual_stack");
    let host = host_ns(&env);
    let hp = ns_path(&host);
    let op = other_host(&env, &host);
    let vo = env.unique("vo");
    let out = in_ns(
        &hp,
        &["ip", "addr", "add", "fd00:233:9::1/64", "dev", &vo, "nodad"],
    );
    assert!(out.success(), "{}", out.stderr);
    let out = in_ns(
        &op,
        &[
            "ip",
            "addr",
            "add",
            "fd00:233:9::2/64",
            "dev",
            "eth0",
            "nodad",
        ],
    );
    assert!(out.success(), "{}", out.stderr);

    let mut d = Netd::start(&env, &host, &[]).await;
    let e = d
        .client
        .create_network(pb::CreateNetworkRequest {
            name: "v6only".into(),
            enable_ipv6: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(e.message().contains("IPv6 subnet"), "{}", e.message());
    d.client
        .create_network(pb::CreateNetworkRequest {
            name: "ds".into(),
            subnet: "10.234.12.0/24".into(),
            enable_ipv6: true,
            ipv6_subnet: "fd00:234:12::/64".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let j = d.inspect("ds").await.unwrap();
    assert_eq!(j["EnableIPv6"], true);
    assert_eq!(j["IPAM"]["Config"][1]["Subnet"], "fd00:234:12::/64", "{j}");
    assert_eq!(j["IPAM"]["Config"][1]["Gateway"], "fd00:234:12::1");

    let e = d
        .sandbox(
            "bad",
            vec![pb::PortMapping {
                host_ip: "::1".into(),
                host_port: 18097,
                container_port: 8080,
                ..Default::default()
            }],
        )
        .await
        .unwrap_err();
    assert!(
        e.message().contains("IPv6 host addresses"),
        "{}",
        e.message()
    );

    let ports = vec![
        pb::PortMapping {
            host_port: 18095,
            container_port: 8080,
            ..Default::default()
        },
        pb::PortMapping {
            host_ip: "127.0.0.1".into(),
            host_port: 18096,
            container_port: 8080,
            ..Default::default()
        },
    ];
    d.sandbox("srv", ports).await.unwrap();
    let srv = d.connect("srv", "ds", &[]).await.unwrap();
    assert_eq!(srv.endpoints[0].ipv6_address, "fd00:234:12::2/64");
    assert_eq!(srv.endpoints[0].ipv6_gateway, "fd00:234:12::1");
    d.sandbox("peer", vec![]).await.unwrap();
    let peer = d.connect("peer", "ds", &[]).await.unwrap();
    assert_eq!(peer.endpoints[0].ipv6_address, "fd00:234:12::3/64");
    let j = d.inspect("ds").await.unwrap();
    assert_eq!(
        j["Containers"][cid("peer")]["IPv6Address"],
        "fd00:234:12::3/64"
    );
    let (srv_ns, peer_ns) = (
        PathBuf::from(&srv.netns_path),
        PathBuf::from(&peer.netns_path),
    );

    assert!(
        ping6(&peer_ns, "fd00:234:12::2"),
        "peer reaches srv over IPv6"
    );
    assert!(
        ping6(&srv_ns, "fd00:233:9::2"),
        "srv reaches another host over IPv6"
    );
    let mut server = start_echo_dual(&env, &srv_ns);
    // Another host, over each family: the server sees that host's own address.
    assert_eq!(client(&op, "fd00:233:9::1", 18095), "fd00:233:9::2");
    assert_eq!(client(&op, "10.233.9.1", 18095), "10.233.9.2");
    // Hairpin over IPv6 from a peer.
    assert_eq!(client(&peer_ns, "fd00:233:9::1", 18095), "fd00:234:12::1");
    // Published on 127.0.0.1 only: not over IPv6 either.
    assert_eq!(client(&hp, "127.0.0.1", 18096), "10.234.12.1");
    assert!(!answers(&op, "fd00:233:9::1", 18096));
    assert!(!answers(&hp, "::1", 18096));

    let _ = server.kill();
    let _ = server.wait();
    for c in ["srv", "peer"] {
        d.client
            .remove_sandbox(pb::RemoveSandboxRequest {
                container_id: cid(c),
            })
            .await
            .unwrap();
    }
    assert!(!d.ruleset().contains("dnat ip6"), "{}", d.ruleset());
}

fn ipv6_able() -> bool {
    if !berth_tests::features::ipv6() {
        return berth_tests::host_lacks("IPv6");
    }
    true
}

fn v6s(ips: &[IpAddr]) -> Vec<String> {
    let mut v: Vec<String> = ips.iter().map(IpAddr::to_string).collect();
    v.sort();
    v
}

#[tokio::test]
async fn names_get_aaaa_records_and_static_ipv6_addresses_are_checked() {
    if !skip_unless_able() || !berth_tests::require_cmds(&["python3", "unshare", "mount"]) {
        return;
    }
    if !ipv6_able() {
        return;
    }
    let env = TestEnv::new("aaaa");
    let host = host_ns(&env);
    let mut d = Netd::start(&env, &host, &[]).await;
    for (name, v4, v6) in [
        ("ds", "10.234.13.0/24", "fd00:234:13::/64"),
        ("v4", "10.234.14.0/24", ""),
    ] {
        d.client
            .create_network(pb::CreateNetworkRequest {
                name: name.into(),
                subnet: v4.into(),
                enable_ipv6: !v6.is_empty(),
                ipv6_subnet: v6.into(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let connect = |c: &str, net: &str, ip6: &str, aliases: &[&str]| pb::ConnectRequest {
        container_id: cid(c),
        network: net.into(),
        ip6: ip6.into(),
        aliases: aliases.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    for c in ["a", "b", "c"] {
        d.sandbox(c, vec![]).await.unwrap();
    }
    // A static IPv6 address, then the checks a static one goes through.
    let a = d
        .client
        .connect_network(connect("a", "ds", "fd00:234:13::99", &["svc"]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(a.endpoints[0].ipv6_address, "fd00:234:13::99/64");
    for (ip6, says) in [
        ("fd00:234:13::99", "already in use"),
        ("fd00:234:99::5", "outside subnet fd00:234:13::/64"),
        ("fd00:234:13::1", "gateway"),
        ("10.234.13.9", "IPv6 address"),
    ] {
        let e = d
            .client
            .connect_network(connect("b", "ds", ip6, &[]))
            .await
            .unwrap_err();
        assert!(e.message().contains(says), "{ip6}: {}", e.message());
    }
    let e = d
        .client
        .connect_network(connect("c", "v4", "fd00:234:14::5", &[]))
        .await
        .unwrap_err();
    assert!(e.message().contains("has no IPv6"), "{}", e.message());
    let b = d
        .client
        .connect_network(connect("b", "ds", "", &["svc"]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        b.endpoints[0].ipv6_address, "fd00:234:13::2/64",
        "lowest free"
    );
    let c = d.connect("c", "v4", &[]).await.unwrap();
    assert_eq!(c.endpoints[0].ipv6_address, "");
    let j = d.inspect("ds").await.unwrap();
    assert_eq!(
        j["Containers"][cid("a")]["IPv6Address"],
        "fd00:234:13::99/64"
    );
    // Each container's hosts file names its IPv6 address too, as Docker's does.
    assert!(a.hosts.contains("fd00:234:13::99\ta\n"), "{}", a.hosts);

    let (a_ns, c_ns) = (PathBuf::from(&a.netns_path), PathBuf::from(&c.netns_path));
    // AAAA for a container name, the name with the network's suffix, and an alias held by
    // two (rotated, as the A records are); A records alone for A queries.
    let (rc, ips) = dns_ask(&a_ns, "10.234.13.1", "b.", RecordType::AAAA);
    assert_eq!(
        (rc.as_str(), v6s(&ips)),
        ("NoError", vec!["fd00:234:13::2".to_string()])
    );
    let (_, ips) = dns_ask(&a_ns, "10.234.13.1", "b.ds.", RecordType::AAAA);
    assert_eq!(v6s(&ips), ["fd00:234:13::2"]);
    let (_, ips) = dns_ask(&a_ns, "10.234.13.1", "b.", RecordType::A);
    assert_eq!(v6s(&ips), ["10.234.13.3"]);
    let (_, first) = dns_ask(&a_ns, "10.234.13.1", "svc.", RecordType::AAAA);
    let (_, second) = dns_ask(&a_ns, "10.234.13.1", "svc.", RecordType::AAAA);
    assert_eq!(v6s(&first), ["fd00:234:13::2", "fd00:234:13::99"]);
    assert_eq!(v6s(&second), v6s(&first));
    assert_ne!(first[0], second[0], "AAAA answers rotate");
    // An IPv4-only network's name: AAAA is an empty NOERROR (not NXDOMAIN), as Docker's.
    let (rc, ips) = dns_ask(&c_ns, "10.234.14.1", "c.", RecordType::AAAA);
    assert_eq!((rc.as_str(), ips.len()), ("NoError", 0));
    let (rc, _) = dns_ask(&c_ns, "10.234.14.1", "nosuch.", RecordType::AAAA);
    assert_eq!(rc, "NXDomain");

    // From inside a container, glibc through the resolv.conf netd gave: the peer's IPv6
    // address for AF_INET6, and the alias reached over IPv6 by name.
    let conf = env.path().join("a-resolv.conf");
    std::fs::write(&conf, &a.resolv_conf).unwrap();
    let script = format!(
        "mount --bind {} /etc/resolv.conf && python3 -c \"import socket; \
         print(socket.getaddrinfo('b', 80, socket.AF_INET6)[0][4][0]); \
         print(socket.getaddrinfo('b', 80, socket.AF_INET)[0][4][0])\" && ping -6 -c1 -W2 b >/dev/null",
        conf.display()
    );
    let out = in_ns(&a_ns, &["unshare", "-m", "sh", "-c", &script]);
    assert!(out.success(), "{}{}", out.stdout, out.stderr);
    assert_eq!(out.stdout.trim(), "fd00:234:13::2\n10.234.13.3");

    let b_ns = PathBuf::from(&b.netns_path);
    // Disconnect takes the AAAA records with the A ones, and frees the static address.
    d.client
        .disconnect_network(pb::DisconnectRequest {
            container_id: cid("a"),
            network: "ds".into(),
        })
        .await
        .unwrap();
    let (rc, ips) = dns_ask(&b_ns, "10.234.13.1", "a.", RecordType::AAAA);
    assert_eq!((rc.as_str(), ips.len()), ("NXDomain", 0));
    let (_, ips) = dns_ask(&b_ns, "10.234.13.1", "svc.", RecordType::AAAA);
    assert_eq!(v6s(&ips), ["fd00:234:13::2"]);
    let c2 = d
        .client
        .connect_network(connect("c", "ds", "fd00:234:13::99", &[]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(c2.endpoints[1].ipv6_address, "fd00:234:13::99/64");
}
