//! Security properties a container must not be able to break: the init is
//! not a handle on the host's runtime binary (CVE-2019-5736), mount targets
//! that are symlinks in the image stay inside the rootfs, broken configs leave
//! nothing behind.

mod runtime_support;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::PathBuf;
use std::process::Command;

use berth_tests::{bin, require_root, run, Bundle, TestEnv};
use runtime_support::*;
use serde_json::{json, Value};

#[test]
fn the_container_process_never_runs_the_host_binary() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-exeguard");
    let bundle = Bundle::busybox(&env);
    bundle.args(&["sleep", "1000"]);
    let id = env.unique("c");
    create(&env, &bundle, &id);
    let pid = init_pid(&env, &id);
    let host_binary = fs::canonicalize(bin("berth-runtime")).unwrap();
    // While created, the init is the runtime inside the container. Either it runs from a
    // sealed memfd copy (which cannot be opened for writing), or it is the host binary
    // made non-dumpable and leaves it through a sealed trampoline at exec (main's design
    // since the exec trampoline; runtime_cve.rs drives the #!/proc/self/exe attack).
    let exe = fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    if exe.to_string_lossy().starts_with("/memfd:") {
        let write = fs::OpenOptions::new()
            .write(true)
            .open(format!("/proc/{pid}/exe"));
        assert!(write.is_err(), "the init's sealed exe opened for writing");
    }
    rt_run(&env, &["start", &id]).assert_success();
    // A trampoline may still be on its way to the user program: every step of the way is
    // something other than the host binary, and it ends at busybox.
    wait_until("the user process execs busybox", || {
        let exe = fs::read_link(format!("/proc/{pid}/exe")).unwrap();
        assert_ne!(
            exe, host_binary,
            "the container process runs the host binary"
        );
        exe.ends_with("bin/busybox")
    });
    force_delete(&env, &id);
}

/// Bind-mounts a directory onto `/link`, a symlink in the image pointing at
/// `link_target` (VICTIM = a host dir), and checks the mount landed inside
/// the rootfs and the host dir is untouched.
fn mount_onto_symlink(env: &TestEnv, link_target: &str, name: &str) {
    let bundle = writable_bundle(env, &["sh", "-c", "ls /link/"]);
    // The victim: a host directory the symlink points at if followed on the host.
    let victim = env.path().join(format!("victim-{name}"));
    fs::create_dir_all(&victim).unwrap();
    fs::write(victim.join("host-file"), "").unwrap();
    let source = env.path().join(format!("source-{name}"));
    fs::create_dir_all(&source).unwrap();
    fs::write(source.join("from-bind"), "").unwrap();
    let link_target = link_target.replace("VICTIM", victim.to_str().unwrap());
    symlink(&link_target, bundle.rootfs().join("link")).unwrap();
    let src = source.display().to_string();
    bundle.edit_config(move |c| {
        c["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/link", "type": "bind", "source": src, "options": ["rbind", "ro"]
        }))
    });
    let before = mounts_mentioning(victim.to_str().unwrap());
    let out = run_bundle(env, &bundle, name);
    out.assert_success();
    assert_eq!(
        out.stdout, "from-bind\n",
        "{link_target}: the mount did not land in the rootfs"
    );
    let victim_files: Vec<_> = fs::read_dir(&victim)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        victim_files,
        ["host-file"],
        "{link_target}: the host dir changed"
    );
    assert_eq!(mounts_mentioning(victim.to_str().unwrap()), before);
}

#[test]
fn absolute_symlink_mount_target_stays_in_the_rootfs() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-symabs");
    mount_onto_symlink(&env, "VICTIM", "abs");
}

#[test]
fn dotdot_symlink_mount_target_stays_in_the_rootfs() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-symdot");
    mount_onto_symlink(&env, "../../../../../../../../../../..VICTIM", "dotdot");
}

