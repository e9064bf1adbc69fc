//! Cgroup limits from config.json as the host sees them in the container's
//! cgroup files, changed by `update`, frozen by `pause`, read by `events`.
//! Works on v1, v2 and hybrid hosts: each file is looked up in the v1
//! hierarchy of its controller when one is mounted, else in cgroup2.

mod runtime_support;

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use berth_tests::{features, require_root, run, run_with_input, Bundle, TestEnv};
use runtime_support::*;
use serde_json::{json, Value};

const MIB: u64 = 1024 * 1024;

/// The directory of `controller` for the absolute cgroup path `cg`.
fn cg_dir(controller: &str, cg: &str) -> PathBuf {
    let v1 = PathBuf::from("/sys/fs/cgroup").join(controller);
    let base = if v1.is_dir() {
        v1
    } else {
        PathBuf::from("/sys/fs/cgroup")
    };
    base.join(cg.trim_start_matches('/'))
}

fn is_v1(controller: &str) -> bool {
    PathBuf::from("/sys/fs/cgroup").join(controller).is_dir()
}

/// Reads the first of `files` (v1 name, v2 name) that exists.
#[track_caller]
fn cg_read(controller: &str, cg: &str, v1_file: &str, v2_file: &str) -> String {
    let file = if is_v1(controller) { v1_file } else { v2_file };
    let path = cg_dir(controller, cg).join(file);
    fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_string()
}

fn limited_bundle(env: &TestEnv, cg: &str) -> Bundle {
    let bundle = writable_bundle(env, &["sleep", "1000"]);
    bundle.edit_config(|c| {
        c["linux"]["cgroupsPath"] = json!(cg);
        c["linux"]["resources"]["memory"] = json!({"limit": 64 * MIB});
        c["linux"]["resources"]["pids"] = json!({"limit": 50});
        c["linux"]["resources"]["cpu"] = json!({
            "shares": 512, "quota": 50000, "period": 100000, "cpus": features::first_cpu()
        });
    });
    bundle
}

#[test]
fn limits_show_in_the_hosts_cgroup_files() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-cglimits");
    let cg = format!("/{}", env.unique("cg"));
    let bundle = limited_bundle(&env, &cg);
    let id = env.unique("c");
    run_detached(&env, &bundle, &id);
    let pid = init_pid(&env, &id);

    let procs = fs::read_to_string(cg_dir("pids", &cg).join("cgroup.procs")).unwrap();
    assert!(
        procs.lines().any(|l| l == pid.to_string()),
        "{pid} not in {procs}"
    );
    let own = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(own.lines().all(|l| l.ends_with(&cg)), "{own}");

    assert_eq!(
        cg_read("memory", &cg, "memory.limit_in_bytes", "memory.max"),
        (64 * MIB).to_string()
    );
    assert_eq!(cg_read("pids", &cg, "pids.max", "pids.max"), "50");
    if is_v1("cpu") {
        assert_eq!(cg_read("cpu", &cg, "cpu.shares", ""), "512");
        assert_eq!(cg_read("cpu", &cg, "cpu.cfs_quota_us", ""), "50000");
        assert_eq!(cg_read("cpu", &cg, "cpu.cfs_period_us", ""), "100000");
    } else {
        assert_eq!(cg_read("cpu", &cg, "", "cpu.max"), "50000 100000");
    }
    assert_eq!(
        cg_read("cpuset", &cg, "cpuset.cpus", "cpuset.cpus"),
        features::first_cpu()
    );

    force_delete(&env, &id);
    assert!(
        cgroups_named(&env.unique("cg")).is_empty(),
        "cgroup left after delete"
    );
}

#[test]
fn pids_limit_stops_forks_inside() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-cgpids");
    let cg = format!("/{}", env.unique("cg"));
    let out = {
        let bundle = writable_bundle(
            &env,
            &[
                "sh",
                "-c",
                "for i in 1 2 3 4 5 6 7 8; do sleep 100 & done 2>&1; echo done",
            ],
        );
        bundle.edit_config(|c| {
            c["linux"]["cgroupsPath"] = json!(cg);
            c["linux"]["resources"]["pids"] = json!({"limit": 4});
        });
        run_bundle(&env, &bundle, "c")
    };
    // busybox sh exits 2 when it cannot fork; either way it said why.
    assert!(out.stdout.contains("can't fork"), "{}", out.stdout);
}

