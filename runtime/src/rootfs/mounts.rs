//! Making one mount inside the rootfs: resolve (or create) the target inside the root, mount
//! onto its /proc/self/fd magic link, then re-open the target to reach the new mount and apply
//! bind remount flags, propagation and recursive attributes to it.

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::{fstat, SFlag};
use oci_spec::runtime::{LinuxIdMapping, Mount};
use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use super::error::{sys_err, RootfsError};
use super::options::{statfs_to_ms, MountOptions};
use super::paths::{self, Kind};
use super::sys::{self, proc_fd};
use super::{cgroup_mount, copyup, idmap};

/// What prepare() works with while it builds the rootfs.
pub struct Ctx {
    /// O_PATH fd of the rootfs directory: the root of every lookup.
    pub root: OwnedFd,
    /// The rootfs path with symlinks resolved, as the kernel reports paths under it.
    pub rootfs: PathBuf,
    pub in_user_ns: bool,
    pub cgroup_ns: bool,
    /// See `RootfsOptions::cgroups`.
    pub cgroups: Option<super::CgroupView>,
    /// The container's own ID mappings, used by idmap mounts that carry none.
    pub uid_mappings: Option<Vec<LinuxIdMapping>>,
    pub gid_mappings: Option<Vec<LinuxIdMapping>>,
}

/// One mount to make: a `spec.mounts` entry after option parsing, or a mount derived from one.
#[derive(Debug, Clone)]
pub struct Plan {
    pub src: String,
    pub dest: PathBuf,
    pub fstype: String,
    pub opts: MountOptions,
    pub uid_mappings: Option<Vec<LinuxIdMapping>>,
    pub gid_mappings: Option<Vec<LinuxIdMapping>>,
}

impl Plan {
    pub fn from_spec(m: &Mount) -> Plan {
        let mut opts = MountOptions::parse(m.options().as_deref().unwrap_or(&[]));
        let fstype = m.typ().clone().unwrap_or_default();
        // A "bind" type without the option still means a bind mount (crun and youki agree).
        if fstype == "bind" {
            opts.flags |= libc::MS_BIND;
        }
        let dest = m.destination();
        let dest = if dest.is_absolute() {
            dest.clone()
        } else {
            Path::new("/").join(dest)
        };
        Plan {
            src: m
                .source()
                .as_ref()
                .map(|s| s.display().to_string())
                .unwrap_or_default(),
            dest,
            fstype,
            opts,
            uid_mappings: m.uid_mappings().clone(),
            gid_mappings: m.gid_mappings().clone(),
        }
    }

    /// How errors name the mount: the source, or the type when there is no source.
    pub fn name(&self) -> String {
        if self.src.is_empty() {
            self.fstype.clone()
        } else {
            self.src.clone()
        }
    }

    pub fn is_dev(&self) -> bool {
        paths::lexical_clean(&self.dest) == Path::new("/dev")
    }
}

/// Make the mount described by `plan`; errors name the mount.
pub fn mount(ctx: &Ctx, plan: &Plan) -> Result<(), RootfsError> {
    named(plan, || mount_inner(ctx, plan))
}

/// Attach an idmapped source prepared outside the container's user namespace.
pub fn mount_prepared(ctx: &Ctx, plan: &Plan, tree: BorrowedFd<'_>) -> Result<(), RootfsError> {
    named(plan, || idmap::attach(ctx, plan, tree))
}

/// Run `f`, naming the plan's mount in its error.
fn named(plan: &Plan, f: impl FnOnce() -> Result<(), RootfsError>) -> Result<(), RootfsError> {
    tracing::debug!(src = %plan.name(), dest = %plan.dest.display(), fstype = %plan.fstype, "mount");
    f().map_err(|e| RootfsError::Mount {
        src: plan.name(),
        dest: plan.dest.display().to_string(),
        cause: Box::new(e),
    })
}

