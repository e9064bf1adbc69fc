//! Writing a directory tree as a tar: an overlayfs upper directory as a layer ([`diff`]),
//! or any tree as it is ([`archive_dir`]).

use std::collections::{HashMap, HashSet};
use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{open, openat, readlinkat, AtFlags, OFlag};
use nix::sys::stat::{fstat, fstatat, FileStat, Mode};
use tar::{EntryType, Header};

use super::error::LayerError;
use super::hashing::HashWriter;
use super::name::{MAX_DEPTH, OPAQUE_MARKER, WHITEOUT_PREFIX};
use super::sys::{get_xattr, list_xattrs, open_dir_at, Node};
use crate::digest::Digest;

/// What [`diff`] or [`archive_dir`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffReport {
    /// sha256 of the tar written: the layer's diff_id.
    pub diff_id: Digest,
    /// Bytes of the tar written.
    pub size: u64,
    /// Entries written (PAX headers are part of their entry; whiteout and opaque markers
    /// count).
    pub entries: u64,
}

/// Turns an overlayfs upper directory (what a container changed) into a layer tar,
/// uncompressed; the caller compresses and hashes the blob.
///
/// Whiteouts (0:0 character devices) become `.wh.NAME` files and opaque directories
/// (`trusted.overlay.opaque=y`, or `user.overlay.opaque=y` of a `userxattr` mount) get a
/// `.wh..wh..opq` entry. Hard links within the upper become tar hard links, xattrs become
/// `SCHILY.xattr.*` PAX records, except overlayfs's own. Entries come directory by
/// directory in byte order of their names, each directory before what it holds, so the
/// same tree always gives the same tar. Owners, modes (setuid, setgid, sticky) and mtimes
/// (whole seconds, as Docker and containerd write them) are kept; sockets are left out, as
/// tar cannot hold them.
///
/// A file the container named `.wh.*` is an error: in a layer it would read as a whiteout.
///
/// The upper must come from a mount with `redirect_dir=off` and `metacopy=off`: a renamed
/// directory or a metadata-only copy-up lives partly in the lower layers, and a diff of the
/// upper alone would lose it. Such an upper is an error rather than a wrong layer.
///
/// Nothing is followed: every directory is opened relative to its parent's descriptor
/// without following symlinks, so a container still running cannot point the walk outside
/// the upper by swapping a directory for a symlink.
pub fn diff(upper: &Path, out: impl Write) -> Result<DiffReport, LayerError> {
    pack(upper, out, Whiteouts::Translate, &HashSet::new())
}

/// [`diff`] without the entries at `skip` (paths relative to `upper`, no leading `/`) and
/// what is below them: the engine's mount points, which are not the container's changes.
pub fn diff_without(
    upper: &Path,
    out: impl Write,
    skip: &HashSet<Vec<u8>>,
) -> Result<DiffReport, LayerError> {
    pack(upper, out, Whiteouts::Translate, skip)
}

