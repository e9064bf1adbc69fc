//! "tmpcopyup": a tmpfs that starts with a copy of what the image had at the target.
//!
//! The tmpfs is created detached (fsopen/fsmount), filled through its fd while the image's
//! directory is still visible, then attached with move_mount — no scratch directory on the
//! host and no window where the container could see a half-filled mount.

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{openat, readlinkat, AtFlags, OFlag};
use nix::sys::stat::{
    fchmod, fchmodat, fstat, fstatat, mkdirat, mknodat, FchmodatFlags, Mode, SFlag,
};
use nix::unistd::{fchown, fchownat, symlinkat, Gid, Uid};
use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use super::error::{sys_err, RootfsError};
use super::mounts::{self, Ctx, Plan};
use super::options::ms_to_attr;
use super::paths;
use super::sys;

pub fn mount_tmpfs_copyup(
    ctx: &Ctx,
    plan: &Plan,
    target: BorrowedFd<'_>,
) -> Result<(), RootfsError> {
    let st = fstat(target).map_err(sys_err("stat", &plan.dest))?;
    let mode = format!("mode={:04o}", st.st_mode & 0o7777);
    let mut options: Vec<&str> = vec![&mode];
    options.extend(plan.opts.data.iter().map(String::as_str));
    // Read-only is applied in finalize(), after the copy and after hooks.
    let attrs = ms_to_attr(plan.opts.flags & !libc::MS_RDONLY);
    let mnt = sys::new_detached_fs("tmpfs", &plan.src, &options, attrs)
        .map_err(sys_err("create tmpfs for", &plan.dest))?;

    let src = openat(
        target,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(sys_err("open", &plan.dest))?;
    let dst = openat(
        &mnt,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(sys_err("open new tmpfs for", &plan.dest))?;
    copy_dir(&src, &dst)
        .map_err(|e| RootfsError::step(format!("tmpcopyup of {}", plan.dest.display()), e))?;
    fchown(
        &dst,
        Some(Uid::from_raw(st.st_uid)),
        Some(Gid::from_raw(st.st_gid)),
    )
    .map_err(sys_err("chown", &plan.dest))?;

    sys::move_mount(mnt.as_fd(), target).map_err(sys_err("move_mount onto", &plan.dest))?;
    let top = paths::reopen_top(ctx.root.as_fd(), &ctx.rootfs, target)
        .map_err(sys_err("reopen mountpoint", &plan.dest))?;
    mounts::after_mount(plan, top.as_fd())
}

/// Copy the entries of `src` into `dst` keeping type, mode and owner.
fn copy_dir(src: &OwnedFd, dst: &OwnedFd) -> Result<(), RootfsError> {
    let mut dir = Dir::from_fd(src.try_clone().map_err(|e| io(e, "dup", "directory fd"))?)
        .map_err(sys_err("opendir", "."))?;
    let names: Vec<_> = dir
        .iter()
        .filter_map(Result::ok)
        .filter(|e| !matches!(e.file_name().to_bytes(), b"." | b".."))
        .map(|e| e.file_name().to_owned())
        .collect();
    for name in names {
        copy_entry(src, dst, OsStr::from_bytes(name.to_bytes()))?;
    }
    Ok(())
}

fn io(e: std::io::Error, what: &'static str, path: impl AsRef<std::path::Path>) -> RootfsError {
    RootfsError::sys(
        what,
        path,
        Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
    )
}

fn copy_entry(src: &OwnedFd, dst: &OwnedFd, name: &OsStr) -> Result<(), RootfsError> {
    let st = fstatat(src, name, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(sys_err("stat", name))?;
    let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
    let perm = Mode::from_bits_truncate(st.st_mode & 0o7777);
    let (uid, gid) = (
        Some(Uid::from_raw(st.st_uid)),
        Some(Gid::from_raw(st.st_gid)),
    );
    match kind {
        SFlag::S_IFDIR => {
            mkdirat(dst, name, Mode::from_bits_truncate(0o700)).map_err(sys_err("mkdir", name))?;
            let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
            let s = openat(src, name, flags, Mode::empty()).map_err(sys_err("open", name))?;
            let d = openat(dst, name, flags, Mode::empty()).map_err(sys_err("open", name))?;
            copy_dir(&s, &d)?;
            fchown(&d, uid, gid).map_err(sys_err("chown", name))?;
            fchmod(&d, perm).map_err(sys_err("chmod", name))?;
        }
        SFlag::S_IFREG => {
            let s = openat(
                src,
                name,
                OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(sys_err("open", name))?;
            let d = openat(
                dst,
                name,
                OFlag::O_WRONLY
                    | OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o600),
            )
            .map_err(sys_err("create", name))?;
            let (mut s, mut d) = (File::from(s), File::from(d));
            std::io::copy(&mut s, &mut d).map_err(|e| io(e, "copy", name))?;
            fchown(&d, uid, gid).map_err(sys_err("chown", name))?;
            fchmod(&d, perm).map_err(sys_err("chmod", name))?;
        }
        SFlag::S_IFLNK => {
            let target = readlinkat(src, name).map_err(sys_err("readlink", name))?;
            symlinkat(target.as_os_str(), dst, name).map_err(sys_err("symlink", name))?;
            fchownat(dst, name, uid, gid, AtFlags::AT_SYMLINK_NOFOLLOW)
                .map_err(sys_err("chown", name))?;
        }
        _ => {
            mknodat(dst, name, kind, perm, st.st_rdev).map_err(sys_err("mknod", name))?;
            fchownat(dst, name, uid, gid, AtFlags::AT_SYMLINK_NOFOLLOW)
                .map_err(sys_err("chown", name))?;
            // A node we just made, not a symlink: following is safe.
            fchmodat(dst, name, perm, FchmodatFlags::FollowSymlink)
                .map_err(sys_err("chmod", name))?;
        }
    }
    Ok(())
}
