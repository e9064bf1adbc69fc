//! `type: cgroup` mounts. The layout is read from /proc/self/mountinfo, never assumed:
//!
//! * cgroup v1 (and hybrid hosts, like runc, which leaves the hybrid's cgroup2 out): a tmpfs at
//!   the target, then for every v1 hierarchy either a fresh cgroup mount of its controllers
//!   (with a cgroup namespace, whose root is the container's cgroup) or a bind of the
//!   container's own cgroup directory of the host hierarchy; plus symlinks `cpu -> cpu,cpuacct`
//!   for co-mounted controllers. The tmpfs turns read-only last when "ro" was asked.
//! * cgroup v2: a cgroup2 mount with a cgroup namespace, else (or when the kernel refuses) a
//!   bind of the container's own cgroup directory — never the whole host hierarchy.

use nix::errno::Errno;
use std::ffi::OsStr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use super::error::{sys_err, RootfsError};
use super::mountinfo::{read_mountinfo, read_proc_cgroup, CgroupLine, MountInfo};
use super::mounts::{self, Ctx, Plan};
use super::options::MountOptions;
use super::paths::{self, Kind};
use super::sys::{self, proc_fd};

const DEFAULT_FLAGS: libc::c_ulong = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;

pub fn mount_cgroup(ctx: &Ctx, plan: &Plan) -> Result<(), RootfsError> {
    let infos = read_mountinfo().map_err(|e| io_err("read /proc/self/mountinfo", e))?;
    let lines = read_proc_cgroup().map_err(|e| io_err("read /proc/self/cgroup", e))?;
    let unified_root = infos
        .iter()
        .rev()
        .find(|m| m.mount_point == Path::new("/sys/fs/cgroup"))
        .is_some_and(|m| m.fs_type == "cgroup2");
    let has_v1 = infos.iter().any(|m| m.fs_type == "cgroup");
    if unified_root || !has_v1 {
        mount_v2(ctx, plan, &infos, &lines)
    } else {
        mount_v1(ctx, plan, &infos, &lines)
    }
}

fn io_err(what: &'static str, e: std::io::Error) -> RootfsError {
    RootfsError::sys(
        what,
        "",
        Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
    )
}

/// The host directory of our own cgroup in hierarchy `m`.
fn own_dir(m: &MountInfo, own: &Path) -> PathBuf {
    let rel = own.strip_prefix(&m.root).unwrap_or(Path::new(""));
    m.mount_point.join(rel)
}

fn bind_plan(plan: &Plan, src: &Path, dest: PathBuf) -> Plan {
    let mut opts = MountOptions {
        flags: libc::MS_BIND | libc::MS_REC | (plan.opts.flags & !libc::MS_REMOUNT),
        cleared: plan.opts.cleared,
        propagation: plan.opts.propagation.clone(),
        ..Default::default()
    };
    opts.rec_set = plan.opts.rec_set;
    opts.rec_clr = plan.opts.rec_clr;
    Plan {
        src: src.display().to_string(),
        dest,
        fstype: "bind".into(),
        opts,
        uid_mappings: None,
        gid_mappings: None,
    }
}

fn mount_v2(
    ctx: &Ctx,
    plan: &Plan,
    infos: &[MountInfo],
    lines: &[CgroupLine],
) -> Result<(), RootfsError> {
    if ctx.cgroup_ns {
        let (target, _) = mounts::mountpoint(ctx, plan, true)?;
        let src = if plan.src.is_empty() {
            "cgroup2"
        } else {
            plan.src.as_str()
        };
        match sys::mount(
            Some(OsStr::new(src)),
            &proc_fd(target.as_fd()),
            Some("cgroup2"),
            plan.opts.flags,
            Some(&plan.opts.data_string()),
        ) {
            Ok(()) => {
                let top = paths::reopen_top(ctx.root.as_fd(), &ctx.rootfs, target.as_fd())
                    .map_err(sys_err("reopen mountpoint", &plan.dest))?;
                return mounts::after_mount(plan, top.as_fd());
            }
            // A user namespace that does not own the cgroup namespace cannot mount cgroup2.
            Err(e @ (Errno::EPERM | Errno::EBUSY)) => {
                tracing::debug!(error = %e, "cgroup2 mount refused; binding our own cgroup instead");
            }
            Err(e) => return Err(RootfsError::sys("mount cgroup2 on", &plan.dest, e)),
        }
    }
    let src = v2_source(ctx, infos, lines)?;
    mounts::mount(ctx, &bind_plan(plan, &src, plan.dest.clone()))
}

