//! `stats`, `update`, `events`, `info`, `version`, `system df|prune|boot` and `completion`
//! as a user types them. Every `berth` runs inside a network namespace the test makes (its
//! "host"), as in cli_walkthroughs.rs, so the berth-netd that `version`, `system prune` and
//! networked containers start keeps its bridge, nft table and DNS there; containers without
//! a network use `--network none`.

mod dockerd_support;
mod engine_support;
mod runtime_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_tests::{bin, fixtures, require_cmds, require_root, run, run_timeout, Output};
use engine_support::Host;

impl Host {
    fn inspect(&self, what: &str, format: &str) -> String {
        self.ok(&["inspect", "-f", format, what]).trim().to_string()
    }

    fn status(&self, name: &str) -> String {
        self.inspect(name, "{{.State.Status}}")
    }

    fn bundle(&self, id: &str) -> PathBuf {
        self.env.root().join("containers").join(id).join("bundle")
    }
}

fn can_run() -> bool {
    require_root() && require_cmds(&["ip", "nsenter", "nft"])
}

/// Split a table line on runs of 2+ spaces (Docker's tabwriter pads with at least 3).
fn cells(line: &str) -> Vec<String> {
    line.split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect()
}

/// The memory cgroup file `file` of process `pid`, on a v1 or v2 host.
fn memory_cgroup_file(pid: &str, v1: &str, v2: &str) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    for l in text.lines() {
        let mut f = l.splitn(3, ':');
        let (_, ctrl, path) = (f.next(), f.next().unwrap_or(""), f.next().unwrap_or(""));
        if ctrl.split(',').any(|c| c == "memory") {
            let p = Path::new("/sys/fs/cgroup/memory")
                .join(path.trim_start_matches('/'))
                .join(v1);
            return std::fs::read_to_string(p).unwrap().trim().to_string();
        }
        if ctrl.is_empty() && Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            let p = Path::new("/sys/fs/cgroup")
                .join(path.trim_start_matches('/'))
                .join(v2);
            return std::fs::read_to_string(p).unwrap().trim().to_string();
        }
    }
    panic!("no memory cgroup for {pid}: {text}");
}

