//! Resource usage in the JSON shape of runc's `events --stats` data (runc's events/types.go),
//! so tools parsing runc's output (containerd, docker stats) read ours unchanged. intel_rdt and
//! network_interfaces are left out: neither is a cgroup.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::detect::Layout;
use crate::error::Error;
use crate::fsio;
use crate::paths::CgroupPaths;

fn is_zero(v: &u64) -> bool {
    *v == 0
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub cpu: Cpu,
    pub cpuset: CpuSet,
    pub memory: Memory,
    pub pids: Pids,
    pub blkio: Blkio,
    pub hugetlb: BTreeMap<String, Hugetlb>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Cpu {
    pub usage: CpuUsage,
    pub throttling: Throttling,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub psi: Option<PsiStats>,
}

/// Pressure stall information from a cgroup2 `*.pressure` file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PsiStats {
    pub some: PsiData,
    pub full: PsiData,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PsiData {
    pub avg10: f64,
    pub avg60: f64,
    pub avg300: f64,
    /// Microseconds of stall in total.
    pub total: u64,
}

/// Nanoseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuUsage {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub total: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub percpu: Vec<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub percpu_kernel: Vec<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub percpu_user: Vec<u64>,
    pub kernel: u64,
    pub user: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Throttling {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub periods: u64,
    #[serde(default, rename = "throttledPeriods", skip_serializing_if = "is_zero")]
    pub throttled_periods: u64,
    #[serde(default, rename = "throttledTime", skip_serializing_if = "is_zero")]
    pub throttled_time: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuSet {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cpus: Vec<u16>,
    pub cpu_exclusive: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mems: Vec<u16>,
    pub mem_hardwall: u64,
    pub mem_exclusive: u64,
    pub memory_migrate: u64,
    pub memory_spread_page: u64,
    pub memory_spread_slab: u64,
    pub memory_pressure: u64,
    pub sched_load_balance: u64,
    pub sched_relax_domain_level: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MemoryEntry {
    pub limit: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub usage: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max: u64,
    pub failcnt: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cache: u64,
    pub usage: MemoryEntry,
    pub swap: MemoryEntry,
    pub kernel: MemoryEntry,
    #[serde(rename = "kernelTCP")]
    pub kernel_tcp: MemoryEntry,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub raw: BTreeMap<String, u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub psi: Option<PsiStats>,
    /// Swap alone (v2 memory.swap.*), which `swap` (memory+swap, v1's memsw) cannot be split
    /// back into when a limit is "max". Not in runc's events; containerd's v2 metrics need it.
    #[serde(default, rename = "swapOnly", skip_serializing_if = "Option::is_none")]
    pub swap_only: Option<MemoryEntry>,
    /// v1 memory.oom_control.
    #[serde(
        default,
        rename = "oomControl",
        skip_serializing_if = "Option::is_none"
    )]
    pub oom_control: Option<OomControl>,
    /// v2 memory.events: how often each limit was hit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<MemoryEvents>,
}

/// v1 memory.oom_control.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OomControl {
    pub oom_kill_disable: u64,
    pub under_oom: u64,
    /// Kernels >= 4.13.
    pub oom_kill: u64,
}

/// v2 memory.events counters.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MemoryEvents {
    pub low: u64,
    pub high: u64,
    pub max: u64,
    pub oom: u64,
    pub oom_kill: u64,
    pub oom_group_kill: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Pids {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub current: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub limit: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BlkioEntry {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub major: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub minor: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub op: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub value: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Blkio {
    #[serde(
        default,
        rename = "ioServiceBytesRecursive",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    #[serde(
        default,
        rename = "ioServicedRecursive",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub io_serviced_recursive: Vec<BlkioEntry>,
    #[serde(
        default,
        rename = "ioQueueRecursive",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub io_queued_recursive: Vec<BlkioEntry>,
    #[serde(
        default,
        rename = "ioServiceTimeRecursive",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub io_service_time_recursive: Vec<BlkioEntry>,
    #[serde(
        default,
        rename = "ioWaitTimeRecursive",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub io_wait_time_recursive: Vec<BlkioEntry>,
    #[serde(
        default,
        rename = "ioMergedRecursive",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub io_merged_recursive: Vec<BlkioEntry>,
    #[serde(
        default,
        rename = "ioTimeRecursive",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub io_time_recursive: Vec<BlkioEntry>,
    #[serde(
        default,
        rename = "sectorsRecursive",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub sectors_recursive: Vec<BlkioEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub psi: Option<PsiStats>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Hugetlb {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub usage: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max: u64,
    pub failcnt: u64,
}

/// v1 reports "unlimited" as a page-rounded i64::MAX; runc passes that through unchanged, and
/// so do we. v2's "max" becomes u64::MAX.
fn map_of(text: &str) -> BTreeMap<String, u64> {
    fsio::key_values(text)
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

/// "0-3,5" -> [0, 1, 2, 3, 5].
fn parse_list(text: &str) -> Vec<u16> {
    let mut out = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<u16>(), b.parse::<u16>()) {
                    out.extend(a..=b);
                }
            }
            None => out.extend(part.parse::<u16>().ok()),
        }
    }
    out
}

