//! The `process` section of config.json and `exec`, seen from inside the
//! container: args, env, cwd, user, capabilities, rlimits, noNewPrivileges,
//! oomScoreAdj, hostname, sysctl, --preserve-fds, the console socket.

mod runtime_support;

use std::fs;
use std::io::{IoSliceMut, Read};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::thread;
use std::time::Duration;

use berth_tests::{bin, features, require_root, run, run_timeout, Bundle, TestEnv};

/// Not in any bounding set on this project's machines (MACHINE-NOTES).
const CAP_SYS_RESOURCE: u32 = 24;
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use runtime_support::*;
use serde_json::{json, Value};

fn status_of_container(env: &TestEnv, edit: impl FnOnce(&mut Value)) -> String {
    sh_in(env, "cat /proc/self/status", edit)
}

#[test]
fn args_env_and_cwd_reach_the_process() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-args");
    let out = sh_in(&env, r#"printf '%s|' "$0" "$1" "$FOO" "$PATH"; pwd"#, |c| {
        let args = c["process"]["args"].as_array_mut().unwrap();
        args.push(json!("zero"));
        args.push(json!("one two"));
        c["process"]["env"] = json!(["FOO=bar=baz", "PATH=/bin:/sbin"]);
        c["process"]["cwd"] = json!("/not/yet/there");
    });
    assert_eq!(out, "zero|one two|bar=baz|/bin:/sbin|/not/yet/there\n");
}

#[test]
fn user_uid_gid_groups_and_umask() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-user");
    let status = status_of_container(&env, |c| {
        c["process"]["user"] =
            json!({"uid": 1000, "gid": 1001, "additionalGids": [10, 20], "umask": 23});
    });
    assert_eq!(proc_status(&status, "Uid"), "1000\t1000\t1000\t1000");
    assert_eq!(proc_status(&status, "Gid"), "1001\t1001\t1001\t1001");
    assert_eq!(proc_status(&status, "Groups"), "10 20");
    assert_eq!(proc_status(&status, "Umask"), "0027");
    // A file it creates carries the umask and the ids.
    let bundle = writable_bundle(&env, &["sh", "-c", "touch /tmp/f; ls -ln /tmp/f"]);
    bundle.edit_config(|c| c["process"]["user"] = json!({"uid": 1000, "gid": 1001, "umask": 63}));
    let out = run_bundle(&env, &bundle, "file");
    out.assert_success();
    assert!(out.stdout.starts_with("-rw------- "), "{}", out.stdout);
    assert!(
        out.stdout.contains(" 1000 ") && out.stdout.contains(" 1001 "),
        "{}",
        out.stdout
    );
}

fn caps_mask(names: &[&str]) -> String {
    let bit = |n: &str| match n {
        "CAP_CHOWN" => 0,
        "CAP_KILL" => 5,
        "CAP_NET_BIND_SERVICE" => 10,
        "CAP_NET_RAW" => 13,
        "CAP_SYS_CHROOT" => 18,
        other => panic!("no bit for {other}"),
    };
    format!("{:016x}", names.iter().fold(0u64, |m, n| m | 1 << bit(n)))
}

