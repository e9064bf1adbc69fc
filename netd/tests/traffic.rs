//! Traffic between "containers" (network namespaces made by netd for container ids): by
//! address and by name, an alias shared by three and rotated, a published port reached from
//! the host's loopback, from another host (its address kept) and from a peer (hairpin), an
//! unpublished port out of other hosts' reach, disconnect, and nothing left after removal. All traffic stays inside namespaces the test
//! made.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_proto::netd as pb;
use berth_tests::TestEnv;
use support::probe::*;
use support::*;

#[tokio::test]
async fn containers_reach_each_other_by_ip_and_name_aliases_rotate_disconnect_cuts() {
    if !skip_unless_able() || !berth_tests::require_cmds(&["python3", "ping", "unshare"]) {
        return;
    }
    let env = TestEnv::new("containers_reach_each_other");
    let host = host_ns(&env);
    let mut d = Netd::start(&env, &host, &[]).await;
    d.create("app", "10.234.7.0/24").await.unwrap();
    let mut sbs = Vec::new();
    for (c, alias) in [("a", "svc"), ("b", "svc"), ("c", "svc")] {
        d.sandbox(c, vec![]).await.unwrap();
        sbs.push(d.connect(c, "app", &[alias]).await.unwrap());
    }
    let a = PathBuf::from(&sbs[0].netns_path);
    let b_ip = ip_on(&sbs[1], "app");
    assert!(ping(&a, &b_ip), "a reaches b by address");

    // By name through the container's own resolver: resolv.conf as netd gives it.
    assert_eq!(
        sbs[0].resolv_conf.lines().next(),
        Some("nameserver 10.234.7.1")
    );
    let conf = env.path().join("a-resolv.conf");
    std::fs::write(&conf, &sbs[0].resolv_conf).unwrap();
    let script = format!(
        "mount --bind {} /etc/resolv.conf && python3 -c \"import socket; print(socket.gethostbyname('b'))\"",
        conf.display()
    );
    let out = in_ns(&a, &["unshare", "-m", "sh", "-c", &script]);
    assert!(out.success(), "{}", out.stderr);
    assert_eq!(out.stdout.trim(), b_ip);

    // The alias: all three, rotated; unknown names: NXDOMAIN.
    let (rc, first) = dns_query(&a, "10.234.7.1", "svc.");
    assert_eq!(rc, "NoError");
    assert_eq!(first.len(), 3, "{first:?}");
    let (_, second) = dns_query(&a, "10.234.7.1", "svc.");
    assert_eq!(second.len(), 3);
    assert_ne!(first[0], second[0], "answers rotate");
    let (rc, none) = dns_query(&a, "10.234.7.1", "nosuchname.");
    assert_eq!((rc.as_str(), none.len()), ("NXDomain", 0));

    // The default network has no name resolution.
    let sb = d.connect("a", "bridge", &[]).await.unwrap();
    assert_eq!(sb.endpoints[1].interface, "eth1");

    // Disconnect cuts b off and takes its name away.
    d.client
        .disconnect_network(pb::DisconnectRequest {
            container_id: cid("b"),
            network: "app".into(),
        })
        .await
        .unwrap();
    assert!(!ping(&a, &b_ip), "b is cut off");
    let (_, after) = dns_query(&a, "10.234.7.1", "svc.");
    assert_eq!(after.len(), 2);
    let (rc, _) = dns_query(&a, "10.234.7.1", "b.");
    assert_eq!(rc, "NXDomain");
}