#[test]
fn bad_mount_and_bad_config_leave_nothing_behind() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-badmount");
    let bundle = Bundle::busybox(&env);
    let missing = env.path().join("no-such-source");
    let m = missing.display().to_string();
    bundle.edit_config(move |c| {
        c["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/data", "type": "bind", "source": m, "options": ["rbind"]
        }))
    });
    let id = env.unique("c");
    let out = run_as(&env, &bundle, &id);
    out.assert_failure_mentioning("no-such-source");
    assert_no_trace(&env, &bundle, &id);

    bundle.edit_config(|c| {
        c["mounts"] = json!([{"destination": "/x", "type": "nosuchfs", "source": "none"}])
    });
    let id = env.unique("d");
    let out = run_as(&env, &bundle, &id);
    out.assert_failure();
    assert!(
        out.stderr.contains("nosuchfs") || out.stderr.contains("/x"),
        "{}",
        out.stderr
    );
    assert_no_trace(&env, &bundle, &id);

    // A relative mount destination is refused by name.
    bundle.edit_config(|c| {
        c["mounts"] = json!([{"destination": "relative/x", "type": "tmpfs", "source": "tmpfs"}])
    });
    let id = env.unique("e");
    let out = run_as(&env, &bundle, &id);
    if !out.success() {
        assert!(out.stderr.contains("relative/x"), "{}", out.stderr);
    }
    assert_no_trace(&env, &bundle, &id);
}

#[test]
fn a_config_without_process_is_refused_at_create_and_run() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-noproc");
    let bundle = Bundle::busybox(&env);
    bundle.edit_config(|c| {
        c.as_object_mut().unwrap().remove("process");
    });
    for cmd in ["create", "run"] {
        let id = env.unique(cmd);
        let out = rt_run(
            &env,
            &[cmd, "--bundle", bundle.path().to_str().unwrap(), &id],
        );
        out.assert_failure_mentioning("process property must not be empty");
        assert_no_trace(&env, &bundle, &id);
    }
}

/// (mount point, filesystem type, source) of every line of a mountinfo text. The source is
/// what `mount` and `df` print in their first column.
fn mount_sources(mountinfo: &str) -> std::collections::BTreeMap<String, (String, String)> {
    mountinfo
        .lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let point = left.split_whitespace().nth(4)?.to_string();
            let mut r = right.split_whitespace();
            Some((point, (r.next()?.to_string(), r.next()?.to_string())))
        })
        .collect()
}

#[test]
fn masks_and_mounts_show_the_same_sources_as_runc() {
    if !require_root() || !berth_tests::require_cmds(&["runc"]) {
        return;
    }
    let env = TestEnv::new("rt-mountsrc");
    let bundle = Bundle::busybox(&env);
    bundle.args(&["cat", "/proc/self/mountinfo"]);
    // A tmpcopyup tmpfs too: its source must be the config's, as runc's mount(2) makes it.
    bundle.edit_config(|c| {
        c["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/etc", "type": "tmpfs", "source": "etc-src",
            "options": ["tmpcopyup", "nosuid"]
        }))
    });
    let ours = mount_sources(&run_bundle(&env, &bundle, "ours").assert_success().stdout);
    let runc_root = env.path().join("runc-root");
    let theirs = run(Command::new("runc")
        .arg("--root")
        .arg(&runc_root)
        .args(["run", "--bundle"])
        .arg(bundle.path())
        .arg(env.unique("runc")));
    // runc 1.1 does not know tmpcopyup (a crun extension): compare without it then.
    let theirs = if theirs.success() {
        mount_sources(&theirs.stdout)
    } else {
        bundle.edit_config(|c| {
            c["mounts"].as_array_mut().unwrap().pop();
        });
        mount_sources(
            &run(Command::new("runc")
                .arg("--root")
                .arg(&runc_root)
                .args(["run", "--bundle"])
                .arg(bundle.path())
                .arg(env.unique("runc2")))
            .assert_success()
            .stdout,
        )
    };
    for (point, want) in &theirs {
        assert_eq!(
            ours.get(point),
            Some(want),
            "mount {point}: ours {ours:?}, runc {theirs:?}"
        );
    }
    for point in ["/proc/acpi", "/sys/firmware"] {
        assert_eq!(
            ours[point],
            ("tmpfs".to_string(), "tmpfs".to_string()),
            "{point}"
        );
    }
    assert_eq!(ours["/etc"], ("tmpfs".to_string(), "etc-src".to_string()));
}

