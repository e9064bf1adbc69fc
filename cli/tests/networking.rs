//! `engine::networking`, the calls the container engine makes, against a real berth-netd
//! running inside a network namespace this test makes (so bridges, nft table and DNS touch
//! nothing of the host; TestEnv's clean-up kills netd and deletes the namespace even when
//! the test fails).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_cli::engine::networking::{self, Attachment, PortMapping, SandboxSpec};
use berth_proto::netd as pb;
use berth_tests::{bin, require_cmds, require_root, run, TestEnv};

/// netd, killed and reaped when the test ends (before TestEnv's clean-up runs).
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn cid(n: u8) -> String {
    format!("{n:02x}").repeat(32)
}

fn in_ns(ns: &Path, args: &[&str]) -> String {
    let out = run(Command::new("nsenter")
        .arg(format!("--net={}", ns.display()))
        .args(args));
    out.stdout
}

#[tokio::test]
async fn sandboxes_attach_detach_and_leave_nothing_when_a_step_fails() {
    if !(require_root() && require_cmds(&["ip", "nsenter", "nft"])) {
        return;
    }
    let env = TestEnv::new("cli-networking");
    let host = env.unique("h");
    assert!(run(Command::new("ip").args(["netns", "add", &host])).success());
    let ns = PathBuf::from("/run/netns").join(&host);
    in_ns(&ns, &["ip", "link", "set", "lo", "up"]);
    let socket = env.run().join("netd.sock");
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net={}", ns.display()))
        .arg(bin("berth-netd"))
        .arg("--root")
        .arg(env.root())
        .arg("--run")
        .arg(env.run())
        .args([
            "--pool",
            "10.234.0.0/16",
            "--default-subnet",
            "10.234.0.0/24",
        ])
        .args(["--nft-table", &env.unique("nft")])
        .stdin(Stdio::null())
        .stderr(Stdio::null());
    let _netd = Reaped(env.spawn(&mut cmd));
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut c = loop {
        if let Ok(c) = berth_netd::client::connect(&socket).await {
            break c;
        }
        assert!(Instant::now() < deadline, "berth-netd did not come up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    c.create_network(pb::CreateNetworkRequest {
        name: "n1".into(),
        subnet: "10.234.9.0/24".into(),
        ..Default::default()
    })
    .await
    .unwrap();

    // A sandbox on n1 (static address, alias, a published port), then bridge as eth1.
    let web = cid(1);
    let spec = SandboxSpec {
        container_id: web.clone(),
        name: "web".into(),
        hostname: "web".into(),
        ports: vec![PortMapping {
            host_port: 0,
            container_port: 80,
            protocol: "tcp".into(),
            ..Default::default()
        }],
        extra_hosts: vec!["db:10.234.9.9".into()],
        ..Default::default()
    };
    let n1 = Attachment {
        network: "n1".into(),
        aliases: vec!["search".into()],
        ip: Some("10.234.9.50".into()),
        ..Default::default()
    };
    let sb = networking::setup(&mut c, &spec, std::slice::from_ref(&n1))
        .await
        .unwrap();
    assert_eq!(
        sb.netns_path,
        env.run().join("netns").join(&web).display().to_string()
    );
    assert!(Path::new(&sb.netns_path).exists());
    assert_eq!(sb.endpoints.len(), 1);
    let e = &sb.endpoints[0];
    assert_eq!(
        (e.interface.as_str(), e.ipv4_address.as_str()),
        ("eth0", "10.234.9.50/24")
    );
    assert_eq!(e.aliases, ["search"]);
    assert!(
        sb.ports[0].host_port > 0,
        "random port resolved: {:?}",
        sb.ports
    );
    assert!(sb.hosts.contains("db"), "{}", sb.hosts);
    assert!(sb.resolv_conf.contains("nameserver"), "{}", sb.resolv_conf);

    let sb = networking::connect(
        &mut c,
        &web,
        &Attachment {
            network: "bridge".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(sb.endpoints.len(), 2);
    assert!(in_ns(Path::new(&sb.netns_path), &["ip", "-o", "addr"]).contains("eth1"));
    let e = networking::connect(&mut c, &web, &n1).await.unwrap_err();
    assert_eq!(e.code, tonic::Code::AlreadyExists, "{e}");
    let sb = networking::disconnect(&mut c, &web, "bridge")
        .await
        .unwrap();
    assert_eq!(sb.endpoints.len(), 1);
    let e = networking::disconnect(&mut c, &web, "bridge")
        .await
        .unwrap_err();
    assert!(e.message.contains("not connected"), "{e}");
    let got = networking::inspect_sandbox(&mut c, &web).await.unwrap();
    assert_eq!(got.unwrap().endpoints[0].ipv4_address, "10.234.9.50/24");

    // A failing attachment (unknown network, address taken, address outside the subnet)
    // after a good one: the whole sandbox goes again.
    for (bad, code) in [
        ("nosuch", tonic::Code::NotFound),
        ("n1@10.234.9.50", tonic::Code::FailedPrecondition),
        ("n1@10.9.9.9", tonic::Code::InvalidArgument),
    ] {
        let id = cid(2);
        let (net, ip) = bad.split_once('@').unwrap_or((bad, ""));
        let spec = SandboxSpec {
            container_id: id.clone(),
            name: "half".into(),
            ..Default::default()
        };
        let atts = [
            Attachment {
                network: "bridge".into(),
                ..Default::default()
            },
            Attachment {
                network: net.into(),
                ip: (!ip.is_empty()).then(|| ip.to_string()),
                ..Default::default()
            },
        ];
        let e = networking::setup(&mut c, &spec, &atts).await.unwrap_err();
        assert_eq!(e.code, code, "{bad}: {e}");
        assert!(networking::inspect_sandbox(&mut c, &id)
            .await
            .unwrap()
            .is_none());
        assert!(!env.run().join("netns").join(&id).exists(), "{bad}");
    }

    // Removal: everything goes, and a second removal is no error.
    networking::remove_sandbox(&mut c, &web).await.unwrap();
    networking::remove_sandbox(&mut c, &web).await.unwrap();
    assert!(!env.run().join("netns").join(&web).exists());
    assert!(networking::inspect_sandbox(&mut c, &web)
        .await
        .unwrap()
        .is_none());
    // netd answers once nothing can reach the veths; the kernel unregisters them just after.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let links = in_ns(&ns, &["ip", "-o", "link"]);
        if !links.contains("veth") {
            break;
        }
        assert!(Instant::now() < deadline, "{links}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let j = c
        .inspect_network(pb::InspectNetworkRequest {
            network: "n1".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .json;
    let j: serde_json::Value = serde_json::from_str(&j).unwrap();
    assert!(j["Containers"].as_object().unwrap().is_empty(), "{j}");
}
