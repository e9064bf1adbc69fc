//! berth-runtime on the busybox fixture: the README's demo, and the harness
//! cleaning up after a berth-runtime container left running.

mod runtime_support;

use berth_tests::{bin, require_root, run, Bundle, TestEnv};
use runtime_support::pid_gone;
use serde_json::Value;

#[test]
fn busybox_bundle_prints_hello_under_berth_runtime() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("demo");
    let bundle = Bundle::busybox(&env);
    let out = run(env
        .oci_runtime(bin("berth-runtime"))
        .args(["run", "--bundle"])
        .arg(bundle.path())
        .arg(env.unique("demo")));
    out.assert_success();
    assert_eq!(out.stdout, "hello from busybox\n");
}

#[test]
fn env_drop_removes_a_berth_runtime_container_left_running() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("detached-berth");
    let bundle = Bundle::busybox(&env);
    bundle.args(&["sleep", "1000"]);
    let id = env.unique("sleeper");
    run(env
        .oci_runtime(bin("berth-runtime"))
        .args(["run", "-d", "--bundle"])
        .arg(bundle.path())
        .arg(&id))
    .assert_success();
    let state = run(env.oci_runtime(bin("berth-runtime")).args(["state", &id]));
    state.assert_success();
    let pid = serde_json::from_str::<Value>(&state.stdout)
        .unwrap_or_else(|e| panic!("state is not JSON ({e}): {:?}", state.stdout))["pid"]
        .as_i64()
        .expect("state has a pid");
    let dir = env.path().to_path_buf();

    drop(env);

    assert!(
        pid_gone(pid as i32),
        "container init {pid} still running after clean-up"
    );
    assert!(!dir.exists(), "{} still exists", dir.display());
    let left = run(std::process::Command::new("find").args(["/sys/fs/cgroup", "-name", &id]));
    assert!(
        left.stdout.trim().is_empty(),
        "cgroups left: {}",
        left.stdout
    );
}
