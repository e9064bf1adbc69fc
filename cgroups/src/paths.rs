//! Turning (cgroupsPath, id, systemd) into one directory per hierarchy, following runc's rules
//! so that containers created by runc and by berth land in the same places.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::detect::{HostCgroups, Layout, OwnCgroups};
use crate::error::Error;

/// The container's cgroup directory in every hierarchy it belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupPaths {
    pub layout: Layout,
    /// v1 controller (or "name=systemd") -> directory. Co-mounted controllers share a directory.
    pub v1: BTreeMap<String, PathBuf>,
    /// The cgroup2 directory: the only one on V2, the process's extra home on Hybrid.
    pub unified: Option<PathBuf>,
}

impl CgroupPaths {
    /// Each v1 directory once (co-mounted controllers share one), in a stable order.
    pub fn v1_dirs(&self) -> Vec<&Path> {
        let mut out: Vec<&Path> = Vec::new();
        for p in self.v1.values() {
            if !out.contains(&p.as_path()) {
                out.push(p);
            }
        }
        out
    }

    /// Each directory once, v1 first, in a stable order.
    pub fn dirs(&self) -> Vec<&Path> {
        let mut out = self.v1_dirs();
        if let Some(u) = &self.unified {
            out.push(u);
        }
        out
    }

    /// Moves the calling process into its v1 cgroups by writing "0" to each `tasks` file.
    ///
    /// A process that moves itself this way (one thread, pid 0 = current) does not take the
    /// kernel's global threadgroup rwsem, whose write side waits for an RCU grace period:
    /// moving a process from outside costs milliseconds on a busy host, this microseconds.
    /// The caller must be single-threaded. The unified hierarchy needs clone3's
    /// CLONE_INTO_CGROUP instead (see `CgroupManager::unified_path`). Needs only the paths,
    /// so a freshly forked process calls it without re-reading the host's mount table.
    pub fn join_self_v1(&self) -> Result<(), Error> {
        for dir in self.v1_dirs() {
            crate::fsio::write(dir, "tasks", "0")?;
        }
        Ok(())
    }
}

/// runc's CleanPath: lexically clean, and keep a relative path from climbing out with "..".
pub fn clean_path(p: &str) -> PathBuf {
    if p.is_empty() {
        return PathBuf::new();
    }
    let mut parts: Vec<&str> = Vec::new();
    for c in Path::new(p).components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str().unwrap_or_default()),
            Component::ParentDir => {
                parts.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    let joined = parts.join("/");
    if p.starts_with('/') {
        PathBuf::from(format!("/{joined}"))
    } else {
        PathBuf::from(joined)
    }
}

/// A `--systemd-cgroup` cgroupsPath, "slice:prefix:name" (e.g. "system.slice:docker:1234").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SystemdPath {
    pub slice: String,
    pub prefix: String,
    pub name: String,
}

impl SystemdPath {
    /// Parses the path like runc; `None` means runc's default ("", "runc", id).
    pub fn parse(path: Option<&str>, id: &str) -> Result<Self, Error> {
        let Some(path) = path.filter(|p| !p.is_empty()) else {
            return Ok(SystemdPath {
                slice: String::new(),
                prefix: "runc".into(),
                name: id.into(),
            });
        };
        let parts: Vec<&str> = path.split(':').collect();
        if parts.len() != 3 {
            return Err(Error::InvalidPath {
                path: path.into(),
                reason: "expected \"slice:prefix:name\" for systemd cgroups".into(),
            });
        }
        let slice = parts[0];
        if !slice.is_empty() && (!slice.ends_with(".slice") || slice.contains('/')) {
            return Err(Error::InvalidPath {
                path: path.into(),
                reason: format!("{slice:?} is not a systemd slice name (NAME.slice)"),
            });
        }
        if parts[2].is_empty() {
            return Err(Error::InvalidPath {
                path: path.into(),
                reason: "the name part is empty".into(),
            });
        }
        Ok(SystemdPath {
            slice: slice.into(),
            prefix: parts[1].into(),
            name: parts[2].into(),
        })
    }

