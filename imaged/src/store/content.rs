//! Content-addressed blobs under `content/blobs/sha256/<hex>`.
//!
//! A blob is written to `content/ingest/<hex>` and renamed into place only once its size and
//! digest are verified, so a blob present under its name is always whole and right. A
//! partial ingest file is kept when a download stops (an error, or `kill -9` of the daemon):
//! the next attempt continues from its length with an HTTP Range request.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::digest::{Digest, Hasher};

#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    #[error("blob {digest}: {op} {}: {source}", .path.display())]
    Io {
        digest: String,
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("blob {expected}: the content has digest {actual}; discarded")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("blob {digest}: expected {expected} bytes, got {actual}; discarded")]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    #[error("blob {0} is not in the content store")]
    NotFound(Digest),
}

type Result<T> = std::result::Result<T, ContentError>;

fn io_err(
    digest: &Digest,
    op: &'static str,
    path: &Path,
) -> impl FnOnce(io::Error) -> ContentError {
    let (digest, path) = (digest.to_string(), path.to_path_buf());
    move |source| ContentError::Io {
        digest,
        op,
        path,
        source,
    }
}

#[derive(Debug, Clone)]
pub struct ContentStore {
    blobs: PathBuf,
    ingest: PathBuf,
}

impl ContentStore {
    /// The store under `root/content`, created if missing.
    pub fn open(root: &Path) -> io::Result<ContentStore> {
        let blobs = root.join("content/blobs/sha256");
        let ingest = root.join("content/ingest");
        fs::create_dir_all(&blobs)?;
        fs::create_dir_all(&ingest)?;
        Ok(ContentStore { blobs, ingest })
    }

    pub fn path(&self, d: &Digest) -> PathBuf {
        self.blobs.join(d.hex())
    }

    /// The size of a stored blob, or None when it is absent.
    pub fn size(&self, d: &Digest) -> Option<u64> {
        fs::metadata(self.path(d)).ok().map(|m| m.len())
    }

    pub fn contains(&self, d: &Digest) -> bool {
        self.size(d).is_some()
    }

    pub fn open_blob(&self, d: &Digest) -> Result<File> {
        let p = self.path(d);
        File::open(&p).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => ContentError::NotFound(d.clone()),
            _ => io_err(d, "open", &p)(e),
        })
    }

    pub fn read(&self, d: &Digest) -> Result<Vec<u8>> {
        let mut f = self.open_blob(d)?;
        let mut v = Vec::new();
        f.read_to_end(&mut v)
            .map_err(io_err(d, "read", &self.path(d)))?;
        Ok(v)
    }

    /// Store small content held in memory (a manifest, a config); returns its digest.
    pub fn put(&self, data: &[u8]) -> Result<Digest> {
        let d = Digest::of(data);
        if self.contains(&d) {
            return Ok(d);
        }
        // A file of its own, not the shared ingest name: two pulls may store one config at
        // once, and each rename then puts the same bytes in place.
        let mut tmp = tempfile::NamedTempFile::new_in(&self.ingest).map_err(io_err(
            &d,
            "create",
            &self.ingest,
        ))?;
        tmp.write_all(data)
            .and_then(|_| tmp.as_file().sync_all())
            .map_err(io_err(&d, "write", tmp.path()))?;
        self.adopt(tmp, &d)?;
        Ok(d)
    }

    /// Begin or continue writing blob `d`. The returned writer starts at the end of what an
    /// earlier attempt left (see [`Ingest::offset`]); call [`Ingest::restart`] when the
    /// source cannot resume.
    pub fn ingest(&self, d: &Digest, expected_size: Option<u64>) -> Result<Ingest> {
        let path = self.ingest.join(d.hex());
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err(d, "open ingest", &path))?;
        // The hash of what is already there, so that the digest covers the whole blob.
        let mut hasher = Hasher::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut offset = 0u64;
        loop {
            let n = file
                .read(&mut buf)
                .map_err(io_err(d, "read ingest", &path))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            offset += n as u64;
        }
        let mut w = Ingest {
            digest: d.clone(),
            expected_size,
            path,
            blobs: self.blobs.clone(),
            file,
            hasher,
            offset,
        };
        if expected_size.is_some_and(|s| offset > s) {
            w.restart()?;
        }
        Ok(w)
    }

    /// Bytes held by partial downloads, and their number.
    pub fn partial_usage(&self) -> (u64, usize) {
        let mut total = (0, 0);
        for e in fs::read_dir(&self.ingest).into_iter().flatten().flatten() {
            if let Ok(m) = e.metadata() {
                total.0 += m.len();
                total.1 += 1;
            }
        }
        total
    }

    /// Every stored blob (for garbage collection and disk usage).
    pub fn list(&self) -> Vec<(Digest, u64)> {
        let mut v = Vec::new();
        for e in fs::read_dir(&self.blobs).into_iter().flatten().flatten() {
            let name = e.file_name();
            let Some(d) = name
                .to_str()
                .and_then(|h| format!("sha256:{h}").parse::<Digest>().ok())
            else {
                continue;
            };
            if let Ok(m) = e.metadata() {
                v.push((d, m.len()));
            }
        }
        v
    }

    pub fn remove(&self, d: &Digest) -> Result<()> {
        let p = self.path(d);
        match fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(d, "remove", &p)(e)),
        }
    }

    /// Where blobs are written before they have a name: a file made here can be renamed
    /// into the store ([`ContentStore::adopt`]).
    pub fn ingest_dir(&self) -> &Path {
        &self.ingest
    }

    /// Move a finished file, whose digest the caller computed while writing it, into the
    /// store under that digest.
    pub fn adopt(&self, file: tempfile::NamedTempFile, d: &Digest) -> Result<()> {
        let dest = self.path(d);
        file.persist(&dest)
            .map(drop)
            .map_err(|e| io_err(d, "rename", &dest)(e.error))
    }

    /// [`ContentStore::adopt`] for a temp file already written, synced and closed.
    pub fn adopt_path(&self, file: tempfile::TempPath, d: &Digest) -> Result<()> {
        let dest = self.path(d);
        file.persist(&dest)
            .map_err(|e| io_err(d, "rename", &dest)(e.error))
    }

    /// Remove the temp files of writes that a crash cut short (partial downloads, named by
    /// their digest, stay for a resume). Returns how many went.
    pub fn sweep_temps(&self) -> usize {
        let mut n = 0;
        for e in fs::read_dir(&self.ingest).into_iter().flatten().flatten() {
            let name = e.file_name();
            let is_partial = name
                .to_str()
                .is_some_and(|h| format!("sha256:{h}").parse::<Digest>().is_ok());
            if !is_partial && fs::remove_file(e.path()).is_ok() {
                n += 1;
            }
        }
        n
    }

    /// Where a partial download of `d` is kept.
    pub fn partial_path(&self, d: &Digest) -> PathBuf {
        self.ingest.join(d.hex())
    }

    /// Drop a partial download.
    pub fn remove_partial(&self, d: &Digest) {
        let _ = fs::remove_file(self.ingest.join(d.hex()));
    }
}

