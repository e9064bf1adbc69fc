//! One process the shim looks after: the container's init or an exec'd process.

use std::path::PathBuf;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use containerd_shim_protos::api::Status;

use crate::reaper::Exit;
use crate::stats::InitCgroup;
use crate::stdio::{ProcIo, StdioSpec};

#[derive(Debug, Clone)]
pub struct ProcState {
    pub pid: u32,
    pub status: Status,
    pub exit: Option<Exit>,
    /// Between an exit and the restart the policy asked for.
    pub restarting: bool,
    pub restart_count: u32,
    pub stopped_by_user: bool,
    pub started_at: Option<SystemTime>,
    /// The last run ended by the kernel's OOM killer.
    pub oom_killed: bool,
    /// The engine heard of this exit from the event command (before a restart), so the exit
    /// command need not report it again.
    pub exit_reported: bool,
}

pub struct Proc {
    /// Empty for the init.
    pub exec_id: String,
    pub stdio: StdioSpec,
    /// The exec's OCI process JSON, as containerd sent it.
    pub spec: Option<Vec<u8>>,
    state: Mutex<ProcState>,
    changed: Condvar,
    pub io: Mutex<Option<ProcIo>>,
    pub pid_file: PathBuf,
    /// The cgroups of the current run (the init only): Stats and the OOM check.
    pub cgroup: Mutex<Option<InitCgroup>>,
}

impl Proc {
    pub fn new(exec_id: &str, stdio: StdioSpec, spec: Option<Vec<u8>>, pid_file: PathBuf) -> Proc {
        Proc {
            exec_id: exec_id.to_string(),
            stdio,
            spec,
            state: Mutex::new(ProcState {
                pid: 0,
                status: Status::CREATED,
                exit: None,
                restarting: false,
                restart_count: 0,
                stopped_by_user: false,
                started_at: None,
                oom_killed: false,
                exit_reported: false,
            }),
            changed: Condvar::new(),
            io: Mutex::new(None),
            pid_file,
            cgroup: Mutex::new(None),
        }
    }

    pub fn is_init(&self) -> bool {
        self.exec_id.is_empty()
    }

    pub fn state(&self) -> MutexGuard<'_, ProcState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn notify(&self) {
        self.changed.notify_all();
    }

    /// Block until the process has exited for good (no restart pending).
    pub fn wait(&self) -> Exit {
        let mut st = self.state();
        loop {
            if let (Some(exit), false) = (st.exit, st.restarting) {
                return exit;
            }
            st = self.changed.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Like `wait` with a limit; None if still running when it passes.
    pub fn wait_timeout(&self, limit: Duration) -> Option<Exit> {
        let deadline = std::time::Instant::now() + limit;
        let mut st = self.state();
        loop {
            if let (Some(exit), false) = (st.exit, st.restarting) {
                return Some(exit);
            }
            let left = deadline.checked_duration_since(std::time::Instant::now())?;
            st = self
                .changed
                .wait_timeout(st, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}
