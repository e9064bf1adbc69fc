//! A private dockerd for interop tests, started as tests/tests/runtime_interop.rs starts
//! one: data, exec root, socket and containerd namespaces of its own, and a network
//! namespace of its own (`unshare --net`), since a dockerd without a bridge deletes the
//! host's `docker0`. Everything it starts carries the test env's marker, so the env's
//! clean-up kills it even when a test fails.

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_tests::{require_cmds, TestEnv};

/// What a private dockerd needs on the host.
pub const DOCKERD_CMDS: &[&str] = &[
    "dockerd",
    "docker",
    "containerd",
    "containerd-shim-runc-v2",
    "runc",
    "unshare",
    "ip",
];

pub struct Dockerd {
    child: Child,
    host: String,
    config_dir: PathBuf,
    log: PathBuf,
}

impl Dockerd {
    /// A private dockerd, or None when this host cannot run one (the reason is printed).
    pub fn start(env: &TestEnv) -> Option<Dockerd> {
        if !require_cmds(DOCKERD_CMDS) {
            return None;
        }
        let dir = env.path().join("docker");
        let config_dir = dir.join("client");
        fs::create_dir_all(&config_dir).unwrap();
        // An empty daemon.json keeps the host's /etc/docker/daemon.json out.
        let daemon_json = dir.join("daemon.json");
        fs::write(&daemon_json, "{}\n").unwrap();
        let namespace = env.unique("dk");
        let host = format!("unix://{}", dir.join("d.sock").display());
        let log = dir.join("dockerd.log");
        let out = fs::File::create(&log).unwrap();
        let mut cmd = Command::new("unshare");
        // Loopback starts down in a new namespace; `exec` keeps the pid for SIGTERM.
        cmd.args([
            "--net",
            "--",
            "sh",
            "-c",
            r#"ip link set lo up && exec "$@""#,
        ])
        .args(["dockerd-netns", "dockerd"])
        .arg("--config-file")
        .arg(&daemon_json)
        .arg("--data-root")
        .arg(dir.join("data"))
        .arg("--exec-root")
        .arg(dir.join("exec"))
        .arg("--pidfile")
        .arg(dir.join("dockerd.pid"))
        .args(["-H", &host])
        .args(["--bridge=none", "--iptables=false", "--ip6tables=false"])
        .args(["--containerd-namespace", &namespace])
        .arg("--containerd-plugins-namespace")
        .arg(format!("{namespace}-p"))
        .arg("--cgroup-parent")
        .arg(format!("/{}", env.unique("docker")))
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out);
        let mut d = Dockerd {
            child: env.spawn(&mut cmd),
            host,
            config_dir,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = d.child.try_wait() {
                panic!(
                    "dockerd exited during start-up ({status}):\n{}",
                    d.log_tail()
                );
            }
            let ok = d
                .docker(env)
                .arg("info")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return Some(d);
            }
            assert!(
                Instant::now() < deadline,
                "dockerd not ready in 60 s:\n{}",
                d.log_tail()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The docker client, pointed at this daemon.
    pub fn docker(&self, env: &TestEnv) -> Command {
        let mut cmd = env.command("docker");
        cmd.env("DOCKER_HOST", &self.host)
            .env("DOCKER_CONFIG", &self.config_dir);
        cmd
    }

    /// Run the docker client; its stdout, or a panic with its stderr.
    #[track_caller]
    pub fn run(&self, env: &TestEnv, args: &[&str]) -> String {
        let out = self.docker(env).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "docker {}: {}\ndockerd log:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr),
            self.log_tail()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        // SIGTERM first: dockerd stops the containerd it started only on a clean shutdown.
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
