//! Networks and IPAM through a real berth-netd: create/inspect/rm/prune and their errors,
//! and leases that survive a daemon restart.

mod support;

use berth_proto::netd as pb;
use berth_tests::TestEnv;
use support::*;
use tonic::Code;

#[tokio::test]
async fn network_create_inspect_errors_rm_prune() {
    if !skip_unless_able() {
        return;
    }
    let env = TestEnv::new("network_create_inspect_errors_rm_prune");
    let host = host_ns(&env);
    let mut d = Netd::start(&env, &host, &["--pool", "10.234.0.0/22"]).await;

    // The predefined networks.
    let names: Vec<String> = d
        .client
        .list_networks(pb::ListNetworksRequest {})
        .await
        .unwrap()
        .into_inner()
        .networks
        .into_iter()
        .map(|n| n.name)
        .collect();
    assert_eq!(names, ["bridge", "host", "none"]);
    assert!(d.host_links().contains(&"berth0".to_string()));

    let mut req = pb::CreateNetworkRequest {
        name: "n1".into(),
        subnet: "10.234.1.0/24".into(),
        ip_range: "10.234.1.128/25".into(),
        gateway: "10.234.1.254".into(),
        ..Default::default()
    };
    req.labels.insert("team".into(), "a".into());
    req.options
        .insert("com.docker.network.bridge.name".into(), "brn1".into());
    let id = d.client.create_network(req).await.unwrap().into_inner().id;
    let j = d.inspect("n1").await.unwrap();
    assert_eq!(j["Id"], id.as_str());
    assert_eq!(j["Name"], "n1");
    assert_eq!(j["Driver"], "bridge");
    assert_eq!(j["Internal"], false);
    assert_eq!(j["IPAM"]["Config"][0]["Subnet"], "10.234.1.0/24");
    assert_eq!(j["IPAM"]["Config"][0]["Gateway"], "10.234.1.254");
    assert_eq!(j["Labels"]["team"], "a");
    assert!(j["Created"].as_str().unwrap().starts_with("20"));
    assert_eq!(d.inspect(&id[..10]).await.unwrap()["Name"], "n1");
    assert!(d.host_links().contains(&"brn1".to_string()));

    let links_before = d.host_links();
    let err = |r: Result<String, tonic::Status>| r.unwrap_err();
    let e = err(d.create("n1", "10.234.2.0/24").await);
    assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");
    let e = err(d.create("n2", "10.234.1.128/25").await);
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("overlaps network n1"),
        "{}",
        e.message()
    );
    let e = err(d
        .client
        .create_network(pb::CreateNetworkRequest {
            name: "n3".into(),
            subnet: "10.234.2.0/24".into(),
            gateway: "10.234.3.1".into(),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().id));
    assert!(e.message().contains("outside subnet"), "{}", e.message());
    let e = err(d.create("n4", "10.234.2.7/24").await);
    assert!(
        e.message().contains("not a network address"),
        "{}",
        e.message()
    );
    // The pool 10.234.0.0/22: .0 is the default network's, .1 n1's; two more, then full.
    let a = d.create("auto1", "").await.unwrap();
    let b = d.create("auto2", "").await.unwrap();
    assert_eq!(
        d.inspect(&a).await.unwrap()["IPAM"]["Config"][0]["Subnet"],
        "10.234.2.0/24"
    );
    assert_eq!(
        d.inspect(&b).await.unwrap()["IPAM"]["Config"][0]["Subnet"],
        "10.234.3.0/24"
    );
    let e = err(d.create("auto3", "").await);
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("no free subnet"), "{}", e.message());
    let e = d.inspect("nope").await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(e.message().contains("network nope not found"));
    // Nothing half-made: only the two auto networks' bridges were added.
    assert_eq!(d.host_links().len(), links_before.len() + 2);

    // rm refused while a container is attached; prune keeps that one too.
    d.sandbox("c1", vec![]).await.unwrap();
    d.connect("c1", "n1", &[]).await.unwrap();
    let j = d.inspect("n1").await.unwrap();
    let c = &j["Containers"][cid("c1")];
    assert_eq!(c["Name"], "c1");
    assert_eq!(c["IPv4Address"], "10.234.1.128/24", "{j}");
    assert_eq!(c["MacAddress"], "02:42:0a:ea:01:80");
    assert_eq!(c["EndpointID"].as_str().unwrap().len(), 64);
    let e = d
        .client
        .remove_network(pb::RemoveNetworkRequest {
            network: "n1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("c1"), "{}", e.message());
    let mut pruned = d
        .client
        .prune_networks(pb::PruneNetworksRequest {})
        .await
        .unwrap()
        .into_inner()
        .removed;
    pruned.sort();
    assert_eq!(pruned, ["auto1", "auto2"]);
    let e = d
        .client
        .remove_network(pb::RemoveNetworkRequest {
            network: "bridge".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    d.client
        .remove_sandbox(pb::RemoveSandboxRequest {
            container_id: cid("c1"),
        })
        .await
        .unwrap();
    d.client
        .remove_network(pb::RemoveNetworkRequest {
            network: "n1".into(),
        })
        .await
        .unwrap();
    assert!(!d.host_links().contains(&"brn1".to_string()));
    assert_eq!(d.inspect("n1").await.unwrap_err().code(), Code::NotFound);
}

#[tokio::test]
async fn ipam_leases_survive_a_restart_and_are_released() {
    if !skip_unless_able() {
        return;
    }
    let env = TestEnv::new("ipam_leases_survive_a_restart");
    let host = host_ns(&env);
    let mut d = Netd::start(&env, &host, &[]).await;
    d.create("n", "10.234.5.0/29").await.unwrap();
    for c in ["a", "b"] {
        d.sandbox(c, vec![]).await.unwrap();
        d.connect(c, "n", &[]).await.unwrap();
    }
    // A crash: the next daemon must read the leases back.
    d.kill();
    let mut d = Netd::start(&env, &host, &[]).await;
    d.sandbox("c", vec![]).await.unwrap();
    let sb = d.connect("c", "n", &[]).await.unwrap();
    assert_eq!(ip_on(&sb, "n"), "10.234.5.4");
    let j = d.inspect("n").await.unwrap();
    assert_eq!(j["Containers"].as_object().unwrap().len(), 3);
    // Static addresses are checked against the subnet and the leases.
    d.sandbox("s", vec![]).await.unwrap();
    let mut req = pb::ConnectRequest {
        container_id: cid("s"),
        network: "n".into(),
        ip: "10.234.5.3".into(),
        ..Default::default()
    };
    let e = d.client.connect_network(req.clone()).await.unwrap_err();
    assert!(e.message().contains("already in use"), "{}", e.message());
    req.ip = "10.234.6.3".into();
    let e = d.client.connect_network(req.clone()).await.unwrap_err();
    assert!(e.message().contains("outside subnet"), "{}", e.message());
    req.ip = "10.234.5.6".into();
    let sb = d.client.connect_network(req).await.unwrap().into_inner();
    assert_eq!(ip_on(&sb, "n"), "10.234.5.6");
    // /29: .2-.6 for containers; .5 is the last one.
    d.sandbox("last", vec![]).await.unwrap();
    let sb = d.connect("last", "n", &[]).await.unwrap();
    assert_eq!(ip_on(&sb, "n"), "10.234.5.5");
    d.sandbox("full", vec![]).await.unwrap();
    let e = d.connect("full", "n", &[]).await.unwrap_err();
    assert!(e.message().contains("no free address"), "{}", e.message());
    // Release: disconnecting b frees .3 for the next one.
    d.client
        .disconnect_network(pb::DisconnectRequest {
            container_id: cid("b"),
            network: "n".into(),
        })
        .await
        .unwrap();
    let sb = d.connect("full", "n", &[]).await.unwrap();
    assert_eq!(ip_on(&sb, "n"), "10.234.5.3");
}