pub fn collect(paths: &CgroupPaths) -> Result<Stats, Error> {
    let mut s = Stats::default();
    let unified = paths.unified.as_deref();
    let v2 = |c: &str| -> Option<&Path> {
        // On hybrid hosts only controllers that are not in v1 are read from cgroup2.
        let dir = unified?;
        if paths.layout == Layout::V1 || paths.v1.contains_key(c) {
            return None;
        }
        Some(dir)
    };

    if let Some(d) = paths.v1.get("cpuacct") {
        cpuacct_v1(d, &mut s.cpu)?;
    } else if let Some(d) = v2("cpu").filter(|_| paths.layout == Layout::V2) {
        cpu_v2(d, &mut s.cpu)?;
    }
    if let Some(d) = paths.v1.get("cpu") {
        let text = fsio::read_optional(d, "cpu.stat")?.unwrap_or_default();
        throttling_v1(&text, &mut s.cpu.throttling);
    }

    if let Some(d) = paths.v1.get("cpuset") {
        cpuset_v1(d, &mut s.cpuset)?;
    } else if let Some(d) = v2("cpuset") {
        let cpus = fsio::read_optional(d, "cpuset.cpus.effective")?.unwrap_or_default();
        let mems = fsio::read_optional(d, "cpuset.mems.effective")?.unwrap_or_default();
        s.cpuset.cpus = parse_list(&cpus);
        s.cpuset.mems = parse_list(&mems);
    }

    if let Some(d) = paths.v1.get("memory") {
        memory_v1(d, &mut s.memory)?;
    } else if let Some(d) = v2("memory").filter(|d| fsio::exists(d, "memory.current")) {
        memory_v2(d, &mut s.memory)?;
    }

    let pids_dir = paths
        .v1
        .get("pids")
        .map(|p| p.as_path())
        .or_else(|| v2("pids"));
    if let Some(d) = pids_dir.filter(|d| fsio::exists(d, "pids.current")) {
        s.pids.current = fsio::read_u64(d, "pids.current")?;
        let limit = fsio::read_u64(d, "pids.max")?;
        s.pids.limit = if limit == u64::MAX { 0 } else { limit };
    }

    if let Some(d) = paths.v1.get("blkio") {
        blkio_v1(d, &mut s.blkio)?;
    } else if let Some(d) = v2("io") {
        if let Some(text) = fsio::read_optional(d, "io.stat")? {
            io_v2(&text, &mut s.blkio);
        }
    }

    if let Some(d) = paths.v1.get("hugetlb") {
        hugetlb(d, false, &mut s.hugetlb)?;
    } else if let Some(d) = v2("hugetlb") {
        hugetlb(d, true, &mut s.hugetlb)?;
    }

    // PSI is a core cgroup2 feature, there even on hybrid hosts for the unified tree.
    if let Some(d) = unified.filter(|_| paths.layout != Layout::V1) {
        s.cpu.psi = psi(d, "cpu.pressure")?;
        s.memory.psi = psi(d, "memory.pressure")?;
        s.blkio.psi = psi(d, "io.pressure")?;
    }
    Ok(s)
}

/// "some avg10=0.00 avg60=0.00 avg300=0.00 total=0" and a "full ..." line. Absent or
/// unsupported (kernel booted with psi=0: EOPNOTSUPP) is `None`.
fn psi(dir: &Path, file: &str) -> Result<Option<PsiStats>, Error> {
    let text = match fsio::read_optional(dir, file) {
        Ok(Some(t)) => t,
        Ok(None) => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut out = PsiStats::default();
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let data = match f.next() {
            Some("some") => &mut out.some,
            Some("full") => &mut out.full,
            _ => continue,
        };
        for kv in f {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            match k {
                "avg10" => data.avg10 = v.parse().unwrap_or(0.0),
                "avg60" => data.avg60 = v.parse().unwrap_or(0.0),
                "avg300" => data.avg300 = v.parse().unwrap_or(0.0),
                "total" => data.total = v.parse().unwrap_or(0),
                _ => {}
            }
        }
    }
    Ok(Some(out))
}

