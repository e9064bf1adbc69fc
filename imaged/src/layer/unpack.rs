//! Unpacking one layer into an empty snapshot directory for overlayfs.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{open, openat, AtFlags, OFlag};
use nix::sys::stat::{fstatat, futimens, mkdirat, mknodat, utimensat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};
use tar::EntryType;

use super::budget::{BudgetReader, HeaderBudget};
use super::compression::{detect_and_decode, Compression};
use super::error::{At, LayerError, Refusal};
use super::meta::{Meta, OPAQUE_XATTR};
use super::name::{check_directories, components, display, lossy, marker, Marker};
use super::parents::Parents;
use super::pipe::{self, ChunkReader};
use super::resolve::{Found, Tree, WalkError};
use super::sys::{cstring, open_dir_at, set_xattr, Node};
use crate::digest::Digest;

/// How a layer is unpacked.
#[derive(Debug, Clone)]
pub struct UnpackOptions {
    /// The layer's name in messages, usually its digest.
    pub name: String,
    /// The unpacked snapshots this layer goes on, nearest first. A parent directory the layer
    /// does not list is made like the same directory in the nearest of them that shows one
    /// (owner, mode, times, xattrs), as containerd does; without them, 0755 and root-owned.
    pub parents: Vec<PathBuf>,
}

impl UnpackOptions {
    pub fn new(name: impl Into<String>) -> UnpackOptions {
        UnpackOptions {
            name: name.into(),
            parents: Vec::new(),
        }
    }

    /// See [`UnpackOptions::parents`].
    pub fn with_parents(mut self, parents: impl IntoIterator<Item = PathBuf>) -> UnpackOptions {
        self.parents = parents.into_iter().collect();
        self
    }
}

/// What [`unpack`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpackReport {
    /// sha256 of the uncompressed tar stream, all of it (trailing zero blocks too): the
    /// diff_id an image config lists in `rootfs.diff_ids`.
    pub diff_id: Digest,
    /// The compression found from the blob's first bytes.
    pub compression: Compression,
    /// Bytes of the uncompressed tar stream.
    pub tar_size: u64,
    /// Bytes of regular file content written to disk (a hard link adds nothing; metadata,
    /// directories and filesystem overhead are not counted).
    pub written: u64,
    /// Tar entries taken (extension headers are part of the entry they describe).
    pub entries: u64,
}

/// Big reads: a layer is one long stream, and every extra read is a trip through the
/// decompressor.
const BUFFER: usize = 1 << 20;
/// What the headers of one entry (PAX records, GNU long names) may take.
const HEADER_BUDGET: u64 = 1 << 20;

/// Unpacks one image layer (a tar stream, gzip, zstd or uncompressed, told apart by its first
/// bytes) into `dest`, an existing empty directory that becomes an overlayfs lower directory.
///
/// The stream is read once: decompressed, hashed and written as it comes, and read to its
/// end (past the tar's end blocks) so that [`UnpackReport::diff_id`] covers every byte. The
/// caller compares it with the image config's `rootfs.diff_ids`.
///
/// Whiteouts become overlayfs's own: `.wh.NAME` a 0:0 character device NAME, `.wh..wh..opq`
/// the xattr `trusted.overlay.opaque=y` on its directory. Owners are numeric, modes keep
/// setuid, setgid and sticky, directories get their times after their children are written,
/// and `SCHILY.xattr.*` PAX records become xattrs. Nothing is ever followed to set owners,
/// modes, times or xattrs.
///
/// Nothing lands outside `dest`. The rules, and why (imaged/README.md, "Layers"):
/// - an absolute name is taken inside `dest`; `..` that would climb above it is refused;
/// - parent directories are walked one descriptor at a time, following only relative
///   symlinks that stay inside; a symlink that points outside (absolute, or climbing above
///   the root) is refused when an entry would be written through it;
/// - a hard link must name an entry of this layer, reached the same way;
/// - character and block devices are taken only under the image's `/dev` (which the
///   runtime covers with a tmpfs), except the 0:0 character device, which is overlayfs's
///   whiteout and may stand anywhere;
/// - a later entry replaces an earlier one of the same path, directories merge, as in Docker.
///
/// On error (a refused entry, a broken stream, a failing disk) `dest` holds part of the layer
/// and must be removed by the caller; it is never a snapshot to use.
pub fn unpack(
    reader: impl Read,
    dest: &Path,
    opts: &UnpackOptions,
) -> Result<UnpackReport, LayerError> {
    let layer = opts.name.as_str();
    let root = open_dest(dest, layer)?;
    let parents = open_parents(&opts.parents, layer)?;
    let stream_err = |at: At, source| LayerError::Stream {
        layer: layer.to_string(),
        at,
        source,
    };

    let (detected, mut decoded) =
        detect_and_decode(reader, BUFFER).map_err(|e| stream_err(At::Start, e))?;
    let compression = detected.map_err(|unsupported| {
        stream_err(
            At::Start,
            io::Error::new(io::ErrorKind::InvalidData, unsupported),
        )
    })?;

    let (pump, chunks) = pipe::chunks();
    let extracted = std::thread::scope(|s| {
        let worker = std::thread::Builder::new()
            .name("layer-unpack".to_string())
            .spawn_scoped(s, move || extract(chunks, root, parents, layer))
            .map_err(|e| stream_err(At::Start, e))?;
        // Read to the end even past the tar's end blocks: whatever follows them is part of
        // the blob, and of the diff_id.
        pump.pump(&mut decoded);
        worker
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    });
    let Extracted {
        written,
        entries,
        diff_id,
        tar_size,
    } = extracted?;
    Ok(UnpackReport {
        diff_id,
        compression,
        tar_size,
        written,
        entries,
    })
}

