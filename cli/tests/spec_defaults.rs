//! engine::spec's confinement, applied by the real runtime: a busybox bundle given Docker's
//! capabilities, seccomp profile, masked and read-only paths, mounts and device rules runs
//! ordinary commands and is refused what Docker refuses.

use std::path::Path;

use berth_cli::engine::spec::{linux_defaults, Defaults, SecurityOptions};
use berth_tests::{bin_dir, require_root, run, skip, Bundle, Output, TestEnv};
use serde_json::Value;

/// What the test needs beyond root: the runtime binary and the fixture's inputs (the
/// fixture script needs busybox and runc). Checked before `Bundle::busybox`, which would
/// panic on a failed fixture build.
fn prerequisites() -> bool {
    if !require_root() {
        return false;
    }
    let runtime = bin_dir().join("berth-runtime");
    if !runtime.is_file() {
        return skip(&format!(
            "{} not built (cargo build -p berth-runtime)",
            runtime.display()
        ));
    }
    if !Path::new("/bin/busybox").exists() && std::env::var_os("BERTH_BUSYBOX").is_none() {
        return skip("no /bin/busybox for the busybox fixture");
    }
    true
}

fn security(cap_add: &[&str], cap_drop: &[&str], security_opt: &[String]) -> SecurityOptions {
    let owned = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
    SecurityOptions {
        privileged: false,
        cap_add: owned(cap_add),
        cap_drop: owned(cap_drop),
        security_opt: security_opt.to_vec(),
    }
}

/// A busybox bundle under `defaults`, sharing the host's network namespace so that
/// 127.0.0.1 answers without bringing `lo` up (which would need CAP_NET_ADMIN).
fn bundle_with(env: &TestEnv, defaults: &Defaults) -> Bundle {
    let bundle = Bundle::busybox(env);
    bundle.edit_config(|c| {
        defaults.apply_to(c);
        if let Some(ns) = c["linux"]["namespaces"].as_array_mut() {
            ns.retain(|n| n["type"] != "network");
        }
    });
    bundle
}

/// Runs `sh -c script` in a new container of `bundle`.
fn sh(env: &TestEnv, bundle: &Bundle, script: &str) -> Output {
    bundle.args(&["sh", "-c", script]);
    run(env
        .oci_runtime(bin_dir().join("berth-runtime"))
        .args(["run", "--bundle"])
        .arg(bundle.path())
        .arg(env.unique("c")))
}

#[track_caller]
fn assert_refused(out: &Output, needle: &str) {
    out.assert_failure();
    let all = format!("{}{}", out.stdout, out.stderr).to_lowercase();
    assert!(
        all.contains(&needle.to_lowercase()),
        "{}: expected {needle:?} in\nstdout: {}\nstderr: {}",
        out.command,
        out.stdout,
        out.stderr
    );
}

