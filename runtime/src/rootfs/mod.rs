//! The container's root filesystem: mounts, devices, pivot_root, masked and read-only paths.
//!
//! The container's init calls three functions, in its own mount namespace (user-ns maps
//! written, cgroup joined):
//!
//! 1. [`prepare`] — everything that needs the host's view: root propagation (`/` becomes
//!    rslave, or `linux.rootfsPropagation`; the rootfs's parent mount private), the rootfs bound
//!    onto itself, every `spec.mounts` entry in order, then — unless `/dev` is a bind mount —
//!    the default devices plus `linux.devices`, `/dev/ptmx -> pts/ptmx` and the `/dev/fd`,
//!    `stdin`, `stdout`, `stderr` (and `core`) symlinks.
//! 2. createContainer hooks run here, while the old root is still reachable.
//! 3. [`pivot()`] — pivot_root into the rootfs (or MS_MOVE + chroot with `no_pivot`); cwd is `/`.
//!    stdio still on the host's /dev/null moves to the container's.
//! 4. [`finalize()`] — after the console and sysctls: read-only remount of tmpfs and `/dev`
//!    mounts that asked for "ro" (kept writable so /dev could be filled), `root.readonly`,
//!    `linux.readonlyPaths`, `linux.maskedPaths`, then a shared/unbindable
//!    `rootfsPropagation` on the new `/`.
//!
//! # Safety against the image
//!
//! The image is untrusted: any of its paths may be a symlink (`etc -> /../../host`, absolute
//! links, links to `/proc/self/root`). Every mount target, device path and symlink we create
//! is looked up with openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS) from an fd of the rootfs
//! (see [`paths`]), created component by component under fds of resolved parents, and mounted
//! through `/proc/self/fd/N` of that very fd, so it lands where the container will see it —
//! never outside. The resolved target is also checked to be strictly inside the rootfs, and
//! nothing but a procfs may be mounted on `/proc` (only lxcfs-style files below it).
//!
//! # Mount options
//!
//! Everything runc and crun accept (see [`options`]): MS_* flags and their negations,
//! `bind`/`rbind` (flags applied by a bind remount, re-adding flags the kernel keeps locked),
//! propagation options applied to the new mount in order, recursive `r*` attributes through
//! mount_setattr(AT_RECURSIVE), `idmap`/`ridmap` (see [`idmap`]), `tmpcopyup` (see [`copyup`]);
//! unknown options are filesystem data. `type: cgroup` is described in [`cgroup_mount`].
//! Relative bind sources resolve against the caller's cwd, so the init must run in the bundle
//! directory, as runc's does.
//!
//! # User namespaces
//!
//! With `in_user_ns`, device nodes are bind mounts of the host's (mknod is refused), sysfs
//! falls back to a read-only rbind of the host's /sys when the kernel refuses a new instance,
//! and bind remounts re-apply flags the kernel keeps locked. ID-mapped mounts need the initial
//! user namespace: the runtime makes them with [`open_idmapped_sources`] before the init
//! enters the container's user namespace and the init calls
//! [`prepare_with_idmapped_sources`], which only attaches them.

mod cgroup_mount;
mod copyup;
mod devices;
mod error;
mod finalize;
mod idmap;
mod mountinfo;
mod mounts;
mod options;
pub(crate) mod paths;
mod pivot;
mod propagation;
mod sys;

#[cfg(test)]
mod tests;

pub use cgroup_mount::CgroupView;
pub use error::RootfsError;
pub use idmap::IdmappedSources;

use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;
use oci_spec::runtime::Spec;
use std::os::fd::AsFd;
use std::path::Path;

use error::sys_err;
use mounts::{Ctx, Plan};

/// How the container is set up around the rootfs.
#[derive(Debug, Clone, Default)]
pub struct RootfsOptions {
    /// runc's --no-pivot: MS_MOVE + chroot instead of pivot_root.
    pub no_pivot: bool,
    /// The init runs in a new user namespace: device nodes are bind-mounted from the host.
    pub in_user_ns: bool,
    /// The init has its own cgroup namespace: cgroup mounts are fresh cgroup filesystems.
    pub cgroup_ns: bool,
    /// The host's cgroup layout and the container's cgroups, as the runtime's cgroup manager
    /// holds them: what `type: cgroup` mounts are made of. None refuses such mounts.
    pub cgroups: Option<CgroupView>,
}

