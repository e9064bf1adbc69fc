//! Shared steps of the berth-runtime end-to-end tests: the runtime command,
//! polling its state, and checking that a container left nothing behind.

#![allow(dead_code)] // each test file uses a different subset

use std::fs;
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use berth_tests::{bin, run, Bundle, Output, TestEnv};
use serde_json::Value;

/// How long a poll waits for the runtime to reach a state; generous because
/// six agents share two cores.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// `berth-runtime --root <env>/run/runtime`.
pub fn rt(env: &TestEnv) -> Command {
    env.oci_runtime(bin("berth-runtime"))
}

/// Runs `berth-runtime ARGS...`.
pub fn rt_run(env: &TestEnv, args: &[&str]) -> Output {
    run(rt(env).args(args))
}

/// A busybox bundle with a writable rootfs (runc's default spec makes it
/// read-only) running `args`.
pub fn writable_bundle(env: &TestEnv, args: &[&str]) -> Bundle {
    let bundle = Bundle::busybox(env);
    bundle.args(args);
    bundle.edit_config(|c| c["root"]["readonly"] = Value::Bool(false));
    bundle
}

/// Host uid and gid that container root maps to in [`userns_bundle`].
pub const USERNS_HOST_ID: u32 = 100_000;

/// A [`writable_bundle`] in its own user namespace, container ids 0..65536 mapped to host
/// ids from [`USERNS_HOST_ID`], and its rootfs owned by the mapped root so that it is usable.
#[track_caller]
pub fn userns_bundle(env: &TestEnv, args: &[&str]) -> Bundle {
    let bundle = writable_bundle(env, args);
    run(Command::new("chown")
        .arg("-R")
        .arg(format!("{USERNS_HOST_ID}:{USERNS_HOST_ID}"))
        .arg(bundle.rootfs()))
    .assert_success();
    bundle.edit_config(|c| {
        c["linux"]["namespaces"]
            .as_array_mut()
            .expect("namespaces array")
            .push(serde_json::json!({"type": "user"}));
        let m = serde_json::json!([{"containerID": 0, "hostID": USERNS_HOST_ID, "size": 65536}]);
        c["linux"]["uidMappings"] = m.clone();
        c["linux"]["gidMappings"] = m;
    });
    bundle
}

/// Runs the bundle in the foreground as `id` and returns the output.
pub fn run_as(env: &TestEnv, bundle: &Bundle, id: &str) -> Output {
    let bundle_path = bundle.path().to_str().expect("utf-8 temp path");
    rt_run(env, &["run", "--bundle", bundle_path, id])
}

/// Runs the bundle in the foreground as `env.unique(name)` and returns the output.
pub fn run_bundle(env: &TestEnv, bundle: &Bundle, name: &str) -> Output {
    run_as(env, bundle, &env.unique(name))
}

/// Runs `sh -c script` in a fresh busybox container (after `edit` changes the
/// config) and returns its output, asserting it exited 0.
#[track_caller]
pub fn sh_in(env: &TestEnv, script: &str, edit: impl FnOnce(&mut Value)) -> String {
    let bundle = writable_bundle(env, &["sh", "-c", script]);
    bundle.edit_config(edit);
    let out = run_bundle(env, &bundle, "sh");
    out.assert_success();
    out.stdout
}

/// Runs `create` and returns its output, for creates that must fail.
pub fn try_create(env: &TestEnv, bundle: &Bundle, id: &str) -> Output {
    let bundle_path = bundle.path().to_str().expect("utf-8 temp path");
    rt_run(env, &["create", "--bundle", bundle_path, id])
}

/// `create` then nothing else: the container is left `created`.
#[track_caller]
pub fn create(env: &TestEnv, bundle: &Bundle, id: &str) {
    try_create(env, bundle, id).assert_success();
}

/// `run --detach`: the container is left running.
#[track_caller]
pub fn run_detached(env: &TestEnv, bundle: &Bundle, id: &str) {
    let bundle_path = bundle.path().to_str().expect("utf-8 temp path");
    rt_run(env, &["run", "--detach", "--bundle", bundle_path, id]).assert_success();
}

/// A container left running `sleep 1000` (writable rootfs, for execs that write) under a
/// fresh id.
#[track_caller]
pub fn running_container(env: &TestEnv) -> (Bundle, String) {
    let bundle = writable_bundle(env, &["sleep", "1000"]);
    let id = env.unique("c");
    run_detached(env, &bundle, &id);
    (bundle, id)
}

/// `delete --force`, which must succeed.
#[track_caller]
pub fn force_delete(env: &TestEnv, id: &str) {
    rt_run(env, &["delete", "--force", id]).assert_success();
}

/// The `state` JSON of a container.
#[track_caller]
pub fn state(env: &TestEnv, id: &str) -> Value {
    try_state(env, id).unwrap_or_else(|e| panic!("{e}"))
}

/// The `state` JSON of a container, or why there is none.
pub fn try_state(env: &TestEnv, id: &str) -> Result<Value, String> {
    let out = rt_run(env, &["state", id]);
    if !out.success() {
        return Err(format!("state {id} failed: {}", out.stderr.trim()));
    }
    serde_json::from_str(&out.stdout)
        .map_err(|e| format!("state {id}: not JSON ({e}): {}", out.stdout))
}

