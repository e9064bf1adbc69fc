//! What the shim's end-to-end tests share on top of the workspace harness (`berth_tests`:
//! TestEnv, Bundle, the busybox fixtures): the shim and runtime binaries, bundles set up the
//! way these tests want them, a private containerd, and the clean-up that is the shim's own
//! (sockets of killed shims, containers under containerd's runtime root).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use berth_tests::{fixtures, run, run_timeout, Bundle, Output, TestEnv};

pub const SHIM: &str = env!("CARGO_BIN_EXE_containerd-shim-berth-v2");

/// The busybox fixture image (`tests/fixtures/build.sh` tags it `busybox:latest`).
pub const IMAGE: &str = "docker.io/library/busybox:latest";

/// Importing an image unpacks it; slower than a plain ctr call on a loaded machine.
const IMPORT_TIMEOUT: Duration = Duration::from_secs(180);

/// The runtime the shim drives in tests: BERTH_TEST_RUNTIME, else the workspace's own
/// berth-runtime built beside the shim (`cargo build --workspace`), else runc.
pub fn runtime_binary() -> String {
    if let Ok(r) = std::env::var("BERTH_TEST_RUNTIME") {
        return r;
    }
    let ours = shim_dir().join("berth-runtime");
    if ours.exists() {
        return ours.display().to_string();
    }
    "/usr/sbin/runc".to_string()
}

pub fn shim_dir() -> PathBuf {
    Path::new(SHIM).parent().unwrap().to_path_buf()
}

/// Poll `f` until it returns Some, failing the test with `what` after a generous limit.
pub fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A copy of the busybox fixture bundle running `args`, writable, with hostname
/// `berth-test`, then adjusted by `edit`.
pub fn bundle(env: &TestEnv, args: &[&str], edit: impl FnOnce(&mut serde_json::Value)) -> Bundle {
    let bundle = Bundle::busybox(env);
    bundle.args(args).edit_config(|spec| {
        spec["process"]["terminal"] = false.into();
        spec["root"]["readonly"] = false.into();
        spec["hostname"] = "berth-test".into();
        edit(spec);
    });
    bundle
}

/// A containerd of our own, with its own root, state, socket and namespace (named with the
/// test's prefix, so the harness finds the containers' cgroups); its shims, containers and
/// sockets go on drop, then the TestEnv cleans up the rest.
pub struct Containerd {
    pub sock: PathBuf,
    pub namespace: String,
    dir: PathBuf,
    child: Child,
    // Dropped after the fields above, by `Drop for Containerd` first.
    pub env: TestEnv,
}

impl Containerd {
    pub fn start(name: &str) -> Containerd {
        let env = TestEnv::new(name);
        let dir = env.path().join("containerd");
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("c.sock");
        let config = format!(
            "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n[grpc]\n  address = \"{d}/c.sock\"\n[ttrpc]\n  address = \"{d}/c.sock.ttrpc\"\n[plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"{d}/opt\"\n",
            d = dir.display(),
        );
        std::fs::write(dir.join("config.toml"), config).unwrap();
        let path = format!(
            "{}:{}",
            shim_dir().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let log = std::fs::File::create(dir.join("containerd.log")).unwrap();
        let child = env.spawn(
            Command::new("containerd")
                .arg("--config")
                .arg(dir.join("config.toml"))
                .env("PATH", path)
                .env("BERTH_SHIM_RUNTIME", runtime_binary())
                .stdin(std::process::Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log),
        );
        let c = Containerd {
            sock,
            namespace: env.unique("ns"),
            dir,
            child,
            env,
        };
        eventually("containerd to serve", || {
            c.ctr(&["version"]).success().then_some(())
        });
        c
    }

    /// `ctr` against this containerd and namespace.
    pub fn ctr_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = self.env.command("ctr");
        cmd.arg("-a")
            .arg(&self.sock)
            .arg("-n")
            .arg(&self.namespace)
            .args(args);
        cmd
    }

    pub fn ctr(&self, args: &[&str]) -> Output {
        run(&mut self.ctr_cmd(args))
    }

    /// Where tests may put files of their own.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.env.path().join(rel)
    }

    pub fn import_busybox(&self) {
        run_timeout(
            self.ctr_cmd(&["images", "import"])
                .arg(fixtures().join("busybox.tar")),
            IMPORT_TIMEOUT,
        )
        .assert_success();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default()
    }

    /// The bundle containerd made for task `id`.
    pub fn bundle(&self, id: &str) -> PathBuf {
        self.tasks_dir().join(id)
    }

    fn tasks_dir(&self) -> PathBuf {
        self.dir
            .join("state/io.containerd.runtime.v2.task")
            .join(&self.namespace)
    }

    /// The bundles of this containerd's tasks.
    fn bundles(&self) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(self.tasks_dir()) else {
            return Vec::new();
        };
        entries.filter_map(|e| Some(e.ok()?.path())).collect()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // The shim's runtime root is outside the test's dir, where the harness does not look.
        let runtime_root = Path::new("/run/containerd/berth").join(&self.namespace);
        for bundle in self.bundles() {
            kill_shim(&bundle);
        }
        // Shims of tasks already deleted are on their way out (after Shutdown they send
        // their last events, which needs containerd) and remove their sockets as they go;
        // the harness would SIGKILL them and leave the sockets behind.
        let shims = format!("-namespace {} ", self.namespace);
        let deadline = Instant::now() + Duration::from_secs(30);
        while shim_processes(&shims) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        force_delete_all(&runtime_root);
        let _ = std::fs::remove_dir_all(&runtime_root);
    }
}

/// How many shim processes have `needle` in their command line.
fn shim_processes(needle: &str) -> usize {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains("containerd-shim-berth-v2") && c.contains(needle))
        .count()
}

/// Delete every container the runtime knows under `root`, running or not.
pub fn force_delete_all(root: &Path) {
    let out = run(Command::new(runtime_binary())
        .arg("--root")
        .arg(root)
        .args(["list", "-q"]));
    for id in out.stdout.lines() {
        run(Command::new(runtime_binary())
            .arg("--root")
            .arg(root)
            .args(["delete", "--force", id]));
    }
}

/// The pid of the shim serving `bundle`, as its `start` action recorded it.
pub fn shim_pid(bundle: &Path) -> Option<i32> {
    std::fs::read_to_string(bundle.join("shim.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// SIGKILL the shim serving `bundle` and remove the socket it leaves behind.
pub fn kill_shim(bundle: &Path) {
    if let Some(pid) = shim_pid(bundle) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    if let Some(path) = std::fs::read_to_string(bundle.join("address"))
        .ok()
        .and_then(|a| a.trim().strip_prefix("unix://").map(PathBuf::from))
    {
        let _ = std::fs::remove_file(path);
    }
}

/// Whether the test can run: root, and the tools these tests drive.
pub fn can_run(cmds: &[&str]) -> bool {
    berth_tests::require_root() && berth_tests::require_cmds(cmds)
}