/// A plain tar of a directory tree, for `export` of a mounted container root and for
/// `import` and build contexts: the same fidelity as [`diff`], with no whiteout translation
/// (a 0:0 character device is written as one). overlayfs's own xattrs are still left out:
/// they describe one mount's layers and mean nothing elsewhere.
pub fn archive_dir(root: &Path, out: impl Write) -> Result<DiffReport, LayerError> {
    pack(root, out, Whiteouts::Keep, &HashSet::new())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Whiteouts {
    Translate,
    Keep,
}

const BUFFER: usize = 1 << 20;
const BLOCK: usize = 512;

fn pack(
    root: &Path,
    out: impl Write,
    mode: Whiteouts,
    skip: &HashSet<Vec<u8>>,
) -> Result<DiffReport, LayerError> {
    let fail = |op, source| LayerError::Archive {
        path: root.to_path_buf(),
        op,
        source,
    };
    let fd = open(
        root,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| fail("open", e.into()))?;
    let mut packer = Packer {
        out: HashWriter::new(BufWriter::with_capacity(BUFFER, out)),
        mode,
        links: HashMap::new(),
        buf: vec![0; BUFFER],
        entries: 0,
        skip,
    };
    let root_dir = Dir::from_fd(fd).map_err(|e| fail("open", e.into()))?;
    // The root itself gets no entry (Docker's diffs and exports have none), but an opaque
    // root still hides the lower layers.
    let xattrs = packer
        .xattrs(Node::Fd(root_dir.as_fd()), b"")
        .map_err(|e| e.rooted(root))?;
    packer
        .walk(root_dir, mode == Whiteouts::Translate && xattrs.opaque)
        .map_err(|e| e.rooted(root))?;
    packer
        .out
        .write_all(&[0; 2 * BLOCK])
        .map_err(|e| fail("write", e))?;
    let entries = packer.entries;
    let (diff_id, size, buffered) = packer.out.finish();
    buffered
        .into_inner()
        .map_err(|e| fail("write", e.into_error()))?
        .flush()
        .map_err(|e| fail("write", e))?;
    Ok(DiffReport {
        diff_id,
        size,
        entries,
    })
}

/// A failure at a path relative to the root, before the root is put in front.
struct PackError {
    rel: Vec<u8>,
    op: &'static str,
    source: io::Error,
}

impl PackError {
    fn new(rel: &[u8], op: &'static str, source: impl Into<io::Error>) -> PackError {
        PackError {
            rel: rel.to_vec(),
            op,
            source: source.into(),
        }
    }

    fn rooted(self, root: &Path) -> LayerError {
        let rel = std::ffi::OsStr::from_bytes(&self.rel);
        LayerError::Archive {
            path: if self.rel.is_empty() {
                root.to_path_buf()
            } else {
                PathBuf::from(root).join(rel)
            },
            op: self.op,
            source: self.source,
        }
    }
}

/// One directory being written: what of it is still to come.
struct Level {
    dir: Dir,
    prefix: Vec<u8>,
    children: std::vec::IntoIter<(Vec<u8>, Child)>,
}

enum Child {
    OpaqueMarker,
    Node {
        name: CString,
        st: FileStat,
        whiteout: bool,
    },
}

struct Xattrs {
    /// Sorted by name; overlayfs's own left out.
    records: Vec<(CString, Vec<u8>)>,
    opaque: bool,
}

struct Packer<'s, W: Write> {
    out: HashWriter<BufWriter<W>>,
    mode: Whiteouts,
    /// First name written for each (device, inode) with more than one link.
    links: HashMap<(u64, u64), Vec<u8>>,
    buf: Vec<u8>,
    entries: u64,
    /// Relative paths left out, with all below them.
    skip: &'s HashSet<Vec<u8>>,
}

