//! CVE-2019-5736: a container must never get a writable handle on the host's runtime binary.
//! The image below turns its entrypoint into `#!/proc/self/exe`: with a vulnerable runtime the
//! kernel would run the runtime's own host binary inside the container (it would print its
//! version), from where it could reopen the binary for writing once the runtime exits.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use berth_tests::{bin, require_root, run, run_timeout, Bundle, TestEnv};

/// The image gets the host's shared libraries, so that a vulnerable runtime's binary would
/// really start inside it (as it did against images with glibc in the original exploit).
fn add_host_libraries(rootfs: &std::path::Path, binary: &std::path::Path) {
    let out = std::process::Command::new("ldd")
        .arg(binary)
        .output()
        .unwrap();
    for word in String::from_utf8_lossy(&out.stdout).split_whitespace() {
        if word.starts_with('/') {
            let src = std::path::Path::new(word);
            let dst = rootfs.join(word.trim_start_matches('/'));
            fs::create_dir_all(dst.parent().unwrap()).unwrap();
            fs::copy(src, &dst).unwrap();
        }
    }
}

fn evil_bundle(env: &TestEnv) -> Bundle {
    let bundle = Bundle::busybox(env);
    let evil = bundle.rootfs().join("evil");
    fs::write(&evil, "#!/proc/self/exe\n").unwrap();
    fs::set_permissions(&evil, fs::Permissions::from_mode(0o755)).unwrap();
    add_host_libraries(&bundle.rootfs(), &bin("berth-runtime"));
    bundle.args(&["/evil", "--version"]);
    bundle
}

/// The binary's digest; a failed sha256sum panics, since two empty digests would compare equal.
#[track_caller]
fn sha256(path: &std::path::Path) -> String {
    let out = run(std::process::Command::new("sha256sum").arg(path));
    out.assert_success();
    out.stdout
        .split_whitespace()
        .next()
        .unwrap_or_else(|| panic!("sha256sum {}: no digest", path.display()))
        .to_string()
}

#[test]
fn proc_self_exe_interpreter_never_reaches_the_host_binary() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("cve-5736");
    let bundle = evil_bundle(&env);
    let runtime = bin("berth-runtime");
    let before = sha256(&runtime);
    let id = env.unique("evil");

    let out = run(env
        .oci_runtime(&runtime)
        .args(["run", "--detach", "--bundle"])
        .arg(bundle.path())
        .arg(&id));
    out.assert_success();
    // Let the container's process chase its interpreter for a while.
    std::thread::sleep(Duration::from_millis(500));
    // The script only ever re-runs itself through the trampoline, so it is still going; the
    // host binary would have answered its command line with a usage error and exited.
    let state = run(env.oci_runtime(&runtime).args(["state", &id]));
    state.assert_success();
    let state: serde_json::Value = serde_json::from_str(&state.stdout).unwrap();
    assert_eq!(state["status"], "running", "{state}");
    let pid = state["pid"].as_i64().unwrap();
    let exe = fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert!(
        !exe.to_string_lossy().contains("berth-runtime"),
        "container process runs the host runtime binary: {}",
        exe.display()
    );
    run(env.oci_runtime(&runtime).args(["delete", "--force", &id])).assert_success();
    assert_eq!(before, sha256(&runtime), "the runtime binary changed");
}

#[test]
fn foreground_run_of_a_proc_self_exe_script_does_not_run_the_runtime() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("cve-5736-fg");
    let bundle = evil_bundle(&env);
    let id = env.unique("evfg");
    let out = run_timeout(
        env.oci_runtime(bin("berth-runtime"))
            .args(["run", "--bundle"])
            .arg(bundle.path())
            .arg(&id),
        Duration::from_secs(2),
    );
    // The host binary would answer its command line (a usage error); the trampoline only
    // ever re-runs the container's own script, so the run is still going when killed. A run
    // that ended on its own failed for some other reason and proved nothing.
    assert!(out.timed_out, "{out:?}");
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(
        !all.contains("Usage") && !all.contains("berth-runtime version"),
        "the host runtime ran inside the container: {all}"
    );
    run(env
        .oci_runtime(bin("berth-runtime"))
        .args(["delete", "--force", &id]));
}
