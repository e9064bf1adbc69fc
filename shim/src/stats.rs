//! Stats for the Task API, read straight from the init's cgroup files. The layout (v1,
//! v2, hybrid) is taken from /proc/<pid>/cgroup and /proc/self/mountinfo, never assumed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use containerd_shim_protos::cgroups::metrics as v1;
use containerd_shim_protos::cgroups_v2::metrics as v2;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::Message;

struct Layout {
    /// v1 controller name to its directory for this process.
    v1: HashMap<String, PathBuf>,
    v2: Option<PathBuf>,
}

fn layout(pid: u32) -> Result<Layout> {
    let cg_file = format!("/proc/{pid}/cgroup");
    let cgroups = std::fs::read_to_string(&cg_file).with_context(|| format!("read {cg_file}"))?;
    let mountinfo =
        std::fs::read_to_string("/proc/self/mountinfo").context("read /proc/self/mountinfo")?;
    let mut v1_mounts: Vec<(Vec<String>, PathBuf)> = Vec::new();
    let mut v2_mount = None;
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mut r = right.split(' ');
        let (fstype, _src, opts) = (r.next().unwrap_or(""), r.next(), r.next().unwrap_or(""));
        let Some(mnt) = left.split(' ').nth(4) else {
            continue;
        };
        match fstype {
            "cgroup" => v1_mounts.push((
                opts.split(',').map(String::from).collect(),
                PathBuf::from(mnt),
            )),
            "cgroup2" => v2_mount = Some(PathBuf::from(mnt)),
            _ => {}
        }
    }
    let mut out = Layout {
        v1: HashMap::new(),
        v2: None,
    };
    for line in cgroups.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let rel = path.trim_start_matches('/');
        if ctrls.is_empty() {
            out.v2 = v2_mount.as_ref().map(|m| m.join(rel));
            continue;
        }
        for c in ctrls.split(',') {
            if let Some((_, mnt)) = v1_mounts.iter().find(|(o, _)| o.iter().any(|x| x == c)) {
                out.v1.insert(c.to_string(), mnt.join(rel));
            }
        }
    }
    Ok(out)
}

