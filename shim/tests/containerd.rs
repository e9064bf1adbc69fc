//! The shim under a real containerd (Debian's 1.6), driven with `ctr` as a user would.

mod common;

use common::Containerd;

const IMAGE: &str = "docker.io/berth/busybox:latest";
const RUNTIME: &str = "io.containerd.berth.v2";

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
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
    let out = c.ctr(&[
        "run",
        "-d",
        "--runtime",
        RUNTIME,
        IMAGE,
        "ex1",
        "sleep",
        "1000",
    ]);
    assert!(
        out.status.success(),
        "run -d: {}\n{}",
        text(&out.stderr),
        c.log()
    );

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
    let kill = c.ctr(&["task", "kill", "-s", "SIGKILL", "ex1"]);
    assert!(kill.status.success(), "kill: {}", text(&kill.stderr));
    common::eventually("the task to stop", || {
        text(&c.ctr(&["task", "ls"]).stdout)
            .contains("STOPPED")
            .then_some(())
    });
    let rm = c.ctr(&["task", "rm", "ex1"]);
    assert!(rm.status.success(), "task rm: {}", text(&rm.stderr));
    assert!(text(&c.ctr(&["task", "ls"]).stdout)
        .lines()
        .all(|l| !l.contains("ex1")));
    assert!(c.ctr(&["containers", "rm", "ex1"]).status.success());
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
