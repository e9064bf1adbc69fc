//! `type: cgroup` mounts, made from the host layout the runtime detected when it chose the
//! container's cgroups ([`CgroupView`]), never from a second reading of the mount table:
//!
//! * cgroup v1 (and hybrid hosts, like runc, which leaves the hybrid's cgroup2 out): a tmpfs at
//!   the target, then for every v1 hierarchy either a fresh cgroup mount of its controllers
//!   (with a cgroup namespace, whose root is the container's cgroup) or a bind of the
//!   container's own cgroup directory of the host hierarchy; plus symlinks `cpu -> cpu,cpuacct`
//!   for co-mounted controllers. The tmpfs turns read-only last when "ro" was asked.
//! * cgroup v2: a cgroup2 mount with a cgroup namespace, else (or when the kernel refuses) a
//!   bind of the container's own cgroup directory — never the whole host hierarchy.

use berth_cgroups::{CgroupPaths, HostCgroups, Layout, V1Mount};
use nix::errno::Errno;
use std::ffi::OsStr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use super::error::{sys_err, RootfsError};
use super::mounts::{self, Ctx, Plan};
use super::options::MountOptions;
use super::paths::{self, Kind};
use super::sys::{self, proc_fd};

const DEFAULT_FLAGS: libc::c_ulong = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;

/// What cgroup mounts are made of: the host's hierarchies and the container's directory in
/// each, both as the runtime's cgroup manager already holds them.
#[derive(Debug, Clone)]
pub struct CgroupView {
    pub host: HostCgroups,
    pub paths: CgroupPaths,
}

pub fn mount_cgroup(ctx: &Ctx, plan: &Plan) -> Result<(), RootfsError> {
    let view = ctx.cgroups.as_ref().ok_or_else(|| {
        RootfsError::Invalid(format!(
            "cgroup mount on {}: the container's cgroups are unknown",
            plan.dest.display()
        ))
    })?;
    // A cgroup2 mount on /sys/fs/cgroup is what the container expects to see, even when v1
    // hierarchies are mounted elsewhere.
    let unified_root = view
        .host
        .unified
        .as_ref()
        .is_some_and(|u| u.mountpoint == Path::new("/sys/fs/cgroup"));
    if unified_root || view.host.layout == Layout::V2 {
        mount_v2(ctx, plan, view)
    } else {
        mount_v1(ctx, plan, view)
    }
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

fn mount_v2(ctx: &Ctx, plan: &Plan, view: &CgroupView) -> Result<(), RootfsError> {
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
    mounts::mount(
        ctx,
        &bind_plan(plan, &v2_source(&view.paths)?, plan.dest.clone()),
    )
}

/// The bind source is the container's cgroup as the runtime chose it: never re-derived from
/// /proc/self/cgroup, which says "/" inside a cgroup namespace and would bind the host's
/// whole hierarchy into the container.
fn v2_source(paths: &CgroupPaths) -> Result<PathBuf, RootfsError> {
    paths
        .unified
        .clone()
        .ok_or_else(|| RootfsError::Invalid("the container has no cgroup2 directory".into()))
}

/// The container's directory in v1 hierarchy `m` (only outside a cgroup namespace: inside
/// one the hierarchy is mounted fresh).
fn v1_source(paths: &CgroupPaths, m: &V1Mount) -> Result<PathBuf, RootfsError> {
    m.controllers
        .iter()
        .find_map(|c| paths.v1.get(c))
        .cloned()
        .ok_or_else(|| {
            RootfsError::Invalid(format!(
                "the container has no cgroup in the {} hierarchy",
                m.mountpoint.display()
            ))
        })
}

fn mount_v1(ctx: &Ctx, plan: &Plan, view: &CgroupView) -> Result<(), RootfsError> {
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
    for m in &view.host.v1 {
        let Some(sub) = m.mountpoint.file_name() else {
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
            let data = m.controllers.join(",");
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
            mounts::mount(ctx, &bind_plan(plan, &v1_source(&view.paths, m)?, dest))?;
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

    fn container_paths() -> CgroupPaths {
        CgroupPaths {
            layout: Layout::Hybrid,
            v1: [
                (
                    "cpu".to_string(),
                    PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/box/c1"),
                ),
                (
                    "cpuacct".to_string(),
                    PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/box/c1"),
                ),
            ]
            .into(),
            unified: Some(PathBuf::from("/sys/fs/cgroup/unified/box/c1")),
        }
    }

    #[test]
    fn rootfs_cgroup_bind_sources_are_the_containers_cgroups() {
        let paths = container_paths();
        assert_eq!(
            v2_source(&paths).unwrap(),
            PathBuf::from("/sys/fs/cgroup/unified/box/c1")
        );
        let cpu = V1Mount {
            mountpoint: PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"),
            root: PathBuf::from("/"),
            controllers: vec!["cpu".into(), "cpuacct".into()],
        };
        assert_eq!(
            v1_source(&paths, &cpu).unwrap(),
            PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/box/c1")
        );
    }

    #[test]
    fn rootfs_cgroup_bind_without_the_containers_cgroup_is_refused() {
        let v1_only = CgroupPaths {
            layout: Layout::V1,
            v1: Default::default(),
            unified: None,
        };
        let e = v2_source(&v1_only).unwrap_err();
        assert!(e.to_string().contains("no cgroup2 directory"), "{e}");
        let memory = V1Mount {
            mountpoint: PathBuf::from("/sys/fs/cgroup/memory"),
            root: PathBuf::from("/"),
            controllers: vec!["memory".into()],
        };
        let e = v1_source(&container_paths(), &memory).unwrap_err();
        assert!(e.to_string().contains("/sys/fs/cgroup/memory"), "{e}");
    }
}
