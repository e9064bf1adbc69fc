//! berth-runtime's container lifecycle as a user of runc's command line sees
//! it: create/start/state/kill/delete/run/list/ps, and failure paths that must
//! leave nothing behind.

mod runtime_support;

use std::fs;
use std::path::Path;
use std::process::Stdio;

use berth_tests::{require_root, Bundle, TestEnv};
use runtime_support::*;
use serde_json::{json, Value};

#[test]
fn create_blocks_the_process_until_start() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-created");
    let bundle = writable_bundle(&env, &["sh", "-c", "echo ran > /ran; sleep 1000"]);
    let id = env.unique("c");
    create(&env, &bundle, &id);
    let s = state(&env, &id);
    assert_eq!(s["status"], "created");
    let marker = bundle.rootfs().join("ran");
    assert!(!marker.exists(), "the process ran before start");
    // The init exists and is blocked while created.
    let pid = s["pid"].as_i64().unwrap();
    assert!(Path::new(&format!("/proc/{pid}")).exists());

    rt_run(&env, &["start", &id]).assert_success();
    assert_eq!(wait_file(&marker), "ran\n");
    assert_eq!(state(&env, &id)["status"], "running");
    force_delete(&env, &id);
    assert_no_trace(&env, &bundle, &id);
}

#[test]
fn state_prints_runc_shaped_json() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-state");
    let bundle = Bundle::busybox(&env);
    bundle.args(&["sleep", "1000"]);
    bundle.edit_config(|c| c["annotations"] = json!({"org.berth.test": "yes"}));
    let id = env.unique("c");
    create(&env, &bundle, &id);
    let s = state(&env, &id);
    assert!(s["ociVersion"].as_str().unwrap().starts_with("1."), "{s}");
    assert_eq!(s["id"], id.as_str());
    assert!(s["pid"].as_i64().unwrap() > 1, "{s}");
    assert_eq!(s["status"], "created");
    let bundle_dir = fs::canonicalize(bundle.path()).unwrap();
    assert_eq!(s["bundle"], bundle_dir.to_str().unwrap(), "{s}");
    assert_eq!(
        s["rootfs"],
        bundle_dir.join("rootfs").to_str().unwrap(),
        "{s}"
    );
    // RFC 3339 with a date and a time.
    let created = s["created"].as_str().unwrap();
    assert!(created.len() >= 20 && created.contains('T'), "{s}");
    assert!(s["owner"].is_string(), "{s}");
    assert_eq!(s["annotations"]["org.berth.test"], "yes", "{s}");
    force_delete(&env, &id);
}

#[test]
fn run_propagates_exit_code_and_signal_death() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-exitcode");
    let bundle = Bundle::busybox(&env);
    bundle.args(&["sh", "-c", "echo out; echo err >&2; exit 3"]);
    let out = run_bundle(&env, &bundle, "three");
    out.assert_code(3);
    assert_eq!(out.stdout, "out\n");
    assert!(out.stderr.contains("err\n"), "{}", out.stderr);

    // Without a pid namespace the shell is not an init the kernel shields
    // from its own signals.
    bundle.edit_config(|c| {
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .retain(|n| n["type"] != "pid")
    });
    bundle.args(&["sh", "-c", "kill -TERM $$"]);
    run_bundle(&env, &bundle, "term").assert_code(128 + 15);
    bundle.args(&["sh", "-c", "kill -KILL $$"]);
    run_bundle(&env, &bundle, "kill").assert_code(128 + 9);
}

#[test]
fn foreground_run_removes_the_container() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-fg-gone");
    let bundle = Bundle::busybox(&env);
    bundle.args(&["true"]);
    let id = env.unique("c");
    run_as(&env, &bundle, &id).assert_success();
    assert_no_trace(&env, &bundle, &id);
    rt_run(&env, &["state", &id]).assert_failure();
}