/// USER_HZ ticks in cpuacct.stat to nanoseconds.
fn ticks_to_ns(ticks: u64) -> u64 {
    // SAFETY: sysconf only reads a constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as u64 } else { 100 };
    ticks.saturating_mul(1_000_000_000 / hz)
}

fn cpuacct_v1(d: &Path, cpu: &mut Cpu) -> Result<(), Error> {
    cpu.usage.total = fsio::read_u64(d, "cpuacct.usage")?;
    let percpu = fsio::read(d, "cpuacct.usage_percpu")?;
    cpu.usage.percpu = percpu
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    let stat = map_of(&fsio::read(d, "cpuacct.stat")?);
    cpu.usage.user = ticks_to_ns(stat.get("user").copied().unwrap_or(0));
    cpu.usage.kernel = ticks_to_ns(stat.get("system").copied().unwrap_or(0));
    // "cpu user system" per line, nanoseconds.
    if let Some(all) = fsio::read_optional(d, "cpuacct.usage_all")? {
        for line in all.lines().skip(1) {
            let f: Vec<u64> = line
                .split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect();
            if f.len() == 3 {
                cpu.usage.percpu_user.push(f[1]);
                cpu.usage.percpu_kernel.push(f[2]);
            }
        }
    }
    Ok(())
}

fn throttling_v1(text: &str, t: &mut Throttling) {
    for (k, v) in fsio::key_values(text) {
        match k {
            "nr_periods" => t.periods = v,
            "nr_throttled" => t.throttled_periods = v,
            "throttled_time" => t.throttled_time = v,
            _ => {}
        }
    }
}

fn cpu_v2(d: &Path, cpu: &mut Cpu) -> Result<(), Error> {
    // cpu.stat is a core file: present even without the cpu controller.
    let text = fsio::read(d, "cpu.stat")?;
    for (k, v) in fsio::key_values(&text) {
        match k {
            "usage_usec" => cpu.usage.total = v * 1000,
            "user_usec" => cpu.usage.user = v * 1000,
            "system_usec" => cpu.usage.kernel = v * 1000,
            "nr_periods" => cpu.throttling.periods = v,
            "nr_throttled" => cpu.throttling.throttled_periods = v,
            "throttled_usec" => cpu.throttling.throttled_time = v * 1000,
            _ => {}
        }
    }
    Ok(())
}

fn cpuset_v1(d: &Path, c: &mut CpuSet) -> Result<(), Error> {
    c.cpus = parse_list(&fsio::read(d, "cpuset.cpus")?);
    c.mems = parse_list(&fsio::read(d, "cpuset.mems")?);
    let num = |f: &str| fsio::read_u64_or_zero(d, f);
    c.cpu_exclusive = num("cpuset.cpu_exclusive")?;
    c.mem_hardwall = num("cpuset.mem_hardwall")?;
    c.mem_exclusive = num("cpuset.mem_exclusive")?;
    c.memory_migrate = num("cpuset.memory_migrate")?;
    c.memory_spread_page = num("cpuset.memory_spread_page")?;
    c.memory_spread_slab = num("cpuset.memory_spread_slab")?;
    c.memory_pressure = num("cpuset.memory_pressure")?;
    c.sched_load_balance = num("cpuset.sched_load_balance")?;
    c.sched_relax_domain_level = fsio::read_optional(d, "cpuset.sched_relax_domain_level")?
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0);
    Ok(())
}

fn memory_entry_v1(d: &Path, prefix: &str) -> Result<MemoryEntry, Error> {
    let f = |name: &str| format!("{prefix}.{name}");
    if !fsio::exists(d, &f("usage_in_bytes")) {
        return Ok(MemoryEntry::default());
    }
    Ok(MemoryEntry {
        usage: fsio::read_u64(d, &f("usage_in_bytes"))?,
        max: fsio::read_u64_or_zero(d, &f("max_usage_in_bytes"))?,
        failcnt: fsio::read_u64_or_zero(d, &f("failcnt"))?,
        limit: fsio::read_u64_or_zero(d, &f("limit_in_bytes"))?,
    })
}

