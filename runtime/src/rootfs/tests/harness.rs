//! Test harness: a busybox rootfs in a temp dir, and a child process that unshares a mount
//! namespace, runs prepare/pivot/finalize and execs `/bin/sh -c SCRIPT` inside the result.
//! The child's stdout+stderr come back through a pipe; the exit status says which step failed
//! (100 prepare, 101 pivot, 102 finalize, 103 exec) or is the script's own.
//!
//! Every run also checks that the host's mount table did not change under the fixture's
//! directory or on the system mount points, i.e. nothing leaked out of the namespace.

use nix::sched::{unshare, CloneFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{dup2_stderr, dup2_stdin, dup2_stdout, execve, fork, pipe, ForkResult};
use oci_spec::runtime::Spec;
use std::ffi::CString;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::rootfs::RootfsOptions;
use crate::rootfs::{finalize, pivot, prepare_with_idmapped_sources, IdmappedSources};

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub rootfs: PathBuf,
    /// A directory outside the rootfs that escape attempts aim at; must stay empty.
    pub host: PathBuf,
}

fn applets() -> &'static [String] {
    static LIST: OnceLock<Vec<String>> = OnceLock::new();
    LIST.get_or_init(|| {
        let out = std::process::Command::new("/bin/busybox")
            .arg("--list")
            .output()
            .expect("run /bin/busybox --list");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    })
}

impl Fixture {
    pub fn new(name: &str) -> Fixture {
        let dir = tempfile::Builder::new()
            .prefix(&format!("berth-rootfs-{name}-"))
            .tempdir_in("/tmp")
            .expect("create temp dir");
        // Canonical, as `create` hands it to the rootfs code.
        let rootfs = dir
            .path()
            .canonicalize()
            .expect("resolve temp dir")
            .join("rootfs");
        let host = dir.path().join("host");
        for d in ["bin", "etc", "proc", "sys", "dev", "tmp"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        std::fs::create_dir_all(&host).unwrap();
        // Copied by a separate process: a write fd held in this process would be inherited by
        // children other tests fork meanwhile, and exec of the copy would fail with ETXTBSY.
        let copied = std::process::Command::new("cp")
            .arg("/bin/busybox")
            .arg(rootfs.join("bin/busybox"))
            .status()
            .expect("run cp");
        assert!(copied.success(), "copy /bin/busybox into the fixture");
        for a in applets() {
            if a != "busybox" {
                let _ = std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(a));
            }
        }
        std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/:/bin/sh\n").unwrap();
        std::fs::write(rootfs.join("etc/group"), "root:x:0:\n").unwrap();
        Fixture { dir, rootfs, host }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn host_is_empty(&self) -> bool {
        std::fs::read_dir(&self.host).unwrap().next().is_none()
    }
}

/// A spec from JSON fragments: `mounts` and `linux` as given, plus root.readonly.
pub fn make_spec(mounts: serde_json::Value, linux: serde_json::Value, readonly_root: bool) -> Spec {
    serde_json::from_value(serde_json::json!({
        "ociVersion": "1.2.0",
        "root": {"path": "rootfs", "readonly": readonly_root},
        "mounts": mounts,
        "linux": linux,
    }))
    .expect("valid spec")
}

/// The standard mounts runc's `spec` command writes.
pub fn default_mounts() -> serde_json::Value {
    serde_json::json!([
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "ro"]},
    ])
}

#[derive(Default)]
pub struct Setup {
    pub opts: RootfsOptions,
    /// Namespaces unshared besides the mount namespace.
    pub extra: Option<CloneFlags>,
    /// Also a new PID namespace, with the script as its PID 1.
    pub pidns: bool,
    /// Start in a new user namespace (identity-mapped for 65536 ids) before the rest.
    pub userns: bool,
    /// Idmapped mount sources made by the test process, outside the user namespace.
    pub sources: IdmappedSources,
    /// Runs in the child's new namespaces before prepare(), e.g. to fake another host layout.
    pub before_prepare: Option<fn() -> Result<(), String>>,
}