#[test]
fn run_detach_kill_by_name_and_number_then_reaped_as_stopped() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-kill");
    let bundle = Bundle::busybox(&env);
    bundle.args(&["sleep", "1000"]);

    // TERM by name and number: kill_by_term_reaches_the_containers_trap.
    for (n, signal) in ["KILL", "SIGKILL", "9"].iter().enumerate() {
        let id = env.unique(&format!("k{n}"));
        run_detached(&env, &bundle, &id);
        assert_eq!(state(&env, &id)["status"], "running");
        let pid = init_pid(&env, &id);
        rt_run(&env, &["kill", &id, signal]).assert_success();
        wait_status(&env, &id, "stopped");
        // The init is reaped, not a zombie left for ever.
        wait_gone(pid, "the killed init");
        let out = rt_run(&env, &["kill", &id, "KILL"]);
        out.assert_failure();
        assert!(
            out.stderr.contains("not running") || out.stderr.contains("stopped"),
            "kill of a stopped container: {}",
            out.stderr
        );
        rt_run(&env, &["delete", &id]).assert_success();
        assert_no_trace(&env, &bundle, &id);
    }
}

#[test]
fn kill_with_a_bad_signal_names_it() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-badsig");
    let (_bundle, id) = running_container(&env);
    let out = rt_run(&env, &["kill", &id, "SIGNOPE"]);
    out.assert_failure_mentioning("SIGNOPE");
    assert_eq!(state(&env, &id)["status"], "running");
    force_delete(&env, &id);
}

#[test]
fn kill_all_signals_every_process() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-killall");
    let bundle = writable_bundle(
        &env,
        &["sh", "-c", "sleep 1000 & sleep 1000 & echo $! > /bg; wait"],
    );
    // Without a pid namespace killing the init would not take the others with it, so only
    // --all can stop the background sleep (whose pid inside is its host pid).
    bundle.edit_config(|c| {
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .retain(|n| n["type"] != "pid")
    });
    let id = env.unique("c");
    run_detached(&env, &bundle, &id);
    let bg: i32 = wait_file(&bundle.rootfs().join("bg"))
        .trim()
        .parse()
        .unwrap();
    rt_run(&env, &["kill", "--all", &id, "KILL"]).assert_success();
    wait_status(&env, &id, "stopped");
    wait_gone(bg, "the background process");
    rt_run(&env, &["delete", &id]).assert_success();
    assert_no_trace(&env, &bundle, &id);
}

#[test]
fn delete_of_running_needs_force() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-delete");
    let (bundle, id) = running_container(&env);
    let out = rt_run(&env, &["delete", &id]);
    out.assert_failure_mentioning("running");
    assert_eq!(state(&env, &id)["status"], "running");
    let pid = init_pid(&env, &id);
    force_delete(&env, &id);
    assert!(pid_gone(pid), "init {pid} survived delete --force");
    assert_no_trace(&env, &bundle, &id);
    let out = rt_run(&env, &["delete", &id]);
    out.assert_failure_mentioning(&id);
}

#[test]
fn delete_of_a_created_container_needs_force_and_never_runs_it() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-del-created");
    let bundle = writable_bundle(&env, &["sh", "-c", "echo ran > /ran"]);
    let id = env.unique("c");
    create(&env, &bundle, &id);
    let pid = init_pid(&env, &id);
    // runtime-spec (and the runtime-tools validation suite): deleting a
    // container that is not stopped is an error with no effect. runc itself
    // deletes a created container; containerd kills first either way.
    let out = rt_run(&env, &["delete", &id]);
    out.assert_failure_mentioning("created");
    assert_eq!(state(&env, &id)["status"], "created");
    force_delete(&env, &id);
    assert!(!bundle.rootfs().join("ran").exists(), "process ran");
    assert!(pid_gone(pid), "init {pid} survived delete");
    assert_no_trace(&env, &bundle, &id);
}

