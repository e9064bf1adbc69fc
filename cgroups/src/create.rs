//! Making and removing the container's cgroup directories.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::Error;
use crate::fsio;

fn mkdir(path: &Path) -> Result<bool, Error> {
    match std::fs::create_dir(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
        Err(source) => Err(Error::Create {
            path: path.to_path_buf(),
            err: source,
        }),
    }
}

/// The directories from just below `mountpoint` down to `dir`, top first.
fn levels(mountpoint: &Path, dir: &Path) -> Vec<PathBuf> {
    let rel = dir.strip_prefix(mountpoint).unwrap_or(Path::new(""));
    let mut cur = mountpoint.to_path_buf();
    rel.components()
        .map(|c| {
            cur.push(c);
            cur.clone()
        })
        .collect()
}

/// A v1 hierarchy. A new cpuset cgroup starts with empty cpus and mems, and no task can join
/// it until they are filled, so each new level copies its parent's.
pub fn v1_dir(mountpoint: &Path, dir: &Path, cpuset: bool) -> Result<(), Error> {
    if dir.exists() {
        return Ok(());
    }
    for level in levels(mountpoint, dir) {
        let created = mkdir(&level)?;
        if cpuset && created {
            let parent = level.parent().unwrap_or(mountpoint);
            for file in ["cpuset.cpus", "cpuset.mems"] {
                if fsio::read(&level, file)?.trim().is_empty() {
                    let value = fsio::read(parent, file)?;
                    fsio::write(&level, file, value.trim())?;
                }
            }
        }
    }
    Ok(())
}

/// The v2 hierarchy: every level enables, for the level below, all the controllers it has, so
/// the container's cgroup gets every controller the host offers (as runc does). A level with
/// processes in it refuses (no internal processes rule); that only costs the controllers.
pub fn v2_dir(mountpoint: &Path, dir: &Path) -> Result<(), Error> {
    // Existing: its parents enabled their controllers when it was made (exec, update).
    if dir.exists() {
        return Ok(());
    }
    let mut parent = mountpoint.to_path_buf();
    for level in levels(mountpoint, dir) {
        enable_controllers(&parent)?;
        mkdir(&level)?;
        parent = level;
    }
    Ok(())
}

fn enable_controllers(dir: &Path) -> Result<(), Error> {
    let available = fsio::read(dir, "cgroup.controllers")?;
    let enabled = fsio::read(dir, "cgroup.subtree_control")?;
    let missing: Vec<&str> = available
        .split_whitespace()
        .filter(|c| !enabled.split_whitespace().any(|e| e == *c))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let all = missing
        .iter()
        .map(|c| format!("+{c}"))
        .collect::<Vec<_>>()
        .join(" ");
    if let Err(e) = fsio::write(dir, "cgroup.subtree_control", &all) {
        tracing::debug!("enabling all controllers failed ({e}); trying one by one");
        for c in missing {
            if let Err(e) = fsio::write(dir, "cgroup.subtree_control", &format!("+{c}")) {
                tracing::debug!("{e}");
            }
        }
    }
    Ok(())
}

fn has_tasks(dir: &Path) -> bool {
    fsio::read_optional(dir, "cgroup.procs")
        .ok()
        .flatten()
        .is_some_and(|p| !p.trim().is_empty())
}

/// Removes `dir` and any cgroups below it, children first. rmdir fails with EBUSY for a short
/// while after the last task exits (the kernel frees it asynchronously), so retry briefly.
pub fn remove_tree(dir: &Path) -> Result<(), Error> {
    for child in fsio::child_dirs(dir)? {
        remove_tree(&child)?;
    }
    let mut delay = Duration::from_millis(2);
    for attempt in 0.. {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            // With tasks still inside, EBUSY is final: fail now rather than wait.
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempt < 8 && !has_tasks(dir) => {
                std::thread::sleep(delay);
                delay *= 2;
            }
            Err(source) => {
                return Err(Error::Remove {
                    path: dir.to_path_buf(),
                    err: source,
                })
            }
        }
    }
    unreachable!("the retry loop returns")
}
