//! A private, self-cleaning place for one test.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Once;

use crate::cleanup::{self, CleanupReport};

/// Environment variable set on every process a [`TestEnv`] starts; clean-up
/// kills whatever still carries it, including daemons those processes forked.
pub(crate) const MARKER_VAR: &str = "BERTH_TEST_ID";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// One test's temp dir, Berth roots and name prefix. Dropping it (also while
/// unwinding from a panic) kills the processes it started, unmounts what is
/// mounted under its dir, and removes host objects named with its prefix.
pub struct TestEnv {
    name: String,
    prefix: String,
    dir: PathBuf,
    cleaned: bool,
}

impl TestEnv {
    /// Creates the temp dir `berth-<prefix>` with `root/` and `run/` inside.
    /// `name` goes in its `test-name` file, to find a test's dir when
    /// debugging.
    pub fn new(name: &str) -> TestEnv {
        let counter = COUNTER.fetch_add(1, Ordering::Relaxed);
        // The "x" keeps pid 1 counter 23 apart from pid 12 counter 3; short
        // because network interface names stop at 15 bytes.
        let prefix = format!("bt{}x{}", std::process::id(), counter);
        let base = std::env::var_os("BERTH_TEST_TMP")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        static SWEPT: Once = Once::new();
        SWEPT.call_once(|| sweep_dead_runs(&base));
        // Short on purpose: unix socket paths (shim, daemon sockets under
        // run()) must fit in 108 bytes. The test's name goes in a file.
        let dir = base.join(format!("berth-{prefix}"));
        if dir.exists() {
            // Left by an earlier process with the same pid that was killed
            // before it could clean up.
            if let Err(e) = cleanup::remove_tree(&dir) {
                panic!("stale test dir: {e}");
            }
        }
        fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("{}: cannot create: {e}", dir.display()));
        // Containers with a user namespace must be able to reach their bundle.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("{}: chmod: {e}", dir.display()));
        let env = TestEnv {
            name: name.to_string(),
            prefix,
            dir,
            cleaned: false,
        };
        for sub in [env.root(), env.run()] {
            fs::create_dir_all(&sub)
                .unwrap_or_else(|e| panic!("{}: cannot create: {e}", sub.display()));
        }
        let name_file = env.dir.join("test-name");
        fs::write(&name_file, format!("{name}\n"))
            .unwrap_or_else(|e| panic!("{}: cannot write: {e}", name_file.display()));
        env
    }

    /// The test's name as given to [`TestEnv::new`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The temp dir everything of this test lives in.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// `BERTH_ROOT` for this test (like `/var/lib/berth`).
    pub fn root(&self) -> PathBuf {
        self.dir.join("root")
    }

    /// `BERTH_RUN` for this test (like `/run/berth`).
    pub fn run(&self) -> PathBuf {
        self.dir.join("run")
    }

    /// `bt<pid>x<n>`: in the name of everything this test creates on the host.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A host-unique name for `name`: `<prefix>-<name>`. Clean-up finds
    /// cgroups, netns, links and nft tables by it.
    pub fn unique(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }

    /// A command with `BERTH_ROOT`, `BERTH_RUN` and the clean-up marker set.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new(program);
        self.mark(&mut cmd);
        cmd
    }

    /// An OCI runtime (berth-runtime, runc, crun, youki) with its state
    /// directory (`--root`) inside this test's run dir.
    pub fn oci_runtime(&self, runtime: impl AsRef<OsStr>) -> Command {
        let mut cmd = self.command(runtime);
        cmd.arg("--root").arg(self.run().join("runtime"));
        cmd
    }

    /// Sets `BERTH_ROOT`, `BERTH_RUN` and the clean-up marker on `cmd`.
    pub fn mark<'a>(&self, cmd: &'a mut Command) -> &'a mut Command {
        cmd.env("BERTH_ROOT", self.root())
            .env("BERTH_RUN", self.run())
            .env(MARKER_VAR, &self.prefix)
    }

    /// Starts a long-running process that clean-up will kill if the test
    /// does not stop it itself.
    #[track_caller]
    pub fn spawn(&self, cmd: &mut Command) -> Child {
        self.mark(cmd)
            .spawn()
            .unwrap_or_else(|e| panic!("{:?}: cannot start: {e}", cmd.get_program()))
    }

    /// Cleans up now and says what could not be undone. Drop does the same
    /// and prints the report; call this to assert on it.
    pub fn cleanup(&mut self) -> CleanupReport {
        self.cleaned = true;
        cleanup::clean(&self.prefix, &self.dir)
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if self.cleaned {
            return;
        }
        let report = self.cleanup();
        if !report.is_clean() {
            eprintln!(
                "berth-tests: clean-up of test {:?} left things behind:\n{report}",
                self.name
            );
        }
    }
}

/// Cleans up after test processes that died without running their drops
/// (killed by a CI timeout, SIGKILL, an abort): their temp dirs name their
/// prefix, and a prefix whose pid is gone can belong to nobody else.
fn sweep_dead_runs(base: &Path) {
    let Ok(entries) = fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(prefix) = dead_run_prefix(&name) else {
            continue;
        };
        let report = cleanup::clean(&prefix, &entry.path());
        if !report.is_clean() {
            eprintln!("berth-tests: sweeping dead run {prefix} left things behind:\n{report}");
        }
    }
}

/// `berth-bt<pid>x<n>-<name>` with no live process `<pid>` → `bt<pid>x<n>`.
fn dead_run_prefix(dir_name: &str) -> Option<String> {
    let rest = dir_name.strip_prefix("berth-bt")?;
    let (pid, rest) = rest.split_once('x')?;
    let counter = rest.split_once('-').map_or(rest, |(c, _)| c);
    let pid: u32 = pid.parse().ok()?;
    counter.parse::<u32>().ok()?;
    if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
        return None;
    }
    Some(format!("bt{pid}x{counter}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_dirs_of_dead_processes_are_swept() {
        // pid_max is at most 2^22, so this pid cannot be running.
        assert_eq!(
            dead_run_prefix("berth-bt99999999x3-some_test").as_deref(),
            Some("bt99999999x3")
        );
        let me = std::process::id();
        assert_eq!(dead_run_prefix(&format!("berth-bt{me}x3-t")), None);
        assert_eq!(dead_run_prefix("berth-bt1x3-init"), None, "pid 1 is alive");
        assert_eq!(
            dead_run_prefix("berth-bt99999999x4").as_deref(),
            Some("bt99999999x4")
        );
        assert_eq!(dead_run_prefix("berth-demo.abc"), None);
        assert_eq!(dead_run_prefix("berth-btAx3-t"), None);
    }
}