/// A blob being written: hashed as it goes, verified and renamed into place by
/// [`Ingest::commit`]. Dropped without commit, the partial file stays for a later resume.
pub struct Ingest {
    digest: Digest,
    expected_size: Option<u64>,
    path: PathBuf,
    blobs: PathBuf,
    file: File,
    hasher: Hasher,
    offset: u64,
}

impl Ingest {
    /// How many bytes an earlier attempt already wrote: the source should continue there.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// Start again from byte 0 (the source cannot resume, or what was kept is unusable).
    pub fn restart(&mut self) -> Result<()> {
        self.file
            .set_len(0)
            .and_then(|_| self.file.seek(SeekFrom::Start(0)).map(drop))
            .map_err(io_err(&self.digest, "truncate ingest", &self.path))?;
        self.hasher = Hasher::new();
        self.offset = 0;
        Ok(())
    }

    /// Verify size and digest, flush to disk and move the blob into place. A mismatch
    /// removes the partial file: its content is wrong, not merely incomplete.
    pub fn commit(mut self) -> Result<u64> {
        self.file
            .flush()
            .map_err(io_err(&self.digest, "flush", &self.path))?;
        if let Some(expected) = self.expected_size.filter(|s| *s != self.offset) {
            let _ = fs::remove_file(&self.path);
            return Err(ContentError::SizeMismatch {
                digest: self.digest,
                expected,
                actual: self.offset,
            });
        }
        let actual = std::mem::take(&mut self.hasher).finish();
        if actual != self.digest {
            let _ = fs::remove_file(&self.path);
            return Err(ContentError::DigestMismatch {
                expected: self.digest,
                actual,
            });
        }
        self.file
            .sync_all()
            .map_err(io_err(&self.digest, "sync", &self.path))?;
        let dest = self.blobs.join(self.digest.hex());
        fs::rename(&self.path, &dest).map_err(io_err(&self.digest, "rename", &dest))?;
        Ok(self.offset)
    }
}

impl Write for Ingest {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.offset += n as u64;
        if self.expected_size.is_some_and(|s| self.offset > s) {
            return Err(io::Error::other(format!(
                "blob {}: more than the {} bytes announced",
                self.digest,
                self.expected_size.unwrap_or(0)
            )));
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_lands_only_when_verified_and_a_partial_one_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let data = vec![7u8; 3 << 20];
        let d = Digest::of(&data);

        let mut w = store.ingest(&d, Some(data.len() as u64)).unwrap();
        assert_eq!(w.offset(), 0);
        w.write_all(&data[..1 << 20]).unwrap();
        drop(w); // interrupted
        assert!(!store.contains(&d));
        assert_eq!(store.partial_usage(), (1 << 20, 1));

        let mut w = store.ingest(&d, Some(data.len() as u64)).unwrap();
        assert_eq!(w.offset(), 1 << 20);
        w.write_all(&data[1 << 20..]).unwrap();
        assert_eq!(w.commit().unwrap(), data.len() as u64);
        assert_eq!(store.read(&d).unwrap(), data);
        assert_eq!(store.partial_usage().1, 0);
    }

    #[test]
    fn wrong_content_is_discarded_naming_the_digest() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let d = Digest::of(b"right");
        let mut w = store.ingest(&d, None).unwrap();
        w.write_all(b"wrong").unwrap();
        let e = w.commit().unwrap_err().to_string();
        assert!(e.contains(&d.to_string()) && e.contains("discarded"), "{e}");
        assert!(!store.contains(&d));
        assert_eq!(store.partial_usage().1, 0);

        let mut w = store.ingest(&d, Some(3)).unwrap();
        assert!(w.write_all(b"right").is_err());
    }
}
