//! Stats for the Task API and the OOM-kill check at exit, both through berth-cgroups on the
//! cgroups the init is in (found from /proc/<pid>/cgroup, never from the bundle: the runtime
//! may have resolved a relative cgroupsPath against its own cgroup).

use std::sync::Arc;

use anyhow::{Context, Result};
use berth_cgroups::{CgroupManager, Layout};
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::Message;

use crate::metrics;
use crate::oom::{OnOom, OomCounter, OomWatch};

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

/// The cgroups of the current run of the init, found once when it is created: Stats and
/// the OOM-kill counter (watched live, and checked once more at exit) both use them.
/// Cloned by Stats only for the length of a request; the watch stops when the last clone of
/// this run is dropped (a restart or Delete replaces it).
#[derive(Clone)]
pub struct InitCgroup {
    pid: u32,
    cgroup: CgroupManager,
    /// None without a readable memory cgroup.
    oom: Option<Arc<OomCounter>>,
    _watch: Option<Arc<OomWatch>>,
}

impl InitCgroup {
    /// None when the process's cgroups cannot be found. `on_oom` runs once per OOM kill
    /// noticed in them, while the init runs or when it exits.
    pub fn new(pid: u32, on_oom: OnOom) -> Option<InitCgroup> {
        let cgroup = CgroupManager::of_process(pid).ok()?;
        let oom = OomCounter::new(cgroup.clone(), on_oom).map(Arc::new);
        let watch = oom.as_ref().and_then(|c| match OomWatch::start(c.clone()) {
            Ok(w) => Some(Arc::new(w)),
            Err(e) => {
                // Not fatal: an OOM kill of the init is still found when it exits.
                tracing::warn!("no live OOM notices: {e:#}");
                None
            }
        });
        Some(InitCgroup {
            pid,
            cgroup,
            oom,
            _watch: watch,
        })
    }

    pub fn metrics(&self) -> Result<Any> {
        metrics_of(&self.cgroup, self.pid)
    }

    /// Report OOM kills not reported yet and say whether the kernel's OOM killer struck
    /// in the cgroup during this run. Asked when the init has exited, before the runtime
    /// deletes the cgroup.
    pub fn oom_at_exit(&self) -> bool {
        self.oom.as_ref().is_some_and(|c| c.check_at_exit())
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
        assert!(InitCgroup::new(u32::MAX - 1, Box::new(|| {})).is_none());
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
        match InitCgroup::new(std::process::id(), Box::new(|| {})) {
            Some(c) => {
                assert!(!c.oom_at_exit());
                assert!(
                    c.oom.is_some() || !has_memory,
                    "no counter despite a memory cgroup"
                );
            }
            None => assert!(!has_memory, "no cgroups despite a memory cgroup"),
        }
    }
}
