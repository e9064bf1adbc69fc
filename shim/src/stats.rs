//! Stats for the Task API and the OOM-kill check at exit, both through berth-cgroups on the
//! cgroups the init is in (found from /proc/<pid>/cgroup, never from the bundle: the runtime
//! may have resolved a relative cgroupsPath against its own cgroup).

use anyhow::{Context, Result};
use berth_cgroups::{CgroupManager, Layout};
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::Message;

use crate::metrics;

/// Type URLs spelled out: the protobuf descriptors would cost heap for the shim's life.
const V1_METRICS: &str = "io.containerd.cgroups.v1.Metrics";
const V2_METRICS: &str = "io.containerd.cgroups.v2.Metrics";

fn pack<M: Message>(type_url: &str, m: &M) -> Result<Any> {
    Ok(Any {
        type_url: type_url.to_string(),
        value: m.write_to_bytes().context("encode metrics")?,
        ..Default::default()
    })
}

/// The metrics of `pid`'s cgroups, looked up now.
pub fn collect(pid: u32) -> Result<Any> {
    let cgroup = CgroupManager::of_process(pid).with_context(|| format!("cgroups of pid {pid}"))?;
    metrics_of(&cgroup, pid)
}

/// Like containerd-shim-runc-v2, v2 metrics only on a cgroup2-only host; a hybrid host
/// reports its v1 controllers as v1 metrics.
fn metrics_of(cgroup: &CgroupManager, pid: u32) -> Result<Any> {
    let stats = cgroup
        .stats()
        .with_context(|| format!("stats of pid {pid}'s cgroups"))?;
    if cgroup.layout() == Layout::V2 {
        pack(V2_METRICS, &metrics::v2(&stats))
    } else {
        pack(V1_METRICS, &metrics::v1(&stats))
    }
}

/// The cgroups of the current run of the init, found once when it starts (Stats and the
/// OOM check at exit both use it, instead of re-reading /proc and the mount table).
#[derive(Debug, Clone)]
pub struct InitCgroup {
    pid: u32,
    cgroup: CgroupManager,
    /// The OOM-kill count when the run started; None without a readable memory cgroup.
    oom_at_start: Option<u64>,
}

impl InitCgroup {
    /// None when the process's cgroups cannot be found.
    pub fn new(pid: u32) -> Option<InitCgroup> {
        let cgroup = CgroupManager::of_process(pid).ok()?;
        let oom_at_start = cgroup.oom_kill_count().ok();
        Some(InitCgroup {
            pid,
            cgroup,
            oom_at_start,
        })
    }

    pub fn metrics(&self) -> Result<Any> {
        metrics_of(&self.cgroup, self.pid)
    }

    /// Whether the kernel's OOM killer struck in the cgroup since `new`. Asked when the
    /// init has exited, before the runtime deletes the cgroup.
    pub fn oom_fired(&self) -> bool {
        self.oom_at_start
            .is_some_and(|at_start| self.cgroup.oom_kill_count().is_ok_and(|n| n > at_start))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim_protos::cgroups::metrics as v1;
    use containerd_shim_protos::cgroups_v2::metrics as v2;

    #[test]
    fn own_process_has_stats_of_the_hosts_kind() {
        let any = collect(std::process::id()).unwrap();
        let host = berth_cgroups::detect().unwrap();
        if host.layout == Layout::V2 {
            assert_eq!(any.type_url, V2_METRICS);
            let m = v2::Metrics::parse_from_bytes(&any.value).unwrap();
            assert!(m.cpu.usage_usec > 0, "{m:?}");
        } else {
            assert_eq!(any.type_url, V1_METRICS);
            let m = v1::Metrics::parse_from_bytes(&any.value).unwrap();
            if host.v1_mount("cpuacct").is_some() {
                assert!(m.cpu.usage.total > 0, "{m:?}");
            }
        }
    }

    #[test]
    fn a_missing_process_is_an_error_naming_it() {
        let e = format!("{:#}", collect(u32::MAX - 1).unwrap_err());
        assert!(
            e.contains("pid 4294967294") && e.contains("/proc/4294967294/cgroup"),
            "{e}"
        );
        assert!(InitCgroup::new(u32::MAX - 1).is_none());
    }

    #[test]
    fn oom_counter_of_a_live_process_has_not_fired() {
        let host = berth_cgroups::detect().unwrap();
        let has_memory = host.v1_mount("memory").is_some()
            || (host.layout == Layout::V2
                && CgroupManager::of_process(std::process::id())
                    .ok()
                    .and_then(|c| c.unified_path().map(|d| d.join("memory.events").exists()))
                    .unwrap_or(false));
        match InitCgroup::new(std::process::id()) {
            Some(c) => {
                assert!(!c.oom_fired());
                assert!(
                    c.oom_at_start.is_some() || !has_memory,
                    "no counter despite a memory cgroup"
                );
            }
            None => assert!(!has_memory, "no cgroups despite a memory cgroup"),
        }
    }
}