fn read_u64(p: &Path) -> u64 {
    std::fs::read_to_string(p)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn read_kv(p: &Path) -> HashMap<String, u64> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

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

pub fn collect(pid: u32) -> Result<Any> {
    let l = layout(pid)?;
    if l.v1.contains_key("memory") || l.v1.contains_key("cpuacct") {
        return pack(V1_METRICS, &metrics_v1(&l.v1));
    }
    match &l.v2 {
        Some(dir) => pack(V2_METRICS, &metrics_v2(dir)),
        None => bail!("no cgroup found for pid {pid}"),
    }
}

/// How a process's memory cgroup counts OOM kills: the file and its `oom_kill` line.
#[derive(Debug, Clone)]
pub struct OomCounter {
    file: PathBuf,
    at_start: u64,
}

impl OomCounter {
    /// Note the OOM-kill count of `pid`'s memory cgroup now (v1 `memory.oom_control`, v2
    /// `memory.events`); None when the process has no memory cgroup we can read.
    pub fn new(pid: u32) -> Option<OomCounter> {
        let l = layout(pid).ok()?;
        let file = match (l.v1.get("memory"), &l.v2) {
            (Some(d), _) => d.join("memory.oom_control"),
            (None, Some(d)) => d.join("memory.events"),
            (None, None) => return None,
        };
        let at_start = read_kv(&file).get("oom_kill").copied()?;
        Some(OomCounter { file, at_start })
    }

    /// Whether the kernel's OOM killer struck in the cgroup since `new`. Asked when the
    /// init has exited, before the runtime deletes the cgroup.
    pub fn fired(&self) -> bool {
        read_kv(&self.file)
            .get("oom_kill")
            .is_some_and(|n| *n > self.at_start)
    }
}

fn metrics_v1(dirs: &HashMap<String, PathBuf>) -> v1::Metrics {
    let mut m = v1::Metrics::new();
    if let Some(d) = dirs.get("pids") {
        let mut p = v1::PidsStat::new();
        p.current = read_u64(&d.join("pids.current"));
        p.limit = read_u64(&d.join("pids.max"));
        m.pids = Some(p).into();
    }
    if let Some(d) = dirs.get("cpuacct") {
        let mut u = v1::CPUUsage::new();
        u.total = read_u64(&d.join("cpuacct.usage"));
        u.user = read_u64(&d.join("cpuacct.usage_user"));
        u.kernel = read_u64(&d.join("cpuacct.usage_sys"));
        u.per_cpu = std::fs::read_to_string(d.join("cpuacct.usage_percpu"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        let mut c = v1::CPUStat::new();
        c.usage = Some(u).into();
        if let Some(cpu) = dirs.get("cpu") {
            let kv = read_kv(&cpu.join("cpu.stat"));
            let mut t = v1::Throttle::new();
            t.periods = kv.get("nr_periods").copied().unwrap_or(0);
            t.throttled_periods = kv.get("nr_throttled").copied().unwrap_or(0);
            t.throttled_time = kv.get("throttled_time").copied().unwrap_or(0);
            c.throttling = Some(t).into();
        }
        m.cpu = Some(c).into();
    }
    if let Some(d) = dirs.get("memory") {
        let kv = read_kv(&d.join("memory.stat"));
        let g = |k: &str| kv.get(k).copied().unwrap_or(0);
        let mut s = v1::MemoryStat::new();
        s.cache = g("cache");
        s.rss = g("rss");
        s.rss_huge = g("rss_huge");
        s.mapped_file = g("mapped_file");
        s.dirty = g("dirty");
        s.writeback = g("writeback");
        s.pg_fault = g("pgfault");
        s.pg_maj_fault = g("pgmajfault");
        s.inactive_anon = g("inactive_anon");
        s.active_anon = g("active_anon");
        s.inactive_file = g("inactive_file");
        s.active_file = g("active_file");
        s.unevictable = g("unevictable");
        s.hierarchical_memory_limit = g("hierarchical_memory_limit");
        s.total_cache = g("total_cache");
        s.total_rss = g("total_rss");
        s.total_inactive_file = g("total_inactive_file");
        let mut e = v1::MemoryEntry::new();
        e.usage = read_u64(&d.join("memory.usage_in_bytes"));
        e.limit = read_u64(&d.join("memory.limit_in_bytes"));
        e.max = read_u64(&d.join("memory.max_usage_in_bytes"));
        e.failcnt = read_u64(&d.join("memory.failcnt"));
        s.usage = Some(e).into();
        m.memory = Some(s).into();
    }
    m
}

fn metrics_v2(d: &Path) -> v2::Metrics {
    let mut m = v2::Metrics::new();
    let mut p = v2::PidsStat::new();
    p.current = read_u64(&d.join("pids.current"));
    p.limit = read_u64(&d.join("pids.max"));
    m.pids = Some(p).into();
    let kv = read_kv(&d.join("cpu.stat"));
    let g = |k: &str| kv.get(k).copied().unwrap_or(0);
    let mut c = v2::CPUStat::new();
    c.usage_usec = g("usage_usec");
    c.user_usec = g("user_usec");
    c.system_usec = g("system_usec");
    c.nr_periods = g("nr_periods");
    c.nr_throttled = g("nr_throttled");
    c.throttled_usec = g("throttled_usec");
    m.cpu = Some(c).into();
    let kv = read_kv(&d.join("memory.stat"));
    let g = |k: &str| kv.get(k).copied().unwrap_or(0);
    let mut s = v2::MemoryStat::new();
    s.anon = g("anon");
    s.file = g("file");
    s.kernel_stack = g("kernel_stack");
    s.slab = g("slab");
    s.sock = g("sock");
    s.shmem = g("shmem");
    s.file_mapped = g("file_mapped");
    s.file_dirty = g("file_dirty");
    s.inactive_anon = g("inactive_anon");
    s.active_anon = g("active_anon");
    s.inactive_file = g("inactive_file");
    s.active_file = g("active_file");
    s.unevictable = g("unevictable");
    s.pgfault = g("pgfault");
    s.pgmajfault = g("pgmajfault");
    s.usage = read_u64(&d.join("memory.current"));
    s.usage_limit = read_u64(&d.join("memory.max"));
    s.max_usage = read_u64(&d.join("memory.peak"));
    s.swap_usage = read_u64(&d.join("memory.swap.current"));
    s.swap_limit = read_u64(&d.join("memory.swap.max"));
    m.memory = Some(s).into();
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_has_stats() {
        let any = collect(std::process::id()).unwrap();
        assert!(
            any.type_url.starts_with("io.containerd.cgroups.v"),
            "{}",
            any.type_url
        );
        assert!(collect(u32::MAX - 1).is_err());
    }
}
