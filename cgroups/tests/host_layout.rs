//! Real cgroups on this host through its own layout (v1 or hybrid: the v1 controllers). The
//! v2 code paths are exercised in `unified.rs`.

mod common;

use std::path::Path;

use berth_cgroups::{CgroupManager, FreezerState, Layout};
use berth_tests::features;
use common::*;
use serde_json::json;

fn v1_host() -> bool {
    let layout = berth_cgroups::detect().expect("detect").layout;
    // A skip through the harness: under BERTH_REQUIRE_ALL=1 it fails instead.
    // A host property, not a missing install: the v2 paths are covered by unified.rs.
    layout != Layout::V2 || berth_tests::host_lacks("v1 hierarchies (a v2-only host)")
}

#[test]
fn detect_finds_every_mounted_hierarchy() {
    let host = berth_cgroups::detect().expect("detect");
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let v1_lines = mountinfo
        .lines()
        .filter(|l| l.contains(" - cgroup "))
        .count();
    assert_eq!(host.v1.len(), v1_lines, "{host:?}");
    for m in &host.v1 {
        assert!(m.mountpoint.join("cgroup.procs").exists(), "{m:?}");
    }
    match host.layout {
        Layout::Hybrid => {
            assert!(!host.v1.is_empty());
            let u = host.unified.as_ref().expect("unified");
            assert!(u.mountpoint.join("cgroup.controllers").exists());
        }
        Layout::V1 => assert!(host.unified.is_none()),
        Layout::V2 => assert!(host.v1.is_empty()),
    }
    // On this project's machines cpu and cpuacct are separate hierarchies.
    if let (Some(cpu), Some(acct)) = (host.v1_mount("cpu"), host.v1_mount("cpuacct")) {
        if cpu.controllers.len() == 1 {
            assert_ne!(cpu.mountpoint, acct.mountpoint);
        }
    }
}

#[test]
fn apply_moves_a_process_into_every_hierarchy() {
    let g = host_manager("apply");
    let kid = Kid::sleep();
    g.mgr.apply(kid.pid()).expect("apply");
    assert!(g.mgr.exists());
    let dirs = g.mgr.paths().dirs();
    assert!(!dirs.is_empty());
    for dir in &dirs {
        assert!(
            procs(dir).contains(&kid.pid()),
            "{} lacks the pid",
            dir.display()
        );
    }
    if g.mgr.layout() == Layout::Hybrid {
        assert!(
            g.mgr.unified_path().is_some(),
            "hybrid joins the unified hierarchy too"
        );
        assert!(
            g.mgr.path("name=systemd").is_some() || !Path::new("/sys/fs/cgroup/systemd").exists()
        );
    }
    // The kernel agrees: /proc/PID/cgroup names our cgroup in each hierarchy.
    let own = std::fs::read_to_string(format!("/proc/{}/cgroup", kid.pid())).unwrap();
    let name = g.mgr.paths().dirs()[0]
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(own.contains(&name), "{own}");
    assert_eq!(g.mgr.pids().unwrap(), vec![kid.pid()]);
}

#[test]
fn manager_is_rebuilt_identically_from_the_same_inputs() {
    let path = unique_path("same");
    let a = CgroupManager::new(Some(&path), "x", false).unwrap();
    let b = CgroupManager::new(Some(&path), "x", false).unwrap();
    assert_eq!(a.paths(), b.paths());
    let json = serde_json::to_string(a.paths()).unwrap();
    let c = CgroupManager::from_paths(serde_json::from_str(&json).unwrap()).unwrap();
    assert_eq!(a.paths(), c.paths());
}

#[test]
fn relative_path_is_joined_to_the_callers_cgroup() {
    // A parent made by the test stands in for "our own cgroup" so the test never writes
    // below the cgroups of whatever runs it.
    let host = berth_cgroups::detect().unwrap();
    let parent = unique_path("parent");
    let mut own = berth_cgroups::OwnCgroups::new();
    for m in &host.v1 {
        for c in &m.controllers {
            own.insert(c.clone(), parent.clone().into());
        }
    }
    own.insert(String::new(), parent.clone().into());
    let mgr = CgroupManager::with_own_cgroups(host.clone(), own.clone(), Some("../../child"), "id")
        .unwrap();
    let parent_mgr = CgroupManager::with_host(host.clone(), Some(&parent), "p").unwrap();
    let _pg = Guard::new(parent_mgr.clone());
    let g = Guard::new(mgr);
    for dir in g.mgr.paths().dirs() {
        assert!(
            dir.ends_with(format!("{}/child", parent.trim_start_matches('/'))),
            "{}",
            dir.display()
        );
    }
    let kid = Kid::sleep();
    g.mgr.apply(kid.pid()).unwrap();
    for dir in g.mgr.paths().dirs() {
        assert!(procs(dir).contains(&kid.pid()));
    }
    // The default (no cgroupsPath) is the container id, relative.
    let d = CgroupManager::with_own_cgroups(host, own, None, "ctr-id").unwrap();
    assert!(d.paths().dirs()[0].ends_with("ctr-id"));
}

