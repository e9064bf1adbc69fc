//! Where the workspace's binaries and the built fixtures live.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use crate::process::run_timeout;

/// Building the Debian image can take minutes on a cold cache.
const FIXTURE_BUILD_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// The repository root (the Cargo workspace).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent directory")
        .to_path_buf()
}

/// Directory holding the workspace's binaries: `$BERTH_BIN_DIR` if set, else
/// the profile directory this test binary was built into (so it follows
/// `CARGO_TARGET_DIR` and the profile), else `<workspace>/target/debug`.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = env::var_os("BERTH_BIN_DIR") {
        return PathBuf::from(dir);
    }
    // Test executables live in <target>/<profile>/deps/.
    if let Ok(exe) = env::current_exe() {
        if let Some(deps) = exe.parent() {
            if deps.file_name().is_some_and(|n| n == "deps") {
                if let Some(profile) = deps.parent() {
                    return profile.to_path_buf();
                }
            }
        }
    }
    workspace_root().join("target").join("debug")
}

/// Path of a workspace binary such as `berth-runtime`.
///
/// Panics when it has not been built: the test command builds the whole
/// workspace first (`cargo build --workspace --all-targets`).
pub fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.is_file(),
        "{name}: not built at {} (run `cargo build --workspace` first, or set BERTH_BIN_DIR)",
        path.display()
    );
    path
}

/// Directory of the built fixtures (`busybox/`, `busybox-oci/`, `busybox.tar`).
///
/// Runs `tests/fixtures/build.sh` once per process; the script is locked and
/// returns at once when the fixtures are current.
pub fn fixtures() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| build_fixtures("build.sh")).clone()
}

/// Directory of the Debian minbase + nginx-light image (`debian-oci/`,
/// `debian.tar`, serving HTTP on port 80), or `None` unless `BERTH_E2E_FULL=1`.
///
/// Built once per machine by `tests/fixtures/build-debian.sh` and cached under
/// `${BERTH_DEBIAN_CACHE:-/var/cache/berth-fixtures/debian}`.
pub fn debian_fixtures() -> Option<PathBuf> {
    if env::var("BERTH_E2E_FULL").as_deref() != Ok("1") {
        return None;
    }
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    Some(
        BUILT
            .get_or_init(|| build_fixtures("build-debian.sh"))
            .clone(),
    )
}

/// Runs a fixture script, which prints nothing on stdout but the directory
/// it built into (or, for build.sh, nothing: the directory is the default).
fn build_fixtures(script: &str) -> PathBuf {
    let script = workspace_root().join("tests").join("fixtures").join(script);
    let out = run_timeout(&mut Command::new(&script), FIXTURE_BUILD_TIMEOUT);
    assert!(
        out.success(),
        "{}: fixture build failed ({}):\n{}",
        script.display(),
        out.describe_status(),
        out.stderr
    );
    PathBuf::from(out.stdout.trim())
}
