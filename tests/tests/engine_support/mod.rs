//! A private engine on a private "host" for the `berth` end-to-end tests: a TestEnv (its own
//! BERTH_ROOT, BERTH_RUN and clean-up) and a network namespace the test makes, in which
//! every `berth` runs, so the berth-netd it starts keeps its bridge, nft table and DNS there
//! and nothing of the real host is touched. Clean-up deletes the namespace (its name has the
//! test's prefix) and kills what the test started.

#![allow(dead_code)] // each test file uses a different part

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use berth_tests::{bin, fixtures, run, run_timeout, run_with_input, Output, TestEnv};

pub struct Host {
    pub env: TestEnv,
    pub ns: PathBuf,
}

impl Host {
    /// A new host with the busybox fixture loaded as `busybox:latest`.
    pub fn new(name: &str) -> Host {
        let env = TestEnv::new(name);
        let ns_name = env.unique("h");
        let out = run(Command::new("ip").args(["netns", "add", &ns_name]));
        assert!(out.success(), "ip netns add: {}", out.stderr);
        let h = Host {
            env,
            ns: PathBuf::from("/run/netns").join(ns_name),
        };
        h.sh(&["ip", "link", "set", "lo", "up"]).assert_success();
        h.ok(&[
            "load",
            "-i",
            &fixtures().join("busybox.tar").display().to_string(),
        ]);
        h
    }

    /// A command in the test's "host" namespace.
    pub fn sh(&self, args: &[&str]) -> Output {
        in_ns(&self.ns, args)
    }

    /// `berth ARGS` in the host namespace, with a cgroup parent of the test's own.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = self.env.command("nsenter");
        c.arg(format!("--net={}", self.ns.display()))
            .arg(bin("berth"))
            .args(args)
            .env("BERTH_CGROUP_PARENT", self.env.unique("cg"));
        c
    }

    pub fn berth(&self, args: &[&str]) -> Output {
        run_timeout(&mut self.cmd(args), Duration::from_secs(120))
    }

    pub fn berth_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        run_with_input(&mut self.cmd(args), input, Duration::from_secs(120))
    }

    #[track_caller]
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.berth(args);
        out.assert_success();
        out.stdout
    }

    /// Poll until `f` is true, or fail naming `what`.
    #[track_caller]
    pub fn until(&self, what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Another machine on the test host's network: a namespace on a veth link, 10.233.9.2/30
    /// beside the host's 10.233.9.1 (addresses that exist only inside these namespaces).
    /// Returns a runner for commands there and the host's address it reaches. The harness
    /// deletes the namespace (its name has the test's prefix) and the link goes with it.
    pub fn other_host(&self) -> (impl Fn(&[&str]) -> Output + '_, &'static str) {
        let name = self.env.unique("o");
        let veth = self.env.unique("vo");
        let out = run(Command::new("ip").args(["netns", "add", &name]));
        assert!(out.success(), "ip netns add: {}", out.stderr);
        let ns = PathBuf::from("/run/netns").join(&name);
        for args in [
            [
                "ip", "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &name,
            ]
            .as_slice(),
            &["ip", "addr", "add", "10.233.9.1/30", "dev", &veth],
            &["ip", "link", "set", &veth, "up"],
        ] {
            self.sh(args).assert_success();
        }
        for args in [
            ["ip", "link", "set", "lo", "up"].as_slice(),
            &["ip", "addr", "add", "10.233.9.2/30", "dev", "eth0"],
            &["ip", "link", "set", "eth0", "up"],
        ] {
            in_ns(&ns, args).assert_success();
        }
        (move |args: &[&str]| in_ns(&ns, args), "10.233.9.1")
    }
}

fn in_ns(ns: &std::path::Path, args: &[&str]) -> Output {
    run_timeout(
        Command::new("nsenter")
            .arg(format!("--net={}", ns.display()))
            .args(args),
        Duration::from_secs(30),
    )
}