fn mount_inner(ctx: &Ctx, plan: &Plan) -> Result<(), RootfsError> {
    if plan.src.contains('\0')
        || plan.fstype.contains('\0')
        || plan.dest.as_os_str().as_encoded_bytes().contains(&0)
    {
        return Err(RootfsError::Invalid(
            "mount field contains a NUL byte".into(),
        ));
    }
    if plan.fstype == "cgroup" && !plan.opts.is_bind() {
        return cgroup_mount::mount_cgroup(ctx, plan);
    }
    if idmap::wants_idmap(plan) {
        return idmap::mount_idmapped(ctx, plan);
    }
    if plan.opts.is_bind() {
        if plan.opts.copy_symlink {
            if let Ok(target) = std::fs::read_link(&plan.src) {
                return copy_symlink(ctx, plan, &target);
            }
        }
        let src_is_dir = stat_source(&plan.src)?;
        let (target, _) = mountpoint(ctx, plan, src_is_dir)?;
        return bind(ctx, plan, target.as_fd());
    }
    let (target, existed) = if plan.fstype == "proc" || plan.fstype == "sysfs" {
        (pseudo_fs_target(ctx, plan)?, true)
    } else {
        mountpoint(ctx, plan, true)?
    };
    if plan.fstype == "tmpfs" && plan.opts.tmpcopyup {
        return copyup::mount_tmpfs_copyup(ctx, plan, target.as_fd());
    }
    fs_mount(ctx, plan, target.as_fd(), existed)
}

/// "copy-symlink": recreate the source symlink at the target instead of mounting.
fn copy_symlink(ctx: &Ctx, plan: &Plan, target: &Path) -> Result<(), RootfsError> {
    let (dir, name) = paths::parent_and_name(ctx.root.as_fd(), &plan.dest)
        .map_err(sys_err("create parent of", &plan.dest))?;
    match nix::unistd::symlinkat(target, &dir, name.as_os_str()) {
        Ok(()) => Ok(()),
        // Already the same link (a restarted container): fine.
        Err(Errno::EEXIST)
            if nix::fcntl::readlinkat(&dir, name.as_os_str())
                .is_ok_and(|t| Path::new(&t) == target) =>
        {
            Ok(())
        }
        Err(e) => Err(RootfsError::sys("symlink", &plan.dest, e)),
    }
}

/// Whether the bind source is a directory; a missing source is an error naming it.
pub fn stat_source(src: &str) -> Result<bool, RootfsError> {
    std::fs::metadata(src).map(|m| m.is_dir()).map_err(|e| {
        RootfsError::sys(
            "stat",
            src,
            Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        )
    })
}

/// Open the mount target inside the root, creating it when absent (a file when binding a
/// non-directory). Returns the fd and whether the target already existed.
pub fn mountpoint(
    ctx: &Ctx,
    plan: &Plan,
    src_is_dir: bool,
) -> Result<(OwnedFd, bool), RootfsError> {
    let (fd, existed) = match paths::open_in_root(ctx.root.as_fd(), &plan.dest, OFlag::O_PATH) {
        Ok(fd) => (fd, true),
        Err(Errno::ENOENT) => {
            let kind = if src_is_dir { Kind::Dir } else { Kind::File };
            let fd = paths::open_or_create(ctx.root.as_fd(), &plan.dest, kind)
                .map_err(sys_err("create mountpoint", &plan.dest))?;
            (fd, false)
        }
        Err(e) => return Err(RootfsError::sys("open mountpoint", &plan.dest, e)),
    };
    check_target(ctx, plan, fd.as_fd())?;
    Ok((fd, existed))
}

/// procfs and sysfs must land on a real directory, never through a symlink at the end.
fn pseudo_fs_target(ctx: &Ctx, plan: &Plan) -> Result<OwnedFd, RootfsError> {
    let fd = match paths::open_in_root(
        ctx.root.as_fd(),
        &plan.dest,
        OFlag::O_PATH | OFlag::O_NOFOLLOW,
    ) {
        Ok(fd) => {
            let st = fstat(&fd).map_err(sys_err("stat", &plan.dest))?;
            if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFDIR {
                return Err(RootfsError::Invalid(format!(
                    "{} must be mounted on an ordinary directory",
                    plan.fstype
                )));
            }
            fd
        }
        Err(Errno::ENOENT) => paths::open_or_create(ctx.root.as_fd(), &plan.dest, Kind::Dir)
            .map_err(sys_err("create mountpoint", &plan.dest))?,
        Err(e) => return Err(RootfsError::sys("open mountpoint", &plan.dest, e)),
    };
    check_target(ctx, plan, fd.as_fd())?;
    Ok(fd)
}

/// Files under /proc that lxcfs-style bind mounts may cover.
const PROC_ALLOWED: &[&str] = &[
    "proc/cpuinfo",
    "proc/diskstats",
    "proc/meminfo",
    "proc/stat",
    "proc/swaps",
    "proc/uptime",
    "proc/loadavg",
    "proc/slabinfo",
    "proc/sys/kernel/ns_last_pid",
    "proc/sys/crypto/fips_enabled",
];