#[test]
fn list_and_ps_show_the_container() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-list");
    let bundle = writable_bundle(&env, &["sh", "-c", "sleep 1000 & wait"]);
    let id = env.unique("c");
    run_detached(&env, &bundle, &id);
    let pid = init_pid(&env, &id);

    let out = rt_run(&env, &["list", "-q"]);
    out.assert_success();
    assert_eq!(out.stdout.lines().collect::<Vec<_>>(), vec![id.as_str()]);

    let out = rt_run(&env, &["list"]);
    out.assert_success();
    let header = out.stdout.lines().next().unwrap();
    assert!(
        header.starts_with("ID") && header.contains("PID") && header.contains("STATUS"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains(&id) && out.stdout.contains("running"));

    let out = rt_run(&env, &["list", "--format", "json"]);
    out.assert_success();
    let list: Value = serde_json::from_str(&out.stdout).unwrap();
    let entry = &list.as_array().unwrap()[0];
    assert_eq!(entry["id"], id.as_str());
    assert_eq!(entry["pid"], pid);
    assert_eq!(entry["status"], "running");
    assert!(entry["bundle"].as_str().is_some() && entry["created"].as_str().is_some());

    // ps: the init and its sleeping child, as host pids.
    wait_until("the sleep child", || {
        let out = rt_run(&env, &["ps", "--format", "json", &id]);
        serde_json::from_str::<Value>(&out.stdout)
            .map(|v| v.as_array().map_or(0, Vec::len) == 2)
            .unwrap_or(false)
    });
    let out = rt_run(&env, &["ps", "--format", "json", &id]);
    let pids: Vec<i64> = serde_json::from_str::<Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_i64().unwrap())
        .collect();
    assert!(pids.contains(&(pid as i64)), "{pids:?} lacks init {pid}");
    let out = rt_run(&env, &["ps", &id]);
    out.assert_success();
    assert!(
        out.stdout.starts_with("UID") || out.stdout.contains("PID"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("sleep"), "{}", out.stdout);

    force_delete(&env, &id);
    let out = rt_run(&env, &["list", "-q"]);
    out.assert_success();
    assert_eq!(out.stdout, "");
    let out = rt_run(&env, &["list", "--format", "json"]);
    out.assert_success();
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert!(
        v.is_null() || v.as_array().is_some_and(Vec::is_empty),
        "{v}"
    );
}

#[test]
fn two_roots_never_see_each_others_containers() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-roots");
    let (bundle, id) = running_container(&env);
    let other = env.path().join("other-root");
    let other_root = other.to_str().unwrap();
    let other_rt = |args: &[&str]| {
        berth_tests::run(
            env.command(berth_tests::bin("berth-runtime"))
                .args(["--root", other_root])
                .args(args),
        )
    };
    let out = other_rt(&["list", "-q"]);
    out.assert_success();
    assert_eq!(out.stdout, "");
    // Refused as unknown, not for some other reason.
    other_rt(&["state", &id]).assert_failure_mentioning("does not exist");
    other_rt(&["kill", &id, "KILL"]).assert_failure_mentioning("does not exist");
    // The same id may exist under the other root.
    let bundle_path = bundle.path().to_str().unwrap();
    // The same id under the other root would share the default cgroup, so
    // the runtime refuses it rather than let one delete kill the other.
    let out = other_rt(&["run", "--detach", "--bundle", bundle_path, &id]);
    out.assert_failure_mentioning("in use");
    let other_id = format!("{id}b");
    other_rt(&["run", "--detach", "--bundle", bundle_path, &other_id]).assert_success();
    let out = other_rt(&["list", "-q"]);
    assert_eq!(out.stdout.trim(), other_id);
    let out = rt_run(&env, &["list", "-q"]);
    assert_eq!(out.stdout.trim(), id);
    other_rt(&["delete", "--force", &other_id]).assert_success();
    assert_eq!(state(&env, &id)["status"], "running");
    force_delete(&env, &id);
}

// ---- failure paths: each names the cause and leaves nothing behind ----

