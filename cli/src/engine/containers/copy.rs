//! `cp`: trees in and out of a container as tar streams, with every path resolved inside
//! the root it belongs to. The container's side is opened through `/proc/<pid>/root` of a
//! running container (its mounts and volumes included) or its mounted rootfs, and each
//! lookup goes through openat2(RESOLVE_IN_ROOT), so a symlink the container made (absolute,
//! or `..` climbing) resolves inside the container and never on the host. Walking and
//! extracting use descriptors, one component at a time with O_NOFOLLOW, so a process in
//! the container swapping a directory for a symlink mid-copy (CVE-2018-15664) cannot
//! redirect us either.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{openat, openat2, readlinkat, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fchmod, fstat, fstatat, mkdirat, mknodat, Mode, SFlag};
use nix::unistd::{fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("Could not find the file {0} in container {1}")]
    NotFound(String, String),
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("{0}")]
    Invalid(String),
}

fn io_err(path: &str, e: impl Into<io::Error>) -> CopyError {
    CopyError::Io {
        path: path.to_string(),
        source: e.into(),
    }
}

/// A root directory to resolve paths in: the container's, or the host's `/`.
pub struct Root {
    fd: OwnedFd,
    /// Whose: named in messages.
    pub label: String,
}

impl Root {
    pub fn open(dir: &Path, label: &str) -> Result<Root, CopyError> {
        let f = File::open(dir).map_err(|e| io_err(&dir.display().to_string(), e))?;
        Ok(Root {
            fd: f.into(),
            label: label.to_string(),
        })
    }

    /// `path` inside the root, symlinks resolved inside it (the last one only when
    /// `follow`).
    fn resolve(&self, path: &str, flags: OFlag, follow: bool) -> nix::Result<OwnedFd> {
        let rel = path.trim_start_matches('/');
        let rel = if rel.is_empty() { "." } else { rel };
        let mut f = flags | OFlag::O_CLOEXEC;
        if !follow {
            f |= OFlag::O_NOFOLLOW;
        }
        let how = OpenHow::new()
            .flags(f)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        loop {
            match openat2(self.fd.as_fd(), rel, how) {
                // A mount or rename elsewhere raced a `..` walk: the kernel asks to retry.
                Err(Errno::EAGAIN) => continue,
                r => return r,
            }
        }
    }

    /// What is at `path`: a directory, or something else, or nothing.
    pub fn kind(&self, path: &str) -> Option<bool> {
        let fd = self.resolve(path, OFlag::O_PATH, true).ok()?;
        let st = fstat(fd.as_fd()).ok()?;
        Some(SFlag::from_bits_truncate(st.st_mode) == SFlag::S_IFDIR)
    }
}

/// Split `path` into its parent and its last component, lexically.
fn split(path: &str) -> (String, Option<OsString>) {
    let p = Path::new(path);
    let mut parts: Vec<&OsStr> = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => parts.push(n),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    let last = parts.pop().map(OsStr::to_os_string);
    let parent = format!(
        "/{}",
        parts
            .iter()
            .map(|p| p.to_string_lossy())
            .collect::<Vec<_>>()
            .join("/")
    );
    (parent, last)
}

/// Write `src` (in `root`) as a tar to `out`, with its entries named as `docker cp` names
/// them: under the source's own name, or its contents alone when `src` ends in `/.`.
/// With `rename`, the top entry takes that name instead (a copy to a new name).
pub fn archive(
    root: &Root,
    src: &str,
    follow: bool,
    rename: Option<OsString>,
    out: impl Write,
) -> Result<(), CopyError> {
    let contents_only = (src.ends_with("/.") || src == ".") && rename.is_none();
    let fd = root
        .resolve(src, OFlag::O_PATH, follow)
        .map_err(|_| CopyError::NotFound(src.to_string(), root.label.clone()))?;
    let (_, last) = split(src.trim_end_matches("/."));
    let name = match (contents_only, rename) {
        (true, _) => PathBuf::new(),
        (false, Some(r)) => PathBuf::from(r),
        (false, None) => PathBuf::from(last.unwrap_or_else(|| OsString::from("."))),
    };
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    let mut links = HashMap::new();
    let st = fstat(fd.as_fd()).map_err(|e| io_err(src, e))?;
    if SFlag::from_bits_truncate(st.st_mode) == SFlag::S_IFDIR {
        let dir = reopen_dir(&fd).map_err(|e| io_err(src, e))?;
        if !contents_only {
            append_header(&mut b, &name, &st, tar::EntryType::Directory, None)?;
        }
        walk(&mut b, dir, &name, &mut links)?;
    } else {
        // The source itself: a file, or a link we were told not to follow.
        let parent = root
            .resolve(&split(src).0, OFlag::O_PATH | OFlag::O_DIRECTORY, true)
            .map_err(|e| io_err(src, e))?;
        let last = split(src).1.unwrap_or_default();
        append_at(&mut b, parent.as_fd(), &last, &name, &mut links)?;
    }
    b.finish().map_err(|e| io_err(src, e))?;
    Ok(())
}