#[test]
fn update_changes_limits_of_a_running_container() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-cgupdate");
    let cg = format!("/{}", env.unique("cg"));
    let bundle = limited_bundle(&env, &cg);
    let id = env.unique("c");
    run_detached(&env, &bundle, &id);

    let resources = json!({
        "memory": {"limit": 128 * MIB},
        "pids": {"limit": 100},
        "cpu": {"shares": 256}
    });
    run_with_input(
        rt(&env).args(["update", "--resources", "-", &id]),
        resources.to_string().as_bytes(),
        Duration::from_secs(60),
    )
    .assert_success();
    assert_eq!(
        cg_read("memory", &cg, "memory.limit_in_bytes", "memory.max"),
        (128 * MIB).to_string()
    );
    assert_eq!(cg_read("pids", &cg, "pids.max", "pids.max"), "100");
    if is_v1("cpu") {
        assert_eq!(cg_read("cpu", &cg, "cpu.shares", ""), "256");
    }

    // The flags, runc-style.
    rt_run(
        &env,
        &[
            "update",
            "--memory",
            "100663296",
            "--pids-limit",
            "77",
            "--cpu-quota",
            "20000",
            &id,
        ],
    )
    .assert_success();
    assert_eq!(
        cg_read("memory", &cg, "memory.limit_in_bytes", "memory.max"),
        (96 * MIB).to_string()
    );
    assert_eq!(cg_read("pids", &cg, "pids.max", "pids.max"), "77");
    if is_v1("cpu") {
        assert_eq!(cg_read("cpu", &cg, "cpu.cfs_quota_us", ""), "20000");
    } else {
        assert!(cg_read("cpu", &cg, "", "cpu.max").starts_with("20000 "));
    }

    // Bad input changes nothing and says why.
    let out = run_with_input(
        rt(&env).args(["update", "--resources", "-", &id]),
        b"{not json",
        Duration::from_secs(60),
    );
    out.assert_failure();
    assert!(
        out.stderr.to_lowercase().contains("resources"),
        "{}",
        out.stderr
    );
    assert_eq!(cg_read("pids", &cg, "pids.max", "pids.max"), "77");
    let out = rt_run(&env, &["update", "--pids-limit", "5", &env.unique("ghost")]);
    out.assert_failure_mentioning("does not exist");
    force_delete(&env, &id);
}

#[test]
fn pause_freezes_and_resume_thaws() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-pause");
    let bundle = writable_bundle(
        &env,
        &[
            "sh",
            "-c",
            "i=0; while :; do i=$((i+1)); echo $i > /count.tmp; mv /count.tmp /count; done",
        ],
    );
    let cg = format!("/{}", env.unique("cg"));
    bundle.edit_config(|c| c["linux"]["cgroupsPath"] = json!(cg));
    let id = env.unique("c");
    run_detached(&env, &bundle, &id);
    let count = bundle.rootfs().join("count");
    wait_file(&count);

    rt_run(&env, &["pause", &id]).assert_success();
    assert_eq!(state(&env, &id)["status"], "paused");
    if is_v1("freezer") {
        assert_eq!(cg_read("freezer", &cg, "freezer.state", ""), "FROZEN");
    } else {
        assert_eq!(cg_read("freezer", &cg, "", "cgroup.freeze"), "1");
    }
    // Frozen: the counter does not move, however long we look.
    let frozen = fs::read_to_string(&count).unwrap();
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(10));
        assert_eq!(
            fs::read_to_string(&count).unwrap(),
            frozen,
            "counter moved while paused"
        );
    }
    // Pausing twice is an error; so is a kill-less delete.
    rt_run(&env, &["pause", &id]).assert_failure_mentioning("is not running: paused");
    rt_run(&env, &["delete", &id]).assert_failure_mentioning("that is not stopped");

    rt_run(&env, &["resume", &id]).assert_success();
    assert_eq!(state(&env, &id)["status"], "running");
    wait_until("counter moves after resume", || {
        fs::read_to_string(&count)
            .map(|c| !c.is_empty() && c != frozen)
            .unwrap_or(false)
    });
    rt_run(&env, &["resume", &id]).assert_failure_mentioning("is not paused");

    // delete --force of a paused container works too.
    rt_run(&env, &["pause", &id]).assert_success();
    force_delete(&env, &id);
    assert_no_trace(&env, &bundle, &id);
}

