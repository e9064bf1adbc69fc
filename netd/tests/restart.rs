//! A crash and a restart: netd killed with SIGKILL leaves the containers' networking working
//! (it all lives in the kernel), and the next netd reconciles the kernel with its state: every
//! rule once, leases and veths kept, a rule deleted by hand put back, a container whose
//! namespace went away meanwhile forgotten (lease, rules, veth), a veth whose deletion was
//! under way removed, and nothing outside our table touched.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use berth_proto::netd as pb;
use berth_tests::TestEnv;
use support::probe::*;
use support::*;

fn tcp_port(host_port: u32) -> Vec<pb::PortMapping> {
    vec![pb::PortMapping {
        host_port,
        container_port: 8080,
        ..Default::default()
    }]
}

/// The endpoints' host-side veths as the state file has them, by container id.
fn state_veths(env: &TestEnv) -> BTreeMap<String, String> {
    let s = std::fs::read_to_string(env.root().join("networks/state.json")).unwrap();
    let s: serde_json::Value = serde_json::from_str(&s).unwrap();
    s["sandboxes"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(id, sb)| {
            sb["endpoints"]
                .as_array()
                .unwrap()
                .iter()
                .map(move |e| (id.clone(), e["host_ifname"].as_str().unwrap().to_string()))
        })
        .collect()
}

