//! Resolving and creating paths inside the container's root without ever leaving it.
//!
//! Every lookup goes through openat2(2) with RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS relative
//! to an fd of the rootfs, so an image symlink such as `etc -> /../../host` or an absolute
//! symlink resolves as if the rootfs were `/` — exactly what the container will see after
//! pivot_root. Missing components are created one at a time with *at() calls under an fd of
//! their already-resolved parent, and dangling symlinks are followed lexically inside the root
//! (like filepath-securejoin) so the new inode lands where the container will look for it.

use nix::errno::Errno;
use nix::fcntl::{openat, openat2, readlinkat, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{mkdirat, Mode};
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use super::sys::proc_fd;

/// The kernel's own limit on symlinks followed in one lookup.
const MAX_SYMLINKS: usize = 40;

/// What to create when the path is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
}

/// The components of `path` relative to the root: `/`, `.` and empty parts dropped, `..` kept
/// (openat2 clamps it at the root).
fn components(path: &Path) -> Vec<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

fn join(comps: &[OsString]) -> PathBuf {
    if comps.is_empty() {
        return PathBuf::from(".");
    }
    comps.iter().collect()
}

/// `path` made absolute and free of `.`/`..`, clamping `..` at `/`. Used where a path names an
/// entry we create by name (device nodes, symlinks) rather than a lookup.
pub fn lexical_clean(path: &Path) -> PathBuf {
    let mut out: Vec<&OsStr> = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    let mut p = PathBuf::from("/");
    p.extend(out);
    p
}

/// How often an `openat2` that met a concurrent mount or rename during a `..` walk is retried.
const EAGAIN_RETRIES: usize = 128;

/// Open `path` inside `root` (an fd of the rootfs directory).
///
/// With RESOLVE_IN_ROOT the kernel answers EAGAIN when any mount or rename on the host ran while
/// it walked a `..`, because it cannot then prove the walk stayed inside; that is a race with
/// other work on the machine (another container starting), not an attack on us, so retry.
pub fn open_in_root(root: BorrowedFd<'_>, path: &Path, flags: OFlag) -> Result<OwnedFd, Errno> {
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let joined = join(&components(path));
    let mut result = openat2(root, &joined, how);
    for _ in 0..EAGAIN_RETRIES {
        if !matches!(result, Err(Errno::EAGAIN)) {
            break;
        }
        std::thread::yield_now();
        result = openat2(root, &joined, how);
    }
    result
}

