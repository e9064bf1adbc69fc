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
    res.map_err(|source| Error::Write {
        controller: controller_of(file).to_string(),
        value: value.to_string(),
        path,
        source,
    })
}

pub fn read(dir: &Path, file: &str) -> Result<String, Error> {
    read_path(&dir.join(file))
}

pub fn read_path(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Like `read`, but a missing file is `None`: many stats files exist only with some kernel
/// options (swap accounting, bfq), and their absence is not an error.
pub fn read_optional(dir: &Path, file: &str) -> Result<Option<String>, Error> {
    let path = dir.join(file);
    match std::fs::read_to_string(&path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Read { path, source }),
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
                source,
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
