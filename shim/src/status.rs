//! How the init is doing, written to `<bundle>/status.json` on every change (temp file and
//! rename), so the CLI can tell how a container ended after its shim is gone.

use std::path::Path;
use std::time::SystemTime;

use serde::Serialize;

use crate::timefmt::rfc3339_nano;

pub const FILE: &str = "status.json";

#[derive(Debug, Clone, Serialize, Default)]
pub struct StatusFile {
    pub id: String,
    /// created, running, paused, restarting, or exited.
    pub status: String,
    pub pid: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exited_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    pub restart_count: u32,
    /// The user asked for the stop (Kill through the shim), so no restart policy applies.
    pub stopped_by_user: bool,
    /// The last run was ended by the kernel's OOM killer.
    pub oom_killed: bool,
    /// The engine was already told of this exit (its `die` event is written).
    #[serde(default)]
    pub exit_reported: bool,
}

pub fn time(t: Option<SystemTime>) -> Option<String> {
    t.map(rfc3339_nano)
}

pub fn write(bundle: &Path, status: &StatusFile) {
    let path = bundle.join(FILE);
    let tmp = bundle.join(format!(".{FILE}.tmp"));
    let res = serde_json::to_vec_pretty(status)
        .map_err(std::io::Error::other)
        .and_then(|data| std::fs::write(&tmp, data))
        .and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(e) = res {
        tracing::warn!("write {}: {e}", path.display());
    }
}
