//! `start`: release a created container's init, which is blocked opening the exec fifo.

use std::fs;
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{bail, Context, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::commands::delete;
use crate::hooks;
use crate::state::{self, Container, Status, EXEC_FIFO};

pub fn start(root: &Path, id: &str) -> Result<()> {
    start_loaded(root, &Container::load(root, id)?)
}

/// `start` for a container already in memory (`run` has just created it).
pub fn start_loaded(root: &Path, c: &Container) -> Result<()> {
    let id = &c.id;
    match c.status(root) {
        Status::Created => {}
        Status::Stopped => bail!("cannot start a container that has stopped"),
        s => bail!("cannot start an already {s} container {id}"),
    }
    let fifo = state::dir(root, id).join(EXEC_FIFO);
    // Non-blocking open succeeds without a writer; the init's blocking open then returns and
    // it writes one byte, which tells us it is past the point of no return.
    let mut f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&fifo)
        .with_context(|| format!("open exec fifo {}", fifo.display()))?;
    loop {
        let mut fds = [PollFd::new(f.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(100u16)) {
            Ok(n) if n > 0 => {
                let mut b = [0u8; 1];
                match std::io::Read::read(&mut f, &mut b) {
                    Ok(1) => break,
                    // POLLHUP before data: the writer went away without writing.
                    Ok(_) => {
                        if !c.init_alive() {
                            bail!("container init exited before start");
                        }
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e).context("read exec fifo"),
                }
            }
            Ok(_) => {
                if !c.init_alive() {
                    bail!("container init exited before start");
                }
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e).context("wait on exec fifo"),
        }
    }
    // Then wait for EOF: the init's write end closes at execve (or when it dies). Bytes
    // before EOF are the init's reason for not starting (a failed startContainer hook).
    let mut failure = Vec::new();
    loop {
        let mut fds = [PollFd::new(f.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(100u16)) {
            Ok(n) if n > 0 => {
                let mut b = [0u8; 512];
                match std::io::Read::read(&mut f, &mut b) {
                    Ok(0) => break,
                    Ok(n) => failure.extend_from_slice(&b[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e).context("read exec fifo"),
                }
            }
            Ok(_) if !c.init_alive() => break,
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e).context("wait on exec fifo"),
        }
    }
    let _ = fs::remove_file(&fifo);
    if !failure.is_empty() {
        // runtime-spec: stop the container. The init is already on its way out; make sure it
        // is gone so `state` says stopped as soon as we return.
        let _ = delete::kill_and_wait(c);
        bail!(
            "container {id} did not start: {}",
            String::from_utf8_lossy(&failure)
        );
    }
    let hk = c.spec.hooks().clone().unwrap_or_default();
    if let Err(e) = hooks::run_all(
        hk.poststart().as_ref(),
        "poststart",
        &c.hook_state(Status::Running),
    ) {
        // runtime-spec: a failing poststart hook is logged; the container keeps running.
        tracing::warn!("{e:#}");
    }
    Ok(())
}
