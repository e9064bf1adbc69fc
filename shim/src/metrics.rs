//! berth-cgroups' `Stats` (runc's events shape) turned into the metrics messages containerd
//! decodes from a Stats response: `io.containerd.cgroups.v1.Metrics` or
//! `io.containerd.cgroups.v2.Metrics`, field for field as containerd's own cgroups library
//! fills them.

use std::collections::BTreeMap;
use std::path::Path;

use berth_cgroups::{BlkioEntry, MemoryEntry, PsiData, PsiStats, Stats};
use containerd_shim_protos::cgroups::metrics as v1;
use containerd_shim_protos::cgroups_v2::metrics as v2;

fn raw(raw: &BTreeMap<String, u64>, key: &str) -> u64 {
    raw.get(key).copied().unwrap_or(0)
}

fn memory_entry_v1(e: &MemoryEntry) -> v1::MemoryEntry {
    let mut out = v1::MemoryEntry::new();
    out.limit = e.limit;
    out.usage = e.usage;
    out.max = e.max;
    out.failcnt = e.failcnt;
    out
}

fn blkio_v1(entries: &[BlkioEntry]) -> Vec<v1::BlkIOEntry> {
    let mut names: BTreeMap<(u64, u64), String> = BTreeMap::new();
    entries
        .iter()
        .map(|e| {
            let mut out = v1::BlkIOEntry::new();
            out.op = e.op.clone();
            out.device = names
                .entry((e.major, e.minor))
                .or_insert_with(|| block_device_path(Path::new("/sys"), e.major, e.minor))
                .clone();
            out.major = e.major;
            out.minor = e.minor;
            out.value = e.value;
            out
        })
        .collect()
}

/// The /dev path of a block device as containerd's v1 metrics name it (`/dev/vda`), from the
/// kernel's own record in sysfs; empty when the kernel does not know the numbers.
fn block_device_path(sys: &Path, major: u64, minor: u64) -> String {
    let uevent = sys.join(format!("dev/block/{major}:{minor}/uevent"));
    std::fs::read_to_string(uevent)
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("DEVNAME="))
                .map(|name| format!("/dev/{name}"))
        })
        .unwrap_or_default()
}

/// For cgroup v1 and hybrid hosts.
pub fn v1(s: &Stats) -> v1::Metrics {
    let mut m = v1::Metrics::new();
    m.hugetlb = s
        .hugetlb
        .iter()
        .map(|(size, h)| {
            let mut out = v1::HugetlbStat::new();
            out.usage = h.usage;
            out.max = h.max;
            out.failcnt = h.failcnt;
            out.pagesize = size.clone();
            out
        })
        .collect();

    let mut pids = v1::PidsStat::new();
    pids.current = s.pids.current;
    pids.limit = s.pids.limit;
    m.pids = Some(pids).into();

    let mut usage = v1::CPUUsage::new();
    usage.total = s.cpu.usage.total;
    usage.kernel = s.cpu.usage.kernel;
    usage.user = s.cpu.usage.user;
    usage.per_cpu = s.cpu.usage.percpu.clone();
    let mut throttling = v1::Throttle::new();
    throttling.periods = s.cpu.throttling.periods;
    throttling.throttled_periods = s.cpu.throttling.throttled_periods;
    throttling.throttled_time = s.cpu.throttling.throttled_time;
    let mut cpu = v1::CPUStat::new();
    cpu.usage = Some(usage).into();
    cpu.throttling = Some(throttling).into();
    m.cpu = Some(cpu).into();

    let r = &s.memory.raw;
    let mut mem = v1::MemoryStat::new();
    mem.cache = raw(r, "cache");
    mem.rss = raw(r, "rss");
    mem.rss_huge = raw(r, "rss_huge");
    mem.mapped_file = raw(r, "mapped_file");
    mem.dirty = raw(r, "dirty");
    mem.writeback = raw(r, "writeback");
    mem.pg_pg_in = raw(r, "pgpgin");
    mem.pg_pg_out = raw(r, "pgpgout");
    mem.pg_fault = raw(r, "pgfault");
    mem.pg_maj_fault = raw(r, "pgmajfault");
    mem.inactive_anon = raw(r, "inactive_anon");
    mem.active_anon = raw(r, "active_anon");
    mem.inactive_file = raw(r, "inactive_file");
    mem.active_file = raw(r, "active_file");
    mem.unevictable = raw(r, "unevictable");
    mem.hierarchical_memory_limit = raw(r, "hierarchical_memory_limit");
    mem.hierarchical_swap_limit = raw(r, "hierarchical_memsw_limit");
    mem.total_cache = raw(r, "total_cache");
    mem.total_rss = raw(r, "total_rss");
    mem.total_rss_huge = raw(r, "total_rss_huge");
    mem.total_mapped_file = raw(r, "total_mapped_file");
    mem.total_dirty = raw(r, "total_dirty");
    mem.total_writeback = raw(r, "total_writeback");
    mem.total_pg_pg_in = raw(r, "total_pgpgin");
    mem.total_pg_pg_out = raw(r, "total_pgpgout");
    mem.total_pg_fault = raw(r, "total_pgfault");
    mem.total_pg_maj_fault = raw(r, "total_pgmajfault");
    mem.total_inactive_anon = raw(r, "total_inactive_anon");
    mem.total_active_anon = raw(r, "total_active_anon");
    mem.total_inactive_file = raw(r, "total_inactive_file");
    mem.total_active_file = raw(r, "total_active_file");
    mem.total_unevictable = raw(r, "total_unevictable");
    mem.usage = Some(memory_entry_v1(&s.memory.usage)).into();
    mem.swap = Some(memory_entry_v1(&s.memory.swap)).into();
    mem.kernel = Some(memory_entry_v1(&s.memory.kernel)).into();
    mem.kernel_tcp = Some(memory_entry_v1(&s.memory.kernel_tcp)).into();
    m.memory = Some(mem).into();

    if let Some(oc) = &s.memory.oom_control {
        let mut out = v1::MemoryOomControl::new();
        out.oom_kill_disable = oc.oom_kill_disable;
        out.under_oom = oc.under_oom;
        out.oom_kill = oc.oom_kill;
        m.memory_oom_control = Some(out).into();
    }

    let b = &s.blkio;
    let mut blkio = v1::BlkIOStat::new();
    blkio.io_service_bytes_recursive = blkio_v1(&b.io_service_bytes_recursive);
    blkio.io_serviced_recursive = blkio_v1(&b.io_serviced_recursive);
    blkio.io_queued_recursive = blkio_v1(&b.io_queued_recursive);
    blkio.io_service_time_recursive = blkio_v1(&b.io_service_time_recursive);
    blkio.io_wait_time_recursive = blkio_v1(&b.io_wait_time_recursive);
    blkio.io_merged_recursive = blkio_v1(&b.io_merged_recursive);
    blkio.io_time_recursive = blkio_v1(&b.io_time_recursive);
    blkio.sectors_recursive = blkio_v1(&b.sectors_recursive);
    m.blkio = Some(blkio).into();
    m
}

