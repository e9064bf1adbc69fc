//! memory: limit, reservation, swap, swappiness, OOM killer, kernel TCP.

use std::path::Path;

use oci_spec::runtime::LinuxMemory;

use crate::error::Error;
use crate::fsio;

pub fn is_set(m: &LinuxMemory) -> bool {
    #[allow(deprecated)]
    let kernel = m.kernel();
    m.limit().is_some()
        || m.reservation().is_some()
        || m.swap().is_some()
        || kernel.is_some()
        || m.kernel_tcp().is_some()
        || m.swappiness().is_some()
        || m.disable_oom_killer() == Some(true)
}

/// A memory limit that the kernel refused with EBUSY because usage is above it: say how much
/// is in use, which is what the user needs to pick a new value.
fn explain_busy(dir: &Path, err: Error, usage_file: &str, peak_file: &str) -> Error {
    if err.raw_os_error() != Some(libc::EBUSY) {
        return err;
    }
    let usage = fsio::read_u64_or_zero(dir, usage_file).unwrap_or(0);
    let peak = fsio::read_u64_or_zero(dir, peak_file).unwrap_or(0);
    match err {
        Error::Write {
            controller,
            value,
            path,
            err: source,
        } => Error::Write {
            controller,
            value: format!("{value} (current usage {usage}, peak usage {peak})"),
            path,
            err: source,
        },
        other => other,
    }
}

fn write_limit_v1(dir: &Path, value: i64) -> Result<(), Error> {
    if value == 0 {
        return Ok(());
    }
    fsio::write(dir, "memory.limit_in_bytes", &value.to_string())
        .map_err(|e| explain_busy(dir, e, "memory.usage_in_bytes", "memory.max_usage_in_bytes"))
}

fn write_swap_v1(dir: &Path, value: i64) -> Result<(), Error> {
    if value == 0 {
        return Ok(());
    }
    fsio::write(dir, "memory.memsw.limit_in_bytes", &value.to_string())
}

/// `checkBeforeUpdate`: refuse a limit below current usage instead of letting the kernel
/// reclaim or OOM-kill to get under it.
fn check_usage(dir: &Path, m: &LinuxMemory, usage_file: &str) -> Result<(), Error> {
    let Some(limit) = m
        .limit()
        .filter(|l| *l > 0 && m.check_before_update() == Some(true))
    else {
        return Ok(());
    };
    let usage = fsio::read_u64(dir, usage_file)?;
    if (limit as u64) < usage {
        return Err(Error::InvalidValue {
            what: format!("memory limit {limit} for {}", dir.display()),
            reason: format!("it is below the current usage of {usage} bytes"),
        });
    }
    Ok(())
}

pub fn set_v1(dir: &Path, m: &LinuxMemory) -> Result<(), Error> {
    check_usage(dir, m, "memory.usage_in_bytes")?;
    let limit = m.limit().unwrap_or(0);
    let mut swap = m.swap().unwrap_or(0);
    // Unlimited memory with swap unspecified means unlimited swap too (runc, docker).
    if limit == -1 && swap == 0 && fsio::exists(dir, "memory.memsw.limit_in_bytes") {
        swap = -1;
    }
    // memsw must stay >= limit at every step, so the order of the two writes depends on
    // whether the limits grow or shrink.
    let mut done = false;
    if limit != 0 && swap != 0 {
        let current = fsio::read_u64(dir, "memory.limit_in_bytes")?;
        if swap == -1 || current < swap as u64 {
            write_swap_v1(dir, swap)?;
            write_limit_v1(dir, limit)?;
            done = true;
        }
    }
    if !done {
        write_limit_v1(dir, limit)?;
        write_swap_v1(dir, swap)?;
    }
    if let Some(r) = m.reservation().filter(|r| *r != 0) {
        fsio::write(dir, "memory.soft_limit_in_bytes", &r.to_string())?;
    }
    #[allow(deprecated)]
    if m.kernel().is_some() {
        // Kernel memory limits are gone from kernels >= 5.16 (the file ignores writes or is
        // absent); runc ignores the field too.
        tracing::debug!("ignoring linux.resources.memory.kernel: not supported by the kernel");
    }
    if let Some(t) = m.kernel_tcp().filter(|t| *t != 0) {
        fsio::write(dir, "memory.kmem.tcp.limit_in_bytes", &t.to_string())?;
    }
    if m.disable_oom_killer() == Some(true) {
        fsio::write(dir, "memory.oom_control", "1")?;
    }
    if let Some(s) = m.swappiness() {
        // u64::MAX is -1 as the spec's signed JSON value, meaning "unset".
        if s != u64::MAX {
            if s > 100 {
                return Err(Error::InvalidValue {
                    what: format!("memory swappiness {s}"),
                    reason: "valid range is 0-100".into(),
                });
            }
            fsio::write(dir, "memory.swappiness", &s.to_string())?;
        }
    }
    Ok(())
}

