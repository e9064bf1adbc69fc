//! Shared pieces of the shim's end-to-end tests: a busybox rootfs and image, bundles, a
//! private containerd, and guards that clean everything up even when a test fails.
#![allow(dead_code)]

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const SHIM: &str = env!("CARGO_BIN_EXE_containerd-shim-berth-v2");

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
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    out
}

/// A temp directory that takes its mounts, and itself, away on drop.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let path = PathBuf::from(format!("/tmp/bst-{tag}-{}", std::process::id()));
        let td = TempDir { path };
        td.cleanup();
        std::fs::create_dir_all(&td.path).unwrap();
        td
    }

    fn cleanup(&self) {
        unmount_under(&self.path);
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// Unmount everything mounted at or below `dir`, deepest first.
pub fn unmount_under(dir: &Path) {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let mut points: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    for p in points {
        let _ = nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// A busybox root filesystem in `dir`.
pub fn busybox_rootfs(dir: &Path) {
    for d in ["bin", "etc", "proc", "sys", "dev", "tmp", "root"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", dir.join("bin/busybox")).unwrap();
    let list = run(Command::new("/bin/busybox").arg("--list"));
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let link = dir.join("bin").join(applet);
        if applet != "busybox" && !link.exists() {
            symlink("busybox", link).unwrap();
        }
    }
    std::fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(dir.join("etc/group"), "root:x:0:\n").unwrap();
}

/// A docker-archive image (`docker save` layout) of the busybox rootfs, tagged `reference`.
pub fn busybox_image_tar(work: &Path, reference: &str) -> PathBuf {
    let rootfs = work.join("image-rootfs");
    busybox_rootfs(&rootfs);
    let out = work.join("image-out");
    std::fs::create_dir_all(&out).unwrap();
    let layer = work.join("layer.tar");
    assert!(run(Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&layer)
        .arg("."))
    .status
    .success());
    let sha = |p: &Path| -> String {
        let o = run(Command::new("sha256sum").arg(p));
        String::from_utf8_lossy(&o.stdout)
            .split(' ')
            .next()
            .unwrap()
            .to_string()
    };
    let layer_sha = sha(&layer);
    std::fs::create_dir_all(out.join(&layer_sha)).unwrap();
    std::fs::rename(&layer, out.join(&layer_sha).join("layer.tar")).unwrap();
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["sh"], "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{layer_sha}")]},
    });
    let cfg_tmp = work.join("config.json");
    std::fs::write(&cfg_tmp, serde_json::to_vec(&config).unwrap()).unwrap();
    let cfg_sha = sha(&cfg_tmp);
    std::fs::rename(&cfg_tmp, out.join(format!("{cfg_sha}.json"))).unwrap();
    let manifest = serde_json::json!([{
        "Config": format!("{cfg_sha}.json"),
        "RepoTags": [reference],
        "Layers": [format!("{layer_sha}/layer.tar")],
    }]);
    std::fs::write(
        out.join("manifest.json"),
        serde_json::to_vec(&manifest).unwrap(),
    )
    .unwrap();
    let tar = work.join("busybox.tar");
    assert!(run(Command::new("tar")
        .arg("-C")
        .arg(&out)
        .arg("-cf")
        .arg(&tar)
        .arg("."))
    .status
    .success());
    tar
}

