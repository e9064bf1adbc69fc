//! A private, self-cleaning place for one test.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU32, Ordering};

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
    /// Creates the temp dir with `root/` and `run/` inside. `name` only makes
    /// the dir easier to find when debugging.
    pub fn new(name: &str) -> TestEnv {
        let counter = COUNTER.fetch_add(1, Ordering::Relaxed);
        // The "x" keeps pid 1 counter 23 apart from pid 12 counter 3; short
        // because network interface names stop at 15 bytes.
        let prefix = format!("bt{}x{}", std::process::id(), counter);
        let base = std::env::var_os("BERTH_TEST_TMP")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let dir = base.join(format!("berth-{prefix}-{}", sanitize(name)));
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

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(40)
        .collect()
}