#[test]
fn set_writes_limits_the_kernel_reads_back() {
    if !v1_host() {
        return;
    }
    let g = host_manager("limits");
    let kid = Kid::sleep();
    g.mgr.apply(kid.pid()).unwrap();
    let (cpus, mems) = (features::first_cpu(), features::first_mem());
    let r = resources(json!({
        "memory": {"limit": 67108864, "reservation": 33554432, "swappiness": 10},
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": cpus, "mems": mems},
        "pids": {"limit": 42},
        "blockIO": {"throttleReadBpsDevice": [{"major": 254, "minor": 0, "rate": 1048576}]},
        "devices": [
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
            {"allow": true, "type": "c", "major": 136, "access": "rw"}
        ]
    }));
    g.mgr.set(&r).expect("set");
    let mem = g.mgr.path("memory").unwrap();
    assert_eq!(read(mem, "memory.limit_in_bytes"), "67108864");
    assert_eq!(read(mem, "memory.soft_limit_in_bytes"), "33554432");
    assert_eq!(read(mem, "memory.swappiness"), "10");
    let cpu = g.mgr.path("cpu").unwrap();
    assert_eq!(read(cpu, "cpu.shares"), "512");
    assert_eq!(read(cpu, "cpu.cfs_quota_us"), "50000");
    assert_eq!(read(cpu, "cpu.cfs_period_us"), "100000");
    let cpuset = g.mgr.path("cpuset").unwrap();
    assert_eq!(read(cpuset, "cpuset.cpus"), cpus);
    assert_eq!(read(cpuset, "cpuset.mems"), mems);
    assert_eq!(read(g.mgr.path("pids").unwrap(), "pids.max"), "42");
    let blk = g.mgr.path("blkio").unwrap();
    if Path::new("/sys/dev/block/254:0").exists() {
        assert_eq!(read(blk, "blkio.throttle.read_bps_device"), "254:0 1048576");
    }
    let list = read(g.mgr.path("devices").unwrap(), "devices.list");
    assert_eq!(list, "c 1:3 rwm\nc 136:* rw", "{list}");

    // update: lower the limit, raise pids and quota.
    let r2 = resources(json!({
        "memory": {"limit": 33554432},
        "pids": {"limit": -1},
        "cpu": {"quota": -1}
    }));
    g.mgr.set(&r2).expect("update");
    assert_eq!(read(mem, "memory.limit_in_bytes"), "33554432");
    assert_eq!(read(g.mgr.path("pids").unwrap(), "pids.max"), "max");
    assert_eq!(read(cpu, "cpu.cfs_quota_us"), "-1");
}

#[test]
fn swap_limits_follow_the_limit_or_name_missing_swap_accounting() {
    if !v1_host() {
        return;
    }
    let g = host_manager("swap");
    let kid = Kid::sleep();
    g.mgr.apply(kid.pid()).unwrap();
    let mem = g.mgr.path("memory").unwrap();
    let r = resources(json!({"memory": {"limit": 67108864, "swap": 134217728}}));
    if !features::swap_accounting(mem) {
        let e = g.mgr.set(&r).unwrap_err().to_string();
        assert!(e.contains("swap accounting"), "{e}");
        return;
    }
    g.mgr.set(&r).expect("set");
    assert_eq!(read(mem, "memory.memsw.limit_in_bytes"), "134217728");
    // Shrinking both writes the limit first, growing both writes swap first: memsw must
    // stay above the limit at every step.
    let r2 = resources(json!({"memory": {"limit": 33554432, "swap": 33554432}}));
    g.mgr.set(&r2).expect("shrink");
    assert_eq!(read(mem, "memory.limit_in_bytes"), "33554432");
    assert_eq!(read(mem, "memory.memsw.limit_in_bytes"), "33554432");
    let r3 = resources(json!({"memory": {"limit": 100663296, "swap": 201326592}}));
    g.mgr.set(&r3).expect("grow");
    assert_eq!(read(mem, "memory.limit_in_bytes"), "100663296");
}

