//! Private OCI bundles for a test to run and modify.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::Value;

use crate::env::TestEnv;
use crate::paths::fixtures;
use crate::process::run;

static BUNDLES: AtomicU32 = AtomicU32::new(0);

/// An OCI bundle (`config.json` + `rootfs/`) inside a test's temp dir.
#[derive(Debug, Clone)]
pub struct Bundle {
    dir: PathBuf,
}

impl Bundle {
    /// A copy of the busybox fixture bundle: `sh -c "echo hello from busybox"`,
    /// no terminal, runc's default spec otherwise.
    #[track_caller]
    pub fn busybox(env: &TestEnv) -> Bundle {
        Bundle::copy_of(env, &fixtures().join("busybox"))
    }

    /// A private copy of any bundle directory; the copy keeps symlinks,
    /// modes and ownership, so it can be changed freely.
    #[track_caller]
    pub fn copy_of(env: &TestEnv, source: &Path) -> Bundle {
        let n = BUNDLES.fetch_add(1, Ordering::Relaxed);
        let parent = env.path().join("bundles");
        fs::create_dir_all(&parent)
            .unwrap_or_else(|e| panic!("{}: cannot create: {e}", parent.display()));
        let dir = parent.join(n.to_string());
        run(Command::new("cp").arg("-a").arg(source).arg(&dir)).assert_success();
        Bundle { dir }
    }

    /// An existing bundle directory, used in place (for one the test made
    /// itself, e.g. with `umoci unpack`, inside its temp dir).
    pub fn at(dir: impl Into<PathBuf>) -> Bundle {
        Bundle { dir: dir.into() }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.json")
    }

    #[track_caller]
    pub fn config(&self) -> Value {
        let path = self.config_path();
        let text =
            fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: read: {e}", path.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()))
    }

    #[track_caller]
    pub fn set_config(&self, config: &Value) -> &Self {
        let path = self.config_path();
        let text =
            serde_json::to_string_pretty(config).expect("a serde_json::Value always serialises");
        fs::write(&path, text).unwrap_or_else(|e| panic!("{}: write: {e}", path.display()));
        self
    }

    /// Reads config.json, lets `edit` change it, writes it back.
    #[track_caller]
    pub fn edit_config(&self, edit: impl FnOnce(&mut Value)) -> &Self {
        let mut config = self.config();
        edit(&mut config);
        self.set_config(&config)
    }

    /// Sets `process.args`.
    #[track_caller]
    pub fn args(&self, args: &[&str]) -> &Self {
        self.edit_config(|c| c["process"]["args"] = args.iter().map(|a| Value::from(*a)).collect())
    }
}
