//! The shim under a real containerd (Debian's 1.6), driven with `ctr` as a user would.

mod common;

use std::io::BufRead;
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use berth_tests::{run_with_input, Output};
use common::{Containerd, IMAGE};

const RUNTIME: &str = "io.containerd.berth.v2";

/// A private containerd with the busybox image, or None when the test cannot run here.
fn containerd(name: &str) -> Option<Containerd> {
    if !common::can_run(&["containerd", "ctr", "runc"]) {
        return None;
    }
    let c = Containerd::start(name);
    c.import_busybox();
    Some(c)
}

/// The arguments of `ctr run <mode>` of the busybox image with our runtime as task `id`,
/// with `flags` before the image.
fn run_args<'a>(mode: &'a str, flags: &[&'a str], id: &'a str, cmd: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["run", mode, "--runtime", RUNTIME];
    args.extend_from_slice(flags);
    args.push(IMAGE);
    args.push(id);
    args.extend_from_slice(cmd);
    args
}

/// `ctr run --rm` in the foreground: the task's output and exit status.
fn run_rm(c: &Containerd, flags: &[&str], id: &str, cmd: &[&str]) -> Output {
    c.ctr(&run_args("--rm", flags, id, cmd))
}

/// `ctr run -d`: the task keeps running after this returns.
fn run_detached(c: &Containerd, flags: &[&str], id: &str, cmd: &[&str]) {
    let out = c.ctr(&run_args("-d", flags, id, cmd));
    assert!(out.success(), "run -d: {}\n{}", out.stderr, c.log());
}

/// SIGKILL the task `id` and wait until ctr lists it as stopped.
fn kill_until_stopped(c: &Containerd, id: &str) {
    c.ctr(&["task", "kill", "-s", "SIGKILL", id])
        .assert_success();
    common::eventually("the task to stop", || {
        (task_status(c, id).as_deref() == Some("STOPPED")).then_some(())
    });
}

/// The STATUS column of `ctr task ls` for task `id`.
fn task_status(c: &Containerd, id: &str) -> Option<String> {
    c.ctr(&["task", "ls"]).stdout.lines().find_map(|l| {
        let cols: Vec<&str> = l.split_whitespace().collect();
        (cols.first() == Some(&id)).then(|| cols.get(2).map(|s| s.to_string()))?
    })
}

#[test]
fn ctr_run_captures_output_and_exit_status() {
    let Some(c) = containerd("ctr-run") else {
        return;
    };
    let out = run_rm(
        &c,
        &[],
        "run1",
        &["sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 3"],
    );
    assert_eq!(out.code(), Some(3), "log:\n{}", c.log());
    assert_eq!(out.stdout, "to-stdout\n");
    assert!(out.stderr.contains("to-stderr"), "stderr: {}", out.stderr);
    // --rm removed task and container.
    let ls = c.ctr(&["containers", "ls", "-q"]);
    assert_eq!(ls.stdout.trim(), "");
}

#[test]
fn ctr_stdin_reaches_the_container() {
    let Some(c) = containerd("ctr-stdin") else {
        return;
    };
    let mut cmd = c.ctr_cmd(&run_args("--rm", &[], "in1", &["head", "-n1"]));
    let out = run_with_input(
        &mut cmd,
        b"first line\nsecond line\n",
        berth_tests::DEFAULT_TIMEOUT,
    );
    assert!(out.success(), "log:\n{}", c.log());
    assert_eq!(out.stdout, "first line\n");
}

#[test]
fn ctr_exec_ps_kill_and_rm() {
    let Some(c) = containerd("ctr-exec") else {
        return;
    };
    run_detached(&c, &[], "ex1", &["sleep", "1000"]);

    let out = c.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        "ex1",
        "sh",
        "-c",
        "echo from-exec; exit 4",
    ]);
    assert_eq!(out.code(), Some(4), "exec: {}", out.stderr);
    assert_eq!(out.stdout, "from-exec\n");

    // A detached exec shows up in `ctr task ps` under its exec id, the init without one.
    c.ctr(&[
        "task",
        "exec",
        "--detach",
        "--exec-id",
        "sleeper-x7",
        "ex1",
        "sleep",
        "1000",
    ])
    .assert_success();
    let ps = c.ctr(&["task", "ps", "ex1"]);
    assert!(ps.success(), "task ps: {}", ps.stderr);
    let rows: Vec<&str> = ps.stdout.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{}", ps.stdout);
    assert_eq!(
        rows.iter().filter(|r| r.contains("sleeper-x7")).count(),
        1,
        "{}",
        ps.stdout
    );
    assert_eq!(
        rows.iter().filter(|r| r.trim_end().ends_with('-')).count(),
        1,
        "the init has no exec id: {}",
        ps.stdout
    );
    let ls = c.ctr(&["task", "ls"]).stdout;
    assert!(ls.contains("ex1") && ls.contains("RUNNING"), "{ls}");

    // A running task cannot be removed.
    let rm = c.ctr(&["task", "rm", "ex1"]);
    assert!(!rm.success());

    // sleep as pid 1 ignores SIGTERM; SIGKILL ends it.
    kill_until_stopped(&c, "ex1");
    let rm = c.ctr(&["task", "rm", "ex1"]);
    assert!(rm.success(), "task rm: {}", rm.stderr);
    assert!(c
        .ctr(&["task", "ls"])
        .stdout
        .lines()
        .all(|l| !l.contains("ex1")));
    assert!(c.ctr(&["containers", "rm", "ex1"]).success());
}

