//! Finding a directory inside a snapshot without ever leaving it.
//!
//! Each component is opened on its own, relative to the descriptor of the one before, with
//! `openat2(RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH | RESOLVE_NO_XDEV)`, where the kernel follows
//! nothing, so a symlink swapped in between two steps cannot redirect a step (the race of
//! CVE-2018-15664 and CVE-2021-30465), and no path string is ever handed to the kernel whole.
//!
//! A symlink met on the way is read and decided here, not by the kernel:
//! - a relative one that stays inside the root is followed, as the container will see it
//!   (a layer that makes `lib -> usr/lib`, then writes `lib/x`);
//! - an absolute one, or one whose `..` climbs above the root, is refused. Inside the
//!   container it would land back inside (containerd re-roots it), but on the host it names
//!   the host's own tree, and a layer made by diffing a real filesystem never writes through
//!   one: the kernel would have resolved it when the file was written.

use std::collections::VecDeque;
use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::rc::Rc;

use nix::errno::Errno;
use nix::fcntl::{readlinkat, AtFlags};
use nix::sys::stat::{fchmod, fstatat, mkdirat, Mode};
use nix::sys::time::TimeSpec;

use super::error::Refusal;
use super::name::{display, lossy, MAX_DEPTH};
use super::parents::Parents;
use super::sys::{cstring, open_dir_at};

/// As Linux's `MAXSYMLINKS`.
pub(crate) const MAX_SYMLINKS: usize = 40;

/// A directory found inside the root: its descriptor and where it really is (symlinks
/// resolved), as components below the root.
#[derive(Clone)]
pub(crate) struct Found {
    pub fd: Rc<OwnedFd>,
    pub path: Vec<Vec<u8>>,
}

#[derive(Debug)]
pub(crate) enum WalkError {
    Refused(Refusal),
    /// A component does not exist (only when not asked to create it); its path.
    Missing(String),
    Io(&'static str, io::Error),
}

impl From<Refusal> for WalkError {
    fn from(r: Refusal) -> Self {
        WalkError::Refused(r)
    }
}

/// The root of a snapshot being written, and the last directory found in it.
pub(crate) struct Tree {
    root: Rc<OwnedFd>,
    parents: Parents,
    /// Times of directories made like a parent snapshot's, to set after their children.
    pub(crate) inherited_times: Vec<(Vec<Vec<u8>>, TimeSpec, TimeSpec)>,
    /// The last lookup: the components asked for and what they led to. Entries of a layer
    /// come directory by directory, so most lookups repeat the one before. Anything that
    /// removes a directory or a symlink calls [`Tree::forget`].
    last: Option<(Vec<Vec<u8>>, Found)>,
}

impl Tree {
    pub(crate) fn new(root: OwnedFd, parents: Parents) -> Tree {
        Tree {
            root: Rc::new(root),
            parents,
            inherited_times: Vec::new(),
            last: None,
        }
    }

    pub(crate) fn forget(&mut self) {
        self.last = None;
    }

    /// The directory at `comps` below the root, following relative symlinks that stay
    /// inside. With `create`, missing directories are made like the same directory of the
    /// nearest parent snapshot that has it, else 0755 and root-owned, as containerd does.
    pub(crate) fn dir(&mut self, comps: &[Vec<u8>], create: bool) -> Result<Found, WalkError> {
        if let Some((asked, found)) = &self.last {
            if asked.as_slice() == comps {
                return Ok(found.clone());
            }
        }
        let found = self.walk(comps, create)?;
        self.last = Some((comps.to_vec(), found.clone()));
        Ok(found)
    }