#[test]
fn events_stats_prints_runc_shaped_json() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-events");
    let cg = format!("/{}", env.unique("cg"));
    let bundle = limited_bundle(&env, &cg);
    bundle.args(&["sh", "-c", "sleep 1000 & sleep 1000"]);
    let id = env.unique("c");
    run_detached(&env, &bundle, &id);
    let out = rt_run(&env, &["events", "--stats", &id]);
    out.assert_success();
    let ev: Value = serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("events --stats: {e}: {}", out.stdout));
    assert_eq!(ev["type"], "stats", "{ev}");
    assert_eq!(ev["id"], id.as_str(), "{ev}");
    let data = &ev["data"];
    assert!(data["pids"]["current"].as_u64().unwrap() >= 2, "{ev}");
    assert_eq!(data["pids"]["limit"], 50, "{ev}");
    assert!(
        data["memory"]["usage"]["usage"].as_u64().unwrap() > 0,
        "{ev}"
    );
    assert_eq!(data["memory"]["usage"]["limit"], 64 * MIB, "{ev}");
    assert!(data["cpu"]["usage"]["total"].as_u64().is_some(), "{ev}");
    force_delete(&env, &id);
    let out = rt_run(&env, &["events", "--stats", &id]);
    out.assert_failure();
}

#[test]
fn relative_cgroups_path_is_below_the_runtimes_cgroup() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-cgrel");
    let rel = format!("{}/inner", env.unique("cg"));
    let bundle = writable_bundle(&env, &["sleep", "1000"]);
    bundle.edit_config(|c| {
        c["linux"]["cgroupsPath"] = json!(rel);
        c["linux"]["resources"]["pids"] = json!({"limit": 33});
    });
    let id = env.unique("c");
    run_detached(&env, &bundle, &id);
    let pid = init_pid(&env, &id);
    let mine = fs::read_to_string("/proc/self/cgroup").unwrap();
    let theirs = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    for line in theirs.lines() {
        let (hier, path) = line.rsplit_once(':').unwrap();
        let parent = mine
            .lines()
            .find_map(|l| {
                l.rsplit_once(':')
                    .filter(|(h, _)| *h == hier)
                    .map(|(_, p)| p)
            })
            .unwrap();
        let expected = format!("{}/{rel}", parent.trim_end_matches('/'));
        assert_eq!(path, expected, "hierarchy {hier}: {theirs}");
    }
    let pids_line = theirs
        .lines()
        .find(|l| l.contains(":pids:") || l.starts_with("0::"))
        .unwrap();
    let pids_path = pids_line.rsplit_once(':').unwrap().1;
    assert_eq!(cg_read("pids", pids_path, "pids.max", "pids.max"), "33");
    force_delete(&env, &id);
    // The container's own cgroup goes; its parent may be shared (like a pod's)
    // and stays, as with runc.
    assert!(!cg_dir("pids", pids_path).exists(), "{pids_path} left");
}

#[test]
fn an_impossible_limit_fails_create_and_leaves_no_cgroup() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-cgbad");
    let cg = format!("/{}", env.unique("cg"));
    let bundle = writable_bundle(&env, &["true"]);
    bundle.edit_config(|c| {
        c["linux"]["cgroupsPath"] = json!(cg);
        c["linux"]["resources"]["cpu"] = json!({"cpus": "999"});
    });
    let id = env.unique("c");
    let out = run_as(&env, &bundle, &id);
    out.assert_failure_mentioning("cpuset");
    out.assert_failure_mentioning("this host offers cpus");
    assert!(cgroups_named(&env.unique("cg")).is_empty(), "cgroup left");
    assert_no_trace(&env, &bundle, &id);
}

/// hugetlb lives in v1 or, on this project's hybrid hosts, only in cgroup2.
fn hugetlb_limit_file(cg: &str, size: &str) -> Option<PathBuf> {
    let cg = cg.trim_start_matches('/');
    [
        "/sys/fs/cgroup/hugetlb",
        "/sys/fs/cgroup/unified",
        "/sys/fs/cgroup",
    ]
    .iter()
    .map(|m| {
        PathBuf::from(m)
            .join(cg)
            .join(format!("hugetlb.{size}.max"))
    })
    .chain(std::iter::once(
        PathBuf::from("/sys/fs/cgroup/hugetlb")
            .join(cg)
            .join(format!("hugetlb.{size}.limit_in_bytes")),
    ))
    .find(|p| p.exists())
}