#[track_caller]
fn create_fails(env: &TestEnv, bundle: &Bundle, id: &str, expect_in_error: &[&str]) {
    let out = try_create(env, bundle, id);
    out.assert_failure();
    for e in expect_in_error {
        assert!(out.stderr.contains(e), "error lacks {e:?}: {}", out.stderr);
    }
    assert_no_trace(env, bundle, id);
    rt_run(env, &["state", id]).assert_failure();
}

#[test]
fn malformed_config_fails_cleanly() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-badjson");
    let bundle = Bundle::busybox(&env);
    fs::write(
        bundle.config_path(),
        "{\"ociVersion\": \"1.0.2\", \"process\": ",
    )
    .unwrap();
    create_fails(&env, &bundle, &env.unique("c"), &["config.json"]);
    // Valid JSON, wrong shape.
    bundle.set_config(&json!({"ociVersion": "1.0.2", "process": {"args": 5}}));
    create_fails(&env, &bundle, &env.unique("d"), &["config.json"]);
}

#[test]
fn missing_bundle_or_rootfs_fails_cleanly() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-norootfs");
    let bundle = Bundle::busybox(&env);
    fs::remove_dir_all(bundle.rootfs()).unwrap();
    create_fails(&env, &bundle, &env.unique("c"), &["rootfs"]);
    let nowhere = Bundle::at(env.path().join("no-such-bundle"));
    create_fails(&env, &nowhere, &env.unique("d"), &["no-such-bundle"]);
}

#[test]
fn bad_ids_are_refused() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-badid");
    let bundle = Bundle::busybox(&env);
    for id in ["../escape", "a/b", "", ".."] {
        let out = try_create(&env, &bundle, id);
        out.assert_failure();
        assert!(
            out.stderr.to_lowercase().contains("id"),
            "{id:?}: {}",
            out.stderr
        );
    }
    assert!(!env.path().join("run/escape").exists());
    let out = rt_run(&env, &["list", "-q"]);
    assert_eq!(out.stdout, "");
}

#[test]
fn duplicate_id_is_refused_and_the_first_survives() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-dupid");
    let (bundle, id) = running_container(&env);
    let pid = init_pid(&env, &id);
    let out = try_create(&env, &bundle, &id);
    out.assert_failure();
    assert!(
        out.stderr.contains(&id) && out.stderr.contains("exists"),
        "{}",
        out.stderr
    );
    let s = state(&env, &id);
    assert_eq!(s["status"], "running");
    assert_eq!(s["pid"], pid);
    assert!(
        !cgroups_named(&id).is_empty(),
        "the first container's cgroup went"
    );
    force_delete(&env, &id);
    assert_no_trace(&env, &bundle, &id);
}

#[test]
fn missing_executable_is_named_like_runc() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-noexe");
    let bundle = Bundle::busybox(&env);
    bundle.args(&["no-such-cmd", "arg"]);
    let id = env.unique("c");
    create_fails(
        &env,
        &bundle,
        &id,
        &["no-such-cmd", "executable file not found in $PATH"],
    );
    // An absolute path that does not exist names the path too.
    bundle.args(&["/bin/nope"]);
    let id = env.unique("d");
    create_fails(&env, &bundle, &id, &["/bin/nope"]);
    // `run` fails the same way.
    bundle.args(&["no-such-cmd"]);
    let id = env.unique("e");
    let out = run_as(&env, &bundle, &id);
    out.assert_failure_mentioning("no-such-cmd");
    assert_no_trace(&env, &bundle, &id);
}

#[test]
fn state_of_unknown_container_fails() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-unknown");
    let id = env.unique("ghost");
    for cmd in [
        vec!["state", id.as_str()],
        vec!["start", id.as_str()],
        vec!["kill", id.as_str(), "KILL"],
        vec!["delete", id.as_str()],
        vec!["ps", id.as_str()],
    ] {
        let out = rt_run(&env, &cmd);
        out.assert_failure_mentioning(&id);
    }
}

