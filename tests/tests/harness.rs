//! Tests of the harness itself: clean-up, fixtures, command running.

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::panic;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::thread;
use std::time::Duration;

use berth_tests::{
    features, fixtures, has_cmd, require_root, run, run_timeout, run_with_input, Bundle, TestEnv,
};
use serde_json::Value;

#[test]
fn env_gives_private_roots_and_unique_names() {
    let a = TestEnv::new("roots-a");
    let b = TestEnv::new("roots-b");
    assert!(a.root().is_dir() && a.run().is_dir());
    assert!(a.root().starts_with(a.path()) && a.run().starts_with(a.path()));
    assert_ne!(a.path(), b.path());
    assert_ne!(a.unique("web"), b.unique("web"));
    assert!(a.unique("web").starts_with(a.prefix()));
    // Interface names are at most 15 bytes; leave room for a short suffix.
    assert!(a.prefix().len() <= 10, "prefix {} too long", a.prefix());

    let out = run(a.command("sh").args(["-c", "echo $BERTH_ROOT $BERTH_RUN"]));
    out.assert_success();
    assert_eq!(
        out.stdout.trim(),
        format!("{} {}", a.root().display(), a.run().display())
    );
}

#[test]
fn dropping_env_removes_its_dir() {
    let env = TestEnv::new("drop-dir");
    let dir = env.path().to_path_buf();
    fs::write(env.root().join("file"), "x").unwrap();
    drop(env);
    assert!(!dir.exists(), "{} still exists", dir.display());
}

#[test]
fn run_captures_output_and_exit_code() {
    let out = run(Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]));
    assert_eq!(out.stdout, "out\n");
    assert_eq!(out.stderr, "err\n");
    assert_eq!(out.code(), Some(3));
    out.assert_failure().assert_code(3);
    assert!(!out.success());
}

#[test]
fn run_feeds_stdin() {
    let out = run_with_input(
        &mut Command::new("cat"),
        b"piped\n",
        Duration::from_secs(30),
    );
    out.assert_success();
    assert_eq!(out.stdout, "piped\n");
}

#[test]
fn run_kills_a_command_that_outlives_its_timeout() {
    // The background sleep is a grandchild: the whole process group must go.
    let out = run_timeout(
        Command::new("sh").args(["-c", "sleep 1000 & echo $!; exec sleep 1000"]),
        Duration::from_secs(2),
    );
    assert!(out.timed_out, "{out:?}");
    assert!(!out.success());
    let grandchild: i32 = out
        .stdout
        .trim()
        .parse()
        .expect("the shell printed its child's pid");
    // SIGKILL is delivered at once, but the exit itself may lag a moment.
    let mut stat = String::new();
    for _ in 0..500 {
        stat = fs::read_to_string(format!("/proc/{grandchild}/stat")).unwrap_or_default();
        if stat.is_empty() || stat.contains(") Z") {
            return;
        }
        thread::sleep(Duration::from_millis(10));
    }
    panic!("grandchild {grandchild} still running: {stat}");
}

#[test]
fn run_returns_when_a_background_child_keeps_the_pipes_open() {
    let env = TestEnv::new("bg-pipes");
    // The daemon inherits stdout; run must not wait for it to close.
    let out = run_timeout(
        env.command("sh").args(["-c", "sleep 1000 & echo started"]),
        Duration::from_secs(30),
    );
    out.assert_success();
    assert_eq!(out.stdout, "started\n");
}

#[test]
#[should_panic(expected = "expected success")]
fn assert_success_reports_the_failure() {
    run(&mut Command::new("false")).assert_success();
}

#[test]
#[should_panic(expected = "cannot start")]
fn run_reports_a_missing_program() {
    run(&mut Command::new("/nonexistent/berth-no-such-program"));
}

#[test]
#[should_panic(expected = "not built")]
fn bin_reports_a_missing_binary() {
    berth_tests::bin("berth-no-such-binary");
}

#[test]
fn has_cmd_finds_programs_on_path() {
    assert!(has_cmd("sh"));
    assert!(!has_cmd("berth-no-such-command"));
}

/// What a test that panicked had made, handed out through its panic.
struct Left {
    prefix: String,
    dir: PathBuf,
    children: Vec<Child>,
}

/// Runs `body` with a fresh env; `body` panics with a `T` (a [`Left`]) after
/// making things, so the caller can check that clean-up happened anyway.
fn panic_inside_env<T: 'static>(body: impl FnOnce(&TestEnv) + panic::UnwindSafe) -> T {
    let result = panic::catch_unwind(|| {
        let env = TestEnv::new("panics");
        body(&env);
    });
    let err = result.expect_err("the body must panic");
    match err.downcast::<T>() {
        Ok(left) => *left,
        // The body failed before its deliberate panic: show that failure.
        Err(other) => panic::resume_unwind(other),
    }
}