fn reopen_dir(fd: &OwnedFd) -> nix::Result<OwnedFd> {
    openat(
        fd.as_fd(),
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

fn header_for(st: &nix::sys::stat::FileStat, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(st.st_mode & 0o7777);
    h.set_uid(st.st_uid as u64);
    h.set_gid(st.st_gid as u64);
    h.set_mtime(st.st_mtime.max(0) as u64);
    h.set_size(0);
    h
}

fn append_header<W: Write>(
    b: &mut tar::Builder<W>,
    name: &Path,
    st: &nix::sys::stat::FileStat,
    kind: tar::EntryType,
    link: Option<&Path>,
) -> Result<(), CopyError> {
    let mut h = header_for(st, kind);
    let shown = name.display().to_string();
    let r = match link {
        Some(l) => b.append_link(&mut h, name, l),
        None => b.append_data(&mut h, name, io::empty()),
    };
    r.map_err(|e| io_err(&shown, e))
}

/// One entry `entry` of the directory `dir`, named `name` in the archive.
fn append_at<W: Write>(
    b: &mut tar::Builder<W>,
    dir: BorrowedFd<'_>,
    entry: &OsStr,
    name: &Path,
    links: &mut HashMap<(u64, u64), PathBuf>,
) -> Result<(), CopyError> {
    let shown = name.display().to_string();
    let st = fstatat(dir, entry, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(|e| io_err(&shown, e))?;
    let kind = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
    if kind != SFlag::S_IFDIR && st.st_nlink > 1 {
        let key = (st.st_dev, st.st_ino);
        if let Some(first) = links.get(&key) {
            let first = first.clone();
            return append_header(b, name, &st, tar::EntryType::Link, Some(&first));
        }
        links.insert(key, name.to_path_buf());
    }
    match kind {
        SFlag::S_IFDIR => {
            let fd = openat(
                dir,
                entry,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| io_err(&shown, e))?;
            append_header(b, name, &st, tar::EntryType::Directory, None)?;
            walk(b, fd, name, links)
        }
        SFlag::S_IFREG => {
            let fd = openat(
                dir,
                entry,
                OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| io_err(&shown, e))?;
            let f = File::from(fd);
            let mut h = header_for(&st, tar::EntryType::Regular);
            h.set_size(st.st_size as u64);
            // Exactly the size we announced, even if the file grows or shrinks meanwhile.
            let body = f
                .take(st.st_size as u64)
                .chain(io::repeat(0))
                .take(st.st_size as u64);
            b.append_data(&mut h, name, body)
                .map_err(|e| io_err(&shown, e))
        }
        SFlag::S_IFLNK => {
            let target = readlinkat(dir, entry).map_err(|e| io_err(&shown, e))?;
            append_header(
                b,
                name,
                &st,
                tar::EntryType::Symlink,
                Some(Path::new(&target)),
            )
        }
        SFlag::S_IFCHR | SFlag::S_IFBLK => {
            let mut h = header_for(
                &st,
                if kind == SFlag::S_IFCHR {
                    tar::EntryType::Char
                } else {
                    tar::EntryType::Block
                },
            );
            let _ = h.set_device_major(libc::major(st.st_rdev));
            let _ = h.set_device_minor(libc::minor(st.st_rdev));
            b.append_data(&mut h, name, io::empty())
                .map_err(|e| io_err(&shown, e))
        }
        SFlag::S_IFIFO => append_header(b, name, &st, tar::EntryType::Fifo, None),
        // Sockets do not travel in a tar.
        _ => Ok(()),
    }
}

fn walk<W: Write>(
    b: &mut tar::Builder<W>,
    dir: OwnedFd,
    name: &Path,
    links: &mut HashMap<(u64, u64), PathBuf>,
) -> Result<(), CopyError> {
    let shown = name.display().to_string();
    let mut d = Dir::from_fd(dir).map_err(|e| io_err(&shown, e))?;
    let mut names: Vec<OsString> = Vec::new();
    for e in d.iter() {
        let e = e.map_err(|e| io_err(&shown, e))?;
        let n = OsStr::from_bytes(e.file_name().to_bytes());
        if n != "." && n != ".." {
            names.push(n.to_os_string());
        }
    }
    names.sort();
    // SAFETY: the Dir owns this descriptor and outlives every use of the borrow below.
    let fd = unsafe { BorrowedFd::borrow_raw(d.as_raw_fd()) };
    for n in names {
        append_at(b, fd, &n, &name.join(&n), links)?;
    }
    Ok(())
}

/// Ownership of what `extract` creates: the archive's (`-a`), or this uid:gid.
#[derive(Clone, Copy)]
pub enum Owner {
    Keep,
    Set(u32, u32),
}

/// Unpack a tar read from `input` into the directory `dest` of `root`. Entry names are
/// taken relative to `dest` (`..` cannot climb above it); each parent is resolved inside
/// the root; what exists is replaced, as `docker cp` does.
pub fn extract(root: &Root, dest: &str, input: impl Read, owner: Owner) -> Result<(), CopyError> {
    let dest_fd = root
        .resolve(dest, OFlag::O_RDONLY | OFlag::O_DIRECTORY, true)
        .map_err(|e| match e {
            Errno::ENOENT => {
                CopyError::Invalid(format!("Could not find the file {dest} in {}", root.label))
            }
            Errno::ENOTDIR => {
                CopyError::Invalid(format!("extraction point is not a directory: {dest}"))
            }
            e => io_err(dest, e),
        })?;
    let mut ar = tar::Archive::new(input);
    let mut dirs: Vec<(PathBuf, u32, i64)> = Vec::new();
    for entry in ar.entries().map_err(|e| io_err("archive", e))? {
        let mut entry = entry.map_err(|e| io_err("archive", e))?;
        let raw = entry.path().map_err(|e| io_err("archive", e))?.into_owned();
        let rel = clean_rel(&raw);
        let shown = rel.display().to_string();
        let Some(last) = rel.file_name().map(OsStr::to_os_string) else {
            continue; // "." itself: its metadata stays as it is
        };
        let parent = make_parents(&dest_fd, rel.parent().unwrap_or(Path::new("")))
            .map_err(|e| io_err(&shown, e))?;
        let h = entry.header();
        let mode = h.mode().unwrap_or(0o644) & 0o7777;
        let (uid, gid) = match owner {
            Owner::Keep => (h.uid().unwrap_or(0) as u32, h.gid().unwrap_or(0) as u32),
            Owner::Set(u, g) => (u, g),
        };
        let mtime = h.mtime().unwrap_or(0) as i64;
        let kind = h.entry_type();
        // Whatever is in the way, unless both are directories, goes.
        if let Ok(st) = fstatat(
            parent.as_fd(),
            last.as_os_str(),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            let is_dir =
                SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFDIR;
            if !(is_dir && kind == tar::EntryType::Directory) {
                let flag = if is_dir {
                    UnlinkatFlags::RemoveDir
                } else {
                    UnlinkatFlags::NoRemoveDir
                };
                if unlinkat(parent.as_fd(), last.as_os_str(), flag).is_err() && is_dir {
                    return Err(CopyError::Invalid(format!(
                        "cannot overwrite directory {shown} with non-directory"
                    )));
                }
            }
        }
        let mk_mode = Mode::from_bits_truncate(mode);
        match kind {
            tar::EntryType::Directory => {
                match mkdirat(
                    parent.as_fd(),
                    last.as_os_str(),
                    Mode::from_bits_truncate(0o700),
                ) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(io_err(&shown, e)),
                }
                dirs.push((rel.clone(), mode, mtime));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let fd = openat(
                    parent.as_fd(),
                    last.as_os_str(),
                    OFlag::O_WRONLY
                        | OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(|e| io_err(&shown, e))?;
                let mut f = File::from(fd);
                io::copy(&mut entry, &mut f).map_err(|e| io_err(&shown, e))?;
                fchmod(f.as_fd(), mk_mode).map_err(|e| io_err(&shown, e))?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(|e| io_err(&shown, e))?
                    .unwrap_or_default()
                    .into_owned();
                symlinkat(target.as_os_str(), parent.as_fd(), last.as_os_str())
                    .map_err(|e| io_err(&shown, e))?;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(|e| io_err(&shown, e))?
                    .unwrap_or_default()
                    .into_owned();
                let t = clean_rel(&target);
                let (tp, tn) = (t.parent().unwrap_or(Path::new("")), t.file_name());
                let Some(tn) = tn else {
                    return Err(CopyError::Invalid(format!("{shown}: hard link to nothing")));
                };
                let tparent = walk_dirs(&dest_fd, tp).map_err(|e| io_err(&shown, e))?;
                linkat(
                    tparent.as_fd(),
                    tn,
                    parent.as_fd(),
                    last.as_os_str(),
                    AtFlags::empty(),
                )
                .map_err(|e| io_err(&shown, e))?;
                continue;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let (sflag, dev) = match kind {
                    tar::EntryType::Char => (
                        SFlag::S_IFCHR,
                        libc::makedev(
                            h.device_major().ok().flatten().unwrap_or(0),
                            h.device_minor().ok().flatten().unwrap_or(0),
                        ),
                    ),
                    tar::EntryType::Block => (
                        SFlag::S_IFBLK,
                        libc::makedev(
                            h.device_major().ok().flatten().unwrap_or(0),
                            h.device_minor().ok().flatten().unwrap_or(0),
                        ),
                    ),
                    _ => (SFlag::S_IFIFO, 0),
                };
                mknodat(parent.as_fd(), last.as_os_str(), sflag, mk_mode, dev)
                    .map_err(|e| io_err(&shown, e))?;
            }
            _ => continue,
        }
        fchownat(
            parent.as_fd(),
            last.as_os_str(),
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| io_err(&shown, e))?;
        if kind != tar::EntryType::Directory && kind != tar::EntryType::Symlink {
            set_mtime(parent.as_fd(), &last, mtime);
        }
    }
    // Directories last: their modes might forbid our own writes, their times our changes.
    for (rel, mode, mtime) in dirs.into_iter().rev() {
        if let Ok(fd) = walk_dirs(&dest_fd, &rel) {
            let _ = fchmod(fd.as_fd(), Mode::from_bits_truncate(mode));
            let (parent, last) = (rel.parent().unwrap_or(Path::new("")), rel.file_name());
            if let (Ok(p), Some(l)) = (walk_dirs(&dest_fd, parent), last) {
                set_mtime(p.as_fd(), l, mtime);
            }
        }
    }
    Ok(())
}

fn set_mtime(dir: BorrowedFd<'_>, name: &OsStr, mtime: i64) {
    let t = nix::sys::time::TimeSpec::new(mtime, 0);
    let _ = nix::sys::stat::utimensat(
        dir,
        name,
        &t,
        &t,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    );
}

/// An entry name made relative and free of `..` that would climb out.
fn clean_rel(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// Open the directory `rel` under `base`, one component at a time without following
/// anything: a symlink on the way is refused, never followed.
fn walk_dirs(base: &OwnedFd, rel: &Path) -> nix::Result<OwnedFd> {
    let mut cur = openat(
        base.as_fd(),
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    for c in rel.components() {
        if let Component::Normal(n) = c {
            cur = openat(
                cur.as_fd(),
                n,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )?;
        }
    }
    Ok(cur)
}

/// Like `walk_dirs`, making what is missing.
fn make_parents(base: &OwnedFd, rel: &Path) -> nix::Result<OwnedFd> {
    let mut cur = openat(
        base.as_fd(),
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    for c in rel.components() {
        if let Component::Normal(n) = c {
            match mkdirat(cur.as_fd(), n, Mode::from_bits_truncate(0o755)) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(e),
            }
            cur = openat(
                cur.as_fd(),
                n,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )?;
        }
    }
    Ok(cur)
}

/// Our end of a pipe as File pair, for streaming an archive from one thread to another.
pub fn pipe() -> io::Result<(File, File)> {
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    // SAFETY: pipe2 returned two fresh descriptors that nothing else owns.
    Ok(unsafe {
        (
            File::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(r)),
            File::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(w)),
        )
    })
}