pub struct Run {
    pub status: i32,
    pub output: String,
}

impl Run {
    #[track_caller]
    pub fn assert_ok(&self) {
        assert_eq!(self.status, 0, "container run failed:\n{}", self.output);
    }

    /// The run failed at the step `status` names (see the module doc), saying `expect`.
    #[track_caller]
    pub fn assert_failed(&self, status: i32, expect: &str) {
        assert_eq!(self.status, status, "{}", self.output);
        assert!(
            self.output.contains(expect),
            "expected {expect:?} in:\n{}",
            self.output
        );
    }
}

/// The whole mountinfo lines (ids, options, propagation) of the host mounts a leak, or a
/// propagation change, could show up in.
fn watched_mounts(fixture_dir: &Path) -> Vec<String> {
    const SYSTEM: &[&str] = &[
        "/",
        "/proc",
        "/sys",
        "/dev",
        "/dev/pts",
        "/dev/shm",
        "/dev/mqueue",
        "/tmp",
    ];
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let mp = f.get(4)?.to_string();
            let watched = Path::new(&mp).starts_with(fixture_dir)
                || SYSTEM.contains(&mp.as_str())
                || mp.starts_with("/sys/fs/cgroup");
            watched.then(|| l.to_string())
        })
        .collect()
}

/// Write to a raw fd without std's locks (we may be in a child forked from a threaded parent).
fn raw_write(fd: i32, msg: &str) {
    // SAFETY: fd 2 stays open in the child; the borrow lasts for this call only.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let _ = nix::unistd::write(fd, msg.as_bytes());
}

fn exit(code: i32) -> ! {
    // SAFETY: _exit ends the forked child without running the parent's atexit handlers or
    // destructors, which belong to the test harness.
    unsafe { libc::_exit(code) }
}

/// Pipes through which a child in a new user namespace waits for its ID maps.
struct UsernsSync {
    ready_w: OwnedFd,
    ack_r: OwnedFd,
}

fn child_main(
    fx_rootfs: &Path,
    spec: &Spec,
    setup: &Setup,
    script: &CString,
    sync: Option<UsernsSync>,
) -> ! {
    let _ = nix::unistd::alarm::set(60);
    if let Some(sync) = sync {
        if let Err(e) = unshare(CloneFlags::CLONE_NEWUSER) {
            raw_write(2, &format!("unshare user namespace: {e}\n"));
            exit(99);
        }
        let _ = nix::unistd::write(&sync.ready_w, b"u");
        let mut b = [0u8; 1];
        if nix::unistd::read(&sync.ack_r, &mut b) != Ok(1) {
            raw_write(2, "no ID maps from the parent\n");
            exit(99);
        }
    }
    let flags = CloneFlags::CLONE_NEWNS | setup.extra.unwrap_or(CloneFlags::empty());
    let flags = if setup.pidns {
        flags | CloneFlags::CLONE_NEWPID
    } else {
        flags
    };
    if let Err(e) = unshare(flags) {
        raw_write(2, &format!("unshare: {e}\n"));
        exit(99);
    }
    if setup.pidns {
        // SAFETY: single-threaded child; the grandchild runs the container.
        match unsafe { fork() } {
            Ok(ForkResult::Parent { child }) => match waitpid(child, None) {
                Ok(WaitStatus::Exited(_, c)) => exit(c),
                _ => exit(98),
            },
            Ok(ForkResult::Child) => {
                // Alarms do not survive fork.
                let _ = nix::unistd::alarm::set(60);
            }
            Err(_) => exit(97),
        }
    }
    if let Some(f) = setup.before_prepare {
        if let Err(e) = f() {
            raw_write(2, &format!("before prepare: {e}\n"));
            exit(96);
        }
    }
    if let Err(e) = prepare_with_idmapped_sources(spec, fx_rootfs, &setup.opts, &setup.sources) {
        raw_write(2, &format!("prepare: {e}\n"));
        exit(100);
    }
    if let Err(e) = pivot(fx_rootfs, setup.opts.no_pivot) {
        raw_write(2, &format!("pivot: {e}\n"));
        exit(101);
    }
    if let Err(e) = finalize(spec) {
        raw_write(2, &format!("finalize: {e}\n"));
        exit(102);
    }
    let argv = [c"sh".to_owned(), c"-c".to_owned(), script.clone()];
    let envp = [c"PATH=/bin".to_owned()];
    let e = execve(c"/bin/sh", &argv, &envp).unwrap_err();
    raw_write(2, &format!("exec /bin/sh: {e}\n"));
    exit(103)
}