#[test]
fn blkio_weight_is_set_or_refused_with_the_hosts_reason() {
    if !v1_host() {
        return;
    }
    let g = host_manager("weight");
    g.mgr.apply(-1).unwrap();
    let blk = g.mgr.path("blkio").unwrap();
    let r = resources(json!({"blockIO": {"weight": 300}}));
    match features::io_weight_file(blk) {
        Some(file) => {
            g.mgr.set(&r).expect("blkio weight");
            assert!(read(blk, file).contains("300"), "{file}");
        }
        // mq-deadline, kyber or none: no weight file at all.
        None => {
            let e = g.mgr.set(&r).unwrap_err().to_string();
            assert!(
                e.contains("blkio weight needs the BFQ or CFQ I/O scheduler")
                    && e.contains("blkio.weight"),
                "{e}"
            );
        }
    }
}

#[test]
fn realtime_limits_are_set_or_refused_with_the_hosts_reason() {
    if !v1_host() {
        return;
    }
    let g = host_manager("rt");
    g.mgr.apply(-1).unwrap();
    let r = resources(json!({"cpu": {"realtimePeriod": 1000000, "realtimeRuntime": 0}}));
    if features::rt_group_sched() {
        g.mgr.set(&r).expect("rt period");
        assert_eq!(
            read(g.mgr.path("cpu").unwrap(), "cpu.rt_period_us"),
            "1000000"
        );
    } else {
        let e = g.mgr.set(&r).unwrap_err().to_string();
        assert!(e.contains("RT group scheduler"), "{e}");
    }
}

#[test]
fn device_rules_are_enforced_on_v1() {
    if !v1_host() {
        return;
    }
    let g = host_manager("devv1");
    let mut kid = Kid::sh("read x; echo hi > /dev/null && echo opened || echo denied");
    g.mgr.apply(kid.pid()).unwrap();
    let r = resources(json!({"devices": [
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "rwm"}
    ]}));
    g.mgr.set(&r).unwrap();
    kid.send_line("go");
    assert_eq!(kid.read_line().trim(), "denied");
}

#[test]
fn device_updates_on_v1_write_only_the_difference() {
    if !v1_host() {
        return;
    }
    let g = host_manager("devdiff");
    g.mgr.apply(-1).unwrap();
    let dir = g.mgr.path("devices").unwrap();
    let first = resources(json!({"devices": [
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "r"}
    ]}));
    g.mgr.set(&first).unwrap();
    assert_eq!(read(dir, "devices.list"), "c 1:3 rwm\nc 1:5 r");
    let second = resources(json!({"devices": [
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"},
        {"allow": true, "type": "c", "major": 1, "minor": 9, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 9, "access": "rwm"}
    ]}));
    g.mgr.set(&second).unwrap();
    assert_eq!(read(dir, "devices.list"), "c 1:3 rw\nc 1:9 rwm");
    // Back to allow-all needs the reset path.
    g.mgr
        .set(&resources(
            json!({"devices": [{"allow": true, "access": "rwm"}]}),
        ))
        .unwrap();
    assert_eq!(read(dir, "devices.list"), "a *:* rwm");
}

#[test]
fn rejected_values_name_the_file_and_value() {
    if !v1_host() {
        return;
    }
    let g = host_manager("invalid");
    // The process holds ~8 MiB, so a 1-byte... (the kernel refuses a limit under usage)
    let mut kid = Kid::sh("x=$(head -c 8000000 /dev/zero | tr '\\0' a); echo ready; read y");
    g.mgr.apply(kid.pid()).unwrap();
    assert_eq!(kid.read_line().trim(), "ready");
    let err = g
        .mgr
        .set(&resources(json!({"memory": {"limit": 1}})))
        .unwrap_err();
    // The kernel's text is in the message once: no source to print it again in a chain.
    assert!(std::error::Error::source(&err).is_none(), "{err:?}");
    let e = err.to_string();
    assert!(
        e.contains("memory.limit_in_bytes") && e.contains("write 1 "),
        "{e}"
    );
    assert!(e.contains("Device or resource busy"), "{e}");

    let e = g
        .mgr
        .set(&resources(json!({"cpu": {"cpus": "99999"}})))
        .unwrap_err()
        .to_string();
    assert!(e.contains("cpuset.cpus") && e.contains("99999"), "{e}");
    // What the host has instead, from the parent's effective cpuset.
    assert!(e.contains("this host offers cpus"), "{e}");

    let e = g
        .mgr
        .set(&resources(json!({"cpu": {"shares": 100000000}})))
        .unwrap_err()
        .to_string();
    assert!(e.contains("maximum allowed cpu-shares"), "{e}");

    let e = g
        .mgr
        .set(&resources(json!({"memory": {"swappiness": 200}})))
        .unwrap_err()
        .to_string();
    assert!(e.contains("swappiness 200"), "{e}");

    let e = g
        .mgr
        .set(&resources(
            json!({"devices": [{"allow": true, "access": "rwx"}]}),
        ))
        .unwrap_err()
        .to_string();
    assert!(e.contains("\"rwx\""), "{e}");
}