/// Every mount option name we understand, for `berth-runtime features`.
pub fn known_mount_options() -> Vec<&'static str> {
    options::known_options()
}

fn plans(spec: &Spec) -> Vec<Plan> {
    spec.mounts()
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .map(Plan::from_spec)
        .collect()
}

/// Idmapped mount sources for `spec`, made in the initial user namespace before the init
/// enters the container's: pass them to [`prepare_with_idmapped_sources`]. Needed only when
/// the container has a user namespace and a mount asks for "idmap"/"ridmap" or mappings.
pub fn open_idmapped_sources(spec: &Spec) -> Result<IdmappedSources, RootfsError> {
    idmap::open_idmapped_sources(spec)
}

/// Everything before pivot_root: propagation, the rootfs bind, `spec.mounts`, /dev;
/// attaching the idmapped mounts `sources` holds (made by
/// [`open_idmapped_sources`] before the init entered its user namespace) instead of making
/// them here. `rootfs` must be canonical (`create` resolved it once): the kernel reports
/// paths under it that way, and they are compared with it.
pub fn prepare_with_idmapped_sources(
    spec: &Spec,
    rootfs: &Path,
    opts: &RootfsOptions,
    sources: &IdmappedSources,
) -> Result<(), RootfsError> {
    debug_assert!(rootfs.is_absolute(), "rootfs {rootfs:?} is not canonical");
    let prop = propagation::root_propagation(spec)?;
    if opts.no_pivot && prop.is_some_and(|p| p & libc::MS_PRIVATE != 0) {
        return Err(RootfsError::Invalid(
            "rootfsPropagation of [r]private is not safe without pivot_root".into(),
        ));
    }
    propagation::prepare_root(rootfs, prop)?;
    let root = open(
        rootfs,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(sys_err("open rootfs", rootfs))?;
    let linux = spec.linux().as_ref();
    let ctx = Ctx {
        root,
        rootfs: rootfs.to_path_buf(),
        in_user_ns: opts.in_user_ns,
        cgroup_ns: opts.cgroup_ns,
        cgroups: opts.cgroups.clone(),
        uid_mappings: linux.and_then(|l| l.uid_mappings().clone()),
        gid_mappings: linux.and_then(|l| l.gid_mappings().clone()),
    };
    let plans = plans(spec);
    for (i, plan) in plans.iter().enumerate() {
        match sources.get(i) {
            Some(tree) => mounts::mount_prepared(&ctx, plan, tree)?,
            None => mounts::mount(&ctx, plan)?,
        }
    }
    let dev_is_bound = plans.iter().any(|p| p.opts.is_bind() && p.is_dev());
    if !dev_is_bound {
        let step = |e| RootfsError::step("set up /dev", e);
        devices::create_devices(ctx.root.as_fd(), spec, opts.in_user_ns).map_err(step)?;
        devices::setup_ptmx(ctx.root.as_fd()).map_err(step)?;
        devices::setup_dev_symlinks(ctx.root.as_fd()).map_err(step)?;
    }
    Ok(())
}

/// Enter the (canonical) rootfs; leaves cwd = "/".
pub fn pivot(rootfs: &Path, no_pivot: bool) -> Result<(), RootfsError> {
    tracing::debug!(rootfs = %rootfs.display(), no_pivot, "entering rootfs");
    if no_pivot {
        pivot::move_into(rootfs)
    } else {
        pivot::pivot_into(rootfs)
    }
    .map_err(|e| RootfsError::step("enter rootfs", e))?;
    pivot::reopen_dev_null()
}

/// After pivot: deferred read-only remounts, read-only `/`, readonlyPaths, maskedPaths and the
/// final root propagation.
pub fn finalize(spec: &Spec) -> Result<(), RootfsError> {
    finalize::remount_deferred_readonly(&plans(spec))?;
    if spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false)
    {
        finalize::readonly_root().map_err(|e| RootfsError::step("make / read-only", e))?;
    }
    if let Some(linux) = spec.linux() {
        finalize::readonly_paths(linux.readonly_paths().as_deref().unwrap_or(&[]))?;
        finalize::masked_paths(linux.masked_paths().as_deref().unwrap_or(&[]))?;
    }
    propagation::apply_final(propagation::root_propagation(spec)?)
}
