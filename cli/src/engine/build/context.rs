//! The build context and the other trees COPY reads from (a stage's or an image's root).
//! Sources are resolved with `openat2(RESOLVE_IN_ROOT)` on the tree, so neither `..` nor a
//! symlink can reach a file outside it; `.dockerignore` hides what it excludes, as if the
//! file were not there. The content digest of what a COPY takes is part of its cache key.

use std::fs;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use sha2::{Digest, Sha256};

use super::fsops::{self, Attrs, Root};
use crate::build::dockerignore::DockerIgnore;

/// A tree sources are taken from.
pub struct Tree {
    pub dir: PathBuf,
    ignore: Option<DockerIgnore>,
}

/// The context of a build: a tree with the `.dockerignore` applied, and the temporary
/// directory it lives in when it came on stdin.
pub struct Context {
    pub tree: Tree,
    _tmp: Option<tempfile::TempDir>,
}

/// One resolved source: where it is on the host (inside its tree), and its path in the tree.
#[derive(Debug, Clone)]
pub struct Source {
    pub host: PathBuf,
    pub rel: String,
}

/// Why a source could not be used; the executor adds the file and line.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("forbidden path outside the build context: {0}")]
    Outside(String),
    #[error("file not found in build context or excluded by .dockerignore: stat {0}: file does not exist")]
    NotFound(String),
    #[error("no source files were specified")]
    NoMatch(String),
    #[error("{0}")]
    Io(#[from] io::Error),
}

