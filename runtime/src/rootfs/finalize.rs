//! Steps run from inside the new root: read-only remounts deferred by prepare(), a read-only
//! `/`, `linux.readonlyPaths` and `linux.maskedPaths`.
//!
//! These use the new mount API on fds (open_tree, mount_setattr, fsmount, move_mount), so they
//! need no /proc in the container and cannot be redirected between lookup and mount. Lookups
//! still go through openat2 with RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS, which keeps
//! `/proc/self/root`-style magic links from leading anywhere.

use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::sys::stat::{fstat, Mode, SFlag};
use nix::sys::statvfs::statvfs;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

use super::error::{sys_err, RootfsError};
use super::mounts::Plan;
use super::options::statfs_to_ms;
use super::paths;
use super::pivot::is_dev_null;
use super::sys;
use libc::{MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY};

fn root_fd() -> Result<OwnedFd, RootfsError> {
    open(
        "/",
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(sys_err("open", "/"))
}

/// tmpfs mounts and /dev that asked for "ro" were mounted writable so prepare() could fill
/// them; now they turn read-only.
pub fn remount_deferred_readonly(plans: &[Plan]) -> Result<(), RootfsError> {
    let root = root_fd()?;
    for plan in plans {
        if plan.opts.flags & libc::MS_RDONLY == 0 || !(plan.fstype == "tmpfs" || plan.is_dev()) {
            continue;
        }
        let fd = paths::open_in_root(root.as_fd(), &plan.dest, OFlag::O_PATH | OFlag::O_DIRECTORY)
            .map_err(sys_err("open", &plan.dest))?;
        let attr = sys::mount_attr_bits(MOUNT_ATTR_RDONLY, 0);
        sys::mount_setattr(fd.as_fd(), false, &attr)
            .map_err(sys_err("remount read-only", &plan.dest))?;
    }
    Ok(())
}

/// Remount `/` read-only, keeping the flags it has (some may be locked in a user namespace).
pub fn readonly_root() -> Result<(), RootfsError> {
    let flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY;
    if sys::mount(None, Path::new("/"), None, flags, None).is_ok() {
        return Ok(());
    }
    let st = statvfs("/").map_err(sys_err("statfs", "/"))?;
    let keep = statfs_to_ms(st.flags().bits() as libc::c_ulong) & !libc::MS_STRICTATIME;
    sys::mount(None, Path::new("/"), None, flags | keep, None)
        .map_err(sys_err("remount read-only", "/"))
}

/// Bind each path onto itself and make the top mount read-only. Missing paths are skipped.
pub fn readonly_paths(list: &[String]) -> Result<(), RootfsError> {
    if list.is_empty() {
        return Ok(());
    }
    let root = root_fd()?;
    for p in list {
        let path = absolute("readonlyPaths", p)?;
        let fd = match paths::open_in_root(root.as_fd(), path, OFlag::O_PATH) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(readonly_err(p, RootfsError::sys("open", p, e))),
        };
        let tree = sys::clone_tree(fd.as_raw_fd(), Path::new(""), true)
            .map_err(|e| readonly_err(p, RootfsError::sys("open_tree", p, e)))?;
        let attr = sys::mount_attr_bits(MOUNT_ATTR_RDONLY, 0);
        sys::mount_setattr(tree.as_fd(), false, &attr)
            .map_err(|e| readonly_err(p, RootfsError::sys("mount_setattr", p, e)))?;
        sys::move_mount(tree.as_fd(), fd.as_fd())
            .map_err(|e| readonly_err(p, RootfsError::sys("move_mount onto", p, e)))?;
    }
    Ok(())
}

/// The runtime spec requires absolute paths here; a relative one is a configuration error
/// rather than something to guess a base for.
fn absolute<'a>(field: &str, p: &'a str) -> Result<&'a Path, RootfsError> {
    let path = Path::new(p);
    if path.is_absolute() {
        Ok(path)
    } else {
        Err(RootfsError::Invalid(format!(
            "linux.{field} entry {p:?} is not an absolute path"
        )))
    }
}

fn readonly_err(p: &str, e: RootfsError) -> RootfsError {
    RootfsError::step(format!("make {p} read-only"), e)
}

/// /dev/null over files, an empty read-only tmpfs over directories. Missing paths are skipped.
pub fn masked_paths(list: &[String]) -> Result<(), RootfsError> {
    if list.is_empty() {
        return Ok(());
    }
    let root = root_fd()?;
    let mut done: Vec<std::path::PathBuf> = Vec::new();
    // One checked /dev/null and one empty tmpfs serve every mask: later ones are clones of
    // the first (a clone keeps the read-only flag), not new superblocks per path.
    let mut null: Option<OwnedFd> = None;
    let mut first_tmpfs: Option<OwnedFd> = None;
    for p in list {
        let path = absolute("maskedPaths", p)?;
        let fd = match paths::open_in_root(root.as_fd(), path, OFlag::O_PATH) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(mask_err(p, RootfsError::sys("open", p, e))),
        };
        let real = paths::fd_path(fd.as_fd()).unwrap_or_else(|_| path.to_path_buf());
        if done.contains(&real) {
            continue;
        }
        let st = fstat(&fd).map_err(|e| mask_err(p, RootfsError::sys("stat", p, e)))?;
        let is_dir = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR;
        let mask = if is_dir {
            match &first_tmpfs {
                Some(t) => sys::clone_tree(t.as_raw_fd(), Path::new(""), false)
                    .map_err(sys_err("clone masking tmpfs", "tmpfs")),
                None => empty_readonly_tmpfs(),
            }
        } else {
            if null.is_none() {
                null = Some(checked_dev_null().map_err(|e| mask_err(p, e))?);
            }
            let n = null.as_ref().expect("set above");
            sys::clone_tree(n.as_raw_fd(), Path::new(""), false)
                .map_err(sys_err("open_tree", "/dev/null"))
        }
        .map_err(|e| mask_err(p, e))?;
        sys::move_mount(mask.as_fd(), fd.as_fd())
            .map_err(|e| mask_err(p, RootfsError::sys("move_mount onto", p, e)))?;
        if is_dir && first_tmpfs.is_none() {
            first_tmpfs = Some(mask);
        }
        done.push(real);
    }
    Ok(())
}

fn mask_err(p: &str, e: RootfsError) -> RootfsError {
    RootfsError::step(format!("mask {p}"), e)
}

fn empty_readonly_tmpfs() -> Result<OwnedFd, RootfsError> {
    let attrs = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC;
    match sys::new_detached_fs("tmpfs", "tmpfs", &["nr_blocks=1", "nr_inodes=1"], attrs) {
        Ok(fd) => Ok(fd),
        // Some distribution kernels refuse nr_inodes below 2.
        Err(_) => sys::new_detached_fs("tmpfs", "tmpfs", &["nr_blocks=1", "nr_inodes=2"], attrs)
            .map_err(sys_err("create masking tmpfs", "tmpfs")),
    }
}

/// The container's /dev/null, refused unless it really is the null device.
fn checked_dev_null() -> Result<OwnedFd, RootfsError> {
    let null = open("/dev/null", OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(sys_err("open", "/dev/null"))?;
    if !is_dev_null(null.as_fd()) {
        return Err(RootfsError::Invalid(
            "the container's /dev/null is not the null device".into(),
        ));
    }
    Ok(null)
}
