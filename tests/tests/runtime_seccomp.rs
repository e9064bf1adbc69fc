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
    let out = run_as(&env, &bundle, &id);
    out.assert_failure_mentioning("SCMP_ACT_BOGUS");
    assert_no_trace(&env, &bundle, &id);

    bundle.edit_config(|c| {
        c["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_NOPE"],
            "syscalls": []
        })
    });
    let id = env.unique("d");
    let out = run_as(&env, &bundle, &id);
    out.assert_failure_mentioning("SCMP_ARCH_NOPE");
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

/// Accepts one connection on `listener` and returns what the runtime sends:
/// the container-process state JSON and the seccomp notify descriptor.
fn receive_listener_fd(
    listener: std::os::unix::net::UnixListener,
) -> (Value, std::os::fd::OwnedFd) {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::io::IoSliceMut;
    use std::os::fd::{AsRawFd, FromRawFd, RawFd};
    let (conn, _) = listener.accept().expect("runtime connects to listenerPath");
    let mut buf = vec![0u8; 64 * 1024];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 4]);
    let msg = recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::empty(),
    )
    .expect("recvmsg on listenerPath");
    let mut fd = None;
    for cmsg in msg.cmsgs().expect("control messages") {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            // SAFETY: the kernel just installed this descriptor for us.
            fd = Some(unsafe { std::os::fd::OwnedFd::from_raw_fd(fds[0]) });
        }
    }
    let len = msg.bytes;
    let state = serde_json::from_slice(&buf[..len]).expect("container process state JSON");
    (state, fd.expect("a descriptor with the state"))
}

#[test]
fn notify_hands_the_listener_to_listener_path() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-sc-notify");
    let bundle = writable_bundle(
        &env,
        &[
            "sh",
            "-c",
            "mkdir /notified 2>/result; echo rc=$? >> /result",
        ],
    );
    let sock = env.path().join("seccomp-agent.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let agent = std::thread::spawn(move || receive_listener_fd(listener));
    let s = sock.display().to_string();
    bundle.edit_config(move |c| {
        let mut profile =
            allow_all_but(json!([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]));
        profile["listenerPath"] = json!(s);
        profile["listenerMetadata"] = json!("agent-meta");
        c["linux"]["seccomp"] = profile;
    });
    let id = env.unique("c");
    create(&env, &bundle, &id);
    let (st, fd) = agent.join().unwrap();
    assert_eq!(st["fds"], json!(["seccompFd"]), "{st}");
    assert_eq!(st["metadata"], "agent-meta", "{st}");
    assert_eq!(st["state"]["id"], id.as_str(), "{st}");
    assert_eq!(st["pid"], init_pid(&env, &id), "{st}");
    // With the agent gone, the notified syscall fails with ENOSYS.
    drop(fd);
    rt_run(&env, &["start", &id]).assert_success();
    wait_status(&env, &id, "stopped");
    rt_run(&env, &["delete", &id]).assert_success();
    assert!(!bundle.rootfs().join("notified").exists());
    let result = fs_read(&bundle.rootfs().join("result"));
    assert!(
        result.contains("Function not implemented") && result.contains("rc=1"),
        "{result}"
    );
}

fn fs_read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn a_profile_that_denies_execveat_still_starts_the_process() {
    // Profiles written for runc allow execve; some never list execveat. The runtime's last
    // exec (through its trampoline) must not need it.
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-sc-execveat");
    let bundle = writable_bundle(&env, &["sh", "-c", "echo started"]);
    bundle.edit_config(|c| {
        c["linux"]["seccomp"] = allow_all_but(json!([
            {"names": ["execveat"], "action": "SCMP_ACT_ERRNO"}
        ]))
    });
    let out = run_bundle(&env, &bundle, "c");
    out.assert_success();
    assert_eq!(out.stdout, "started\n");
}
