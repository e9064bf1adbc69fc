//! Questions about the host a test runs on.

use std::env;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Whether the test process runs as root (euid 0).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// True when running as root; otherwise prints why the test is skipped.
///
/// Use as `if !require_root() { return; }` at the top of a test that needs
/// namespaces, mounts or cgroups.
pub fn require_root() -> bool {
    if is_root() {
        return true;
    }
    eprintln!("skipped: this test needs root (namespaces, mounts, cgroups)");
    false
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