/// Run `script` in a container made from `spec`. When `on_ready` is given, the script is
/// expected to print a line `ready` and then read a line from stdin: `on_ready` runs on the
/// host in between, and the host mount it may return is undone before the leak check.
pub fn run_in(
    fx: &Fixture,
    spec: &Spec,
    setup: Setup,
    script: &str,
    on_ready: Option<&mut dyn FnMut() -> Option<HostMount>>,
) -> Run {
    let before = watched_mounts(fx.path());
    // `set -e` ignores `! cmd`, so negative checks use `fails cmd`.
    let prelude = "fails() { if \"$@\"; then echo \"unexpectedly succeeded: $*\"; exit 1; fi; }\n";
    let script = CString::new(format!("{prelude}{script}")).unwrap();
    let (out_r, out_w) = pipe().unwrap();
    let (in_r, in_w) = pipe().unwrap();
    let (ready_r, ready_w) = pipe().unwrap();
    let (ack_r, ack_w) = pipe().unwrap();
    // SAFETY: the child only runs our rootfs code and execs; it writes with raw write(2) and
    // leaves with _exit, never touching the harness's locks.
    let child = match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            let _ = dup2_stdout(&out_w);
            let _ = dup2_stderr(&out_w);
            let _ = dup2_stdin(&in_r);
            drop((out_r, out_w, in_r, in_w, ready_r, ack_w));
            let sync = setup.userns.then_some(UsernsSync { ready_w, ack_r });
            child_main(&fx.rootfs, spec, &setup, &script, sync)
        }
        ForkResult::Parent { child } => child,
    };
    drop((out_w, in_r, ready_w, ack_r));
    if setup.userns {
        let mut b = [0u8; 1];
        if nix::unistd::read(&ready_r, &mut b) == Ok(1) {
            for f in ["uid_map", "gid_map"] {
                std::fs::write(format!("/proc/{child}/{f}"), "0 0 65536\n").expect("write ID map");
            }
        }
        let _ = nix::unistd::write(&ack_w, b"a");
    }
    drop((ready_r, ack_w));
    let mut reader = BufReader::new(std::fs::File::from(out_r));
    let mut output = String::new();
    let mut stdin = Some(std::fs::File::from(in_w));
    let mut host_mount = None;
    if let Some(cb) = on_ready {
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap_or(0) > 0 {
            output.push_str(&line);
            if line.trim() == "ready" {
                host_mount = cb();
                let _ = stdin.as_mut().unwrap().write_all(b"go\n");
                break;
            }
            line.clear();
        }
    }
    drop(stdin.take());
    let _ = reader.read_to_string(&mut output);
    let status = match waitpid(child, None).expect("waitpid") {
        WaitStatus::Exited(_, c) => c,
        other => panic!("container child ended with {other:?}:\n{output}"),
    };
    drop(host_mount);
    let after = watched_mounts(fx.path());
    assert_eq!(before, after, "host mount table changed (leak):\n{output}");
    Run { status, output }
}

/// Keeps a host-side mount for the life of a test; unmounts even when the test fails.
pub struct HostMount(pub PathBuf);

impl Drop for HostMount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}