    /// The transient unit systemd would be asked to create: "prefix-name.scope", or the name
    /// itself when it already is a slice.
    pub fn unit_name(&self) -> String {
        if self.name.ends_with(".slice") {
            return self.name.clone();
        }
        if self.prefix.is_empty() {
            format!("{}.scope", self.name)
        } else {
            format!("{}-{}.scope", self.prefix, self.name)
        }
    }

    /// The cgroup directory of the slice: "a-b.slice" lives at "/a.slice/a-b.slice".
    pub fn slice_dir(&self) -> PathBuf {
        let slice = if self.slice.is_empty() || self.slice == "-.slice" {
            return PathBuf::from("/");
        } else {
            self.slice.trim_end_matches(".slice")
        };
        let mut dir = PathBuf::from("/");
        let mut acc = String::new();
        for part in slice.split('-') {
            if !acc.is_empty() {
                acc.push('-');
            }
            acc.push_str(part);
            dir.push(format!("{acc}.slice"));
        }
        dir
    }
}

/// Error for `--systemd-cgroup`: berth has no D-Bus client, and this host has no systemd.
pub fn systemd_unsupported(path: Option<&str>, id: &str) -> Error {
    let shown = path.unwrap_or_default().to_string();
    let sp = match SystemdPath::parse(path, id) {
        Ok(sp) => sp,
        Err(e) => return e,
    };
    let why = if Path::new("/run/systemd/system").exists() {
        "berth manages cgroups through cgroupfs only and cannot ask systemd over D-Bus"
    } else {
        "systemd is not running on this host (no /run/systemd/system), so there is no D-Bus \
         service to create it"
    };
    Error::Systemd {
        path: shown,
        reason: format!(
            "unit {} in {}: {why}; run without --systemd-cgroup",
            sp.unit_name(),
            sp.slice_dir().display()
        ),
    }
}

/// The directory of cgroup `cg` (as /proc/PID/cgroup shows it) seen through a mount of the
/// hierarchy whose root is `mount_root`.
fn below_mount(mountpoint: &Path, mount_root: &Path, cg: &Path) -> PathBuf {
    let below_root = cg.strip_prefix(mount_root).unwrap_or(cg);
    let rel = below_root.strip_prefix("/").unwrap_or(below_root);
    if rel.as_os_str().is_empty() {
        // join("") would add a trailing slash.
        return mountpoint.to_path_buf();
    }
    mountpoint.join(rel)
}

/// `inner` below `own`, where `own` is this process's cgroup as /proc/self/cgroup shows it,
/// seen through a mount whose root is `mount_root`.
fn join_relative(mountpoint: &Path, mount_root: &Path, own: &Path, inner: &Path) -> PathBuf {
    below_mount(mountpoint, mount_root, own).join(inner)
}

