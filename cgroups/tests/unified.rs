//! The cgroup v2 code paths, driven on this host's cgroup2 mount (/sys/fs/cgroup/unified on a
//! hybrid host, /sys/fs/cgroup on a v2 one) through a manager forced to the V2 layout.

mod common;

use berth_cgroups::{bpf, Error, FreezerState, Layout};
use berth_tests::features;
use common::*;
use serde_json::json;

macro_rules! v2_or_skip {
    ($name:expr) => {
        match v2_manager($name) {
            Some(g) => g,
            None => {
                // A v1-only host: the v1 paths are covered by host_layout.rs.
                berth_tests::host_lacks("a cgroup2 mount");
                return;
            }
        }
    };
}

#[test]
fn apply_and_pids_on_v2() {
    let g = v2_or_skip!("v2apply");
    assert_eq!(g.mgr.layout(), Layout::V2);
    let kid = Kid::sleep();
    g.mgr.apply(kid.pid()).unwrap();
    let dir = g.mgr.unified_path().unwrap();
    assert_eq!(procs(dir), vec![kid.pid()]);
    assert_eq!(g.mgr.pids().unwrap(), vec![kid.pid()]);
    // Controllers the mount offers are enabled down to the container's cgroup.
    let root_ctrls = read(dir.parent().unwrap(), "cgroup.controllers");
    let mine = read(dir, "cgroup.controllers");
    assert_eq!(mine, root_ctrls);
}

#[test]
fn freeze_and_thaw_with_cgroup_freeze() {
    let g = v2_or_skip!("v2freeze");
    let kid = Kid::sleep();
    g.mgr.apply(kid.pid()).unwrap();
    let dir = g.mgr.unified_path().unwrap().to_path_buf();
    g.mgr.freeze().unwrap();
    assert_eq!(g.mgr.freezer_state().unwrap(), FreezerState::Frozen);
    assert!(read(&dir, "cgroup.events").contains("frozen 1"));
    g.mgr.thaw().unwrap();
    assert_eq!(g.mgr.freezer_state().unwrap(), FreezerState::Thawed);
    assert!(read(&dir, "cgroup.events").contains("frozen 0"));
}

#[test]
fn frozen_process_stops_running_on_v2() {
    let g = v2_or_skip!("v2stop");
    assert_freeze_stops_and_thaw_resumes(&g.mgr, "v2stop");
}

#[test]
fn kill_all_uses_cgroup_kill() {
    let g = v2_or_skip!("v2kill");
    let mut a = Kid::sleep();
    let mut b = Kid::sh("trap '' TERM INT; exec sleep 1000");
    g.mgr.apply(a.pid()).unwrap();
    g.mgr.apply(b.pid()).unwrap();
    assert!(g.mgr.unified_path().unwrap().join("cgroup.kill").exists());
    g.mgr.kill_all(libc::SIGKILL).unwrap();
    assert_eq!(a.wait_signal(), Some(libc::SIGKILL));
    assert_eq!(b.wait_signal(), Some(libc::SIGKILL));
    eventually("the cgroup to empty", || g.mgr.pids().unwrap().is_empty());
}

#[test]
fn kill_all_with_sigterm_freezes_signals_and_thaws() {
    let g = v2_or_skip!("v2term");
    let mut a = Kid::sleep();
    g.mgr.apply(a.pid()).unwrap();
    g.mgr.kill_all(libc::SIGTERM).unwrap();
    assert_eq!(a.wait_signal(), Some(libc::SIGTERM));
    assert_eq!(g.mgr.freezer_state().unwrap(), FreezerState::Thawed);
}

#[test]
fn ebpf_device_filter_denies_dev_null() {
    let g = v2_or_skip!("v2dev");
    let mut kid = Kid::sh(
        "read x; (echo hi > /dev/null) 2>/dev/zero && echo null-ok || echo null-denied; \
         head -c1 /dev/zero >/dev/zero && echo zero-ok || echo zero-denied",
    );
    g.mgr.apply(kid.pid()).unwrap();
    let r = resources(json!({"devices": [
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
        {"allow": false, "type": "c", "major": 1, "minor": 3, "access": "w"}
    ]}));
    g.mgr.set(&r).expect("attach device filter");
    let dir = g.mgr.unified_path().unwrap();
    assert_eq!(bpf::attached_count(dir).unwrap(), 1);
    kid.send_line("go");
    assert_eq!(kid.read_line().trim(), "null-denied");
    assert_eq!(kid.read_line().trim(), "zero-ok");

    // An update replaces the program instead of stacking a second one.
    let allow_all = resources(json!({"devices": [{"allow": true, "access": "rwm"}]}));
    g.mgr.set(&allow_all).unwrap();
    assert_eq!(bpf::attached_count(dir).unwrap(), 1);
    let mut kid2 = Kid::sh("read x; (echo hi > /dev/null) && echo null-ok || echo null-denied");
    g.mgr.apply(kid2.pid()).unwrap();
    kid2.send_line("go");
    assert_eq!(kid2.read_line().trim(), "null-ok");
}