#[test]
fn all_five_capability_sets() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-caps");
    let bounding = [
        "CAP_CHOWN",
        "CAP_KILL",
        "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT",
    ];
    let permitted = ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"];
    let effective = ["CAP_CHOWN", "CAP_KILL"];
    let inheritable = ["CAP_KILL", "CAP_NET_BIND_SERVICE"];
    let ambient = ["CAP_KILL"];
    let caps = json!({
        "bounding": bounding, "permitted": permitted, "effective": effective,
        "inheritable": inheritable, "ambient": ambient,
    });
    // As a non-root user exec keeps exactly the ambient set in permitted and
    // effective, so every set the runtime applied is visible as given.
    let caps2 = caps.clone();
    let status = status_of_container(&env, move |c| {
        c["process"]["user"] = json!({"uid": 1000, "gid": 1000});
        c["process"]["capabilities"] = caps2;
    });
    assert_eq!(proc_status(&status, "CapBnd"), caps_mask(&bounding));
    assert_eq!(proc_status(&status, "CapInh"), caps_mask(&inheritable));
    assert_eq!(proc_status(&status, "CapAmb"), caps_mask(&ambient));
    assert_eq!(proc_status(&status, "CapPrm"), caps_mask(&ambient));
    assert_eq!(proc_status(&status, "CapEff"), caps_mask(&ambient));

    // As root, exec grants inheritable | bounding, which noNewPrivileges
    // caps at the permitted set the runtime gave.
    let status = status_of_container(&env, move |c| {
        c["process"]["capabilities"] = caps;
        c["process"]["noNewPrivileges"] = json!(true);
    });
    assert_eq!(proc_status(&status, "CapBnd"), caps_mask(&bounding));
    assert_eq!(proc_status(&status, "CapInh"), caps_mask(&inheritable));
    assert_eq!(proc_status(&status, "CapPrm"), caps_mask(&permitted));

    // A capability the host itself lacks is named in the error.
    let bundle = Bundle::busybox(&env);
    bundle.edit_config(|c| {
        c["process"]["capabilities"]["bounding"]
            .as_array_mut()
            .unwrap()
            .push(json!("CAP_SYS_RESOURCE"))
    });
    let out = run_bundle(&env, &bundle, "sysres");
    // Like `docker run --privileged` on this host: the container runs
    // without it and the runtime says which capability it could not apply.
    out.assert_success();
    if !features::in_bounding_set(CAP_SYS_RESOURCE) {
        assert!(
            out.stderr.contains("CAP_SYS_RESOURCE") && out.stderr.contains("warning"),
            "{}",
            out.stderr
        );
    } else {
        assert!(
            !out.stderr.contains("CAP_SYS_RESOURCE"),
            "a host that has it grants it silently: {}",
            out.stderr
        );
    }
    // So is one that does not exist.
    bundle.edit_config(|c| c["process"]["capabilities"]["bounding"] = json!(["CAP_BOGUS"]));
    let out = run_bundle(&env, &bundle, "bogus");
    out.assert_failure_mentioning("CAP_BOGUS");
}

#[test]
fn rlimits_apply_and_raising_above_the_hard_limit_is_refused() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-rlimit");
    let out = sh_in(&env, "ulimit -Sn; ulimit -Hn; ulimit -Hu", |c| {
        c["process"]["rlimits"] = json!([
            {"type": "RLIMIT_NOFILE", "soft": 1000, "hard": 2000},
            {"type": "RLIMIT_NPROC", "soft": 500, "hard": 600},
        ])
    });
    assert_eq!(out, "1000\n2000\n600\n");

    // No CAP_SYS_RESOURCE here: nofile cannot go above the host's hard limit.
    let hard: u64 = fs::read_to_string("/proc/self/limits")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(4).map(|h| h.parse().unwrap()))
        .unwrap();
    let bundle = Bundle::busybox(&env);
    bundle.edit_config(|c| {
        c["process"]["rlimits"] =
            json!([{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": hard * 10}])
    });
    let out = run_bundle(&env, &bundle, "high");
    out.assert_failure_mentioning("RLIMIT_NOFILE");

    bundle.edit_config(|c| {
        c["process"]["rlimits"] = json!([{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}])
    });
    let out = run_bundle(&env, &bundle, "bogus");
    out.assert_failure_mentioning("RLIMIT_BOGUS");
}

#[test]
fn no_new_privileges_follows_the_config() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-nnp");
    let on = status_of_container(&env, |c| c["process"]["noNewPrivileges"] = json!(true));
    assert_eq!(proc_status(&on, "NoNewPrivs"), "1");
    let off = status_of_container(&env, |c| c["process"]["noNewPrivileges"] = json!(false));
    assert_eq!(proc_status(&off, "NoNewPrivs"), "0");
}

#[test]
fn oom_score_adj_raises_and_lowering_names_the_missing_capability() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-oom");
    let own: i32 = fs::read_to_string("/proc/self/oom_score_adj")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let want = (own + 100).min(1000);
    let out = sh_in(&env, "cat /proc/self/oom_score_adj", |c| {
        c["process"]["oomScoreAdj"] = json!(want)
    });
    assert_eq!(out.trim(), want.to_string());

    // Lowering below the current value needs CAP_SYS_RESOURCE, which no
    // process here holds: the error must say what failed.
    let bundle = Bundle::busybox(&env);
    bundle.args(&["cat", "/proc/self/oom_score_adj"]);
    bundle.edit_config(|c| c["process"]["oomScoreAdj"] = json!(-999));
    let out = run_bundle(&env, &bundle, "low");
    if !features::in_bounding_set(CAP_SYS_RESOURCE) {
        out.assert_failure_mentioning("oom_score_adj");
    } else {
        // A host with CAP_SYS_RESOURCE applies it.
        out.assert_success();
        assert_eq!(out.stdout.trim(), "-999");
    }
}

