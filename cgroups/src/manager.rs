//! The per-container cgroup handle that berth-runtime and the shim call.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use oci_spec::runtime::LinuxResources;

use crate::detect::{self, HostCgroups, Layout, OwnCgroups};
use crate::error::Error;
use crate::freezer::{self, FreezerState};
use crate::paths::{self, CgroupPaths};
use crate::stats::{self, Stats};
use crate::{create, fsio, limits};

/// The memory cgroup directory whose OOM-kill counter [`CgroupManager::oom_counter`] chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OomSource<'a> {
    /// v1: `memory.oom_control` (notices through `cgroup.event_control`).
    V1(&'a Path),
    /// v2: `memory.events` (notices through inotify).
    V2(&'a Path),
}

/// One container's cgroups. Holds only paths, so it is cheap to rebuild from the same inputs
/// in every short-lived runtime command (update, pause, ps, delete).
#[derive(Clone, Debug)]
pub struct CgroupManager {
    paths: CgroupPaths,
    /// The host's hierarchies: creating a directory needs to know where its hierarchy
    /// starts, and the runtime's cgroup mounts copy the layout. A manager rebuilt from saved
    /// paths reads the mount table on first use, not before.
    host: OnceLock<HostCgroups>,
}

impl CgroupManager {
    /// Follows runc: an absolute `cgroups_path` is below each hierarchy's root, a relative one
    /// below this process's own cgroup, and `None` means the relative path `id`.
    /// `systemd` is runc's `--systemd-cgroup`, which needs systemd over D-Bus: the path is
    /// parsed ("slice:prefix:name") and then refused with an error saying why.
    pub fn new(cgroups_path: Option<&str>, id: &str, systemd: bool) -> Result<Self, Error> {
        if systemd {
            return Err(paths::systemd_unsupported(cgroups_path, id));
        }
        Self::with_host(detect::detect()?, cgroups_path, id)
    }

    /// Like `new`, on a given layout (for instance `HostCgroups::v2_at(...)` to use only the
    /// cgroup2 mount of a hybrid host).
    pub fn with_host(
        host: HostCgroups,
        cgroups_path: Option<&str>,
        id: &str,
    ) -> Result<Self, Error> {
        let paths = paths::resolve(&host, cgroups_path, id, detect::own_cgroups)?;
        Ok(Self::build(host, paths))
    }

    /// Like `with_host`, resolving relative paths against `own` instead of /proc/self/cgroup.
    pub fn with_own_cgroups(
        host: HostCgroups,
        own: OwnCgroups,
        cgroups_path: Option<&str>,
        id: &str,
    ) -> Result<Self, Error> {
        let paths = paths::resolve(&host, cgroups_path, id, || Ok(own))?;
        Ok(Self::build(host, paths))
    }

    /// The cgroups process `pid` is in now, as /proc/PID/cgroup lists them, on this host's
    /// layout. For a caller that knows a container's process but not its cgroups path (the
    /// shim's Stats).
    pub fn of_process(pid: u32) -> Result<Self, Error> {
        Self::of_process_on(detect::detect()?, pid)
    }

    /// Like `of_process`, on a given layout.
    pub fn of_process_on(host: HostCgroups, pid: u32) -> Result<Self, Error> {
        let file = PathBuf::from(format!("/proc/{pid}/cgroup"));
        let text = fsio::read_path(&file)?;
        let procs = detect::parse_proc_cgroup(&file, &text)?;
        let paths = paths::of_process(&host, &procs);
        if paths.v1.is_empty() && paths.unified.is_none() {
            return Err(Error::Parse {
                path: file,
                reason: "the process is in none of the mounted cgroup hierarchies".into(),
            });
        }
        Ok(Self::build(host, paths))
    }

    fn build(host: HostCgroups, paths: CgroupPaths) -> Self {
        CgroupManager {
            paths,
            host: OnceLock::from(host),
        }
    }

    /// Rebuilds a manager from paths saved earlier (e.g. in the runtime's state.json), so a
    /// later command finds the cgroups even if it runs in another cgroup itself. Reads
    /// nothing: `state`, `kill` or `pause` never need the mount table.
    pub fn from_paths(paths: CgroupPaths) -> Result<Self, Error> {
        Ok(CgroupManager {
            paths,
            host: OnceLock::new(),
        })
    }

    pub fn paths(&self) -> &CgroupPaths {
        &self.paths
    }

    pub fn layout(&self) -> Layout {
        self.paths.layout
    }

    /// The cgroup2 directory, for `clone3(CLONE_INTO_CGROUP)` on a v2 host.
    pub fn unified_path(&self) -> Option<&Path> {
        self.paths.unified.as_deref()
    }

    /// The cgroup2 directory opened for `clone3(CLONE_INTO_CGROUP)`, so a new process starts
    /// life inside it; None when the container has no cgroup2 directory.
    pub fn open_unified(&self) -> Result<Option<std::fs::File>, Error> {
        self.unified_path()
            .map(|p| {
                std::fs::File::open(p).map_err(|source| Error::Read {
                    path: p.to_path_buf(),
                    err: source,
                })
            })
            .transpose()
    }

    /// The directory of one controller: v1 name ("memory", "name=systemd"), or "" for cgroup2.
    pub fn path(&self, controller: &str) -> Option<&Path> {
        if controller.is_empty() {
            return self.unified_path();
        }
        self.paths.v1.get(controller).map(|p| p.as_path())
    }

    /// The directory that decides whether the container's cgroup exists and where its
    /// processes are listed: the unified one on v2; on v1 and hybrid a v1 one (processes
    /// might not have been put in the unified one by whoever created them).
    fn primary(&self) -> Option<&Path> {
        if self.paths.layout == Layout::V2 {
            return self.unified_path();
        }
        ["freezer", "pids", "devices", "memory", "cpu"]
            .iter()
            .find_map(|c| self.path(c))
            .or_else(|| self.paths.v1.values().next().map(|p| p.as_path()))
            .or_else(|| self.unified_path())
    }

    /// The host's cgroup layout this manager was built on (read from the mount table now
    /// when the manager was rebuilt from saved paths).
    pub fn host(&self) -> Result<&HostCgroups, Error> {
        if let Some(h) = self.host.get() {
            return Ok(h);
        }
        let h = detect::detect()?;
        Ok(self.host.get_or_init(|| h))
    }

    /// Creates every directory without moving anyone in.
    pub fn create(&self) -> Result<(), Error> {
        let host = self.host()?;
        let mountpoint = |key: &str| {
            let m = if key.is_empty() {
                host.unified.as_ref().map(|u| u.mountpoint.as_path())
            } else {
                host.v1_mount(key).map(|m| m.mountpoint.as_path())
            };
            m.unwrap_or(Path::new("/"))
        };
        let mut done: Vec<&Path> = Vec::new();
        for (controller, dir) in &self.paths.v1 {
            if done.contains(&dir.as_path()) {
                continue;
            }
            let cpuset = self.paths.v1.get("cpuset") == Some(dir);
            create::v1_dir(mountpoint(controller), dir, cpuset)?;
            done.push(dir);
        }
        if let Some(u) = &self.paths.unified {
            create::v2_dir(mountpoint(""), u)?;
        }
        Ok(())
    }

    /// Creates the cgroups and moves `pid` into all of them: every v1 hierarchy (including
    /// name=systemd) and the unified one on hybrid hosts, as runc does. A negative pid only
    /// creates.
    pub fn apply(&self, pid: i32) -> Result<(), Error> {
        self.create()?;
        if pid < 0 {
            return Ok(());
        }
        self.add_process(pid)
    }

    /// Moves `pid` into cgroups that already exist (an exec into a running container, or an
    /// init whose cgroups `create` just made).
    pub fn add_process(&self, pid: i32) -> Result<(), Error> {
        let pid = pid.to_string();
        for dir in self.paths.dirs() {
            fsio::write(dir, "cgroup.procs", &pid)?;
        }
        Ok(())
    }

    /// Writes the resource limits (create and `update`). Only the fields present are written.
    pub fn set(&self, r: &LinuxResources) -> Result<(), Error> {
        if let Some(dir) = self.primary().filter(|d| !d.exists()) {
            return Err(Error::NotFound {
                path: dir.to_path_buf(),
            });
        }
        limits::set(&self.paths, r)
    }

    fn freezer_backend(&self) -> Result<(bool, &Path), Error> {
        if let Some(d) = self.path("freezer") {
            return Ok((false, d));
        }
        if let Some(d) = self.unified_path() {
            return Ok((true, d));
        }
        Err(Error::ControllerMissing {
            controller: "freezer".into(),
        })
    }

    /// Stops every task of the container and returns once all are stopped.
    pub fn freeze(&self) -> Result<(), Error> {
        match self.freezer_backend()? {
            (false, d) => freezer::v1_set(d, true),
            (true, d) => freezer::v2_set(d, true),
        }
    }

    pub fn thaw(&self) -> Result<(), Error> {
        match self.freezer_backend()? {
            (false, d) => freezer::v1_set(d, false),
            (true, d) => freezer::v2_set(d, false),
        }
    }

    pub fn freezer_state(&self) -> Result<FreezerState, Error> {
        match self.freezer_backend()? {
            (false, d) => freezer::v1_state(d),
            (true, d) => freezer::v2_state(d),
        }
    }

    /// Every process in the container's cgroup and the cgroups below it.
    pub fn pids(&self) -> Result<Vec<i32>, Error> {
        let Some(dir) = self.primary() else {
            return Ok(Vec::new());
        };
        if !dir.exists() {
            return Err(Error::NotFound {
                path: dir.to_path_buf(),
            });
        }
        let mut out = Vec::new();
        collect_pids(dir, &mut out)?;
        Ok(out)
    }

    /// Sends `sig` to every process. SIGKILL on a v2 host uses cgroup.kill, which also catches
    /// processes forked meanwhile; otherwise the cgroup is frozen so nothing can fork between
    /// listing and signalling, then thawed so the signals are delivered.
    pub fn kill_all(&self, sig: i32) -> Result<(), Error> {
        let signal = Signal::try_from(sig).map_err(|_| Error::InvalidValue {
            what: format!("signal {sig}"),
            reason: "not a valid signal number".into(),
        })?;
        if let (Some(dir), Layout::V2, Signal::SIGKILL) =
            (self.unified_path(), self.layout(), signal)
        {
            if fsio::exists(dir, "cgroup.kill") {
                return fsio::write(dir, "cgroup.kill", "1");
            }
        }
        let frozen = match self.freeze() {
            Ok(()) => true,
            Err(Error::ControllerMissing { .. }) => false,
            Err(e) => return Err(e),
        };
        let result = self.signal_each(signal, sig);
        if frozen {
            self.thaw()?;
        }
        result
    }

    fn signal_each(&self, signal: Signal, sig: i32) -> Result<(), Error> {
        for pid in self.pids()? {
            match kill(Pid::from_raw(pid), signal) {
                Ok(()) | Err(Errno::ESRCH) => {}
                Err(source) => {
                    return Err(Error::Signal {
                        pid,
                        signal: sig,
                        errno: source,
                    })
                }
            }
        }
        Ok(())
    }

    /// Resource usage in the shape of runc's `events --stats` data.
    pub fn stats(&self) -> Result<Stats, Error> {
        stats::collect(&self.paths)
    }

    /// How many times the kernel's OOM killer killed a process in the container: v2
    /// memory.events, v1 memory.oom_control ("oom_kill", kernels >= 4.13). For `events` and the
    /// shim's OOM notifications.
    pub fn oom_kill_count(&self) -> Result<u64, Error> {
        let text = match self.oom_counter()? {
            OomSource::V1(dir) => fsio::read(dir, "memory.oom_control")?,
            OomSource::V2(dir) => fsio::read(dir, "memory.events")?,
        };
        let count = fsio::key_values(&text)
            .find(|(k, _)| *k == "oom_kill")
            .map_or(0, |(_, v)| v);
        Ok(count)
    }

    /// Where the OOM-kill counter lives, and so also what to watch for OOM notices: the v1
    /// memory hierarchy when there is one (hybrid hosts included), else cgroup2.
    pub fn oom_counter(&self) -> Result<OomSource<'_>, Error> {
        match self.path("memory") {
            Some(d) => Ok(OomSource::V1(d)),
            None => match self.unified_path() {
                Some(d) if fsio::exists(d, "memory.events") => Ok(OomSource::V2(d)),
                _ => Err(Error::ControllerMissing {
                    controller: "memory".into(),
                }),
            },
        }
    }

    /// Removes every directory, including cgroups the container made below its own. Missing
    /// directories are fine: delete must be repeatable.
    pub fn destroy(&self) -> Result<(), Error> {
        let mut first_err = None;
        for dir in self.paths.dirs() {
            if let Err(e) = create::remove_tree(dir) {
                tracing::warn!("{e}");
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    pub fn exists(&self) -> bool {
        self.primary().is_some_and(|d| d.exists())
    }
}

fn collect_pids(dir: &Path, out: &mut Vec<i32>) -> Result<(), Error> {
    let procs = match fsio::read_optional(dir, "cgroup.procs")? {
        Some(p) => p,
        // Removed while we walked: its tasks are gone too.
        None => return Ok(()),
    };
    out.extend(procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    for child in fsio::child_dirs(dir)? {
        collect_pids(&child, out)?;
    }
    Ok(())
}