#[test]
fn stats_shows_dockers_columns_for_running_and_stopped_containers() {
    if !can_run() {
        return;
    }
    let h = Host::new("sys-stats");
    h.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "busy",
        "busybox",
        "sh",
        "-c",
        "while true; do :; done",
    ]);
    h.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "idle",
        "--memory",
        "64m",
        "busybox",
        "sleep",
        "600",
    ]);
    h.ok(&[
        "create",
        "--network",
        "none",
        "--name",
        "never",
        "busybox",
        "true",
    ]);

    let out = h.ok(&["stats", "--no-stream"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        cells(lines[0]),
        [
            "CONTAINER ID",
            "NAME",
            "CPU %",
            "MEM USAGE / LIMIT",
            "MEM %",
            "NET I/O",
            "BLOCK I/O",
            "PIDS"
        ],
        "{out}"
    );
    assert_eq!(lines.len(), 3, "running containers only: {out}");
    let busy = lines.iter().find(|l| l.contains(" busy ")).expect(&out);
    let c = cells(busy);
    assert_eq!(c[0].len(), 12, "{busy}");
    let cpu: f64 = c[2].trim_end_matches('%').parse().expect(busy);
    assert!(cpu > 20.0, "a spinning shell uses CPU: {busy}");
    assert!(c[3].contains(" / ") && c[3].ends_with("iB"), "{busy}");
    assert!(c[4].ends_with('%'), "{busy}");
    assert_eq!(c[5], "0B / 0B", "no network: {busy}");
    assert_eq!(c[7], "1", "{busy}");
    let idle = lines.iter().find(|l| l.contains(" idle ")).expect(&out);
    assert!(
        cells(idle)[3].ends_with(" / 64MiB"),
        "the limit shows: {idle}"
    );

    // --format, -a (stopped containers show zeros), names and --no-trunc.
    let out = h.ok(&[
        "stats",
        "--no-stream",
        "-a",
        "--format",
        "{{.Name}} {{.CPUPerc}} {{.MemUsage}} {{.PIDs}}",
    ]);
    assert!(out.lines().any(|l| l == "never 0.00% 0B / 0B 0"), "{out}");
    assert_eq!(out.lines().count(), 3, "{out}");
    let id = h.inspect("idle", "{{.Id}}");
    let out = h.ok(&[
        "container",
        "stats",
        "--no-stream",
        "--no-trunc",
        "--format",
        "table {{.Container}}\t{{.ID}}\t{{.PIDs}}",
        "idle",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(cells(lines[0]), ["CONTAINER", "CONTAINER ID", "PIDS"]);
    assert_eq!(cells(lines[1]), ["idle", id.as_str(), "1"]);
    let out = h.ok(&["stats", "--no-stream", "--format", "json", "busy"]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect(&out);
    assert_eq!(v["Name"], "busy");

    let out = h.berth(&["stats", "--no-stream", "nosuch"]);
    assert_eq!(out.code(), Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains("No such container: nosuch"),
        "{}",
        out.stderr
    );

    // Streaming (not a terminal): a table every second until interrupted.
    let mut child = h
        .cmd(&["stats", "--format", "{{.Name}}", "idle"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().filter(|l| *l == "idle").count() >= 2, "{text}");
    h.ok(&["rm", "-f", "busy", "idle", "never"]);
}

#[test]
fn update_changes_a_running_containers_limits_and_the_next_starts() {
    if !can_run() {
        return;
    }
    let h = Host::new("sys-update");
    h.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "app",
        "--memory",
        "64m",
        "busybox",
        "sleep",
        "600",
    ]);
    let pid = h.inspect("app", "{{.State.Pid}}");
    assert_eq!(
        memory_cgroup_file(&pid, "memory.limit_in_bytes", "memory.max"),
        (64u64 << 20).to_string()
    );
    let out = h.ok(&[
        "update",
        "--memory",
        "128m",
        "--memory-swap",
        "256m",
        "--cpus",
        "0.5",
        "--pids-limit",
        "50",
        "--cpu-shares",
        "512",
        "app",
    ]);
    assert_eq!(out, "app\n");
    assert_eq!(
        memory_cgroup_file(&pid, "memory.limit_in_bytes", "memory.max"),
        (128u64 << 20).to_string(),
        "the running container has the new limit"
    );
    assert_eq!(
        h.inspect(
            "app",
            "{{.HostConfig.Memory}} {{.HostConfig.MemorySwap}} {{.HostConfig.NanoCpus}} {{.HostConfig.PidsLimit}} {{.HostConfig.CpuShares}}"
        ),
        format!("{} {} 500000000 50 512", 128u64 << 20, 256u64 << 20)
    );
    // The next start has them too (from the bundle's config.json).
    h.ok(&["restart", "-t", "1", "app"]);
    let pid2 = h.inspect("app", "{{.State.Pid}}");
    assert_ne!(pid, pid2);
    assert_eq!(
        memory_cgroup_file(&pid2, "memory.limit_in_bytes", "memory.max"),
        (128u64 << 20).to_string()
    );

    // A new restart policy applies from the next start.
    h.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "flaky",
        "busybox",
        "sh",
        "-c",
        "sleep 0.2; exit 3",
    ]);
    h.until("flaky to exit", || h.status("flaky") == "exited");
    h.ok(&["container", "update", "--restart", "on-failure:2", "flaky"]);
    assert_eq!(
        h.inspect(
            "flaky",
            "{{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}}"
        ),
        "on-failure:2"
    );
    h.ok(&["start", "flaky"]);
    h.until("two restarts", || {
        h.inspect("flaky", "{{.State.Status}} {{.RestartCount}}") == "exited 2"
    });

    // Bad input, in Docker's words.
    let out = h.berth(&["update", "app"]);
    assert_eq!(out.code(), Some(1));
    assert!(
        out.stderr.contains("you must provide one or more flags"),
        "{}",
        out.stderr
    );
    let out = h.berth(&["update", "--cpus", "999", "app"]);
    assert_eq!(out.code(), Some(1));
    assert!(
        out.stderr.contains("Range of CPUs is from 0.01"),
        "{}",
        out.stderr
    );
    let out = h.berth(&["update", "--memory", "512m", "app"]);
    assert_eq!(out.code(), Some(1));
    assert!(
        out.stderr
            .contains("Memory limit should be smaller than already set memoryswap limit"),
        "{}",
        out.stderr
    );
    let out = h.berth(&["update", "--restart", "sometimes", "app"]);
    assert_eq!(out.code(), Some(1));
    assert!(
        out.stderr.contains("invalid restart policy"),
        "{}",
        out.stderr
    );
    let out = h.berth(&["update", "--memory", "100m", "nosuch"]);
    assert_eq!(out.code(), Some(1));
    assert!(
        out.stderr.contains("No such container: nosuch"),
        "{}",
        out.stderr
    );
    h.ok(&[
        "run",
        "-d",
        "--rm",
        "--network",
        "none",
        "--name",
        "gone",
        "busybox",
        "sleep",
        "600",
    ]);
    let out = h.berth(&["update", "--restart", "always", "gone"]);
    assert_eq!(out.code(), Some(1));
    assert!(
        out.stderr.contains("AutoRemove is enabled"),
        "{}",
        out.stderr
    );
    h.ok(&["rm", "-f", "app", "flaky", "gone"]);
}