/// The value of one row of `ctr task metrics`' table.
fn metric(table: &str, name: &str) -> Option<String> {
    table.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        (f.next() == Some(name)).then(|| f.collect::<Vec<_>>().join(" "))
    })
}

#[test]
fn ctr_task_metrics_reads_the_containers_cgroups() {
    let Some(c) = containerd("ctr-metrics") else {
        return;
    };
    run_detached(
        &c,
        &["--memory-limit", "67108864"],
        "mt1",
        &["sleep", "1000"],
    );
    let out = c.ctr(&["task", "metrics", "mt1"]);
    let table = &out.stdout;
    assert!(out.success(), "task metrics: {}\n{}", out.stderr, c.log());
    // ctr prints the v1 and the v2 metrics under the same names for these rows.
    assert_eq!(
        metric(table, "memory.limit_in_bytes").as_deref(),
        Some("67108864"),
        "{table}"
    );
    let usage: u64 = metric(table, "memory.usage_in_bytes")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no memory usage in\n{table}"));
    assert!(usage > 0, "{table}");
    assert_eq!(
        metric(table, "pids.current").as_deref(),
        Some("1"),
        "{table}"
    );

    // A stopped task has no metrics: containerd drops the shim's error and ctr says so.
    kill_until_stopped(&c, "mt1");
    let out = c.ctr(&["task", "metrics", "mt1"]);
    assert!(!out.success(), "{}", out.stdout);
    assert!(out.stderr.contains("no metrics received"), "{}", out.stderr);
}

#[test]
fn ctr_run_reports_the_runtime_error() {
    let Some(c) = containerd("ctr-fail") else {
        return;
    };
    let out = run_rm(&c, &[], "bad1", &["/no/such/binary"]);
    assert!(!out.success());
    let err = out.stderr;
    // The runtime's own words, not a generic failure.
    assert!(
        err.contains("/no/such/binary") && err.contains("no such file or directory"),
        "{err}"
    );
}

#[test]
fn ctr_run_with_file_log_uri() {
    let Some(c) = containerd("ctr-logfile") else {
        return;
    };
    let log = c.path("out.log");
    let uri = format!("file://{}", log.display());
    let out = run_rm(&c, &["--log-uri", &uri], "lf1", &["echo", "logged"]);
    assert!(out.success(), "{}\n{}", out.stderr, c.log());
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "logged\n");
}

