//! OCI hooks: each kind runs once, in order, with the container state on
//! stdin; a failing or hanging hook fails the operation and leaves nothing.

mod runtime_support;

use std::fs;

use berth_tests::{require_root, TestEnv};
use runtime_support::*;
use serde_json::{json, Value};

const KINDS: [&str; 6] = [
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

/// A hook that appends its kind to `<dir>/hooklog` and saves its stdin as
/// `<dir>/<kind>.json`. `dir` is a path as the hook sees it.
fn recording_hook(kind: &str, dir: &str) -> Value {
    json!({
        "path": "/bin/sh",
        "args": ["sh", "-c", format!("echo {kind} >> {dir}/hooklog; cat > {dir}/{kind}.json")],
    })
}

#[test]
fn every_hook_runs_once_in_order_with_the_state() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-hooks");
    let bundle = writable_bundle(&env, &["sh", "-c", "echo process >> /hooklog"]);
    let rootfs = fs::canonicalize(bundle.rootfs()).unwrap();
    let host_dir = rootfs.to_str().unwrap().to_string();
    bundle.edit_config(|c| {
        let mut hooks = serde_json::Map::new();
        for kind in KINDS {
            // startContainer runs inside the container, after pivot_root.
            let dir = if kind == "startContainer" {
                ""
            } else {
                host_dir.as_str()
            };
            hooks.insert(kind.to_string(), json!([recording_hook(kind, dir)]));
        }
        c["hooks"] = Value::Object(hooks);
    });
    let log = rootfs.join("hooklog");
    let id = env.unique("c");
    create(&env, &bundle, &id);
    assert_eq!(
        fs::read_to_string(&log).unwrap(),
        "prestart\ncreateRuntime\ncreateContainer\n"
    );
    let pid = init_pid(&env, &id);
    rt_run(&env, &["start", &id]).assert_success();
    wait_status(&env, &id, "stopped");
    rt_run(&env, &["delete", &id]).assert_success();

    let lines: Vec<String> = fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let pos = |k: &str| {
        let found: Vec<usize> = lines
            .iter()
            .enumerate()
            .filter(|(_, l)| *l == k)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(found.len(), 1, "{k} ran {} times: {lines:?}", found.len());
        found[0]
    };
    assert!(pos("createContainer") < pos("startContainer"), "{lines:?}");
    assert!(pos("startContainer") < pos("process"), "{lines:?}");
    assert!(pos("startContainer") < pos("poststart"), "{lines:?}");
    assert_eq!(lines.last().unwrap(), "poststop", "{lines:?}");

    let bundle_dir = fs::canonicalize(bundle.path()).unwrap();
    for kind in KINDS {
        let text = fs::read_to_string(rootfs.join(format!("{kind}.json"))).unwrap();
        let st: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{kind} stdin is not JSON ({e}): {text:?}"));
        assert_eq!(st["id"], id.as_str(), "{kind}: {st}");
        assert_eq!(st["bundle"], bundle_dir.to_str().unwrap(), "{kind}: {st}");
        assert!(st["ociVersion"].is_string(), "{kind}: {st}");
        if kind != "poststop" {
            assert_eq!(st["pid"], pid, "{kind}: {st}");
        }
    }
    let status_of = |kind: &str| -> Value {
        let text = fs::read_to_string(rootfs.join(format!("{kind}.json"))).unwrap();
        serde_json::from_str::<Value>(&text).unwrap()["status"].clone()
    };
    assert_eq!(status_of("poststart"), "running");
    assert_eq!(status_of("poststop"), "stopped");
}

#[test]
fn hook_args_and_env_are_passed() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-hookenv");
    let bundle = writable_bundle(&env, &["true"]);
    let out = env.path().join("hook.out");
    let o = out.display().to_string();
    bundle.edit_config(move |c| {
        c["hooks"] = json!({"prestart": [{
            "path": "/bin/sh",
            "args": ["sh", "-c", format!("echo \"$0 $1 $GREETING\" > {o}"), "first", "second"],
            "env": ["GREETING=hello"]
        }]})
    });
    run_bundle(&env, &bundle, "c").assert_success();
    assert_eq!(fs::read_to_string(&out).unwrap(), "first second hello\n");
}