fn psi_v2(p: &Option<PsiStats>) -> Option<v2::PSIStats> {
    let data = |d: &PsiData| {
        let mut out = v2::PSIData::new();
        out.avg10 = d.avg10;
        out.avg60 = d.avg60;
        out.avg300 = d.avg300;
        out.total = d.total;
        out
    };
    p.as_ref().map(|p| {
        let mut out = v2::PSIStats::new();
        out.some = Some(data(&p.some)).into();
        out.full = Some(data(&p.full)).into();
        out
    })
}

/// io.stat per device. `Stats` keeps it in v1's shape (one entry per device and direction),
/// so the devices are put back together here.
fn io_v2(s: &Stats) -> Vec<v2::IOEntry> {
    let mut devices: BTreeMap<(u64, u64), v2::IOEntry> = BTreeMap::new();
    let lists = [
        (&s.blkio.io_service_bytes_recursive, true),
        (&s.blkio.io_serviced_recursive, false),
    ];
    for (list, bytes) in lists {
        for e in list {
            let d = devices.entry((e.major, e.minor)).or_insert_with(|| {
                let mut d = v2::IOEntry::new();
                d.major = e.major;
                d.minor = e.minor;
                d
            });
            match (e.op.as_str(), bytes) {
                ("Read", true) => d.rbytes = e.value,
                ("Write", true) => d.wbytes = e.value,
                ("Read", false) => d.rios = e.value,
                ("Write", false) => d.wios = e.value,
                _ => {}
            }
        }
    }
    devices.into_values().collect()
}

/// Kernels since 5.9 split the workingset counters into anon and file.
fn workingset(r: &BTreeMap<String, u64>, what: &str) -> u64 {
    r.get(&format!("workingset_{what}"))
        .copied()
        .unwrap_or_else(|| {
            raw(r, &format!("workingset_{what}_anon")) + raw(r, &format!("workingset_{what}_file"))
        })
}

