//! Snapshot directories for overlayfs: `snapshots/<n>/fs` holds one unpacked layer (a lower
//! directory) or, for an active snapshot, the container's changes (the upper directory) with
//! `snapshots/<n>/work` beside it. Numbers, not digests, name them: a mount option string
//! holds at most one page, and short names let about 200 layers fit where digests would
//! stop at 50.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// What a container's root needs mounted: overlayfs with these directories, or a plain bind
/// of `upper` when the image has no layers at all.
#[derive(Debug, Clone, PartialEq)]
pub struct OverlayMount {
    /// Top first, as overlayfs wants them.
    pub lowers: Vec<PathBuf>,
    pub upper: PathBuf,
    pub work: PathBuf,
}

/// The longest data string one mount(2) call takes: a page.
pub const MAX_MOUNT_DATA: usize = 4095;

impl OverlayMount {
    /// The `lowerdir=…,upperdir=…,workdir=…` option string of mount(2), or None when the
    /// paths do not fit in one page: the caller then mounts with fsconfig and one
    /// `lowerdir+` per layer (Linux 6.8 and later), or relative to `snapshots/` as
    /// [`OverlayMount::relative_options`] gives them.
    pub fn options(&self) -> Option<String> {
        let s = self.option_string(|p| p.display().to_string());
        (s.len() <= MAX_MOUNT_DATA).then_some(s)
    }

    /// The same options with paths relative to `base` (the `snapshots` directory), for a
    /// mount made from there: `lowerdir=12/fs:7/fs,…`.
    pub fn relative_options(&self, base: &Path) -> String {
        self.option_string(|p| p.strip_prefix(base).unwrap_or(p).display().to_string())
    }

    fn option_string(&self, show: impl Fn(&Path) -> String) -> String {
        if self.lowers.is_empty() {
            return String::new();
        }
        let lowers: Vec<String> = self.lowers.iter().map(|p| show(p)).collect();
        // A renamed directory (redirect_dir) or a metadata-only copy-up (metacopy) would
        // leave part of a change in the lower layers, where `commit` cannot see it.
        format!(
            "lowerdir={},upperdir={},workdir={},redirect_dir=off,metacopy=off",
            lowers.join(":"),
            show(&self.upper),
            show(&self.work)
        )
    }
}

#[derive(Debug, Clone)]
pub struct Snapshots {
    root: PathBuf,
}

impl Snapshots {
    pub fn open(root: &Path) -> io::Result<Snapshots> {
        let root = root.join("snapshots");
        fs::create_dir_all(&root)?;
        Ok(Snapshots { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn dir(&self, n: u64) -> PathBuf {
        self.root.join(n.to_string())
    }

    pub fn fs(&self, n: u64) -> PathBuf {
        self.dir(n).join("fs")
    }

    pub fn work(&self, n: u64) -> PathBuf {
        self.dir(n).join("work")
    }

    /// A fresh directory to unpack a layer into, outside the numbered ones until it is
    /// complete and [`Snapshots::commit_temp`] moves it.
    pub fn temp(&self) -> io::Result<tempfile::TempDir> {
        let tmp = tempfile::Builder::new()
            .prefix("tmp-")
            .tempdir_in(&self.root)?;
        fs::create_dir(tmp.path().join("fs"))?;
        Ok(tmp)
    }

    /// Give a finished temp directory its number.
    pub fn commit_temp(&self, tmp: tempfile::TempDir, n: u64) -> io::Result<()> {
        let path = tmp.keep();
        fs::rename(&path, self.dir(n))
    }

    /// Make the upper and work directories of an active snapshot.
    pub fn create_active(&self, n: u64) -> io::Result<()> {
        fs::create_dir(self.dir(n))?;
        fs::create_dir(self.fs(n))?;
        fs::create_dir(self.work(n))
    }

    pub fn remove(&self, n: u64) -> io::Result<()> {
        match fs::remove_dir_all(self.dir(n)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Numbered directories and leftover temp directories, for the sweep at start.
    pub fn on_disk(&self) -> io::Result<(Vec<u64>, Vec<PathBuf>)> {
        let mut numbered = Vec::new();
        let mut other = Vec::new();
        for e in fs::read_dir(&self.root)? {
            let e = e?;
            match e.file_name().to_str().and_then(|s| s.parse::<u64>().ok()) {
                Some(n) => numbered.push(n),
                None => other.push(e.path()),
            }
        }
        Ok((numbered, other))
    }
}

/// Bytes a directory tree takes on disk (allocated blocks; hard links counted once), as
/// `du` counts, so that what `system df` reports is what removal frees.
pub fn disk_usage(dir: &Path) -> u64 {
    use std::collections::HashSet;
    use std::os::unix::fs::MetadataExt;
    let mut seen = HashSet::new();
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            if m.nlink() > 1 && !m.is_dir() && !seen.insert((m.dev(), m.ino())) {
                continue;
            }
            total += m.blocks() * 512;
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_options_fit_one_page_or_say_so() {
        let base = PathBuf::from("/var/lib/berth/snapshots");
        let m = |n: u64| OverlayMount {
            lowers: (1..=n)
                .rev()
                .map(|i| base.join(i.to_string()).join("fs"))
                .collect(),
            upper: base.join("999/fs"),
            work: base.join("999/work"),
        };
        let small = m(3);
        assert_eq!(
            small.options().unwrap(),
            "lowerdir=/var/lib/berth/snapshots/3/fs:/var/lib/berth/snapshots/2/fs:/var/lib/berth/snapshots/1/fs,upperdir=/var/lib/berth/snapshots/999/fs,workdir=/var/lib/berth/snapshots/999/work,redirect_dir=off,metacopy=off"
        );
        let big = m(200);
        assert!(big.options().is_none());
        let rel = big.relative_options(&base);
        assert!(rel.len() <= MAX_MOUNT_DATA, "{}", rel.len());
        assert!(rel.starts_with("lowerdir=200/fs:199/fs:"), "{rel}");
    }
}
