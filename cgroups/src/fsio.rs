//! Reading and writing cgroup interface files. Every failure names the file (and the value for
//! writes) because the kernel's errno alone ("Invalid argument") says nothing about which limit
//! it refused.

use std::fs::OpenOptions;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use crate::error::Error;

/// The controller an interface file belongs to: the part of its name before the first dot
/// (`memory.max` -> `memory`).
fn controller_of(file: &str) -> &str {
    match file.split('.').next().unwrap_or(file) {
        // cgroup.procs, cgroup.freeze, ...: the core interface, not a controller.
        "cgroup" => "core",
        c => c,
    }
}

/// Writes `value` to `dir/file` with a single write(2), as the kernel parses each write
/// separately. No O_CREAT: interface files exist or the controller is missing.
pub fn write(dir: &Path, file: &str, value: &str) -> Result<(), Error> {
    let path = dir.join(file);
    let res = OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|mut f| f.write_all(value.as_bytes()));
    res.map_err(|source| match host_lacks(file) {
        Some(reason) if source.kind() == ErrorKind::NotFound => Error::HostLacks {
            controller: controller_of(file).to_string(),
            value: value.to_string(),
            path,
            reason,
        },
        _ => Error::Write {
            controller: controller_of(file).to_string(),
            value: value.to_string(),
            path,
            err: source,
        },
    })
}

/// Why a host has no `file` when its controller is there: these interface files come and go
/// with the disk's I/O scheduler, kernel options and boot flags, so "No such file" alone
/// would send the user looking for a mistake in the config.
fn host_lacks(file: &str) -> Option<String> {
    let reason = match file {
        "blkio.weight" | "blkio.weight_device" | "blkio.bfq.weight" | "blkio.bfq.weight_device" => {
            "blkio weight needs the BFQ or CFQ I/O scheduler: this host has neither \
             blkio.weight nor blkio.bfq.weight (see /sys/block/*/queue/scheduler)"
        }
        "io.bfq.weight" => {
            "per-device io weights need the BFQ I/O scheduler, which no disk on this host uses \
             (see /sys/block/*/queue/scheduler)"
        }
        "io.weight" => {
            "io weight needs the BFQ I/O scheduler or blk-iocost: this host has neither \
             io.bfq.weight nor io.weight"
        }
        "memory.memsw.limit_in_bytes" => {
            "a memory+swap limit needs swap accounting (CONFIG_MEMCG_SWAP, and swapaccount=1 \
             on older kernels): this host has no memory.memsw.limit_in_bytes"
        }
        "memory.swap.max" => {
            "a swap limit needs swap accounting (CONFIG_MEMCG_SWAP): this host has no \
             memory.swap.max"
        }
        "memory.kmem.tcp.limit_in_bytes" => {
            "a kernel TCP memory limit needs kernel memory accounting (CONFIG_MEMCG_KMEM) on \
             cgroup v1: this host has no memory.kmem.tcp.limit_in_bytes"
        }
        "cpu.rt_runtime_us" | "cpu.rt_period_us" => {
            "realtime CPU limits need the RT group scheduler (CONFIG_RT_GROUP_SCHED), which \
             this kernel was built without"
        }
        "cpu.cfs_burst_us" | "cpu.max.burst" => "a CPU burst needs Linux 5.14 or later",
        "cpu.idle" => "cpu idle needs Linux 5.15 or later",
        f if f.starts_with("hugetlb.") => {
            let size = f.split('.').nth(1).unwrap_or("?");
            return Some(format!(
                "this kernel offers no {size} huge pages (see /sys/kernel/mm/hugepages)"
            ));
        }
        _ => return None,
    };
    Some(reason.to_string())
}

pub fn read(dir: &Path, file: &str) -> Result<String, Error> {
    read_path(&dir.join(file))
}

pub fn read_path(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        err: source,
    })
}

/// Like `read`, but a missing file is `None`: many stats files exist only with some kernel
/// options (swap accounting, bfq), and their absence is not an error.
pub fn read_optional(dir: &Path, file: &str) -> Result<Option<String>, Error> {
    let path = dir.join(file);
    match std::fs::read_to_string(&path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Read { path, err: source }),
    }
}

/// The child cgroups of `dir`; none when `dir` itself is gone (removed while a caller walked
/// the tree, which is not an error for any walk).
pub fn child_dirs(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(Error::Read {
                path: dir.to_path_buf(),
                err: source,
            })
        }
    };
    Ok(entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect())
}

fn parse_err(path: PathBuf, reason: impl Into<String>) -> Error {
    Error::Parse {
        path,
        reason: reason.into(),
    }
}

/// Parses a single unsigned number; "max" (v2) and v1's huge "unlimited" value both map to
/// u64::MAX.
pub fn parse_u64(dir: &Path, file: &str, text: &str) -> Result<u64, Error> {
    let t = text.trim();
    if t == "max" {
        return Ok(u64::MAX);
    }
    t.parse::<u64>()
        .map_err(|e| parse_err(dir.join(file), format!("{t:?} is not a number: {e}")))
}

pub fn read_u64(dir: &Path, file: &str) -> Result<u64, Error> {
    let text = read(dir, file)?;
    parse_u64(dir, file, &text)
}

/// Reads a number when the file exists; 0 when it does not.
pub fn read_u64_or_zero(dir: &Path, file: &str) -> Result<u64, Error> {
    match read_optional(dir, file)? {
        Some(text) => parse_u64(dir, file, &text),
        None => Ok(0),
    }
}

/// Parses "key value" lines (memory.stat, cpu.stat, cgroup.events) into pairs; lines that do
/// not fit are skipped because kernels add fields with other shapes over time.
pub fn key_values(text: &str) -> impl Iterator<Item = (&str, u64)> {
    text.lines().filter_map(|line| {
        let mut it = line.split_whitespace();
        let key = it.next()?;
        let value = it.next()?.parse().ok()?;
        Some((key, value))
    })
}

pub fn exists(dir: &Path, file: &str) -> bool {
    dir.join(file).exists()
}