#[test]
fn memory_reservation_cpuset_mems_and_hugetlb() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-cgmore");
    let cg = format!("/{}", env.unique("cg"));
    let bundle = writable_bundle(&env, &["sleep", "1000"]);
    // The smallest huge page size the kernel has; a host without any is checked below.
    let size = features::hugepage_sizes().first().cloned();
    bundle.edit_config(|c| {
        c["linux"]["cgroupsPath"] = json!(cg);
        c["linux"]["resources"]["memory"] = json!({"limit": 64 * MIB, "reservation": 32 * MIB});
        c["linux"]["resources"]["cpu"] = json!({"mems": features::first_mem()});
        if let Some(size) = &size {
            c["linux"]["resources"]["hugepageLimits"] =
                json!([{"pageSize": size, "limit": 4 * MIB}]);
        }
    });
    let id = env.unique("c");
    run_detached(&env, &bundle, &id);
    assert_eq!(
        cg_read("memory", &cg, "memory.soft_limit_in_bytes", "memory.low"),
        (32 * MIB).to_string()
    );
    assert_eq!(
        cg_read("cpuset", &cg, "cpuset.mems", "cpuset.mems"),
        features::first_mem()
    );
    let out = rt_run(&env, &["events", "--stats", &id]);
    let ev: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    if let Some(size) = &size {
        if let Some(file) = hugetlb_limit_file(&cg, size) {
            assert_eq!(
                fs::read_to_string(&file).unwrap().trim(),
                (4 * MIB).to_string()
            );
            assert!(ev["data"]["hugetlb"][size].is_object(), "{ev}");
        }
    }
    force_delete(&env, &id);

    // A page size the kernel does not offer: refused, naming it.
    let missing = if size.as_deref() == Some("64KB") {
        "32KB"
    } else {
        "64KB"
    };
    bundle.edit_config(|c| {
        c["linux"]["resources"]["hugepageLimits"] =
            json!([{"pageSize": missing, "limit": 4 * MIB}]);
    });
    let id = env.unique("nohuge");
    let out = run_as(&env, &bundle, &id);
    out.assert_failure_mentioning("hugetlb");
    assert_no_trace(&env, &bundle, &id);
}

#[test]
fn swap_limit_is_set_or_refused_naming_swap_accounting() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-cgswap");
    let cg = format!("/{}", env.unique("cg"));
    let bundle = writable_bundle(&env, &["sleep", "1000"]);
    bundle.edit_config(|c| {
        c["linux"]["cgroupsPath"] = json!(cg);
        c["linux"]["resources"]["memory"] = json!({"limit": 64 * MIB});
    });
    let id = env.unique("c");
    run_detached(&env, &bundle, &id);
    let swap = (128 * MIB).to_string();
    let out = rt_run(
        &env,
        &[
            "update",
            "--memory",
            "67108864",
            "--memory-swap",
            &swap,
            &id,
        ],
    );
    if features::swap_accounting(&cg_dir("memory", &cg)) {
        out.assert_success();
        // v2 keeps swap apart from memory: 128 MiB total is 64 MiB of swap.
        let want = if is_v1("memory") { 128 * MIB } else { 64 * MIB };
        assert_eq!(
            cg_read(
                "memory",
                &cg,
                "memory.memsw.limit_in_bytes",
                "memory.swap.max"
            ),
            want.to_string()
        );
    } else {
        out.assert_failure_mentioning("needs swap accounting");
    }
    force_delete(&env, &id);
}

#[test]
fn update_blkio_weight_where_the_host_has_one() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-cgblkio");
    let cg = format!("/{}", env.unique("cg"));
    let bundle = writable_bundle(&env, &["sleep", "1000"]);
    bundle.edit_config(|c| c["linux"]["cgroupsPath"] = json!(cg));
    let id = env.unique("c");
    run_detached(&env, &bundle, &id);
    let dir = cg_dir(if is_v1("blkio") { "blkio" } else { "io" }, &cg);
    let out = rt_run(&env, &["update", "--blkio-weight", "500", &id]);
    match features::io_weight_file(&dir) {
        Some(file) => {
            out.assert_success();
            // blk-iocost's io.weight has its own scale: 500 of 10..1000 is 4950 of 1..10000.
            let want = if file == "io.weight" {
                "default 4950"
            } else {
                "500"
            };
            let got = fs::read_to_string(dir.join(file)).unwrap();
            assert!(got.contains(want), "{file}: {got}");
        }
        None => {
            out.assert_failure_mentioning("needs the BFQ");
        }
    }
    force_delete(&env, &id);
}