/// The container init's host pid.
#[track_caller]
pub fn init_pid(env: &TestEnv, id: &str) -> i32 {
    state(env, id)["pid"].as_i64().expect("state has a pid") as i32
}

/// How long a poll sleeps between two looks.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// The one polling loop of the runtime tests: calls `check` until it returns `Ok`, or until
/// `timeout` has passed, then hands back its last `Err`. For callers that must not panic
/// (a `Drop`); everyone else uses [`wait_for`].
pub fn poll<T>(
    timeout: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> Result<T, String> {
    let deadline = Instant::now() + timeout;
    loop {
        match check() {
            Ok(v) => return Ok(v),
            Err(last) if Instant::now() >= deadline => return Err(last),
            Err(_) => thread::sleep(POLL_INTERVAL),
        }
    }
}

/// Polls `check` until it returns `Ok`; panics with `what` and the last failure once
/// `timeout` has passed.
#[track_caller]
pub fn wait_for<T>(what: &str, timeout: Duration, check: impl FnMut() -> Result<T, String>) -> T {
    poll(timeout, check)
        .unwrap_or_else(|last| panic!("{what}: not reached within {timeout:?}; last: {last}"))
}

/// Polls until `check` holds, panicking with `what` after [`PATIENCE`].
#[track_caller]
pub fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    wait_for(what, PATIENCE, || {
        check()
            .then_some(())
            .ok_or_else(|| "still false".to_string())
    })
}

/// Polls `state` until `status` shows (a container that does not exist yet counts as not
/// there yet), panicking after [`PATIENCE`].
#[track_caller]
pub fn wait_status(env: &TestEnv, id: &str, status: &str) -> Value {
    wait_for(&format!("{id} becomes {status}"), PATIENCE, || {
        let s = try_state(env, id)?;
        if s["status"] == status {
            Ok(s)
        } else {
            Err(format!("state {s}"))
        }
    })
}

/// Polls until `path` exists and is not empty (a file the container writes) and returns its
/// text, panicking after [`PATIENCE`].
#[track_caller]
pub fn wait_file(path: &Path) -> String {
    wait_for(
        &format!("{} written", path.display()),
        PATIENCE,
        || match fs::read_to_string(path) {
            Ok(text) if !text.is_empty() => Ok(text),
            Ok(_) => Err("empty".to_string()),
            Err(e) => Err(e.to_string()),
        },
    )
}

/// Whether process `pid` is gone or only a zombie waiting for its parent.
pub fn pid_gone(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| s.contains(") Z"))
}

/// Polls until process `pid` is gone (or a zombie), panicking after [`PATIENCE`].
#[track_caller]
pub fn wait_gone(pid: i32, what: &str) {
    wait_until(&format!("{what} (pid {pid}) gone"), || pid_gone(pid));
}

/// Cgroup directories anywhere under /sys/fs/cgroup whose name contains `name`.
pub fn cgroups_named(name: &str) -> Vec<String> {
    let out = run(Command::new("find")
        .args(["/sys/fs/cgroup", "-type", "d", "-name"])
        .arg(format!("*{name}*")));
    out.stdout.lines().map(str::to_string).collect()
}

/// Lines of the host's mountinfo that mention `needle`.
pub fn mounts_mentioning(needle: &str) -> Vec<String> {
    fs::read_to_string("/proc/self/mountinfo")
        .expect("read /proc/self/mountinfo")
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect()
}

/// Asserts that container `id` (from `bundle`) left no state dir in the
/// `--root`, no cgroup and no mount on the host.
#[track_caller]
pub fn assert_no_trace(env: &TestEnv, bundle: &Bundle, id: &str) {
    let root = env.run().join("runtime");
    let state_dir = root.join(id);
    assert!(
        !state_dir.exists(),
        "state dir {} left behind",
        state_dir.display()
    );
    let cgroups = cgroups_named(id);
    assert!(cgroups.is_empty(), "cgroups left behind: {cgroups:?}");
    let mounts = mounts_mentioning(bundle.path().to_str().unwrap());
    assert!(mounts.is_empty(), "mounts left behind: {mounts:?}");
    let mounts = mounts_mentioning(id);
    assert!(mounts.is_empty(), "mounts left behind: {mounts:?}");
}

/// Lines of `/proc/<pid>/status` starting with `key:`, value trimmed.
pub fn proc_status(text: &str, key: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no {key} in status:\n{text}"))
        .trim()
        .to_string()
}

/// Assert every controller line of a `/proc/<pid>/cgroup` text names `cg`.
#[track_caller]
pub fn assert_in_cgroup(proc_cgroup: &str, cg: &str) {
    let lines: Vec<&str> = proc_cgroup
        .lines()
        // Named hierarchies (name=systemd) carry no controller; the runtime leaves them.
        .filter(|l| !l.contains(":name="))
        .collect();
    assert!(!lines.is_empty(), "no cgroup lines in {proc_cgroup:?}");
    for l in lines {
        assert_eq!(l.rsplit_once(':').unwrap().1, cg, "{proc_cgroup}");
    }
}