impl<W: Write> Packer<'_, W> {
    /// Writes the entries below `root`, directory by directory. The walk keeps its own stack
    /// rather than recursing: a container may nest directories deeper than a thread's stack
    /// would take. Each level holds one descriptor, so depth is bounded by [`MAX_DEPTH`].
    fn walk(&mut self, mut root: Dir, opaque: bool) -> Result<(), PackError> {
        let children = self.list(&mut root, b"", opaque)?;
        let mut stack = vec![Level {
            dir: root,
            prefix: Vec::new(),
            children: children.into_iter(),
        }];
        while let Some(top) = stack.last_mut() {
            let Some((key, child)) = top.children.next() else {
                stack.pop();
                continue;
            };
            let rel = [top.prefix.as_slice(), key.as_slice()].concat();
            let at = top.dir.as_fd();
            let Some((mut dir, opaque)) = self.entry(at, &top.prefix, &rel, child)? else {
                continue;
            };
            if stack.len() >= MAX_DEPTH {
                return Err(PackError::new(
                    &rel,
                    "open directory",
                    io::Error::other(format!("deeper than {MAX_DEPTH} directories")),
                ));
            }
            let prefix = [rel.as_slice(), b"/"].concat();
            let children = self.list(&mut dir, &prefix, opaque)?;
            stack.push(Level {
                dir,
                prefix,
                children: children.into_iter(),
            });
        }
        Ok(())
    }

    /// The entries of `dir` (at `prefix`) in the order they are written, with its opaque
    /// marker when `opaque`: byte order of the names written (a whiteout sorts as
    /// `.wh.NAME`, the marker as `.wh..wh..opq`).
    fn list(
        &mut self,
        dir: &mut Dir,
        prefix: &[u8],
        opaque: bool,
    ) -> Result<Vec<(Vec<u8>, Child)>, PackError> {
        let mut children: Vec<(Vec<u8>, Child)> = Vec::new();
        if opaque {
            children.push((OPAQUE_MARKER.to_vec(), Child::OpaqueMarker));
        }
        let mut names = Vec::new();
        for e in dir.iter() {
            let e = e.map_err(|e| PackError::new(prefix, "read directory", e))?;
            if !matches!(e.file_name().to_bytes(), b"." | b"..") {
                names.push(e.file_name().to_owned());
            }
        }
        for name in names {
            let name = name.as_c_str();
            let rel = [prefix, name.to_bytes()].concat();
            if self.skip.contains(&rel) {
                continue;
            }
            let st = match fstatat(dir.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                // Deleted by a container still running: it is not part of the tree now.
                Err(Errno::ENOENT) => continue,
                Err(e) => return Err(PackError::new(&rel, "stat", e)),
            };
            let whiteout = self.mode == Whiteouts::Translate
                && st.st_mode & libc::S_IFMT == libc::S_IFCHR
                && st.st_rdev == 0;
            if self.mode == Whiteouts::Translate
                && !whiteout
                && name.to_bytes().starts_with(WHITEOUT_PREFIX)
            {
                // Docker and containerd write it as it is, and the next unpack deletes
                // something instead; an error is better than a layer that says otherwise.
                return Err(PackError::new(
                    &rel,
                    "diff",
                    io::Error::other(
                        "a name starting with .wh. would read as a whiteout in a layer",
                    ),
                ));
            }
            let key = if whiteout {
                [WHITEOUT_PREFIX, name.to_bytes()].concat()
            } else {
                name.to_bytes().to_vec()
            };
            children.push((
                key,
                Child::Node {
                    name: name.to_owned(),
                    st,
                    whiteout,
                },
            ));
        }
        children.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Ok(children)
    }

    /// Writes one entry of the directory `at` (at `prefix`); for a directory, returns it
    /// opened, with whether it is opaque, for the walk to go into.
    fn entry(
        &mut self,
        at: BorrowedFd<'_>,
        prefix: &[u8],
        rel: &[u8],
        child: Child,
    ) -> Result<Option<(Dir, bool)>, PackError> {
        let (name, st, whiteout) = match child {
            Child::OpaqueMarker => {
                let st = fstat(at).map_err(|e| PackError::new(prefix, "stat", e))?;
                let mut plain = st;
                plain.st_mode = libc::S_IFREG | (st.st_mode & 0o777);
                self.header(rel, EntryType::Regular, &plain, 0, None, &[])
                    .map_err(|e| PackError::new(rel, "write", e))?;
                return Ok(None);
            }
            Child::Node { name, st, whiteout } => (name, st, whiteout),
        };
        if whiteout {
            // overlayfs may give all whiteouts one shared inode, so they are never
            // taken for hard links. The name says it all; the mode is moby's.
            let mut plain = st;
            plain.st_mode = libc::S_IFREG | 0o600;
            self.header(rel, EntryType::Regular, &plain, 0, None, &[])
                .map_err(|e| PackError::new(rel, "write", e))?;
            return Ok(None);
        }
        match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => return self.directory(at, &name, rel.to_vec(), &st),
            libc::S_IFREG => self.file(at, &name, rel, &st)?,
            libc::S_IFLNK => {
                if self.hard_link(rel, &st)? {
                    return Ok(None);
                }
                let target = readlinkat(at, name.as_c_str())
                    .map_err(|e| PackError::new(rel, "read symlink", e))?;
                let x = self.xattrs(Node::At(at, &name), rel)?;
                self.header(
                    rel,
                    EntryType::Symlink,
                    &st,
                    0,
                    Some(target.as_bytes()),
                    &x.records,
                )
                .map_err(|e| PackError::new(rel, "write", e))?;
            }
            fmt @ (libc::S_IFCHR | libc::S_IFBLK | libc::S_IFIFO) => {
                if self.hard_link(rel, &st)? {
                    return Ok(None);
                }
                let kind = match fmt {
                    libc::S_IFCHR => EntryType::Char,
                    libc::S_IFBLK => EntryType::Block,
                    _ => EntryType::Fifo,
                };
                let x = self.xattrs(Node::At(at, &name), rel)?;
                self.header(rel, kind, &st, 0, None, &x.records)
                    .map_err(|e| PackError::new(rel, "write", e))?;
            }
            _ => {
                tracing::debug!(path = %String::from_utf8_lossy(rel), "socket left out of the tar");
            }
        }
        Ok(None)
    }

    fn directory(
        &mut self,
        at: BorrowedFd<'_>,
        name: &CStr,
        rel: Vec<u8>,
        st: &FileStat,
    ) -> Result<Option<(Dir, bool)>, PackError> {
        let fd = match open_dir_at(at, name) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(None),
            Err(e) => return Err(PackError::new(&rel, "open directory", e)),
        };
        let x = self.xattrs(Node::Fd(fd.as_fd()), &rel)?;
        let mut dirname = rel;
        dirname.push(b'/');
        self.header(&dirname, EntryType::Directory, st, 0, None, &x.records)
            .map_err(|e| PackError::new(&dirname, "write", e))?;
        let dir = Dir::from_fd(fd).map_err(|e| PackError::new(&dirname, "open directory", e))?;
        Ok(Some((dir, self.mode == Whiteouts::Translate && x.opaque)))
    }

    fn file(
        &mut self,
        at: BorrowedFd<'_>,
        name: &CStr,
        rel: &[u8],
        st: &FileStat,
    ) -> Result<(), PackError> {
        if self.hard_link(rel, st)? {
            return Ok(());
        }
        // O_NONBLOCK: if a running container swapped a fifo in, the open must not hang.
        let fd = match openat(
            at,
            name,
            OFlag::O_RDONLY
                | OFlag::O_NOFOLLOW
                | OFlag::O_NOCTTY
                | OFlag::O_NONBLOCK
                | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(PackError::new(rel, "open", e)),
        };
        let st = fstat(fd.as_fd()).map_err(|e| PackError::new(rel, "stat", e))?;
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(PackError::new(
                rel,
                "open",
                io::Error::other("replaced by something else than a file while archiving"),
            ));
        }
        let x = self.xattrs(Node::Fd(fd.as_fd()), rel)?;
        let size = st.st_size as u64;
        self.header(rel, EntryType::Regular, &st, size, None, &x.records)
            .map_err(|e| PackError::new(rel, "write", e))?;
        let mut file = File::from(fd);
        let mut left = size;
        while left > 0 {
            let want = self
                .buf
                .len()
                .min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = match file.read(&mut self.buf[..want]) {
                Ok(0) => {
                    return Err(PackError::new(
                        rel,
                        "read",
                        io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the file shrank while it was archived",
                        ),
                    ))
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(PackError::new(rel, "read", e)),
            };
            self.out
                .write_all(&self.buf[..n])
                .map_err(|e| PackError::new(rel, "write", e))?;
            left -= n as u64;
        }
        self.pad(size).map_err(|e| PackError::new(rel, "write", e))
    }

    /// Writes a hard link entry when another name of this inode was written already, and
    /// remembers the name otherwise.
    fn hard_link(&mut self, rel: &[u8], st: &FileStat) -> Result<bool, PackError> {
        if st.st_nlink <= 1 {
            return Ok(false);
        }
        let key = (st.st_dev, st.st_ino);
        if let Some(first) = self.links.get(&key).cloned() {
            self.header(rel, EntryType::Link, st, 0, Some(&first), &[])
                .map_err(|e| PackError::new(rel, "write", e))?;
            return Ok(true);
        }
        self.links.insert(key, rel.to_vec());
        Ok(false)
    }

    fn xattrs(&self, node: Node<'_>, rel: &[u8]) -> Result<Xattrs, PackError> {
        let mut records = Vec::new();
        let mut opaque = false;
        let names = list_xattrs(node).map_err(|e| PackError::new(rel, "list xattrs", e))?;
        for name in names {
            let value = match get_xattr(node, &name) {
                Ok(Some(v)) => v,
                // Removed between the list and the read.
                Ok(None) => continue,
                Err(e) => return Err(PackError::new(rel, "read xattr", e)),
            };
            let n = name.as_bytes();
            let overlay = n
                .strip_prefix(b"trusted.overlay.")
                .or_else(|| n.strip_prefix(b"user.overlay."));
            match overlay {
                None => records.push((name, value)),
                Some(b"opaque") => opaque = value == b"y",
                Some(what @ (b"redirect" | b"metacopy")) if self.mode == Whiteouts::Translate => {
                    return Err(PackError::new(
                        rel,
                        "diff",
                        io::Error::other(format!(
                            "overlayfs {} here: this upper needs its lower layers; mount with redirect_dir=off,metacopy=off",
                            String::from_utf8_lossy(what)
                        )),
                    ));
                }
                Some(_) => {}
            }
        }
        records.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        Ok(Xattrs { records, opaque })
    }

    /// One entry's headers: a PAX header first when something does not fit in ustar (xattrs,
    /// a long name or link target, large ids or sizes), then the ustar header.
    fn header(
        &mut self,
        name: &[u8],
        kind: EntryType,
        st: &FileStat,
        size: u64,
        link: Option<&[u8]>,
        xattrs: &[(CString, Vec<u8>)],
    ) -> io::Result<()> {
        self.entries += 1;
        let mut pax: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut h = Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(st.st_mode & 0o7777);
        let (uid, gid) = (u64::from(st.st_uid), u64::from(st.st_gid));
        h.set_uid(uid);
        h.set_gid(gid);
        if uid > OCTAL_7 {
            pax.push((b"uid".to_vec(), uid.to_string().into_bytes()));
        }
        if gid > OCTAL_7 {
            pax.push((b"gid".to_vec(), gid.to_string().into_bytes()));
        }
        h.set_size(size);
        if size > OCTAL_11 {
            pax.push((b"size".to_vec(), size.to_string().into_bytes()));
        }
        h.set_mtime(u64::try_from(st.st_mtime).unwrap_or(0));
        if matches!(kind, EntryType::Char | EntryType::Block) {
            h.set_device_major(libc::major(st.st_rdev))?;
            h.set_device_minor(libc::minor(st.st_rdev))?;
        }
        {
            let ustar = h.as_ustar_mut().expect("a ustar header");
            match split_ustar_name(name) {
                Some((prefix, rest)) => {
                    ustar.prefix[..prefix.len()].copy_from_slice(prefix);
                    ustar.name[..rest.len()].copy_from_slice(rest);
                }
                None => {
                    ustar.name.copy_from_slice(&name[..100]);
                    pax.push((b"path".to_vec(), name.to_vec()));
                }
            }
        }
        if let Some(link) = link {
            let field = &mut h.as_old_mut().linkname;
            if link.len() <= field.len() {
                field[..link.len()].copy_from_slice(link);
            } else {
                let n = field.len();
                field.copy_from_slice(&link[..n]);
                pax.push((b"linkpath".to_vec(), link.to_vec()));
            }
        }
        for (n, value) in xattrs {
            pax.push((
                [&b"SCHILY.xattr."[..], n.as_bytes()].concat(),
                value.clone(),
            ));
        }
        h.set_cksum();

        if !pax.is_empty() {
            let records = pax_records(&pax);
            let mut x = Header::new_ustar();
            x.set_entry_type(EntryType::XHeader);
            x.set_mode(0o644);
            x.set_size(records.len() as u64);
            let base = name
                .rsplit(|&b| b == b'/')
                .find(|c| !c.is_empty())
                .unwrap_or(b"root");
            let xname = [&b"PaxHeaders/"[..], base].concat();
            let n = xname.len().min(100);
            x.as_ustar_mut().expect("a ustar header").name[..n].copy_from_slice(&xname[..n]);
            x.set_cksum();
            self.out.write_all(x.as_bytes())?;
            self.out.write_all(&records)?;
            self.pad(records.len() as u64)?;
        }
        self.out.write_all(h.as_bytes())
    }

    fn pad(&mut self, size: u64) -> io::Result<()> {
        let rem = (size % BLOCK as u64) as usize;
        if rem != 0 {
            self.out.write_all(&[0; BLOCK][..BLOCK - rem])?;
        }
        Ok(())
    }
}

