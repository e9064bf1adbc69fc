//! Entering the rootfs: pivot_root(".", ".") and a lazy unmount of the old root stacked on
//! top (the LXC/runc trick that needs no put_old directory), or, with --no-pivot, MS_MOVE of
//! the rootfs onto `/` and chroot — after detaching the host's procfs and sysfs, which would
//! otherwise stay reachable and let the container mount new ones.

use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::mount::{umount2, MntFlags};
use nix::sys::stat::{fstat, major, minor, Mode, SFlag};
use nix::unistd::{chdir, chroot, dup2_stderr, dup2_stdin, dup2_stdout, fchdir, pivot_root};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use super::error::{sys_err, RootfsError};
use super::mountinfo::read_mountinfo;
use super::sys;

pub fn pivot_into(rootfs: &Path) -> Result<(), RootfsError> {
    let old = open(
        "/",
        OFlag::O_DIRECTORY | OFlag::O_PATH | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(sys_err("open", "/"))?;
    let new = open(
        rootfs,
        OFlag::O_DIRECTORY | OFlag::O_PATH | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(sys_err("open", rootfs))?;
    fchdir(&new).map_err(sys_err("chdir", rootfs))?;
    pivot_root(".", ".").map_err(sys_err("pivot_root", rootfs))?;
    // The old root is now stacked on top of the new one; step onto it to detach it.
    fchdir(&old).map_err(sys_err("chdir", "old root"))?;
    // rslave, not rprivate: our unmounts must not reach the host, yet mounts the host still
    // holds references to must not be pinned private here.
    sys::mount(
        None,
        Path::new("."),
        None,
        libc::MS_SLAVE | libc::MS_REC,
        None,
    )
    .map_err(sys_err("set propagation of", "old root"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(sys_err("unmount", "old root"))?;
    chdir("/").map_err(sys_err("chdir", "/"))
}

pub fn move_into(rootfs: &Path) -> Result<(), RootfsError> {
    let infos = read_mountinfo().map_err(|e| {
        RootfsError::sys(
            "read",
            "/proc/self/mountinfo",
            Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        )
    })?;
    for m in infos.iter().rev() {
        let full = m.root == Path::new("/") && (m.fs_type == "proc" || m.fs_type == "sysfs");
        if !full || m.mount_point.starts_with(rootfs) {
            continue;
        }
        match sys::mount(
            None,
            &m.mount_point,
            None,
            libc::MS_SLAVE | libc::MS_REC,
            None,
        ) {
            Ok(()) => {}
            // Already gone with a parent we detached.
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(RootfsError::sys("set propagation of", &m.mount_point, e)),
        }
        match umount2(&m.mount_point, MntFlags::MNT_DETACH) {
            Ok(()) => {}
            // Not allowed (locked in a user namespace): cover it instead.
            Err(Errno::EINVAL | Errno::EPERM) => {
                sys::mount(
                    Some("tmpfs".as_ref()),
                    &m.mount_point,
                    Some("tmpfs"),
                    0,
                    None,
                )
                .map_err(sys_err("cover", &m.mount_point))?;
            }
            Err(e) => return Err(RootfsError::sys("unmount", &m.mount_point, e)),
        }
    }
    chdir(rootfs).map_err(sys_err("chdir", rootfs))?;
    sys::mount(
        Some(rootfs.as_os_str()),
        Path::new("/"),
        None,
        libc::MS_MOVE,
        None,
    )
    .map_err(sys_err("move rootfs onto /, from", rootfs))?;
    chroot(".").map_err(sys_err("chroot", rootfs))?;
    chdir("/").map_err(sys_err("chdir", "/"))
}

/// A character device 1:3, whatever its name.
pub(super) fn is_dev_null(fd: BorrowedFd<'_>) -> bool {
    fstat(fd).is_ok_and(|st| {
        SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFCHR
            && major(st.st_rdev) == 1
            && minor(st.st_rdev) == 3
    })
}

/// Points one standard stream at an fd.
type Redirect = fn(&OwnedFd) -> nix::Result<()>;

/// stdio left on the host's /dev/null moves to the container's, so the host's inode is not
/// held (and not reachable through /proc/self/fd) from inside.
pub fn reopen_dev_null() -> Result<(), RootfsError> {
    let null = match open("/dev/null", OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty()) {
        Ok(fd) => fd,
        // No /dev/null in this rootfs: nothing to move to.
        Err(Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(RootfsError::sys("open", "/dev/null", e)),
    };
    if !is_dev_null(null.as_fd()) {
        return Err(RootfsError::Invalid(
            "the container's /dev/null is not the null device".into(),
        ));
    }
    let streams: [(i32, Redirect); 3] = [
        (0, |f| dup2_stdin(f)),
        (1, |f| dup2_stdout(f)),
        (2, |f| dup2_stderr(f)),
    ];
    for (fd, redirect) in streams {
        // SAFETY: the standard streams stay open for the life of the process and the borrow
        // ends with this statement.
        let stdio = unsafe { BorrowedFd::borrow_raw(fd) };
        if is_dev_null(stdio) {
            redirect(&null).map_err(sys_err("dup2", "/dev/null"))?;
        }
    }
    Ok(())
}