/// `2026-12-05T19:00:00.123456789Z container start <64 hex> (image=busybox, name=web)`
fn check_line(l: &str) -> (String, String, String) {
    let mut w = l.splitn(4, ' ');
    let (time, kind, rest) = (w.next().unwrap(), w.next().unwrap(), l);
    assert_eq!(time.len(), 30, "nine digits of nanoseconds: {l}");
    assert!(time.ends_with('Z') && time.as_bytes()[10] == b'T', "{l}");
    let open = rest.find(" (").unwrap_or(rest.len());
    let head: Vec<&str> = rest[..open].split(' ').collect();
    let actor = head.last().unwrap().to_string();
    let action = head[2..head.len() - 1].join(" ");
    if open < rest.len() {
        assert!(rest.ends_with(')'), "{l}");
    }
    (kind.to_string(), action, actor)
}

#[test]
fn events_follow_the_lifecycle_in_dockers_line_format() {
    if !can_run() {
        return;
    }
    let h = Host::new("sys-events");
    let log = h.env.path().join("events.out");
    let mut follower = h
        .cmd(&["events"])
        .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let id = h.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "web",
        "--label",
        "tier=front",
        "busybox",
        "sleep",
        "600",
    ]);
    let id = id.trim().to_string();
    h.ok(&["exec", "web", "true"]);
    h.ok(&["pause", "web"]);
    h.ok(&["unpause", "web"]);
    h.ok(&["rename", "web", "web2"]);
    h.ok(&["stop", "-t", "1", "web2"]);
    // Docker's order, kill, die, stop, is in the log by the time stop returns.
    let written = std::fs::read_to_string(h.env.run().join("events.log")).unwrap();
    let actions: Vec<String> = written
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["Actor"]["ID"] == id.as_str())
        .map(|v| v["Action"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        actions[actions.len() - 4..],
        ["kill", "kill", "die", "stop"],
        "{written}"
    );
    h.until("the die event", || {
        std::fs::read_to_string(&log).unwrap().contains(" die ")
    });
    h.ok(&["rm", "web2"]);
    h.ok(&["volume", "create", "data"]);
    h.ok(&["volume", "rm", "data"]);
    let out = h.berth(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "exit 4",
    ]);
    assert_eq!(out.code(), Some(4), "{}", out.stderr);
    h.until("the destroy event of the --rm container", || {
        std::fs::read_to_string(&log)
            .unwrap()
            .matches(" destroy ")
            .count()
            >= 2
    });
    std::thread::sleep(Duration::from_millis(300));
    let _ = follower.kill();
    let _ = follower.wait();

    let text = std::fs::read_to_string(&log).unwrap();
    let events: Vec<(String, String, String)> = text.lines().map(check_line).collect();
    let mut of_web: Vec<&str> = events
        .iter()
        .filter(|(k, _, a)| k == "container" && *a == id)
        .map(|(_, action, _)| action.split(':').next().unwrap())
        .collect();
    // SIGTERM, then SIGKILL after the timeout: `sleep` as pid 1 ignores the first.
    of_web.dedup();
    assert_eq!(
        of_web,
        [
            "create",
            "start",
            "exec_create",
            "exec_start",
            "exec_die",
            "pause",
            "unpause",
            "rename",
            "kill",
            "die",
            "stop",
            "destroy"
        ]
        .iter()
        .filter(|a| of_web.contains(a))
        .copied()
        .collect::<Vec<_>>(),
        "in order: {text}"
    );
    for want in [
        "create",
        "start",
        "exec_create",
        "exec_start",
        "pause",
        "unpause",
        "rename",
        "kill",
        "die",
        "stop",
        "destroy",
    ] {
        assert!(of_web.contains(&want), "{want} missing: {text}");
    }
    let start = text
        .lines()
        .find(|l| l.contains(" container start "))
        .unwrap();
    assert!(
        start.ends_with(&format!(
            "container start {id} (image=busybox, name=web, tier=front)"
        )),
        "{start}"
    );
    assert!(
        text.contains("exitCode=4"),
        "the --rm container's die: {text}"
    );
    assert!(text.contains("oldName=/web"), "{text}");
    assert!(text.contains("volume create data (driver=local)"), "{text}");
    assert!(
        text.contains("volume destroy data (driver=local)"),
        "{text}"
    );

    // The past, through --since/--until, --filter and --format.
    let out = h.ok(&[
        "events",
        "--since",
        "5m",
        "--until",
        "0s",
        "--filter",
        "event=die",
        "--format",
        "{{.Type}} {{.Action}} {{.Actor.Attributes.name}} {{.Actor.Attributes.exitCode}}",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert_eq!(lines[0], "container die web2 137");
    assert!(
        lines[1].starts_with("container die ") && lines[1].ends_with(" 4"),
        "{out}"
    );
    let out = h.ok(&[
        "system",
        "events",
        "--since",
        "5m",
        "--until",
        "0s",
        "--filter",
        "type=volume",
        "--format",
        "{{json .}}",
    ]);
    let v: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(v.len(), 2, "{out}");
    assert_eq!(v[0]["Type"], "volume");
    assert_eq!(v[0]["Action"], "create");
    assert_eq!(v[0]["Actor"]["ID"], "data");
    assert!(v[0]["timeNano"].as_i64().unwrap() > 0);
    let out = h.ok(&[
        "events",
        "--since",
        "5m",
        "--until",
        "0s",
        "--filter",
        "container=web2",
        "--filter",
        "event=stop",
    ]);
    assert_eq!(out.lines().count(), 1, "{out}");
    let out = h.berth(&["events", "--filter", "bogus=1", "--until", "0s"]);
    assert_eq!(out.code(), Some(1));
    assert!(
        out.stderr.contains("invalid filter 'bogus'"),
        "{}",
        out.stderr
    );
    let out = h.berth(&["events", "--since", "yesterday", "--until", "0s"]);
    assert_eq!(out.code(), Some(1));

    // Concurrent commands: every line whole.
    let mut children: Vec<_> = (0..8)
        .map(|i| {
            h.cmd(&["volume", "create", &format!("v{i}")])
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children.iter_mut() {
        assert!(c.wait().unwrap().success());
    }
    let log = std::fs::read_to_string(h.env.run().join("events.log")).unwrap();
    for l in log.lines() {
        serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{e}: {l}"));
    }
    assert_eq!(
        log.matches("\"Action\":\"create\",\"Actor\":{\"ID\":\"v")
            .count(),
        8,
        "{log}"
    );

    // --until in the future (a Unix time; a duration means that long ago): follows, then
    // stops by itself.
    let soon = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        + 1.0;
    let t0 = Instant::now();
    let child = h
        .cmd(&["events", "--until", &format!("{soon:.3}")])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    h.ok(&["volume", "create", "late"]);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(
        t0.elapsed() >= Duration::from_millis(800),
        "{:?}",
        t0.elapsed()
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("volume create late"), "{text}");
}

/// `die` and `start` of the restarts a restart policy makes, as `docker events` shows them.
#[test]
fn events_show_the_restarts_of_a_restart_policy() {
    if !can_run() {
        return;
    }
    let h = Host::new("sys-restartev");
    let id = h.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--restart",
        "on-failure:2",
        "--name",
        "flaky",
        "busybox",
        "sh",
        "-c",
        "sleep 0.2; exit 3",
    ]);
    let id = id.trim().to_string();
    h.until("the third run's end", || {
        h.status("flaky") == "exited" && h.inspect("flaky", "{{.RestartCount}}") == "2"
    });
    let events = || {
        h.ok(&[
            "events",
            "--since",
            "5m",
            "--until",
            "0s",
            "--filter",
            "container=flaky",
            "--format",
            "{{.Action}} {{.Actor.Attributes.exitCode}}",
        ])
    };
    // The last die comes from the exit command, which may still be running.
    h.until("the last die", || events().matches("die").count() >= 3);
    let out = events();
    let got: Vec<&str> = out.lines().map(str::trim_end).collect();
    assert_eq!(
        got,
        ["create", "start", "die 3", "start", "die 3", "start", "die 3"],
        "{out}"
    );
    // In Docker's line format too, with the container's attributes.
    let out = h.ok(&[
        "events",
        "--since",
        "5m",
        "--until",
        "0s",
        "--filter",
        "event=start",
    ]);
    let starts: Vec<&str> = out.lines().collect();
    assert_eq!(starts.len(), 3, "{out}");
    for l in starts {
        assert!(
            l.ends_with(&format!("container start {id} (image=busybox, name=flaky)")),
            "{l}"
        );
    }

    // `always`, stopped by the user: its restarts, then kill, die, stop.
    h.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--restart",
        "always",
        "--name",
        "loop",
        "busybox",
        "sh",
        "-c",
        // Ends twice (status 0), then stays up: /tmp lives on across restarts.
        "[ -e /tmp/2 ] && exec sleep 600; [ -e /tmp/1 ] && touch /tmp/2; touch /tmp/1",
    ]);
    h.until("the third run", || {
        h.inspect("loop", "{{.State.Status}} {{.RestartCount}}") == "running 2"
    });
    h.ok(&["stop", "-t", "1", "loop"]);
    let out = h.ok(&[
        "events",
        "--since",
        "5m",
        "--until",
        "0s",
        "--filter",
        "container=loop",
        "--format",
        "{{.Action}}",
    ]);
    let got: Vec<&str> = out.lines().collect();
    // `sleep` as pid 1 ignores SIGTERM: SIGKILL after the second.
    assert_eq!(
        got,
        ["create", "start", "die", "start", "die", "start", "kill", "kill", "die", "stop"],
        "{out}"
    );
    h.ok(&["rm", "-f", "flaky", "loop"]);
}

