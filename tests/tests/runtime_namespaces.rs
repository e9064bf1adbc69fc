//! Namespaces from config.json as the container sees them: new pid, uts,
//! ipc, net, user (with mappings), cgroup and time namespaces, joining a
//! network namespace by path, and running without a mount namespace.

mod runtime_support;

use std::fs;

use berth_tests::{require_root, run, Bundle, TestEnv};
use runtime_support::*;
use serde_json::{json, Value};

fn without_ns(c: &mut Value, kind: &str) {
    c["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .retain(|n| n["type"] != kind);
}

fn with_ns(c: &mut Value, ns: Value) {
    c["linux"]["namespaces"].as_array_mut().unwrap().push(ns);
}

fn host_ns(kind: &str) -> String {
    fs::read_link(format!("/proc/self/ns/{kind}"))
        .unwrap()
        .display()
        .to_string()
}

#[test]
fn new_pid_uts_ipc_net_namespaces() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-ns");
    let out = sh_in(
        &env,
        "echo $$; for n in pid uts ipc net; do readlink /proc/self/ns/$n; done; ls /sys/class/net",
        |_| {},
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1", "{out}");
    for (line, kind) in lines[1..5].iter().zip(["pid", "uts", "ipc", "net"]) {
        assert!(line.starts_with(&format!("{kind}:[")), "{out}");
        assert_ne!(*line, host_ns(kind), "{kind} namespace is the host's");
    }
    assert_eq!(&lines[5..], ["lo"], "a new netns holds only lo: {out}");
}

#[test]
fn without_a_namespace_the_host_one_is_shared() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-ns-host");
    let out = sh_in(
        &env,
        "readlink /proc/self/ns/net; readlink /proc/self/ns/ipc",
        |c| {
            without_ns(c, "network");
            without_ns(c, "ipc");
        },
    );
    assert_eq!(out, format!("{}\n{}\n", host_ns("net"), host_ns("ipc")));
}

#[test]
fn joins_a_network_namespace_by_path() {
    if !require_root() || !berth_tests::require_cmds(&["ip"]) {
        return;
    }
    let env = TestEnv::new("rt-netns");
    let name = env.unique("ns");
    run(env.command("ip").args(["netns", "add", &name])).assert_success();
    // Its lo is up, unlike the lo of a fresh netns.
    run(env
        .command("ip")
        .args(["-n", &name, "link", "set", "lo", "up"]))
    .assert_success();
    let path = format!("/var/run/netns/{name}");
    let expected = fs::read_link("/proc/self/ns/net").unwrap();
    let p = path.clone();
    let out = sh_in(
        &env,
        "readlink /proc/self/ns/net; cat /sys/class/net/lo/flags",
        move |c| {
            without_ns(c, "network");
            with_ns(c, json!({"type": "network", "path": p}));
        },
    );
    let ns_inode = fs::metadata(&path)
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .unwrap();
    let mut lines = out.lines();
    assert_eq!(lines.next().unwrap(), format!("net:[{ns_inode}]"));
    assert_ne!(expected.display().to_string(), format!("net:[{ns_inode}]"));
    let flags = u32::from_str_radix(lines.next().unwrap().trim_start_matches("0x"), 16).unwrap();
    assert_eq!(flags & 1, 1, "lo of the joined netns is not up: {out}");

    // A path that is not a namespace is named in the error.
    let bundle = Bundle::busybox(&env);
    let bogus = env.path().join("not-a-netns");
    fs::write(&bogus, "").unwrap();
    let b = bogus.display().to_string();
    bundle.edit_config(move |c| {
        without_ns(c, "network");
        with_ns(c, json!({"type": "network", "path": b}));
    });
    let id = env.unique("bad");
    let out = run_as(&env, &bundle, &id);
    out.assert_failure_mentioning("not-a-netns");
    assert_no_trace(&env, &bundle, &id);
    run(env.command("ip").args(["netns", "del", &name])).assert_success();
}