#[test]
fn device_nodes_in_the_image_are_blocked_unless_allowed() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-devices");
    let bundle = writable_bundle(
        &env,
        &["sh", "-c", "head -c1 /kmem-node >/dev/null 2>&1 && echo kmem-open; echo x > /null-node && echo null-ok; echo x > /dev/null && echo devnull-ok"],
    );
    // An image can ship device nodes; the devices cgroup must still stop them.
    let kmem = bundle.rootfs().join("kmem-node");
    let null = bundle.rootfs().join("null-node");
    berth_tests::run(
        std::process::Command::new("mknod")
            .arg(&kmem)
            .args(["c", "1", "2"]),
    )
    .assert_success();
    berth_tests::run(
        std::process::Command::new("mknod")
            .arg(&null)
            .args(["c", "1", "3"]),
    )
    .assert_success();
    let out = run_bundle(&env, &bundle, "c");
    out.assert_success();
    // /dev/kmem's numbers: denied. /dev/null's: on the default list.
    assert_eq!(out.stdout, "null-ok\ndevnull-ok\n");

    // An explicit allow rule for a custom device, created by linux.devices.
    let bundle = writable_bundle(&env, &["sh", "-c", "ls -ln /dev/fuse"]);
    bundle.edit_config(|c| {
        c["linux"]["devices"] = json!([{
            "path": "/dev/fuse", "type": "c", "major": 10, "minor": 229,
            "fileMode": 432, "uid": 0, "gid": 0
        }]);
        c["linux"]["resources"]["devices"]
            .as_array_mut()
            .unwrap()
            .push(json!({"allow": true, "type": "c", "major": 10, "minor": 229, "access": "rw"}));
    });
    let out = run_bundle(&env, &bundle, "d");
    out.assert_success();
    assert!(out.stdout.starts_with("crw-rw----"), "{}", out.stdout);
    assert!(out.stdout.contains("10, 229"), "{}", out.stdout);
}

#[test]
fn readonly_root_masked_and_readonly_paths() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-ro");
    // The fixture's spec is runc's: read-only root, /proc/timer_list and /sys/firmware masked,
    // /proc/sys read-only.
    let bundle = Bundle::busybox(&env);
    bundle.args(&[
        "sh",
        "-c",
        "touch /x 2>/dev/null; echo root=$?; echo timer_list=$(wc -c < /proc/timer_list); \
         echo firmware=$(ls /sys/firmware | wc -l); \
         (echo 1 > /proc/sys/kernel/shmmax) 2>/dev/null; echo procsys=$?; \
         touch /dev/shm/ok; echo shm=$?",
    ]);
    let out = run_bundle(&env, &bundle, "c");
    out.assert_success();
    assert_eq!(
        out.stdout, "root=1\ntimer_list=0\nfirmware=0\nprocsys=1\nshm=0\n",
        "{}",
        out.stderr
    );
    assert!(!bundle.rootfs().join("x").exists());

    // A writable root takes the write.
    bundle.edit_config(|c| c["root"]["readonly"] = json!(false));
    bundle.args(&["touch", "/x"]);
    run_bundle(&env, &bundle, "d").assert_success();
    assert!(bundle.rootfs().join("x").exists());
}

/// A tmpfs in the test's dir holding `host-file`, mounted read-only, nosuid and nodev on the
/// host. TestEnv's clean-up unmounts it even when the test fails.
fn locked_source(env: &TestEnv) -> PathBuf {
    let dir = env.path().join("locked");
    fs::create_dir(&dir).unwrap();
    run(Command::new("mount")
        .args(["-t", "tmpfs", "-o", "nosuid,nodev,size=64k", "tmpfs"])
        .arg(&dir))
    .assert_success();
    fs::write(dir.join("host-file"), "from the host\n").unwrap();
    run(Command::new("mount")
        .args(["-o", "remount,ro,nosuid,nodev"])
        .arg(&dir))
    .assert_success();
    dir
}

/// The per-mount options (mountinfo field 6) of the mount at `mountpoint` in `mountinfo`.
fn mount_options(mountinfo: &str, mountpoint: &str) -> Vec<String> {
    let line = mountinfo
        .lines()
        .rev()
        .find(|l| l.split(' ').nth(4) == Some(mountpoint))
        .unwrap_or_else(|| panic!("no mount at {mountpoint} in:\n{mountinfo}"));
    let opts = line.split(' ').nth(5).unwrap();
    opts.split(',').map(str::to_string).collect()
}

