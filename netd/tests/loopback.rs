//! A port published on 127.0.0.1 answers the host's own clients only: not another host, even
//! one that routes 127.0.0.1 to us, and not a container on our bridge doing the same; nor does
//! such a container reach the host's own loopback services (the bridges have
//! `route_localnet=1` so that loopback clients reach containers: Kubernetes' CVE-2020-8558).

mod support;

use std::path::{Path, PathBuf};

use berth_proto::netd as pb;
use berth_tests::TestEnv;
use support::probe::*;
use support::*;

/// Inside `ns`: 127.0.0.1 is routed out of `dev` to `via` instead of to the namespace's own
/// loopback, as a hostile neighbour could arrange (or forge with a raw socket).
fn route_loopback_out(ns: &Path, dev: &str, via: &str) {
    for args in [
        // Its own 127.0.0.1 and the local routes with it.
        &["ip", "addr", "del", "127.0.0.1/8", "dev", "lo"][..],
        &[
            "sysctl",
            "-qw",
            &format!("net.ipv4.conf.{dev}.route_localnet=1"),
        ],
        &["ip", "route", "add", "127.0.0.1/32", "via", via, "dev", dev],
    ] {
        let out = in_ns(ns, args);
        assert!(out.success(), "{args:?}: {}", out.stderr);
    }
}

/// Packets for 127.0.0.1 that arrived at `ns` from outside, counted before anything of ours
/// sees them (a table of the test's own, at a priority ahead of netd's).
fn count_arrivals(env: &TestEnv, ns: &Path) -> impl Fn() -> u64 {
    let table = env.unique("count");
    let nft = {
        let ns = ns.to_path_buf();
        move |args: &str| {
            let out = in_ns(&ns, &["nft", args]);
            assert!(out.success(), "nft {args}: {}", out.stderr);
            out.stdout
        }
    };
    nft(&format!(
        "add table inet {table}; add chain inet {table} c {{ type filter hook prerouting priority -500; }}; add rule inet {table} c iifname != lo ip daddr 127.0.0.1 tcp dport 18090 counter"
    ));
    move || {
        let listing = nft(&format!("list chain inet {table} c"));
        listing
            .split("packets ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("counter in {listing}"))
    }
}

#[tokio::test]
async fn port_published_on_loopback_answers_the_host_only() {
    if !skip_unless_able() || !berth_tests::require_cmds(&["python3", "sysctl"]) {
        return;
    }
    let env = TestEnv::new("published_on_loopback");
    let host = host_ns(&env);
    let hp = ns_path(&host);
    let op = other_host(&env, &host);
    let mut d = Netd::start(&env, &host, &[]).await;
    d.create("web", "10.234.10.0/24").await.unwrap();
    let ports = vec![
        pb::PortMapping {
            host_ip: "127.0.0.1".into(),
            host_port: 18090,
            container_port: 8080,
            ..Default::default()
        },
        // The same server on every address: the paths below do exist.
        pb::PortMapping {
            host_port: 18091,
            container_port: 8080,
            ..Default::default()
        },
    ];
    let sb = d.sandbox("srv", ports).await.unwrap();
    d.connect("srv", "web", &[]).await.unwrap();
    d.sandbox("peer", vec![]).await.unwrap();
    let peer = d.connect("peer", "web", &[]).await.unwrap();
    let peer_ns = PathBuf::from(&peer.netns_path);
    let mut server = start_echo(&env, Path::new(&sb.netns_path));

    assert_eq!(client(&hp, "127.0.0.1", 18090), "10.234.10.1");
    assert_eq!(client(&op, "10.233.9.1", 18091), "10.233.9.2");
    assert!(
        !answers(&op, "10.233.9.1", 18090),
        "other host, host address"
    );
    let arrived = count_arrivals(&env, &hp);
    route_loopback_out(&op, "eth0", "10.233.9.1");
    assert!(
        !answers(&op, "127.0.0.1", 18090),
        "other host, to 127.0.0.1"
    );
    let from_other_host = arrived();
    assert!(from_other_host > 0, "the other host's packets arrived");
    assert_eq!(client(&peer_ns, "10.234.10.1", 18091), "10.234.10.1");
    route_loopback_out(&peer_ns, "eth0", "10.234.10.1");
    assert!(
        !answers(&peer_ns, "127.0.0.1", 18090),
        "container on the bridge, to 127.0.0.1"
    );
    assert!(
        arrived() > from_other_host,
        "the container's packets arrived"
    );
    // Nor a service of the host's own on its loopback.
    let mut host_service = start_echo(&env, &hp);
    assert_eq!(client(&hp, "127.0.0.1", 8080), "127.0.0.1");
    assert!(
        !answers(&peer_ns, "127.0.0.1", 8080),
        "container on the bridge, to the host's 127.0.0.1 service"
    );
    let _ = host_service.kill();
    let _ = host_service.wait();

    let _ = server.kill();
    let _ = server.wait();
}