#[tokio::test]
async fn killed_netd_leaves_networking_working_and_a_restart_reconciles() {
    if !skip_unless_able() || !berth_tests::require_cmds(&["python3", "ping", "umount"]) {
        return;
    }
    let mut env = TestEnv::new("killed_netd_restart");
    let host = host_ns(&env);
    let hp = ns_path(&host);
    let mut d = Netd::start(&env, &host, &[]).await;
    let net_id = d.create("app", "10.234.20.0/24").await.unwrap();
    let bridge = format!("br-{}", &net_id[..12]);
    let mut sbs = BTreeMap::new();
    for (c, ports) in [
        ("a", tcp_port(18081)),
        ("b", vec![]),
        ("c", tcp_port(18082)),
    ] {
        d.sandbox(c, ports).await.unwrap();
        sbs.insert(c, d.connect(c, "app", &[]).await.unwrap());
    }
    let ip = |c: &str| ip_on(&sbs[c], "app");
    let a_ns = PathBuf::from(&sbs["a"].netns_path);
    let c_ns = PathBuf::from(&sbs["c"].netns_path);
    let mut server = start_echo(&env, &a_ns);
    assert_eq!(client(&hp, "127.0.0.1", 18081), "10.234.20.1");
    let rules_before = d.ruleset();
    assert_eq!(
        rules_before.matches("dnat ip to").count(),
        2,
        "{rules_before}"
    );
    let veths = state_veths(&env);
    // Something of someone else's in the same namespace: it must stay as it is.
    let foreign = env.unique("other");
    let nft = |args: &[&str]| {
        let mut v = vec!["nft"];
        v.extend_from_slice(args);
        let out = in_ns(&hp, &v);
        assert!(out.success(), "nft {args:?}: {}", out.stderr);
        out.stdout
    };
    nft(&["add", "table", "inet", &foreign]);
    nft(&["add", "chain", "inet", &foreign, "c"]);
    nft(&[
        "add", "rule", "inet", &foreign, "c", "tcp", "dport", "9", "accept",
    ]);

    d.kill();

    // Down: addresses, routes, veths and rules are the kernel's, so traffic goes on.
    assert!(ping(&a_ns, &ip("b")), "a reaches b while netd is down");
    assert_eq!(client(&hp, "127.0.0.1", 18081), "10.234.20.1");

    // Meanwhile: someone deletes a's port rule by hand...
    let listing = nft(&["-a", "list", "chain", "inet", &d.table, "ports"]);
    let handle = listing
        .lines()
        .find(|l| l.contains(&format!("{}:8080", ip("a"))))
        .and_then(|l| l.rsplit("# handle ").next())
        .unwrap_or_else(|| panic!("a's rule in {listing}"))
        .trim()
        .to_string();
    nft(&[
        "delete", "rule", "inet", &d.table, "ports", "handle", &handle,
    ]);
    assert!(!answers(&hp, "127.0.0.1", 18081), "the hand-made hole");
    // ... c's namespace goes away (removed by hand, or lost as /run is after a reboot) ...
    let out = run_timeout_umount(&c_ns);
    assert!(out, "umount {}", c_ns.display());
    std::fs::remove_file(&c_ns).unwrap();
    // ... and a removal was under way when netd died: a veth of ours no endpoint holds.
    let stray = "veth0deadbeef";
    in_ns(
        &hp,
        &[
            "ip",
            "link",
            "add",
            stray,
            "type",
            "veth",
            "peer",
            "name",
            "pdeadbeef",
        ],
    );
    in_ns(&hp, &["ip", "link", "set", stray, "master", &bridge]);
    assert!(d.host_links().contains(&stray.to_string()));

    let mut d = Netd::start(&env, &host, &[]).await;

    // Rules: as before, each once, less c's; a's is back and answers again.
    let rules_after = d.ruleset();
    let expected: Vec<&str> = rules_before
        .lines()
        .filter(|l| {
            // c's DNAT and its direct-routing accept
            !l.contains(&format!("{}:8080", ip("c"))) && !l.contains(&format!("daddr {} ", ip("c")))
        })
        .collect();
    assert_eq!(rules_after.lines().collect::<Vec<_>>(), expected);
    assert_eq!(
        rules_after
            .matches(&format!("dnat ip to {}:8080", ip("a")))
            .count(),
        1
    );
    assert_eq!(client(&hp, "127.0.0.1", 18081), "10.234.20.1");
    assert!(nft(&["list", "tables"]).contains(&foreign));
    assert!(nft(&["list", "table", "inet", &foreign]).contains("tcp dport 9 accept"));

    // Leases and veths of a and b kept; c forgotten.
    let j = d.inspect("app").await.unwrap();
    let containers = j["Containers"].as_object().unwrap();
    assert_eq!(containers.len(), 2, "{j}");
    for c in ["a", "b"] {
        assert_eq!(
            containers[&cid(c)]["IPv4Address"],
            format!("{}/24", ip(c)),
            "{j}"
        );
    }
    let veths_after = state_veths(&env);
    assert_eq!(veths_after.len(), 2);
    for (id, v) in &veths_after {
        assert_eq!(&veths[id], v);
        assert!(d.host_links().contains(v), "{v} kept");
    }
    wait_until("c's veth and the stray one gone", || {
        let links = d.host_links();
        !links.contains(&veths[&cid("c")]) && !links.iter().any(|l| l == stray)
    });
    // c's address is free again (as a static address), and its host port too.
    d.sandbox("d", tcp_port(18082)).await.unwrap();
    let sb = d
        .client
        .connect_network(pb::ConnectRequest {
            container_id: cid("d"),
            network: "app".into(),
            ip: ip("c"),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ip_on(&sb, "app"), ip("c"));

    // Traffic and names as before.
    assert!(ping(&a_ns, &ip("b")));
    let (rc, b) = dns_query(&a_ns, "10.234.20.1", "b.");
    assert_eq!(
        (rc.as_str(), b),
        ("NoError", vec![ip("b").parse().unwrap()])
    );
    let (rc, _) = dns_query(&a_ns, "10.234.20.1", "c.");
    assert_eq!(rc, "NXDomain");

    let _ = server.kill();
    let _ = server.wait();
    for c in ["a", "b", "d"] {
        d.client
            .remove_sandbox(pb::RemoveSandboxRequest {
                container_id: cid(c),
            })
            .await
            .unwrap();
    }
    wait_until("no veth left", || {
        !d.host_links().iter().any(|l| l.starts_with("veth"))
    });
    drop(d);
    let report = env.cleanup();
    assert!(report.is_clean(), "{report}");
}

/// Unmounts a netns file as a tool outside netd would.
fn run_timeout_umount(path: &Path) -> bool {
    berth_tests::run_timeout(std::process::Command::new("umount").arg(path), support::T).success()
}
