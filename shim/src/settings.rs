//! Berth-specific settings, read from annotations in the bundle's config.json. containerd
//! never sets these, so a container started by containerd gets plain shim behaviour.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use nix::sys::signal::Signal;

use crate::restart::RestartPolicy;

pub const LOG_PATH: &str = "io.berth.log.path";
pub const LOG_MAX_SIZE: &str = "io.berth.log.max-size";
pub const LOG_MAX_FILE: &str = "io.berth.log.max-file";
pub const RESTART: &str = "io.berth.restart";
pub const STOP_SIGNAL: &str = "io.berth.stop-signal";
pub const STOP_TIMEOUT: &str = "io.berth.stop-timeout";
pub const ATTACH_SOCKET: &str = "io.berth.attach.socket";
pub const OPEN_STDIN: &str = "io.berth.stdin";
pub const STDIN_ONCE: &str = "io.berth.stdin-once";
pub const SHIM_SOCKET: &str = "io.berth.shim.socket";
pub const RUNTIME_ROOT: &str = "io.berth.runtime.root";
pub const EXIT_COMMAND: &str = "io.berth.exit-command";
pub const EVENT_COMMAND: &str = "io.berth.event-command";
pub const HEALTHCHECK: &str = "io.berth.healthcheck";

#[derive(Debug, Clone)]
pub struct Settings {
    pub log_path: Option<PathBuf>,
    pub log_max_size: Option<u64>,
    pub log_max_files: u32,
    pub restart: RestartPolicy,
    pub stop_signal: Signal,
    pub stop_timeout: Duration,
    pub attach_socket: Option<PathBuf>,
    pub open_stdin: bool,
    pub stdin_once: bool,
    pub shim_socket: Option<PathBuf>,
    pub runtime_root: Option<PathBuf>,
    /// Run (argv) once the init has exited for good, after the restart policy had its say:
    /// how a daemonless engine learns of the exit (podman's conmon has the same).
    pub exit_command: Vec<String>,
    /// Run (argv, then `die CODE` or `start`) around each restart the restart policy makes:
    /// the engine is not there to see them, and Docker reports them as `die` and `start`.
    pub event_command: Vec<String>,
    /// Docker's HEALTHCHECK, run by the shim (health.rs).
    pub healthcheck: Option<crate::health::HealthConfig>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            log_path: None,
            log_max_size: None,
            log_max_files: 1,
            restart: RestartPolicy::No,
            stop_signal: Signal::SIGTERM,
            stop_timeout: Duration::from_secs(10),
            attach_socket: None,
            open_stdin: false,
            stdin_once: false,
            shim_socket: None,
            runtime_root: None,
            exit_command: Vec::new(),
            event_command: Vec::new(),
            healthcheck: None,
        }
    }
}

impl Settings {
    pub fn load(bundle: &Path) -> Result<Settings> {
        let path = bundle.join("config.json");
        let text = std::fs::read(&path).with_context(|| format!("read {}", path.display()))?;
        // Only the annotations: no tree of the whole spec in a process with a 2 MiB budget.
        #[derive(serde::Deserialize)]
        struct Annotations {
            #[serde(default)]
            annotations: Option<serde_json::Value>,
        }
        let spec: Annotations =
            serde_json::from_slice(&text).with_context(|| format!("parse {}", path.display()))?;
        Settings::from_annotations(spec.annotations.as_ref())
            .with_context(|| format!("annotations in {}", path.display()))
    }