#[test]
fn missing_controllers_error_like_runc() {
    let host = berth_cgroups::detect().unwrap();
    let g = host_manager("missing");
    g.mgr.apply(-1).unwrap();
    if host.v1_mount("net_cls").is_none() {
        // Packet classification with nothing to act on it is dropped with a warning.
        g.mgr
            .set(&resources(json!({"network": {"classID": 1048577}})))
            .expect("net_cls on a host without it is ignored");
    }
    if host.v1_mount("rdma").is_none() {
        let e = g
            .mgr
            .set(&resources(json!({"rdma": {"mlx5_0": {"hcaHandles": 1}}})))
            .unwrap_err();
        assert!(e.to_string().contains("rdma"), "{e}");
    }
    // Fields that ask for nothing need no controller.
    g.mgr
        .set(&resources(json!({"network": {}, "memory": {}})))
        .expect("empty sections are no-ops");
}

#[test]
fn set_on_a_cgroup_that_does_not_exist_fails() {
    let g = host_manager("absent");
    let e = g
        .mgr
        .set(&resources(json!({"pids": {"limit": 5}})))
        .unwrap_err();
    assert!(e.to_string().contains("does not exist"), "{e}");
    assert!(!g.mgr.exists());
}

#[test]
fn hugetlb_goes_to_whichever_hierarchy_has_it() {
    let host = berth_cgroups::detect().unwrap();
    let g = host_manager("huge");
    g.mgr.apply(-1).unwrap();
    // The smallest size this kernel offers (2MB on x86_64); none at all is checked too.
    let sizes = features::hugepage_sizes();
    let size = sizes.first().cloned().unwrap_or_else(|| "2MB".into());
    let r = resources(json!({"hugepageLimits": [{"pageSize": size, "limit": 4194304}]}));
    let result = g.mgr.set(&r);
    let v1_file = format!("hugetlb.{size}.limit_in_bytes");
    let v2_file = format!("hugetlb.{size}.max");
    let unified = g.mgr.unified_path().filter(|u| u.join(&v2_file).exists());
    if sizes.is_empty() {
        let e = result.unwrap_err().to_string();
        assert!(e.contains("hugetlb"), "{e}");
        return;
    }
    if let Some(dir) = g.mgr.path("hugetlb") {
        result.expect("v1 hugetlb");
        assert_eq!(read(dir, &v1_file), "4194304");
    } else if let Some(u) = unified {
        // Hybrid: hugetlb only in cgroup2, used from there.
        result.expect("v2 hugetlb on hybrid");
        assert_eq!(read(u, &v2_file), "4194304");
    } else {
        assert!(result.unwrap_err().to_string().contains("hugetlb"));
    }
    if g.mgr.path("hugetlb").is_some() || unified.is_some() {
        let stats = g.mgr.stats().unwrap();
        assert!(stats.hugetlb.contains_key(&size), "{:?}", stats.hugetlb);
    }
    let bad = resources(json!({"hugepageLimits": [{"pageSize": "2XB", "limit": 1}]}));
    if host.layout != Layout::V1 || g.mgr.path("hugetlb").is_some() {
        let e = g.mgr.set(&bad).unwrap_err().to_string();
        assert!(e.contains("2XB"), "{e}");
    }
}

#[test]
fn freeze_stops_a_running_process_and_thaw_resumes_it() {
    let g = host_manager("freeze");
    assert_freeze_stops_and_thaw_resumes(&g.mgr, "freeze");
}