/// Largest values of a 7- and an 11-digit octal field.
const OCTAL_7: u64 = 0o7777777;
const OCTAL_11: u64 = 0o77777777777;

/// Splits a name into ustar's prefix (155 bytes) and name (100 bytes) at a `/`, or `None`
/// when it cannot be.
fn split_ustar_name(name: &[u8]) -> Option<(&[u8], &[u8])> {
    if name.len() <= 100 {
        return Some((&[], name));
    }
    name.iter()
        .enumerate()
        .filter(|&(i, &b)| b == b'/' && i <= 155 && i + 1 < name.len())
        .map(|(i, _)| (&name[..i], &name[i + 1..]))
        .find(|(_, rest)| rest.len() <= 100)
}

/// PAX records, `"<len> <key>=<value>\n"` where len counts the whole record.
fn pax_records(records: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (key, value) in records {
        let body = key.len() + value.len() + 3;
        let mut len = body + 1;
        while len != body + len.to_string().len() {
            len = body + len.to_string().len();
        }
        out.extend_from_slice(len.to_string().as_bytes());
        out.push(b' ');
        out.extend_from_slice(key);
        out.push(b'=');
        out.extend_from_slice(value);
        out.push(b'\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_lengths_count_themselves() {
        let recs = pax_records(&[
            (b"path".to_vec(), b"x".repeat(5)),
            (b"k".to_vec(), b"v".repeat(93)),
        ]);
        let text = String::from_utf8(recs).unwrap();
        for line in text.split_inclusive('\n') {
            let (len, _) = line.split_once(' ').unwrap();
            assert_eq!(len.parse::<usize>().unwrap(), line.len(), "{line:?}");
        }
    }

    #[test]
    fn ustar_names_split_at_a_slash() {
        assert_eq!(split_ustar_name(b"a/b"), Some((&b""[..], &b"a/b"[..])));
        let long = [b"p".repeat(120), b"/".to_vec(), b"n".repeat(50)].concat();
        let (prefix, rest) = split_ustar_name(&long).unwrap();
        assert_eq!((prefix.len(), rest.len()), (120, 50));
        assert_eq!(split_ustar_name(&b"x".repeat(101)), None);
        let dir = [b"p".repeat(150), b"/".to_vec(), b"d/".to_vec()].concat();
        assert_eq!(split_ustar_name(&dir).unwrap().1, b"d/");
    }
}