/// An OCI bundle with a busybox rootfs and `runc spec`'s config, adjusted by `edit`.
pub fn bundle(dir: &Path, args: &[&str], edit: impl FnOnce(&mut serde_json::Value)) {
    busybox_rootfs(&dir.join("rootfs"));
    let out = run(Command::new("runc").arg("spec").arg("--bundle").arg(dir));
    assert!(
        out.status.success(),
        "runc spec: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = dir.join("config.json");
    let mut spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    spec["process"]["terminal"] = false.into();
    spec["process"]["args"] = serde_json::json!(args);
    spec["root"]["readonly"] = false.into();
    spec["hostname"] = "berth-test".into();
    edit(&mut spec);
    std::fs::write(&path, serde_json::to_vec_pretty(&spec).unwrap()).unwrap();
}

/// A containerd of our own, with its own root, state, socket and namespace; killed with
/// its shims, containers and mounts on drop.
pub struct Containerd {
    pub dir: TempDir,
    pub sock: PathBuf,
    pub namespace: String,
    child: Child,
}

impl Containerd {
    pub fn start(tag: &str) -> Containerd {
        let dir = TempDir::new(tag);
        let d = &dir.path;
        let sock = d.join("c.sock");
        let config = format!(
            "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n[grpc]\n  address = \"{sock}\"\n[ttrpc]\n  address = \"{sock}.ttrpc\"\n",
            root = d.join("root").display(),
            state = d.join("state").display(),
            sock = sock.display(),
        );
        std::fs::write(d.join("config.toml"), config).unwrap();
        let path = format!(
            "{}:{}",
            shim_dir().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let log = std::fs::File::create(d.join("containerd.log")).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(d.join("config.toml"))
            .env("PATH", path)
            .env("BERTH_SHIM_RUNTIME", runtime_binary())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start containerd");
        let c = Containerd {
            dir,
            sock,
            namespace: format!("bst-{tag}-{}", std::process::id()),
            child,
        };
        eventually("containerd to serve", || {
            c.ctr(&["version"]).status.success().then_some(())
        });
        c
    }

    pub fn ctr_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("timeout");
        cmd.args(["-s", "KILL", "60", "ctr", "-a"])
            .arg(&self.sock)
            .arg("-n")
            .arg(&self.namespace)
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    pub fn ctr(&self, args: &[&str]) -> Output {
        run(&mut self.ctr_cmd(args))
    }

    pub fn import_busybox(&self, reference: &str) {
        let tar = busybox_image_tar(&self.dir.path, reference);
        let out = self.ctr(&["images", "import", tar.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "import: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path.join("containerd.log")).unwrap_or_default()
    }

    /// The bundles of this containerd's tasks.
    fn bundles(&self) -> Vec<PathBuf> {
        let tasks = self
            .dir
            .path
            .join("state/io.containerd.runtime.v2.task")
            .join(&self.namespace);
        let Ok(entries) = std::fs::read_dir(tasks) else {
            return Vec::new();
        };
        entries.filter_map(|e| Some(e.ok()?.path())).collect()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let runtime_root = Path::new("/run/containerd/berth").join(&self.namespace);
        for bundle in self.bundles() {
            kill_shim(&bundle);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        force_delete_all(&runtime_root);
        let _ = std::fs::remove_dir_all(&runtime_root);
        // containerd puts containers in /<namespace>/<id> in every hierarchy.
        remove_cgroups(&self.namespace);
    }
}

/// Remove the cgroup `/<name>` and everything below it in every mounted hierarchy.
pub fn remove_cgroups(name: &str) {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    for line in info.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        if !right.starts_with("cgroup ") && !right.starts_with("cgroup2 ") {
            continue;
        }
        let Some(mnt) = left.split(' ').nth(4) else {
            continue;
        };
        remove_dir_tree(&Path::new(mnt).join(name));
    }
}

fn remove_dir_tree(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_dir_tree(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// Delete every container the runtime knows under `root`, running or not.
pub fn force_delete_all(root: &Path) {
    let out = run(Command::new(runtime_binary())
        .arg("--root")
        .arg(root)
        .args(["list", "-q"]));
    for id in String::from_utf8_lossy(&out.stdout).lines() {
        let _ = run(Command::new(runtime_binary())
            .arg("--root")
            .arg(root)
            .args(["delete", "--force", id]));
    }
}

/// SIGKILL the shim serving `bundle` and remove the socket it leaves behind.
pub fn kill_shim(bundle: &Path) {
    if let Some(pid) = std::fs::read_to_string(bundle.join("shim.pid"))
        .ok()
        .and_then(|p| p.trim().parse().ok())
    {
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
