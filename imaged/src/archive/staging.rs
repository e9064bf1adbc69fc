//! Reading an image archive: every regular file goes to a temp file in the content store's
//! ingest directory, hashed on the way, so that a layer can later be renamed into the store
//! rather than copied. Entry names are checked here and links recorded, to be resolved
//! inside the archive when a manifest names a file; nothing is interpreted yet.
//!
//! The temp files are deleted when [`Staged`] is dropped (a refused archive leaves none), and
//! their names are not digests, so the sweep at start removes what a crash left.

use std::collections::{HashMap, HashSet};
use std::io::{self, BufReader, BufWriter, Read};
use std::path::Path;

use tempfile::TempPath;

use super::ArchiveError;
use crate::digest::Digest;
use crate::layer::detect_and_decode;
use crate::layer::hashing::{BudgetReader, HashWriter, HeaderBudget};

/// More entries than any image archive has (three per layer in Docker 20.10's format); a
/// bound on the temp files one load makes.
pub const MAX_ENTRIES: usize = 100_000;
/// What the headers of one entry (PAX records, long names) may take: the tar crate reads
/// them whole into memory.
const HEADER_BUDGET: u64 = 1 << 20;
/// Symlinks followed to find one file, as Linux's own limit.
const MAX_LINKS: usize = 40;

/// A regular file of the archive, in a temp file.
pub struct StagedFile {
    /// None once the file has been moved into the content store.
    pub path: Option<TempPath>,
    pub digest: Digest,
    pub size: u64,
    /// The name it had in the archive (the first, for a hard-linked one).
    pub name: String,
}

/// What an archive held, by name.
#[derive(Default)]
pub struct Staged {
    pub files: Vec<StagedFile>,
    names: HashMap<String, usize>,
    links: HashMap<String, String>,
    dirs: HashSet<String>,
}

/// `name` taken apart: a leading `/` or `./` dropped, `.` and empty components skipped, `..`
/// resolved; None when `..` would climb above the root.
fn normalize(name: &str) -> Option<Vec<&str>> {
    let mut out: Vec<&str> = Vec::new();
    for c in name.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop()?;
            }
            _ => out.push(c),
        }
    }
    Some(out)
}

/// Read a whole archive (a tar, plain or gzip or zstd) into temp files under `ingest`.
pub fn read(input: impl Read, ingest: &Path) -> Result<Staged, ArchiveError> {
    let (compression, decoded) = detect_and_decode(input, 1 << 20).map_err(ArchiveError::Stream)?;
    compression.map_err(|e| ArchiveError::Format(e.to_string()))?;
    let budget = HeaderBudget::default();
    let mut archive = tar::Archive::new(BudgetReader::new(
        BufReader::with_capacity(1 << 20, decoded),
        budget.clone(),
    ));
    let mut staged = Staged::default();
    let mut entries = archive.entries().map_err(ArchiveError::Stream)?;
    let mut count = 0;
    loop {
        budget.arm(HEADER_BUDGET);
        let next = entries.next();
        budget.disarm();
        let mut entry = match next {
            None => break,
            Some(Ok(e)) => e,
            Some(Err(_)) if budget.exceeded() => {
                return Err(ArchiveError::Format(format!(
                    "the headers of one entry exceed {HEADER_BUDGET} bytes"
                )))
            }
            Some(Err(e)) => return Err(ArchiveError::Stream(e)),
        };
        count += 1;
        if count > MAX_ENTRIES {
            return Err(ArchiveError::Format(format!(
                "more than {MAX_ENTRIES} entries"
            )));
        }
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let refuse = |reason: String| ArchiveError::Entry {
            entry: raw.clone(),
            reason,
        };
        if raw.contains('\0') {
            return Err(refuse("its name has a NUL byte".into()));
        }
        let Some(parts) = normalize(&raw) else {
            return Err(refuse("its path climbs above the archive root".into()));
        };
        let name = parts.join("/");
        let kind = entry.header().entry_type();
        match kind {
            tar::EntryType::Directory => {
                staged.dirs.insert(name);
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                if name.is_empty() {
                    return Err(refuse("a file cannot replace the archive root".into()));
                }
                let file = stage(&mut entry, ingest, &name)?;
                check_blob_name(&name, &file)?;
                staged.put(name, file);
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| String::from_utf8_lossy(&t).into_owned())
                    .unwrap_or_default();
                if target.is_empty() || target.contains('\0') {
                    return Err(refuse("a symlink without a usable target".into()));
                }
                if name.is_empty() {
                    return Err(refuse("a symlink cannot replace the archive root".into()));
                }
                staged.remove(&name);
                staged.links.insert(name, target);
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| String::from_utf8_lossy(&t).into_owned())
                    .unwrap_or_default();
                let Some(t) = normalize(&target) else {
                    return Err(refuse(format!(
                        "hard link to {target:?}: it climbs above the archive root"
                    )));
                };
                let Some(&i) = staged.names.get(&t.join("/")) else {
                    return Err(refuse(format!(
                        "hard link to {target:?}: no such file earlier in the archive"
                    )));
                };
                staged.remove(&name);
                staged.names.insert(name, i);
            }
            // Go's and containerd's readers skip them too: they describe the archive.
            tar::EntryType::XGlobalHeader => {}
            other => {
                return Err(refuse(format!(
                    "a {} has no place in an image archive",
                    kind_name(other)
                )))
            }
        }
    }
    Ok(staged)
}