    fn walk(&mut self, comps: &[Vec<u8>], create: bool) -> Result<Found, WalkError> {
        let mut path: Vec<Vec<u8>> = Vec::with_capacity(comps.len());
        let mut cur = Rc::clone(&self.root);
        let mut pending: VecDeque<Vec<u8>> = comps.iter().cloned().collect();
        let mut hops = 0;
        // The symlink whose target brought in the `..` being resolved, for the message.
        let mut via: Option<(String, String)> = None;

        while let Some(c) = pending.pop_front() {
            match c.as_slice() {
                b"" | b"." => continue,
                b".." => {
                    // Only a symlink's target brings `..` here; entry names were resolved
                    // lexically before.
                    if path.pop().is_none() {
                        let (link, target) = via.clone().unwrap_or_default();
                        return Err(Refusal::SymlinkOutside { link, target }.into());
                    }
                    cur = self.reopen(&path)?;
                    continue;
                }
                _ => {}
            }
            // Symlinks can make a path deeper than its name; the bound on names must hold for
            // what is on disk, which is removed and archived one descriptor per level.
            if path.len() >= MAX_DEPTH {
                return Err(Refusal::TooDeep(MAX_DEPTH).into());
            }
            let name = cstring(&c).map_err(|e| WalkError::Io("open directory", e))?;
            match open_dir_at(cur.as_fd(), &name) {
                Ok(fd) => {
                    cur = Rc::new(fd);
                    path.push(c);
                }
                // O_DIRECTORY makes a symlink fail as ENOTDIR rather than ELOOP.
                Err(Errno::ELOOP | Errno::ENOTDIR) if is_symlink(cur.as_fd(), &name)? => {
                    hops += 1;
                    if hops > MAX_SYMLINKS {
                        return Err(Refusal::TooManySymlinks(MAX_SYMLINKS).into());
                    }
                    let target = readlinkat(cur.as_fd(), name.as_c_str())
                        .map_err(|e| WalkError::Io("read symlink", e.into()))?;
                    let target = target.as_bytes();
                    let link = display(&[path.as_slice(), &[c]].concat());
                    if target.is_empty() || target.starts_with(b"/") {
                        return Err(Refusal::SymlinkOutside {
                            link,
                            target: lossy(target),
                        }
                        .into());
                    }
                    via = Some((link, lossy(target)));
                    for t in target.split(|&b| b == b'/').rev() {
                        pending.push_front(t.to_vec());
                    }
                }
                Err(Errno::ENOTDIR) => {
                    return Err(Refusal::NotADirectory {
                        path: display(&[path.as_slice(), &[c]].concat()),
                    }
                    .into())
                }
                Err(Errno::ENOENT) if create => {
                    let fd = make_dir(cur.as_fd(), &name)
                        .map_err(|e| WalkError::Io("create parent directory", e))?;
                    path.push(c);
                    let times = self
                        .parents
                        .copy_to(fd.as_fd(), &path)
                        .map_err(|e| WalkError::Io("copy parent directory attributes", e))?;
                    if let Some((atime, mtime)) = times {
                        self.inherited_times.push((path.clone(), atime, mtime));
                    }
                    cur = Rc::new(fd);
                }
                Err(Errno::ENOENT) => {
                    return Err(WalkError::Missing(display(
                        &[path.as_slice(), &[c]].concat(),
                    )))
                }
                Err(e) => return Err(WalkError::Io("open directory", e.into())),
            }
        }
        Ok(Found { fd: cur, path })
    }

    /// Opens a path found before, which holds no symlinks; anything else there now is an
    /// error.
    fn reopen(&self, path: &[Vec<u8>]) -> Result<Rc<OwnedFd>, WalkError> {
        match self.exact(path) {
            Ok(Some(fd)) => Ok(fd),
            Ok(None) => Err(WalkError::Missing(display(path))),
            Err(e) => Err(WalkError::Io("open directory", e)),
        }
    }

    /// The directory at exactly `path`, or `None` when something on the way is missing, is
    /// a symlink or is no directory (a later entry replaced it).
    pub(crate) fn exact(&self, path: &[Vec<u8>]) -> io::Result<Option<Rc<OwnedFd>>> {
        let mut cur = Rc::clone(&self.root);
        for c in path {
            match open_dir_at(cur.as_fd(), &cstring(c)?) {
                Ok(fd) => cur = Rc::new(fd),
                Err(Errno::ENOENT | Errno::ELOOP | Errno::ENOTDIR) => return Ok(None),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Some(cur))
    }
}

fn is_symlink(dir: BorrowedFd<'_>, name: &CStr) -> Result<bool, WalkError> {
    match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(st.st_mode & libc::S_IFMT == libc::S_IFLNK),
        Err(e) => Err(WalkError::Io("look up", e.into())),
    }
}

/// Makes directory `name` in `dir` with mode 0755 whatever the umask, and opens it.
fn make_dir(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<OwnedFd> {
    let created = match mkdirat(dir, name, Mode::from_bits_truncate(0o755)) {
        Ok(()) => true,
        Err(Errno::EEXIST) => false,
        Err(e) => return Err(e.into()),
    };
    let fd = open_dir_at(dir, name)?;
    if created {
        fchmod(fd.as_fd(), Mode::from_bits_truncate(0o755))?;
    }
    Ok(fd)
}