/// Open `path` inside `root`, creating it (and missing parents, as directories) when absent.
/// Returns an O_PATH fd of whatever is there, which may be of another type than `kind` when the
/// path already existed.
pub fn open_or_create(root: BorrowedFd<'_>, path: &Path, kind: Kind) -> Result<OwnedFd, Errno> {
    let mut comps = components(path);
    for _ in 0..MAX_SYMLINKS {
        match open_in_root(root, &join(&comps), OFlag::O_PATH) {
            Err(Errno::ENOENT) => {}
            other => return other,
        }
        // Find the first component that does not resolve.
        let mut parent = open_in_root(root, Path::new("."), OFlag::O_PATH | OFlag::O_DIRECTORY)?;
        let mut missing = comps.len();
        for k in 0..comps.len() {
            match open_in_root(
                root,
                &join(&comps[..=k]),
                OFlag::O_PATH | OFlag::O_DIRECTORY,
            ) {
                Ok(fd) => parent = fd,
                Err(Errno::ENOENT) => {
                    missing = k;
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        if missing == comps.len() {
            // It appeared between our two lookups; take what is there now.
            return open_in_root(root, &join(&comps), OFlag::O_PATH);
        }
        // A dangling symlink: continue the walk at its target, still inside the root.
        if let Ok(target) = readlinkat(&parent, comps[missing].as_os_str()) {
            let target = PathBuf::from(target);
            let mut next = if target.is_absolute() {
                Vec::new()
            } else {
                comps[..missing].to_vec()
            };
            next.extend(components(&target));
            next.extend_from_slice(&comps[missing + 1..]);
            comps = next;
            continue;
        }
        // Everything from `missing` on is new: directories we create are real ones, so `..`
        // among them can be folded lexically. A `..` reaching above `missing` goes back to the
        // resolver.
        let mut fresh: Vec<OsString> = Vec::new();
        let mut ups = 0;
        for c in &comps[missing..] {
            if c == ".." {
                if fresh.pop().is_none() {
                    ups += 1;
                }
            } else {
                fresh.push(c.clone());
            }
        }
        if ups > 0 {
            let mut next = comps[..missing].to_vec();
            next.extend(std::iter::repeat_n(OsString::from(".."), ups));
            next.extend(fresh);
            comps = next;
            continue;
        }
        return create_chain(parent, &fresh, kind);
    }
    Err(Errno::ELOOP)
}

/// Create `names` one below the other under `dir`, the last one as `kind`.
fn create_chain(mut dir: OwnedFd, names: &[OsString], kind: Kind) -> Result<OwnedFd, Errno> {
    let Some((last, dirs)) = names.split_last() else {
        return Ok(dir);
    };
    for name in dirs {
        dir = mkdir_open(&dir, name)?;
    }
    match kind {
        Kind::Dir => mkdir_open(&dir, last),
        Kind::File => {
            match openat(
                &dir,
                last.as_os_str(),
                OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_WRONLY
                    | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o644),
            ) {
                Ok(_) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(e),
            }
            openat(
                &dir,
                last.as_os_str(),
                OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
        }
    }
}

/// mkdirat + open, refusing to follow whatever may have raced into place.
fn mkdir_open(dir: &OwnedFd, name: &OsStr) -> Result<OwnedFd, Errno> {
    match mkdirat(dir, name, Mode::from_bits_truncate(0o755)) {
        Ok(()) | Err(Errno::EEXIST) => {}
        Err(e) => return Err(e),
    }
    openat(
        dir,
        name,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// The parent directory of `path` (created if needed) and the final name, for operations that
/// make an entry by name (mknod, symlink, unlink). `path` is cleaned lexically first so the
/// final name is always a plain component.
pub fn parent_and_name(root: BorrowedFd<'_>, path: &Path) -> Result<(OwnedFd, OsString), Errno> {
    let clean = lexical_clean(path);
    let name = clean.file_name().ok_or(Errno::EINVAL)?.to_os_string();
    let parent = open_or_create(root, clean.parent().unwrap_or(Path::new("/")), Kind::Dir)?;
    Ok((parent, name))
}

/// The path the kernel reports for `fd`, as seen from the current root.
pub fn fd_path(fd: BorrowedFd<'_>) -> Result<PathBuf, Errno> {
    nix::fcntl::readlink(&proc_fd(fd)).map(PathBuf::from)
}

/// `path` relative to `rootfs`, or None when it is not inside it.
pub fn inside(rootfs: &Path, path: &Path) -> Option<PathBuf> {
    path.strip_prefix(rootfs).ok().map(Path::to_path_buf)
}

/// Re-open the path `fd` points to, from `root`, so that we get the mount now on top of it.
/// The new fd must name the same path, or something moved under our feet.
pub fn reopen_top(
    root: BorrowedFd<'_>,
    rootfs: &Path,
    fd: BorrowedFd<'_>,
) -> Result<OwnedFd, Errno> {
    let full = fd_path(fd)?;
    let rel = inside(rootfs, &full).ok_or(Errno::EXDEV)?;
    let new = open_in_root(root, &rel, OFlag::O_PATH | OFlag::O_NOFOLLOW)?;
    if fd_path(new.as_fd())? != full {
        return Err(Errno::EXDEV);
    }
    Ok(new)
}

#[cfg(test)]
mod unit {
    use super::*;
    use nix::fcntl::open;
    use std::os::unix::fs::symlink;

    fn root(dir: &Path) -> OwnedFd {
        open(dir, OFlag::O_PATH | OFlag::O_DIRECTORY, Mode::empty()).unwrap()
    }

    #[test]
    fn rootfs_paths_create_follows_dangling_links_inside_root() {
        let t = tempfile::Builder::new()
            .prefix("berth-rootfs-paths-")
            .tempdir()
            .unwrap();
        let r = root(t.path());
        symlink("/abs/target", t.path().join("abslink")).unwrap();
        symlink("../../../../rel", t.path().join("rellink")).unwrap();
        symlink("loop", t.path().join("loop")).unwrap();
        std::fs::write(t.path().join("file"), "").unwrap();

        let fd = open_or_create(r.as_fd(), Path::new("/a/b/c"), Kind::Dir).unwrap();
        assert_eq!(fd_path(fd.as_fd()).unwrap(), t.path().join("a/b/c"));
        open_or_create(r.as_fd(), Path::new("/abslink/z"), Kind::Dir).unwrap();
        assert!(t.path().join("abs/target/z").is_dir());
        open_or_create(r.as_fd(), Path::new("rellink"), Kind::File).unwrap();
        assert!(t.path().join("rel").is_file());
        open_or_create(r.as_fd(), Path::new("/new/../../../made"), Kind::Dir).unwrap();
        assert!(t.path().join("made").is_dir());
        assert_eq!(
            open_or_create(r.as_fd(), Path::new("/loop/x"), Kind::Dir).unwrap_err(),
            Errno::ELOOP
        );
        assert_eq!(
            open_or_create(r.as_fd(), Path::new("/file/x"), Kind::Dir).unwrap_err(),
            Errno::ENOTDIR
        );
        assert_eq!(
            lexical_clean(Path::new("/../a/./b/..")),
            PathBuf::from("/a")
        );
        assert_eq!(lexical_clean(Path::new("dev/x")), PathBuf::from("/dev/x"));
    }
}