/// What the parsing thread did.
struct Extracted {
    /// Bytes written into files.
    written: u64,
    /// Entries taken.
    entries: u64,
    /// The digest and size of the whole decompressed stream.
    diff_id: Digest,
    tar_size: u64,
}

/// The parsing thread's half of [`unpack`]: the tar from `input` into `root`, and the
/// stream's digest.
fn extract(
    input: ChunkReader,
    root: OwnedFd,
    parents: Parents,
    layer: &str,
) -> Result<Extracted, LayerError> {
    let stream_err = |at: At, source| LayerError::Stream {
        layer: layer.to_string(),
        at,
        source,
    };
    let budget = HeaderBudget::default();
    let mut archive = tar::Archive::new(BudgetReader::new(input, budget.clone()));
    let mut unpacker = Unpacker {
        layer,
        tree: Tree::new(root, parents),
        dirs: Vec::new(),
        buf: vec![0; BUFFER],
        written: 0,
        entries: 0,
    };

    let mut last: Option<String> = None;
    let after = |last: &Option<String>| match last {
        Some(name) => At::After(name.clone()),
        None => At::Start,
    };
    let mut entries = archive.entries().map_err(|e| stream_err(At::Start, e))?;
    loop {
        budget.arm(HEADER_BUDGET);
        let next = entries.next();
        budget.disarm();
        let mut entry = match next {
            None => break,
            Some(Ok(entry)) => entry,
            Some(Err(_)) if budget.exceeded() => {
                return Err(LayerError::Refused {
                    layer: layer.to_string(),
                    at: after(&last),
                    reason: Refusal::HeadersTooLarge(HEADER_BUDGET),
                })
            }
            Some(Err(e)) => return Err(stream_err(after(&last), e)),
        };
        let name = lossy(&entry.path_bytes());
        unpacker
            .entry(&mut entry)
            .map_err(|f| f.into_error(layer, At::Entry(name.clone())))?;
        last = Some(name);
    }

    // The rest of the stream must still be read: its errors (a gzip trailer that does not
    // match) are the layer's, and the other thread hashes it as it goes.
    let mut rest = archive.into_inner().into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(|e| stream_err(At::End, e))?;
    unpacker
        .finish_dirs()
        .map_err(|f| f.into_error(layer, At::End))?;
    let (diff_id, tar_size) = rest.finish();
    Ok(Extracted {
        written: unpacker.written,
        entries: unpacker.entries,
        diff_id,
        tar_size,
    })
}

fn open_parents(paths: &[PathBuf], layer: &str) -> Result<Parents, LayerError> {
    let mut fds = Vec::with_capacity(paths.len());
    for p in paths {
        let fd = open(
            p.as_path(),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| LayerError::Destination {
            layer: layer.to_string(),
            path: p.clone(),
            reason: format!("parent snapshot: {}", io::Error::from(e)),
        })?;
        fds.push(fd);
    }
    Ok(Parents(fds))
}

