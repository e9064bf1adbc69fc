//! `stop`, `kill`, `rm`, `restart`, `pause`, `unpause`, `rename`, `wait`, `container prune`
//! and the exit command the shim runs (`container cleanup`).

use anyhow::Result;
use clap::Args;

use super::{engine_failure, report};
use crate::engine::containers::ContainerError;
use crate::engine::Engine;
use crate::format::human::size;
use crate::Failure;

#[derive(Args, Debug)]
pub struct StopArgs {
    /// Signal to send to the container
    #[arg(short, long)]
    pub signal: Option<String>,
    /// Seconds to wait before killing the container
    #[arg(short, long)]
    pub time: Option<u64>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub async fn stop(engine: &mut Engine, a: &StopArgs) -> Result<()> {
    let mut errors = Vec::new();
    for c in &a.containers {
        let r = engine
            .container(c)
            .and_then(|rec| engine.stop_container(&rec, a.time, a.signal.as_deref()));
        match r {
            Ok(()) => println!("{c}"),
            Err(e) => errors.push(engine_failure(e, 1).message),
        }
    }
    report(errors)
}

pub async fn restart(engine: &mut Engine, a: &StopArgs) -> Result<()> {
    let mut errors = Vec::new();
    for c in &a.containers {
        let r = engine.container(c).and_then(|rec| {
            engine.stop_container(&rec, a.time, a.signal.as_deref())?;
            engine.start_container(&rec, || Ok(()))?;
            engine.emit_container(&rec, "restart", &[]);
            Ok(())
        });
        match r {
            Ok(()) => println!("{c}"),
            Err(e) => errors.push(engine_failure(e, 1).message),
        }
    }
    report(errors)
}

#[derive(Args, Debug)]
pub struct KillArgs {
    /// Signal to send to the container
    #[arg(short, long, default_value = "KILL")]
    pub signal: String,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub async fn kill(engine: &mut Engine, a: &KillArgs) -> Result<()> {
    let mut errors = Vec::new();
    for c in &a.containers {
        let r = engine
            .container(c)
            .and_then(|rec| engine.kill_container(&rec, &a.signal));
        match r {
            Ok(()) => println!("{c}"),
            Err(e) => errors.push(engine_failure(e, 1).message),
        }
    }
    report(errors)
}

#[derive(Args, Debug)]
pub struct RmArgs {
    /// Force the removal of a running container (uses SIGKILL)
    #[arg(short, long)]
    pub force: bool,
    /// Remove anonymous volumes associated with the container
    #[arg(short, long)]
    pub volumes: bool,
    /// Remove the specified link
    #[arg(short, long)]
    pub link: bool,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub async fn rm(engine: &mut Engine, a: &RmArgs) -> Result<()> {
    let mut errors = Vec::new();
    for c in &a.containers {
        let r = match engine.container(c) {
            Ok(rec) => engine.remove_container(&rec.id, a.force, a.volumes).await,
            Err(e) => Err(e),
        };
        match r {
            Ok(()) => println!("{c}"),
            Err(e) => errors.push(engine_failure(e, 1).message),
        }
    }
    report(errors)
}

#[derive(Args, Debug)]
pub struct NamesArgs {
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub async fn pause(engine: &mut Engine, a: &NamesArgs, on: bool) -> Result<()> {
    let mut errors = Vec::new();
    for c in &a.containers {
        let r = engine.container(c).and_then(|rec| {
            let st = engine.state_of(&rec);
            let want = if on {
                crate::engine::containers::state::Status::Running
            } else {
                crate::engine::containers::state::Status::Paused
            };
            if st.status != want {
                return Err(ContainerError::Invalid(if on {
                    format!("container {} is not running", rec.id)
                } else {
                    format!("container {} is not paused", rec.id)
                }));
            }
            let shim = engine.shim_of(&rec.id).ok_or_else(|| {
                ContainerError::Invalid(format!("container {}: its shim is gone", rec.id))
            })?;
            if on {
                shim.pause()?;
            } else {
                shim.resume()?;
            }
            engine.emit_container(&rec, if on { "pause" } else { "unpause" }, &[]);
            Ok(())
        });
        match r {
            Ok(()) => println!("{c}"),
            Err(e) => errors.push(engine_failure(e, 1).message),
        }
    }
    report(errors)
}

pub async fn wait(engine: &mut Engine, a: &NamesArgs) -> Result<()> {
    let mut errors = Vec::new();
    for c in &a.containers {
        match engine
            .container(c)
            .and_then(|rec| engine.wait_container(&rec))
        {
            Ok(code) => println!("{code}"),
            Err(e) => errors.push(engine_failure(e, 1).message),
        }
    }
    report(errors)
}

#[derive(Args, Debug)]
pub struct RenameArgs {
    pub container: String,
    pub new_name: String,
}

pub async fn rename(engine: &mut Engine, a: &RenameArgs) -> Result<()> {
    engine
        .rename_container(&a.container, &a.new_name)
        .map_err(|e| engine_failure(e, 1).into())
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
    /// Provide filter values (e.g. "until=<timestamp>", "label=<key>")
    #[arg(long)]
    pub filter: Vec<String>,
}

pub async fn prune(engine: &mut Engine, a: &PruneArgs) -> Result<()> {
    if !a.force
        && !crate::commands::image::confirm("WARNING! This will remove all stopped containers.")
    {
        return Ok(());
    }
    let mut deleted = Vec::new();
    let mut reclaimed = 0u64;
    for rec in engine.store().all() {
        if engine.state_of(&rec).status.is_live() {
            continue;
        }
        if !super::ps::matches_filters(engine, &rec, &a.filter)? {
            continue;
        }
        reclaimed += engine.container_size(&rec.id);
        if engine.remove_container(&rec.id, false, false).await.is_ok() {
            deleted.push(rec.id);
        }
    }
    if !deleted.is_empty() {
        println!("Deleted Containers:");
        for d in &deleted {
            println!("{d}");
        }
        println!();
    }
    println!("Total reclaimed space: {}", size(reclaimed));
    Ok(())
}

/// The shim's exit command: record the last run, free the shim, remove `--rm` containers.
pub async fn cleanup(engine: &mut Engine, id: &str) -> Result<()> {
    engine
        .cleanup_container(id)
        .await
        .map_err(|e| Failure::new(1, e.to_string()).into())
}
