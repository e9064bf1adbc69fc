//! What the host offers, asked before a test relies on it.
//!
//! Machines of one kind still differ (see MACHINE-NOTES): one disk runs BFQ and another
//! mq-deadline, swap accounting and the RT group scheduler are kernel options, huge page
//! sizes and the number of CPUs vary, and a session's cgroup may be nested. A test that
//! touches any of these asks here first. Where the host has the feature, the test checks that
//! it works; where it has not, the test checks that the runtime's error names the host's
//! reason. Every probe only reads the kernel's own files.
//!
//! | feature | probe | tests that ask |
//! |---|---|---|
//! | blkio/io weight (BFQ, CFQ, blk-iocost) | [`io_weight_file`] | cgroups `host_layout`, `runtime_cgroups` |
//! | swap accounting (`memory.memsw.*`, `memory.swap.max`) | [`swap_accounting`] | cgroups `host_layout`, `runtime_cgroups` |
//! | RT group scheduler (`cpu.rt_runtime_us`) | [`rt_group_sched`] | cgroups `unified`, `host_layout` |
//! | huge page sizes | [`hugepage_sizes`] | cgroups `host_layout`, `unified`, `runtime_cgroups` |
//! | CPUs and memory nodes | [`first_cpu`], [`first_mem`], [`cpu_count`] | cgroups `host_layout`, `runtime_cgroups` |
//! | CAP_SYS_RESOURCE and other bounding-set capabilities | [`in_bounding_set`] | `runtime_process` |
//! | cgroup2 controllers | [`cgroup2_controllers`] | cgroups `unified` |
//! | net_cls / net_prio, any v1 controller | [`v1_controller`] | cgroups `host_layout` |

use std::fs;
use std::path::{Path, PathBuf};

/// The weight file a cgroup directory offers: CFQ's `blkio.weight` or BFQ's
/// `blkio.bfq.weight` on v1, `io.bfq.weight` (BFQ) or `io.weight` (blk-iocost) on v2. None on a
/// host whose disks use mq-deadline, kyber or none without blk-iocost.
pub fn io_weight_file(cgroup_dir: &Path) -> Option<&'static str> {
    [
        "blkio.bfq.weight",
        "blkio.weight",
        "io.bfq.weight",
        "io.weight",
    ]
    .into_iter()
    .find(|f| cgroup_dir.join(f).exists())
}

/// Whether the memory cgroup directory accounts swap (v1 `memory.memsw.limit_in_bytes`, v2
/// `memory.swap.max`; the v2 root has neither file, so pass a child).
pub fn swap_accounting(memory_dir: &Path) -> bool {
    memory_dir.join("memory.memsw.limit_in_bytes").exists()
        || memory_dir.join("memory.swap.max").exists()
}

/// Whether the kernel has the RT group scheduler (v1 `cpu.rt_runtime_us`).
pub fn rt_group_sched() -> bool {
    v1_controller("cpu").is_some_and(|d| d.join("cpu.rt_runtime_us").exists())
}

/// The huge page sizes the kernel offers, spelled as cgroup files spell them ("2MB", "1GB").
pub fn hugepage_sizes() -> Vec<String> {
    let Ok(rd) = fs::read_dir("/sys/kernel/mm/hugepages") else {
        return Vec::new();
    };
    let mut sizes: Vec<(u64, String)> = rd
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let kb: u64 = name
                .strip_prefix("hugepages-")?
                .strip_suffix("kB")?
                .parse()
                .ok()?;
            let label = match kb {
                kb if kb >= 1 << 20 => format!("{}GB", kb >> 20),
                kb if kb >= 1 << 10 => format!("{}MB", kb >> 10),
                kb => format!("{kb}KB"),
            };
            Some((kb, label))
        })
        .collect();
    sizes.sort();
    sizes.into_iter().map(|(_, l)| l).collect()
}

/// The mount point of the v1 hierarchy holding `controller`, from /proc/self/mountinfo.
pub fn v1_controller(controller: &str) -> Option<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        let mut r = right.split_whitespace();
        if r.next()? != "cgroup" {
            return None;
        }
        let opts = r.nth(1)?;
        let point = left.split_whitespace().nth(4)?;
        opts.split(',')
            .any(|o| o == controller)
            .then(|| PathBuf::from(point))
    })
}

/// The cgroup2 mount point, if any (`/sys/fs/cgroup` on v2, `/sys/fs/cgroup/unified` on
/// hybrid hosts).
pub fn cgroup2_mount() -> Option<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        let point = left.split_whitespace().nth(4)?;
        (right.split_whitespace().next()? == "cgroup2").then(|| PathBuf::from(point))
    })
}

/// The controllers the cgroup2 root offers (`cgroup.controllers`); empty without cgroup2.
pub fn cgroup2_controllers() -> Vec<String> {
    cgroup2_mount()
        .and_then(|m| fs::read_to_string(m.join("cgroup.controllers")).ok())
        .map(|s| s.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

/// The cpuset directory that a cgroup created at the top of the hierarchy inherits from.
fn cpuset_root() -> Option<PathBuf> {
    v1_controller("cpuset")
        .or_else(|| cgroup2_mount().filter(|_| cgroup2_controllers().iter().any(|c| c == "cpuset")))
}

/// The first entry of a cpuset list ("0-3,8" -> "0").
fn first_of(list: &str) -> Option<String> {
    let first = list.trim().split(',').next()?.split('-').next()?.trim();
    (!first.is_empty()).then(|| first.to_string())
}

fn cpuset_value(files: &[&str]) -> Option<String> {
    let root = cpuset_root()?;
    files
        .iter()
        .find_map(|f| fs::read_to_string(root.join(f)).ok())
        .and_then(|s| first_of(&s))
}

/// The first CPU a top-level cgroup may use: "0" on most hosts, not on one whose CPU 0 is
/// offline or kept out of the root cpuset.
pub fn first_cpu() -> String {
    cpuset_value(&[
        "cpuset.effective_cpus",
        "cpuset.cpus.effective",
        "cpuset.cpus",
    ])
    .unwrap_or_else(|| "0".into())
}

/// The first memory node a top-level cgroup may use.
pub fn first_mem() -> String {
    cpuset_value(&[
        "cpuset.effective_mems",
        "cpuset.mems.effective",
        "cpuset.mems",
    ])
    .unwrap_or_else(|| "0".into())
}

/// How many CPUs this process may run on.
pub fn cpu_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Whether capability number `cap` is in this process's bounding set (CAP_SYS_RESOURCE is
/// not on this project's machines).
pub fn in_bounding_set(cap: u32) -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapBnd:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .is_some_and(|mask| mask & (1u64 << cap) != 0)
}

/// Whether the kernel has IPv6 (built in and not disabled at boot): /proc/net/if_inet6
/// exists exactly then. Tests of dual-stack networks need it; its absence is a property of
/// the host (see [`crate::host_lacks`]).
pub fn ipv6() -> bool {
    Path::new("/proc/net/if_inet6").exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpuset_lists_give_their_first_entry() {
        assert_eq!(first_of("0-3,8\n").as_deref(), Some("0"));
        assert_eq!(first_of("2,4").as_deref(), Some("2"));
        assert_eq!(first_of("\n"), None);
    }
}
