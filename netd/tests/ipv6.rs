//! Dual-stack networks: IPv6 addresses on endpoints, containers reaching each other and the
//! outside over IPv6, published ports answering over IPv6 with the client's own address
//! kept, and a port published on 127.0.0.1 not reachable over IPv6.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use berth_proto::netd as pb;
use berth_tests::TestEnv;
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
    if !Path::new("/proc/net/if_inet6").exists() {
        eprintln!("skipped: no IPv6 in this kernel");
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
