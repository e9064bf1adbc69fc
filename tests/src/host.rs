//! Questions about the host a test runs on.

use std::env;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Whether the test process runs as root (euid 0).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Says why a test cannot run here and returns false, so the test returns early. With
/// `BERTH_REQUIRE_ALL=1` (CI sets it) a skip is a failure instead: libtest hides the output
/// of passing tests, and a green run must mean that every test really ran.
pub fn skip(reason: &str) -> bool {
    if env::var("BERTH_REQUIRE_ALL").as_deref() == Ok("1") {
        panic!("cannot run here: {reason} (BERTH_REQUIRE_ALL=1 makes that a failure)");
    }
    eprintln!("skipped: {reason}");
    false
}

/// Says that this host lacks what the test is about (no cgroup2 mount on a v1-only host,
/// no v1 hierarchies on a v2-only one) and returns false, so the test returns early.
/// Unlike [`skip`] this is no failure under `BERTH_REQUIRE_ALL=1`: a host property is not
/// something CI forgot to install. Check first what can be checked without the feature
/// (that the error names it, see [`crate::features`]).
pub fn host_lacks(feature: &str) -> bool {
    eprintln!("not on this host: {feature}");
    false
}

/// True when running as root; otherwise the test is skipped (see [`skip`]).
///
/// Use as `if !require_root() { return; }` at the top of a test that needs
/// namespaces, mounts or cgroups.
pub fn require_root() -> bool {
    is_root() || skip("this test needs root (namespaces, mounts, cgroups)")
}

/// True when every command is on PATH; otherwise the test is skipped (see [`skip`]).
pub fn require_cmds(cmds: &[&str]) -> bool {
    let missing: Vec<&str> = cmds.iter().copied().filter(|c| !has_cmd(c)).collect();
    missing.is_empty() || skip(&format!("not installed: {}", missing.join(", ")))
}

/// Whether an executable named `name` is on `PATH`.
pub fn has_cmd(name: &str) -> bool {
    let Some(path) = env::var_os("PATH") else {
        return false;
    };
    env::split_paths(&path).any(|dir| is_executable(&dir.join(name)))
}

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}