#[test]
fn hostname_and_domainname() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-hostname");
    let out = sh_in(&env, "hostname; cat /proc/sys/kernel/domainname", |c| {
        c["hostname"] = json!("boat");
        c["domainname"] = json!("harbour.test");
    });
    assert_eq!(out, "boat\nharbour.test\n");
    // The host's own names are untouched.
    let host = fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_ne!(host.trim(), "boat");

    // A hostname without a uts namespace would change the host's: refused.
    let bundle = Bundle::busybox(&env);
    bundle.edit_config(|c| {
        c["hostname"] = json!("boat");
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .retain(|n| n["type"] != "uts");
    });
    let out = run_bundle(&env, &bundle, "nouts");
    out.assert_failure();
    assert!(
        out.stderr.contains("hostname") || out.stderr.contains("uts"),
        "{}",
        out.stderr
    );
    assert_ne!(
        fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap()
            .trim(),
        "boat"
    );
}

#[test]
fn sysctl_in_new_net_and_ipc_namespaces() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-sysctl");
    let host_fwd = fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let out = sh_in(
        &env,
        "cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmax",
        |c| {
            c["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1", "kernel.shmmax": "123456789"})
        },
    );
    assert_eq!(out, "1\n123456789\n");
    assert_eq!(
        fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
        host_fwd
    );

    // A net sysctl without a private netns would change the host's: refused.
    let bundle = Bundle::busybox(&env);
    bundle.edit_config(|c| {
        c["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .retain(|n| n["type"] != "network");
    });
    let out = run_bundle(&env, &bundle, "hostnet");
    out.assert_failure_mentioning("net.ipv4.ip_forward");
    assert_eq!(
        fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
        host_fwd
    );

    // The slash form names the same knob.
    bundle.edit_config(|c| c["linux"]["sysctl"] = json!({"net/ipv4/ip_forward": "1"}));
    let out = run_bundle(&env, &bundle, "slash");
    out.assert_failure_mentioning("net/ipv4/ip_forward");
    let out = sh_in(&env, "cat /proc/sys/net/ipv4/conf/lo/forwarding", |c| {
        c["linux"]["sysctl"] = json!({"net/ipv4/conf/lo/forwarding": "1"})
    });
    assert_eq!(out, "1\n");

    bundle.edit_config(|c| c["linux"]["sysctl"] = json!({"kernel.no_such_knob": "1"}));
    let out = run_bundle(&env, &bundle, "bogus");
    out.assert_failure_mentioning("kernel.no_such_knob");
}

#[test]
fn preserve_fds_passes_extra_descriptors() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-pfds");
    let bundle = Bundle::busybox(&env);
    bundle.args(&[
        "sh",
        "-c",
        "cat <&3; cat <&4; ls /proc/self/fd/5 2>/dev/null || echo no5",
    ]);
    fs::write(env.path().join("three"), "fd three\n").unwrap();
    fs::write(env.path().join("four"), "fd four\n").unwrap();
    let script = format!(
        "exec 3<{dir}/three 4<{dir}/four 5<{dir}/four; exec \"$@\"",
        dir = env.path().display()
    );
    let id = env.unique("c");
    let out = run(env
        .command("sh")
        .args(["-c", &script, "sh"])
        .arg(bin("berth-runtime"))
        .arg("--root")
        .arg(env.run().join("runtime"))
        .args(["run", "--preserve-fds", "2", "--bundle"])
        .arg(bundle.path())
        .arg(&id));
    out.assert_success();
    assert_eq!(out.stdout, "fd three\nfd four\nno5\n");
}