fn kind_name(k: tar::EntryType) -> String {
    match k {
        tar::EntryType::Char => "character device".into(),
        tar::EntryType::Block => "block device".into(),
        tar::EntryType::Fifo => "fifo".into(),
        tar::EntryType::GNUSparse => "sparse file".into(),
        other => format!("tar entry of type {:?}", other.as_byte() as char),
    }
}

/// Copy one entry's data into a temp file, hashing it.
fn stage<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    ingest: &Path,
    name: &str,
) -> Result<StagedFile, ArchiveError> {
    let tmp = tempfile::Builder::new()
        .prefix(".load-")
        .tempfile_in(ingest)
        .map_err(ArchiveError::io("create a temp file in", ingest))?;
    let file = tmp.reopen().map_err(ArchiveError::io("open", tmp.path()))?;
    let mut w = HashWriter::new(BufWriter::with_capacity(1 << 20, file));
    let copied = io::copy(entry, &mut w);
    let (digest, size, buffered) = w.finish();
    // A read error is the archive's; a write error is the disk's.
    copied.map_err(|e| match e.kind() {
        io::ErrorKind::StorageFull | io::ErrorKind::PermissionDenied => ArchiveError::Io {
            op: "write",
            path: tmp.path().to_path_buf(),
            source: e,
        },
        _ => ArchiveError::Stream(io::Error::new(e.kind(), format!("entry {name:?}: {e}"))),
    })?;
    let file = buffered
        .into_inner()
        .map_err(|e| ArchiveError::io("write", tmp.path())(e.into_error()))?;
    file.sync_all()
        .map_err(ArchiveError::io("sync", tmp.path()))?;
    drop(file);
    Ok(StagedFile {
        path: Some(tmp.into_temp_path()),
        digest,
        size,
        name: name.to_string(),
    })
}

/// A file named `blobs/sha256/<hex>` must have that digest: an OCI layout names blobs by
/// their content, and a wrong one is refused as soon as it is read.
fn check_blob_name(name: &str, file: &StagedFile) -> Result<(), ArchiveError> {
    let Some(hex) = name.strip_prefix("blobs/sha256/") else {
        return Ok(());
    };
    let Ok(expected) = format!("sha256:{hex}").parse::<Digest>() else {
        return Ok(());
    };
    if expected != file.digest {
        return Err(ArchiveError::Digest {
            path: name.to_string(),
            expected,
            actual: file.digest.clone(),
        });
    }
    Ok(())
}

impl Staged {
    fn put(&mut self, name: String, file: StagedFile) {
        self.remove(&name);
        self.files.push(file);
        self.names.insert(name, self.files.len() - 1);
    }

    /// A later entry of the same name replaces an earlier one, as extraction would.
    fn remove(&mut self, name: &str) {
        self.names.remove(name);
        self.links.remove(name);
    }

    /// Whether the archive has a file (or a link to one) of this name.
    pub fn has(&self, name: &str) -> bool {
        self.find("", name).is_ok()
    }

    /// The file `path` names, following symlinks inside the archive (an absolute target
    /// starts at the archive root, as Docker resolves them in scope). `what` says who named
    /// it, for the error.
    pub fn find(&self, what: &str, path: &str) -> Result<usize, ArchiveError> {
        let fail = |reason: &str| ArchiveError::Path {
            what: what.to_string(),
            path: path.to_string(),
            reason: reason.to_string(),
        };
        let mut todo: std::collections::VecDeque<String> =
            path.split('/').map(str::to_string).collect();
        let mut at: Vec<String> = Vec::new();
        let mut hops = 0;
        while let Some(c) = todo.pop_front() {
            match c.as_str() {
                "" | "." => continue,
                ".." => {
                    if at.pop().is_none() {
                        return Err(fail("it points outside the archive"));
                    }
                    continue;
                }
                _ => at.push(c),
            }
            let here = at.join("/");
            if let Some(target) = self.links.get(&here) {
                hops += 1;
                if hops > MAX_LINKS {
                    return Err(fail("too many symlinks (a loop?)"));
                }
                at.pop();
                if target.starts_with('/') {
                    at.clear();
                }
                let mut next: std::collections::VecDeque<String> =
                    target.split('/').map(str::to_string).collect();
                next.extend(todo.drain(..));
                todo = next;
            }
        }
        let here = at.join("/");
        match self.names.get(&here) {
            Some(&i) => Ok(i),
            None if self.is_dir(&here) => Err(fail("it is a directory, not a file")),
            None => Err(fail("no such file in the archive")),
        }
    }