/// The hierarchies this host has of v1 pids, v1 freezer and cgroup2 (a v2-only host has
/// only the last, a v1-only one only the first two).
fn cgroup_roots() -> Vec<PathBuf> {
    [
        features::v1_controller("pids"),
        features::v1_controller("freezer"),
        features::cgroup2_mount(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Where a frozen cgroup goes and how it is frozen: the v1 freezer, else cgroup2's
/// cgroup.freeze.
fn freezer() -> (PathBuf, &'static str, &'static str) {
    match features::v1_controller("freezer") {
        Some(root) => (root, "freezer.state", "FROZEN"),
        None => (
            features::cgroup2_mount().expect("a freezer: v1 or cgroup2"),
            "cgroup.freeze",
            "1",
        ),
    }
}

#[test]
fn cleanup_runs_on_panic() {
    if !require_root() {
        return;
    }
    let mut left: Left = panic_inside_env(|env| {
        // A daemon the test started.
        let daemon = env.spawn(Command::new("sleep").arg("1000"));
        // A mount, stacked twice, and a nested one.
        let mnt = env.path().join("mnt");
        fs::create_dir_all(&mnt).unwrap();
        run(Command::new("mount").args(["-t", "tmpfs", "t1"]).arg(&mnt)).assert_success();
        run(Command::new("mount").args(["-t", "tmpfs", "t2"]).arg(&mnt)).assert_success();
        fs::create_dir(mnt.join("inner")).unwrap();
        run(Command::new("mount")
            .args(["-t", "tmpfs", "t3"])
            .arg(mnt.join("inner")))
        .assert_success();
        // Nested cgroups in v1 hierarchies and in cgroup2 holding the daemon.
        let name = env.unique("cg");
        for root in cgroup_roots() {
            let cg = root.join(&name).join("child");
            if fs::create_dir_all(&cg).is_ok() {
                fs::write(cg.join("cgroup.procs"), daemon.id().to_string()).unwrap();
            }
        }
        // An unmarked process found only through its frozen cgroup.
        let frozen = Command::new("sleep").arg("1000").spawn().unwrap();
        let (root, file, value) = freezer();
        let fcg = root.join(env.unique("frozen"));
        fs::create_dir(&fcg).unwrap();
        fs::write(fcg.join("cgroup.procs"), frozen.id().to_string()).unwrap();
        fs::write(fcg.join(file), value).unwrap();
        // containerd-shim-runc-v2's runc state for a namespace of the test.
        let shim_state = PathBuf::from("/run/containerd/runc")
            .join(env.unique("ns"))
            .join("c1");
        fs::create_dir_all(&shim_state).unwrap();
        fs::write(shim_state.join("state.json"), "{}").unwrap();
        // Network objects.
        if berth_tests::require_cmds(&["ip"]) {
            run(Command::new("ip").args(["netns", "add", &env.unique("ns")])).assert_success();
            run(Command::new("ip").args([
                "link",
                "add",
                &env.unique("v0"),
                "type",
                "veth",
                "peer",
                "name",
                &env.unique("v1"),
            ]))
            .assert_success();
        }
        if berth_tests::require_cmds(&["nft"]) {
            run(Command::new("nft").args(["add", "table", "inet", &env.unique("t")]))
                .assert_success();
        }
        panic::panic_any(Left {
            prefix: env.prefix().to_string(),
            dir: env.path().to_path_buf(),
            children: vec![daemon, frozen],
        });
    });
    let prefix = &left.prefix;

    for child in &mut left.children {
        let status = child.wait().unwrap();
        assert_eq!(
            status.signal(),
            Some(9),
            "child {} was not killed: {status:?}",
            child.id()
        );
    }
    assert!(!left.dir.exists(), "{} still exists", left.dir.display());
    let shim_state = PathBuf::from(format!("/run/containerd/runc/{prefix}-ns"));
    assert!(
        !shim_state.exists(),
        "{} still exists",
        shim_state.display()
    );
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(prefix.as_str()), "mounts left:\n{mounts}");
    let mut cgroups: Vec<PathBuf> = cgroup_roots()
        .iter()
        .map(|r| r.join(format!("{prefix}-cg")))
        .collect();
    cgroups.push(freezer().0.join(format!("{prefix}-frozen")));
    for cg in &cgroups {
        assert!(!cg.exists(), "cgroup {} still exists", cg.display());
    }
    if berth_tests::require_cmds(&["ip"]) {
        let ns = run(Command::new("ip").args(["netns", "list"]));
        assert!(
            !ns.stdout.contains(prefix.as_str()),
            "netns left: {}",
            ns.stdout
        );
        let links = run(Command::new("ip").args(["-o", "link", "show"]));
        assert!(
            !links.stdout.contains(prefix.as_str()),
            "links left: {}",
            links.stdout
        );
    }
    if berth_tests::require_cmds(&["nft"]) {
        let tables = run(Command::new("nft").args(["list", "tables"]));
        assert!(
            !tables.stdout.contains(prefix.as_str()),
            "nft tables left: {}",
            tables.stdout
        );
    }
}

/// Starts `bundle` detached under runc as `id`, then panics out of the env (see
/// [`panic_inside_env`]) with what it left and the container init's host pid.
fn leave_runc_container_running(env: &TestEnv, bundle: &Bundle, id: &str) -> ! {
    run(env
        .oci_runtime("runc")
        .args(["run", "-d", "--bundle"])
        .arg(bundle.path())
        .arg(id))
    .assert_success();
    let state = run(env.oci_runtime("runc").args(["state", id]));
    state.assert_success();
    let pid = serde_json::from_str::<Value>(&state.stdout)
        .unwrap_or_else(|e| panic!("state is not JSON ({e}): {:?}", state.stdout))["pid"]
        .as_i64()
        .expect("state has a pid");
    panic::panic_any((
        Left {
            prefix: env.prefix().to_string(),
            dir: env.path().to_path_buf(),
            children: Vec::new(),
        },
        pid as i32,
    ));
}

/// Asserts the container init `pid` is gone (or a zombie its reaper has yet to collect).
#[track_caller]
fn assert_init_gone(pid: i32) {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    assert!(
        stat.is_empty() || stat.contains(") Z"),
        "container init {pid} still running: {stat}"
    );
}

#[test]
fn cleanup_kills_a_detached_container_left_running() {
    if !require_root() || !berth_tests::require_cmds(&["runc"]) {
        return;
    }
    let (left, pid): (Left, i32) = panic_inside_env(|env| {
        let bundle = Bundle::busybox(env);
        bundle.args(&["sleep", "1000"]);
        leave_runc_container_running(env, &bundle, &env.unique("detached"));
    });
    assert_init_gone(pid);
    assert!(!left.dir.exists(), "{} still exists", left.dir.display());
    for root in cgroup_roots() {
        let leftovers: Vec<_> = fs::read_dir(&root)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(&format!("{}-", left.prefix)))
            .collect();
        assert!(
            leftovers.is_empty(),
            "cgroups left in {}: {leftovers:?}",
            root.display()
        );
    }
}

#[test]
fn cleanup_removes_the_cgroup_of_a_container_named_by_someone_else() {
    if !require_root() || !berth_tests::require_cmds(&["runc"]) {
        return;
    }
    // Like dockerd's /docker/<id>: a cgroup path without the test's prefix.
    let cgroup = format!("berthforeign{}", std::process::id());
    let cgroups_path = format!("/{cgroup}");
    let (left, pid): (Left, i32) = panic_inside_env(move |env| {
        let bundle = Bundle::busybox(env);
        bundle.args(&["sleep", "1000"]);
        bundle.edit_config(|c| c["linux"]["cgroupsPath"] = Value::from(cgroups_path));
        leave_runc_container_running(env, &bundle, &env.unique("foreign"));
    });
    assert_init_gone(pid);
    assert!(!left.dir.exists());
    for root in cgroup_roots() {
        let cg = root.join(&cgroup);
        assert!(!cg.exists(), "cgroup {} still exists", cg.display());
    }
}

#[test]
fn cleanup_report_is_clean_for_an_unused_env() {
    let mut env = TestEnv::new("unused");
    let report = env.cleanup();
    assert!(report.is_clean(), "{report}");
}

#[test]
fn busybox_bundle_is_a_private_editable_copy() {
    let env = TestEnv::new("bundle");
    let a = Bundle::busybox(&env);
    let b = Bundle::busybox(&env);
    assert_ne!(a.path(), b.path());
    assert!(a.path().starts_with(env.path()));
    assert_eq!(
        fs::read_link(a.rootfs().join("bin/sh")).unwrap(),
        PathBuf::from("/bin/busybox")
    );
    assert_eq!(a.config()["process"]["args"][2], "echo hello from busybox");

    a.args(&["true"]);
    assert_eq!(a.config()["process"]["args"], serde_json::json!(["true"]));
    assert_eq!(
        b.config()["process"]["args"][0],
        "sh",
        "copies are independent"
    );
    a.edit_config(|c| c["hostname"] = Value::from("edited"));
    assert_eq!(a.config()["hostname"], "edited");
    let fixture: Value =
        serde_json::from_str(&fs::read_to_string(fixtures().join("busybox/config.json")).unwrap())
            .unwrap();
    assert_eq!(
        fixture["process"]["args"][0], "sh",
        "the fixture itself is untouched"
    );
}