#[test]
fn every_way_in_lands_in_the_containers_cgroups() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-cgjoin");
    // Through the intermediate process that joins a namespace by path first.
    let netns = env.unique("cgjoin");
    run(env.command("ip").args(["netns", "add", &netns])).assert_success();
    let cg = format!("/{}", env.unique("joined"));
    let out = sh_in(&env, "cat /proc/self/cgroup", |c| {
        c["linux"]["cgroupsPath"] = json!(cg);
        let ns = c["linux"]["namespaces"].as_array_mut().unwrap();
        ns.retain(|n| n["type"] != "network");
        ns.push(json!({"type": "network", "path": format!("/var/run/netns/{netns}")}));
    });
    assert_in_cgroup(&out, &cg);
    run(env.command("ip").args(["netns", "del", &netns])).assert_success();

    // An exec into a container with a user namespace.
    let bundle = userns_bundle(&env, &["sleep", "60"]);
    let cg = format!("/{}", env.unique("userns"));
    bundle.edit_config(|c| c["linux"]["cgroupsPath"] = json!(cg));
    let id = env.unique("userns");
    create(&env, &bundle, &id);
    rt_run(&env, &["start", &id]).assert_success();
    let out = rt_run(&env, &["exec", &id, "cat", "/proc/self/cgroup"]);
    out.assert_success();
    assert_in_cgroup(&out.stdout, &cg);
    force_delete(&env, &id);
}

/// The seccomp filter Docker's default profile amounts to for clone3: ENOSYS, so that
/// callers fall back to clone. x86_64 only; other architectures pass everything.
fn clone3_enosys_filter() -> Vec<libc::sock_filter> {
    let stmt = |code: u16, k: u32| libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    };
    let jeq = |k: u32, jt: u8, jf: u8| libc::sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt,
        jf,
        k,
    };
    let ld = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    let ret = (libc::BPF_RET | libc::BPF_K) as u16;
    vec![
        stmt(ld, 4), // seccomp_data.arch
        jeq(0xc000_003e, 0, 3),
        stmt(ld, 0), // seccomp_data.nr
        jeq(libc::SYS_clone3 as u32, 0, 1),
        stmt(ret, libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32),
        stmt(ret, libc::SECCOMP_RET_ALLOW),
    ]
}

#[test]
fn without_clone3_the_container_still_starts_in_its_cgroup2_directory() {
    if !require_root() {
        return;
    }
    if !cfg!(target_arch = "x86_64") {
        berth_tests::skip("the clone3 filter is written for x86_64");
        return;
    }
    if !std::path::Path::new("/sys/fs/cgroup/unified/cgroup.procs").exists()
        && !std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
    {
        berth_tests::skip("no cgroup2 hierarchy");
        return;
    }
    let env = TestEnv::new("rt-noclone3");
    let bundle = writable_bundle(&env, &["cat", "/proc/self/cgroup"]);
    let cg = format!("/{}", env.unique("noclone3"));
    bundle.edit_config(|c| c["linux"]["cgroupsPath"] = json!(cg));
    let filter = clone3_enosys_filter();
    let mut cmd = rt(&env);
    cmd.args([
        "run",
        "--bundle",
        bundle.path().to_str().unwrap(),
        &env.unique("c"),
    ]);
    // An address, not a pointer, so the closure may cross threads as pre_exec wants.
    let (addr, len) = (filter.as_ptr() as usize, filter.len() as u16);
    // SAFETY: between fork and exec only two prctl calls run, on `filter`, which the parent
    // keeps alive until the command has been spawned.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
            let prog = libc::sock_fprog {
                len,
                filter: addr as *mut libc::sock_filter,
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &prog as *const libc::sock_fprog,
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = run(&mut cmd);
    drop(filter);
    out.assert_success();
    let unified = out
        .stdout
        .lines()
        .find(|l| l.starts_with("0::"))
        .unwrap_or_else(|| panic!("no cgroup2 line in {}", out.stdout));
    assert_eq!(unified, format!("0::{cg}"), "{}", out.stdout);
    assert_in_cgroup(&out.stdout, &cg);
}

#[test]
fn create_refuses_a_cgroup_another_container_uses() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-cginuse");
    let cg = format!("/{}", env.unique("shared"));
    let first = writable_bundle(&env, &["sleep", "600"]);
    first.edit_config(|c| c["linux"]["cgroupsPath"] = json!(cg));
    let id1 = env.unique("first");
    run_detached(&env, &first, &id1);
    // A second container naming the same cgroup would share (and on delete, kill) the first.
    let second = writable_bundle(&env, &["true"]);
    second.edit_config(|c| c["linux"]["cgroupsPath"] = json!(cg));
    let id2 = env.unique("second");
    try_create(&env, &second, &id2).assert_failure_mentioning("in use by 1 other process");
    assert!(!env.run().join("runtime").join(&id2).exists());
    // The first container and its cgroup are untouched.
    assert_eq!(wait_status(&env, &id1, "running")["status"], "running");
    assert!(cg_dir("pids", &cg).exists());
    force_delete(&env, &id1);
}
