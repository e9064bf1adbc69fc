//! A private dockerd for tests that run beside Docker: its own data root, exec root, socket,
//! containerd namespaces, cgroup parent and network namespace, started and stopped per test.

#![allow(dead_code)] // each test file uses a different part

use std::fs::{self, File};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use berth_tests::{bin, fixtures, require_cmds, require_root, run, run_timeout, Output, TestEnv};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::runtime_support::poll;

/// How long a daemon may take to answer its first request.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a daemon may take to shut down after SIGTERM before it is killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// Image loads unpack a layer; slower than a container command on a busy host.
const LOAD_TIMEOUT: Duration = Duration::from_secs(120);

/// A daemon started for one test. Dropping it (also while a failed test
/// unwinds) stops it with SIGTERM, then SIGKILL; the test env's clean-up
/// later kills anything it forked, since all of it carries the env's marker.
pub struct Daemon {
    pub name: &'static str,
    pub child: Child,
    log: PathBuf,
}

impl Daemon {
    pub fn start(env: &TestEnv, name: &'static str, cmd: &mut Command) -> Daemon {
        let log = env.path().join(format!("{name}.log"));
        let file = File::create(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        let file2 = file
            .try_clone()
            .unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        cmd.stdin(Stdio::null()).stdout(file).stderr(file2);
        let child = env.spawn(cmd);
        Daemon { name, child, log }
    }

    /// Waits until `probe` succeeds; panics with the daemon's log if it
    /// exits or stays unready.
    pub fn wait_ready(&mut self, mut probe: impl FnMut() -> Output) {
        let ready = poll(READY_TIMEOUT, || {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited during start-up ({status}); log:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            let out = probe();
            if out.success() {
                Ok(())
            } else {
                Err(format!("`{}`: {}", out.command, out.stderr))
            }
        });
        if let Err(last) = ready {
            panic!(
                "{} not ready within {READY_TIMEOUT:?}: {last}\nlog:\n{}",
                self.name,
                self.log_tail()
            );
        }
    }

    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SIGTERM first: dockerd stops the containerd it started only when
        // it shuts down cleanly.
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        let stopped = poll(STOP_TIMEOUT, || match self.child.try_wait() {
            Ok(Some(_)) => Ok(()),
            _ => Err("still running".to_string()),
        });
        if stopped.is_ok() {
            return;
        }
        eprintln!(
            "{}: still running {STOP_TIMEOUT:?} after SIGTERM; killing it",
            self.name
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// --- dockerd ------------------------------------------------------------------

/// A private dockerd (and the containerd it starts) with data, exec root,
/// socket, containerd namespaces and cgroup parent of its own, and
/// berth-runtime added as runtime `berth`.
///
/// It also runs in a network namespace of its own. A dockerd with the
/// default bridge disabled (`--bridge=none`) deletes any link named `docker0`
/// as it starts (moby's removeDefaultBridgeInterface), whatever its data
/// root: in the host's namespace that is the host dockerd's bridge, which
/// then fails every default-network container until it restarts. The
/// namespace comes from `unshare --net`, not `ip netns add`, so nothing is
/// left to remove: it goes away with dockerd and what dockerd started, which
/// the test env's clean-up kills even when the test fails. The docker client
/// still reaches dockerd through its socket file; unix sockets bound to a
/// path do not depend on the network namespace.
pub struct Dockerd {
    pub daemon: Daemon,
    pub host: String,
    config_dir: PathBuf,
    exec_root: PathBuf,
    namespace: String,
}

impl Dockerd {
    pub fn start(env: &TestEnv) -> Dockerd {
        let dir = env.path().join("docker");
        let config_dir = dir.join("client");
        fs::create_dir_all(&config_dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        // An empty daemon.json keeps the host's /etc/docker/daemon.json out.
        let daemon_json = dir.join("daemon.json");
        fs::write(&daemon_json, "{}\n").unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let exec_root = dir.join("exec");
        let namespace = env.unique("dk");
        let host = format!("unix://{}", dir.join("d.sock").display());
        // Loopback starts down in a new namespace; `exec` keeps the pid, so
        // the daemon's SIGTERM on drop reaches dockerd itself.
        let mut cmd = Command::new("unshare");
        cmd.args([
            "--net",
            "--",
            "sh",
            "-c",
            r#"ip link set lo up && exec "$@""#,
        ]);
        cmd.args(["dockerd-netns", "dockerd"])
            .arg("--config-file")
            .arg(&daemon_json)
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(&exec_root)
            .arg("--pidfile")
            .arg(dir.join("dockerd.pid"))
            .args(["-H", &host])
            .args(["--bridge=none", "--iptables=false", "--ip6tables=false"])
            .args(["--containerd-namespace", &namespace])
            .arg("--containerd-plugins-namespace")
            .arg(format!("{namespace}-p"))
            // Named with the test prefix so clean-up finds the containers'
            // cgroups (and kills what is in them) if the test fails.
            .arg("--cgroup-parent")
            .arg(format!("/{}", env.unique("docker")))
            .arg("--add-runtime")
            .arg(format!("berth={}", bin("berth-runtime").display()));
        let mut dockerd = Dockerd {
            daemon: Daemon::start(env, "dockerd", &mut cmd),
            host,
            config_dir,
            exec_root,
            namespace,
        };
        let mut probe = dockerd.docker(env);
        probe.arg("info");
        dockerd.daemon.wait_ready(|| run(&mut probe));
        dockerd
    }

    pub fn docker(&self, env: &TestEnv) -> Command {
        let mut cmd = env.command("docker");
        cmd.env("DOCKER_HOST", &self.host)
            .env("DOCKER_CONFIG", &self.config_dir);
        cmd
    }

    /// Where dockerd's runc shim keeps the state of every runtime it runs.
    pub fn runtime_root(&self) -> PathBuf {
        self.exec_root.join("runtime-runc").join(&self.namespace)
    }

    /// dockerd's pid (`unshare` and `sh` exec'd into it).
    pub fn pid(&self) -> u32 {
        self.daemon.child.id()
    }
}

/// What a private [`Dockerd`] needs on the host.
pub const DOCKERD_CMDS: &[&str] = &[
    "dockerd",
    "docker",
    "containerd",
    "containerd-shim-runc-v2",
    "unshare",
    "ip",
];

/// A private dockerd (runtime `berth` added) with the busybox fixture loaded, or None when
/// the test cannot run here (not root, tools missing: the reason is printed).
pub fn dockerd_with_busybox(name: &str) -> Option<(TestEnv, Dockerd)> {
    if !require_root() || !require_cmds(DOCKERD_CMDS) {
        return None;
    }
    let env = TestEnv::new(name);
    let dockerd = Dockerd::start(&env);
    run_timeout(
        dockerd
            .docker(&env)
            .args(["load", "-i"])
            .arg(fixtures().join("busybox.tar")),
        LOAD_TIMEOUT,
    )
    .assert_success();
    Some((env, dockerd))
}