#[test]
fn user_namespace_with_mappings() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-userns");
    let bundle = userns_bundle(
        &env,
        &[
            "sh",
            "-c",
            "id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map; echo x > /owned; \
             cat /proc/self/cgroup",
        ],
    );
    let cgroup = format!("/{}", env.unique("userns-cg"));
    bundle.edit_config(|c| {
        c["linux"]["cgroupsPath"] = json!(cgroup);
        // sysfs cannot be mounted in a user namespace without its own netns
        // only when the netns is the host's; keep the default netns.
    });
    let out = run_bundle(&env, &bundle, "c");
    out.assert_success();
    let lines: Vec<Vec<&str>> = out
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["0"]);
    assert_eq!(lines[1], ["0"]);
    assert_eq!(lines[2], ["0", "100000", "65536"]);
    assert_eq!(lines[3], ["0", "100000", "65536"]);
    // The init is in the container's cgroups on every hierarchy (it joins them itself,
    // before it becomes the namespace's root), not left in the runtime's.
    let cgroup_lines: Vec<&str> = out.stdout.lines().skip(4).collect();
    assert_in_cgroup(&cgroup_lines.join("\n"), &cgroup);
    // Root inside is uid 100000 outside.
    let meta = fs::metadata(bundle.rootfs().join("owned")).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), 100000);

    // A new user namespace without mappings is refused.
    let bundle = Bundle::busybox(&env);
    bundle.edit_config(|c| with_ns(c, json!({"type": "user"})));
    let id = env.unique("nouserns");
    let out = run_as(&env, &bundle, &id);
    out.assert_failure_mentioning("Mappings");
    assert_no_trace(&env, &bundle, &id);
}

#[test]
fn user_namespace_container_with_its_state_behind_a_private_directory() {
    if !require_root() {
        return;
    }
    // containerd, podman and Docker keep runtime state under root-only directories; the
    // container's root (host uid 100000) may not pass them, yet create/start must work.
    let env = TestEnv::new("rt-userns-private");
    let bundle = userns_bundle(&env, &["sh", "-c", "id -u > /started"]);
    let private = env.path().join("private");
    fs::create_dir(&private).unwrap();
    fs::set_permissions(
        &private,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let root = private.join("state");
    let rt_private = |args: &[&str]| {
        run(
            std::process::Command::new(berth_tests::bin("berth-runtime"))
                .arg("--root")
                .arg(&root)
                .args(args),
        )
    };
    let id = env.unique("c");
    rt_private(&["create", "--bundle", bundle.path().to_str().unwrap(), &id]).assert_success();
    rt_private(&["start", &id]).assert_success();
    assert_eq!(wait_file(&bundle.rootfs().join("started")), "0\n");
    rt_private(&["delete", "--force", &id]).assert_success();
    assert!(!root.join(&id).exists());
}

#[test]
fn cgroup_namespace_shows_root() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-cgns");
    let path = format!("/{}", env.unique("cg"));
    let p = path.clone();
    let out = sh_in(
        &env,
        "cat /proc/self/cgroup; readlink /proc/self/ns/cgroup",
        move |c| {
            with_ns(c, json!({"type": "cgroup"}));
            c["linux"]["cgroupsPath"] = json!(p);
        },
    );
    let mut lines: Vec<&str> = out.lines().collect();
    let ns = lines.pop().unwrap();
    assert_ne!(ns, host_ns("cgroup"));
    for line in &lines {
        assert!(line.ends_with(":/"), "not at the namespace root: {out}");
    }
    // Without the namespace the host path shows.
    let p = path.clone();
    let out = sh_in(&env, "cat /proc/self/cgroup", move |c| {
        c["linux"]["cgroupsPath"] = json!(p)
    });
    assert!(out.contains(&path), "{out}");
}

