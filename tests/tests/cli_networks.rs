//! `berth network ...` as a user types it. Every `berth` runs inside a network namespace
//! the test makes (its "host"), so the berth-netd the first command starts (daemonless)
//! makes its bridges, its nft table and its DNS servers there, and nothing of the real
//! host is touched or competes with it. Clean-up (TestEnv's drop, also on panic) kills
//! that netd by its marker and deletes the prefixed namespace, which takes the bridges and
//! the table with it.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use berth_tests::{
    bin, require_cmds, require_root, run, run_timeout, run_with_input, Output, TestEnv,
};

fn can_run() -> bool {
    require_root() && require_cmds(&["ip", "nsenter", "nft"])
}

struct Host {
    ns: PathBuf,
}

impl Host {
    fn new(env: &TestEnv) -> Host {
        let name = env.unique("h");
        let out = run(Command::new("ip").args(["netns", "add", &name]));
        assert!(out.success(), "ip netns add: {}", out.stderr);
        let h = Host {
            ns: PathBuf::from("/run/netns").join(name),
        };
        h.sh(&["ip", "link", "set", "lo", "up"]).assert_success();
        h
    }

    fn sh(&self, args: &[&str]) -> Output {
        run_timeout(
            Command::new("nsenter")
                .arg(format!("--net={}", self.ns.display()))
                .args(args),
            Duration::from_secs(20),
        )
    }

    fn berth(&self, env: &TestEnv, args: &[&str]) -> Output {
        run(env
            .command("nsenter")
            .arg(format!("--net={}", self.ns.display()))
            .arg(bin("berth"))
            .args(args))
    }

    fn links(&self) -> Vec<String> {
        self.sh(&["ip", "-o", "link", "show"])
            .stdout
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n).to_string())
            .collect()
    }
}

