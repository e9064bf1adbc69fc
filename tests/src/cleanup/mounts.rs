//! Reading the mount table and detaching what is under a test's dir.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use nix::mount::{umount2, MntFlags};

use super::CleanupReport;

/// One line of /proc/self/mountinfo, the parts clean-up needs.
pub(super) struct Mount {
    pub point: PathBuf,
    pub fstype: String,
    /// Per-superblock options; for cgroup v1 they name the controllers.
    pub super_options: Vec<String>,
}

/// The mount table as the kernel lists it for this process.
pub(super) fn mounts() -> Vec<Mount> {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    info.lines()
        .filter_map(|line| {
            let point = line.split(' ').nth(4)?;
            // After " - ": fstype, source, super options.
            let mut tail = line.split_once(" - ")?.1.split(' ');
            let fstype = tail.next()?;
            let super_options = tail.nth(1).unwrap_or("");
            Some(Mount {
                point: PathBuf::from(unescape(point)),
                fstype: fstype.to_string(),
                super_options: super_options.split(',').map(str::to_string).collect(),
            })
        })
        .collect()
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let v = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    mounts()
        .into_iter()
        .map(|m| m.point)
        .filter(|p| p.starts_with(dir))
        .collect()
}

/// Detaches every mount under `dir`, deepest first, repeating for stacked
/// mounts and for mounts that propagation brought back.
pub(super) fn unmount_under(dir: &Path, report: &mut CleanupReport) {
    for _ in 0..16 {
        let mut mounts = mounts_under(dir);
        if mounts.is_empty() {
            return;
        }
        mounts.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for m in &mounts {
            let _ = umount2(m, MntFlags::MNT_DETACH);
        }
    }
    for m in mounts_under(dir) {
        report.note(format!("mount {} could not be detached", m.display()));
    }
}

/// Removes `dir` after detaching its mounts, and refuses while any mount is
/// left: deleting through a leftover bind mount would delete the mount's
/// source, which may be anything on the host.
pub(crate) fn remove_tree(dir: &Path) -> Result<(), String> {
    let mut report = CleanupReport::default();
    unmount_under(dir, &mut report);
    if let Some(m) = mounts_under(dir).first() {
        return Err(format!(
            "{}: not removed, {} is still mounted",
            dir.display(),
            m.display()
        ));
    }
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("{}: remove: {e}", dir.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape(r"/tmp/a\040b"), "/tmp/a b");
        assert_eq!(unescape(r"/tmp/back\134slash"), r"/tmp/back\slash");
        assert_eq!(unescape(r"/tmp/\04"), r"/tmp/\04");
    }
}
