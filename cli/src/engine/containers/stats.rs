//! Resource use of a running container, for `stats`: read straight from the cgroups of its
//! init (berth-cgroups, the code the shim's Stats uses too, without the protobuf round
//! trip) and from `/proc/<pid>/net/dev`, which shows the init's network namespace.

use std::time::Instant;

use super::record::Record;
use super::state::Status;
use crate::engine::Engine;

/// One reading. Percentages need two (see [`cpu_percent`]).
#[derive(Debug, Clone)]
pub struct Sample {
    /// CPU time of the container, nanoseconds.
    pub cpu_ns: u64,
    /// CPU time of the whole host (busy and idle, every CPU), nanoseconds, from /proc/stat.
    pub system_ns: u64,
    pub online_cpus: u32,
    /// Memory in use without the inactive page cache, as Docker counts it.
    pub mem_usage: u64,
    /// The limit, or the host's memory when there is none.
    pub mem_limit: u64,
    pub net_rx: u64,
    pub net_tx: u64,
    pub block_read: u64,
    pub block_write: u64,
    pub pids: u64,
    pub taken: Instant,
}

impl Engine {
    /// A reading of the container, or None when it is not running (or just stopped).
    pub fn container_sample(&self, rec: &Record) -> Option<Sample> {
        let st = self.state_of(rec);
        if !matches!(st.status, Status::Running | Status::Paused) || st.pid == 0 {
            return None;
        }
        let cg = berth_cgroups::CgroupManager::of_process(st.pid).ok()?;
        let s = cg.stats().ok()?;
        let raw = &s.memory.raw;
        // v1: total_inactive_file; v2: inactive_file (docker/cli's calculateMemUsageUnixNoCache).
        let inactive = raw
            .get("total_inactive_file")
            .or_else(|| raw.get("inactive_file"))
            .copied()
            .unwrap_or(0);
        let usage = s.memory.usage.usage;
        let mem_usage = if inactive < usage {
            usage - inactive
        } else {
            usage
        };
        let host_mem = host_memory();
        let mut mem_limit = s.memory.usage.limit;
        if mem_limit == 0 || (host_mem > 0 && mem_limit > host_mem) {
            mem_limit = host_mem;
        }
        let (mut block_read, mut block_write) = (0, 0);
        for e in &s.blkio.io_service_bytes_recursive {
            match e.op.to_ascii_lowercase().as_str() {
                "read" => block_read += e.value,
                "write" => block_write += e.value,
                _ => {}
            }
        }
        let (net_rx, net_tx) = if rec.host.network_mode == "host" {
            (0, 0)
        } else {
            net_dev(st.pid)
        };
        let online = if s.cpu.usage.percpu.is_empty() {
            online_cpus()
        } else {
            s.cpu.usage.percpu.len() as u32
        };
        Some(Sample {
            cpu_ns: s.cpu.usage.total,
            system_ns: system_cpu_ns(),
            online_cpus: online.max(1),
            mem_usage,
            mem_limit,
            net_rx,
            net_tx,
            block_read,
            block_write,
            pids: s.pids.current,
            taken: Instant::now(),
        })
    }
}

/// Docker's CPU %: the container's share of the host's CPU time between two readings,
/// times the CPUs (so one busy core of four is 100%).
pub fn cpu_percent(prev: Option<&Sample>, now: &Sample) -> f64 {
    let Some(prev) = prev else { return 0.0 };
    let cpu = now.cpu_ns.saturating_sub(prev.cpu_ns) as f64;
    let system = now.system_ns.saturating_sub(prev.system_ns) as f64;
    if cpu > 0.0 && system > 0.0 {
        cpu / system * now.online_cpus as f64 * 100.0
    } else {
        0.0
    }
}

/// Received and sent bytes of every interface but `lo` in the process's network namespace.
pub fn net_dev(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).unwrap_or_default();
    parse_net_dev(&text)
}

fn parse_net_dev(text: &str) -> (u64, u64) {
    let (mut rx, mut tx) = (0, 0);
    for line in text.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        if name.trim() == "lo" {
            continue;
        }
        let f: Vec<u64> = rest
            .split_whitespace()
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        if f.len() >= 9 {
            rx += f[0];
            tx += f[8];
        }
    }
    (rx, tx)
}

/// The host's CPU time as Docker's daemon reads it: the first 7 fields of /proc/stat's
/// `cpu` line, in nanoseconds.
fn system_cpu_ns() -> u64 {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks = {
        // SAFETY: sysconf has no memory effects.
        let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        if t > 0 {
            t as u64
        } else {
            100
        }
    };
    text.lines()
        .find(|l| l.starts_with("cpu "))
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .take(7)
                .map(|x| x.parse::<u64>().unwrap_or(0))
                .sum::<u64>()
        })
        .unwrap_or(0)
        * (1_000_000_000 / ticks)
}

pub fn online_cpus() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1)
}

/// MemTotal of /proc/meminfo, bytes.
pub fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_dev_sums_all_but_loopback() {
        let text = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0\n  eth0:    1500      10    0    0    0     0          0         0      700       5    0    0    0     0       0          0\n";
        assert_eq!(parse_net_dev(text), (1500, 700));
    }

    #[test]
    fn cpu_percent_is_the_share_of_host_time_times_cpus() {
        let base = Sample {
            cpu_ns: 0,
            system_ns: 0,
            online_cpus: 4,
            mem_usage: 0,
            mem_limit: 0,
            net_rx: 0,
            net_tx: 0,
            block_read: 0,
            block_write: 0,
            pids: 0,
            taken: Instant::now(),
        };
        let mut now = base.clone();
        now.cpu_ns = 1_000_000_000;
        now.system_ns = 4_000_000_000;
        assert!((cpu_percent(Some(&base), &now) - 100.0).abs() < 1e-9);
        assert_eq!(cpu_percent(None, &now), 0.0);
    }
}
