//! The syscall edge of the layer code: opening one directory component without following
//! anything, and extended attributes (which nix does not wrap). Everything here works on a
//! file descriptor, or on a name inside a directory descriptor, never on a path string
//! that could be swapped under us.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;

/// Opens the directory `name` inside `dir`. `name` is one component: a symlink there fails
/// with `ELOOP`, anything else than a directory with `ENOTDIR`, and a mount point with
/// `EXDEV` (nothing may be mounted inside a snapshot while it is unpacked or archived).
pub(crate) fn open_dir_at(dir: BorrowedFd<'_>, name: &CStr) -> nix::Result<OwnedFd> {
    openat2(
        dir,
        name,
        OpenHow::new()
            .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
            .mode(Mode::empty())
            .resolve(
                ResolveFlag::RESOLVE_BENEATH
                    | ResolveFlag::RESOLVE_NO_SYMLINKS
                    | ResolveFlag::RESOLVE_NO_MAGICLINKS
                    | ResolveFlag::RESOLVE_NO_XDEV,
            ),
    )
}

/// A C string of a name that has been checked to hold no NUL byte.
pub(crate) fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::from(Errno::EINVAL))
}

/// Something that has extended attributes: an open file or directory, or a name inside a
/// directory that must not be opened (a symlink, a device, a fifo).
#[derive(Clone, Copy)]
pub(crate) enum Node<'a> {
    Fd(BorrowedFd<'a>),
    At(BorrowedFd<'a>, &'a CStr),
}

/// Before Linux 6.13 there is no `*xattrat` call, so a name inside a directory descriptor is
/// reached through that descriptor's /proc entry: the magic link jumps to the directory we
/// hold, and the `l*` call then takes the last component without following it.
fn proc_path(dir: BorrowedFd<'_>, name: &CStr) -> CString {
    let mut p = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    p.extend_from_slice(name.to_bytes());
    CString::new(p).expect("a checked name has no NUL")
}

pub(crate) fn set_xattr(node: Node<'_>, name: &CStr, value: &[u8]) -> io::Result<()> {
    let ret = match node {
        // SAFETY: the fd is open for the call, name is NUL-terminated, and value points to
        // value.len() readable bytes.
        Node::Fd(fd) => unsafe {
            libc::fsetxattr(
                fd.as_raw_fd(),
                name.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            )
        },
        Node::At(dir, base) => {
            let path = proc_path(dir, base);
            // SAFETY: as above, with a NUL-terminated path.
            unsafe {
                libc::lsetxattr(
                    path.as_ptr(),
                    name.as_ptr(),
                    value.as_ptr().cast(),
                    value.len(),
                    0,
                )
            }
        }
    };
    Errno::result(ret).map(drop).map_err(io::Error::from)
}

/// The names of the extended attributes of `node`; none on a filesystem without them.
pub(crate) fn list_xattrs(node: Node<'_>) -> io::Result<Vec<CString>> {
    let path = match node {
        Node::At(dir, base) => Some(proc_path(dir, base)),
        Node::Fd(_) => None,
    };
    let list = |buf: &mut [u8]| -> isize {
        let (ptr, len) = (buf.as_mut_ptr().cast::<libc::c_char>(), buf.len());
        match (node, &path) {
            // SAFETY: buf is writable for len bytes (a null pointer with len 0 asks for the
            // size); the fd or path is valid for the call.
            (Node::Fd(fd), _) => unsafe { libc::flistxattr(fd.as_raw_fd(), ptr, len) },
            // SAFETY: as above.
            (Node::At(..), Some(p)) => unsafe { libc::llistxattr(p.as_ptr(), ptr, len) },
            (Node::At(..), None) => unreachable!(),
        }
    };
    let raw = sized_read(list)?;
    Ok(raw
        .split(|&b| b == 0)
        .filter(|n| !n.is_empty())
        .map(|n| CString::new(n).expect("split at NUL"))
        .collect())
}

/// The value of attribute `name`, or `None` when `node` does not have it.
pub(crate) fn get_xattr(node: Node<'_>, name: &CStr) -> io::Result<Option<Vec<u8>>> {
    let path = match node {
        Node::At(dir, base) => Some(proc_path(dir, base)),
        Node::Fd(_) => None,
    };
    let get = |buf: &mut [u8]| -> isize {
        let (ptr, len) = (buf.as_mut_ptr().cast::<libc::c_void>(), buf.len());
        match (node, &path) {
            // SAFETY: buf is writable for len bytes; name is NUL-terminated.
            (Node::Fd(fd), _) => unsafe {
                libc::fgetxattr(fd.as_raw_fd(), name.as_ptr(), ptr, len)
            },
            // SAFETY: as above.
            (Node::At(..), Some(p)) => unsafe {
                libc::lgetxattr(p.as_ptr(), name.as_ptr(), ptr, len)
            },
            (Node::At(..), None) => unreachable!(),
        }
    };
    match sized_read(get) {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.raw_os_error() == Some(libc::ENODATA) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Calls an xattr getter first for the size, then with a buffer of that size, again when
/// the value grew in between (`ERANGE`). A filesystem without xattrs reads as empty.
fn sized_read(mut call: impl FnMut(&mut [u8]) -> isize) -> io::Result<Vec<u8>> {
    loop {
        let size = call(&mut []);
        if size < 0 {
            let e = Errno::last();
            if e == Errno::ENOTSUP {
                return Ok(Vec::new());
            }
            return Err(e.into());
        }
        let mut buf = vec![0u8; size as usize];
        if buf.is_empty() {
            return Ok(buf);
        }
        let got = call(&mut buf);
        if got < 0 {
            match Errno::last() {
                Errno::ERANGE => continue,
                Errno::ENOTSUP => return Ok(Vec::new()),
                e => return Err(e.into()),
            }
        }
        buf.truncate(got as usize);
        return Ok(buf);
    }
}
