//! The shim is a child subreaper: every process of its container, and every helper it runs
//! (the runtime, the publish binary, loggers), is reaped here from one `waitpid(-1)` loop.
//! Helpers register before they can exit (spawned under the registry lock), so nothing
//! else ever calls `waitpid` and no exit status is lost to a race.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use nix::errno::Errno;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// How a process ended, in the shell's convention: the exit code, or 128 + signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    pub code: u32,
    pub at: SystemTime,
}

type ExitHook = Box<dyn FnOnce(Exit) + Send>;

enum Owner {
    Command(Sender<Exit>),
    Process(ExitHook),
}

/// Exits nobody has claimed yet; a container process can exit before the runtime's pid file
/// is read, so its status waits here. Bounded, because reparented orphans land here too.
const UNCLAIMED_MAX: usize = 1024;

#[derive(Default)]
struct Registry {
    owners: HashMap<i32, Owner>,
    unclaimed: HashMap<i32, Exit>,
    unclaimed_order: VecDeque<i32>,
}

pub struct Reaper {
    registry: Mutex<Registry>,
}

static REAPER: OnceLock<Reaper> = OnceLock::new();

pub fn global() -> &'static Reaper {
    REAPER.get_or_init(|| Reaper {
        registry: Mutex::new(Registry::default()),
    })
}

/// A helper process whose exit arrives through the reaper.
pub struct Reaped {
    pub child: Child,
    /// None when no reaper loop runs (the bootstrap actions): then the child is waited
    /// for directly.
    exit: Option<Receiver<Exit>>,
}

static LOOP_RUNNING: AtomicBool = AtomicBool::new(false);

/// From now on the main thread reaps; helpers must wait through the registry.
pub fn mark_loop_running() {
    LOOP_RUNNING.store(true, Ordering::SeqCst);
}

impl Reaped {
    /// Waits at most `limit` for the exit; `None` when it has not come (the process is
    /// left to run, and its exit to the reaper).
    pub fn wait_for(mut self, limit: Duration) -> Option<Exit> {
        match self.exit.take() {
            Some(rx) => rx.recv_timeout(limit).ok(),
            None => Some(self.wait()),
        }
    }

    pub fn wait(mut self) -> Exit {
        let Some(exit) = self.exit.take() else {
            let code = match self.child.wait() {
                Ok(st) => st
                    .code()
                    .map(|c| c as u32)
                    .or_else(|| {
                        std::os::unix::process::ExitStatusExt::signal(&st).map(|s| 128 + s as u32)
                    })
                    .unwrap_or(255),
                Err(_) => 255,
            };
            return Exit {
                code,
                at: SystemTime::now(),
            };
        };
        let exit = exit;
        // The sender lives in the registry until the exit is delivered, so recv only fails
        // if the reaper loop is gone, which means the shim is exiting anyway.
        exit.recv().unwrap_or(Exit {
            code: 255,
            at: SystemTime::now(),
        })
    }
}

impl Reaper {
    /// Spawn `cmd` with its exit routed to the returned handle. Never call `Child::wait`.
    pub fn spawn(&self, cmd: &mut Command) -> io::Result<Reaped> {
        unblock_signals_in_child(cmd);
        if !LOOP_RUNNING.load(Ordering::SeqCst) {
            return Ok(Reaped {
                child: cmd.spawn()?,
                exit: None,
            });
        }
        let mut reg = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        let child = cmd.spawn()?;
        let (tx, rx) = channel();
        let pid = child.id() as i32;
        if let Some(exit) = take_unclaimed(&mut reg, pid) {
            let _ = tx.send(exit);
        } else {
            reg.owners.insert(pid, Owner::Command(tx));
        }
        Ok(Reaped {
            child,
            exit: Some(rx),
        })
    }

    /// Call `hook` once `pid` (a container process we did not spawn directly) exits; at once
    /// if it already has.
    pub fn watch(&self, pid: i32, hook: ExitHook) {
        let mut reg = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(exit) = take_unclaimed(&mut reg, pid) {
            drop(reg);
            hook(exit);
        } else {
            reg.owners.insert(pid, Owner::Process(hook));
        }
    }

    /// Reap every exited child and hand each status to its owner.
    pub fn reap_all(&self) {
        loop {
            let (pid, code) = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid.as_raw(), code as u32),
                Ok(WaitStatus::Signaled(pid, sig, _)) => (pid.as_raw(), 128 + sig as u32),
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
                Ok(_) => continue,
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    tracing::warn!("waitpid: {e}");
                    return;
                }
            };
            let exit = Exit {
                code,
                at: SystemTime::now(),
            };
            let owner = {
                let mut reg = self.registry.lock().unwrap_or_else(|e| e.into_inner());
                match reg.owners.remove(&pid) {
                    Some(o) => Some(o),
                    None => {
                        if reg.unclaimed_order.len() >= UNCLAIMED_MAX {
                            if let Some(old) = reg.unclaimed_order.pop_front() {
                                reg.unclaimed.remove(&old);
                            }
                        }
                        reg.unclaimed.insert(pid, exit);
                        reg.unclaimed_order.push_back(pid);
                        None
                    }
                }
            };
            match owner {
                Some(Owner::Command(tx)) => {
                    let _ = tx.send(exit);
                }
                Some(Owner::Process(hook)) => hook(exit),
                None => tracing::debug!(pid, code, "reaped unwatched process"),
            }
        }
    }
}

/// Children must not inherit the signals the shim blocks for `sigwait`: the runtime would
/// pass the mask on to the container, whose init would then never see, for example, a
/// SIGUSR1 stop signal.
fn unblock_signals_in_child(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: pthread_sigmask is async-signal-safe and only changes the child's own mask
    // between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
            libc::sigemptyset(set.as_mut_ptr());
            if libc::pthread_sigmask(libc::SIG_SETMASK, set.as_ptr(), std::ptr::null_mut()) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

fn take_unclaimed(reg: &mut Registry, pid: i32) -> Option<Exit> {
    let exit = reg.unclaimed.remove(&pid)?;
    reg.unclaimed_order.retain(|p| *p != pid);
    Some(exit)
}

/// The signals the main thread waits for. Blocked in every thread (set before any thread
/// starts) so `sigwait` in the main thread is the only place they are taken.
pub fn handled_signals() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGCHLD);
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set.add(Signal::SIGUSR1);
    set
}

/// Become a child subreaper so the container's processes, orphaned when the runtime exits,
/// come back to us.
pub fn become_subreaper() -> io::Result<()> {
    // SAFETY: PR_SET_CHILD_SUBREAPER takes an integer flag and touches no memory.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