#[test]
fn ctr_run_with_binary_logger() {
    let Some(c) = containerd("ctr-binlog") else {
        return;
    };
    // containerd's logger protocol: stdout on fd 3, stderr on fd 4, close fd 5 when ready.
    let logger = c.path("logger.sh");
    let out = c.path("logger.out");
    std::fs::write(
        &logger,
        "#!/bin/sh\nexec 5>&-\ncat <&3 >\"$1.stdout\" &\ncat <&4 >\"$1.stderr\"\nwait\necho \"$CONTAINER_ID $CONTAINER_NAMESPACE\" >\"$1.id\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&logger, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let uri = format!("binary://{}?{}", logger.display(), out.display());
    let run = run_rm(
        &c,
        &["--log-uri", &uri],
        "bl1",
        &["sh", "-c", "echo via-logger; echo err-via-logger >&2"],
    );
    assert!(run.success(), "{}\n{}", run.stderr, c.log());
    let read = |ext: &str| {
        common::eventually("the logger's output", || {
            std::fs::read_to_string(format!("{}.{ext}", out.display()))
                .ok()
                .filter(|s| !s.is_empty())
        })
    };
    assert_eq!(read("stdout"), "via-logger\n");
    assert_eq!(read("stderr"), "err-via-logger\n");
    // The logger learns whose output it has from its environment.
    assert_eq!(read("id"), format!("bl1 {}\n", c.namespace));
}

/// `ctr events` for one containerd, read on a thread; lines are kept as they arrive.
struct Events {
    child: std::process::Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Events {
    /// Subscribe, and return once the subscription is known to be live.
    fn subscribe(c: &Containerd) -> Events {
        let mut child = c.env.spawn(
            c.ctr_cmd(&["events"])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped()),
        );
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut events = Events {
            child,
            lines,
            seen: Vec::new(),
        };
        // `ctr events` subscribes in the background: touch the image until its update
        // event shows up.
        let mut n = 0;
        common::eventually("ctr events to subscribe", || {
            n += 1;
            c.ctr(&["images", "label", IMAGE, &format!("probe={n}")]);
            events.drain();
            events.count("/images/update", "").gt(&0).then_some(())
        });
        events
    }

    fn drain(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
    }

    /// How many `topic` events for container `id` ("" for any) have been seen.
    fn count(&self, topic: &str, id: &str) -> usize {
        let topic = format!(" {topic} ");
        let id = format!("\"container_id\":\"{id}\"");
        self.seen
            .iter()
            .filter(|l| l.contains(&topic) && (id.ends_with(":\"\"") || l.contains(&id)))
            .count()
    }

    /// Wait for the first `topic` event of container `id`.
    fn wait_for(&mut self, c: &Containerd, topic: &str, id: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            self.drain();
            if self.count(topic, id) > 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no {topic} for {id}; seen:\n{}\ncontainerd log:\n{}",
                self.seen.join("\n"),
                c.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn ctr_sees_task_events() {
    let Some(c) = containerd("ctr-events") else {
        return;
    };
    let mut events = Events::subscribe(&c);
    let run = run_rm(&c, &[], "ev1", &["true"]);
    assert!(run.success(), "{}", run.stderr);
    for topic in [
        "/tasks/create",
        "/tasks/start",
        "/tasks/exit",
        "/tasks/delete",
    ] {
        events.wait_for(&c, topic, "ev1");
    }
    assert_eq!(events.count("/tasks/oom", "ev1"), 0);

    // A container the OOM killer ends: exactly one TaskOOM, before its exit. Events go out
    // in order, so once its delete is seen every TaskOOM it caused has been too.
    let oom = run_rm(
        &c,
        &["--memory-limit", "16777216"],
        "ev2",
        &["tail", "/dev/zero"],
    );
    assert_eq!(oom.code(), Some(137), "{}", oom.stderr);
    events.wait_for(&c, "/tasks/delete", "ev2");
    assert_eq!(
        events.count("/tasks/oom", "ev2"),
        1,
        "{}",
        events.seen.join("\n")
    );
    let pos = |topic: &str| {
        events
            .seen
            .iter()
            .position(|l| l.contains(&format!(" {topic} ")) && l.contains("\"ev2\""))
    };
    assert!(
        pos("/tasks/oom") < pos("/tasks/exit"),
        "{}",
        events.seen.join("\n")
    );
}

#[test]
fn ctr_sees_an_oom_kill_the_init_survives() {
    let Some(c) = containerd("ctr-oomchild") else {
        return;
    };
    let mut events = Events::subscribe(&c);
    // `tail` keeps its unterminated "line" of zeros in memory until the OOM killer ends
    // it; the shell goes on.
    run_detached(
        &c,
        &["--memory-limit", "16777216"],
        "oc1",
        &["sh", "-c", "tail /dev/zero; sleep 600"],
    );
    events.wait_for(&c, "/tasks/oom", "oc1");
    assert_eq!(task_status(&c, "oc1").as_deref(), Some("RUNNING"));
    assert_eq!(events.count("/tasks/exit", "oc1"), 0);

    kill_until_stopped(&c, "oc1");
    c.ctr(&["task", "rm", "oc1"]).assert_success();
    events.wait_for(&c, "/tasks/delete", "oc1");
    assert_eq!(
        events.count("/tasks/oom", "oc1"),
        1,
        "one kill, one TaskOOM:\n{}",
        events.seen.join("\n")
    );
}

#[test]
fn ctr_cleans_up_after_a_killed_shim() {
    let Some(c) = containerd("ctr-shimkill") else {
        return;
    };
    run_detached(&c, &[], "sk1", &["sleep", "1000"]);
    let bundle = c.bundle("sk1");
    let shim = common::shim_pid(&bundle).expect("shim.pid in the bundle");
    let ls = c.ctr(&["task", "ls"]).stdout;
    let task_pid: i32 = ls
        .lines()
        .find(|l| l.starts_with("sk1"))
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(shim),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    // containerd runs the shim's `delete` action, which force-deletes the container.
    common::eventually("the container to be cleaned up", || {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(task_pid), None)
            .is_err()
            .then_some(())
    });
    common::eventually("the task to be gone", || {
        let ls = c.ctr(&["task", "ls"]).stdout;
        (!ls.lines()
            .any(|l| l.starts_with("sk1 ") && l.contains("RUNNING")))
        .then_some(())
    });
    assert!(c.log().contains("cleaning up dead shim"));
}