fn rows(out: &str) -> Vec<Vec<String>> {
    out.lines()
        .map(|l| {
            l.split("   ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(String::from)
                .collect()
        })
        .collect()
}

#[test]
fn create_ls_inspect_rm_prune_read_like_docker() {
    if !can_run() {
        return;
    }
    let env = TestEnv::new("cli-networks");
    let host = Host::new(&env);
    let b = |args: &[&str]| host.berth(&env, args);

    // The first command starts netd: the predefined networks, in Docker's table.
    let out = b(&["network", "ls"]);
    out.assert_success();
    assert!(env.run().join("netd.sock").exists());
    let r = rows(&out.stdout);
    assert_eq!(
        r[0],
        ["NETWORK ID", "NAME", "DRIVER", "SCOPE"],
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .starts_with("NETWORK ID     NAME      DRIVER    SCOPE\n"),
        "{}",
        out.stdout
    );
    let names: Vec<&str> = r[1..].iter().map(|c| c[1].as_str()).collect();
    assert_eq!(names, ["bridge", "host", "none"]);
    assert!(r[1..].iter().all(|c| c[0].len() == 12 && c[3] == "local"));
    assert!(host.links().contains(&"berth0".to_string()));

    // create prints the full id.
    let out = b(&[
        "network",
        "create",
        "--subnet",
        "10.234.1.0/24",
        "--ip-range",
        "10.234.1.128/25",
        "--gateway",
        "10.234.1.254",
        "--label",
        "team=a",
        "-o",
        "com.docker.network.bridge.name=btnet1",
        "net1",
    ]);
    out.assert_success();
    let id1 = out.stdout.trim().to_string();
    assert_eq!(id1.len(), 64, "{}", out.stdout);
    assert!(host.links().contains(&"btnet1".to_string()));
    let out = b(&[
        "network",
        "create",
        "--internal",
        "-d",
        "bridge",
        "--subnet",
        "10.234.2.0/24",
        "net2",
    ]);
    out.assert_success();
    let id2 = out.stdout.trim().to_string();
    // A subnet netd picks itself (from its pool, clear of the namespace's routes).
    let out = b(&["network", "create", "net10"]);
    out.assert_success();

    // Name collisions, overlaps, bad input: Docker's words, exit 1, nothing made.
    let links_before = host.links();
    let out = b(&["network", "create", "--subnet", "10.234.3.0/24", "net1"]);
    out.assert_code(1);
    assert_eq!(
        out.stderr.trim(),
        "Error response from daemon: network with name net1 already exists"
    );
    let out = b(&["network", "create", "--subnet", "10.234.1.0/25", "over"]);
    out.assert_code(1);
    assert!(
        out.stderr.starts_with("Error response from daemon: ")
            && out.stderr.contains("overlaps network net1"),
        "{}",
        out.stderr
    );
    let out = b(&[
        "network",
        "create",
        "--subnet",
        "10.234.4.0/24",
        "--gateway",
        "10.234.5.1",
        "gw",
    ]);
    out.assert_code(1);
    assert!(out.stderr.contains("outside subnet"), "{}", out.stderr);
    let out = b(&["network", "create", "--gateway", "10.234.5.1", "nosubnet"]);
    out.assert_code(1);
    assert_eq!(
        out.stderr.trim(),
        "every ip-range or gateway must have a corresponding subnet"
    );
    let out = b(&["network", "create", "-d", "overlay", "ov"]);
    out.assert_code(1);
    assert!(
        out.stderr.starts_with("Error response from daemon: "),
        "{}",
        out.stderr
    );
    let out = b(&["network", "create", "--subnet", "not-a-subnet", "bad"]);
    out.assert_code(1);
    assert_eq!(host.links(), links_before, "failed creates leave no bridge");

    // ls: natural order, -q, --no-trunc, filters, --format.
    let out = b(&["network", "ls"]);
    let names: Vec<String> = rows(&out.stdout)[1..]
        .iter()
        .map(|c| c[1].clone())
        .collect();
    assert_eq!(
        names,
        ["bridge", "host", "net1", "net2", "net10", "none"],
        "{}",
        out.stdout
    );
    let out = b(&["network", "ls", "-q", "--filter", "type=custom"]);
    assert_eq!(out.stdout.lines().count(), 3, "{}", out.stdout);
    assert!(out.stdout.lines().all(|l| l.len() == 12));
    let out = b(&[
        "network",
        "ls",
        "-q",
        "--no-trunc",
        "--filter",
        "label=team=a",
    ]);
    assert_eq!(out.stdout, format!("{id1}\n"));
    let out = b(&[
        "network",
        "ls",
        "--filter",
        "name=net1",
        "--format",
        "{{.Name}} {{.Driver}} {{.Internal}} {{.Labels}}",
    ]);
    assert_eq!(
        out.stdout,
        "net1 bridge false team=a\nnet10 bridge false \n"
    );
    let out = b(&[
        "network",
        "ls",
        "-f",
        "type=builtin",
        "--format",
        "table {{.Name}}\t{{.Scope}}",
    ]);
    assert_eq!(
        out.stdout,
        "NAME      SCOPE\nbridge    local\nhost      local\nnone      local\n"
    );
    let out = b(&[
        "network",
        "ls",
        "-f",
        &format!("id={}", &id2[..6]),
        "--format",
        "json",
    ]);
    let j: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(j["Name"], "net2");
    assert_eq!(j["Internal"], "true");
    let out = b(&[
        "network",
        "ls",
        "-f",
        "dangling=true",
        "--format",
        "{{.Name}}",
    ]);
    assert_eq!(out.stdout, "net1\nnet2\nnet10\n");
    let out = b(&["network", "ls", "-f", "colour=red"]);
    out.assert_code(1);
    assert_eq!(
        out.stderr.trim(),
        "Error response from daemon: invalid filter 'colour'"
    );

    // inspect: Docker's object as netd gives it, four-space JSON; by name, id, prefix.
    let out = b(&["network", "inspect", "net1"]);
    out.assert_success();
    assert!(out.stdout.starts_with("[\n    {\n"), "{}", out.stdout);
    let j: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let n = &j[0];
    assert_eq!(n["Name"], "net1");
    assert_eq!(n["Id"], id1.as_str());
    assert_eq!(n["Driver"], "bridge");
    assert_eq!(n["Scope"], "local");
    assert_eq!(n["Internal"], false);
    assert_eq!(n["IPAM"]["Config"][0]["Subnet"], "10.234.1.0/24");
    assert_eq!(n["IPAM"]["Config"][0]["Gateway"], "10.234.1.254");
    assert_eq!(n["IPAM"]["Config"][0]["IPRange"], "10.234.1.128/25");
    assert_eq!(n["Labels"]["team"], "a");
    assert_eq!(n["Options"]["com.docker.network.bridge.name"], "btnet1");
    assert!(n["Containers"].as_object().unwrap().is_empty());
    let out = b(&[
        "network",
        "inspect",
        "-f",
        "{{.Name}} {{.Internal}}",
        &id2[..10],
        "net1",
    ]);
    assert_eq!(out.stdout, "net2 true\nnet1 false\n");
    let out = b(&[
        "network",
        "inspect",
        "--format",
        "{{json .IPAM.Config}}",
        "net2",
    ]);
    assert_eq!(
        out.stdout,
        "[{\"Gateway\":\"10.234.2.1\",\"Subnet\":\"10.234.2.0/24\"}]\n"
    );
    let out = b(&["network", "inspect", "net1", "nosuch"]);
    out.assert_code(1);
    assert_eq!(out.stderr.trim(), "Error: No such network: nosuch");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out.stdout).unwrap()[0]["Name"],
        "net1"
    );

    // rm: names printed; predefined and missing ones refused; -f forgives missing.
    let out = b(&["network", "rm", "net2", "bridge", "nosuch"]);
    out.assert_code(1);
    assert_eq!(out.stdout, "net2\n");
    assert_eq!(
        out.stderr.trim(),
        "Error response from daemon: bridge is a pre-defined network and cannot be removed\nError response from daemon: network nosuch not found"
    );
    b(&["network", "rm", "-f", "nosuch"]).assert_success();

    // prune: the prompt, then the custom networks with no containers.
    let out = run_with_input(
        env.command("nsenter")
            .arg(format!("--net={}", host.ns.display()))
            .arg(bin("berth"))
            .args(["network", "prune"]),
        b"n\n",
        Duration::from_secs(30),
    );
    out.assert_success();
    assert!(
        out.stdout.starts_with("WARNING! This will remove all custom networks not used by at least one container.\nAre you sure you want to continue? [y/N] "),
        "{}",
        out.stdout
    );
    let out = b(&["network", "prune", "-f", "--filter", "label=team=a"]);
    assert_eq!(out.stdout, "Deleted Networks:\nnet1\n\n");
    let out = b(&["network", "prune", "-f"]);
    assert_eq!(out.stdout, "Deleted Networks:\nnet10\n\n");
    let out = b(&["network", "prune", "-f"]);
    assert_eq!(out.stdout, "");
    let out = b(&["network", "ls", "--format", "{{.Name}}"]);
    assert_eq!(out.stdout, "bridge\nhost\nnone\n");
    assert!(!host.links().contains(&"btnet1".to_string()));
}