fn open_dest(dest: &Path, layer: &str) -> Result<OwnedFd, LayerError> {
    let refuse = |reason: String| LayerError::Destination {
        layer: layer.to_string(),
        path: dest.to_path_buf(),
        reason,
    };
    // The caller's path is trusted; everything below it is not.
    let fd = open(
        dest,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| refuse(io::Error::from(e).to_string()))?;
    let mut listing = Dir::from_fd(fd.try_clone().map_err(|e| refuse(e.to_string()))?)
        .map_err(|e| refuse(io::Error::from(e).to_string()))?;
    for e in listing.iter() {
        let e = e.map_err(|e| refuse(io::Error::from(e).to_string()))?;
        if !matches!(e.file_name().to_bytes(), b"." | b"..") {
            return Err(refuse("not empty".to_string()));
        }
    }
    Ok(fd)
}

/// How one entry failed, before the layer and entry names are put on it.
#[derive(Debug)]
pub(super) enum Fail {
    Refuse(Refusal),
    Io(&'static str, io::Error),
    /// Reading the entry's data from the stream failed.
    Stream(io::Error),
}

impl Fail {
    fn into_error(self, layer: &str, at: At) -> LayerError {
        let layer = layer.to_string();
        match self {
            Fail::Refuse(reason) => LayerError::Refused { layer, at, reason },
            Fail::Io(op, source) => LayerError::Entry {
                layer,
                at,
                op,
                source,
            },
            Fail::Stream(source) => LayerError::Stream { layer, at, source },
        }
    }
}

impl From<Refusal> for Fail {
    fn from(r: Refusal) -> Fail {
        Fail::Refuse(r)
    }
}

impl From<WalkError> for Fail {
    fn from(e: WalkError) -> Fail {
        match e {
            WalkError::Refused(r) => Fail::Refuse(r),
            WalkError::Io(op, e) => Fail::Io(op, e),
            WalkError::Missing(path) => Fail::Io(
                "find directory",
                io::Error::other(format!("{path}: missing")),
            ),
        }
    }
}

pub(super) trait Op<T> {
    fn op(self, op: &'static str) -> Result<T, Fail>;
}

impl<T, E: Into<io::Error>> Op<T> for Result<T, E> {
    fn op(self, op: &'static str) -> Result<T, Fail> {
        self.map_err(|e| Fail::Io(op, e.into()))
    }
}

/// What was at a path before an entry took it.
#[derive(Debug, PartialEq, Eq)]
enum Was {
    Nothing,
    Directory,
    Whiteout,
    Other,
}

struct Unpacker<'a> {
    layer: &'a str,
    tree: Tree,
    /// Directories whose times are set last, since writing their children changes them.
    dirs: Vec<(Vec<Vec<u8>>, TimeSpec, TimeSpec)>,
    buf: Vec<u8>,
    written: u64,
    entries: u64,
}

impl Unpacker<'_> {
    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), Fail> {
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            // Go's and containerd's readers ignore them too; they describe the archive.
            return self.drain(entry);
        }
        self.entries += 1;
        let raw = entry.path_bytes().into_owned();
        let comps = components(&raw)?;
        let Some((base, parents)) = comps.split_last() else {
            // `./` or `/`: the snapshot root is the caller's directory, as in containerd.
            if kind.is_dir() {
                return self.drain(entry);
            }
            return Err(Refusal::ReplacesRoot {
                kind: kind_name(kind),
            }
            .into());
        };
        check_directories(parents)?;
        let meta = Meta::of(entry)?;

        match marker(base)? {
            Marker::AufsMeta => {
                tracing::debug!(layer = self.layer, entry = %lossy(&raw), "AUFS metadata skipped");
                self.drain(entry)
            }
            Marker::Opaque => {
                let dir = self.tree.dir(parents, true)?;
                set_xattr(Node::Fd(dir.fd.as_fd()), OPAQUE_XATTR, b"y").op("mark opaque")?;
                self.drain(entry)
            }
            Marker::Whiteout(name) => {
                let dir = self.tree.dir(parents, true)?;
                self.whiteout(&dir, &cstring(name).op("whiteout")?, &meta)?;
                self.drain(entry)
            }
            Marker::Plain => {
                let dir = self.tree.dir(parents, true)?;
                let base = cstring(base).op("name")?;
                self.plain(entry, kind, &dir, &base, &meta)
            }
        }
    }

    fn plain<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        kind: EntryType,
        dir: &Found,
        base: &CStr,
        meta: &Meta,
    ) -> Result<(), Fail> {
        let at = dir.fd.as_fd();
        match kind {
            EntryType::Directory => {
                let was = self.clear(at, base, true)?;
                if was != Was::Directory {
                    mkdirat(at, base, Mode::from_bits_truncate(0o700)).op("create directory")?;
                }
                let fd = open_dir_at(at, base).op("open directory")?;
                if was == Was::Whiteout {
                    // `.wh.x` came first, then `x/`: the layer deleted the lower x and made a
                    // new one, which must not show the lower's content. `.wh.x` coming after
                    // `x/` is handled in `whiteout`, to the same effect.
                    set_xattr(Node::Fd(fd.as_fd()), OPAQUE_XATTR, b"y").op("mark opaque")?;
                }
                meta.apply_to_fd(self.layer, Node::Fd(fd.as_fd()), true)?;
                let mut path = dir.path.clone();
                path.push(base.to_bytes().to_vec());
                self.dirs.push((path, meta.atime, meta.mtime));
                self.drain(entry)
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                // Made with its final permission bits (an fd opened for writing at creation
                // writes whatever they say), so the usual file needs no chmod afterwards;
                // and created first, cleared only when something is in the way: most
                // names are new, and a failed lookup per file is time on a big layer.
                let create_mode = meta.mode().bits() & 0o777;
                let create = || {
                    openat(
                        at,
                        base,
                        OFlag::O_WRONLY
                            | OFlag::O_CREAT
                            | OFlag::O_EXCL
                            | OFlag::O_NOFOLLOW
                            | OFlag::O_CLOEXEC,
                        Mode::from_bits_truncate(create_mode),
                    )
                };
                let fd = match create() {
                    Err(Errno::EEXIST) => {
                        self.clear(at, base, false)?;
                        create()
                    }
                    r => r,
                }
                .op("create file")?;
                let mut file = File::from(fd);
                self.copy(entry, &mut file)?;
                let mode_is_final = create_mode & umask() == 0;
                // Owner before xattrs and mode: chown clears setuid, setgid and
                // security.capability.
                meta.apply_to_new_file(self.layer, file.as_fd(), mode_is_final)?;
                futimens(file.as_fd(), &meta.atime, &meta.mtime).op("set times")?;
                Ok(())
            }
            EntryType::Symlink => {
                let target = link_target(entry)?;
                self.clear(at, base, false)?;
                symlinkat(target.as_c_str(), at, base).op("create symlink")?;
                meta.apply_at(self.layer, at, base, true)?;
                self.drain(entry)
            }
            EntryType::Link => self.hard_link(entry, dir, base),
            EntryType::Char | EntryType::Block => {
                let h = entry.header();
                let major = h.device_major().map_err(Fail::Stream)?.unwrap_or(0);
                let minor = h.device_minor().map_err(Fail::Stream)?.unwrap_or(0);
                let char = kind == EntryType::Char;
                let whiteout = char && major == 0 && minor == 0;
                let under_dev = dir.path.first().is_some_and(|c| c == b"dev");
                if !whiteout && !under_dev {
                    return Err(Refusal::DeviceOutsideDev {
                        kind: if char { "character" } else { "block" },
                        major,
                        minor,
                        path: display(&[dir.path.as_slice(), &[base.to_bytes().to_vec()]].concat()),
                    }
                    .into());
                }
                self.clear(at, base, false)?;
                let sflag = if char { SFlag::S_IFCHR } else { SFlag::S_IFBLK };
                mknodat(at, base, sflag, Mode::empty(), libc::makedev(major, minor))
                    .op("create device")?;
                meta.apply_at(self.layer, at, base, false)?;
                self.drain(entry)
            }
            EntryType::Fifo => {
                self.clear(at, base, false)?;
                mknodat(at, base, SFlag::S_IFIFO, Mode::empty(), 0).op("create fifo")?;
                meta.apply_at(self.layer, at, base, false)?;
                self.drain(entry)
            }
            other => Err(Refusal::UnsupportedType(other.as_byte() as char).into()),
        }
    }

    fn hard_link<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        dir: &Found,
        base: &CStr,
    ) -> Result<(), Fail> {
        let raw = link_target(entry)?;
        let target = lossy(raw.as_bytes());
        let wrap = |reason: Refusal| Refusal::HardLink {
            target: target.clone(),
            reason: Box::new(reason),
        };
        let comps = components(raw.as_bytes()).map_err(wrap)?;
        let Some((tbase, tparents)) = comps.split_last() else {
            return Err(Refusal::HardLinkToDirectory { target }.into());
        };
        let tdir = self.tree.dir(tparents, false).map_err(|e| match e {
            WalkError::Refused(r) => Fail::Refuse(wrap(r)),
            WalkError::Missing(_) => Fail::Refuse(Refusal::HardLinkTargetMissing {
                target: target.clone(),
            }),
            other => other.into(),
        })?;
        let tbase = cstring(tbase).op("hard link target")?;
        let st = match fstatat(
            tdir.fd.as_fd(),
            tbase.as_c_str(),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(st) => st,
            Err(Errno::ENOENT) => {
                return Err(Refusal::HardLinkTargetMissing { target }.into());
            }
            Err(e) => return Err(Fail::Io("hard link target", e.into())),
        };
        let fmt = st.st_mode & libc::S_IFMT;
        if fmt == libc::S_IFDIR {
            return Err(Refusal::HardLinkToDirectory { target }.into());
        }
        if fmt == libc::S_IFCHR || fmt == libc::S_IFBLK {
            if fmt == libc::S_IFCHR && st.st_rdev == 0 {
                return Err(Refusal::HardLinkToWhiteout { target }.into());
            }
            // A second name for a device is a device at that name.
            if dir.path.first().is_none_or(|c| c != b"dev") {
                return Err(Refusal::DeviceOutsideDev {
                    kind: if fmt == libc::S_IFCHR {
                        "character"
                    } else {
                        "block"
                    },
                    major: libc::major(st.st_rdev),
                    minor: libc::minor(st.st_rdev),
                    path: display(&[dir.path.as_slice(), &[base.to_bytes().to_vec()]].concat()),
                }
                .into());
            }
        }
        self.clear(dir.fd.as_fd(), base, false)?;
        // No AT_SYMLINK_FOLLOW: a hard link to a symlink links the symlink, as tar means.
        match linkat(
            tdir.fd.as_fd(),
            tbase.as_c_str(),
            dir.fd.as_fd(),
            base,
            AtFlags::empty(),
        ) {
            Ok(()) => {}
            // The entry replaced its own target.
            Err(Errno::ENOENT) => return Err(Refusal::HardLinkTargetMissing { target }.into()),
            Err(e) => return Err(Fail::Io("create hard link", e.into())),
        }
        // The inode already has its owner, mode and times from the entry that made it;
        // applying the link header's again could only lose security.capability to chown.
        self.drain(entry)
    }

    /// `.wh.NAME` in `dir`: a whiteout device, unless this layer already put NAME there.
    fn whiteout(&mut self, dir: &Found, name: &CStr, meta: &Meta) -> Result<(), Fail> {
        let at = dir.fd.as_fd();
        match fstatat(at, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => {
                // This layer has its own NAME/: the lower one is gone, this one stays, so it
                // must hide what the lower held.
                let fd = open_dir_at(at, name).op("open directory")?;
                set_xattr(Node::Fd(fd.as_fd()), OPAQUE_XATTR, b"y").op("mark opaque")
            }
            // A file of this layer already hides the lower NAME; the OCI spec says a
            // whiteout never deletes entries of its own layer.
            Ok(_) => Ok(()),
            Err(Errno::ENOENT) => {
                mknodat(at, name, SFlag::S_IFCHR, Mode::empty(), 0).op("create whiteout")?;
                fchownat(
                    at,
                    name,
                    Some(Uid::from_raw(meta.uid)),
                    Some(Gid::from_raw(meta.gid)),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .op("chown")?;
                // The marker's time, so that unpack → diff → unpack gives the same bytes.
                utimensat(
                    at,
                    name,
                    &meta.atime,
                    &meta.mtime,
                    UtimensatFlags::NoFollowSymlink,
                )
                .op("set times")
            }
            Err(e) => Err(Fail::Io("whiteout", e.into())),
        }
    }

    /// Empties `base` in `at` for a new entry: a directory stays when the new entry is a
    /// directory too (they merge), anything else is removed, a directory with all it holds.
    fn clear(&mut self, at: BorrowedFd<'_>, base: &CStr, keep_dir: bool) -> Result<Was, Fail> {
        let st = match fstatat(at, base, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::ENOENT) => return Ok(Was::Nothing),
            Err(e) => return Err(Fail::Io("look up", e.into())),
        };
        let fmt = st.st_mode & libc::S_IFMT;
        if fmt == libc::S_IFDIR {
            if keep_dir {
                return Ok(Was::Directory);
            }
            remove_all(at, base).op("remove replaced directory")?;
            self.tree.forget();
            return Ok(Was::Directory);
        }
        unlinkat(at, base, UnlinkatFlags::NoRemoveDir).op("remove replaced entry")?;
        if fmt == libc::S_IFLNK {
            self.tree.forget();
        }
        Ok(if fmt == libc::S_IFCHR && st.st_rdev == 0 {
            Was::Whiteout
        } else {
            Was::Other
        })
    }

    /// Copies exactly the entry's size into `file`; a stream that ends early is truncated.
    fn copy<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        file: &mut File,
    ) -> Result<(), Fail> {
        let size = entry.size();
        let mut done = 0u64;
        while done < size {
            let n = match entry.read(&mut self.buf) {
                Ok(0) => return Err(Fail::Stream(truncated(done, size))),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Fail::Stream(e)),
            };
            file.write_all(&self.buf[..n]).op("write")?;
            done += n as u64;
        }
        self.written += size;
        Ok(())
    }

    /// Reads past an entry's data, which the tar reader would otherwise skip inside its next
    /// `next()`, where the header budget applies.
    fn drain<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), Fail> {
        let size = entry.size();
        let n = io::copy(entry, &mut io::sink()).map_err(Fail::Stream)?;
        if n < size {
            return Err(Fail::Stream(truncated(n, size)));
        }
        Ok(())
    }

    fn finish_dirs(&mut self) -> Result<(), Fail> {
        // Inherited first: a directory's own entry, if it came later, has the last word.
        let mut all = std::mem::take(&mut self.tree.inherited_times);
        all.append(&mut self.dirs);
        for (path, atime, mtime) in all {
            // A later entry may have replaced the directory; then it has the times it has.
            if let Some(fd) = self.tree.exact(&path).op("open directory")? {
                futimens(fd.as_fd(), &atime, &mtime).op("set directory times")?;
            }
        }
        Ok(())
    }
}