/// Resolves the directories for a cgroupfs (non-systemd) manager. `own` is consulted only for
/// relative paths, so callers pass a closure and absolute paths cost no extra read.
pub fn resolve(
    host: &HostCgroups,
    cgroups_path: Option<&str>,
    id: &str,
    own: impl FnOnce() -> Result<OwnCgroups, Error>,
) -> Result<CgroupPaths, Error> {
    let raw = cgroups_path.unwrap_or_default();
    let mut inner = clean_path(raw);
    if inner.as_os_str().is_empty() {
        if id.is_empty() || id.contains('/') {
            return Err(Error::InvalidPath {
                path: raw.into(),
                reason: format!("no cgroupsPath and container id {id:?} is not a valid name"),
            });
        }
        inner = PathBuf::from(id);
    }
    if inner == Path::new("/") {
        return Err(Error::InvalidPath {
            path: raw.into(),
            reason: "a container cannot use the root cgroup".into(),
        });
    }
    let own = if inner.is_absolute() {
        None
    } else {
        Some(own()?)
    };
    let rel_inner = inner.strip_prefix("/").unwrap_or(&inner).to_path_buf();
    let root = PathBuf::from("/");

    let mut v1 = BTreeMap::new();
    for m in &host.v1 {
        // Other named hierarchies (name=openrc, ...) belong to someone else; runc skips them.
        let joinable = m
            .controllers
            .iter()
            .any(|c| !c.starts_with("name=") || c == "name=systemd");
        if !joinable {
            continue;
        }
        let dir = match &own {
            None => m.mountpoint.join(&rel_inner),
            Some(own) => {
                let own_cg = m
                    .controllers
                    .iter()
                    .find_map(|c| own.get(c))
                    .unwrap_or(&root);
                join_relative(&m.mountpoint, &m.root, own_cg, &rel_inner)
            }
        };
        for c in &m.controllers {
            v1.insert(c.clone(), dir.clone());
        }
    }

    let unified = host.unified.as_ref().map(|u| match &own {
        None => u.mountpoint.join(&rel_inner),
        Some(own) => {
            let own_cg = own.get("").unwrap_or(&root);
            // On a pure v2 host runc uses the parent of its own cgroup: its own cgroup holds
            // processes, so no controllers could be enabled below it.
            let base = if host.layout == Layout::V2 {
                own_cg.parent().unwrap_or(&root)
            } else {
                own_cg
            };
            join_relative(&u.mountpoint, &u.root, base, &rel_inner)
        }
    });
    Ok(CgroupPaths {
        layout: host.layout,
        v1,
        unified,
    })
}