fn memory_v1(d: &Path, m: &mut Memory) -> Result<(), Error> {
    m.raw = map_of(&fsio::read(d, "memory.stat")?);
    m.cache = m.raw.get("cache").copied().unwrap_or(0);
    m.usage = memory_entry_v1(d, "memory")?;
    m.swap = memory_entry_v1(d, "memory.memsw")?;
    m.kernel = memory_entry_v1(d, "memory.kmem")?;
    m.kernel_tcp = memory_entry_v1(d, "memory.kmem.tcp")?;
    if let Some(text) = fsio::read_optional(d, "memory.oom_control")? {
        let mut oc = OomControl::default();
        for (k, v) in fsio::key_values(&text) {
            match k {
                "oom_kill_disable" => oc.oom_kill_disable = v,
                "under_oom" => oc.under_oom = v,
                "oom_kill" => oc.oom_kill = v,
                _ => {}
            }
        }
        m.oom_control = Some(oc);
    }
    Ok(())
}

fn memory_v2(d: &Path, m: &mut Memory) -> Result<(), Error> {
    m.raw = map_of(&fsio::read(d, "memory.stat")?);
    m.cache = m.raw.get("file").copied().unwrap_or(0);
    m.usage.usage = fsio::read_u64(d, "memory.current")?;
    m.usage.limit = fsio::read_u64(d, "memory.max")?;
    m.usage.max = fsio::read_u64_or_zero(d, "memory.peak")?;
    if let Some(text) = fsio::read_optional(d, "memory.events")? {
        let mut ev = MemoryEvents::default();
        for (k, v) in fsio::key_values(&text) {
            match k {
                "low" => ev.low = v,
                "high" => ev.high = v,
                "max" => ev.max = v,
                "oom" => ev.oom = v,
                "oom_kill" => ev.oom_kill = v,
                "oom_group_kill" => ev.oom_group_kill = v,
                _ => {}
            }
        }
        m.usage.failcnt = ev.max;
        m.events = Some(ev);
    }
    // runc reports v2 swap as memory+swap, matching v1's memsw numbers.
    if fsio::exists(d, "memory.swap.current") {
        let swap = fsio::read_u64(d, "memory.swap.current")?;
        let swap_max = fsio::read_u64(d, "memory.swap.max")?;
        let swap_events = fsio::read_optional(d, "memory.swap.events")?;
        m.swap_only = Some(MemoryEntry {
            usage: swap,
            limit: swap_max,
            max: fsio::read_u64_or_zero(d, "memory.swap.peak")?,
            failcnt: swap_events
                .map(|e| map_of(&e).get("max").copied().unwrap_or(0))
                .unwrap_or(0),
        });
        m.swap.usage = swap + m.usage.usage;
        m.swap.limit = if swap_max == u64::MAX || m.usage.limit == u64::MAX {
            u64::MAX
        } else {
            swap_max + m.usage.limit
        };
    }
    Ok(())
}

/// Lines "8:0 Read 4096" ; "Total N" lines are skipped.
fn blkio_entries(text: &str) -> Vec<BlkioEntry> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (major, minor) = f.first()?.split_once(':')?;
            let (op, value) = match f.len() {
                3 => (f[1].to_string(), f[2].parse().ok()?),
                2 => (String::new(), f[1].parse().ok()?),
                _ => return None,
            };
            Some(BlkioEntry {
                major: major.parse().ok()?,
                minor: minor.parse().ok()?,
                op,
                value,
            })
        })
        .collect()
}

fn blkio_v1(d: &Path, b: &mut Blkio) -> Result<(), Error> {
    // CFQ's files give the full picture; with other schedulers only the throttle (or bfq)
    // counters exist, which is what runc falls back to as well.
    let read = |names: &[&str]| -> Result<Vec<BlkioEntry>, Error> {
        for n in names {
            if let Some(t) = fsio::read_optional(d, n)? {
                return Ok(blkio_entries(&t));
            }
        }
        Ok(Vec::new())
    };
    b.io_service_bytes_recursive = read(&[
        "blkio.io_service_bytes_recursive",
        "blkio.bfq.io_service_bytes_recursive",
        "blkio.throttle.io_service_bytes_recursive",
    ])?;
    b.io_serviced_recursive = read(&[
        "blkio.io_serviced_recursive",
        "blkio.bfq.io_serviced_recursive",
        "blkio.throttle.io_serviced_recursive",
    ])?;
    b.io_queued_recursive = read(&["blkio.io_queued_recursive"])?;
    b.io_service_time_recursive = read(&["blkio.io_service_time_recursive"])?;
    b.io_wait_time_recursive = read(&["blkio.io_wait_time_recursive"])?;
    b.io_merged_recursive = read(&["blkio.io_merged_recursive"])?;
    b.io_time_recursive = read(&["blkio.time_recursive"])?;
    b.sectors_recursive = read(&["blkio.sectors_recursive"])?;
    Ok(())
}

