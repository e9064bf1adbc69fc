//! Container state under `--root/<id>/`. Each runtime command is a short-lived process, so
//! everything a later command needs (init pid and its start time, the spec, the cgroup path)
//! is written here atomically; status is derived from the live process, never trusted from disk.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

use crate::procfs;

pub const STATE_FILE: &str = "state.json";
pub const EXEC_FIFO: &str = "exec.fifo";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

/// What we persist. The runc-compatible view printed by `state` is [`RuncState`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Container {
    pub id: String,
    pub pid: i32,
    /// Start time of `pid` in clock ticks (/proc/PID/stat field 22): a recycled pid has another.
    pub pid_start: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    pub spec: Spec,
    /// The cgroup directories chosen at create: a relative cgroupsPath resolves against the
    /// caller's own cgroup, which differs between the processes that call us later.
    pub cgroup_paths: berth_cgroups::CgroupPaths,
}

/// runc's `state` output.
#[derive(Debug, Serialize)]
pub struct RuncState<'a> {
    #[serde(rename = "ociVersion")]
    pub oci_version: &'a str,
    pub id: &'a str,
    pub pid: i32,
    pub status: Status,
    pub bundle: &'a Path,
    pub rootfs: &'a Path,
    pub created: &'a str,
    pub owner: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<&'a HashMap<String, String>>,
}

/// The runtime-spec state passed to hooks on stdin.
#[derive(Debug, Serialize)]
pub struct HookState<'a> {
    #[serde(rename = "ociVersion")]
    pub oci_version: &'a str,
    pub id: &'a str,
    pub status: Status,
    pub pid: i32,
    pub bundle: &'a Path,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<&'a HashMap<String, String>>,
}

pub fn validate_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id != "."
        && id != ".."
        && id.len() <= 1024
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+-.".contains(&b));
    if !ok {
        bail!("invalid container id {id:?}: use letters, digits, '_', '+', '-' and '.'");
    }
    Ok(())
}

pub fn dir(root: &Path, id: &str) -> PathBuf {
    root.join(id)
}

impl Container {
    pub fn load(root: &Path, id: &str) -> Result<Self> {
        validate_id(id)?;
        let path = dir(root, id).join(STATE_FILE);
        let data = match fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                bail!("container {id} does not exist")
            }
            Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
        };
        serde_json::from_slice(&data).with_context(|| format!("parse {}", path.display()))
    }

    /// Atomic write: a crash mid-write leaves the previous state, never a torn file.
    pub fn save(&self, root: &Path) -> Result<()> {
        let d = dir(root, &self.id);
        let tmp = d.join(".state.json.tmp");
        let mut f = fs::File::create(&tmp).with_context(|| format!("create {}", tmp.display()))?;
        // One write: serde_json on a File issues a syscall per token.
        f.write_all(&serde_json::to_vec(self)?)
            .with_context(|| format!("write {}", tmp.display()))?;
        fs::rename(&tmp, d.join(STATE_FILE)).context("rename state.json into place")?;
        Ok(())
    }

    pub fn annotations(&self) -> Option<&HashMap<String, String>> {
        self.spec.annotations().as_ref().filter(|a| !a.is_empty())
    }

    pub fn cgroup(&self) -> Result<berth_cgroups::CgroupManager> {
        berth_cgroups::CgroupManager::from_paths(self.cgroup_paths.clone())
            .with_context(|| format!("cgroup of container {}", self.id))
    }

    /// Who created the container: the owner of its state directory (runc's OWNER column).
    pub fn owner(&self, root: &Path) -> String {
        use std::os::unix::fs::MetadataExt;
        let Ok(uid) = fs::metadata(dir(root, &self.id)).map(|m| m.uid()) else {
            return String::new();
        };
        nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
            .map(|u| u.name)
            .unwrap_or_else(|| uid.to_string())
    }

    /// Is the init process still ours? (alive, not a zombie, same start time)
    pub fn init_alive(&self) -> bool {
        self.pid > 0
            && matches!(procfs::stat(self.pid), Ok(st) if st.start_time == self.pid_start && st.state != 'Z' && st.state != 'X')
    }

    pub fn status(&self, root: &Path) -> Status {
        if !self.init_alive() {
            return Status::Stopped;
        }
        // `start` removes the fifo once the user process runs.
        if dir(root, &self.id).join(EXEC_FIFO).exists() {
            return Status::Created;
        }
        match self.cgroup().and_then(|c| Ok(c.freezer_state()?)) {
            Ok(berth_cgroups::FreezerState::Frozen) => Status::Paused,
            _ => Status::Running,
        }
    }

    pub fn runc_state<'a>(&'a self, root: &Path, status: Status) -> RuncState<'a> {
        RuncState {
            oci_version: self.spec.version(),
            id: &self.id,
            pid: if status == Status::Stopped {
                0
            } else {
                self.pid
            },
            status,
            bundle: &self.bundle,
            rootfs: &self.rootfs,
            created: &self.created,
            owner: self.owner(root),
            annotations: self.annotations(),
        }
    }

    pub fn hook_state(&self, status: Status) -> Vec<u8> {
        hook_state_json(&self.spec, &self.id, status, self.pid, &self.bundle)
    }
}

pub fn hook_state_json(spec: &Spec, id: &str, status: Status, pid: i32, bundle: &Path) -> Vec<u8> {
    let st = HookState {
        oci_version: spec.version(),
        id,
        status,
        pid,
        bundle,
        annotations: spec.annotations().as_ref().filter(|a| !a.is_empty()),
    };
    serde_json::to_vec(&st).unwrap_or_default()
}