#[test]
fn info_version_df_and_prune_read_like_dockers() {
    if !can_run() {
        return;
    }
    let h = Host::new("sys-info");
    h.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "up",
        "busybox",
        "sleep",
        "600",
    ]);
    h.ok(&[
        "run",
        "--network",
        "none",
        "--name",
        "done",
        "-v",
        "/data",
        "busybox",
        "sh",
        "-c",
        "echo hi > /data/f; echo x > /f",
    ]);
    h.ok(&["volume", "create", "named"]);
    h.ok(&["network", "create", "spare"]);

    let out = h.ok(&["info"]);
    for want in [
        "Client:",
        "Server:",
        " Containers: 2",
        "  Running: 1",
        "  Paused: 0",
        "  Stopped: 1",
        " Images: 1",
        " Server Version: ",
        " Storage Driver: overlay2",
        " Cgroup Driver: cgroupfs",
        " Cgroup Version: ",
        " Kernel Version: ",
        " Operating System: ",
        " OSType: linux",
        " Architecture: ",
        " CPUs: ",
        " Total Memory: ",
        " Berth Root Dir: ",
    ] {
        assert!(out.contains(want), "{want:?} missing:\n{out}");
    }
    assert!(
        out.contains(&format!(" Berth Root Dir: {}", h.env.root().display())),
        "{out}"
    );
    let cg = h.ok(&["info", "--format", "{{.CgroupVersion}}"]);
    assert!(["1", "2", "hybrid"].contains(&cg.trim()), "{cg}");
    assert_eq!(
        h.ok(&[
            "system",
            "info",
            "--format",
            "{{.Containers}} {{.ContainersRunning}} {{.Driver}} {{.OSType}}"
        ]),
        "2 1 overlay2 linux\n"
    );

    let out = h.ok(&["version"]);
    for want in [
        "Client: Berth",
        " Version:",
        "Server: Berth",
        " berth-imaged:",
        " berth-netd:",
        "  API version:      berth.netd.v1",
        " berth-runtime:",
    ] {
        assert!(out.contains(want), "{want:?} missing:\n{out}");
    }
    let out = h.ok(&[
        "version",
        "--format",
        "{{.Client.Version}} {{.Server.Version}}",
    ]);
    let v: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(v.len(), 2);
    assert_eq!(v[0], v[1]);

    let out = h.ok(&["system", "df"]);
    let rows: Vec<Vec<String>> = out.lines().map(cells).collect();
    assert_eq!(
        rows[0],
        ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"],
        "{out}"
    );
    assert_eq!(rows[1][0], "Images");
    assert_eq!(&rows[2][..3], ["Containers", "2", "1"], "{out}");
    assert_eq!(&rows[3][..3], ["Local Volumes", "2", "1"], "{out}");
    let out = h.ok(&["system", "df", "-v"]);
    assert!(out.contains("Containers space usage:"), "{out}");
    assert!(out.contains("Local Volumes space usage:"), "{out}");
    assert!(out.contains("VOLUME NAME"), "{out}");
    let out = h.ok(&["system", "df", "--format", "{{.Type}}={{.TotalCount}}"]);
    assert_eq!(out, "Images=1\nContainers=2\nLocal Volumes=2\n");

    // Without -f it asks, and "no" keeps everything.
    let out = berth_tests::run_with_input(
        &mut h.cmd(&["system", "prune"]),
        b"n\n",
        Duration::from_secs(30),
    );
    out.assert_success();
    assert!(out.stdout.contains("WARNING! This will remove:\n  - all stopped containers\n  - all networks not used by at least one container\n  - all dangling images"), "{}", out.stdout);
    assert_eq!(h.ok(&["ps", "-aq"]).lines().count(), 2);

    let out = h.ok(&["system", "prune", "-f", "--volumes"]);
    assert!(out.contains("Deleted Containers:\n"), "{out}");
    assert!(out.contains("Deleted Networks:\nspare\n"), "{out}");
    assert!(out.contains("Deleted Volumes:\n"), "{out}");
    assert!(
        out.lines()
            .last()
            .unwrap()
            .starts_with("Total reclaimed space: "),
        "{out}"
    );
    assert_eq!(
        h.ok(&["ps", "-aq"]).lines().count(),
        1,
        "the running one stays"
    );
    // Named volumes stay (Docker ≥ 23 prunes anonymous ones only), and so does the image
    // a container uses.
    assert_eq!(h.ok(&["volume", "ls", "-q"]), "named\n");
    assert_eq!(h.ok(&["images", "-q"]).lines().count(), 1);
    h.ok(&["rm", "-f", "up"]);
    let out = h.ok(&["system", "prune", "-a", "-f"]);
    assert!(out.contains("Deleted Images:"), "{out}");
    assert_eq!(h.ok(&["images", "-q"]), "");
}