/// A console socket: accepts one connection and returns the pty master the
/// runtime sends over SCM_RIGHTS.
fn receive_pty(listener: UnixListener) -> OwnedFd {
    use std::os::fd::AsRawFd;
    let (conn, _) = listener
        .accept()
        .expect("runtime connects to the console socket");
    let mut buf = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::empty(),
    )
    .expect("recvmsg on the console socket");
    for cmsg in msg.cmsgs().expect("control messages") {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            // SAFETY: the kernel just installed this descriptor for us.
            return unsafe { OwnedFd::from_raw_fd(fds[0]) };
        }
    }
    panic!("no descriptor on the console socket");
}

/// Everything readable from a pty master until the other side closes (EIO).
fn read_pty(master: OwnedFd) -> String {
    let mut file = fs::File::from(master);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match file.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn terminal_through_the_console_socket() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-tty");
    let bundle = Bundle::busybox(&env);
    bundle.args(&[
        "sh",
        "-c",
        "tty; [ -t 0 ] && [ -t 1 ] && echo both-ttys; stty size",
    ]);
    bundle.edit_config(|c| {
        c["process"]["terminal"] = json!(true);
        c["process"]["consoleSize"] = json!({"height": 33, "width": 111});
    });
    let sock = env.path().join("console.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let receiver = thread::spawn(move || read_pty(receive_pty(listener)));
    let id = env.unique("c");
    rt_run(
        &env,
        &[
            "create",
            "--console-socket",
            sock.to_str().unwrap(),
            "--bundle",
            bundle.path().to_str().unwrap(),
            &id,
        ],
    )
    .assert_success();
    rt_run(&env, &["start", &id]).assert_success();
    let text = receiver.join().unwrap().replace('\r', "");
    assert!(text.contains("/dev/pts/"), "{text:?}");
    assert!(text.contains("both-ttys"), "{text:?}");
    assert!(text.contains("33 111"), "{text:?}");
    wait_status(&env, &id, "stopped");
    rt_run(&env, &["delete", &id]).assert_success();

    // terminal: true without a console socket is an error, not a hang.
    let out = run_timeout(
        rt(&env).args([
            "create",
            "--bundle",
            bundle.path().to_str().unwrap(),
            &env.unique("d"),
        ]),
        Duration::from_secs(30),
    );
    out.assert_failure_mentioning("console");
}

// ---- exec ----

#[test]
fn exec_args_env_cwd_user_and_exit_code() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-exec");
    let (_bundle, id) = running_container(&env);
    let out = rt_run(&env, &["exec", &id, "sh", "-c", "echo $$ in; exit 7"]);
    out.assert_code(7);
    assert!(out.stdout.ends_with(" in\n"), "{}", out.stdout);

    let out = rt_run(
        &env,
        &[
            "exec",
            "--env",
            "A=1",
            "-e",
            "B=two",
            "--cwd",
            "/etc",
            "--user",
            "1000:1001",
            &id,
            "sh",
            "-c",
            "echo $A $B $(pwd) $(id -u) $(id -g)",
        ],
    );
    out.assert_success();
    assert_eq!(out.stdout, "1 two /etc 1000 1001\n");

    // The exec'd process is in the container's pid namespace.
    let out = rt_run(&env, &["exec", &id, "cat", "/proc/1/cmdline"]);
    out.assert_success();
    assert_eq!(out.stdout, "sleep\u{0}1000\u{0}");

    let out = rt_run(&env, &["exec", &id, "no-such-cmd"]);
    out.assert_failure_mentioning("no-such-cmd");
    force_delete(&env, &id);
}

#[test]
fn exec_from_process_json() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-exec-json");
    let (_bundle, id) = running_container(&env);
    let process = json!({
        "terminal": false,
        "user": {"uid": 1000, "gid": 1000, "additionalGids": [30]},
        "args": ["sh", "-c", "echo $X; pwd; cat /proc/self/status"],
        "env": ["X=from-json", "PATH=/bin"],
        "cwd": "/tmp",
        "noNewPrivileges": true,
        "capabilities": {"bounding": ["CAP_KILL"], "effective": [], "permitted": [], "inheritable": [], "ambient": []}
    });
    let path = env.path().join("process.json");
    fs::write(&path, process.to_string()).unwrap();
    let out = rt_run(&env, &["exec", "--process", path.to_str().unwrap(), &id]);
    out.assert_success();
    let mut lines = out.stdout.lines();
    assert_eq!(lines.next(), Some("from-json"));
    assert_eq!(lines.next(), Some("/tmp"));
    assert_eq!(proc_status(&out.stdout, "Uid"), "1000\t1000\t1000\t1000");
    assert_eq!(proc_status(&out.stdout, "Groups"), "30");
    assert_eq!(proc_status(&out.stdout, "NoNewPrivs"), "1");
    assert_eq!(proc_status(&out.stdout, "CapBnd"), caps_mask(&["CAP_KILL"]));

    fs::write(&path, "{not json").unwrap();
    let out = rt_run(&env, &["exec", "--process", path.to_str().unwrap(), &id]);
    out.assert_failure_mentioning("process.json");
    force_delete(&env, &id);
}