/// The bind source is the container's cgroup as the runtime chose it. Re-deriving it from
/// /proc/self/cgroup is only right outside a cgroup namespace: inside one that file says
/// "/", which would bind the host's whole hierarchy into the container.
fn v2_source(ctx: &Ctx, infos: &[MountInfo], lines: &[CgroupLine]) -> Result<PathBuf, RootfsError> {
    Ok(match &ctx.cgroups {
        Some(p) => p
            .unified
            .clone()
            .ok_or_else(|| RootfsError::Invalid("the container has no cgroup2 directory".into()))?,
        None if ctx.cgroup_ns => {
            return Err(RootfsError::Invalid(
                "cannot bind the container's cgroup from inside a cgroup namespace without its cgroup paths"
                    .into(),
            ))
        }
        None => {
            let unified = infos
                .iter()
                .rev()
                .find(|m| m.fs_type == "cgroup2")
                .ok_or_else(|| RootfsError::Invalid("no cgroup2 hierarchy is mounted".into()))?;
            let own = lines
                .iter()
                .find(|l| l.controllers.is_empty())
                .map(|l| l.path.clone())
                .unwrap_or_else(|| PathBuf::from("/"));
            own_dir(unified, &own)
        }
    })
}

/// The host directory to bind for v1 hierarchy `m` (never inside a cgroup namespace: there
/// the hierarchy is mounted fresh).
fn v1_source(ctx: &Ctx, m: &MountInfo, line: &CgroupLine) -> Result<PathBuf, RootfsError> {
    match &ctx.cgroups {
        Some(p) => line
            .controllers
            .iter()
            .find_map(|c| p.v1.get(c))
            .cloned()
            .ok_or_else(|| {
                RootfsError::Invalid(format!(
                    "the container has no cgroup in the {} hierarchy",
                    m.mount_point.display()
                ))
            }),
        None => Ok(own_dir(m, &line.path)),
    }
}

/// The co-mounted controllers of a v1 hierarchy, as its /proc/self/cgroup line lists them.
fn line_for<'a>(m: &MountInfo, lines: &'a [CgroupLine]) -> Option<&'a CgroupLine> {
    lines.iter().find(|l| {
        !l.controllers.is_empty() && l.controllers.iter().any(|c| m.super_options.contains(c))
    })
}

fn mount_v1(
    ctx: &Ctx,
    plan: &Plan,
    infos: &[MountInfo],
    lines: &[CgroupLine],
) -> Result<(), RootfsError> {
    let tmpfs = Plan {
        src: "tmpfs".into(),
        dest: plan.dest.clone(),
        fstype: "tmpfs".into(),
        opts: MountOptions {
            flags: DEFAULT_FLAGS,
            data: vec!["mode=755".into()],
            propagation: plan.opts.propagation.clone(),
            ..Default::default()
        },
        uid_mappings: None,
        gid_mappings: None,
    };
    mounts::mount(ctx, &tmpfs)?;

    let mut combined = Vec::new();
    for m in infos.iter().filter(|m| m.fs_type == "cgroup") {
        let Some(line) = line_for(m, lines) else {
            continue;
        };
        let Some(sub) = m.mount_point.file_name() else {
            continue;
        };
        let sub = sub.to_string_lossy().into_owned();
        let dest = plan.dest.join(&sub);
        if sub.contains(',') {
            combined.push(sub.clone());
        }
        if ctx.cgroup_ns {
            let target = paths::open_or_create(ctx.root.as_fd(), &dest, Kind::Dir)
                .map_err(sys_err("create cgroup mountpoint", &dest))?;
            let data = line.controllers.join(",");
            let src = if data.starts_with("name=") {
                "systemd"
            } else {
                "cgroup"
            };
            let flags = DEFAULT_FLAGS | (plan.opts.flags & libc::MS_RDONLY);
            sys::mount(
                Some(OsStr::new(src)),
                &proc_fd(target.as_fd()),
                Some("cgroup"),
                flags,
                Some(&data),
            )
            .map_err(sys_err("mount cgroup on", &dest))?;
        } else {
            mounts::mount(ctx, &bind_plan(plan, &v1_source(ctx, m, line)?, dest))?;
        }
    }
    for sub in &combined {
        for part in sub.split(',') {
            let link = plan.dest.join(part);
            let (dir, name) = paths::parent_and_name(ctx.root.as_fd(), &link)
                .map_err(sys_err("create parent of", &link))?;
            match nix::unistd::symlinkat(sub.as_str(), &dir, name.as_os_str()) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(RootfsError::sys("symlink", &link, e)),
            }
        }
    }
    if plan.opts.flags & libc::MS_RDONLY != 0 {
        let top = paths::open_in_root(ctx.root.as_fd(), &plan.dest, nix::fcntl::OFlag::O_PATH)
            .map_err(sys_err("open", &plan.dest))?;
        let flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | DEFAULT_FLAGS;
        sys::mount(None, &proc_fd(top.as_fd()), None, flags, None)
            .map_err(sys_err("remount read-only", &plan.dest))?;
    }
    Ok(())
}

