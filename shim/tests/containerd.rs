//! The shim under a real containerd (Debian's 1.6), driven with `ctr` as a user would.

mod common;

use common::Containerd;

const IMAGE: &str = "docker.io/berth/busybox:latest";
const RUNTIME: &str = "io.containerd.berth.v2";

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `ctr run -d` of the busybox image as task `id`, with `flags` before the image.
fn run_detached(c: &Containerd, flags: &[&str], id: &str, cmd: &[&str]) {
    let mut args = vec!["run", "-d", "--runtime", RUNTIME];
    args.extend_from_slice(flags);
    args.push(IMAGE);
    args.push(id);
    args.extend_from_slice(cmd);
    let out = c.ctr(&args);
    assert!(
        out.status.success(),
        "run -d: {}\n{}",
        text(&out.stderr),
        c.log()
    );
}

/// SIGKILL the task `id` and wait until ctr lists it as stopped.
fn kill_until_stopped(c: &Containerd, id: &str) {
    let kill = c.ctr(&["task", "kill", "-s", "SIGKILL", id]);
    assert!(kill.status.success(), "kill: {}", text(&kill.stderr));
    common::eventually("the task to stop", || {
        text(&c.ctr(&["task", "ls"]).stdout)
            .contains("STOPPED")
            .then_some(())
    });
}

#[test]
fn ctr_run_captures_output_and_exit_status() {
    let c = Containerd::start("ctr-run");
    c.import_busybox(IMAGE);
    let out = c.ctr(&[
        "run",
        "--rm",
        "--runtime",
        RUNTIME,
        IMAGE,
        "run1",
        "sh",
        "-c",
        "echo to-stdout; echo to-stderr >&2; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3), "log:\n{}", c.log());
    assert_eq!(text(&out.stdout), "to-stdout\n");
    assert!(
        text(&out.stderr).contains("to-stderr"),
        "stderr: {}",
        text(&out.stderr)
    );
    // --rm removed task and container.
    let ls = c.ctr(&["containers", "ls", "-q"]);
    assert_eq!(text(&ls.stdout).trim(), "");
}

#[test]
fn ctr_stdin_reaches_the_container() {
    let c = Containerd::start("ctr-stdin");
    c.import_busybox(IMAGE);
    let mut cmd = c.ctr_cmd(&[
        "run",
        "--rm",
        "--runtime",
        RUNTIME,
        IMAGE,
        "in1",
        "head",
        "-n1",
    ]);
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"first line\nsecond line\n").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "log:\n{}", c.log());
    assert_eq!(text(&out.stdout), "first line\n");
}