#[test]
fn system_boot_brings_back_always_and_unless_stopped_containers_after_a_reboot() {
    if !can_run() {
        return;
    }
    let h = Host::new("sys-boot");
    // Made in the order that boot must not follow: web links to db, which is newer.
    h.ok(&[
        "run",
        "-d",
        "--restart",
        "always",
        "--name",
        "cache",
        "busybox",
        "sleep",
        "600",
    ]);
    h.ok(&[
        "run",
        "-d",
        "--restart",
        "always",
        "--name",
        "db",
        "busybox",
        "sleep",
        "600",
    ]);
    h.ok(&[
        "run",
        "-d",
        "--restart",
        "always",
        "--name",
        "web",
        "--link",
        "db:database",
        "--link",
        "cache",
        "busybox",
        "sleep",
        "600",
    ]);
    h.ok(&[
        "run",
        "-d",
        "--restart",
        "unless-stopped",
        "--network",
        "none",
        "--name",
        "kept",
        "busybox",
        "sleep",
        "600",
    ]);
    h.ok(&[
        "run",
        "-d",
        "--restart",
        "unless-stopped",
        "--network",
        "none",
        "--name",
        "held",
        "busybox",
        "sleep",
        "600",
    ]);
    h.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "plain",
        "busybox",
        "sleep",
        "600",
    ]);
    h.ok(&["stop", "-t", "1", "held"]);
    // A container made before is re-parented at boot: rebuild the order from the links.
    h.ok(&["rm", "-f", "db"]);
    h.ok(&[
        "run",
        "-d",
        "--restart",
        "always",
        "--name",
        "db",
        "busybox",
        "sleep",
        "600",
    ]);
    h.ok(&[
        "create",
        "--restart",
        "always",
        "--network",
        "none",
        "--name",
        "fresh",
        "busybox",
        "true",
    ]);
    let db_ip = h.inspect("db", "{{.NetworkSettings.Networks.bridge.IPAddress}}");
    assert!(!db_ip.is_empty());
    // On a dual-stack network, an IPv6 address that is not the lowest free one any more
    // (the holder of ::2 is gone): boot must ask for it again, not take ::2. Where the
    // kernel has IPv6.
    let v6 = berth_tests::features::ipv6();
    let six_ip6 = "{{.NetworkSettings.Networks.ds.GlobalIPv6Address}}";
    if v6 {
        let ds = [
            "network",
            "create",
            "--ipv6",
            "--subnet",
            "10.234.30.0/24",
            "--subnet",
            "fd00:234:30::/64",
            "ds",
        ];
        h.ok(&ds);
        for n in ["gone", "six"] {
            h.ok(&[
                "run",
                "-d",
                "--restart",
                "always",
                "--network",
                "ds",
                "--name",
                n,
                "busybox",
                "sleep",
                "600",
            ]);
        }
        h.ok(&["rm", "-f", "gone"]);
        assert_eq!(h.inspect("six", six_ip6), "fd00:234:30::3");
    }

    // A nothing-to-do boot changes nothing.
    assert_eq!(h.ok(&["system", "boot"]), "");

    // The reboot: every shim and container process dies, the roots are unmounted and
    // the network namespaces are gone (/run is a tmpfs).
    let ids: Vec<String> = h
        .ok(&["ps", "-aq", "--no-trunc"])
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(ids.len(), 7 + usize::from(v6));
    for id in &ids {
        for f in ["shim.pid", "init.pid"] {
            if let Ok(pid) = std::fs::read_to_string(h.bundle(id).join(f)) {
                let _ = run(Command::new("kill").args(["-9", pid.trim()]));
            }
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    for id in &ids {
        let _ = run(Command::new("umount")
            .arg("-l")
            .arg(h.bundle(id).join("rootfs")));
        let ns = h.env.run().join("netns").join(id);
        if ns.exists() {
            let _ = run(Command::new("umount").arg("-l").arg(&ns));
            std::fs::remove_file(&ns).unwrap();
        }
    }
    // The daemons go too, and with them the bridge and the nft rules (the namespace is
    // the test's "host": its links and ruleset are what a reboot clears).
    let run_dir = h.env.run().display().to_string();
    let mut killed = 0;
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let words: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|w| String::from_utf8_lossy(w).into_owned())
            .collect();
        let daemon = words
            .first()
            .is_some_and(|w| w.ends_with("berth-netd") || w.ends_with("berth-imaged"));
        if daemon && words.contains(&run_dir) {
            killed += 1;
            let _ = run(Command::new("kill")
                .arg("-9")
                .arg(e.file_name().to_string_lossy().as_ref()));
        }
    }
    assert_eq!(killed, 2, "berth-imaged and berth-netd");
    let links = run(Command::new("nsenter")
        .arg(format!("--net={}", h.ns.display()))
        .args(["ip", "-o", "link", "show", "type", "bridge"]));
    for l in links.stdout.lines() {
        let name = l.split(": ").nth(1).unwrap_or("").to_string();
        run(Command::new("nsenter")
            .arg(format!("--net={}", h.ns.display()))
            .args(["ip", "link", "del", &name]))
        .assert_success();
    }
    run(Command::new("nsenter")
        .arg(format!("--net={}", h.ns.display()))
        .args(["nft", "flush", "ruleset"]))
    .assert_success();
    for n in ["cache", "db", "web", "kept", "held", "plain"] {
        assert_eq!(h.status(n), "exited", "{n} after the reboot");
    }

    let out = h.ok(&["system", "boot"]);
    let started: Vec<&str> = out.lines().collect();
    assert_eq!(started.len(), 4 + usize::from(v6), "{out}");
    let pos = |n: &str| started.iter().position(|s| *s == n).expect(n);
    assert!(
        pos("db") < pos("web") && pos("cache") < pos("web"),
        "links first: {out}"
    );
    for n in ["cache", "db", "web", "kept"] {
        assert_eq!(h.status(n), "running", "{n}");
    }
    assert_eq!(
        h.status("held"),
        "exited",
        "stopped by the user: stays down"
    );
    assert_eq!(h.status("plain"), "exited", "no restart policy");
    assert_eq!(h.status("fresh"), "created", "never started: stays so");
    // Their networks are back, with the addresses of before.
    let web = h.inspect("web", "{{.Id}}");
    assert!(h.env.run().join("netns").join(&web).exists());
    assert_eq!(
        h.inspect("db", "{{.NetworkSettings.Networks.bridge.IPAddress}}"),
        db_ip
    );
    if v6 {
        assert_eq!(h.inspect("six", six_ip6), "fd00:234:30::3");
        let addrs = h.ok(&["exec", "six", "ip", "-o", "-6", "addr"]);
        assert!(addrs.contains("fd00:234:30::3/64"), "{addrs}");
    }
    let out = h.berth(&["exec", "web", "ping", "-c", "1", "-W", "2", &db_ip]);
    assert!(
        out.success(),
        "web reaches db: {} {}",
        out.stdout,
        out.stderr
    );
    // And they still stop and go away as usual.
    h.ok(&[
        "rm", "-f", "cache", "db", "web", "kept", "held", "plain", "fresh",
    ]);
    if v6 {
        h.ok(&["rm", "-f", "six"]);
    }

    // The unit file: only where systemd runs.
    let out = h.berth(&["system", "boot", "--install-unit"]);
    if !Path::new("/run/systemd/system").exists() {
        assert_eq!(out.code(), Some(1));
        assert!(
            out.stderr.contains("does not run systemd"),
            "{}",
            out.stderr
        );
    }
    let fake = h.env.path().join("systemd");
    std::fs::create_dir_all(fake.join("run/systemd/system")).unwrap();
    let out = run_timeout(
        h.cmd(&["system", "boot", "--install-unit"])
            .env("BERTH_SYSTEMD_ROOT", &fake),
        Duration::from_secs(30),
    );
    out.assert_success();
    let unit = std::fs::read_to_string(fake.join("etc/systemd/system/berth-boot.service")).unwrap();
    assert!(unit.contains("Type=oneshot"), "{unit}");
    assert!(unit.contains(" system boot\n"), "{unit}");
    assert!(
        unit.contains(&format!(
            "Environment=BERTH_ROOT={}",
            h.env.root().display()
        )),
        "{unit}"
    );
    assert!(unit.contains("WantedBy=multi-user.target"), "{unit}");
}