#[test]
fn start_twice_fails() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-start2");
    let bundle = Bundle::busybox(&env);
    bundle.args(&["sleep", "1000"]);
    let id = env.unique("c");
    create(&env, &bundle, &id);
    rt_run(&env, &["start", &id]).assert_success();
    let out = rt_run(&env, &["start", &id]);
    out.assert_failure_mentioning("cannot start an already running container");
    assert_eq!(state(&env, &id)["status"], "running");
    force_delete(&env, &id);
}

#[test]
fn create_pid_file_and_no_pivot() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-pidfile");
    let bundle = Bundle::busybox(&env);
    bundle.args(&["sh", "-c", "ls /; echo $$"]);
    let id = env.unique("c");
    let pid_file = env.path().join("init.pid");
    rt_run(
        &env,
        &[
            "create",
            "--no-pivot",
            "--pid-file",
            pid_file.to_str().unwrap(),
            "--bundle",
            bundle.path().to_str().unwrap(),
            &id,
        ],
    )
    .assert_success();
    let pid: i64 = fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(state(&env, &id)["pid"], pid);
    rt_run(&env, &["start", &id]).assert_success();
    wait_status(&env, &id, "stopped");
    rt_run(&env, &["delete", &id]).assert_success();
    assert_no_trace(&env, &bundle, &id);

    // --no-pivot still confines the container to its rootfs.
    let out = berth_tests::run(
        rt(&env)
            .args(["run", "--no-pivot", "--bundle"])
            .arg(bundle.path())
            .arg(env.unique("d")),
    );
    out.assert_success();
    let entries: Vec<&str> = out.stdout.lines().collect();
    assert!(
        entries.contains(&"bin") && !entries.contains(&"work"),
        "{}",
        out.stdout
    );
    assert_eq!(entries.last(), Some(&"1"));
}

/// A container whose shell traps TERM (printing "got TERM", writing /got, exiting 5) and
/// writes /ready once the trap is in place.
fn trapping_bundle(env: &TestEnv) -> Bundle {
    writable_bundle(
        env,
        &[
            "sh",
            "-c",
            "trap 'echo got TERM; echo TERM > /got; exit 5' TERM; touch /ready; while :; do sleep 0.1; done",
        ],
    )
}

#[test]
fn foreground_run_forwards_signals_to_the_container() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-fwdsig");
    let bundle = trapping_bundle(&env);
    let id = env.unique("c");
    let mut child = env.spawn(
        rt(&env)
            .args(["run", "--bundle"])
            .arg(bundle.path())
            .arg(&id)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped()),
    );
    wait_until("the container is ready", || {
        bundle.rootfs().join("ready").exists()
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
    assert_eq!(out, "got TERM\n");
    assert_eq!(status.code(), Some(5));
    assert_no_trace(&env, &bundle, &id);
}

#[test]
fn kill_defaults_to_sigterm() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-killterm");
    // No signal argument, then TERM by its names and number: each must reach the trap.
    for (n, signal) in [None, Some("TERM"), Some("SIGTERM"), Some("15")]
        .iter()
        .enumerate()
    {
        let bundle = trapping_bundle(&env);
        let id = env.unique(&format!("t{n}"));
        run_detached(&env, &bundle, &id);
        wait_until("the container is ready", || {
            bundle.rootfs().join("ready").exists()
        });
        let mut args = vec!["kill", id.as_str()];
        args.extend(signal.iter());
        rt_run(&env, &args).assert_success();
        wait_status(&env, &id, "stopped");
        assert_eq!(
            wait_file(&bundle.rootfs().join("got")).trim(),
            "TERM",
            "{signal:?}"
        );
        rt_run(&env, &["delete", &id]).assert_success();
    }
}

#[test]
fn init_killed_behind_the_runtimes_back_shows_stopped() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-extkill");
    let (bundle, id) = running_container(&env);
    let pid = init_pid(&env, &id);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_status(&env, &id, "stopped");
    rt_run(&env, &["kill", &id, "KILL"]).assert_failure_mentioning("not running");
    rt_run(&env, &["delete", &id]).assert_success();
    assert_no_trace(&env, &bundle, &id);
}

