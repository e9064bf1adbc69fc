//! A container's live state: the shim's `status.json` (which outlives the shim), checked
//! against the process table when the shim may be gone, else the record's last run.

use std::path::Path;

use serde::Deserialize;

use super::record::Record;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Created,
    Running,
    Paused,
    Restarting,
    Exited,
}

impl Status {
    /// Docker's word, as `inspect` and `--filter status=` use it.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Restarting => "restarting",
            Status::Exited => "exited",
        }
    }

    /// A process of the container may be alive: stop or remove it first.
    pub fn is_live(self) -> bool {
        matches!(self, Status::Running | Status::Paused | Status::Restarting)
    }
}

#[derive(Debug, Clone)]
pub struct State {
    pub status: Status,
    pub pid: u32,
    pub exit_code: i32,
    pub started_at: String,
    pub finished_at: String,
    pub restart_count: u32,
    pub oom_killed: bool,
    pub stopped_by_user: bool,
    /// The shim has had the exit's `die` event written (before a restart it then gave up).
    pub exit_reported: bool,
    /// Docker's State.Health, while a HEALTHCHECK runs.
    pub health: Option<serde_json::Value>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct StatusFile {
    status: String,
    pid: u32,
    exit_code: i32,
    exited_at: Option<String>,
    started_at: Option<String>,
    restart_count: u32,
    stopped_by_user: bool,
    oom_killed: bool,
    exit_reported: bool,
}

/// The container's init is `pid` and still runs: not a zombie waiting to be reaped, and
/// in the container's cgroup (after a reboot the number may belong to anything).
fn alive(pid: u32, id: &str) -> bool {
    pid > 0
        && std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                s.rsplit_once(") ")
                    .is_some_and(|(_, rest)| !rest.starts_with('Z'))
            })
            .unwrap_or(false)
        && std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .map(|c| c.contains(id))
            .unwrap_or(false)
}

pub fn read(rec: &Record, bundle: &Path) -> State {
    let last = &rec.last;
    let mut st = State {
        status: if last.started_at.is_empty() {
            Status::Created
        } else {
            Status::Exited
        },
        pid: 0,
        exit_code: last.exit_code,
        started_at: last.started_at.clone(),
        finished_at: last.finished_at.clone(),
        restart_count: last.restart_count,
        oom_killed: last.oom_killed,
        stopped_by_user: last.stopped_by_user,
        exit_reported: false,
        health: None,
    };
    let Ok(text) = std::fs::read(bundle.join("status.json")) else {
        return st;
    };
    let Ok(f) = serde_json::from_slice::<StatusFile>(&text) else {
        return st;
    };
    st.started_at = f.started_at.unwrap_or(st.started_at);
    st.finished_at = f.exited_at.unwrap_or(st.finished_at);
    st.restart_count = f.restart_count;
    st.oom_killed = f.oom_killed;
    st.stopped_by_user = f.stopped_by_user;
    st.exit_reported = f.exit_reported;
    st.exit_code = f.exit_code;
    st.status = match f.status.as_str() {
        "running" | "paused" if !alive(f.pid, &rec.id) => {
            // The shim died and its container with it (a reboot, say): nobody wrote the
            // exit down. The state file's last change is the best bound on when.
            st.exit_code = 137;
            if st.finished_at.is_empty() {
                st.finished_at = std::fs::metadata(bundle.join("status.json"))
                    .and_then(|m| m.modified())
                    .map(|t| humantime::format_rfc3339_nanos(t).to_string())
                    .unwrap_or_default();
            }
            Status::Exited
        }
        "running" => Status::Running,
        "paused" => Status::Paused,
        "restarting" => Status::Restarting,
        "created" if st.started_at.is_empty() => Status::Created,
        _ => Status::Exited,
    };
    if st.status.is_live() {
        st.pid = f.pid;
        st.health = std::fs::read(bundle.join("health.json"))
            .ok()
            .and_then(|t| serde_json::from_slice(&t).ok());
    }
    st
}