/// v2 spells "unlimited" as "max" and 0 as "not given".
fn v2_value(v: i64) -> Option<String> {
    match v {
        0 => None,
        -1 => Some("max".into()),
        v => Some(v.to_string()),
    }
}

/// The spec's swap is memory+swap (v1's memsw); v2's memory.swap.max is swap alone.
pub fn swap_to_v2(swap: i64, limit: i64) -> Result<i64, Error> {
    if limit == -1 && swap == 0 {
        return Ok(-1);
    }
    if swap == -1 || swap == 0 {
        return Ok(swap);
    }
    let invalid = |reason: &str| Error::InvalidValue {
        what: format!("memory swap {swap} with memory limit {limit}"),
        reason: reason.into(),
    };
    if limit == 0 || limit == -1 {
        return Err(invalid("a swap limit needs a memory limit"));
    }
    if limit < 0 {
        return Err(invalid("the memory limit is negative"));
    }
    if swap < limit {
        return Err(invalid("memory+swap must be >= the memory limit"));
    }
    Ok(swap - limit)
}

pub fn set_v2(dir: &Path, m: &LinuxMemory) -> Result<(), Error> {
    check_usage(dir, m, "memory.current")?;
    let limit = m.limit().unwrap_or(0);
    let swap_spec = m.swap().unwrap_or(0);
    let swap = swap_to_v2(swap_spec, limit)?;
    let swap_str = match v2_value(swap) {
        // memory and memory+swap equal: no swap at all.
        None if swap_spec > 0 => Some("0".to_string()),
        other => other,
    };
    if let Some(s) = swap_str {
        match fsio::write(dir, "memory.swap.max", &s) {
            Ok(()) => {}
            // Without swap accounting there is nothing to make unlimited or to disable.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) && (s == "max" || s == "0") => {}
            Err(e) => return Err(e),
        }
    }
    if let Some(v) = v2_value(limit) {
        fsio::write(dir, "memory.max", &v)
            .map_err(|e| explain_busy(dir, e, "memory.current", "memory.peak"))?;
    }
    if let Some(v) = m.reservation().and_then(v2_value) {
        fsio::write(dir, "memory.low", &v)?;
    }
    if m.swappiness().is_some() || m.disable_oom_killer() == Some(true) {
        tracing::debug!("memory swappiness and disableOOMKiller have no cgroup v2 equivalent");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swap_conversion_follows_runc() {
        assert_eq!(swap_to_v2(0, -1).unwrap(), -1);
        assert_eq!(swap_to_v2(-1, 100).unwrap(), -1);
        assert_eq!(swap_to_v2(300, 100).unwrap(), 200);
        assert_eq!(swap_to_v2(0, 100).unwrap(), 0);
        assert!(swap_to_v2(50, 100).is_err());
        assert!(swap_to_v2(50, 0).is_err());
    }

    /// A memory cgroup of a host without swap accounting: no memsw files (a directory
    /// standing in for it, since this host may account swap).
    #[test]
    fn a_swap_limit_without_swap_accounting_says_so() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("memory.limit_in_bytes"),
            "9223372036854771712",
        )
        .unwrap();
        let m: LinuxMemory =
            serde_json::from_value(serde_json::json!({"limit": 1048576, "swap": 2097152})).unwrap();
        let e = set_v1(dir.path(), &m).unwrap_err().to_string();
        assert!(e.contains("needs swap accounting"), "{e}");
        assert!(e.contains("memory.memsw.limit_in_bytes"), "{e}");
    }
}
