//! A real berth-netd for a test: it runs inside a network namespace the test makes (its
//! "host"), so its bridges, nft table and DNS servers touch nothing of the real host; the
//! container namespaces it makes live under the test's BERTH_RUN. Clean-up (TestEnv's drop)
//! deletes the prefixed netns and unmounts everything under the test's dir, even on panic.

#![allow(dead_code)] // each test file uses a different subset

pub mod probe;
pub mod upstream;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_netd::client::{connect, Client};
use berth_proto::netd as pb;
use berth_tests::{bin, run_timeout, Output, TestEnv};

pub const T: Duration = Duration::from_secs(10);

/// The namespace standing for the host, with lo up.
pub fn host_ns(env: &TestEnv) -> String {
    let name = env.unique("h");
    let out = run_timeout(Command::new("ip").args(["netns", "add", &name]), T);
    assert!(out.success(), "ip netns add: {}", out.stderr);
    in_ns(&ns_path(&name), &["ip", "link", "set", "lo", "up"]);
    name
}

pub fn ns_path(name: &str) -> PathBuf {
    Path::new("/run/netns").join(name)
}

/// Runs `args` inside the network namespace at `path` (and only that namespace: the mount
/// namespace stays, so netd's netns files stay visible).
pub fn in_ns(path: &Path, args: &[&str]) -> Output {
    let mut c = Command::new("nsenter");
    c.arg(format!("--net={}", path.display())).args(args);
    run_timeout(&mut c, T)
}

pub struct Netd {
    pub child: Child,
    pub client: Client,
    pub host: String,
    pub table: String,
}

impl Netd {
    /// Starts netd in `host` with a private pool (10.234.0.0/16, default network
    /// 10.234.0.0/24) and a table named for the test.
    pub async fn start(env: &TestEnv, host: &str, extra: &[&str]) -> Netd {
        let socket = env.run().join("netd.sock");
        let _ = std::fs::remove_file(&socket);
        let table = env.unique("nft");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(env.path().join("netd.stderr"))
            .unwrap();
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", ns_path(host).display()))
            .arg(bin("berth-netd"))
            .arg("--root")
            .arg(env.root())
            .arg("--run")
            .arg(env.run())
            .args(if extra.contains(&"--pool") {
                &[][..]
            } else {
                &["--pool", "10.234.0.0/16"][..]
            })
            .args(["--default-subnet", "10.234.0.0/24"])
            .args(["--nft-table", &table, "--resolv-conf"])
            .arg(env.path().join("resolv.conf"))
            .args(extra)
            .stdin(Stdio::null())
            .stderr(log);
        let mut child = Some(env.spawn(&mut cmd));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if socket.exists() {
                if let Ok(client) = connect(&socket).await {
                    return Netd {
                        child: child.take().unwrap(),
                        client,
                        host: host.to_string(),
                        table,
                    };
                }
            }
            if let Some(Ok(Some(st))) = child.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "berth-netd exited ({st}): {}",
                    std::fs::read_to_string(env.path().join("netd.stderr")).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "berth-netd did not come up");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL, as a crash would stop it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn host_path(&self) -> PathBuf {
        ns_path(&self.host)
    }

    /// Links in the host namespace.
    pub fn host_links(&self) -> Vec<String> {
        let out = in_ns(&self.host_path(), &["ip", "-o", "link", "show"]);
        out.stdout
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n).to_string())
            .collect()
    }

    pub fn ruleset(&self) -> String {
        in_ns(
            &self.host_path(),
            &["nft", "list", "table", "inet", &self.table],
        )
        .stdout
    }

    pub async fn create(&mut self, name: &str, subnet: &str) -> Result<String, tonic::Status> {
        self.client
            .create_network(pb::CreateNetworkRequest {
                name: name.into(),
                subnet: subnet.into(),
                ..Default::default()
            })
            .await
            .map(|r| r.into_inner().id)
    }

    pub async fn inspect(&mut self, net: &str) -> Result<serde_json::Value, tonic::Status> {
        let r = self
            .client
            .inspect_network(pb::InspectNetworkRequest {
                network: net.into(),
            })
            .await?
            .into_inner();
        Ok(serde_json::from_str(&r.json).unwrap())
    }

    /// A sandbox for a "container" `name` (its id is derived from the name).
    pub async fn sandbox(
        &mut self,
        name: &str,
        ports: Vec<pb::PortMapping>,
    ) -> Result<pb::Sandbox, tonic::Status> {
        self.client
            .create_sandbox(pb::CreateSandboxRequest {
                container_id: cid(name),
                name: name.into(),
                hostname: name.into(),
                ports,
                extra_hosts: vec![],
                ..Default::default()
            })
            .await
            .map(|r| r.into_inner())
    }

    pub async fn connect(
        &mut self,
        name: &str,
        net: &str,
        aliases: &[&str],
    ) -> Result<pb::Sandbox, tonic::Status> {
        self.client
            .connect_network(pb::ConnectRequest {
                container_id: cid(name),
                network: net.into(),
                aliases: aliases.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            })
            .await
            .map(|r| r.into_inner())
    }
}

impl Drop for Netd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A 64-hex container id from a short name, so tests read well.
pub fn cid(name: &str) -> String {
    let hex: String = name.bytes().map(|b| format!("{b:02x}")).collect();
    format!("{hex:0<64}")
}

/// The address (without prefix) of a sandbox's endpoint on `net`.
pub fn ip_on(sb: &pb::Sandbox, net: &str) -> String {
    sb.endpoints
        .iter()
        .find(|e| e.network_name == net)
        .map(|e| e.ipv4_address.split('/').next().unwrap().to_string())
        .unwrap_or_else(|| panic!("no endpoint on {net}: {sb:?}"))
}

/// Another host: a namespace linked to `host` by a veth, 10.233.9.1/30 on `host`'s end and
/// 10.233.9.2/30 on its own. Returns its path.
pub fn other_host(env: &TestEnv, host: &str) -> PathBuf {
    let other = env.unique("o");
    let veth = env.unique("vo");
    let sh = |args: &[&str]| {
        let out = run_timeout(Command::new("ip").args(args), T);
        assert!(out.success(), "ip {args:?}: {}", out.stderr);
    };
    sh(&["netns", "add", &other]);
    sh(&[
        "link", "add", &veth, "netns", host, "type", "veth", "peer", "name", "eth0", "netns",
        &other,
    ]);
    let (hp, op) = (ns_path(host), ns_path(&other));
    in_ns(&hp, &["ip", "addr", "add", "10.233.9.1/30", "dev", &veth]);
    in_ns(&hp, &["ip", "link", "set", &veth, "up"]);
    in_ns(&op, &["ip", "addr", "add", "10.233.9.2/30", "dev", "eth0"]);
    in_ns(&op, &["ip", "link", "set", "eth0", "up"]);
    in_ns(&op, &["ip", "link", "set", "lo", "up"]);
    op
}

/// Polls `cond` for up to 5 s (what the kernel finishes after a call has returned).
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn skip_unless_able() -> bool {
    berth_tests::require_root() && berth_tests::require_cmds(&["ip", "nft", "nsenter"])
}