impl Context {
    /// A directory on disk, with its `.dockerignore`.
    pub fn dir(dir: &Path) -> Result<Context, String> {
        let meta = fs::metadata(dir).map_err(|e| {
            format!(
                "unable to prepare context: path {:?} not found: {e}",
                dir.display().to_string()
            )
        })?;
        if !meta.is_dir() {
            return Err(format!(
                "unable to prepare context: context must be a directory: {}",
                dir.display()
            ));
        }
        let dir = fs::canonicalize(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Self::with_dir(dir, None)
    }

    fn with_dir(dir: PathBuf, tmp: Option<tempfile::TempDir>) -> Result<Context, String> {
        let ignore = match fs::read_to_string(dir.join(".dockerignore")) {
            Ok(text) => {
                Some(DockerIgnore::parse(&text).map_err(|e| format!(".dockerignore: {e}"))?)
            }
            Err(_) => None,
        };
        Ok(Context {
            tree: Tree { dir, ignore },
            _tmp: tmp,
        })
    }

    /// `berth build -`: stdin holds either a tar of the context (plain or gzip), or a
    /// Dockerfile alone (then the context is empty). Returns the context and, for a lone
    /// Dockerfile, its text.
    pub fn stdin(bytes: Vec<u8>, tmp_parent: &Path) -> Result<(Context, Option<String>), String> {
        fs::create_dir_all(tmp_parent).map_err(|e| format!("{}: {e}", tmp_parent.display()))?;
        let tmp = tempfile::Builder::new()
            .prefix("context-")
            .tempdir_in(tmp_parent)
            .map_err(|e| format!("{}: {e}", tmp_parent.display()))?;
        let dir = tmp.path().to_path_buf();
        let gzip = bytes.starts_with(&[0x1f, 0x8b]);
        let tar = bytes.len() > 262 && &bytes[257..262] == b"ustar";
        if gzip || tar {
            let reader: Box<dyn Read> = if gzip {
                Box::new(flate2::read::GzDecoder::new(&bytes[..]))
            } else {
                Box::new(&bytes[..])
            };
            let mut archive = tar::Archive::new(reader);
            archive.set_preserve_permissions(true);
            // tar's unpack refuses `..` and entries that would land outside through a
            // symlink it made before.
            archive
                .unpack(&dir)
                .map_err(|e| format!("unable to read the context from stdin: {e}"))?;
            Ok((Self::with_dir(dir, Some(tmp))?, None))
        } else {
            let text = String::from_utf8(bytes)
                .map_err(|_| "the Dockerfile on stdin is not UTF-8 text".to_string())?;
            Ok((Self::with_dir(dir, Some(tmp))?, Some(text)))
        }
    }

    /// The Dockerfile `name` in the context, read even when `.dockerignore` excludes it
    /// (Docker sends it anyway; COPY still cannot see it).
    pub fn read_file(&self, name: &str) -> Option<String> {
        fs::read_to_string(self.tree.dir.join(clean(name)?)).ok()
    }
}

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// `path` cleaned relative to the tree's root; `..` that climbs out is an error.
fn clean(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

impl Tree {
    /// A root filesystem (a stage's or an image's), without ignore rules.
    pub fn root(dir: PathBuf) -> Tree {
        Tree { dir, ignore: None }
    }

    fn excluded(&self, rel: &str) -> bool {
        !rel.is_empty() && self.ignore.as_ref().is_some_and(|i| i.is_excluded(rel))
    }

    /// The sources a COPY names: a path or a glob, in the tree.
    pub fn resolve(&self, source: &str, from_context: bool) -> Result<Vec<Source>, SourceError> {
        let Some(rel) = clean(source) else {
            return Err(if from_context {
                SourceError::Outside(source.to_string())
            } else {
                SourceError::NotFound(source.to_string())
            });
        };
        if !has_glob(&rel) {
            return Ok(vec![self.resolve_one(&rel)?]);
        }
        let pattern = DockerIgnore::parse(&rel)
            .ok()
            .and_then(|p| p.patterns().first().cloned())
            .ok_or_else(|| SourceError::NoMatch(source.to_string()))?;
        let depth = rel.split('/').count();
        let mut out = Vec::new();
        self.glob_walk(&self.dir.clone(), "", depth, &pattern, &mut out)?;
        if out.is_empty() {
            return Err(SourceError::NoMatch(source.to_string()));
        }
        out.sort_by(|a, b| a.rel.cmp(&b.rel));
        Ok(out)
    }

    fn glob_walk(
        &self,
        dir: &Path,
        rel: &str,
        depth: usize,
        pattern: &crate::build::dockerignore::Pattern,
        out: &mut Vec<Source>,
    ) -> io::Result<()> {
        if depth == 0 {
            return Ok(());
        }
        for e in fs::read_dir(dir)?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let r = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            if self.excluded(&r) {
                continue;
            }
            if depth == 1 {
                if pattern.matches(&r) {
                    if let Ok(s) = self.resolve_one(&r) {
                        out.push(s);
                    }
                }
            } else if e.file_type()?.is_dir() {
                self.glob_walk(&e.path(), &r, depth - 1, pattern, out)?;
            }
        }
        Ok(())
    }

    /// One path in the tree, symlinks resolved inside it.
    pub fn resolve_one(&self, rel: &str) -> Result<Source, SourceError> {
        let rel = clean(rel).ok_or_else(|| SourceError::Outside(rel.to_string()))?;
        let missing = || SourceError::NotFound(rel.clone());
        if self.excluded(&rel) {
            return Err(missing());
        }
        let dir = fs::File::open(&self.dir)?;
        let path = if rel.is_empty() { "." } else { rel.as_str() };
        let fd = openat2(
            dir.as_fd(),
            path,
            OpenHow::new()
                .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
                .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS),
        )
        .map_err(|_| missing())?;
        // Where the kernel resolved it: inside the tree by construction.
        let host = fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))?;
        if !host.starts_with(&self.dir) {
            return Err(SourceError::Outside(rel));
        }
        let resolved_rel = host
            .strip_prefix(&self.dir)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        if self.excluded(&resolved_rel) {
            return Err(missing());
        }
        Ok(Source {
            host,
            rel: resolved_rel,
        })
    }

    /// A digest of everything `sources` would copy: names, types, modes, owners, contents.
    pub fn digest(&self, sources: &[Source]) -> io::Result<String> {
        let mut h = Sha256::new();
        for s in sources {
            h.update(b"source\0");
            self.digest_entry(&s.host, &s.rel, "", &mut h)?;
        }
        Ok(format!("sha256:{:x}", h.finalize()))
    }

    fn digest_entry(&self, host: &Path, rel: &str, shown: &str, h: &mut Sha256) -> io::Result<()> {
        let m = fs::symlink_metadata(host)?;
        h.update(shown.as_bytes());
        h.update([0]);
        h.update(format!("{:o} {} {} {}\0", m.mode(), m.uid(), m.gid(), m.len()).as_bytes());
        let ft = m.file_type();
        if ft.is_symlink() {
            h.update(fs::read_link(host)?.as_os_str().as_encoded_bytes());
        } else if ft.is_file() {
            let mut f = fs::File::open(host)?;
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = f.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
        } else if ft.is_dir() {
            let mut names: Vec<_> = fs::read_dir(host)?
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            for n in names {
                let r = join(rel, &n);
                if self.excluded(&r) {
                    continue;
                }
                self.digest_entry(&host.join(&n), &r, &join(shown, &n), h)?;
            }
        }
        Ok(())
    }

    /// Copies the tree below `src` (a directory) into `dest`, skipping what is excluded.
    pub fn copy_dir_contents(
        &self,
        src: &Source,
        root: &Root,
        dest: &std::os::fd::OwnedFd,
        dest_path: &str,
        attrs: Attrs,
    ) -> io::Result<()> {
        for e in fs::read_dir(&src.host)?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let child = Source {
                host: e.path(),
                rel: join(&src.rel, &name),
            };
            if self.excluded(&child.rel) {
                continue;
            }
            self.copy_entry(&child, root, dest, dest_path, &name, attrs)?;
        }
        Ok(())
    }

    /// Copies one entry (recursively for a directory) to `name` in `dir`. Files keep their
    /// mode unless `--chmod`; everything is owned by root unless `--chown`, as in Docker.
    pub fn copy_entry(
        &self,
        src: &Source,
        root: &Root,
        dir: &std::os::fd::OwnedFd,
        dir_path: &str,
        name: &str,
        attrs: Attrs,
    ) -> io::Result<()> {
        let m = fs::symlink_metadata(&src.host)?;
        let owner = attrs.owner.unwrap_or((0, 0));
        let mode = attrs.chmod.unwrap_or(m.permissions().mode() & 0o7777);
        let ft = m.file_type();
        if ft.is_symlink() {
            fsops::symlink(dir, name, &fs::read_link(&src.host)?, owner)
        } else if ft.is_dir() {
            let sub = fsops::make_dir_in(root, dir, dir_path, name, mode, owner)?;
            let sub_path = format!("{}/{name}", dir_path.trim_end_matches('/'));
            self.copy_dir_contents(src, root, &sub, &sub_path, attrs)
        } else if ft.is_file() {
            let mut f = fs::File::open(&src.host)?;
            fsops::write_file(dir, name, &mut f, mode, owner).map(|_| ())
        } else {
            // Devices, fifos and sockets are not copied (Docker skips sockets too).
            Ok(())
        }
    }
}

