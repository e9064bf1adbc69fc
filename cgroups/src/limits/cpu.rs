//! cpu and cpuset: shares/weight, CFS quota and period, burst, idle, realtime, cpus, mems.

use std::path::Path;

use oci_spec::runtime::LinuxCpu;

use crate::error::Error;
use crate::fsio;

pub fn is_set(c: &LinuxCpu) -> bool {
    c.shares().is_some_and(|s| s != 0)
        || c.quota().is_some_and(|q| q != 0)
        || c.period().is_some_and(|p| p != 0)
        || c.burst().is_some()
        || c.idle().is_some()
        || c.realtime_runtime().is_some_and(|r| r != 0)
        || c.realtime_period().is_some_and(|p| p != 0)
}

pub fn cpuset_is_set(c: &LinuxCpu) -> bool {
    c.cpus().as_deref().is_some_and(|s| !s.is_empty())
        || c.mems().as_deref().is_some_and(|s| !s.is_empty())
}

pub fn set_v1(dir: &Path, c: &LinuxCpu) -> Result<(), Error> {
    if let Some(shares) = c.shares().filter(|s| *s != 0) {
        fsio::write(dir, "cpu.shares", &shares.to_string())?;
        // The kernel clamps out-of-range shares silently; report the clamp like runc does.
        let applied = fsio::read_u64(dir, "cpu.shares")?;
        if shares > applied {
            return Err(Error::InvalidValue {
                what: format!("cpu shares {shares}"),
                reason: format!("the maximum allowed cpu-shares is {applied}"),
            });
        } else if shares < applied {
            return Err(Error::InvalidValue {
                what: format!("cpu shares {shares}"),
                reason: format!("the minimum allowed cpu-shares is {applied}"),
            });
        }
    }
    let quota = c.quota().unwrap_or(0);
    let mut retry_period = None;
    if let Some(period) = c.period().filter(|p| *p != 0) {
        let p = period.to_string();
        if let Err(e) = fsio::write(dir, "cpu.cfs_period_us", &p) {
            // A shorter period can break the parent's quota until the new quota is in
            // place: retry after writing the quota.
            if e.raw_os_error() != Some(libc::EINVAL) || quota == 0 {
                return Err(e);
            }
            retry_period = Some(p);
        }
    }
    if let Some(burst) = c.burst() {
        fsio::write(dir, "cpu.cfs_burst_us", &burst.to_string())?;
    }
    if quota != 0 {
        fsio::write(dir, "cpu.cfs_quota_us", &quota.to_string())?;
        if let Some(p) = retry_period {
            fsio::write(dir, "cpu.cfs_period_us", &p)?;
        }
    }
    if let Some(idle) = c.idle() {
        fsio::write(dir, "cpu.idle", &idle.to_string())?;
    }
    if let Some(p) = c.realtime_period().filter(|p| *p != 0) {
        fsio::write(dir, "cpu.rt_period_us", &p.to_string())?;
    }
    if let Some(r) = c.realtime_runtime().filter(|r| *r != 0) {
        fsio::write(dir, "cpu.rt_runtime_us", &r.to_string())?;
    }
    Ok(())
}

/// cpu.shares (2..262144) onto cpu.weight (1..10000), linearly, as runc and crun convert.
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    1 + (shares.saturating_sub(2) * 9999) / 262142
}

pub fn set_v2(dir: &Path, c: &LinuxCpu) -> Result<(), Error> {
    if c.realtime_runtime().is_some_and(|r| r != 0) || c.realtime_period().is_some_and(|p| p != 0) {
        return Err(Error::InvalidValue {
            what: "cpu realtimeRuntime/realtimePeriod".into(),
            reason: "realtime scheduling limits do not exist in cgroup v2".into(),
        });
    }
    if let Some(idle) = c.idle() {
        fsio::write(dir, "cpu.idle", &idle.to_string())?;
    }
    if let Some(shares) = c.shares().filter(|s| *s != 0) {
        fsio::write(dir, "cpu.weight", &shares_to_weight(shares).to_string())?;
    }
    let quota = c.quota().unwrap_or(0);
    let period = c.period().unwrap_or(0);
    if quota != 0 || period != 0 {
        let mut max = if quota > 0 {
            quota.to_string()
        } else {
            "max".to_string()
        };
        if period != 0 {
            max.push_str(&format!(" {period}"));
        }
        fsio::write(dir, "cpu.max", &max)?;
    }
    if let Some(burst) = c.burst() {
        fsio::write(dir, "cpu.max.burst", &burst.to_string())?;
    }
    Ok(())
}

/// Same file names in v1 and v2.
pub fn set_cpuset(dir: &Path, c: &LinuxCpu) -> Result<(), Error> {
    if let Some(cpus) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
        write_cpuset(dir, "cpus", cpus)?;
    }
    if let Some(mems) = c.mems().as_deref().filter(|s| !s.is_empty()) {
        write_cpuset(dir, "mems", mems)?;
    }
    Ok(())
}

/// The kernel refuses a CPU or memory node the parent cgroup does not have with a bare
/// "Invalid argument" or "Math result not representable": say what the host offers.
fn write_cpuset(dir: &Path, what: &str, value: &str) -> Result<(), Error> {
    let file = format!("cpuset.{what}");
    fsio::write(dir, &file, value).map_err(|e| {
        let offered = dir.parent().and_then(|p| {
            [
                format!("cpuset.effective_{what}"),
                format!("cpuset.{what}.effective"),
                file.clone(),
            ]
            .iter()
            .find_map(|f| fsio::read_optional(p, f).ok().flatten())
        });
        match (e.raw_os_error(), offered) {
            (Some(libc::EINVAL | libc::ERANGE), Some(o)) if !o.trim().is_empty() => {
                Error::InvalidValue {
                    what: format!("{file} {value:?} for {}", dir.display()),
                    reason: format!("this host offers {what} {} here", o.trim()),
                }
            }
            _ => e,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_convert_to_weight_like_runc() {
        assert_eq!(shares_to_weight(0), 0);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262144), 10000);
    }
}