    fn from_annotations(ann: Option<&serde_json::Value>) -> Result<Settings> {
        let mut s = Settings::default();
        let Some(ann) = ann.and_then(|a| a.as_object()) else {
            return Ok(s);
        };
        let get = |k: &str| {
            ann.get(k)
                .and_then(|v| v.as_str())
                .filter(|v| !v.is_empty())
        };
        s.log_path = get(LOG_PATH).map(PathBuf::from);
        if let Some(v) = get(LOG_MAX_SIZE) {
            s.log_max_size = Some(parse_size(v).with_context(|| format!("{LOG_MAX_SIZE}={v}"))?);
        }
        if let Some(v) = get(LOG_MAX_FILE) {
            s.log_max_files = v
                .parse::<u32>()
                .ok()
                .filter(|n| *n >= 1)
                .with_context(|| format!("{LOG_MAX_FILE}={v}: want a whole number >= 1"))?;
        }
        if let Some(v) = get(RESTART) {
            s.restart = v.parse().with_context(|| format!("{RESTART}={v}"))?;
        }
        if let Some(v) = get(STOP_SIGNAL) {
            s.stop_signal = parse_signal(v).with_context(|| format!("{STOP_SIGNAL}={v}"))?;
        }
        if let Some(v) = get(STOP_TIMEOUT) {
            let secs: u64 = v
                .parse()
                .with_context(|| format!("{STOP_TIMEOUT}={v}: want whole seconds"))?;
            s.stop_timeout = Duration::from_secs(secs);
        }
        s.attach_socket = get(ATTACH_SOCKET).map(PathBuf::from);
        s.open_stdin = get(OPEN_STDIN) == Some("true");
        s.stdin_once = get(STDIN_ONCE) == Some("true");
        s.shim_socket = get(SHIM_SOCKET).map(PathBuf::from);
        s.runtime_root = get(RUNTIME_ROOT).map(PathBuf::from);
        if let Some(v) = get(EXIT_COMMAND) {
            s.exit_command = serde_json::from_str(v)
                .with_context(|| format!("{EXIT_COMMAND}={v}: want a JSON array of strings"))?;
        }
        if let Some(v) = get(EVENT_COMMAND) {
            s.event_command = serde_json::from_str(v)
                .with_context(|| format!("{EVENT_COMMAND}={v}: want a JSON array of strings"))?;
        }
        if let Some(v) = get(HEALTHCHECK) {
            s.healthcheck =
                crate::health::parse(v).with_context(|| format!("{HEALTHCHECK}={v}"))?;
        }
        Ok(s)
    }
}

/// Docker's size syntax: a number with an optional k/m/g suffix (powers of 1024).
pub fn parse_size(v: &str) -> Result<u64> {
    let v = v.trim().to_ascii_lowercase();
    let v = v.strip_suffix('b').unwrap_or(&v);
    let (num, mult) = match v.chars().last() {
        Some('k') => (&v[..v.len() - 1], 1024),
        Some('m') => (&v[..v.len() - 1], 1024 * 1024),
        Some('g') => (&v[..v.len() - 1], 1024 * 1024 * 1024),
        _ => (v, 1),
    };
    let n: u64 = num
        .parse()
        .context("want a size such as 10m, 512k or 1048576")?;
    if n == 0 {
        bail!("size must be above zero");
    }
    Ok(n * mult)
}

/// A signal by name (`SIGTERM`, `TERM`) or number (`15`).
pub fn parse_signal(v: &str) -> Result<Signal> {
    if let Ok(n) = v.parse::<i32>() {
        return Signal::try_from(n).with_context(|| format!("no signal numbered {n}"));
    }
    let up = v.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    name.parse::<Signal>()
        .with_context(|| format!("unknown signal {v}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10m").unwrap(), 10 * 1024 * 1024);
        assert_eq!(parse_size("512k").unwrap(), 512 * 1024);
        assert_eq!(parse_size("100").unwrap(), 100);
        assert!(parse_size("x").is_err());
        assert!(parse_size("0").is_err());
    }

    #[test]
    fn signals() {
        assert_eq!(parse_signal("SIGQUIT").unwrap(), Signal::SIGQUIT);
        assert_eq!(parse_signal("usr1").unwrap(), Signal::SIGUSR1);
        assert_eq!(parse_signal("9").unwrap(), Signal::SIGKILL);
        assert!(parse_signal("SIGNOPE").is_err());
    }

    #[test]
    fn annotations() {
        let v = serde_json::json!({
            LOG_PATH: "/l/c.log", LOG_MAX_SIZE: "1k", LOG_MAX_FILE: "3",
            RESTART: "on-failure:2", STOP_SIGNAL: "SIGINT", STOP_TIMEOUT: "3",
            OPEN_STDIN: "true", EXIT_COMMAND: "[\"/bin/berth\",\"cleanup\"]",
            EVENT_COMMAND: "[\"/bin/berth\",\"event\"]",
        });
        let s = Settings::from_annotations(Some(&v)).unwrap();
        assert_eq!(s.log_path.as_deref(), Some(Path::new("/l/c.log")));
        assert_eq!(s.log_max_size, Some(1024));
        assert_eq!(s.log_max_files, 3);
        assert_eq!(s.restart, RestartPolicy::OnFailure(Some(2)));
        assert_eq!(s.stop_signal, Signal::SIGINT);
        assert_eq!(s.stop_timeout, Duration::from_secs(3));
        assert!(s.open_stdin);
        assert_eq!(s.exit_command, ["/bin/berth", "cleanup"]);
        assert_eq!(s.event_command, ["/bin/berth", "event"]);
        let bad = serde_json::json!({ RESTART: "sometimes" });
        assert!(Settings::from_annotations(Some(&bad)).is_err());
    }
}