#[test]
fn pids_lists_nested_cgroups_and_kill_all_kills_them() {
    let mut g = host_manager("kill");
    let mut a = Kid::sleep();
    let mut b = Kid::sh("trap '' TERM; echo ready; exec sleep 1000");
    g.mgr.apply(a.pid()).unwrap();
    g.mgr.apply(b.pid()).unwrap();
    // A nested cgroup the container made for itself.
    let primary = g
        .mgr
        .path("freezer")
        .or_else(|| g.mgr.path("pids"))
        .unwrap()
        .to_path_buf();
    let nested = primary.join("inner");
    std::fs::create_dir(&nested).unwrap();
    g.extra_dirs.push(nested.clone());
    let c = Kid::sleep();
    std::fs::write(nested.join("cgroup.procs"), c.pid().to_string()).unwrap();
    let mut pids = g.mgr.pids().unwrap();
    pids.sort();
    let mut want = vec![a.pid(), b.pid(), c.pid()];
    want.sort();
    assert_eq!(pids, want);

    g.mgr.kill_all(libc::SIGKILL).expect("kill_all");
    assert_eq!(a.wait_signal(), Some(libc::SIGKILL));
    assert_eq!(b.wait_signal(), Some(libc::SIGKILL));
    drop(c);
    eventually("the cgroup to empty", || g.mgr.pids().unwrap().is_empty());
    assert_eq!(g.mgr.freezer_state().unwrap(), FreezerState::Thawed);
    assert!(g
        .mgr
        .kill_all(12345)
        .unwrap_err()
        .to_string()
        .contains("12345"));
}

#[test]
fn kill_all_delivers_other_signals() {
    let g = host_manager("term");
    let mut a = Kid::sleep();
    g.mgr.apply(a.pid()).unwrap();
    g.mgr.kill_all(libc::SIGTERM).unwrap();
    assert_eq!(a.wait_signal(), Some(libc::SIGTERM));
}

#[test]
fn stats_report_memory_cpu_and_pids_of_a_real_process() {
    if !v1_host() {
        return;
    }
    let g = host_manager("stats");
    let mut kid = Kid::sh("x=$(head -c 16000000 /dev/zero | tr '\\0' a); echo ready; read y");
    g.mgr.apply(kid.pid()).unwrap();
    g.mgr
        .set(&resources(json!({"pids": {"limit": 10}})))
        .unwrap();
    assert_eq!(kid.read_line().trim(), "ready");
    let s = g.mgr.stats().expect("stats");
    // Only the shell's memory after the pipeline ran inside the cgroup is charged here, which
    // is at least the 16 MB string (charged when it was built, after joining).
    assert!(s.memory.usage.max >= 16_000_000, "{:?}", s.memory.usage);
    assert!(s.memory.usage.usage > 0);
    assert!(!s.memory.raw.is_empty());
    assert_eq!(s.pids.current, 1);
    assert_eq!(s.pids.limit, 10);
    assert!(s.cpu.usage.total > 0, "{:?}", s.cpu);
    assert!(!s.cpuset.cpus.is_empty());
    let v = serde_json::to_value(&s).unwrap();
    assert!(v["memory"]["usage"]["limit"].as_u64().unwrap() > 0);
    assert!(v["cpu"]["usage"]["percpu"].is_array());
    kid.send_line("done");
}

#[test]
fn of_process_finds_the_cgroups_a_process_was_put_in() {
    let g = host_manager("ofproc");
    let kid = Kid::sleep();
    g.mgr.apply(kid.pid()).unwrap();
    let found = CgroupManager::of_process(kid.pid() as u32).expect("of_process");
    assert_eq!(found.paths(), g.mgr.paths());
    assert_eq!(found.pids().unwrap(), vec![kid.pid()]);
    let s = found.stats().expect("stats of the found cgroups");
    assert_eq!(s.pids.current, 1);
    if g.mgr.path("memory").is_some() {
        let oc = s.memory.oom_control.expect("v1 memory.oom_control");
        assert_eq!(oc.oom_kill, 0);
        assert_eq!(found.oom_kill_count().unwrap(), 0);
    }
}

#[test]
fn of_process_of_a_missing_process_names_its_proc_file() {
    let e = CgroupManager::of_process(u32::MAX - 1)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("/proc/4294967294/cgroup") && e.contains("No such file"),
        "{e}"
    );
}