/// The resolved target must be strictly inside the rootfs, and nothing but a procfs may cover
/// /proc or anything under it (a tmpfs over /proc would hide masked paths).
fn check_target(ctx: &Ctx, plan: &Plan, fd: BorrowedFd<'_>) -> Result<(), RootfsError> {
    let full = paths::fd_path(fd).map_err(sys_err("readlink mountpoint", &plan.dest))?;
    let rel = paths::inside(&ctx.rootfs, &full).ok_or_else(|| {
        RootfsError::Invalid(format!(
            "mountpoint {} is outside the rootfs",
            full.display()
        ))
    })?;
    if rel.as_os_str().is_empty() {
        return Err(RootfsError::Invalid(
            "mountpoint is the rootfs itself".to_string(),
        ));
    }
    if rel == Path::new("proc") {
        let ok = if plan.opts.is_bind() {
            nix::sys::statfs::statfs(plan.src.as_str())
                .map(|s| s.filesystem_type() == nix::sys::statfs::PROC_SUPER_MAGIC)
                .unwrap_or(false)
        } else {
            plan.fstype == "proc"
        };
        if !ok {
            return Err(RootfsError::Invalid(
                "/proc cannot be mounted because it is not of type proc".into(),
            ));
        }
    } else if rel.starts_with("proc") && !PROC_ALLOWED.iter().any(|p| rel == Path::new(p)) {
        return Err(RootfsError::Invalid(format!(
            "/{} cannot be mounted because it is inside /proc",
            rel.display()
        )));
    }
    Ok(())
}

/// A filesystem mount (proc, tmpfs, devpts, mqueue, sysfs, overlay...).
fn fs_mount(
    ctx: &Ctx,
    plan: &Plan,
    target: BorrowedFd<'_>,
    existed: bool,
) -> Result<(), RootfsError> {
    let mut flags = plan.opts.flags;
    // Kept writable until finalize(): /dev gets device nodes, and a tmpfs may be written by
    // later mounts and hooks.
    if plan.fstype == "tmpfs" || plan.is_dev() {
        flags &= !libc::MS_RDONLY;
    }
    let mut data = plan.opts.data_string();
    if plan.fstype == "tmpfs" && existed {
        // Keep the image's permissions on the directory we cover (user's mode= still wins).
        let st = fstat(target).map_err(sys_err("stat", &plan.dest))?;
        let mode = format!("mode={:04o}", st.st_mode & 0o7777);
        data = if data.is_empty() {
            mode
        } else {
            format!("{mode},{data}")
        };
    }
    let src = if plan.src.is_empty() {
        plan.fstype.as_str()
    } else {
        plan.src.as_str()
    };
    let res = sys::mount(
        Some(OsStr::new(src)),
        &proc_fd(target),
        Some(&plan.fstype),
        flags,
        Some(&data),
    );
    match res {
        Ok(()) => {}
        // Without its own network namespace a user namespace cannot mount sysfs; the host's,
        // bound read-only as asked, is what runc falls back to as well.
        Err(Errno::EPERM) if plan.fstype == "sysfs" && ctx.in_user_ns => {
            tracing::debug!(dest = %plan.dest.display(), "sysfs refused in user namespace; binding /sys");
            let mut fallback = plan.clone();
            fallback.src = "/sys".into();
            fallback.opts.flags |= libc::MS_BIND | libc::MS_REC;
            // A remount only reaches the top mount; the host's mounts under /sys must be
            // read-only too.
            if plan.opts.flags & libc::MS_RDONLY != 0 {
                fallback.opts.rec_set |= libc::MOUNT_ATTR_RDONLY;
            }
            return bind(ctx, &fallback, target);
        }
        Err(e) => return Err(RootfsError::sys("mount", &plan.dest, e)),
    }
    let top = paths::reopen_top(ctx.root.as_fd(), &ctx.rootfs, target)
        .map_err(sys_err("reopen mountpoint", &plan.dest))?;
    after_mount(plan, top.as_fd())
}