#[test]
fn completion_scripts_for_bash_zsh_and_fish() {
    let berth = |shell: &str| run(Command::new(bin("berth")).args(["completion", shell]));
    let out = berth("bash");
    out.assert_success();
    assert!(out.stdout.contains("_berth()"), "{}", out.stdout);
    assert!(
        out.stdout.contains("complete -F _berth"),
        "{}",
        &out.stdout[..200]
    );
    let out = berth("zsh");
    out.assert_success();
    assert!(out.stdout.starts_with("#compdef berth"));
    let out = berth("fish");
    out.assert_success();
    assert!(out.stdout.contains("complete -c berth"));
    assert!(out.stdout.contains("stats"), "subcommands are in it");
    let out = berth("tcsh");
    assert_eq!(out.code(), Some(125), "{}", out.stderr);
}

/// `berth` beside a private dockerd (cli_docker_compare.rs's fixture): the same commands,
/// `--network none`, no netd needed.
#[test]
fn stats_update_events_info_and_df_agree_with_docker() {
    let Some((env, dockerd)) = dockerd_support::dockerd_with_busybox("sys-vs-docker") else {
        return;
    };
    let docker =
        |args: &[&str]| run_timeout(dockerd.docker(&env).args(args), Duration::from_secs(60));
    let berth = |args: &[&str]| {
        run_timeout(
            env.command(bin("berth"))
                .args(args)
                .env("BERTH_CGROUP_PARENT", env.unique("cg")),
            Duration::from_secs(60),
        )
    };
    let both = |args: &[&str]| -> (Output, Output) {
        let (d, b) = (docker(args), berth(args));
        assert_eq!(
            b.code(),
            d.code(),
            "{args:?}: exit codes differ\ndocker: {}{}\nberth: {}{}",
            d.stdout,
            d.stderr,
            b.stdout,
            b.stderr
        );
        (d, b)
    };
    let same = |args: &[&str]| {
        let (d, b) = both(args);
        assert_eq!(b.stdout, d.stdout, "{args:?}: stdout differs");
        b.stdout
    };
    berth(&[
        "load",
        "-i",
        &fixtures().join("busybox.tar").display().to_string(),
    ])
    .assert_success();
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    };
    let t0 = format!("{:.3}", now() - 1.0);

    let (d, b) = both(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "sv",
        "busybox",
        "sleep",
        "600",
    ]);
    assert!(d.success() && b.success(), "docker: {d:?}\nberth: {b:?}");
    both(&[
        "create",
        "--network",
        "none",
        "--name",
        "idle",
        "busybox",
        "true",
    ]);

    let (d, b) = both(&["stats", "--no-stream", "sv"]);
    let (dl, bl): (Vec<&str>, Vec<&str>) = (d.stdout.lines().collect(), b.stdout.lines().collect());
    assert!(
        !bl.is_empty() && !dl.is_empty(),
        "docker: {d:?}\nberth: {b:?}"
    );
    assert_eq!(cells(bl[0]), cells(dl[0]), "the header");
    assert_eq!(bl.len(), dl.len());
    assert_eq!(
        cells(bl[1]).len(),
        cells(dl[1]).len(),
        "docker: {}\nberth: {}",
        dl[1],
        bl[1]
    );
    same(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}} {{.Container}} {{.PIDs}} {{.NetIO}}",
        "sv",
    ]);
    same(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}} {{.CPUPerc}} {{.MemUsage}} {{.MemPerc}} {{.NetIO}} {{.BlockIO}} {{.PIDs}}",
        "idle",
    ]);
    both(&["stats", "--no-stream", "nosuch"]);

    let (d, b) = both(&["update", "sv"]);
    assert_eq!(
        b.stderr.trim(),
        d.stderr.trim().trim_start_matches("docker: ")
    );
    let (d, b) = both(&["update", "--cpus", "999", "sv"]);
    assert_eq!(b.stderr.trim(), d.stderr.trim());
    same(&[
        "update",
        "--pids-limit",
        "50",
        "--cpu-shares",
        "512",
        "--cpus",
        "0.5",
        "sv",
    ]);
    same(&[
        "inspect",
        "-f",
        "{{.HostConfig.PidsLimit}} {{.HostConfig.CpuShares}} {{.HostConfig.NanoCpus}}",
        "sv",
    ]);
    same(&["update", "--restart", "on-failure:3", "sv"]);
    same(&[
        "inspect",
        "-f",
        "{{.HostConfig.RestartPolicy.Name}} {{.HostConfig.RestartPolicy.MaximumRetryCount}}",
        "sv",
    ]);
    both(&["update", "--restart", "no", "sv"]);
    both(&["stop", "-t", "1", "sv"]);
    std::thread::sleep(Duration::from_millis(500));

    let until = format!("{:.3}", now());
    let (d, b) = both(&[
        "events",
        "--since",
        &t0,
        "--until",
        &until,
        "--filter",
        "container=sv",
        "--filter",
        "type=container",
        "--format",
        "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}",
    ]);
    let sorted = |s: &str| {
        let mut v: Vec<String> = s.lines().map(str::to_string).collect();
        v.sort();
        v
    };
    assert_eq!(
        sorted(&b.stdout),
        sorted(&d.stdout),
        "docker:\n{}\nberth:\n{}",
        d.stdout,
        b.stdout
    );

    let (d, b) = both(&["system", "df"]);
    let rows = |s: &str| -> Vec<Vec<String>> { s.lines().map(cells).take(4).collect() };
    let (dr, br) = (rows(&d.stdout), rows(&b.stdout));
    assert_eq!(br[0], dr[0], "the header");
    for i in 1..4 {
        assert_eq!(
            br[i][..3],
            dr[i][..3],
            "docker:\n{}\nberth:\n{}",
            d.stdout,
            b.stdout
        );
    }
    same(&[
        "info", "--format",
        "{{.Containers}} {{.ContainersRunning}} {{.ContainersPaused}} {{.ContainersStopped}} {{.Images}} {{.OSType}} {{.Architecture}} {{.NCPU}} {{.MemTotal}} {{.KernelVersion}} {{.CgroupDriver}} {{.LoggingDriver}}",
    ]);
    both(&["rm", "-f", "sv", "idle"]);
}