    /// A directory entry, or the parent of one (tars need not list directories).
    fn is_dir(&self, name: &str) -> bool {
        let prefix = format!("{name}/");
        name.is_empty()
            || self.dirs.contains(name)
            || self.names.keys().any(|n| n.starts_with(&prefix))
            || self.links.keys().any(|n| n.starts_with(&prefix))
    }

    /// Read a small file (a JSON document) into memory.
    pub fn read(&self, what: &str, path: &str) -> Result<Vec<u8>, ArchiveError> {
        let i = self.find(what, path)?;
        let f = &self.files[i];
        if f.size > super::MAX_DOCUMENT {
            return Err(ArchiveError::Path {
                what: what.to_string(),
                path: path.to_string(),
                reason: format!(
                    "{} bytes, more than the {} a document may have",
                    f.size,
                    super::MAX_DOCUMENT
                ),
            });
        }
        let p = f
            .path
            .as_ref()
            .expect("documents are read before blobs are stored");
        std::fs::read(p).map_err(ArchiveError::io("read", p.to_path_buf()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::Compression;
    use std::io::Write;

    fn archive(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        build(&mut b);
        b.into_inner().unwrap()
    }

    fn file(b: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]) {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        // set_path refuses `..`: write the raw name, as a hostile archive would.
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_cksum();
        b.append(&h, data).unwrap();
    }

    fn link(b: &mut tar::Builder<Vec<u8>>, kind: tar::EntryType, name: &str, target: &str) {
        let mut h = tar::Header::new_gnu();
        h.set_size(0);
        h.set_entry_type(kind);
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.as_old_mut().linkname[..target.len()].copy_from_slice(target.as_bytes());
        h.set_cksum();
        b.append(&h, io::empty()).unwrap();
    }

    #[test]
    fn files_links_and_their_resolution_stay_inside() {
        let dir = tempfile::tempdir().unwrap();
        let data = archive(|b| {
            file(b, "./a/layer.tar", b"layer");
            link(b, tar::EntryType::Symlink, "b/layer.tar", "../a/layer.tar");
            link(b, tar::EntryType::Symlink, "abs", "/a/layer.tar");
            link(b, tar::EntryType::Link, "hard", "a/layer.tar");
            link(b, tar::EntryType::Symlink, "out", "../../etc/passwd");
            link(b, tar::EntryType::Symlink, "loop", "loop");
        });
        let s = read(data.as_slice(), dir.path()).unwrap();
        for name in [
            "a/layer.tar",
            "/a/layer.tar",
            "b/layer.tar",
            "abs",
            "hard",
            "b/../a/layer.tar",
        ] {
            let i = s
                .find("test", name)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(s.files[i].digest, Digest::of(b"layer"), "{name}");
        }
        let e = s.find("the config", "out").unwrap_err().to_string();
        assert!(
            e.contains("outside the archive") && e.contains("the config"),
            "{e}"
        );
        let e = s.find("x", "../a/layer.tar").unwrap_err().to_string();
        assert!(e.contains("outside the archive"), "{e}");
        assert!(s
            .find("x", "loop")
            .unwrap_err()
            .to_string()
            .contains("too many"));
        assert!(s
            .find("x", "a")
            .unwrap_err()
            .to_string()
            .contains("directory"));
        assert!(s
            .find("x", "nope")
            .unwrap_err()
            .to_string()
            .contains("no such file"));
        // Dropped: no temp file stays.
        drop(s);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn hostile_entries_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        for (data, want) in [
            (archive(|b| file(b, "../evil", b"x")), "climbs above"),
            (archive(|b| file(b, "a/../../evil", b"x")), "climbs above"),
            (
                archive(|b| link(b, tar::EntryType::Link, "h", "../etc/shadow")),
                "climbs above",
            ),
            (
                archive(|b| link(b, tar::EntryType::Link, "h", "later")),
                "no such file earlier",
            ),
            (
                archive(|b| link(b, tar::EntryType::Char, "dev", "")),
                "character device",
            ),
            (
                archive(|b| {
                    file(b, "blobs/sha256/0000000000000000000000000000000000000000000000000000000000000000", b"x")
                }),
                "its content has digest",
            ),
        ] {
            let e = read(data.as_slice(), dir.path()).err().unwrap().to_string();
            assert!(e.contains(want), "{e}");
            assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "{e}");
        }
        let mut data = archive(|b| file(b, "big", &[7u8; 4096]));
        data.truncate(1024);
        let e = read(data.as_slice(), dir.path()).err().unwrap();
        assert!(matches!(e, ArchiveError::Stream(_)), "{e}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn compressed_archives_are_read_through() {
        let dir = tempfile::tempdir().unwrap();
        let plain = archive(|b| file(b, "manifest.json", b"[]"));
        for c in [Compression::Gzip, Compression::Zstd] {
            let mut w = c.writer(Vec::new()).unwrap();
            w.write_all(&plain).unwrap();
            let data = w.finish().unwrap();
            let s = read(data.as_slice(), dir.path()).unwrap();
            assert_eq!(s.read("x", "manifest.json").unwrap(), b"[]");
        }
    }
}
