//! Container escapes that runc shipped and fixed, tried against berth-runtime.
//!
//! CVE-2024-21626 ("Leaky Vessels"): a `process.cwd` of `/proc/self/fd/N` starts the process
//! in whatever directory descriptor N is (the state directory, the cgroup2 directory, a
//! namespace file, a descriptor the caller leaked), and `..` from there walks the host. Each
//! test tries every descriptor number the runtime might hold, through `run`, `create` and
//! `start`, and `exec`: the runtime must refuse cleanly, or the process must see only the
//! container's root.
//!
//! CVE-2022-29162: `exec --cap` must not grant inheritable or ambient capabilities, which an
//! unprivileged program would keep across execve of any binary.

mod runtime_support;

use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;

use berth_tests::{require_root, run, Bundle, Output, TestEnv};
use runtime_support::*;
use serde_json::{json, Value};

/// Every descriptor number the runtime or its caller might hold when the process starts.
const FDS: std::ops::RangeInclusive<u32> = 3..=24;

/// A file only the container's root directory has.
const MARKER: &str = "berth-rootfs-marker";

/// Climbs far above the working directory and lists what it reaches: the container's root
/// if the process is confined (`..` stops at the root), the host's otherwise.
const CLIMB: &str = "ls -a ../../../../../../../../../../../../../../../..";

fn marked_bundle(env: &TestEnv, args: &[&str]) -> Bundle {
    let bundle = writable_bundle(env, args);
    fs::write(bundle.rootfs().join(MARKER), "").unwrap();
    bundle
}

fn with_cwd(bundle: &Bundle, cwd: &str) {
    bundle.edit_config(|c| c["process"]["cwd"] = json!(cwd));
}

/// The outcome of one attempt: refused with an error that names process.cwd, or ran and
/// listed the container's root.
#[track_caller]
fn assert_confined(what: &str, out: &Output, listing: Option<&str>) {
    if out.success() {
        let listing = listing.unwrap_or(&out.stdout);
        assert!(
            listing.lines().any(|l| l.trim() == MARKER),
            "{what}: the process climbed out of the container's root; it saw:\n{listing}\n{out:?}"
        );
    } else {
        assert!(
            out.stderr.contains("process.cwd") || out.stderr.contains("cwd"),
            "{what}: refused, but the error does not name the working directory: {out:?}"
        );
        assert!(
            !out.stderr.contains("panicked"),
            "{what}: the runtime crashed: {out:?}"
        );
    }
}

#[test]
fn run_with_cwd_through_any_descriptor_stays_in_the_rootfs() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("cwd-fd-run");
    let bundle = marked_bundle(&env, &["sh", "-c", CLIMB]);
    for n in FDS {
        with_cwd(&bundle, &format!("/proc/self/fd/{n}"));
        let id = env.unique(&format!("r{n}"));
        let out = run_as(&env, &bundle, &id);
        assert_confined(&format!("run, cwd /proc/self/fd/{n}"), &out, None);
        if !out.success() {
            assert_no_trace(&env, &bundle, &id);
        }
        rt_run(&env, &["delete", "--force", &id]);
    }
}

#[test]
fn create_and_start_with_cwd_through_any_descriptor_stay_in_the_rootfs() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("cwd-fd-create");
    // The listing goes to a file in the container's root: `/` is the process's root
    // whatever its working directory.
    let bundle = marked_bundle(&env, &["sh", "-c", &format!("{CLIMB} > /listing")]);
    let listing = bundle.rootfs().join("listing");
    for n in FDS {
        with_cwd(&bundle, &format!("/proc/self/fd/{n}"));
        let _ = fs::remove_file(&listing);
        let id = env.unique(&format!("c{n}"));
        let out = try_create(&env, &bundle, &id);
        let what = format!("create, cwd /proc/self/fd/{n}");
        if !out.success() {
            assert_confined(&what, &out, None);
            assert_no_trace(&env, &bundle, &id);
            continue;
        }
        rt_run(&env, &["start", &id]).assert_success();
        wait_status(&env, &id, "stopped");
        let seen = fs::read_to_string(&listing).unwrap_or_default();
        assert_confined(&what, &out, Some(&seen));
        force_delete(&env, &id);
    }
}

#[test]
fn exec_with_cwd_through_any_descriptor_stays_in_the_rootfs() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("cwd-fd-exec");
    let bundle = marked_bundle(&env, &["sleep", "1000"]);
    let id = env.unique("c");
    run_detached(&env, &bundle, &id);
    let process_file = env.path().join("process.json");
    for n in FDS {
        let cwd = format!("/proc/self/fd/{n}");
        let out = rt_run(&env, &["exec", "--cwd", &cwd, &id, "sh", "-c", CLIMB]);
        assert_confined(&format!("exec --cwd {cwd}"), &out, None);

        // The same through --process, as containerd and dockerd call it.
        let mut process = bundle.config()["process"].clone();
        process["cwd"] = json!(cwd);
        process["args"] = json!(["sh", "-c", CLIMB]);
        fs::write(&process_file, process.to_string()).unwrap();
        let out = rt_run(
            &env,
            &["exec", "--process", process_file.to_str().unwrap(), &id],
        );
        assert_confined(&format!("exec --process, cwd {cwd}"), &out, None);
    }
    // The container is unharmed by the refused execs.
    assert_eq!(state(&env, &id)["status"], "running");
    force_delete(&env, &id);
}

