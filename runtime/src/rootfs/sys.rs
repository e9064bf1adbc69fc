//! Thin wrappers for the mount system calls that nix does not cover (or covers with flag types
//! too narrow for every MS_* bit): mount(2) with raw flags, and the new mount API
//! (open_tree, move_mount, mount_setattr, fsopen/fsconfig/fsmount). This is the only place in
//! the module with `unsafe`.

use nix::errno::Errno;
use std::ffi::{CString, OsStr};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

// The flags, MOUNT_ATTR_* bits and `struct mount_attr` of <linux/mount.h> are libc's.
use libc::{
    mount_attr, FSCONFIG_CMD_CREATE, FSCONFIG_SET_FLAG, FSCONFIG_SET_STRING, FSMOUNT_CLOEXEC,
    FSOPEN_CLOEXEC, MOVE_MOUNT_F_EMPTY_PATH, MOVE_MOUNT_T_EMPTY_PATH, OPEN_TREE_CLOEXEC,
    OPEN_TREE_CLONE,
};

/// A `struct mount_attr` setting and clearing MOUNT_ATTR_* bits, with no propagation change
/// and no user namespace.
pub fn mount_attr_bits(attr_set: u64, attr_clr: u64) -> mount_attr {
    mount_attr {
        attr_set,
        attr_clr,
        propagation: 0,
        userns_fd: 0,
    }
}

fn cstr(s: &OsStr) -> Result<CString, Errno> {
    CString::new(s.as_bytes()).map_err(|_| Errno::EINVAL)
}

/// The magic-link path through which a syscall taking a path reaches the inode behind `fd`.
pub fn proc_fd(fd: BorrowedFd<'_>) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// mount(2) with the flags passed through untouched.
pub fn mount(
    source: Option<&OsStr>,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> Result<(), Errno> {
    let source = source.map(cstr).transpose()?;
    let target = cstr(target.as_os_str())?;
    let fstype = fstype.map(|s| cstr(OsStr::new(s))).transpose()?;
    let data = data
        .filter(|d| !d.is_empty())
        .map(|s| cstr(OsStr::new(s)))
        .transpose()?;
    let ptr = |c: &Option<CString>| c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
    // SAFETY: every pointer is either null or a NUL-terminated string that outlives the call.
    let rc = unsafe {
        libc::mount(
            ptr(&source),
            target.as_ptr(),
            ptr(&fstype),
            flags,
            ptr(&data) as *const libc::c_void,
        )
    };
    Errno::result(rc).map(drop)
}

/// mount_setattr(2) on the mount `fd` refers to (AT_EMPTY_PATH is always added).
pub fn mount_setattr(fd: BorrowedFd<'_>, recursive: bool, attr: &mount_attr) -> Result<(), Errno> {
    let mut flags = libc::AT_EMPTY_PATH as libc::c_uint;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    // SAFETY: the path is a static empty C string and `attr` is a live, correctly sized
    // `struct mount_attr`.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            flags,
            attr as *const mount_attr,
            std::mem::size_of::<mount_attr>(),
        )
    };
    Errno::result(rc).map(drop)
}

/// open_tree(2) with OPEN_TREE_CLONE: a detached copy of the mount (tree) at `path`
/// (relative to `dirfd`; an empty path means `dirfd` itself).
pub fn clone_tree(dirfd: RawFd, path: &Path, recursive: bool) -> Result<OwnedFd, Errno> {
    let mut flags = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    if path.as_os_str().is_empty() {
        flags |= libc::AT_EMPTY_PATH as libc::c_uint;
    }
    let path = cstr(path.as_os_str())?;
    // SAFETY: `path` is a NUL-terminated string that outlives the call.
    let fd = unsafe { libc::syscall(libc::SYS_open_tree, dirfd, path.as_ptr(), flags) };
    let fd = Errno::result(fd)? as RawFd;
    // SAFETY: open_tree returned a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// move_mount(2) of the mount behind `from` onto the inode behind `to`.
pub fn move_mount(from: BorrowedFd<'_>, to: BorrowedFd<'_>) -> Result<(), Errno> {
    // SAFETY: both paths are static empty C strings; the fds are live for the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            from.as_raw_fd(),
            c"".as_ptr(),
            to.as_raw_fd(),
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    Errno::result(rc).map(drop)
}

/// A new, still detached filesystem instance of `fstype` configured with the mount(8)-style
/// `options` ("key=value" or "flag"), mounted with the MOUNT_ATTR_* bits in `attrs`.
/// `source` is what /proc/self/mountinfo shows as the mount's source (fsopen leaves it
/// "none" unless told): `mount` and `df` print it, and runc's masks say "tmpfs".
pub fn new_detached_fs(
    fstype: &str,
    source: &str,
    options: &[&str],
    attrs: u64,
) -> Result<OwnedFd, Errno> {
    let name = cstr(OsStr::new(fstype))?;
    // SAFETY: `name` is a NUL-terminated string that outlives the call.
    let fs =
        Errno::result(unsafe { libc::syscall(libc::SYS_fsopen, name.as_ptr(), FSOPEN_CLOEXEC) })?;
    // SAFETY: fsopen returned a new file descriptor that nothing else owns.
    let fs = unsafe { OwnedFd::from_raw_fd(fs as RawFd) };
    let source = (!source.is_empty()).then(|| format!("source={source}"));
    for opt in source
        .iter()
        .map(String::as_str)
        .chain(options.iter().copied())
        .filter(|o| !o.is_empty())
    {
        let (key, value) = match opt.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (opt, None),
        };
        let key = cstr(OsStr::new(key))?;
        let value = value.map(|v| cstr(OsStr::new(v))).transpose()?;
        let (cmd, vptr) = match &value {
            Some(v) => (FSCONFIG_SET_STRING, v.as_ptr()),
            None => (FSCONFIG_SET_FLAG, std::ptr::null()),
        };
        // SAFETY: key and value are NUL-terminated strings (or null) that outlive the call.
        Errno::result(unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                fs.as_raw_fd(),
                cmd,
                key.as_ptr(),
                vptr,
                0,
            )
        })?;
    }
    // SAFETY: FSCONFIG_CMD_CREATE takes no pointers.
    Errno::result(unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    })?;
    // SAFETY: fsmount takes only integers.
    let mnt = Errno::result(unsafe {
        libc::syscall(
            libc::SYS_fsmount,
            fs.as_raw_fd(),
            FSMOUNT_CLOEXEC,
            attrs as libc::c_uint,
        )
    })?;
    // SAFETY: fsmount returned a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(mnt as RawFd) })
}