#[track_caller]
fn assert_has_options(opts: &[String], want: &[&str], what: &str) {
    for w in want {
        assert!(
            opts.iter().any(|o| o == w),
            "{what}: {w} missing from {opts:?}"
        );
    }
}

/// In a user namespace the kernel locks the flags a bind source already has: like runc, a
/// bind that does not mention them keeps them (the runtime re-adds them when the kernel
/// refuses the remount), and one that asks to clear them fails naming the mount.
#[test]
fn locked_mount_flags_survive_a_user_namespace_bind() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-locked");
    let source = locked_source(&env);
    let host_before = mount_options(
        &fs::read_to_string("/proc/self/mountinfo").unwrap(),
        source.to_str().unwrap(),
    );
    let bundle = writable_bundle(
        &env,
        &[
            "sh",
            "-c",
            "cat /locked/host-file; touch /locked/new 2>/dev/null && echo wrote; \
             cat /proc/self/mountinfo",
        ],
    );
    let with_bind = |options: Value| {
        let src = source.display().to_string();
        move |c: &mut Value| {
            c["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .push(json!({"type": "user"}));
            // Host root stays root inside: the locks come from the user namespace owning the
            // container's mount namespace, whatever the mapping.
            c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 0, "size": 65536}]);
            c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 0, "size": 65536}]);
            c["mounts"].as_array_mut().unwrap().push(json!({
                "destination": "/locked", "type": "bind", "source": src, "options": options
            }));
        }
    };

    // No flags asked for, and a flag the source lacks (noexec, which forces a remount): the
    // locked ones stay, the new one is added.
    for (name, options, want) in [
        ("plain", json!(["rbind"]), &["ro", "nosuid", "nodev"][..]),
        (
            "noexec",
            json!(["rbind", "noexec"]),
            &["ro", "nosuid", "nodev", "noexec"][..],
        ),
    ] {
        let base = bundle.config();
        bundle.edit_config(with_bind(options));
        let id = env.unique(name);
        let out = run_as(&env, &bundle, &id);
        out.assert_success();
        let (first, mountinfo) = out.stdout.split_once('\n').unwrap();
        assert_eq!(first, "from the host", "{name}: {}", out.stdout);
        assert!(
            !mountinfo.starts_with("wrote"),
            "{name}: wrote to a read-only mount"
        );
        assert_has_options(&mount_options(mountinfo, "/locked"), want, name);
        assert_no_trace(&env, &bundle, &id);
        bundle.set_config(&base);
    }

    // Asking to clear a locked flag ("rw" on a read-only source) cannot be honoured: the
    // container fails, naming the mount, and leaves nothing.
    bundle.edit_config(with_bind(json!(["rbind", "rw"])));
    let id = env.unique("rw");
    let out = run_as(&env, &bundle, &id);
    out.assert_failure();
    assert!(
        out.stderr.contains("to /locked") && out.stderr.contains("source's ro cannot be cleared"),
        "{}",
        out.stderr
    );
    assert_no_trace(&env, &bundle, &id);
    assert!(!source.join("new").exists());
    // The host's mount is as it was.
    let host_after = mount_options(
        &fs::read_to_string("/proc/self/mountinfo").unwrap(),
        source.to_str().unwrap(),
    );
    assert_eq!(host_before, host_after);
}

/// tmpcopyup into a tmpfs too small for the image's directory: the copy fails with ENOSPC
/// and the error names the mount; no mount, cgroup or state is left.
#[test]
fn tmpcopyup_into_a_too_small_tmpfs_fails_naming_the_mount() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-copyup-full");
    let bundle = writable_bundle(&env, &["true"]);
    // /bin holds the busybox binary, far more than 16 KiB.
    bundle.edit_config(|c| {
        c["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/bin", "type": "tmpfs", "source": "tmpfs",
            "options": ["tmpcopyup", "size=16k"]
        }))
    });
    let id = env.unique("c");
    let out = run_as(&env, &bundle, &id);
    out.assert_failure();
    assert!(
        out.stderr.contains("tmpcopyup of /bin") && out.stderr.contains("No space left on device"),
        "{}",
        out.stderr
    );
    assert_no_trace(&env, &bundle, &id);
    // The image's directory is untouched.
    assert!(bundle.rootfs().join("bin/busybox").is_file());
}