/// "8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0" per device.
fn io_v2(text: &str, b: &mut Blkio) {
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let Some((major, minor)) = f.next().and_then(|d| d.split_once(':')) else {
            continue;
        };
        let (Ok(major), Ok(minor)) = (major.parse::<u64>(), minor.parse::<u64>()) else {
            continue;
        };
        for kv in f {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let Ok(value) = v.parse::<u64>() else {
                continue;
            };
            let (list, op) = match k {
                "rbytes" => (&mut b.io_service_bytes_recursive, "Read"),
                "wbytes" => (&mut b.io_service_bytes_recursive, "Write"),
                "rios" => (&mut b.io_serviced_recursive, "Read"),
                "wios" => (&mut b.io_serviced_recursive, "Write"),
                _ => continue,
            };
            list.push(BlkioEntry {
                major,
                minor,
                op: op.into(),
                value,
            });
        }
    }
}

/// Page sizes the kernel offers, named like the cgroup files ("2MB", "1GB").
fn hugepage_sizes() -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/sys/kernel/mm/hugepages") else {
        return Vec::new();
    };
    let mut sizes: Vec<String> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let kb: u64 = name
                .strip_prefix("hugepages-")?
                .strip_suffix("kB")?
                .parse()
                .ok()?;
            Some(if kb >= 1 << 20 {
                format!("{}GB", kb >> 20)
            } else if kb >= 1 << 10 {
                format!("{}MB", kb >> 10)
            } else {
                format!("{kb}KB")
            })
        })
        .collect();
    sizes.sort();
    sizes
}

fn hugetlb(d: &Path, v2: bool, out: &mut BTreeMap<String, Hugetlb>) -> Result<(), Error> {
    for size in hugepage_sizes() {
        let h = if v2 {
            let usage_file = format!("hugetlb.{size}.current");
            if !fsio::exists(d, &usage_file) {
                continue;
            }
            let events = fsio::read_optional(d, &format!("hugetlb.{size}.events"))?;
            Hugetlb {
                usage: fsio::read_u64(d, &usage_file)?,
                max: 0,
                failcnt: events
                    .map(|e| map_of(&e).get("max").copied().unwrap_or(0))
                    .unwrap_or(0),
            }
        } else {
            let usage_file = format!("hugetlb.{size}.usage_in_bytes");
            if !fsio::exists(d, &usage_file) {
                continue;
            }
            Hugetlb {
                usage: fsio::read_u64(d, &usage_file)?,
                max: fsio::read_u64_or_zero(d, &format!("hugetlb.{size}.max_usage_in_bytes"))?,
                failcnt: fsio::read_u64_or_zero(d, &format!("hugetlb.{size}.failcnt"))?,
            }
        };
        out.insert(size, h);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu_lists() {
        assert_eq!(parse_list("0-2,5\n"), vec![0, 1, 2, 5]);
        assert!(parse_list("\n").is_empty());
    }

    #[test]
    fn parses_blkio_and_io_stat() {
        let e = blkio_entries("8:0 Read 4096\n8:0 Write 0\nTotal 4096\n");
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].op, "Read");
        assert_eq!(e[0].value, 4096);
        let mut b = Blkio::default();
        io_v2(
            "254:0 rbytes=10 wbytes=20 rios=1 wios=2 dbytes=0 dios=0\n",
            &mut b,
        );
        assert_eq!(b.io_service_bytes_recursive.len(), 2);
        assert_eq!(b.io_serviced_recursive[1].value, 2);
    }

    #[test]
    fn json_shape_matches_runc() {
        let json = serde_json::to_value(Stats::default()).unwrap();
        for key in ["cpu", "cpuset", "memory", "pids", "blkio", "hugetlb"] {
            assert!(json.get(key).is_some(), "missing {key}");
        }
        assert!(json["memory"].get("kernelTCP").is_some());
        assert_eq!(json["cpu"]["usage"]["kernel"], 0);
        assert_eq!(json["cpuset"]["sched_relax_domain_level"], 0);
        // Additions beyond runc's shape appear only when there is something to say.
        for key in ["swapOnly", "oomControl", "events"] {
            assert!(json["memory"].get(key).is_none(), "{key} in {json}");
        }
    }
}