#[test]
fn ctr_exec_kill_and_rm() {
    let c = Containerd::start("ctr-exec");
    c.import_busybox(IMAGE);
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
    assert_eq!(out.status.code(), Some(4), "exec: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "from-exec\n");

    let ps = c.ctr(&["task", "ps", "ex1"]);
    assert!(ps.status.success(), "task ps: {}", text(&ps.stderr));
    let ls = text(&c.ctr(&["task", "ls"]).stdout);
    assert!(ls.contains("ex1") && ls.contains("RUNNING"), "{ls}");

    // A running task cannot be removed.
    let rm = c.ctr(&["task", "rm", "ex1"]);
    assert!(!rm.status.success());

    // sleep as pid 1 ignores SIGTERM; SIGKILL ends it.
    kill_until_stopped(&c, "ex1");
    let rm = c.ctr(&["task", "rm", "ex1"]);
    assert!(rm.status.success(), "task rm: {}", text(&rm.stderr));
    assert!(text(&c.ctr(&["task", "ls"]).stdout)
        .lines()
        .all(|l| !l.contains("ex1")));
    assert!(c.ctr(&["containers", "rm", "ex1"]).status.success());
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
    let c = Containerd::start("ctr-metrics");
    c.import_busybox(IMAGE);
    run_detached(
        &c,
        &["--memory-limit", "67108864"],
        "mt1",
        &["sleep", "1000"],
    );
    let out = c.ctr(&["task", "metrics", "mt1"]);
    let table = text(&out.stdout);
    assert!(
        out.status.success(),
        "task metrics: {}\n{}",
        text(&out.stderr),
        c.log()
    );
    // ctr prints the v1 and the v2 metrics under the same names for these rows.
    assert_eq!(
        metric(&table, "memory.limit_in_bytes").as_deref(),
        Some("67108864"),
        "{table}"
    );
    let usage: u64 = metric(&table, "memory.usage_in_bytes")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no memory usage in\n{table}"));
    assert!(usage > 0, "{table}");
    assert_eq!(
        metric(&table, "pids.current").as_deref(),
        Some("1"),
        "{table}"
    );

    // A stopped task has no metrics: containerd drops the shim's error and ctr says so.
    kill_until_stopped(&c, "mt1");
    let out = c.ctr(&["task", "metrics", "mt1"]);
    assert!(!out.status.success(), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("no metrics received"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn ctr_run_reports_the_runtime_error() {
    let c = Containerd::start("ctr-fail");
    c.import_busybox(IMAGE);
    let out = c.ctr(&[
        "run",
        "--rm",
        "--runtime",
        RUNTIME,
        IMAGE,
        "bad1",
        "/no/such/binary",
    ]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    // The runtime's own words, not a generic failure.
    assert!(
        err.contains("/no/such/binary") && err.contains("no such file or directory"),
        "{err}"
    );
}

#[test]
fn ctr_run_with_file_log_uri() {
    let c = Containerd::start("ctr-logfile");
    c.import_busybox(IMAGE);
    let log = c.dir.path.join("out.log");
    let uri = format!("file://{}", log.display());
    let out = c.ctr(&[
        "run",
        "--rm",
        "--log-uri",
        &uri,
        "--runtime",
        RUNTIME,
        IMAGE,
        "lf1",
        "echo",
        "logged",
    ]);
    assert!(out.status.success(), "{}\n{}", text(&out.stderr), c.log());
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "logged\n");
}

#[test]
fn ctr_run_with_binary_logger() {
    let c = Containerd::start("ctr-binlog");
    c.import_busybox(IMAGE);
    // containerd's logger protocol: stdout on fd 3, stderr on fd 4, close fd 5 when ready.
    let logger = c.dir.path.join("logger.sh");
    let out = c.dir.path.join("logger.out");
    std::fs::write(
        &logger,
        "#!/bin/sh\nexec 5>&-\ncat <&3 >\"$1.stdout\" &\ncat <&4 >\"$1.stderr\"\nwait\necho \"$CONTAINER_ID\" >\"$1.id\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&logger, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let uri = format!("binary://{}?{}", logger.display(), out.display());
    let run = c.ctr(&[
        "run",
        "--rm",
        "--log-uri",
        &uri,
        "--runtime",
        RUNTIME,
        IMAGE,
        "bl1",
        "sh",
        "-c",
        "echo via-logger; echo err-via-logger >&2",
    ]);
    assert!(run.status.success(), "{}\n{}", text(&run.stderr), c.log());
    let read = |ext: &str| {
        common::eventually("the logger's output", || {
            std::fs::read_to_string(format!("{}.{ext}", out.display()))
                .ok()
                .filter(|s| !s.is_empty())
        })
    };
    assert_eq!(read("stdout"), "via-logger\n");
    assert_eq!(read("stderr"), "err-via-logger\n");
    assert_eq!(read("id"), "bl1\n");
}

#[test]
fn ctr_sees_task_events() {
    let c = Containerd::start("ctr-events");
    c.import_busybox(IMAGE);
    // Not under `timeout`: killing the wrapper would leave ctr running.
    let mut events = std::process::Command::new("ctr")
        .arg("-a")
        .arg(&c.sock)
        .args(["-n", &c.namespace, "events"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = events.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = String::new();
    let drain = |seen: &mut String| {
        while let Ok(line) = rx.try_recv() {
            seen.push_str(&line);
            seen.push('\n');
        }
    };
    // `ctr events` subscribes in the background: touch the image until its update event
    // shows up, so the subscription is known to be live before the container runs.
    let mut n = 0;
    common::eventually("ctr events to subscribe", || {
        n += 1;
        c.ctr(&["images", "label", IMAGE, &format!("probe={n}")]);
        drain(&mut seen);
        seen.contains("/images/update").then_some(())
    });
    let run = c.ctr(&["run", "--rm", "--runtime", RUNTIME, IMAGE, "ev1", "true"]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    // A container the OOM killer ends: TaskOOM before its exit.
    let oom = c.ctr(&[
        "run",
        "--rm",
        "--memory-limit",
        "16777216",
        "--runtime",
        RUNTIME,
        IMAGE,
        "ev2",
        "tail",
        "/dev/zero",
    ]);
    assert_eq!(oom.status.code(), Some(137), "{}", text(&oom.stderr));
    let wanted = [
        "/tasks/create",
        "/tasks/start",
        "/tasks/exit",
        "/tasks/delete",
        "/tasks/oom",
    ];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        drain(&mut seen);
        if wanted.iter().all(|t| seen.contains(t)) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "missing task events; seen:\n{seen}\ncontainerd log:\n{}",
            c.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = events.kill();
    let _ = events.wait();
    assert!(seen.contains("ev1"), "{seen}");
}

#[test]
fn ctr_cleans_up_after_a_killed_shim() {
    let c = Containerd::start("ctr-shimkill");
    c.import_busybox(IMAGE);
    let out = c.ctr(&[
        "run",
        "-d",
        "--runtime",
        RUNTIME,
        IMAGE,
        "sk1",
        "sleep",
        "1000",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let bundle = c
        .dir
        .path
        .join("state/io.containerd.runtime.v2.task")
        .join(&c.namespace)
        .join("sk1");
    let shim: i32 = std::fs::read_to_string(bundle.join("shim.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let ls = text(&c.ctr(&["task", "ls"]).stdout);
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
        let ls = text(&c.ctr(&["task", "ls"]).stdout);
        (!ls.lines()
            .any(|l| l.starts_with("sk1 ") && l.contains("RUNNING")))
        .then_some(())
    });
    assert!(c.log().contains("cleaning up dead shim"));
}