#[test]
fn delete_force_without_a_pid_namespace_kills_every_process() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-nopidns");
    let bundle = writable_bundle(&env, &["sh", "-c", "sleep 1000 & echo $! > /child; wait"]);
    bundle.edit_config(|c| {
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .retain(|n| n["type"] != "pid")
    });
    let id = env.unique("c");
    run_detached(&env, &bundle, &id);
    // Without a pid namespace the child's pid inside is its host pid.
    let child: i32 = wait_file(&bundle.rootfs().join("child"))
        .trim()
        .parse()
        .unwrap();
    assert!(!pid_gone(child));
    // Killing the init alone would leave the child running: delete must not.
    force_delete(&env, &id);
    wait_gone(child, "the container's child");
    assert_no_trace(&env, &bundle, &id);
}

#[test]
fn corrupt_state_is_named_and_delete_force_frees_the_id() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-corrupt");
    let bundle = Bundle::busybox(&env);
    bundle.args(&["true"]);
    let id = env.unique("c");
    create(&env, &bundle, &id);
    force_delete(&env, &id);
    // A torn state.json, as a crash or a full disk could leave one.
    let dir = env.run().join("runtime").join(&id);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("state.json"), "{\"id\": \"trunc").unwrap();

    let out = rt_run(&env, &["state", &id]);
    out.assert_failure_mentioning("state.json");
    let out = rt_run(&env, &["list"]);
    out.assert_success();
    assert!(
        out.stderr.contains("state.json"),
        "list warns: {}",
        out.stderr
    );
    rt_run(&env, &["delete", &id]).assert_failure();
    let out = rt_run(&env, &["delete", "--force", &id]);
    out.assert_success();
    assert!(!dir.exists());
    // The id is usable again.
    create(&env, &bundle, &id);
    force_delete(&env, &id);
    assert_no_trace(&env, &bundle, &id);
}

#[test]
fn init_killed_during_create_fails_create_naming_the_container_and_leaves_nothing() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-initdies");
    let bundle = Bundle::busybox(&env);
    bundle.args(&["true"]);
    // A createRuntime hook kills the init while create waits for it.
    bundle.edit_config(|c| {
        c["hooks"] = json!({"createRuntime": [{
            "path": "/bin/sh",
            "args": ["sh", "-c", "kill -9 $(sed 's/.*\"pid\":\\([0-9]*\\).*/\\1/')"]
        }]})
    });
    let id = env.unique("c");
    let out = try_create(&env, &bundle, &id);
    out.assert_failure();
    assert!(
        out.stderr.contains(&id) && out.stderr.contains("init exited"),
        "{}",
        out.stderr
    );
    assert_no_trace(&env, &bundle, &id);
}

#[test]
fn create_on_a_full_disk_fails_naming_the_file_and_leaves_nothing() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-fulldisk");
    let bundle = Bundle::busybox(&env);
    bundle.args(&["true"]);
    // The state root on a tiny tmpfs, filled up (the harness unmounts it).
    let root = env.run().join("runtime");
    fs::create_dir_all(&root).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        &root,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("size=8k"),
    )
    .unwrap();
    let filler = root.join("filler");
    let _ = fs::write(&filler, vec![0u8; 64 * 1024]);
    let id = env.unique("c");
    let out = try_create(&env, &bundle, &id);
    out.assert_failure();
    assert!(
        out.stderr.contains("state.json") && out.stderr.contains("No space left"),
        "{}",
        out.stderr
    );
    assert_no_trace(&env, &bundle, &id);
    // Room again: the same id works.
    fs::remove_file(&filler).unwrap();
    create(&env, &bundle, &id);
    force_delete(&env, &id);
    nix::mount::umount(&root).unwrap();
}