#[test]
fn default_confinement_runs_ordinary_commands_and_refuses_the_rest() {
    if !prerequisites() {
        return;
    }
    let env = TestEnv::new("spec-default");
    let defaults = linux_defaults(&SecurityOptions::default()).expect("defaults");
    let bundle = bundle_with(&env, &defaults);

    let out = sh(&env, &bundle, "ls /");
    out.assert_success();
    assert!(out.stdout.contains("bin"), "{}", out.stdout);
    let out = sh(&env, &bundle, "echo $((6*7)) | cat");
    out.assert_success();
    assert_eq!(out.stdout, "42\n");

    // Docker's default set is 0xa80425fb
    let out = sh(&env, &bundle, "grep CapEff /proc/self/status");
    out.assert_success();
    assert_eq!(
        out.stdout.split_whitespace().nth(1),
        Some("00000000a80425fb")
    );

    // a raw ICMP socket: CAP_NET_RAW, and socket(AF_INET) passes the filter
    sh(&env, &bundle, "ping -c1 -W5 127.0.0.1").assert_success();

    // A user namespace needs no capability from the kernel: only the filter refuses it.
    assert_refused(&sh(&env, &bundle, "unshare -U true"), "not permitted");
    assert_refused(
        &sh(&env, &bundle, "mount -t tmpfs none /mnt"),
        "permission denied",
    );

    // Masked: empty. Which of these files exist depends on the host's kernel config.
    let files = [
        "/proc/kcore",
        "/proc/timer_list",
        "/proc/interrupts",
        "/proc/keys",
    ];
    let on_host: Vec<&str> = files
        .into_iter()
        .filter(|f| Path::new(f).exists())
        .collect();
    assert!(!on_host.is_empty(), "none of {files:?} on this host");
    let script: String = on_host
        .iter()
        .map(|f| format!("wc -c < {f}; "))
        .chain(["ls /sys/firmware | wc -l".to_string()])
        .collect();
    let out = sh(&env, &bundle, &script);
    out.assert_success();
    assert_eq!(
        out.stdout.split_whitespace().collect::<Vec<_>>(),
        vec!["0"; on_host.len() + 1],
        "sizes of {on_host:?} and entries of /sys/firmware"
    );
    // read-only
    assert_refused(
        &sh(&env, &bundle, "echo 1 > /proc/sys/vm/drop_caches"),
        "read-only file system",
    );
    // /sys read-only, /dev/shm a 64m tmpfs
    let out = sh(&env, &bundle, "grep -E ' /sys | /dev/shm ' /proc/mounts");
    out.assert_success();
    assert!(
        out.stdout.contains("sysfs /sys sysfs ro,"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("size=65536k"), "{}", out.stdout);
}

#[test]
fn capabilities_unlock_their_syscalls_and_unconfined_lifts_the_filter() {
    if !prerequisites() {
        return;
    }
    let env = TestEnv::new("spec-caps");

    let admin = linux_defaults(&security(&["sys_admin"], &[], &[])).expect("defaults");
    let bundle = bundle_with(&env, &admin);
    sh(&env, &bundle, "unshare -U true").assert_success();

    let unconfined =
        linux_defaults(&security(&[], &[], &["seccomp=unconfined".into()])).expect("defaults");
    let bundle = bundle_with(&env, &unconfined);
    sh(&env, &bundle, "unshare -U true").assert_success();

    let dropped = linux_defaults(&security(&[], &["ALL"], &[])).expect("defaults");
    let bundle = bundle_with(&env, &dropped);
    let out = sh(&env, &bundle, "grep CapEff /proc/self/status");
    out.assert_success();
    assert_eq!(
        out.stdout.split_whitespace().nth(1),
        Some("0000000000000000")
    );
    assert_refused(&sh(&env, &bundle, "chown 1 /dev/shm"), "not permitted");
}

#[test]
fn docker_format_profile_file_applies() {
    if !prerequisites() {
        return;
    }
    let env = TestEnv::new("spec-profile");
    let profile = env.path().join("profile.json");
    std::fs::write(
        &profile,
        r#"{
            "defaultAction": "SCMP_ACT_ALLOW",
            "archMap": [
                {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
                {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}
            ],
            "syscalls": [
                {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
                {"names": ["symlink", "symlinkat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
                 "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"names": ["unlink", "unlinkat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
                 "includes": {"caps": ["CAP_SYS_ADMIN"]}}
            ]
        }"#,
    )
    .expect("write profile");
    let opt = format!("seccomp={}", profile.display());
    let defaults = linux_defaults(&security(&[], &[], &[opt])).expect("defaults");
    let seccomp: &Value = defaults.seccomp.as_ref().expect("a profile");
    assert_eq!(seccomp["syscalls"].as_array().unwrap().len(), 2);
    let bundle = bundle_with(&env, &defaults);

    assert_refused(&sh(&env, &bundle, "mkdir /dev/shm/d"), "not permitted");
    assert_refused(
        &sh(&env, &bundle, "ln -s x /dev/shm/l"),
        "permission denied",
    );
    // the unlink rule needs CAP_SYS_ADMIN, which the container lacks
    sh(&env, &bundle, "touch /dev/shm/f && rm /dev/shm/f && ls /").assert_success();
}

#[test]
fn privileged_sees_host_devices_and_unmasked_paths() {
    if !prerequisites() {
        return;
    }
    let env = TestEnv::new("spec-priv");
    let defaults = linux_defaults(&SecurityOptions {
        privileged: true,
        ..Default::default()
    })
    .expect("defaults");
    assert!(defaults.seccomp.is_none());
    let bundle = bundle_with(&env, &defaults);
    let out = sh(
        &env,
        &bundle,
        "grep ' /sys ' /proc/mounts; test -n \"$(cat /proc/interrupts)\" && echo interrupts; unshare -U true && echo userns",
    );
    out.assert_success();
    assert!(
        out.stdout.contains("sysfs /sys sysfs rw,"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("interrupts"), "{}", out.stdout);
    assert!(out.stdout.contains("userns"), "{}", out.stdout);
    // one host device that is not among the runtime's defaults
    if let Some(dev) = defaults
        .devices
        .iter()
        .find(|d| d.path.starts_with("/dev/loop") || d.path == "/dev/fuse")
    {
        let out = sh(&env, &bundle, &format!("test -e {}", dev.path));
        out.assert_success();
    }
}