#[test]
fn destroy_removes_everything_and_can_be_repeated() {
    let g = host_manager("destroy");
    g.mgr.apply(-1).unwrap();
    let nested = g
        .mgr
        .path("memory")
        .or(g.mgr.unified_path())
        .unwrap()
        .join("sub");
    std::fs::create_dir(&nested).unwrap();
    assert!(g.mgr.exists());
    g.mgr.destroy().expect("destroy");
    assert!(!g.mgr.exists());
    for dir in g.mgr.paths().dirs() {
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
    g.mgr.destroy().expect("second destroy");
}

#[test]
fn destroy_of_a_busy_cgroup_names_it() {
    let g = host_manager("busy");
    let kid = Kid::sleep();
    g.mgr.apply(kid.pid()).unwrap();
    let e = g.mgr.destroy().unwrap_err().to_string();
    assert!(e.contains("remove cgroup") && e.contains("busy"), "{e}");
}

#[test]
fn systemd_driver_is_refused_with_the_reason() {
    let e = CgroupManager::new(Some("system.slice:berth:abc"), "abc", true).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("berth-abc.scope") && msg.contains("systemd"),
        "{msg}"
    );
    let e = CgroupManager::new(Some("/not/systemd"), "abc", true).unwrap_err();
    assert!(e.to_string().contains("slice:prefix:name"), "{e}");
}

#[test]
fn oom_kills_are_counted() {
    if !v1_host() {
        return;
    }
    let g = host_manager("oom");
    let mut kid = Kid::sh("read x; y=$(head -c 100000000 /dev/zero | tr '\\0' a); echo survived");
    g.mgr.apply(kid.pid()).unwrap();
    // Without swap accounting, swappiness 0 keeps the cgroup from swapping its way out.
    let memory = if features::swap_accounting(g.mgr.path("memory").unwrap()) {
        json!({"limit": 16777216, "swap": 16777216})
    } else {
        json!({"limit": 16777216, "swappiness": 0})
    };
    g.mgr.set(&resources(json!({ "memory": memory }))).unwrap();
    assert_eq!(g.mgr.oom_kill_count().unwrap(), 0);
    kid.send_line("go");
    // Either the shell or the tr in its pipeline is killed; the counter says so either way.
    let _ = kid.child.wait();
    assert!(g.mgr.oom_kill_count().unwrap() >= 1);
}

#[test]
fn check_before_update_refuses_a_limit_below_usage() {
    if !v1_host() {
        return;
    }
    let g = host_manager("check");
    let mut kid = Kid::sh("x=$(head -c 8000000 /dev/zero | tr '\\0' a); echo ready; read y");
    g.mgr.apply(kid.pid()).unwrap();
    assert_eq!(kid.read_line().trim(), "ready");
    let e = g
        .mgr
        .set(&resources(
            json!({"memory": {"limit": 4194304, "checkBeforeUpdate": true}}),
        ))
        .unwrap_err()
        .to_string();
    assert!(e.contains("below the current usage"), "{e}");
    assert_ne!(
        read(g.mgr.path("memory").unwrap(), "memory.limit_in_bytes"),
        "4194304"
    );
}

#[test]
fn default_path_resolves_below_own_cgroup_like_runc() {
    // Resolution only: nothing is created below the cgroups of whatever runs the tests.
    let mgr = CgroupManager::new(None, "berth-probe-id", false).unwrap();
    let own = berth_cgroups::own_cgroups().unwrap();
    let host = berth_cgroups::detect().unwrap();
    for m in &host.v1 {
        let c = &m.controllers[0];
        let Some(dir) = mgr.path(c) else { continue };
        let own_cg = own[c].strip_prefix(&m.root).unwrap_or(&own[c]);
        let want = m
            .mountpoint
            .join(own_cg.strip_prefix("/").unwrap_or(own_cg))
            .join("berth-probe-id");
        assert_eq!(dir, want.as_path());
    }
    if host.layout == Layout::Hybrid {
        let u = host.unified.unwrap();
        let own_cg = own[""].strip_prefix("/").unwrap();
        assert_eq!(
            mgr.unified_path().unwrap(),
            u.mountpoint.join(own_cg).join("berth-probe-id")
        );
    }
}

#[test]
fn apply_of_a_dead_pid_names_cgroup_procs() {
    let g = host_manager("deadpid");
    let mut kid = Kid::sleep();
    let pid = kid.pid();
    kid.child.kill().unwrap();
    kid.child.wait().unwrap();
    let e = g.mgr.apply(pid).unwrap_err().to_string();
    assert!(
        e.contains("cgroup.procs") && e.contains(&format!("write {pid} ")),
        "{e}"
    );
    assert!(e.contains("No such process"), "{e}");
}