#[tokio::test]
async fn published_port_keeps_client_address_and_removal_leaves_nothing() {
    if !skip_unless_able() || !berth_tests::require_cmds(&["python3"]) {
        return;
    }
    let mut env = TestEnv::new("published_port");
    let host = host_ns(&env);
    let hp = ns_path(&host);
    let op = other_host(&env, &host);

    let mut d = Netd::start(&env, &host, &[]).await;
    d.create("web", "10.234.8.0/24").await.unwrap();
    let ports = vec![
        pb::PortMapping {
            host_port: 18080,
            container_port: 8080,
            ..Default::default()
        },
        pb::PortMapping {
            container_port: 9090,
            protocol: "udp".into(),
            ..Default::default()
        },
    ];
    let sb = d.sandbox("srv", ports).await.unwrap();
    assert_eq!(sb.ports[0].host_port, 18080);
    assert!(
        sb.ports[1].host_port >= 49153,
        "random port {:?}",
        sb.ports[1]
    );
    d.connect("srv", "web", &[]).await.unwrap();
    d.sandbox("peer", vec![]).await.unwrap();
    let peer = d.connect("peer", "web", &[]).await.unwrap();
    let srv_ns = PathBuf::from(&sb.netns_path);
    let mut server = env.spawn(
        Command::new("nsenter")
            .arg(format!("--net={}", srv_ns.display()))
            .args(["python3", "-c", ECHO_PEER])
            .stdin(Stdio::null()),
    );
    let deadline = Instant::now() + T;
    while !in_ns(
        &srv_ns,
        &[
            "sh",
            "-c",
            "cat /proc/net/tcp | grep -q ':1F90 00000000:0000 0A'",
        ],
    )
    .success()
    {
        assert!(Instant::now() < deadline, "server did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }

    // From another host: the server sees that host's own address.
    assert_eq!(client(&op, "10.233.9.1", 18080), "10.233.9.2");
    // Straight to the container's address, for a host with a route to the subnet: the
    // published port answers (as Docker 28 allows), a port the container did not publish
    // does not, while a peer on the bridge still reaches it.
    let out = in_ns(
        &op,
        &["ip", "route", "add", "10.234.8.0/24", "via", "10.233.9.1"],
    );
    assert!(out.success(), "{}", out.stderr);
    assert_eq!(client(&op, "10.234.8.2", 8080), "10.233.9.2");
    let unpublished = support::upstream::Listener::start(&srv_ns, "10.234.8.2:8081");
    assert!(
        support::upstream::connects(Path::new(&peer.netns_path), "10.234.8.2:8081"),
        "a peer on the bridge reaches the unpublished port"
    );
    assert!(
        !support::upstream::connects(&op, "10.234.8.2:8081"),
        "another host reached a port the container did not publish"
    );
    // Nor does a container on another network, which still reaches the published port
    // through the host's address.
    d.sandbox("lone", vec![]).await.unwrap();
    let lone = d.connect("lone", "bridge", &[]).await.unwrap();
    let lone_ns = PathBuf::from(&lone.netns_path);
    assert!(
        !support::upstream::connects(&lone_ns, "10.234.8.2:8081"),
        "a container on another network reached an unpublished port"
    );
    assert!(support::upstream::connects(&lone_ns, "10.233.9.1:18080"));
    drop(unpublished);
    // From the host's loopback (no proxy: DNAT in the output hook, then masquerade, as a
    // loopback source cannot leave the host).
    assert_eq!(client(&hp, "127.0.0.1", 18080), "10.234.8.1");
    // Hairpin from a peer container through the host's address.
    let seen = client(Path::new(&peer.netns_path), "10.233.9.1", 18080);
    assert_eq!(seen, "10.234.8.1");
    assert!(
        d.ruleset().contains("dnat ip to 10.234.8.2:8080"),
        "{}",
        d.ruleset()
    );

    // Removal: no veth, no netns file, no rule, no lease.
    let _ = server.kill();
    let _ = server.wait();
    for c in ["srv", "peer", "lone"] {
        d.client
            .remove_sandbox(pb::RemoveSandboxRequest {
                container_id: cid(c),
            })
            .await
            .unwrap();
    }
    assert!(!srv_ns.exists(), "netns file removed");
    assert!(
        std::fs::read_dir(env.run().join("netns"))
            .unwrap()
            .next()
            .is_none(),
        "no netns file left"
    );
    // The kernel finishes unregistering the veths after the call has returned.
    wait_until("no veth left", || {
        !d.host_links().iter().any(|l| l.starts_with("veth"))
    });
    let rules = d.ruleset();
    assert!(!rules.contains("dnat ip to"), "{rules}");
    let j = d.inspect("web").await.unwrap();
    assert!(j["Containers"].as_object().unwrap().is_empty());
    let state = std::fs::read_to_string(env.root().join("networks/state.json")).unwrap();
    let state: serde_json::Value = serde_json::from_str(&state).unwrap();
    assert!(state["sandboxes"].as_object().unwrap().is_empty());
    drop(d);
    let report = env.cleanup();
    assert!(report.is_clean(), "{report}");
}
