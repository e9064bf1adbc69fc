//! Parent directories a layer does not list take their attributes from the snapshots below,
//! as containerd's applier does: a layer that adds `tmp/x` without a `tmp/` entry must not
//! turn the image's 1777 `/tmp` into a 0755 one, since the upper directory's attributes are
//! what the container sees.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::stat::{fchmod, fstat, Mode};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, Gid, Uid};

use super::sys::{cstring, get_xattr, list_xattrs, open_dir_at, set_xattr, Node};

/// The snapshots below the one being unpacked, nearest first.
pub(crate) struct Parents(pub Vec<OwnedFd>);

enum Lookup {
    Dir(OwnedFd),
    /// Not in this snapshot; look further down.
    Absent,
    /// Deleted, replaced or hidden here: nothing below shows through.
    Hidden,
}

impl Parents {
    /// Gives `made` (just created at `path`) the owner, mode and xattrs of the directory at
    /// `path` in the nearest snapshot that shows one, and returns that directory's atime and
    /// mtime, to be set once the children are written.
    pub(crate) fn copy_to(
        &self,
        made: BorrowedFd<'_>,
        path: &[Vec<u8>],
    ) -> io::Result<Option<(TimeSpec, TimeSpec)>> {
        for parent in &self.0 {
            match lookup(parent.as_fd(), path)? {
                Lookup::Dir(fd) => return copy_attributes(fd.as_fd(), made).map(Some),
                Lookup::Absent => continue,
                Lookup::Hidden => return Ok(None),
            }
        }
        Ok(None)
    }
}

/// `path` in one snapshot, as overlayfs would see it from there down: a whiteout or a file on
/// the way hides what is below, so does an opaque directory that lacks the next component.
fn lookup(root: BorrowedFd<'_>, path: &[Vec<u8>]) -> io::Result<Lookup> {
    let mut cur: Option<OwnedFd> = None;
    for c in path {
        let at = cur.as_ref().map_or(root, |f| f.as_fd());
        let name = cstring(c)?;
        match open_dir_at(at, &name) {
            Ok(fd) => cur = Some(fd),
            Err(Errno::ENOENT) if !opaque(at)? => return Ok(Lookup::Absent),
            Err(Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP) => return Ok(Lookup::Hidden),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(cur.map_or(Lookup::Absent, Lookup::Dir))
}

fn opaque(dir: BorrowedFd<'_>) -> io::Result<bool> {
    Ok(get_xattr(Node::Fd(dir), c"trusted.overlay.opaque")?.as_deref() == Some(b"y"))
}

fn copy_attributes(from: BorrowedFd<'_>, to: BorrowedFd<'_>) -> io::Result<(TimeSpec, TimeSpec)> {
    let st = fstat(from)?;
    fchown(
        to,
        Some(Uid::from_raw(st.st_uid)),
        Some(Gid::from_raw(st.st_gid)),
    )?;
    for name in list_xattrs(Node::Fd(from))? {
        if is_overlay(&name) {
            continue;
        }
        if let Some(value) = get_xattr(Node::Fd(from), &name)? {
            set_xattr(Node::Fd(to), &name, &value)?;
        }
    }
    fchmod(to, Mode::from_bits_truncate(st.st_mode & 0o7777))?;
    Ok((
        TimeSpec::new(st.st_atime, st.st_atime_nsec),
        TimeSpec::new(st.st_mtime, st.st_mtime_nsec),
    ))
}

/// overlayfs's own xattrs (opaque, redirect, origin...) belong to the snapshot that has them.
fn is_overlay(name: &CStr) -> bool {
    let n = name.to_bytes();
    n.starts_with(b"trusted.overlay.") || n.starts_with(b"user.overlay.")
}
