//! The engine's mount points in a container's upper directory. The engine binds its own
//! `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf` over the image's; when the image has
//! none, the runtime makes empty files to mount on, and overlayfs puts them (and a copy of
//! `/etc`) in the upper directory. Docker makes them in an init layer below the container's
//! own, so they are never part of a commit or a diff; here they are told apart instead: an
//! empty file the layers below lack is a placeholder (what the container writes to those
//! paths goes to the bound file, never to the layer), and a directory that holds nothing
//! else and is either new or an unchanged copy of the one below is only there to hold them.

use std::collections::HashSet;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

/// The placeholders among `paths` (absolute paths in the container) in `upper`, with the
/// directories that only hold them, relative to `upper` without a leading `/`.
pub fn placeholders(upper: &Path, lowers: &[PathBuf], paths: &[String]) -> HashSet<Vec<u8>> {
    let mut skip: HashSet<Vec<u8>> = HashSet::new();
    for p in paths {
        let rel = Path::new(p.trim_start_matches('/'));
        // Only plain relative paths: nothing may lead the check outside the upper.
        if rel.as_os_str().is_empty()
            || rel.components().any(|c| !matches!(c, Component::Normal(_)))
        {
            continue;
        }
        let Ok(m) = fs::symlink_metadata(upper.join(rel)) else {
            continue;
        };
        let empty = (m.is_file() && m.len() == 0) || (m.is_dir() && is_empty_dir(&upper.join(rel)));
        if !empty || below(lowers, rel).is_some() || opaque(&upper.join(rel)) {
            continue;
        }
        skip.insert(rel.as_os_str().as_bytes().to_vec());
        let mut dir = rel.parent();
        while let Some(d) = dir.filter(|d| !d.as_os_str().is_empty()) {
            if skip.contains(d.as_os_str().as_bytes()) || !only_holder(upper, lowers, d, &skip) {
                break;
            }
            skip.insert(d.as_os_str().as_bytes().to_vec());
            dir = d.parent();
        }
    }
    skip
}

/// Whether directory `rel` of `upper` holds nothing but skipped entries and is either new
/// or a copy-up with the owner and mode it has below, not opaque.
fn only_holder(upper: &Path, lowers: &[PathBuf], rel: &Path, skip: &HashSet<Vec<u8>>) -> bool {
    let up = upper.join(rel);
    let Ok(m) = fs::symlink_metadata(&up) else {
        return false;
    };
    if !m.is_dir() || opaque(&up) {
        return false;
    }
    let Ok(entries) = fs::read_dir(&up) else {
        return false;
    };
    for e in entries {
        let Ok(e) = e else { return false };
        let child = rel.join(e.file_name());
        if !skip.contains(child.as_os_str().as_bytes()) {
            return false;
        }
    }
    match below(lowers, rel) {
        // Made by the runtime for the mount point (an image without `/etc`), as Docker's
        // init layer makes it.
        None => true,
        Some(l) => l.is_dir() && l.mode() == m.mode() && l.uid() == m.uid() && l.gid() == m.gid(),
    }
}

fn is_empty_dir(p: &Path) -> bool {
    fs::read_dir(p).is_ok_and(|mut d| d.next().is_none())
}

/// What the layers below have at `rel`, the topmost first.
fn below(lowers: &[PathBuf], rel: &Path) -> Option<fs::Metadata> {
    lowers
        .iter()
        .find_map(|l| fs::symlink_metadata(l.join(rel)).ok())
}

/// An opaque directory hides the layers below: never a mere copy-up.
fn opaque(p: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(p.as_os_str().as_bytes()) else {
        return true;
    };
    ["trusted.overlay.opaque", "user.overlay.opaque"]
        .iter()
        .any(|name| {
            let name = std::ffi::CString::new(*name).expect("no NUL");
            // SAFETY: NUL-terminated path and name; a null buffer of size 0 only asks
            // for the value's length.
            let n = unsafe { libc::lgetxattr(c.as_ptr(), name.as_ptr(), std::ptr::null_mut(), 0) };
            n >= 0
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[&str]) -> HashSet<Vec<u8>> {
        items.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    #[test]
    fn empty_mount_points_and_their_copied_up_dir_are_placeholders() {
        let t = tempfile::tempdir().unwrap();
        let (upper, lower) = (t.path().join("upper"), t.path().join("lower"));
        fs::create_dir_all(lower.join("etc")).unwrap();
        fs::create_dir_all(upper.join("etc")).unwrap();
        fs::write(upper.join("etc/hosts"), "").unwrap();
        fs::write(upper.join("etc/hostname"), "").unwrap();
        let paths = ["/etc/hosts".to_string(), "/etc/hostname".to_string()];
        let got = placeholders(&upper, std::slice::from_ref(&lower), &paths);
        assert_eq!(got, set(&["etc/hosts", "etc/hostname", "etc"]));

        // A file of the container's own beside them keeps `/etc`.
        fs::write(upper.join("etc/motd"), "hi").unwrap();
        let got = placeholders(&upper, std::slice::from_ref(&lower), &paths);
        assert_eq!(got, set(&["etc/hosts", "etc/hostname"]));

        // Content at a mount point is the container's, and so is a file the image has.
        fs::write(upper.join("etc/hosts"), "1.2.3.4 x\n").unwrap();
        fs::write(lower.join("etc/hostname"), "img\n").unwrap();
        assert!(placeholders(&upper, &[lower], &paths).is_empty());
    }
}