#[test]
fn a_dead_netd_is_replaced_and_networks_persist() {
    if !can_run() {
        return;
    }
    let env = TestEnv::new("cli-networks-restart");
    let host = Host::new(&env);
    let b = |args: &[&str]| host.berth(&env, args);
    let out = b(&["network", "create", "--subnet", "10.234.7.0/24", "keep"]);
    out.assert_success();
    let id = out.stdout.trim().to_string();
    // Kill netd as a crash would (by the pid holding its lock file, not by name).
    let pid = netd_pid(&env).expect("netd runs");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL).unwrap();
    for _ in 0..100 {
        if !PathBuf::from(format!("/proc/{pid}")).exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // The next command starts a new one, which has the network.
    let out = b(&["network", "ls", "-q", "--no-trunc", "-f", "name=keep"]);
    out.assert_success();
    assert_eq!(out.stdout, format!("{id}\n"));
    assert_ne!(netd_pid(&env), Some(pid));
}

/// The berth-netd serving this test's run dir: the process whose command line names it.
fn netd_pid(env: &TestEnv) -> Option<i32> {
    let run_dir = env.run().display().to_string();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
        let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
        let is_netd = args.first()?.ends_with(b"berth-netd");
        let ours = args
            .windows(2)
            .any(|w| w[0] == b"--run" && w[1] == run_dir.as_bytes());
        (is_netd && ours).then_some(pid)
    })
}