#[test]
fn exec_detach_writes_the_pid_file() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-exec-detach");
    let (bundle, id) = running_container(&env);
    let pid_file = env.path().join("exec.pid");
    rt_run(
        &env,
        &[
            "exec",
            "--detach",
            "--pid-file",
            pid_file.to_str().unwrap(),
            &id,
            "sh",
            "-c",
            "echo $$ > /exec-pid; exec sleep 1001",
        ],
    )
    .assert_success();
    let host_pid: i32 = fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let inner = wait_file(&bundle.rootfs().join("exec-pid"));
    assert_ne!(host_pid, init_pid(&env, &id));
    // The pid file names the exec'd process: its innermost pid is the one it
    // printed inside.
    wait_until("the exec'd shell execs sleep", || {
        fs::read_to_string(format!("/proc/{host_pid}/cmdline")).unwrap_or_default()
            == "sleep\u{0}1001\u{0}"
    });
    let status = fs::read_to_string(format!("/proc/{host_pid}/status")).unwrap();
    let nspid = proc_status(&status, "NSpid");
    assert_eq!(
        nspid.split_whitespace().last(),
        Some(inner.trim()),
        "{nspid}"
    );
    // The detached process is one of the container's.
    let out = rt_run(&env, &["ps", "--format", "json", &id]);
    let pids: Value = serde_json::from_str(&out.stdout).unwrap();
    assert!(
        pids.as_array().unwrap().contains(&json!(host_pid)),
        "{pids}"
    );
    force_delete(&env, &id);
}

#[test]
fn exec_into_a_stopped_or_created_container_fails() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-exec-stopped");
    let bundle = Bundle::busybox(&env);
    bundle.args(&["true"]);
    let id = env.unique("c");
    run_detached(&env, &bundle, &id);
    wait_status(&env, &id, "stopped");
    let out = rt_run(&env, &["exec", &id, "true"]);
    out.assert_failure();
    assert!(
        out.stderr.contains("stopped") || out.stderr.contains("not running"),
        "{}",
        out.stderr
    );
    rt_run(&env, &["delete", &id]).assert_success();
    let out = rt_run(&env, &["exec", &id, "true"]);
    out.assert_failure_mentioning(&id);
}

#[test]
fn exec_with_a_tty_through_the_console_socket() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-exec-tty");
    let (_bundle, id) = running_container(&env);
    let sock = env.path().join("exec-console.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let receiver = thread::spawn(move || read_pty(receive_pty(listener)));
    // containerd's way: detached, with the pty master handed over.
    rt_run(
        &env,
        &[
            "exec",
            "--detach",
            "--tty",
            "--console-socket",
            sock.to_str().unwrap(),
            &id,
            "sh",
            "-c",
            "tty; [ -t 0 ] && echo stdin-is-tty",
        ],
    )
    .assert_success();
    let text = receiver.join().unwrap().replace('\r', "");
    assert!(text.contains("/dev/pts/"), "{text:?}");
    assert!(text.contains("stdin-is-tty"), "{text:?}");
    // A detached exec with a terminal has nowhere to send it without a socket.
    let out = rt_run(&env, &["exec", "--detach", "--tty", &id, "tty"]);
    out.assert_failure_mentioning("console-socket");
    force_delete(&env, &id);
}