/// A bind mount: bind, then remount for the flags, since MS_BIND ignores them.
pub fn bind(ctx: &Ctx, plan: &Plan, target: BorrowedFd<'_>) -> Result<(), RootfsError> {
    let flags = libc::MS_BIND | (plan.opts.flags & libc::MS_REC);
    sys::mount(
        Some(OsStr::new(&plan.src)),
        &proc_fd(target),
        None,
        flags,
        None,
    )
    .map_err(sys_err("bind", &plan.dest))?;
    let top = paths::reopen_top(ctx.root.as_fd(), &ctx.rootfs, target)
        .map_err(sys_err("reopen mountpoint", &plan.dest))?;
    remount_bind_flags(plan, top.as_fd())?;
    after_mount(plan, top.as_fd())
}

/// MS_* flags the kernel locks when a mount is inherited across user namespaces.
const LOCKED: libc::c_ulong = libc::MS_RDONLY
    | libc::MS_NODEV
    | libc::MS_NOEXEC
    | libc::MS_NOSUID
    | libc::MS_NOATIME
    | libc::MS_RELATIME
    | libc::MS_STRICTATIME
    | libc::MS_NODIRATIME;
const ATIMES: libc::c_ulong =
    libc::MS_NOATIME | libc::MS_RELATIME | libc::MS_STRICTATIME | libc::MS_NODIRATIME;

/// The mount(8) names of the LOCKED bits in `flags`, for errors.
fn flag_names(flags: libc::c_ulong) -> String {
    [
        (libc::MS_RDONLY, "ro"),
        (libc::MS_NODEV, "nodev"),
        (libc::MS_NOEXEC, "noexec"),
        (libc::MS_NOSUID, "nosuid"),
        (libc::MS_NOATIME, "noatime"),
        (libc::MS_RELATIME, "relatime"),
        (libc::MS_STRICTATIME, "strictatime"),
        (libc::MS_NODIRATIME, "nodiratime"),
    ]
    .iter()
    .filter(|(bit, _)| flags & bit != 0)
    .map(|(_, name)| *name)
    .collect::<Vec<_>>()
    .join(",")
}

/// Apply the requested per-mount flags to a fresh bind mount, as `mount --bind -o` users
/// expect: exactly the requested flags, unless the kernel refuses because the source has
/// locked ones; then keep those and retry, and refuse if the user asked to clear one.
pub fn remount_bind_flags(plan: &Plan, top: BorrowedFd<'_>) -> Result<(), RootfsError> {
    let o = &plan.opts;
    if o.flags & !(libc::MS_BIND | libc::MS_REC | libc::MS_REMOUNT) == 0 && o.cleared == 0 {
        return Ok(());
    }
    let flags = (o.flags & !libc::MS_REC) | libc::MS_BIND | libc::MS_REMOUNT;
    let first = match sys::mount(None, &proc_fd(top), None, flags, None) {
        Ok(()) => return Ok(()),
        Err(e) => e,
    };
    tracing::debug!(dest = %plan.dest.display(), error = %first, "bind remount refused; retrying with the source's locked flags");
    let st = nix::sys::statvfs::statvfs(plan.src.as_str())
        .or_else(|_| nix::sys::statvfs::fstatvfs(top))
        .map_err(sys_err("statfs", &plan.src))?;
    let src_flags = statfs_to_ms(st.flags().bits() as libc::c_ulong);
    let cannot_clear = src_flags & o.cleared & LOCKED;
    if cannot_clear != 0 {
        return Err(RootfsError::Invalid(format!(
            "remount bind: the source's {} cannot be cleared in a user namespace: {first}",
            flag_names(cannot_clear)
        )));
    }
    if o.flags & ATIMES != 0 && o.flags & ATIMES != src_flags & ATIMES {
        return Err(RootfsError::Invalid(format!(
            "remount bind: cannot change locked atime flags: {first}"
        )));
    }
    sys::mount(
        None,
        &proc_fd(top),
        None,
        flags | (src_flags & LOCKED),
        None,
    )
    .map_err(sys_err("remount bind", &plan.dest))
}

/// Propagation changes and recursive attributes, on the new mount itself.
pub fn after_mount(plan: &Plan, top: BorrowedFd<'_>) -> Result<(), RootfsError> {
    for &p in &plan.opts.propagation {
        sys::mount(None, &proc_fd(top), None, p, None)
            .map_err(sys_err("set propagation of", &plan.dest))?;
    }
    if let Some(attr) = plan.opts.rec_attr() {
        sys::mount_setattr(top, true, &attr).map_err(sys_err("mount_setattr", &plan.dest))?;
    }
    Ok(())
}
