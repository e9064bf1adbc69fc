//! `delete`: remove a stopped container; with --force, kill it first.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::hooks;
use crate::state::{self, Container, Status};

pub fn delete(root: &Path, id: &str, force: bool) -> Result<()> {
    state::validate_id(id)?;
    let dir = state::dir(root, id);
    if !dir.join(state::STATE_FILE).exists() {
        // A create that died before writing state.json leaves a bare directory.
        if dir.is_dir() {
            fs::remove_dir_all(&dir).with_context(|| format!("remove {}", dir.display()))?;
            return Ok(());
        }
        if force {
            return Ok(());
        }
        bail!("container {id} does not exist");
    }
    let c = match Container::load(root, id) {
        Ok(c) => c,
        // A torn or corrupt state.json: nothing of it can be trusted, but the id must be
        // reusable. What it named (processes, cgroup) cannot be found any more; say so.
        Err(e) if force => {
            tracing::warn!("{e:#}; removing the container's state anyway");
            fs::remove_dir_all(&dir).with_context(|| format!("remove {}", dir.display()))?;
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    match c.status(root) {
        Status::Stopped => {}
        // runtime-spec: deleting a container that is not stopped (created included) is an
        // error; containerd kills a created task before deleting it.
        s if force => {
            if s == Status::Paused {
                let _ = c.cgroup().map(|cg| cg.thaw());
            }
            kill_and_wait(&c)?
        }
        s => bail!("cannot delete container {id} that is not stopped: {s}"),
    }
    destroy(root, &c)
}

/// SIGKILL every process of the container (the init last, in case it is not in the cgroup
/// any more) and wait for the init to be gone.
pub fn kill_and_wait(c: &Container) -> Result<()> {
    if let Ok(cg) = c.cgroup() {
        let _ = cg.kill_all(libc::SIGKILL);
    }
    let _ = kill(Pid::from_raw(c.pid), Signal::SIGKILL);
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.init_alive() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    if c.init_alive() {
        bail!(
            "container {} init {} did not die after SIGKILL",
            c.id,
            c.pid
        );
    }
    Ok(())
}

/// Remove the cgroup, run poststop hooks, drop the state directory.
pub fn destroy(root: &Path, c: &Container) -> Result<()> {
    if let Ok(cg) = c.cgroup() {
        let deadline = Instant::now() + Duration::from_secs(5);
        // Processes of a dying container leave the cgroup shortly after SIGKILL.
        while cg.pids().map(|p| !p.is_empty()).unwrap_or(false) && Instant::now() < deadline {
            let _ = cg.kill_all(libc::SIGKILL);
            std::thread::sleep(Duration::from_millis(5));
        }
        if let Err(e) = cg.destroy() {
            tracing::warn!("remove cgroup of container {}: {e}", c.id);
        }
    }
    let hk = c.spec.hooks().clone().unwrap_or_default();
    if let Err(e) = hooks::run_all(
        hk.poststop().as_ref(),
        "poststop",
        &c.hook_state(Status::Stopped),
    ) {
        tracing::warn!("{e:#}");
    }
    fs::remove_dir_all(state::dir(root, &c.id))?;
    Ok(())
}
