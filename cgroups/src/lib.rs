//! Control groups for one container on cgroup v1, v2 and hybrid hosts. Shared by
//! berth-runtime (create, update, pause, ps, events) and the shim (Stats, Pids).
//! (Interim v1-only core; the full implementation lands from the cgroups branch.)

use std::fs;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cgroup {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{0}")]
    Other(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreezerState {
    Thawed,
    Frozen,
}

pub struct CgroupManager {
    dirs: Vec<(String, PathBuf)>,
}

fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.display().to_string(), source }
}

impl CgroupManager {
    pub fn new(cgroups_path: Option<&str>, id: &str, systemd: bool) -> Result<Self, Error> {
        if systemd {
            return Err(Error::Other("systemd cgroup driver needs a running systemd".into()));
        }
        let rel = cgroups_path.map(|p| p.trim_start_matches('/').to_string()).unwrap_or_else(|| format!("berth/{id}"));
        let mut dirs = Vec::new();
        for c in ["cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids", "systemd"] {
            let base = PathBuf::from("/sys/fs/cgroup").join(c);
            if base.join("cgroup.procs").exists() {
                dirs.push((c.to_string(), base.join(&rel)));
            }
        }
        Ok(CgroupManager { dirs })
    }
    fn dir(&self, c: &str) -> Option<&PathBuf> {
        self.dirs.iter().find(|(n, _)| n == c).map(|(_, p)| p)
    }
    pub fn apply(&self, pid: i32) -> Result<(), Error> {
        for (c, d) in &self.dirs {
            fs::create_dir_all(d).map_err(io(d))?;
            if c == "cpuset" {
                let base = PathBuf::from("/sys/fs/cgroup/cpuset");
                let mut cur = base.clone();
                for comp in d.strip_prefix(&base).unwrap().components() {
                    let next = cur.join(comp);
                    for f in ["cpuset.cpus", "cpuset.mems"] {
                        if fs::read_to_string(next.join(f)).unwrap_or_default().trim().is_empty() {
                            let v = fs::read_to_string(cur.join(f)).unwrap_or_default();
                            let _ = fs::write(next.join(f), v.trim());
                        }
                    }
                    cur = next;
                }
            }
            let p = d.join("cgroup.procs");
            fs::write(&p, pid.to_string()).map_err(io(&p))?;
        }
        Ok(())
    }
    pub fn set(&self, r: &oci_spec::runtime::LinuxResources) -> Result<(), Error> {
        let w = |c: &str, f: &str, v: String| -> Result<(), Error> {
            if let Some(d) = self.dir(c) {
                let p = d.join(f);
                fs::write(&p, &v).map_err(io(&p))?;
            }
            Ok(())
        };
        if let Some(m) = r.memory().as_ref().and_then(|m| m.limit()) {
            w("memory", "memory.limit_in_bytes", m.to_string())?;
        }
        if let Some(p) = r.pids() {
            w("pids", "pids.max", if p.limit() > 0 { p.limit().to_string() } else { "max".into() })?;
        }
        if let Some(s) = r.cpu().as_ref().and_then(|c| c.shares()) {
            w("cpu", "cpu.shares", s.to_string())?;
        }
        Ok(())
    }
    pub fn freeze(&self) -> Result<(), Error> {
        let d = self.dir("freezer").ok_or_else(|| Error::Other("no freezer".into()))?;
        let p = d.join("freezer.state");
        fs::write(&p, "FROZEN").map_err(io(&p))
    }
    pub fn thaw(&self) -> Result<(), Error> {
        let d = self.dir("freezer").ok_or_else(|| Error::Other("no freezer".into()))?;
        let p = d.join("freezer.state");
        fs::write(&p, "THAWED").map_err(io(&p))
    }
    pub fn freezer_state(&self) -> Result<FreezerState, Error> {
        let d = self.dir("freezer").ok_or_else(|| Error::Other("no freezer".into()))?;
        let p = d.join("freezer.state");
        let s = fs::read_to_string(&p).map_err(io(&p))?;
        Ok(if s.trim() == "THAWED" { FreezerState::Thawed } else { FreezerState::Frozen })
    }
    pub fn pids(&self) -> Result<Vec<i32>, Error> {
        let d = self.dir("pids").or(self.dir("freezer")).ok_or_else(|| Error::Other("no pids".into()))?;
        let p = d.join("cgroup.procs");
        let s = fs::read_to_string(&p).map_err(io(&p))?;
        Ok(s.lines().filter_map(|l| l.parse().ok()).collect())
    }
    pub fn kill_all(&self, sig: i32) -> Result<(), Error> {
        for p in self.pids().unwrap_or_default() {
            // SAFETY: kill with integers.
            unsafe { libc::kill(p, sig) };
        }
        Ok(())
    }
    pub fn stats(&self) -> Result<serde_json::Value, Error> {
        Ok(serde_json::json!({}))
    }
    pub fn destroy(&self) -> Result<(), Error> {
        for (_, d) in &self.dirs {
            if d.exists() {
                fs::remove_dir(d).map_err(io(d))?;
            }
        }
        Ok(())
    }
}