#[test]
fn failing_prestart_fails_create_and_leaves_nothing() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-hookfail");
    let bundle = writable_bundle(&env, &["sh", "-c", "echo ran > /ran"]);
    bundle.edit_config(|c| {
        c["hooks"] = json!({"prestart": [{
            "path": "/bin/sh",
            "args": ["sh", "-c", "echo hook says no >&2; exit 7"]
        }]})
    });
    let id = env.unique("c");
    let out = try_create(&env, &bundle, &id);
    out.assert_failure_mentioning("prestart");
    assert!(out.stderr.contains("hook says no"), "{}", out.stderr);
    assert!(!bundle.rootfs().join("ran").exists());
    assert_no_trace(&env, &bundle, &id);

    // A hook binary that does not exist is named.
    bundle.edit_config(|c| c["hooks"] = json!({"createRuntime": [{"path": "/no/such/hook"}]}));
    let id = env.unique("d");
    let out = try_create(&env, &bundle, &id);
    out.assert_failure_mentioning("/no/such/hook");
    assert_no_trace(&env, &bundle, &id);
}

#[test]
fn hook_timeout_kills_it_and_fails_create() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-hooktime");
    let bundle = writable_bundle(&env, &["true"]);
    let pid_file = env.path().join("hook.pid");
    let p = pid_file.display().to_string();
    bundle.edit_config(move |c| {
        c["hooks"] = json!({"createRuntime": [{
            "path": "/bin/sh",
            "args": ["sh", "-c", format!("echo $$ > {p}; exec sleep 1000")],
            "timeout": 1
        }]})
    });
    let id = env.unique("c");
    let out = try_create(&env, &bundle, &id);
    out.assert_failure();
    assert!(
        out.stderr.contains("createRuntime") && out.stderr.contains("timed out"),
        "{}",
        out.stderr
    );
    assert_no_trace(&env, &bundle, &id);
    // The hook process was killed, not left sleeping.
    let pid: i32 = fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(pid_gone(pid), "hook {pid} survived");
}

#[test]
fn failing_start_container_hook_fails_start_and_stops_the_container() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-hookstart");
    let bundle = writable_bundle(&env, &["sh", "-c", "echo ran > /ran; sleep 1000"]);
    bundle.edit_config(|c| {
        c["hooks"] = json!({"startContainer": [{
            "path": "/bin/sh",
            "args": ["sh", "-c", "echo start hook says no >&2; exit 3"]
        }]})
    });
    let id = env.unique("c");
    create(&env, &bundle, &id);
    let out = rt_run(&env, &["start", &id]);
    out.assert_failure();
    assert!(
        out.stderr.contains("startContainer") && out.stderr.contains("start hook says no"),
        "{}",
        out.stderr
    );
    assert_eq!(state(&env, &id)["status"], "stopped");
    assert!(!bundle.rootfs().join("ran").exists(), "the process ran");
    rt_run(&env, &["delete", &id]).assert_success();
    assert_no_trace(&env, &bundle, &id);
}

#[test]
fn failing_create_container_hook_fails_create_and_poststart_only_warns() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-hookcc");
    let bundle = writable_bundle(&env, &["sleep", "1000"]);
    bundle.edit_config(|c| c["hooks"] = json!({"createContainer": [{"path": "/bin/false"}]}));
    let id = env.unique("c");
    let out = try_create(&env, &bundle, &id);
    out.assert_failure_mentioning("createContainer");
    assert_no_trace(&env, &bundle, &id);

    // runtime-spec: a poststart failure is logged; the container keeps running.
    bundle.edit_config(|c| c["hooks"] = json!({"poststart": [{"path": "/bin/false"}]}));
    let id = env.unique("d");
    let out = rt_run(
        &env,
        &[
            "run",
            "--detach",
            "--bundle",
            bundle.path().to_str().unwrap(),
            &id,
        ],
    );
    out.assert_success();
    assert!(out.stderr.contains("poststart"), "{}", out.stderr);
    assert_eq!(state(&env, &id)["status"], "running");
    force_delete(&env, &id);
}