#[test]
fn exec_inherits_env_cgroup_and_seccomp_and_refuses_a_paused_container() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-exec-inherit");
    let bundle = writable_bundle(&env, &["sleep", "1000"]);
    bundle.edit_config(|c| {
        c["process"]["env"]
            .as_array_mut()
            .unwrap()
            .push(json!("FROM_CONFIG=yes"));
        c["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]
        });
    });
    let id = env.unique("c");
    run_detached(&env, &bundle, &id);
    let pid = init_pid(&env, &id);
    let out = rt_run(
        &env,
        &[
            "exec",
            &id,
            "sh",
            "-c",
            "echo $FROM_CONFIG; cat /proc/self/cgroup; mkdir /x 2>&1",
        ],
    );
    let init_cgroup = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let mut lines = out.stdout.lines();
    assert_eq!(lines.next(), Some("yes"), "{}", out.stdout);
    assert!(
        out.stdout.contains(&init_cgroup),
        "{} vs init {init_cgroup}",
        out.stdout
    );
    assert!(
        out.stdout.contains("Operation not permitted"),
        "{}",
        out.stdout
    );

    rt_run(&env, &["pause", &id]).assert_success();
    let out = rt_run(&env, &["exec", &id, "true"]);
    out.assert_failure_mentioning("paused");
    rt_run(&env, &["resume", &id]).assert_success();
    force_delete(&env, &id);
}

#[test]
fn foreground_run_and_exec_relay_a_terminal() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-tty-relay");
    let bundle = Bundle::busybox(&env);
    bundle.args(&["sh", "-c", "tty; echo hi; exit 4"]);
    bundle.edit_config(|c| c["process"]["terminal"] = json!(true));
    let out = run_bundle(&env, &bundle, "c");
    out.assert_code(4);
    assert_eq!(out.stdout.replace('\r', ""), "/dev/pts/0\nhi\n");

    let (_b, id) = running_container(&env);
    let out = rt_run(&env, &["exec", "--tty", &id, "sh", "-c", "tty; exit 6"]);
    out.assert_code(6);
    assert!(out.stdout.starts_with("/dev/pts/"), "{:?}", out.stdout);
    force_delete(&env, &id);
}

#[test]
fn missing_console_socket_is_named_and_leaves_nothing() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-nosock");
    let bundle = Bundle::busybox(&env);
    bundle.edit_config(|c| c["process"]["terminal"] = json!(true));
    let sock = env.path().join("nobody-listens.sock");
    let id = env.unique("c");
    let out = rt_run(
        &env,
        &[
            "create",
            "--console-socket",
            sock.to_str().unwrap(),
            "--bundle",
            bundle.path().to_str().unwrap(),
            &id,
        ],
    );
    out.assert_failure_mentioning("nobody-listens.sock");
    assert_no_trace(&env, &bundle, &id);
}

#[test]
fn exec_cap_adds_a_capability() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-exec-cap");
    let (_b, id) = running_container(&env);
    let base = rt_run(&env, &["exec", &id, "cat", "/proc/self/status"]);
    let with = rt_run(
        &env,
        &[
            "exec",
            "--cap",
            "CAP_NET_RAW",
            &id,
            "cat",
            "/proc/self/status",
        ],
    );
    let eff = |o: &berth_tests::Output| {
        u64::from_str_radix(&proc_status(&o.stdout, "CapEff"), 16).unwrap()
    };
    assert_eq!(eff(&base) & (1 << 13), 0);
    assert_eq!(eff(&with), eff(&base) | (1 << 13));
    force_delete(&env, &id);
}

#[test]
fn a_failed_exec_leaves_no_process_in_the_container() {
    // The pid file cannot be written: exec fails, and the process it had already started in
    // the container must be gone with it.
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-exec-leak");
    let (_bundle, id) = running_container(&env);
    let pid_file = env.path().join("no-such-dir").join("exec.pid");
    let out = rt_run(
        &env,
        &[
            "exec",
            "--detach",
            "--pid-file",
            pid_file.to_str().unwrap(),
            &id,
            "sleep",
            "777",
        ],
    );
    out.assert_failure_mentioning("pid file");
    let init = init_pid(&env, &id);
    wait_until("only the init left in the container", || {
        let ps = rt_run(&env, &["ps", "--format", "json", &id]);
        let pids: Vec<i32> = serde_json::from_str(&ps.stdout).unwrap_or_default();
        pids == vec![init]
    });
    force_delete(&env, &id);
}
