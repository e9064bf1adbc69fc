//! seccomp profiles from config.json, seen from the process inside: errno
//! actions, kill actions, argument filters, Docker's default allowlist, and a
//! clear error for a broken profile.

mod runtime_support;

use berth_tests::{require_root, Bundle, TestEnv};
use runtime_support::*;
use serde_json::{json, Value};

/// Docker's default profile for x86_64, kept in the runtime's tree.
const DOCKER_DEFAULT: &str = include_str!("../../runtime/src/seccomp/docker_default_x86_64.json");

fn allow_all_but(rules: Value) -> Value {
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": rules
    })
}

#[test]
fn errno_action_makes_mkdir_fail_with_eperm() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-sc-errno");
    let bundle = writable_bundle(
        &env,
        &["sh", "-c", "grep -E '^Seccomp:' /proc/self/status; mkdir /made 2>&1; echo rc=$?; touch /file && echo touched"],
    );
    bundle.edit_config(|c| {
        c["linux"]["seccomp"] = allow_all_but(json!([
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}
        ]))
    });
    let out = run_bundle(&env, &bundle, "c");
    out.assert_success();
    assert!(out.stdout.contains("Seccomp:\t2"), "{}", out.stdout);
    assert!(
        out.stdout.contains("Operation not permitted"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("rc=1"), "{}", out.stdout);
    assert!(
        out.stdout.contains("touched"),
        "other syscalls still work: {}",
        out.stdout
    );
    assert!(!bundle.rootfs().join("made").exists());

    // errnoRet picks the errno.
    bundle.edit_config(|c| {
        c["linux"]["seccomp"] = allow_all_but(json!([
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}
        ]))
    });
    let out = run_bundle(&env, &bundle, "d");
    out.assert_success();
    assert!(out.stdout.contains("Permission denied"), "{}", out.stdout);
}

#[test]
fn kill_actions_kill_with_sigsys() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-sc-kill");
    for action in [
        "SCMP_ACT_KILL",
        "SCMP_ACT_KILL_PROCESS",
        "SCMP_ACT_KILL_THREAD",
    ] {
        let bundle = writable_bundle(&env, &["uname", "-s"]);
        bundle.edit_config(|c| {
            c["linux"]["seccomp"] = allow_all_but(json!([{"names": ["uname"], "action": action}]))
        });
        let name = action
            .trim_start_matches("SCMP_ACT_")
            .to_lowercase()
            .replace('_', "");
        let out = run_bundle(&env, &bundle, &name);
        // The container's process died of SIGSYS (31): 128 + 31.
        out.assert_code(159);
        assert_eq!(out.stdout, "", "{action}");
    }
}

#[test]
fn argument_filters_match_only_the_given_values() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-sc-args");
    let bundle = writable_bundle(
        &env,
        &[
            "sh",
            "-c",
            "kill -0 $$ && echo zero-ok; kill -USR1 $$ 2>&1; echo rc=$?",
        ],
    );
    // kill(pid, SIGUSR1) fails; kill(pid, 0) passes.
    bundle.edit_config(|c| {
        c["linux"]["seccomp"] = allow_all_but(json!([{
            "names": ["kill"], "action": "SCMP_ACT_ERRNO",
            "args": [{"index": 1, "value": 10, "op": "SCMP_CMP_EQ"}]
        }]))
    });
    let out = run_bundle(&env, &bundle, "c");
    out.assert_success();
    assert!(out.stdout.contains("zero-ok"), "{}", out.stdout);
    assert!(out.stdout.contains("rc=1"), "{}", out.stdout);
}

#[test]
fn dockers_default_profile_runs_a_shell() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-sc-docker");
    let profile: Value = serde_json::from_str(DOCKER_DEFAULT).unwrap();
    let out = sh_in(
        &env,
        "grep -E '^Seccomp:' /proc/self/status; mkdir /d && echo made; ls / | wc -l >/dev/null; \
         date >/dev/null; echo $(( 6 * 7 )) | cat",
        move |c| c["linux"]["seccomp"] = profile,
    );
    assert_eq!(out, "Seccomp:\t2\nmade\n42\n");
}

#[test]
fn a_broken_profile_fails_create_and_names_the_problem() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-sc-bad");
    let bundle = Bundle::busybox(&env);
    bundle.edit_config(|c| {
        c["linux"]["seccomp"] =
            allow_all_but(json!([{"names": ["mkdir"], "action": "SCMP_ACT_BOGUS"}]))
    });
    let id = env.unique("c");
    let out = run_bundle(&env, &bundle, "c");
    out.assert_failure();
    assert!(out.stderr.contains("SCMP_ACT_BOGUS"), "{}", out.stderr);
    assert_no_trace(&env, &bundle, &id);

    bundle.edit_config(|c| {
        c["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_NOPE"],
            "syscalls": []
        })
    });
    let id = env.unique("d");
    let out = run_bundle(&env, &bundle, "d");
    out.assert_failure();
    assert!(out.stderr.contains("SCMP_ARCH_NOPE"), "{}", out.stderr);
    assert_no_trace(&env, &bundle, &id);
}

#[test]
fn log_allows_and_trace_without_tracer_fails_with_enosys() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-sc-logtrace");
    let out = sh_in(&env, "mkdir /logged && echo made", |c| {
        c["linux"]["seccomp"] =
            allow_all_but(json!([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_LOG"}]))
    });
    assert_eq!(out, "made\n");
    let out = sh_in(&env, "mkdir /traced 2>&1; echo rc=$?", |c| {
        c["linux"]["seccomp"] =
            allow_all_but(json!([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_TRACE"}]))
    });
    assert!(
        out.contains("Function not implemented") && out.contains("rc=1"),
        "{out}"
    );
}
