//! Writing into a mounted snapshot. Every path is resolved with `openat2(RESOLVE_IN_ROOT)`
//! on the snapshot's root, and every entry is made relative to a directory fd with
//! `O_NOFOLLOW`: a symlink the image holds (`/app -> /etc`) resolves inside the image, as the
//! container would see it, never on the host the build runs on.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{openat, openat2, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fchmod, fstat, mkdirat, Mode, SFlag};
use nix::unistd::{fchown, fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};

/// Who owns what a COPY makes, and the mode `--chmod` forces.
#[derive(Debug, Clone, Copy, Default)]
pub struct Attrs {
    pub owner: Option<(u32, u32)>,
    pub chmod: Option<u32>,
}

fn io(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

/// The snapshot's root, opened once per step.
pub struct Root {
    dir: File,
}

impl Root {
    pub fn open(path: &Path) -> io::Result<Root> {
        Ok(Root {
            dir: File::open(path)?,
        })
    }

    fn open_how(flags: OFlag) -> OpenHow {
        OpenHow::new()
            .flags(flags | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS)
    }

    fn rel(path: &str) -> &str {
        let p = path.trim_start_matches('/');
        if p.is_empty() {
            "."
        } else {
            p
        }
    }

    /// What `path` is in the image, symlinks followed inside the root; None when absent.
    pub fn stat(&self, path: &str) -> io::Result<Option<nix::sys::stat::FileStat>> {
        match openat2(
            self.dir.as_fd(),
            Self::rel(path),
            Self::open_how(OFlag::O_PATH),
        ) {
            Ok(fd) => Ok(Some(fstat(&fd).map_err(io)?)),
            Err(Errno::ENOENT) | Err(Errno::ENOTDIR) => Ok(None),
            Err(e) => Err(io(e)),
        }
    }

    pub fn is_dir(&self, path: &str) -> io::Result<bool> {
        Ok(self.stat(path)?.is_some_and(|s| {
            SFlag::from_bits_truncate(s.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR
        }))
    }

    /// The directory `path`, made (with its parents) when missing. Directories made here
    /// get `attrs`' owner, as Docker chowns the directories a `COPY --chown` creates.
    pub fn mkdir_all(&self, path: &str, attrs: Attrs) -> io::Result<OwnedFd> {
        let mut done = String::new();
        for comp in path.split('/').filter(|c| !c.is_empty() && *c != ".") {
            let next = if done.is_empty() {
                comp.to_string()
            } else {
                format!("{done}/{comp}")
            };
            match openat2(
                self.dir.as_fd(),
                next.as_str(),
                Self::open_how(OFlag::O_DIRECTORY | OFlag::O_RDONLY),
            ) {
                Ok(_) => {}
                Err(Errno::ENOENT) => {
                    let parent = self.open_dir(&done)?;
                    match mkdirat(&parent, comp, Mode::from_bits_truncate(0o755)) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => return Err(io(e)),
                    }
                    if let Some((u, g)) = attrs.owner {
                        fchownat(
                            &parent,
                            comp,
                            Some(Uid::from_raw(u)),
                            Some(Gid::from_raw(g)),
                            AtFlags::AT_SYMLINK_NOFOLLOW,
                        )
                        .map_err(io)?;
                    }
                }
                Err(e) => return Err(io(e)),
            }
            done = next;
        }
        self.open_dir(&done)
    }

    fn open_dir(&self, path: &str) -> io::Result<OwnedFd> {
        openat2(
            self.dir.as_fd(),
            Self::rel(path),
            Self::open_how(OFlag::O_DIRECTORY | OFlag::O_RDONLY),
        )
        .map_err(io)
    }
}

/// Removes whatever non-directory sits at `name` in `dir`, as extracting a layer would.
fn clear(dir: &OwnedFd, name: &str) -> io::Result<()> {
    match unlinkat(dir, name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(Errno::EISDIR) => Err(io::Error::other(format!(
            "cannot overwrite directory {name} with a file"
        ))),
        Err(e) => Err(io(e)),
    }
}

fn own(fd: &OwnedFd, owner: (u32, u32), mode: u32) -> io::Result<()> {
    fchown(
        fd,
        Some(Uid::from_raw(owner.0)),
        Some(Gid::from_raw(owner.1)),
    )
    .map_err(io)?;
    // After chown, which clears set-id bits.
    fchmod(fd, Mode::from_bits_truncate(mode & 0o7777)).map_err(io)
}

/// A regular file `name` in `dir` with `content`, `mode` and `owner`.
pub fn write_file(
    dir: &OwnedFd,
    name: &str,
    content: &mut dyn Read,
    mode: u32,
    owner: (u32, u32),
) -> io::Result<u64> {
    clear(dir, name)?;
    let fd = openat(
        dir,
        name,
        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )
    .map_err(io)?;
    let mut f = File::from(fd);
    let n = io::copy(content, &mut f)?;
    own(&f.as_fd().try_clone_to_owned()?, owner, mode)?;
    Ok(n)
}

/// A directory `name` in `dir`, whose path in the root is `dir_path`. When the image has a
/// symlink there (`/lib -> usr/lib` on a merged-/usr Debian), it is followed inside the
/// root and the directory it names is kept as it is, rather than refusing the copy.
pub fn make_dir_in(
    root: &Root,
    dir: &OwnedFd,
    dir_path: &str,
    name: &str,
    mode: u32,
    owner: (u32, u32),
) -> io::Result<OwnedFd> {
    match make_dir(dir, name, mode, owner) {
        Err(e) => {
            let link =
                nix::sys::stat::fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW).is_ok_and(|st| {
                    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK
                });
            if !link {
                return Err(e);
            }
            root.mkdir_all(
                &format!("{}/{name}", dir_path.trim_end_matches('/')),
                Attrs::default(),
            )
        }
        ok => ok,
    }
}

/// A directory `name` in `dir` (kept when it exists), with `mode` and `owner`.
pub fn make_dir(dir: &OwnedFd, name: &str, mode: u32, owner: (u32, u32)) -> io::Result<OwnedFd> {
    match mkdirat(dir, name, Mode::from_bits_truncate(0o700)) {
        Ok(()) | Err(Errno::EEXIST) => {}
        Err(e) => return Err(io(e)),
    }
    let fd = openat(
        dir,
        name,
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| match e {
        Errno::ELOOP | Errno::ENOTDIR => io::Error::other(format!(
            "cannot copy a directory onto the non-directory {name}"
        )),
        e => io(e),
    })?;
    own(&fd, owner, mode)?;
    Ok(fd)
}

pub fn symlink(dir: &OwnedFd, name: &str, target: &Path, owner: (u32, u32)) -> io::Result<()> {
    clear(dir, name)?;
    symlinkat(target, dir, name).map_err(io)?;
    fchownat(
        dir,
        name,
        Some(Uid::from_raw(owner.0)),
        Some(Gid::from_raw(owner.1)),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(io)
}

/// A hard link `name` in `dir` to `target`, a path inside the root (tar hard links).
pub fn hard_link(root: &Root, target: &str, dir: &OwnedFd, name: &str) -> io::Result<()> {
    let (parent, base) = match target.trim_start_matches('/').rsplit_once('/') {
        Some((p, b)) => (p, b),
        None => ("", target.trim_start_matches('/')),
    };
    let pdir = root.open_dir(parent)?;
    clear(dir, name)?;
    linkat(&pdir, base, dir, name, AtFlags::empty()).map_err(io)
}