#[cfg(test)]
mod unit {
    use super::*;
    use crate::rootfs::mountinfo::{parse_mountinfo, parse_proc_cgroup};

    fn ctx(cgroup_ns: bool, cgroups: Option<berth_cgroups::CgroupPaths>) -> Ctx {
        Ctx {
            root: std::fs::File::open("/").unwrap().into(),
            rootfs: PathBuf::from("/"),
            in_user_ns: false,
            cgroup_ns,
            cgroups,
            uid_mappings: None,
            gid_mappings: None,
        }
    }

    fn container_paths() -> berth_cgroups::CgroupPaths {
        berth_cgroups::CgroupPaths {
            layout: berth_cgroups::Layout::Hybrid,
            v1: [(
                "cpu".to_string(),
                PathBuf::from("/sys/fs/cgroup/cpu/box/c1"),
            )]
            .into(),
            unified: Some(PathBuf::from("/sys/fs/cgroup/unified/box/c1")),
        }
    }

    #[test]
    fn rootfs_cgroup_bind_sources_are_the_containers_cgroups() {
        // Inside a cgroup namespace /proc/self/cgroup says "/" and the mount's root is "/..".
        let infos = parse_mountinfo(
            "41 31 0:38 /.. /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n\
             32 31 0:29 /.. /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n",
        );
        let lines = parse_proc_cgroup("4:cpu:/\n0::/\n");
        let c = ctx(true, Some(container_paths()));
        assert_eq!(
            v2_source(&c, &infos, &lines).unwrap(),
            PathBuf::from("/sys/fs/cgroup/unified/box/c1")
        );
        let cpu = line_for(&infos[1], &lines).unwrap();
        assert_eq!(
            v1_source(&c, &infos[1], cpu).unwrap(),
            PathBuf::from("/sys/fs/cgroup/cpu/box/c1")
        );
    }

    #[test]
    fn rootfs_cgroup_bind_in_a_cgroup_namespace_never_falls_back_to_the_whole_hierarchy() {
        let infos =
            parse_mountinfo("41 31 0:38 /.. /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n");
        let lines = parse_proc_cgroup("0::/\n");
        let e = v2_source(&ctx(true, None), &infos, &lines).unwrap_err();
        assert!(e.to_string().contains("cgroup namespace"), "{e}");
        // Outside a namespace the derived path is still used (the module's own tests).
        assert_eq!(
            v2_source(&ctx(false, None), &infos, &lines).unwrap(),
            PathBuf::from("/sys/fs/cgroup/unified")
        );
    }

    #[test]
    fn rootfs_cgroup_v1_hierarchies_match_their_own_cgroup() {
        let infos = parse_mountinfo(
            "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
             40 31 0:37 /outer /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd\n",
        );
        let lines =
            parse_proc_cgroup("4:cpu,cpuacct:/box/one\n1:name=systemd:/outer/box\n0::/box\n");
        let cpu = line_for(&infos[0], &lines).unwrap();
        assert_eq!(cpu.controllers, vec!["cpu", "cpuacct"]);
        assert_eq!(
            own_dir(&infos[0], &cpu.path),
            PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/box/one")
        );
        let systemd = line_for(&infos[1], &lines).unwrap();
        // The mount's root is a subtree: our path is relative to it.
        assert_eq!(
            own_dir(&infos[1], &systemd.path),
            PathBuf::from("/sys/fs/cgroup/systemd/box")
        );
    }
}