/// The directories a process is in now, from its /proc/PID/cgroup lines (`procs`) on `host`.
/// Hierarchies the process is not listed in are left out, as are named v1 hierarchies other
/// than name=systemd (the same rule `resolve` follows).
pub fn of_process(host: &HostCgroups, procs: &OwnCgroups) -> CgroupPaths {
    let mut v1 = BTreeMap::new();
    for m in &host.v1 {
        let joinable = m
            .controllers
            .iter()
            .any(|c| !c.starts_with("name=") || c == "name=systemd");
        let Some(cg) = m.controllers.iter().find_map(|c| procs.get(c)) else {
            continue;
        };
        if !joinable {
            continue;
        }
        let dir = below_mount(&m.mountpoint, &m.root, cg);
        for c in &m.controllers {
            v1.insert(c.clone(), dir.clone());
        }
    }
    let unified = match (&host.unified, procs.get("")) {
        (Some(u), Some(cg)) => Some(below_mount(&u.mountpoint, &u.root, cg)),
        _ => None,
    };
    CgroupPaths {
        layout: host.layout,
        v1,
        unified,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::parse_mountinfo;

    fn host() -> HostCgroups {
        parse_mountinfo(
            "1 0 0:1 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
             2 0 0:2 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
             3 0 0:3 / /sys/fs/cgroup/openrc rw - cgroup cgroup rw,name=openrc\n\
             4 0 0:4 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n",
        )
        .unwrap()
    }

    fn own() -> Result<OwnCgroups, Error> {
        Ok(crate::detect::parse_proc_cgroup(
            Path::new("t"),
            "2:memory:/user/me\n1:cpu,cpuacct:/\n0::/svc\n",
        )
        .unwrap())
    }

    #[test]
    fn clean_path_keeps_relative_paths_inside() {
        assert_eq!(clean_path("../../etc"), PathBuf::from("etc"));
        assert_eq!(clean_path("/a/../../b/./c/"), PathBuf::from("/b/c"));
        assert_eq!(clean_path(""), PathBuf::new());
    }

    #[test]
    fn absolute_path_is_below_each_mountpoint() {
        let p = resolve(&host(), Some("/berth/x"), "id", || panic!("no read")).unwrap();
        assert_eq!(p.v1["memory"], Path::new("/sys/fs/cgroup/memory/berth/x"));
        assert_eq!(
            p.v1["cpuacct"],
            Path::new("/sys/fs/cgroup/cpu,cpuacct/berth/x")
        );
        assert!(!p.v1.contains_key("name=openrc"));
        assert_eq!(
            p.unified.unwrap(),
            Path::new("/sys/fs/cgroup/unified/berth/x")
        );
    }

    #[test]
    fn relative_and_default_paths_join_own_cgroup() {
        let p = resolve(&host(), Some("a/b"), "id", own).unwrap();
        assert_eq!(
            p.v1["memory"],
            Path::new("/sys/fs/cgroup/memory/user/me/a/b")
        );
        assert_eq!(
            p.unified.unwrap(),
            Path::new("/sys/fs/cgroup/unified/svc/a/b")
        );
        let d = resolve(&host(), None, "ctr1", own).unwrap();
        assert_eq!(d.v1["cpu"], Path::new("/sys/fs/cgroup/cpu,cpuacct/ctr1"));
    }

    #[test]
    fn v2_relative_uses_parent_of_own_cgroup() {
        let h = HostCgroups::v2_at("/sys/fs/cgroup");
        let p = resolve(&h, Some("c"), "id", own).unwrap();
        assert_eq!(p.unified.unwrap(), Path::new("/sys/fs/cgroup/c"));
    }

    #[test]
    fn invalid_paths_are_named() {
        let e = resolve(&host(), Some("/"), "id", own).unwrap_err();
        assert!(e.to_string().contains("root cgroup"), "{e}");
        let e = resolve(&host(), None, "a/b", own).unwrap_err();
        assert!(e.to_string().contains("\"a/b\""), "{e}");
    }

    #[test]
    fn systemd_paths_parse_and_error_clearly() {
        let sp = SystemdPath::parse(Some("system-berth.slice:berth:abc"), "x").unwrap();
        assert_eq!(sp.unit_name(), "berth-abc.scope");
        assert_eq!(
            sp.slice_dir(),
            Path::new("/system.slice/system-berth.slice")
        );
        assert!(SystemdPath::parse(Some("/a/b"), "x").is_err());
        assert!(SystemdPath::parse(Some("nota:b:c"), "x").is_err());
        let e = systemd_unsupported(Some("system.slice:berth:abc"), "abc");
        let msg = e.to_string();
        assert!(
            msg.contains("berth-abc.scope") && msg.contains("--systemd-cgroup"),
            "{msg}"
        );
    }

    #[test]
    fn of_process_follows_proc_cgroup_below_each_mount_root() {
        let mut h = host();
        // A v1 hierarchy mounted from inside a cgroup (a container without cgroupns).
        h.v1[0].root = PathBuf::from("/docker/abc");
        let procs = crate::detect::parse_proc_cgroup(
            Path::new("t"),
            "5:name=openrc:/x\n2:memory:/docker/abc/ctr\n1:cpu,cpuacct:/\n0::/svc/ctr\n",
        )
        .unwrap();
        let p = of_process(&h, &procs);
        assert_eq!(p.layout, Layout::Hybrid);
        assert_eq!(p.v1["memory"], Path::new("/sys/fs/cgroup/memory/ctr"));
        assert_eq!(p.v1["cpu"], Path::new("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(p.v1["cpuacct"], p.v1["cpu"]);
        assert!(!p.v1.contains_key("name=openrc"));
        assert_eq!(
            p.unified.unwrap(),
            Path::new("/sys/fs/cgroup/unified/svc/ctr")
        );
    }

    #[test]
    fn of_process_leaves_out_hierarchies_the_process_is_not_in() {
        let procs = crate::detect::parse_proc_cgroup(Path::new("t"), "2:memory:/a\n").unwrap();
        let p = of_process(&host(), &procs);
        assert_eq!(p.v1.keys().collect::<Vec<_>>(), vec!["memory"]);
        assert!(p.unified.is_none());
        let v2 = HostCgroups::v2_at("/sys/fs/cgroup");
        let procs = crate::detect::parse_proc_cgroup(Path::new("t"), "0::/a/b\n").unwrap();
        let p = of_process(&v2, &procs);
        assert!(p.v1.is_empty());
        assert_eq!(p.unified.unwrap(), Path::new("/sys/fs/cgroup/a/b"));
    }
}