/// The runtime started with a host directory (holding the file `host-file`) open on `fd`,
/// without close-on-exec, as a careless caller would leave it.
fn rt_with_leaked_dir(env: &TestEnv, fd: i32) -> std::process::Command {
    let host_dir = env.path().join("host-dir");
    fs::create_dir_all(&host_dir).unwrap();
    fs::write(host_dir.join("host-file"), "").unwrap();
    let dir = fs::File::open(&host_dir).unwrap();
    let mut cmd = rt(env);
    // SAFETY: dup2 and fcntl are async-signal-safe, and the closure owns `dir`, so its number
    // is open.
    unsafe {
        cmd.pre_exec(move || {
            let src = dir.as_raw_fd();
            // dup2 onto itself would leave close-on-exec set: clear it instead.
            let r = if src == fd {
                libc::fcntl(fd, libc::F_SETFD, 0)
            } else {
                libc::dup2(src, fd)
            };
            if r < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

#[test]
fn a_directory_the_caller_leaks_is_no_way_out() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("cwd-fd-leak");
    let bundle = marked_bundle(&env, &["sh", "-c", CLIMB]);
    // `run` with a host directory leaked on `fd`, handed on with `--preserve-fds` when below
    // `preserve`'s reach; the container is deleted after.
    let run_leaking = |fd: i32, preserve: &str, name: &str| {
        let id = env.unique(name);
        let out = run(rt_with_leaked_dir(&env, fd).args([
            "run",
            "--preserve-fds",
            preserve,
            "--bundle",
            bundle.path().to_str().unwrap(),
            &id,
        ]));
        rt_run(&env, &["delete", "--force", &id]);
        out
    };

    // Leaked above the preserved range: the container must not see it at all.
    with_cwd(&bundle, "/proc/self/fd/42");
    let out = run_leaking(42, "0", "leak");
    assert_confined("run with fd 42 leaked", &out, None);

    // Handed on with --preserve-fds: the process gets it, but never as its working directory.
    with_cwd(&bundle, "/proc/self/fd/3");
    let out = run_leaking(3, "1", "pres");
    assert_confined("run --preserve-fds 1 with cwd on fd 3", &out, None);

    // A preserved descriptor still reaches the process, open (the fix must not close it).
    with_cwd(&bundle, "/");
    bundle.args(&["sh", "-c", "ls -a /proc/self/fd/3/"]);
    let out = run_leaking(3, "1", "pass");
    out.assert_success();
    assert!(out.stdout.lines().any(|l| l == "host-file"), "{out:?}");
}

#[test]
fn a_cwd_that_is_missing_is_created_inside_the_rootfs_even_through_symlinks() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("cwd-create");
    let bundle = marked_bundle(&env, &["sh", "-c", "pwd; ls -a /"]);
    // An absolute symlink in the image must resolve inside the rootfs, not on the host.
    std::os::unix::fs::symlink("/srv/data", bundle.rootfs().join("link")).unwrap();
    with_cwd(&bundle, "/link/app/work");
    let out = run_bundle(&env, &bundle, "mk");
    out.assert_success();
    assert_eq!(
        out.stdout.lines().next(),
        Some("/srv/data/app/work"),
        "{out:?}"
    );
    assert!(bundle.rootfs().join("srv/data/app/work").is_dir());
    assert!(!std::path::Path::new("/srv/data/app/work").exists());
}

/// The capability sets of the process `exec --cap CAP_NET_RAW` starts, as /proc shows them.
fn exec_cap_status(env: &TestEnv, id: &str, user: &str) -> String {
    let out = rt_run(
        env,
        &[
            "exec",
            "--cap",
            "CAP_NET_RAW",
            "--user",
            user,
            id,
            "cat",
            "/proc/self/status",
        ],
    );
    out.assert_success();
    out.stdout
}

fn cap_mask(status: &str, key: &str) -> u64 {
    u64::from_str_radix(&proc_status(status, key), 16).unwrap()
}

const CAP_NET_RAW: u64 = 1 << 13;

#[test]
fn exec_cap_is_never_inheritable_or_ambient() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("exec-cap");
    let bundle = writable_bundle(&env, &["sleep", "1000"]);
    // runc's own default since 1.1.2: no inheritable or ambient capabilities.
    bundle.edit_config(|c: &mut Value| {
        let caps = c["process"]["capabilities"].as_object_mut().unwrap();
        caps.remove("ambient");
        caps.remove("inheritable");
    });
    let id = env.unique("c");
    run_detached(&env, &bundle, &id);

    let root = exec_cap_status(&env, &id, "0");
    assert_eq!(cap_mask(&root, "CapInh"), 0, "{root}");
    assert_eq!(cap_mask(&root, "CapAmb"), 0, "{root}");
    for set in ["CapBnd", "CapPrm", "CapEff"] {
        assert_ne!(cap_mask(&root, set) & CAP_NET_RAW, 0, "{set}: {root}");
    }
    // An unprivileged program loses it at execve, as it would have without --cap.
    let user = exec_cap_status(&env, &id, "1000");
    for set in ["CapInh", "CapAmb", "CapPrm", "CapEff"] {
        assert_eq!(cap_mask(&user, set), 0, "{set}: {user}");
    }
    assert_ne!(cap_mask(&user, "CapBnd") & CAP_NET_RAW, 0, "{user}");
    force_delete(&env, &id);
}

#[test]
fn the_cwd_check_runs_before_a_profile_that_denies_getcwd() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("cwd-seccomp");
    let bundle = marked_bundle(&env, &["echo", "ran"]);
    bundle.edit_config(|c| {
        c["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO"}]
        });
    });
    let out = run_bundle(&env, &bundle, "c");
    out.assert_success();
    assert_eq!(out.stdout, "ran\n");
}