/// Starts a foreground `berth-runtime run` of `bundle` as `id`, waits until `reached` holds,
/// then SIGKILLs the runtime (not the container) and reaps it.
fn sigkill_foreground_run(env: &TestEnv, bundle: &Bundle, id: &str, reached: impl FnMut() -> bool) {
    let mut runtime = env.spawn(
        rt(env)
            .args(["run", "--bundle", bundle.path().to_str().unwrap(), id])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    wait_until(
        &format!("{id} reaches the point to kill the runtime at"),
        reached,
    );
    runtime.kill().expect("SIGKILL the runtime");
    runtime.wait().expect("reap the runtime");
}

/// `delete --force` of a container whose runtime was killed removes it entirely, and the
/// id is free again.
#[track_caller]
fn assert_force_delete_leaves_nothing(env: &TestEnv, bundle: &Bundle, id: &str) {
    rt_run(env, &["delete", "--force", id]).assert_success();
    assert_no_trace(env, bundle, id);
    let out = rt_run(env, &["state", id]);
    out.assert_failure_mentioning("does not exist");
    assert!(!rt_run(env, &["list", "-q"]).stdout.contains(id));
}

#[test]
fn runtime_sigkilled_while_running_the_container_leaves_it_running_until_delete_force() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-kill-runtime");
    let bundle = Bundle::busybox(&env);
    bundle.args(&["sleep", "1000"]);
    let id = env.unique("c");
    sigkill_foreground_run(&env, &bundle, &id, || {
        try_state(&env, &id).is_ok_and(|s| s["status"] == "running")
    });
    // As with runc, the container does not depend on the runtime that started it.
    let s = state(&env, &id);
    assert_eq!(s["status"], "running", "{s}");
    let pid = s["pid"].as_i64().expect("state has a pid") as i32;
    assert!(!pid_gone(pid), "init {pid} died with the runtime");
    assert_force_delete_leaves_nothing(&env, &bundle, &id);
    assert!(pid_gone(pid), "init {pid} survived delete --force");
}

/// Kills the process whose pid is in `file` when dropped (the hook the runtime can no longer
/// time out once it is dead), also when the test fails.
struct KillPidFrom(std::path::PathBuf);

impl Drop for KillPidFrom {
    fn drop(&mut self) {
        let pid = fs::read_to_string(&self.0)
            .ok()
            .and_then(|p| p.trim().parse().ok());
        if let Some(pid) = pid {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

#[test]
fn runtime_sigkilled_during_create_leaves_a_stopped_container_that_delete_force_removes() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-kill-creating");
    let bundle = Bundle::busybox(&env);
    bundle.args(&["true"]);
    // The runtime is killed while it runs a createRuntime hook: its init exists, in its
    // cgroup, half set up and waiting for the runtime.
    let hook_pid = env.path().join("hook.pid");
    let _hook = KillPidFrom(hook_pid.clone());
    let p = hook_pid.display().to_string();
    bundle.edit_config(move |c| {
        c["hooks"] = json!({"createRuntime": [{
            "path": "/bin/sh",
            "args": ["sh", "-c", format!("echo $$ > {p}; exec sleep 1000")]
        }]})
    });
    let id = env.unique("c");
    let mut init = 0;
    sigkill_foreground_run(&env, &bundle, &id, || {
        if !hook_pid.exists() {
            return false;
        }
        // Seen while the runtime waits for the hook: created, with the init's pid.
        init = state(&env, &id)["pid"].as_i64().expect("state has a pid") as i32;
        true
    });
    // The init notices its runtime is gone and leaves; the container is then stopped.
    wait_gone(init, "the init of a container whose runtime was killed");
    let s = wait_status(&env, &id, "stopped");
    assert_eq!(s["pid"], 0, "{s}");
    assert!(
        rt_run(&env, &["list", "-q"]).stdout.contains(&id),
        "list does not show the stopped container"
    );
    assert_force_delete_leaves_nothing(&env, &bundle, &id);
}
