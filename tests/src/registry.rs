//! A local registry holding the fixture images, for pull and push tests.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

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

impl Registry {
    /// Like [`Registry::start`], for a registry with basic auth against `htpasswd` (bcrypt
    /// hashes, as `htpasswd -B` writes); the fixtures are pushed as `user`.
    #[track_caller]
    pub fn start_with_htpasswd(
        env: &TestEnv,
        htpasswd: &Path,
        user: &str,
        password: &str,
    ) -> Registry {
        Registry::start_with_env(
            env,
            &[
                ("BERTH_REGISTRY_HTPASSWD", htpasswd.as_os_str().to_owned()),
                ("BERTH_REGISTRY_CREDS", format!("{user}:{password}").into()),
            ],
        )
    }

    /// Like [`Registry::start`], for a registry with distribution's token auth: clients get
    /// tokens from `realm` (a token server the test runs, up before this is called) for
    /// `service`; the registry trusts tokens from `issuer` signed by a key whose certificate
    /// is in the PEM file `root_cert_bundle`. The fixtures are pushed as `user`.
    #[track_caller]
    pub fn start_with_token(
        env: &TestEnv,
        realm: &str,
        service: &str,
        issuer: &str,
        root_cert_bundle: &Path,
        user: &str,
        password: &str,
    ) -> Registry {
        Registry::start_with_env(
            env,
            &[
                ("BERTH_REGISTRY_TOKEN_REALM", realm.into()),
                ("BERTH_REGISTRY_TOKEN_SERVICE", service.into()),
                ("BERTH_REGISTRY_TOKEN_ISSUER", issuer.into()),
                (
                    "BERTH_REGISTRY_TOKEN_CERTS",
                    root_cert_bundle.as_os_str().to_owned(),
                ),
                ("BERTH_REGISTRY_CREDS", format!("{user}:{password}").into()),
            ],
        )
    }

    #[track_caller]
    fn start_with_env(env: &TestEnv, vars: &[(&str, OsString)]) -> Registry {
        let dir = env.path().join(format!("registry-{}", env.unique("r")));
        let mut cmd = env.command(script());
        cmd.arg("start").arg(&dir).envs(vars.iter().cloned());
        run(&mut cmd).assert_success();
        let port_file = dir.join("port");
        let port = fs::read_to_string(&port_file)
            .unwrap_or_else(|e| panic!("{}: {e}", port_file.display()))
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{}: not a port: {e}", port_file.display()));
        Registry { dir, port }
    }
}
