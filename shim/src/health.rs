//! Docker's HEALTHCHECK, run by the shim since Berth has no daemon: every interval the test
//! runs inside the container (the runtime's `exec`, with the init's own process settings),
//! and `<bundle>/health.json` says how it went in Docker's State.Health shape.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc::channel;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::reaper;
use crate::runtime::Runtime;
use crate::timefmt::rfc3339_nano;

pub const FILE: &str = "health.json";
/// Docker keeps the last five results, each output cut at 4 KiB.
const LOG_KEEP: usize = 5;
const OUTPUT_MAX: u64 = 4096;

#[derive(Debug, Clone, PartialEq)]
pub struct HealthConfig {
    /// What runs: `CMD` args as given, `CMD-SHELL` through `/bin/sh -c`.
    pub args: Vec<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub start_period: Duration,
    pub start_interval: Duration,
    pub retries: u32,
}

/// Docker's Healthcheck JSON (`Test`, durations in nanoseconds, 0 meaning the default);
/// None for `NONE` or no test.
pub fn parse(text: &str) -> Result<Option<HealthConfig>> {
    let v: serde_json::Value = serde_json::from_str(text).context("healthcheck JSON")?;
    let test: Vec<String> = serde_json::from_value(v["Test"].clone()).unwrap_or_default();
    let args = match test.split_first() {
        None => return Ok(None),
        Some((k, _)) if k == "NONE" => return Ok(None),
        Some((k, rest)) if k == "CMD" => rest.to_vec(),
        Some((k, rest)) if k == "CMD-SHELL" => {
            vec!["/bin/sh".into(), "-c".into(), rest.join(" ")]
        }
        Some((k, _)) => bail!("healthcheck test must start with CMD, CMD-SHELL or NONE, not {k}"),
    };
    if args.is_empty() {
        return Ok(None);
    }
    let dur = |k: &str, default: u64| {
        let ns = v[k].as_u64().unwrap_or(0);
        if ns == 0 {
            Duration::from_secs(default)
        } else {
            Duration::from_nanos(ns)
        }
    };
    Ok(Some(HealthConfig {
        args,
        interval: dur("Interval", 30),
        timeout: dur("Timeout", 30),
        start_period: dur("StartPeriod", 0),
        start_interval: dur("StartInterval", 5),
        retries: v["Retries"].as_u64().filter(|r| *r > 0).unwrap_or(3) as u32,
    }))
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
struct Probe {
    start: String,
    end: String,
    exit_code: i32,
    output: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
struct Health {
    status: &'static str,
    failing_streak: u32,
    log: Vec<Probe>,
}

fn write(bundle: &Path, h: &Health) {
    let path = bundle.join(FILE);
    let tmp = bundle.join(format!(".{FILE}.tmp"));
    let res = serde_json::to_vec_pretty(h)
        .map_err(std::io::Error::other)
        .and_then(|d| std::fs::write(&tmp, d))
        .and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(e) = res {
        tracing::warn!("write {}: {e}", path.display());
    }
}

/// Run the test once: its exit code and output, or -1 and Docker's words on a timeout.
fn probe(runtime: &Runtime, id: &str, bundle: &Path, cfg: &HealthConfig) -> (i32, String) {
    let run = || -> Result<(i32, String)> {
        let spec: serde_json::Value =
            serde_json::from_slice(&std::fs::read(bundle.join("config.json"))?)?;
        let mut process = spec["process"].clone();
        process["args"] = serde_json::json!(cfg.args);
        process["terminal"] = serde_json::json!(false);
        let proc_file = bundle.join("health-process.json");
        std::fs::write(&proc_file, serde_json::to_vec(&process)?)?;
        let pid_file = bundle.join("health.pid");
        let _ = std::fs::remove_file(&pid_file);
        let mut cmd = Command::new(&runtime.binary);
        cmd.arg("--root")
            .arg(&runtime.root)
            .arg("--log")
            .arg(&runtime.log)
            .arg("--log-format")
            .arg("json")
            .arg("exec")
            .arg("--process")
            .arg(&proc_file)
            .arg("--pid-file")
            .arg(&pid_file)
            .arg(id)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut reaped = reaper::global().spawn(&mut cmd)?;
        drop(cmd);
        let mut readers = Vec::new();
        for mut s in [
            reaped
                .child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
            reaped
                .child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            readers.push(std::thread::spawn(move || {
                let mut out = Vec::new();
                let _ = (&mut s).take(OUTPUT_MAX).read_to_end(&mut out);
                // Drain the rest so the test never blocks on a full pipe.
                let _ = std::io::copy(&mut s, &mut std::io::sink());
                out
            }));
        }
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let _ = tx.send(reaped.wait());
        });
        let exit = match rx.recv_timeout(cfg.timeout) {
            Ok(e) => e,
            Err(_) => {
                if let Some(pid) = std::fs::read_to_string(&pid_file)
                    .ok()
                    .and_then(|p| p.trim().parse::<i32>().ok())
                {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                return Ok((
                    -1,
                    format!(
                        "Health check exceeded timeout ({}s)",
                        cfg.timeout.as_secs_f64()
                    ),
                ));
            }
        };
        let mut output = Vec::new();
        for r in readers {
            output.extend(r.join().unwrap_or_default());
        }
        output.truncate(OUTPUT_MAX as usize);
        Ok((
            exit.code as i32,
            String::from_utf8_lossy(&output).into_owned(),
        ))
    };
    run().unwrap_or_else(|e| (-1, format!("{e:#}")))
}

/// The check loop for one container: `running` says whether the init runs now, and
/// since when (a restart begins a new start period).
pub fn run_loop(
    runtime: Runtime,
    id: String,
    bundle: std::path::PathBuf,
    cfg: HealthConfig,
    running: impl Fn() -> Option<SystemTime>,
    stopping: impl Fn() -> bool,
) {
    let mut health = Health {
        status: "starting",
        failing_streak: 0,
        log: Vec::new(),
    };
    let mut run_started: Option<SystemTime> = None;
    write(&bundle, &health);
    while !stopping() {
        let in_start_period = run_started
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|e| e < cfg.start_period);
        let wait = if in_start_period && health.status == "starting" {
            cfg.start_interval.min(cfg.interval)
        } else {
            cfg.interval
        };
        std::thread::sleep(wait);
        let Some(started) = running() else {
            continue;
        };
        if run_started != Some(started) {
            // A new run (first start, or a restart): health starts over.
            run_started = Some(started);
            health = Health {
                status: "starting",
                failing_streak: 0,
                log: Vec::new(),
            };
        }
        let start = SystemTime::now();
        let (code, output) = probe(&runtime, &id, &bundle, &cfg);
        if running() != Some(started) {
            continue;
        }
        health.log.push(Probe {
            start: rfc3339_nano(start),
            end: rfc3339_nano(SystemTime::now()),
            exit_code: code,
            output,
        });
        if health.log.len() > LOG_KEEP {
            health.log.remove(0);
        }
        let in_start_period = started
            .elapsed()
            .map(|e| e < cfg.start_period)
            .unwrap_or(false);
        if code == 0 {
            health.status = "healthy";
            health.failing_streak = 0;
        } else if !in_start_period {
            // Failures inside the start period do not count, as in Docker.
            health.failing_streak += 1;
            if health.failing_streak >= cfg.retries {
                health.status = "unhealthy";
            }
        }
        write(&bundle, &health);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_healthcheck_json() {
        let c = parse(r#"{"Test":["CMD-SHELL","curl -f localhost || exit 1"],"Interval":1000000000,"Retries":2}"#)
            .unwrap()
            .unwrap();
        assert_eq!(c.args, ["/bin/sh", "-c", "curl -f localhost || exit 1"]);
        assert_eq!(c.interval, Duration::from_secs(1));
        assert_eq!(c.timeout, Duration::from_secs(30));
        assert_eq!(c.retries, 2);
        let c = parse(r#"{"Test":["CMD","true"]}"#).unwrap().unwrap();
        assert_eq!(c.args, ["true"]);
        assert!(parse(r#"{"Test":["NONE"]}"#).unwrap().is_none());
        assert!(parse(r#"{"Test":["BOGUS","x"]}"#).is_err());
    }
}