#[test]
fn time_namespace_offsets() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-timens");
    let host_uptime: f64 = fs::read_to_string("/proc/uptime")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let day = 86_400i64;
    let out = sh_in(
        &env,
        "cat /proc/uptime; readlink /proc/self/ns/time",
        move |c| {
            with_ns(c, json!({"type": "time"}));
            c["linux"]["timeOffsets"] = json!({
                "monotonic": {"secs": 10 * day, "nanosecs": 0},
                "boottime": {"secs": 10 * day, "nanosecs": 0}
            });
        },
    );
    let mut lines = out.lines();
    let uptime: f64 = lines
        .next()
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // Ten days ahead of the host, whatever the time it took to get there.
    assert!(
        uptime >= host_uptime + (10 * day) as f64,
        "uptime {uptime} vs host {host_uptime}"
    );
    assert!(uptime < host_uptime + (11 * day) as f64, "uptime {uptime}");
    assert_ne!(lines.next().unwrap(), host_ns("time"));
}

#[test]
fn no_mount_namespace_means_chroot_only() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-nomntns");
    let bundle = Bundle::busybox(&env);
    bundle.args(&["sh", "-c", "readlink /proc/self/ns/mnt; ls /"]);
    bundle.edit_config(|c| {
        without_ns(c, "mount");
        // Without a mount namespace, mounts would land on the host: none.
        c["mounts"] = json!([]);
        c["linux"]["maskedPaths"] = json!([]);
        c["linux"]["readonlyPaths"] = json!([]);
        c["root"]["readonly"] = json!(false);
    });
    fs::create_dir_all(bundle.rootfs().join("proc")).unwrap();
    let out = run_bundle(&env, &bundle, "c");
    out.assert_success();
    let mut lines = out.stdout.lines();
    // /proc is not mounted in the rootfs: readlink fails, prints nothing.
    let first = lines.clone().next().unwrap_or("");
    assert!(
        !first.starts_with("mnt:[") || first == host_ns("mnt"),
        "{}",
        out.stdout
    );
    let entries: Vec<&str> = lines.by_ref().filter(|l| !l.starts_with("mnt:")).collect();
    assert!(
        entries.contains(&"bin") && entries.contains(&"etc"),
        "not chrooted: {}",
        out.stdout
    );
    assert!(
        !entries.contains(&"work"),
        "sees the host's /: {}",
        out.stdout
    );
    // Mounts it made would be the host's: there must be none in the rootfs.
    let left = mounts_mentioning(bundle.path().to_str().unwrap());
    assert!(left.is_empty(), "mounts on the host: {left:?}");
}

#[test]
fn exec_joins_the_user_and_cgroup_namespaces() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-userns-exec");
    let bundle = writable_bundle(&env, &["sleep", "1000"]);
    run(std::process::Command::new("chown")
        .args(["-R", "200000:200000"])
        .arg(bundle.rootfs()))
    .assert_success();
    let cg = format!("/{}", env.unique("cg"));
    bundle.edit_config(move |c| {
        with_ns(c, json!({"type": "user"}));
        with_ns(c, json!({"type": "cgroup"}));
        c["linux"]["cgroupsPath"] = json!(cg);
        c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
        c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
    });
    let id = env.unique("c");
    run_detached(&env, &bundle, &id);
    let out = rt_run(
        &env,
        &["exec", &id, "sh", "-c", "id -u; readlink /proc/self/ns/user; readlink /proc/1/ns/user; grep -v ':/$' /proc/self/cgroup; echo end"],
    );
    out.assert_success();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "0");
    assert_eq!(
        lines[1], lines[2],
        "exec is not in the init's user namespace"
    );
    assert_ne!(lines[1], host_ns("user"));
    assert_eq!(
        lines[3], "end",
        "exec sees host cgroup paths: {}",
        out.stdout
    );
    let out = rt_run(
        &env,
        &[
            "exec",
            "--user",
            "1000:1000",
            &id,
            "cat",
            "/proc/self/uid_map",
        ],
    );
    out.assert_success();
    assert!(out.stdout.contains("200000"), "{}", out.stdout);
    force_delete(&env, &id);
}
