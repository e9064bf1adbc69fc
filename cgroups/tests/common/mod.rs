//! Helpers for tests that make real cgroups: unique names, and guards that kill the test's
//! processes and remove its cgroups even when an assertion fails.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use berth_cgroups::{CgroupManager, HostCgroups};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// "/berth-test-<pid>-<n>-<name>": unique across parallel tests and concurrent runs.
pub fn unique_path(name: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    format!("/berth-test-{}-{n}-{name}", std::process::id())
}

/// Owns a manager; on drop thaws, kills everything inside and removes the cgroups.
pub struct Guard {
    pub mgr: CgroupManager,
    pub extra_dirs: Vec<std::path::PathBuf>,
}

impl Guard {
    pub fn new(mgr: CgroupManager) -> Self {
        Guard {
            mgr,
            extra_dirs: Vec::new(),
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.mgr.thaw();
        if let Ok(pids) = self.mgr.pids() {
            for p in pids {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(p),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        wait_until_empty(&self.mgr);
        let _ = self.mgr.destroy();
        for d in self.extra_dirs.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// A hybrid/v1/v2 manager for this host with a unique absolute path.
pub fn host_manager(name: &str) -> Guard {
    let path = unique_path(name);
    Guard::new(CgroupManager::new(Some(&path), name, false).expect("manager"))
}

/// A manager forced onto the cgroup2 mount of this host, whatever the layout.
pub fn v2_manager(name: &str) -> Option<Guard> {
    let host = berth_cgroups::detect().ok()?;
    let unified = host.unified?;
    let path = unique_path(name);
    let mgr = CgroupManager::with_host(HostCgroups::v2_at(unified.mountpoint), Some(&path), name)
        .expect("v2 manager");
    Some(Guard::new(mgr))
}

/// A child process that is killed and reaped when dropped.
pub struct Kid {
    pub child: Child,
    /// Kept across reads: a fresh BufReader per line would drop what it read ahead.
    stdout: BufReader<ChildStdout>,
}

impl Kid {
    pub fn sh(script: &str) -> Self {
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sh");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        Kid { child, stdout }
    }

    pub fn sleep() -> Self {
        Self::sh("exec sleep 1000")
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn stdin(&mut self) -> &mut ChildStdin {
        self.child.stdin.as_mut().expect("stdin")
    }

    pub fn send_line(&mut self, line: &str) {
        writeln!(self.stdin(), "{line}").expect("write to child");
    }

    pub fn read_line(&mut self) -> String {
        let mut s = String::new();
        self.stdout.read_line(&mut s).expect("read child stdout");
        s
    }

    /// Waits for the exit and returns the killing signal, if any.
    pub fn wait_signal(&mut self) -> Option<i32> {
        use std::os::unix::process::ExitStatusExt;
        self.child.wait().expect("wait").signal()
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.join(file).display()))
        .trim()
        .to_string()
}

pub fn procs(dir: &Path) -> Vec<i32> {
    read(dir, "cgroup.procs")
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect()
}

/// How long a test waits for the kernel or a child process: generous, as tests run two at a
/// time on a loaded two-core machine.
const PATIENCE: Duration = Duration::from_secs(60);

/// Waits until `f` holds, for state changes the kernel makes asynchronously.
pub fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Clean-up's wait for the killed tasks of `mgr`'s cgroup to be gone, so it can be removed;
/// gives up quietly (the removal then reports the busy cgroup).
fn wait_until_empty(mgr: &CgroupManager) {
    let deadline = Instant::now() + PATIENCE;
    while mgr.pids().is_ok_and(|p| !p.is_empty()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn resources(json: serde_json::Value) -> oci_spec::runtime::LinuxResources {
    serde_json::from_value(json).expect("LinuxResources JSON")
}

/// Runs a shell loop that keeps rewriting a counter file inside the manager's cgroup, freezes
/// it, checks the counter stands still, thaws and checks it moves again.
pub fn assert_freeze_stops_and_thaw_resumes(mgr: &CgroupManager, tag: &str) {
    use berth_cgroups::FreezerState;
    let counter = std::env::temp_dir().join(format!("berth-test-{}-{tag}", std::process::id()));
    // The loop waits until the shell is in the cgroup: an `mv` forked before the move would
    // stay outside, and could still rename the file after the freeze on a busy host.
    let script = format!(
        "read go; i=0; while :; do i=$((i+1)); echo $i > {p}.tmp; mv {p}.tmp {p}; done",
        p = counter.display()
    );
    let mut kid = Kid::sh(&script);
    // Declared after `kid` so it is dropped first: it thaws and kills the loop, which a
    // failed assertion would otherwise leave frozen while `kid`'s drop waits for it.
    let _cleanup = CounterFiles {
        path: counter.clone(),
        mgr,
    };
    mgr.apply(kid.pid()).unwrap();
    kid.send_line("go");
    let count = || std::fs::read_to_string(&counter).unwrap_or_default();
    eventually("the loop to start", || !count().is_empty());
    assert_eq!(mgr.freezer_state().unwrap(), FreezerState::Thawed);
    mgr.freeze().expect("freeze");
    assert_eq!(mgr.freezer_state().unwrap(), FreezerState::Frozen);
    let frozen_at = count();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(count(), frozen_at, "a frozen process kept running");
    mgr.thaw().expect("thaw");
    assert_eq!(mgr.freezer_state().unwrap(), FreezerState::Thawed);
    eventually("the loop to resume", || count() != frozen_at);
}

/// Stops the counter loop (every task in the cgroup, including an in-flight `mv` that would
/// recreate the file) and then removes the counter files.
struct CounterFiles<'a> {
    path: std::path::PathBuf,
    mgr: &'a CgroupManager,
}

impl Drop for CounterFiles<'_> {
    fn drop(&mut self) {
        let _ = self.mgr.thaw();
        let _ = self.mgr.kill_all(libc::SIGKILL);
        wait_until_empty(self.mgr);
        let _ = std::fs::remove_file(&self.path);
        let _ = std::fs::remove_file(self.path.with_extension("tmp"));
    }
}