/// The process's umask, read once from /proc (asking umask(2) would change it for a moment
/// under every other thread); 0o022 when /proc cannot say.
fn umask() -> u32 {
    static UMASK: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *UMASK.get_or_init(|| {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Umask:"))
                    .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
            })
            .unwrap_or(0o022)
    })
}

fn truncated(got: u64, size: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("truncated: the stream ends after {got} of the entry's {size} bytes"),
    )
}

fn link_target<R: Read>(entry: &tar::Entry<'_, R>) -> Result<CString, Fail> {
    match entry.link_name_bytes() {
        Some(t) if !t.is_empty() => {
            CString::new(t.into_owned()).map_err(|_| Refusal::NulInName.into())
        }
        _ => Err(Refusal::NoLinkTarget.into()),
    }
}

fn kind_name(kind: EntryType) -> &'static str {
    match kind {
        EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => "file",
        EntryType::Link => "hard link",
        EntryType::Symlink => "symlink",
        EntryType::Char | EntryType::Block => "device",
        EntryType::Fifo => "fifo",
        _ => "entry",
    }
}

/// Removes `name` in `dir` and, when it is a directory, everything below it, without
/// following anything.
pub(crate) fn remove_all(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    match unlinkat(dir, name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) => return Ok(()),
        Err(Errno::EISDIR) => {}
        Err(e) => return Err(e.into()),
    }
    let mut d = Dir::from_fd(open_dir_at(dir, name)?)?;
    let mut names = Vec::new();
    for e in d.iter() {
        let e = e?;
        let n = e.file_name();
        if !matches!(n.to_bytes(), b"." | b"..") {
            names.push(n.to_owned());
        }
    }
    for n in names {
        remove_all(d.as_fd(), &n)?;
    }
    unlinkat(dir, name, UnlinkatFlags::RemoveDir)?;
    Ok(())
}
