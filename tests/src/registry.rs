//! A local registry holding the fixture images, for pull and push tests.

use std::fs;
use std::path::PathBuf;

use crate::env::TestEnv;
use crate::paths::workspace_root;
use crate::process::run;

/// Debian's `docker-registry` on a free 127.0.0.1 port, storage in the
/// test's temp dir, started by `tests/fixtures/registry.sh` with the busybox
/// fixture pushed as `berth/busybox:{latest,docker,multi}`. Plain HTTP.
/// Stopped on drop; if the test process dies first, the env's clean-up
/// kills it (it carries the env's marker).
pub struct Registry {
    dir: PathBuf,
    port: u16,
}

impl Registry {
    #[track_caller]
    pub fn start(env: &TestEnv) -> Registry {
        let dir = env.path().join(format!("registry-{}", env.unique("r")));
        run(env.command(script()).arg("start").arg(&dir)).assert_success();
        let port_file = dir.join("port");
        let port = fs::read_to_string(&port_file)
            .unwrap_or_else(|e| panic!("{}: {e}", port_file.display()))
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{}: not a port: {e}", port_file.display()));
        Registry { dir, port }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`, the registry part of an image reference.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:PORT/<name>`, e.g. `reference("berth/busybox:latest")`.
    pub fn reference(&self, name: &str) -> String {
        format!("{}/{name}", self.host())
    }

    /// Where the registry keeps its blobs and its log.
    pub fn dir(&self) -> &PathBuf {
        &self.dir
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let out = run(std::process::Command::new(script())
            .arg("stop")
            .arg(&self.dir));
        if !out.success() {
            eprintln!(
                "berth-tests: stopping registry {}: {}",
                self.host(),
                out.stderr.trim()
            );
        }
    }
}

fn script() -> PathBuf {
    workspace_root().join("tests/fixtures/registry.sh")
}