fn join(a: &str, b: &str) -> String {
    if a.is_empty() {
        b.to_string()
    } else {
        format!("{a}/{b}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_never_leave_the_tree() {
        let d = tempfile::tempdir().unwrap();
        let ctx = d.path().join("ctx");
        fs::create_dir_all(ctx.join("sub")).unwrap();
        fs::write(ctx.join("a.txt"), "a").unwrap();
        fs::write(ctx.join("sub/b.txt"), "b").unwrap();
        fs::write(d.path().join("secret"), "s").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", ctx.join("abs")).unwrap();
        std::os::unix::fs::symlink("../secret", ctx.join("rel")).unwrap();
        fs::write(ctx.join(".dockerignore"), "sub/b.txt\n").unwrap();
        let c = Context::dir(&ctx).unwrap();
        assert!(matches!(
            c.tree.resolve("../secret", true),
            Err(SourceError::Outside(_))
        ));
        // Symlinks resolve inside the context: neither reaches the host's file.
        assert!(matches!(
            c.tree.resolve("abs", true),
            Err(SourceError::NotFound(_))
        ));
        assert!(matches!(
            c.tree.resolve("rel", true),
            Err(SourceError::NotFound(_))
        ));
        assert!(matches!(
            c.tree.resolve("sub/b.txt", true),
            Err(SourceError::NotFound(_))
        ));
        let got = c.tree.resolve("*.txt", true).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].rel, "a.txt");
        let d1 = c.tree.digest(&c.tree.resolve(".", true).unwrap()).unwrap();
        fs::write(ctx.join("sub/b.txt"), "changed but ignored").unwrap();
        let d2 = c.tree.digest(&c.tree.resolve(".", true).unwrap()).unwrap();
        assert_eq!(d1, d2);
        fs::write(ctx.join("a.txt"), "changed").unwrap();
        let d3 = c.tree.digest(&c.tree.resolve(".", true).unwrap()).unwrap();
        assert_ne!(d1, d3);
    }
}
