//! `update`: new limits (at once on a running container) or restart policy (from the next
//! start) for one or more containers.

use anyhow::Result;
use clap::Args;

use super::create::parse_bytes;
use super::{engine_failure, report};
use crate::engine::containers::record::RestartPolicy;
use crate::engine::containers::update::UpdateRequest;
use crate::engine::Engine;
use crate::Failure;

#[derive(Args, Debug)]
pub struct UpdateArgs {
    /// Memory limit
    #[arg(short, long)]
    pub memory: Option<String>,
    /// Swap limit equal to memory plus swap: -1 to enable unlimited swap
    #[arg(long)]
    pub memory_swap: Option<String>,
    /// Number of CPUs
    #[arg(long)]
    pub cpus: Option<String>,
    /// CPU shares (relative weight)
    #[arg(short = 'c', long)]
    pub cpu_shares: Option<i64>,
    /// CPUs in which to allow execution (0-3, 0,1)
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    /// Tune container pids limit (set -1 for unlimited)
    #[arg(long, allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Restart policy to apply when a container exits
    #[arg(long)]
    pub restart: Option<String>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

fn fail(msg: impl Into<String>) -> Failure {
    Failure::new(1, msg.into())
}

pub fn parse_restart(s: &str) -> Result<RestartPolicy, Failure> {
    let (name, max) = match s.split_once(':') {
        Some((n, m)) => (
            n,
            m.parse::<u32>().map_err(|_| {
                fail(format!(
                    "invalid restart policy format: maximum retry count must be an integer: {m}"
                ))
            })?,
        ),
        None => (s, 0),
    };
    if !matches!(name, "no" | "always" | "on-failure" | "unless-stopped") {
        return Err(fail(format!("invalid restart policy format: unknown policy '{name}'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'")));
    }
    if max > 0 && name != "on-failure" {
        return Err(fail(
            "invalid restart policy format: maximum retry count can only be used with 'on-failure'",
        ));
    }
    Ok(RestartPolicy {
        name: name.to_string(),
        maximum_retry_count: max,
    })
}

fn request(a: &UpdateArgs) -> Result<UpdateRequest, Failure> {
    let bytes = |s: &str| parse_bytes(s).map_err(|e| fail(e.message));
    let mut r = UpdateRequest::default();
    if let Some(m) = &a.memory {
        let m = bytes(m)?;
        if m > 0 && m < 6 << 20 {
            return Err(fail(
                "Error response from daemon: Minimum memory limit allowed is 6MB",
            ));
        }
        r.memory = Some(m);
    }
    if let Some(s) = &a.memory_swap {
        r.memory_swap = Some(if s == "-1" { -1 } else { bytes(s)? });
    }
    if let Some(cpus) = &a.cpus {
        let n: f64 = cpus.parse().map_err(|_| {
            fail(format!("invalid argument \"{cpus}\" for \"--cpus\" flag: failed to parse {cpus} as a rational number"))
        })?;
        let online = crate::engine::containers::stats::online_cpus();
        if n < 0.01 || n > online as f64 {
            return Err(fail(format!(
                "Error response from daemon: Range of CPUs is from 0.01 to {online}.00, as there are only {online} CPUs available"
            )));
        }
        r.nano_cpus = Some((n * 1e9) as i64);
    }
    r.cpu_shares = a.cpu_shares;
    r.cpuset_cpus = a.cpuset_cpus.clone();
    r.pids_limit = a.pids_limit;
    if let Some(p) = &a.restart {
        r.restart = Some(parse_restart(p)?);
    }
    Ok(r)
}

pub async fn update(engine: &mut Engine, a: &UpdateArgs) -> Result<()> {
    if a.memory.is_none()
        && a.memory_swap.is_none()
        && a.cpus.is_none()
        && a.cpu_shares.is_none()
        && a.cpuset_cpus.is_none()
        && a.pids_limit.is_none()
        && a.restart.is_none()
    {
        return Err(fail("you must provide one or more flags when using this command").into());
    }
    let req = request(a)?;
    let mut errors = Vec::new();
    for c in &a.containers {
        match engine.update_container(c, &req) {
            Ok(_) => println!("{c}"),
            Err(e) => errors.push(engine_failure(e, 1).message),
        }
    }
    report(errors)
}