#[test]
fn controllers_the_v2_mount_lacks_are_errors() {
    let g = v2_or_skip!("v2missing");
    g.mgr.apply(-1).unwrap();
    let have = read(g.mgr.unified_path().unwrap(), "cgroup.controllers");
    if !have.split_whitespace().any(|c| c == "memory") {
        let e = g
            .mgr
            .set(&resources(json!({"memory": {"limit": 1048576}})))
            .unwrap_err();
        assert!(matches!(e, Error::ControllerMissing { .. }), "{e}");
        assert!(e.to_string().contains("memory"), "{e}");
        let e = g
            .mgr
            .set(&resources(json!({"unified": {"memory.high": "1000000"}})))
            .unwrap_err();
        assert!(e.to_string().contains("memory.high"), "{e}");
    }
    let e = g
        .mgr
        .set(&resources(json!({"unified": {"../escape": "1"}})))
        .unwrap_err();
    assert!(e.to_string().contains("../escape"), "{e}");
    let e = g
        .mgr
        .set(&resources(json!({"cpu": {"realtimeRuntime": 1000}})))
        .unwrap_err();
    // Either no cpu controller here, or v2 refusing realtime: both name the cause.
    assert!(
        e.to_string().contains("cpu") || e.to_string().contains("realtime"),
        "{e}"
    );
    // v2 has no net_cls: ignored like runc.
    g.mgr
        .set(&resources(json!({"network": {"classID": 7}})))
        .expect("network ignored on v2");
}

#[test]
fn hugetlb_and_unified_keys_on_v2() {
    let g = v2_or_skip!("v2huge");
    g.mgr.apply(-1).unwrap();
    let dir = g.mgr.unified_path().unwrap().to_path_buf();
    let size = features::hugepage_sizes()
        .first()
        .cloned()
        .unwrap_or_else(|| "2MB".into());
    let file = format!("hugetlb.{size}.max");
    let limit = json!({"hugepageLimits": [{"pageSize": size, "limit": 2097152}]});
    if !dir.join(&file).exists() {
        // No hugetlb in this cgroup2 mount (or no such pages): the error says which.
        let e = g.mgr.set(&resources(limit)).unwrap_err().to_string();
        assert!(e.contains("hugetlb"), "{e}");
        let e = g
            .mgr
            .set(&resources(json!({"unified": {file.clone(): "4194304"}})))
            .unwrap_err()
            .to_string();
        assert!(e.contains(&file), "{e}");
        return;
    }
    g.mgr.set(&resources(limit)).unwrap();
    assert_eq!(read(&dir, &file), "2097152");
    g.mgr
        .set(&resources(json!({"unified": {file.clone(): "4194304"}})))
        .unwrap();
    assert_eq!(read(&dir, &file), "4194304");
    let e = g
        .mgr
        .set(&resources(json!({"unified": {file.clone(): "lots"}})))
        .unwrap_err()
        .to_string();
    assert!(e.contains(&file) && e.contains("lots"), "{e}");
}

#[test]
fn stats_on_v2_read_cpu_stat() {
    let g = v2_or_skip!("v2stats");
    let mut kid = Kid::sh("i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; echo done; read x");
    g.mgr.apply(kid.pid()).unwrap();
    assert_eq!(kid.read_line().trim(), "done");
    let s = g.mgr.stats().unwrap();
    assert!(s.cpu.usage.total > 0, "{:?}", s.cpu);
    assert!(s.cpu.usage.user + s.cpu.usage.kernel > 0);
    if g.mgr.unified_path().unwrap().join("cpu.pressure").exists() {
        let psi = s.cpu.psi.as_ref().expect("cpu psi");
        let json = serde_json::to_value(&s).unwrap();
        assert!(json["cpu"]["psi"]["some"]["avg10"].is_number(), "{psi:?}");
    }
    kid.send_line("x");
}

#[test]
fn of_process_on_v2_finds_the_unified_cgroup() {
    let g = v2_or_skip!("v2ofproc");
    let kid = Kid::sleep();
    g.mgr.apply(kid.pid()).unwrap();
    let unified = berth_cgroups::detect().unwrap().unified.unwrap();
    let host = berth_cgroups::HostCgroups::v2_at(unified.mountpoint);
    let found = berth_cgroups::CgroupManager::of_process_on(host, kid.pid() as u32).unwrap();
    assert_eq!(found.layout(), Layout::V2);
    assert_eq!(found.unified_path(), g.mgr.unified_path());
    let s = found.stats().unwrap();
    if found.unified_path().unwrap().join("memory.events").exists() {
        assert!(s.memory.events.is_some(), "{:?}", s.memory);
    }
}

#[test]
fn destroy_removes_nested_v2_cgroups() {
    let g = v2_or_skip!("v2destroy");
    g.mgr.apply(-1).unwrap();
    let dir = g.mgr.unified_path().unwrap().to_path_buf();
    std::fs::create_dir(dir.join("a")).unwrap();
    std::fs::create_dir(dir.join("a/b")).unwrap();
    g.mgr.destroy().unwrap();
    assert!(!dir.exists());
    assert!(!g.mgr.exists());
}
