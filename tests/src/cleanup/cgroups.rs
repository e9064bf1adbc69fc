//! Cgroups: those named with a test's prefix in every mounted hierarchy, and
//! those left empty by the processes clean-up killed.

use std::collections::BTreeSet;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use super::mounts::{mounts, Mount};
use super::processes::kill_all;
use super::{matches_prefix, CleanupReport, SETTLE};

fn hierarchies() -> Vec<Mount> {
    let mut found: Vec<Mount> = mounts()
        .into_iter()
        .filter(|m| m.fstype == "cgroup" || m.fstype == "cgroup2")
        .collect();
    found.sort_by(|a, b| a.point.cmp(&b.point));
    found.dedup_by(|a, b| a.point == b.point);
    found
}

/// Cgroups named with the prefix in every mounted hierarchy (v1 and v2),
/// outermost matches only: their subtrees go with them.
pub(super) fn find(prefix: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for hierarchy in hierarchies() {
        let mut stack = vec![hierarchy.point];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                let path = entry.path();
                if matches_prefix(&entry.file_name().to_string_lossy(), prefix) {
                    found.push(path);
                } else {
                    stack.push(path);
                }
            }
        }
    }
    found
}

/// Every cgroup directory in the subtree, children before parents.
fn subtree_post_order(top: &Path) -> Vec<PathBuf> {
    let mut order = Vec::new();
    let mut stack = vec![top.to_path_buf()];
    while let Some(dir) = stack.pop() {
        if let Ok(entries) = fs::read_dir(&dir) {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(entry.path());
                }
            }
        }
        order.push(dir);
    }
    order.reverse();
    order
}

/// Frozen tasks do not act on SIGKILL until thawed.
pub(super) fn thaw(cgroups: &[PathBuf]) {
    for top in cgroups {
        for cg in subtree_post_order(top) {
            let _ = fs::write(cg.join("freezer.state"), "THAWED");
            let _ = fs::write(cg.join("cgroup.freeze"), "0");
        }
    }
}

pub(super) fn pids(top: &Path) -> BTreeSet<i32> {
    subtree_post_order(top)
        .iter()
        .filter_map(|cg| fs::read_to_string(cg.join("cgroup.procs")).ok())
        .flat_map(|procs| {
            procs
                .lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect()
}

pub(super) fn remove(cgroups: &[PathBuf], report: &mut CleanupReport) {
    for top in cgroups {
        // Anything that entered after the first sweep (a late fork) goes now.
        let late = pids(top);
        if !late.is_empty() {
            kill_all(&late, report);
        }
        for cg in subtree_post_order(top) {
            if let Err(e) = rmdir_retrying(&cg) {
                report.note(format!("cgroup {}: rmdir: {e}", cg.display()));
            }
        }
    }
}

/// rmdir of a cgroup fails with EBUSY until the kernel has finished tearing
/// down the last task that left it.
fn rmdir_retrying(cg: &Path) -> std::io::Result<()> {
    let deadline = Instant::now() + SETTLE;
    loop {
        match fs::remove_dir(cg) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) if Instant::now() < deadline && e.raw_os_error() == Some(libc::EBUSY) => {
                thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e),
        }
    }
}

/// The cgroup directories `pid` is in, one per hierarchy, from
/// /proc/PID/cgroup: `0::/path` is cgroup2, `N:cpu,cpuacct:/path` the v1
/// hierarchy mounted with those controllers (or `name=systemd`).
fn cgroups_of(pid: i32, hierarchies: &[Mount]) -> Vec<PathBuf> {
    let Ok(text) = fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
        return Vec::new();
    };
    let mut dirs = Vec::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let hierarchy = if controllers.is_empty() {
            hierarchies.iter().find(|h| h.fstype == "cgroup2")
        } else {
            let first = controllers.split(',').next().unwrap_or("");
            hierarchies
                .iter()
                .find(|h| h.fstype == "cgroup" && h.super_options.iter().any(|o| o == first))
        };
        if let Some(h) = hierarchy {
            let rel = path.trim_start_matches('/');
            if !rel.is_empty() {
                dirs.push(h.point.join(rel));
            }
        }
    }
    dirs
}

/// The cgroups holding `pids`, except those this process is in.
pub(super) fn holding(pids: &BTreeSet<i32>) -> BTreeSet<PathBuf> {
    let hierarchies = hierarchies();
    let own: BTreeSet<PathBuf> = cgroups_of(std::process::id() as i32, &hierarchies)
        .into_iter()
        .collect();
    pids.iter()
        .flat_map(|&pid| cgroups_of(pid, &hierarchies))
        .filter(|cg| !own.iter().any(|o| o.starts_with(cg)))
        .collect()
}

/// Removes those of `cgroups` that are now empty leaves. rmdir refuses a
/// cgroup with tasks or children, so a cgroup shared with anything still
/// alive stays; deepest first, so a container's dir goes before its parent
/// is considered.
pub(super) fn remove_emptied(cgroups: &BTreeSet<PathBuf>) {
    let mut ordered: Vec<&PathBuf> = cgroups.iter().collect();
    ordered.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for cg in ordered {
        if is_empty_leaf(cg) {
            let _ = rmdir_retrying(cg);
        }
    }
}

/// No tasks and no child cgroups. Checked first because rmdir of a busy
/// cgroup fails with the same EBUSY that a just-emptied one gives briefly.
fn is_empty_leaf(cg: &Path) -> bool {
    let no_tasks = fs::read_to_string(cg.join("cgroup.procs")).is_ok_and(|p| p.trim().is_empty());
    let no_children = fs::read_dir(cg).is_ok_and(|entries| {
        !entries
            .flatten()
            .any(|e| e.file_type().is_ok_and(|t| t.is_dir()))
    });
    no_tasks && no_children
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_cgroups_resolve_to_existing_dirs() {
        let hierarchies = hierarchies();
        for dir in cgroups_of(std::process::id() as i32, &hierarchies) {
            assert!(dir.is_dir(), "{} does not exist", dir.display());
        }
    }
}