/// For cgroup v2 hosts.
pub fn v2(s: &Stats) -> v2::Metrics {
    let mut m = v2::Metrics::new();

    let mut pids = v2::PidsStat::new();
    pids.current = s.pids.current;
    pids.limit = s.pids.limit;
    m.pids = Some(pids).into();

    // `Stats` holds nanoseconds; cpu.stat counts microseconds, so this division is exact.
    let mut cpu = v2::CPUStat::new();
    cpu.usage_usec = s.cpu.usage.total / 1000;
    cpu.user_usec = s.cpu.usage.user / 1000;
    cpu.system_usec = s.cpu.usage.kernel / 1000;
    cpu.nr_periods = s.cpu.throttling.periods;
    cpu.nr_throttled = s.cpu.throttling.throttled_periods;
    cpu.throttled_usec = s.cpu.throttling.throttled_time / 1000;
    cpu.psi = psi_v2(&s.cpu.psi).into();
    m.cpu = Some(cpu).into();

    let r = &s.memory.raw;
    let mut mem = v2::MemoryStat::new();
    mem.anon = raw(r, "anon");
    mem.file = raw(r, "file");
    mem.kernel_stack = raw(r, "kernel_stack");
    mem.slab = raw(r, "slab");
    mem.sock = raw(r, "sock");
    mem.shmem = raw(r, "shmem");
    mem.file_mapped = raw(r, "file_mapped");
    mem.file_dirty = raw(r, "file_dirty");
    mem.file_writeback = raw(r, "file_writeback");
    mem.anon_thp = raw(r, "anon_thp");
    mem.inactive_anon = raw(r, "inactive_anon");
    mem.active_anon = raw(r, "active_anon");
    mem.inactive_file = raw(r, "inactive_file");
    mem.active_file = raw(r, "active_file");
    mem.unevictable = raw(r, "unevictable");
    mem.slab_reclaimable = raw(r, "slab_reclaimable");
    mem.slab_unreclaimable = raw(r, "slab_unreclaimable");
    mem.pgfault = raw(r, "pgfault");
    mem.pgmajfault = raw(r, "pgmajfault");
    mem.workingset_refault = workingset(r, "refault");
    mem.workingset_activate = workingset(r, "activate");
    mem.workingset_nodereclaim = raw(r, "workingset_nodereclaim");
    mem.pgrefill = raw(r, "pgrefill");
    mem.pgscan = raw(r, "pgscan");
    mem.pgsteal = raw(r, "pgsteal");
    mem.pgactivate = raw(r, "pgactivate");
    mem.pgdeactivate = raw(r, "pgdeactivate");
    mem.pglazyfree = raw(r, "pglazyfree");
    mem.pglazyfreed = raw(r, "pglazyfreed");
    mem.thp_fault_alloc = raw(r, "thp_fault_alloc");
    mem.thp_collapse_alloc = raw(r, "thp_collapse_alloc");
    mem.usage = s.memory.usage.usage;
    mem.usage_limit = s.memory.usage.limit;
    mem.max_usage = s.memory.usage.max;
    if let Some(swap) = &s.memory.swap_only {
        mem.swap_usage = swap.usage;
        mem.swap_limit = swap.limit;
        mem.swap_max_usage = swap.max;
    }
    mem.psi = psi_v2(&s.memory.psi).into();
    m.memory = Some(mem).into();

    if let Some(ev) = &s.memory.events {
        let mut out = v2::MemoryEvents::new();
        out.low = ev.low;
        out.high = ev.high;
        out.max = ev.max;
        out.oom = ev.oom;
        out.oom_kill = ev.oom_kill;
        out.oom_group_kill = ev.oom_group_kill;
        m.memory_events = Some(out).into();
    }

    let mut io = v2::IOStat::new();
    io.usage = io_v2(s);
    io.psi = psi_v2(&s.blkio.psi).into();
    m.io = Some(io).into();

    m.hugetlb = s
        .hugetlb
        .iter()
        .map(|(size, h)| {
            let mut out = v2::HugeTlbStat::new();
            out.current = h.usage;
            out.max = h.max;
            out.failcnt = h.failcnt;
            out.pagesize = size.clone();
            out
        })
        .collect();
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_cgroups::{Hugetlb, MemoryEvents, OomControl};

    #[test]
    fn block_devices_are_named_from_sysfs() {
        let sys = std::env::temp_dir().join(format!("berth-shim-sysfs-{}", std::process::id()));
        let dev = sys.join("dev/block/253:0");
        std::fs::create_dir_all(&dev).unwrap();
        std::fs::write(
            dev.join("uevent"),
            "MAJOR=253\nMINOR=0\nDEVNAME=vda\nDEVTYPE=disk\n",
        )
        .unwrap();
        assert_eq!(block_device_path(&sys, 253, 0), "/dev/vda");
        assert_eq!(block_device_path(&sys, 253, 9), "");
        std::fs::remove_dir_all(&sys).unwrap();
    }

    fn sample() -> Stats {
        let mut s = Stats::default();
        s.pids.current = 3;
        s.pids.limit = 10;
        s.cpu.usage.total = 5_000_000;
        s.cpu.usage.user = 3_000_000;
        s.cpu.usage.kernel = 2_000_000;
        s.cpu.usage.percpu = vec![4_000_000, 1_000_000];
        s.cpu.throttling.throttled_time = 7_000;
        s.memory.usage = MemoryEntry {
            limit: 1 << 30,
            usage: 4096,
            max: 8192,
            failcnt: 1,
        };
        for (k, v) in [
            ("cache", 11),
            ("rss", 12),
            ("pgpgin", 13),
            ("total_rss", 14),
            ("hierarchical_memsw_limit", 15),
            ("anon", 21),
            ("file", 22),
            ("workingset_refault_anon", 1),
            ("workingset_refault_file", 2),
        ] {
            s.memory.raw.insert(k.into(), v);
        }
        let entry = |op: &str, value| BlkioEntry {
            major: 8,
            minor: 0,
            op: op.into(),
            value,
        };
        s.blkio.io_service_bytes_recursive = vec![entry("Read", 100), entry("Write", 200)];
        s.blkio.io_serviced_recursive = vec![entry("Read", 1), entry("Write", 2)];
        s.hugetlb.insert(
            "2MB".into(),
            Hugetlb {
                usage: 2 << 20,
                max: 4 << 20,
                failcnt: 0,
            },
        );
        s
    }

    #[test]
    fn v1_metrics_carry_every_controller() {
        let mut s = sample();
        s.memory.oom_control = Some(OomControl {
            oom_kill_disable: 0,
            under_oom: 0,
            oom_kill: 2,
        });
        let m = v1(&s);
        assert_eq!(m.pids.current, 3);
        assert_eq!(m.pids.limit, 10);
        assert_eq!(m.cpu.usage.total, 5_000_000);
        assert_eq!(m.cpu.usage.per_cpu, vec![4_000_000, 1_000_000]);
        assert_eq!(m.cpu.throttling.throttled_time, 7_000);
        assert_eq!(m.memory.cache, 11);
        assert_eq!(m.memory.rss, 12);
        assert_eq!(m.memory.pg_pg_in, 13);
        assert_eq!(m.memory.total_rss, 14);
        assert_eq!(m.memory.hierarchical_swap_limit, 15);
        assert_eq!(m.memory.usage.limit, 1 << 30);
        assert_eq!(m.memory.usage.max, 8192);
        assert_eq!(m.memory.usage.failcnt, 1);
        assert_eq!(m.memory_oom_control.oom_kill, 2);
        assert_eq!(m.blkio.io_service_bytes_recursive.len(), 2);
        assert_eq!(m.blkio.io_service_bytes_recursive[1].op, "Write");
        assert_eq!(m.blkio.io_serviced_recursive[0].value, 1);
        assert_eq!(m.hugetlb.len(), 1);
        assert_eq!(m.hugetlb[0].pagesize, "2MB");
        assert_eq!(m.hugetlb[0].max, 4 << 20);
    }

    #[test]
    fn v2_metrics_use_microseconds_and_per_device_io() {
        let mut s = sample();
        s.memory.swap_only = Some(MemoryEntry {
            limit: u64::MAX,
            usage: 512,
            max: 1024,
            failcnt: 0,
        });
        s.memory.events = Some(MemoryEvents {
            max: 4,
            oom_kill: 1,
            ..Default::default()
        });
        s.cpu.psi = Some(PsiStats {
            some: PsiData {
                avg10: 1.5,
                total: 9,
                ..Default::default()
            },
            ..Default::default()
        });
        let m = v2(&s);
        assert_eq!(m.cpu.usage_usec, 5_000);
        assert_eq!(m.cpu.user_usec, 3_000);
        assert_eq!(m.cpu.system_usec, 2_000);
        assert_eq!(m.cpu.throttled_usec, 7);
        assert_eq!(m.cpu.psi.some.avg10, 1.5);
        assert_eq!(m.cpu.psi.some.total, 9);
        assert!(m.memory.psi.is_none());
        assert_eq!(m.memory.anon, 21);
        assert_eq!(m.memory.file, 22);
        assert_eq!(m.memory.workingset_refault, 3);
        assert_eq!(m.memory.usage, 4096);
        assert_eq!(m.memory.usage_limit, 1 << 30);
        assert_eq!(m.memory.max_usage, 8192);
        assert_eq!(m.memory.swap_usage, 512);
        assert_eq!(m.memory.swap_limit, u64::MAX);
        assert_eq!(m.memory.swap_max_usage, 1024);
        assert_eq!(m.memory_events.max, 4);
        assert_eq!(m.memory_events.oom_kill, 1);
        assert_eq!(m.io.usage.len(), 1);
        let d = &m.io.usage[0];
        assert_eq!((d.major, d.minor), (8, 0));
        assert_eq!((d.rbytes, d.wbytes, d.rios, d.wios), (100, 200, 1, 2));
        assert_eq!(m.hugetlb[0].current, 2 << 20);
        assert_eq!(m.pids.current, 3);
    }
}
