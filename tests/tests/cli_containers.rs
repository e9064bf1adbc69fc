//! The `berth` container commands as a user types them, on a private root with the busybox
//! fixture loaded and `--network none` (network tests: cli_networks.rs). Each test's
//! containers sit in cgroups and temp dirs named for it, so clean-up finds what they leave.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use berth_tests::{bin, fixtures, require_cmds, require_root, run, run_timeout, Output, TestEnv};

struct Berth {
    env: TestEnv,
}

impl Berth {
    /// A private engine with the busybox fixture loaded as `busybox:latest`.
    fn new(name: &str) -> Berth {
        let env = TestEnv::new(name);
        let b = Berth { env };
        b.ok(&[
            "load",
            "-i",
            &fixtures().join("busybox.tar").display().to_string(),
        ]);
        b
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = self.env.command(bin("berth"));
        c.args(args)
            .env("BERTH_CGROUP_PARENT", self.env.unique("cg"));
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        run_timeout(&mut self.cmd(args), Duration::from_secs(60))
    }

    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        out.assert_success();
        out.stdout
    }

    fn record_dir(&self, id: &str) -> PathBuf {
        self.env.root().join("containers").join(id)
    }

    /// Poll `ps -a` until the container's STATUS starts with `want`.
    #[track_caller]
    fn wait_status(&self, name: &str, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let s = self.ok(&[
                "ps",
                "-a",
                "--filter",
                &format!("name={name}"),
                "--format",
                "{{.Status}}",
            ]);
            if s.trim().starts_with(want) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{name}: status {s:?}, want {want}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn can_run() -> bool {
    require_root()
}

#[test]
fn run_streams_output_and_exits_with_the_containers_status() {
    if !can_run() {
        return;
    }
    let b = Berth::new("cli-run");
    let out = b.run(&[
        "run",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(out.code(), Some(3), "{}", out.describe_status());
    assert_eq!(out.stdout, "out\n");
    assert_eq!(out.stderr, "err\n");

    // Docker's 127 (not found), 126 (cannot run) and 125 (the engine's own error).
    let out = b.run(&["run", "--network", "none", "busybox", "/nonexistent"]);
    assert_eq!(out.code(), Some(127), "{}", out.stderr);
    assert!(out.stderr.contains("/nonexistent"), "{}", out.stderr);
    let out = b.run(&["run", "--network", "none", "busybox", "/etc/passwd"]);
    assert_eq!(out.code(), Some(126), "{}", out.stderr);
    let out = b.run(&["run", "--nosuchflag", "busybox"]);
    assert_eq!(out.code(), Some(125), "{}", out.stderr);
    let out = b.run(&[
        "run",
        "--network",
        "none",
        "--cpus",
        "999",
        "busybox",
        "true",
    ]);
    assert_eq!(out.code(), Some(125));
    assert!(
        out.stderr.contains("range of CPUs is from 0.01"),
        "{}",
        out.stderr
    );
    let out = b.run(&["run", "--pull", "never", "nosuch/image:1", "true"]);
    assert_eq!(out.code(), Some(125));
    assert!(
        out.stderr.contains("No such image: nosuch/image:1"),
        "{}",
        out.stderr
    );

    // The image's settings apply, and flags override them.
    let out = b.ok(&[
        "run",
        "--network",
        "none",
        "-e",
        "A=1",
        "-w",
        "/tmp",
        "-u",
        "nobody",
        "-h",
        "box",
        "busybox",
        "sh",
        "-c",
        "echo $A $(pwd) $(id -un) $(hostname)",
    ]);
    assert_eq!(out, "1 /tmp nobody box\n");
    let out = b.ok(&[
        "run",
        "--network",
        "none",
        "--entrypoint",
        "echo",
        "busybox",
        "a",
        "b",
    ]);
    assert_eq!(out, "a b\n");
    // stdin reaches the container with -i, and its end closes the container's stdin.
    let out = berth_tests::run_with_input(
        &mut b.cmd(&["run", "-i", "--network", "none", "busybox", "wc", "-l"]),
        b"1\n2\n3\n",
        Duration::from_secs(30),
    );
    out.assert_success();
    assert_eq!(out.stdout.trim(), "3");
}

#[test]
fn detached_containers_list_log_exec_stop_start_and_remove() {
    // pgrep: the shim of an exited container is looked for by its command line.
    if !can_run() || !require_cmds(&["pgrep"]) {
        return;
    }
    let b = Berth::new("cli-life");
    let id = b.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "web",
        "busybox",
        "sh",
        "-c",
        "trap 'echo bye; exit 0' TERM; echo started; while true; do sleep 0.1; done",
    ]);
    let id = id.trim().to_string();
    assert_eq!(id.len(), 64);
    b.wait_status("web", "Up");
    let ps = b.ok(&["ps"]);
    let lines: Vec<&str> = ps.lines().collect();
    let header: Vec<&str> = lines[0]
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        header,
        [
            "CONTAINER ID",
            "IMAGE",
            "COMMAND",
            "CREATED",
            "STATUS",
            "PORTS",
            "NAMES"
        ]
    );
    assert!(
        lines[1].starts_with(&id[..12]) && lines[1].ends_with("web"),
        "{ps}"
    );
    assert!(lines[1].contains("\"sh -c 'trap 'echo b…\""), "{ps}");
    assert_eq!(b.ok(&["ps", "-q"]).trim(), &id[..12]);
    assert_eq!(b.ok(&["ps", "--no-trunc", "-q"]).trim(), id);
    assert_eq!(
        b.ok(&["container", "ls", "--format", "{{.Names}} {{.State}}"])
            .trim(),
        "web running"
    );

    // Names, ids and unique prefixes resolve everywhere.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !b.ok(&["logs", "web"]).contains("started") {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(b.ok(&["logs", &id[..5]]), "started\n");
    assert!(b
        .ok(&["logs", "-t", "web"])
        .split(' ')
        .next()
        .unwrap()
        .ends_with('Z'));
    assert_eq!(
        b.ok(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.Name}} {{.Config.Image}}",
            "web"
        ])
        .trim(),
        "running /web busybox"
    );

    // exec: output, exit status, stdin, env, workdir, user.
    assert_eq!(b.ok(&["exec", "web", "echo", "hi"]), "hi\n");
    assert_eq!(
        b.run(&["exec", "web", "sh", "-c", "exit 7"]).code(),
        Some(7)
    );
    // Docker's exec gives 126 for a command that cannot start, missing ones included.
    let out = b.run(&["exec", "web", "nosuchcmd"]);
    assert_eq!(out.code(), Some(126));
    assert!(
        out.stderr
            .contains("\"nosuchcmd\": executable file not found in $PATH"),
        "{}",
        out.stderr
    );
    assert_eq!(
        b.ok(&[
            "exec",
            "-e",
            "X=y",
            "-w",
            "/etc",
            "-u",
            "nobody",
            "web",
            "sh",
            "-c",
            "echo $X $(pwd) $(id -u)"
        ]),
        "y /etc 65534\n"
    );
    let out = berth_tests::run_with_input(
        &mut b.cmd(&["exec", "-i", "web", "cat"]),
        b"through stdin\n",
        Duration::from_secs(30),
    );
    assert_eq!(out.stdout, "through stdin\n");
    let top = b.ok(&["top", "web"]);
    assert!(top.contains("sleep"), "{top}");

    // A name is taken until the container goes.
    let out = b.run(&["create", "--name", "web", "busybox"]);
    assert_eq!(out.code(), Some(1));
    assert!(
        out.stderr
            .contains("The container name \"/web\" is already in use"),
        "{}",
        out.stderr
    );
    // rm refuses a running container without -f.
    let out = b.run(&["rm", "web"]);
    assert_eq!(out.code(), Some(1));
    assert!(
        out.stderr
            .contains("stop the container before removing or force remove"),
        "{}",
        out.stderr
    );

    assert_eq!(b.ok(&["stop", "web"]).trim(), "web");
    b.wait_status("web", "Exited (0)");
    assert!(b.ok(&["logs", "web"]).ends_with("bye\n"));
    assert_eq!(b.ok(&["ps", "-q"]).trim(), "");
    assert_eq!(b.ok(&["wait", "web"]).trim(), "0");
    // The exited container holds no process: its shim is gone too.
    let deadline = Instant::now() + Duration::from_secs(10);
    while run(Command::new("pgrep").args([
        "-f",
        &format!("containerd-shim-berth-v2 -namespace berth -id {id}"),
    ]))
    .success()
    {
        assert!(
            Instant::now() < deadline,
            "the shim of an exited container stays"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // Started again: the same container, its log continues.
    b.ok(&["start", "web"]);
    b.wait_status("web", "Up");
    b.ok(&["rename", "web", "web2"]);
    assert_eq!(b.ok(&["kill", "-s", "KILL", "web2"]).trim(), "web2");
    b.wait_status("web2", "Exited (137)");
    assert_eq!(b.ok(&["logs", "web2"]).matches("started").count(), 2);
    b.ok(&["rm", "web2"]);
    assert!(!b.record_dir(&id).exists());
    let out = b.run(&["inspect", "web2"]);
    assert_eq!(out.code(), Some(1));
    assert!(
        out.stderr.contains("No such object: web2"),
        "{}",
        out.stderr
    );
}

#[test]
fn run_rm_leaves_nothing_behind() {
    if !can_run() {
        return;
    }
    let b = Berth::new("cli-rm");
    b.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        "/anon",
        "busybox",
        "true",
    ]);
    let out = b.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "exit 4",
    ]);
    assert_eq!(out.code(), Some(4));
    b.ok(&[
        "run",
        "-d",
        "--rm",
        "--network",
        "none",
        "--name",
        "gone",
        "busybox",
        "true",
    ]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !b.ok(&["ps", "-aq"]).trim().is_empty() {
        assert!(Instant::now() < deadline, "a --rm -d container stays");
        std::thread::sleep(Duration::from_millis(50));
    }
    let left: Vec<_> = std::fs::read_dir(b.env.root().join("containers"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n != ".lock")
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(
        b.ok(&["volume", "ls", "-q"]),
        "",
        "an anonymous volume of a --rm container stays"
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&b.env.root().display().to_string()),
        "a rootfs stays mounted"
    );
    // The image is no longer in use: rmi goes through.
    b.ok(&["rmi", "busybox"]);
}

#[test]
fn rmi_is_refused_while_a_container_uses_the_image() {
    if !can_run() {
        return;
    }
    let b = Berth::new("cli-rmi");
    b.ok(&[
        "create",
        "--network",
        "none",
        "--name",
        "c1",
        "busybox",
        "true",
    ]);
    let out = b.run(&["rmi", "busybox"]);
    assert_eq!(out.code(), Some(1));
    assert!(
        out.stderr.contains("conflict") || out.stderr.contains("being used"),
        "{}",
        out.stderr
    );
    b.ok(&["rm", "c1"]);
    b.ok(&["rmi", "busybox"]);
}

#[test]
fn restart_policy_on_failure_restarts_then_gives_up() {
    if !can_run() {
        return;
    }
    let b = Berth::new("cli-restart");
    b.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "flaky",
        "--restart",
        "on-failure:2",
        "busybox",
        "sh",
        "-c",
        "echo run; exit 1",
    ]);
    b.wait_status("flaky", "Exited (1)");
    assert_eq!(
        b.ok(&["inspect", "-f", "{{.RestartCount}}", "flaky"])
            .trim(),
        "2"
    );
    assert_eq!(b.ok(&["logs", "flaky"]), "run\nrun\nrun\n");
    let out = b.run(&["run", "--rm", "--restart", "always", "busybox"]);
    assert_eq!(out.code(), Some(125));
    assert!(
        out.stderr
            .contains("Conflicting options: --restart and --rm"),
        "{}",
        out.stderr
    );
}

#[test]
fn logs_tail_since_and_follow_across_rotation() {
    if !can_run() {
        return;
    }
    let b = Berth::new("cli-logs");
    b.ok(&[
        "run",
        "--network",
        "none",
        "--name",
        "many",
        "--log-opt",
        "max-size=2k",
        "--log-opt",
        "max-file=3",
        "busybox",
        "sh",
        "-c",
        "i=0; while [ $i -lt 100 ]; do echo line$i; i=$((i+1)); done",
    ]);
    let logs = b.env.root().join("containers");
    let id = b
        .ok(&["inspect", "-f", "{{.Id}}", "many"])
        .trim()
        .to_string();
    assert!(
        logs.join(&id).join(format!("{id}-json.log.1")).exists(),
        "no rotation"
    );
    assert_eq!(
        b.ok(&["logs", "--tail", "3", "many"]),
        "line97\nline98\nline99\n"
    );
    assert_eq!(b.ok(&["logs", "-n", "0", "many"]), "");
    assert_eq!(
        b.ok(&["logs", "--since", "1h", "--tail", "1", "many"]),
        "line99\n"
    );
    assert_eq!(
        b.ok(&["logs", "--until", "2000-01-01T00:00:00Z", "many"]),
        ""
    );

    // -f follows a container writing across rotations, and ends when it exits.
    b.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "slow",
        "--log-opt",
        "max-size=1k",
        "--log-opt",
        "max-file=5",
        "busybox",
        "sh",
        "-c",
        "i=0; while [ $i -lt 60 ]; do echo follow$i; i=$((i+1)); sleep 0.02; done",
    ]);
    let out = b.run(&["logs", "-f", "slow"]);
    out.assert_success();
    let got: Vec<&str> = out.stdout.lines().collect();
    let want: Vec<String> = (0..60).map(|i| format!("follow{i}")).collect();
    // Everything after what the oldest kept file still had arrives, in order.
    let first = want.iter().position(|w| w == got[0]).expect("known line");
    assert_eq!(
        got,
        want[first..].iter().map(String::as_str).collect::<Vec<_>>()
    );
}

#[test]
fn run_it_gives_a_terminal_and_ctrl_p_ctrl_q_detaches() {
    if !can_run() || !require_cmds(&["tmux"]) {
        return;
    }
    let b = Berth::new("cli-tty");
    let session = b.env.unique("tty");
    let status = b.env.path().join("status");
    let env_words = format!(
        "BERTH_ROOT={} BERTH_RUN={} BERTH_CGROUP_PARENT={}",
        b.env.root().display(),
        b.env.run().display(),
        b.env.unique("cg")
    );
    let tmux =
        |args: &[&str]| run_timeout(Command::new("tmux").args(args), Duration::from_secs(10));
    let screen = || tmux(&["capture-pane", "-p", "-t", &session]).stdout;
    let wait_for = |what: &str| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !screen().contains(what) {
            assert!(
                Instant::now() < deadline,
                "no {what:?} on the screen:\n{}",
                screen()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let shell = format!(
        "env {env_words} {} run -it --network none --name term busybox sh; echo EXIT=$? > {}; sleep 60",
        bin("berth").display(),
        status.display()
    );
    tmux(&[
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        "100",
        "-y",
        "30",
        &shell,
    ])
    .assert_success();
    let _kill = KillSession(session.clone());
    wait_for("/ #");
    tmux(&[
        "send-keys",
        "-t",
        &session,
        "echo $((6*7)); tty; stty size",
        "Enter",
    ]);
    wait_for("42");
    wait_for("/dev/pts/0");
    wait_for("30 100");
    // A resize of the terminal reaches the container.
    tmux(&["resize-window", "-t", &session, "-x", "90", "-y", "25"]);
    std::thread::sleep(Duration::from_millis(600));
    tmux(&["send-keys", "-t", &session, "stty size", "Enter"]);
    wait_for("25 90");
    // Ctrl-P Ctrl-Q: berth returns 0, the container runs on.
    tmux(&["send-keys", "-t", &session, "C-p", "C-q"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !status.exists() {
        assert!(Instant::now() < deadline, "no detach:\n{}", screen());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(std::fs::read_to_string(&status).unwrap().trim(), "EXIT=0");
    b.wait_status("term", "Up");
    // And `exec -it` into it, where `exit 3` is the exit status.
    std::fs::remove_file(&status).unwrap();
    let shell = format!(
        "env {env_words} {} exec -it term sh; echo EXIT=$? > {}; sleep 60",
        bin("berth").display(),
        status.display()
    );
    tmux(&["respawn-pane", "-k", "-t", &session, &shell]).assert_success();
    wait_for("/ #");
    tmux(&["send-keys", "-t", &session, "exit 3", "Enter"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !status.exists() {
        assert!(
            Instant::now() < deadline,
            "exec -it did not end:\n{}",
            screen()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(std::fs::read_to_string(&status).unwrap().trim(), "EXIT=3");
    b.ok(&["rm", "-f", "term"]);
}

struct KillSession(String);

impl Drop for KillSession {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.0])
            .status();
    }
}

#[test]
fn a_create_killed_half_way_is_finished_by_rm() {
    if !can_run() {
        return;
    }
    let b = Berth::new("cli-kill9");
    // Kill berth at several moments of a create; whatever it left, rm -f takes away.
    for delay_ms in [5u64, 20, 40, 80] {
        let mut child = b
            .cmd(&["create", "--network", "none", "busybox", "true"])
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
    }
    let ids = b.ok(&["ps", "-aq", "--no-trunc"]);
    for id in ids.lines() {
        b.ok(&["rm", "-f", id]);
    }
    assert_eq!(b.ok(&["ps", "-aq"]), "");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&b.env.root().join("containers").display().to_string()));
    b.ok(&["rmi", "busybox"]);
}

#[test]
fn cp_both_ways_stays_inside_the_container() {
    if !can_run() {
        return;
    }
    let b = Berth::new("cli-cp");
    let dir = b.env.path().join("host");
    std::fs::create_dir_all(dir.join("d/sub")).unwrap();
    std::fs::write(dir.join("d/a"), "a\n").unwrap();
    std::fs::write(dir.join("d/sub/b"), "b\n").unwrap();
    std::fs::write(dir.join("file"), "f\n").unwrap();
    // The container plants links that would reach the host if followed there.
    b.ok(&["run", "-d", "--network", "none", "--name", "box", "busybox", "sh", "-c", &format!("mkdir -p {0}; ln -s /etc /abs; ln -s ../../../../../../../{1} /up; ln -s {0} /hostdir; sleep 600", dir.display(), dir.strip_prefix("/").unwrap().display())]);
    let d = |p: &str| dir.join(p).display().to_string();
    // In: a directory into a directory, a file to a new name, a tar on stdin.
    b.ok(&["cp", &d("d"), "box:/tmp/"]);
    assert_eq!(
        b.ok(&["exec", "box", "cat", "/tmp/d/a", "/tmp/d/sub/b"]),
        "a\nb\n"
    );
    assert_eq!(
        b.ok(&["exec", "box", "stat", "-c", "%u", "/tmp/d/a"])
            .trim(),
        "0"
    );
    b.ok(&["cp", &d("file"), "box:/tmp/renamed"]);
    assert_eq!(b.ok(&["exec", "box", "cat", "/tmp/renamed"]), "f\n");
    // Out: a file, a directory's contents (`/.`), a tar on stdout.
    b.ok(&["cp", "box:/etc/passwd", &d("passwd")]);
    assert!(std::fs::read_to_string(dir.join("passwd"))
        .unwrap()
        .starts_with("root:"));
    b.ok(&["cp", "box:/tmp/d/.", &d("copy")]);
    assert_eq!(
        std::fs::read_to_string(dir.join("copy/sub/b")).unwrap(),
        "b\n"
    );
    let tar = b.run(&["cp", "box:/tmp/d", "-"]);
    tar.assert_success();
    // Links resolve inside the container: /abs/hostname is the container's /etc/hostname,
    // /up/x and /hostdir/x land in the container, never in the host's directory.
    b.ok(&["cp", "box:/abs/hostname", &d("hn")]);
    let hostname = std::fs::read_to_string(dir.join("hn")).unwrap();
    assert_eq!(
        hostname.trim(),
        b.ok(&["inspect", "-f", "{{.Config.Hostname}}", "box"])
            .trim()
    );
    b.ok(&["cp", &d("file"), "box:/up/planted"]);
    b.ok(&["cp", &d("file"), "box:/hostdir/planted2"]);
    assert!(
        !dir.join("planted").exists() && !dir.join("planted2").exists(),
        "cp wrote through a container's symlink onto the host"
    );
    let inside = format!("{}/planted", dir.display());
    assert_eq!(
        b.ok(&["exec", "box", "cat", &inside, &format!("{inside}2")]),
        "f\nf\n"
    );
    let out = b.run(&["cp", "box:/nonexistent", &d("x")]);
    assert_eq!(out.code(), Some(1));
    assert!(
        out.stderr
            .contains("Could not find the file /nonexistent in box"),
        "{}",
        out.stderr
    );
    // An archive entry climbing out with `..` stays under the destination.
    let evil = b.env.path().join("evil.tar");
    {
        let f = std::fs::File::create(&evil).unwrap();
        let mut t = tar_writer(f);
        t.append_named("../../../../escaped", b"x\n");
        t.finish();
    }
    let out = berth_tests::run_with_input(
        &mut b.cmd(&["cp", "-", "box:/tmp"]),
        &std::fs::read(&evil).unwrap(),
        Duration::from_secs(30),
    );
    out.assert_success();
    assert_eq!(b.ok(&["exec", "box", "cat", "/tmp/escaped"]), "x\n");
    b.ok(&["rm", "-f", "box"]);
}

/// A minimal ustar writer, enough to make an archive with a hostile name.
struct TarWriter<W: std::io::Write>(W);

fn tar_writer<W: std::io::Write>(w: W) -> TarWriter<W> {
    TarWriter(w)
}

impl<W: std::io::Write> TarWriter<W> {
    fn append_named(&mut self, name: &str, data: &[u8]) {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..107].copy_from_slice(b"0000644");
        h[108..115].copy_from_slice(b"0000000");
        h[116..123].copy_from_slice(b"0000000");
        h[124..135].copy_from_slice(format!("{:011o}", data.len()).as_bytes());
        h[136..147].copy_from_slice(b"00000000000");
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|b| *b as u32).sum();
        h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        self.0.write_all(&h).unwrap();
        self.0.write_all(data).unwrap();
        let pad = (512 - data.len() % 512) % 512;
        self.0.write_all(&vec![0u8; pad]).unwrap();
    }

    fn finish(mut self) {
        self.0.write_all(&[0u8; 1024]).unwrap();
    }
}

#[test]
fn commit_diff_and_export_show_what_the_container_wrote() {
    if !can_run() || !require_cmds(&["tar"]) {
        return;
    }
    let b = Berth::new("cli-commit");
    b.ok(&[
        "run",
        "--network",
        "none",
        "--name",
        "wr",
        "busybox",
        "sh",
        "-c",
        "echo changed > /etc/motd; rm /etc/group; mkdir /newdir",
    ]);
    let diff = b.ok(&["diff", "wr"]);
    let lines: Vec<&str> = diff.lines().collect();
    for want in ["C /etc", "D /etc/group", "A /etc/motd", "A /newdir"] {
        assert!(lines.contains(&want), "{want} missing:\n{diff}");
    }
    assert!(
        !diff.contains("/etc/hosts"),
        "a mount point shows as a change:\n{diff}"
    );
    let id = b.ok(&[
        "commit",
        "-c",
        "CMD [\"cat\", \"/etc/motd\"]",
        "-c",
        "ENV FOO=bar",
        "-m",
        "my change",
        "-a",
        "me",
        "wr",
        "mybox:v1",
    ]);
    assert!(id.trim().starts_with("sha256:"), "{id}");
    assert_eq!(
        b.ok(&["run", "--rm", "--network", "none", "mybox:v1"]),
        "changed\n"
    );
    assert_eq!(
        b.ok(&[
            "run",
            "--rm",
            "--network",
            "none",
            "mybox:v1",
            "sh",
            "-c",
            "echo $FOO; test -e /etc/group || echo gone"
        ]),
        "bar\ngone\n"
    );
    let hist = b.ok(&["history", "mybox:v1"]);
    assert!(hist.lines().nth(1).unwrap().contains("my change"), "{hist}");
    let out = b.run(&["commit", "-c", "FROM busybox", "wr"]);
    assert_eq!(out.code(), Some(1));
    let tar_path = b.env.path().join("w.tar");
    b.ok(&["export", "-o", &tar_path.display().to_string(), "wr"]);
    let list = run(Command::new("tar").arg("tf").arg(&tar_path)).stdout;
    assert!(list.lines().any(|l| l == "etc/motd"), "{list}");
    assert!(!list.lines().any(|l| l == "etc/group"), "{list}");
    b.ok(&["rm", "wr"]);
    b.ok(&["rmi", "mybox:v1"]);
}

/// The entries of the top layer of `image`, as `tar tf` lists them from `berth save`.
fn top_layer_listing(b: &Berth, image: &str) -> Vec<String> {
    let dir = b
        .env
        .path()
        .join(format!("save-{}", image.replace([':', '/'], "-")));
    std::fs::create_dir_all(&dir).unwrap();
    let archive = dir.join("img.tar");
    b.ok(&["save", "-o", &archive.display().to_string(), image]);
    run(Command::new("tar")
        .arg("xf")
        .arg(&archive)
        .arg("-C")
        .arg(&dir))
    .assert_success();
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    let top = manifest[0]["Layers"].as_array().unwrap().last().unwrap();
    let out = run(Command::new("tar")
        .arg("tf")
        .arg(dir.join(top.as_str().unwrap())));
    out.assert_success();
    out.stdout.lines().map(String::from).collect()
}

#[test]
fn commit_and_diff_of_a_running_container_leave_out_the_engines_mount_points() {
    if !can_run() || !require_cmds(&["tar"]) {
        return;
    }
    let b = Berth::new("cli-initlayer");
    // The busybox fixture has no /etc/hosts, /etc/hostname or /etc/resolv.conf: the
    // runtime makes the mount points for the engine's files in the container's layer.
    b.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "up",
        "busybox",
        "sleep",
        "1d",
    ]);
    // What the container writes to /etc/hosts goes to the bound file, as in Docker.
    b.ok(&[
        "exec",
        "up",
        "sh",
        "-c",
        "echo '10.9.9.9 extra' >> /etc/hosts; mkdir /root/sub; echo mine > /root/sub/f",
    ]);
    // Docker lists only what the container did.
    assert_eq!(
        b.ok(&["diff", "up"]),
        "C /root\nA /root/sub\nA /root/sub/f\n"
    );
    b.ok(&["commit", "up", "snap:1"]);
    assert_eq!(
        top_layer_listing(&b, "snap:1"),
        ["root/", "root/sub/", "root/sub/f"],
        "the layer holds the engine's mount points"
    );
    assert_eq!(
        b.ok(&[
            "run",
            "--rm",
            "--network",
            "none",
            "snap:1",
            "cat",
            "/root/sub/f"
        ]),
        "mine\n"
    );
    // Stopped, the mount points are still left out.
    b.ok(&["stop", "-t", "0", "up"]);
    b.ok(&["commit", "up", "snap:2"]);
    assert_eq!(
        top_layer_listing(&b, "snap:2"),
        ["root/", "root/sub/", "root/sub/f"]
    );

    // A file the user put at one of those paths in the layer (cp into a container never
    // started, as Docker's cp writes there too) is the container's own and is kept.
    b.ok(&[
        "create",
        "--network",
        "none",
        "--name",
        "cpd",
        "busybox",
        "true",
    ]);
    let hosts = b.env.path().join("hosts");
    std::fs::write(&hosts, "10.1.1.1 mine\n").unwrap();
    b.ok(&["cp", &hosts.display().to_string(), "cpd:/etc/hosts"]);
    b.ok(&["commit", "cpd", "snap:3"]);
    let list = top_layer_listing(&b, "snap:3");
    assert!(list.iter().any(|l| l == "etc/hosts"), "{list:?}");
    assert_eq!(b.ok(&["diff", "cpd"]), "C /etc\nA /etc/hosts\n");
    b.ok(&["rm", "-f", "up", "cpd"]);
}

#[test]
fn concurrent_creates_of_one_name_give_it_to_exactly_one() {
    if !can_run() {
        return;
    }
    let b = Berth::new("cli-race");
    let children: Vec<_> = (0..8)
        .map(|_| {
            b.cmd(&[
                "create",
                "--network",
                "none",
                "--name",
                "only",
                "busybox",
                "true",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    let codes: Vec<i32> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap().status.code().unwrap_or(-1))
        .collect();
    assert_eq!(codes.iter().filter(|c| **c == 0).count(), 1, "{codes:?}");
    assert!(codes.iter().all(|c| *c == 0 || *c == 1), "{codes:?}");
    assert_eq!(b.ok(&["ps", "-a", "--format", "{{.Names}}"]), "only\n");
    // Unnamed creates at once all get names of their own.
    let children: Vec<_> = (0..8)
        .map(|_| {
            b.cmd(&["create", "--network", "none", "busybox", "true"])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        assert!(c.wait_with_output().unwrap().status.success());
    }
    let names = b.ok(&["ps", "-a", "--format", "{{.Names}}"]);
    let set: std::collections::BTreeSet<&str> = names.lines().collect();
    assert_eq!(set.len(), 9, "{names}");
    assert!(
        set.iter().all(|n| *n == "only" || n.contains('_')),
        "{names}"
    );
}

#[test]
fn health_checks_run_and_show_in_ps_and_inspect() {
    if !can_run() {
        return;
    }
    let b = Berth::new("cli-health");
    b.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "hc",
        "--health-cmd",
        "test -f /ok",
        "--health-interval",
        "200ms",
        "--health-retries",
        "2",
        "busybox",
        "sleep",
        "600",
    ]);
    b.wait_status("hc", "Up");
    let status = || b.ok(&["ps", "--filter", "name=hc", "--format", "{{.Status}}"]);
    let until = |want: &str| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let s = status();
            if s.contains(want) {
                return;
            }
            assert!(Instant::now() < deadline, "no {want}: {s}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    until("(unhealthy)");
    assert_eq!(
        b.ok(&["ps", "-q", "--filter", "health=unhealthy"])
            .lines()
            .count(),
        1
    );
    b.ok(&["exec", "hc", "touch", "/ok"]);
    until("(healthy)");
    let h = b.ok(&[
        "inspect",
        "-f",
        "{{.State.Health.Status}} {{.State.Health.FailingStreak}}",
        "hc",
    ]);
    assert_eq!(h.trim(), "healthy 0");
    // --no-healthcheck turns the image's (or any) check off.
    b.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "nohc",
        "--no-healthcheck",
        "busybox",
        "sleep",
        "600",
    ]);
    b.wait_status("nohc", "Up");
    std::thread::sleep(Duration::from_millis(300));
    assert!(!b
        .ok(&["ps", "--filter", "name=nohc", "--format", "{{.Status}}"])
        .contains("health"));
    b.ok(&["rm", "-f", "hc", "nohc"]);
}

#[test]
fn start_attaches_and_a_restart_right_after_an_exit_runs_again() {
    if !can_run() {
        return;
    }
    let b = Berth::new("cli-startai");
    let id = b.ok(&[
        "create",
        "-i",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "cat; exit 4",
    ]);
    let id = id.trim();
    for round in 0..3 {
        // At once after the last run's exit, while its shim is on its way out.
        let out = berth_tests::run_with_input(
            &mut b.cmd(&["start", "-ai", id]),
            format!("round {round}\n").as_bytes(),
            Duration::from_secs(30),
        );
        assert_eq!(out.code(), Some(4), "{}", out.stderr);
        assert_eq!(out.stdout, format!("round {round}\n"));
    }
    assert_eq!(b.ok(&["logs", id]), "round 0\nround 1\nround 2\n");
    // attach follows a running container's output until it ends.
    b.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "ticker",
        "busybox",
        "sh",
        "-c",
        "for i in 1 2 3; do sleep 0.2; echo tick$i; done; exit 6",
    ]);
    let out = b.run(&["attach", "ticker"]);
    assert_eq!(out.code(), Some(6));
    assert!(out.stdout.ends_with("tick3\n"), "{}", out.stdout);
    b.ok(&["rm", id, "ticker"]);
}

#[test]
fn a_container_whose_shim_was_killed_is_still_seen_and_removed() {
    if !can_run() || !require_cmds(&["pkill", "pgrep"]) {
        return;
    }
    let b = Berth::new("cli-shimkill");
    let id = b.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "orphan",
        "busybox",
        "sleep",
        "600",
    ]);
    let id = id.trim().to_string();
    b.wait_status("orphan", "Up");
    let pattern = format!("containerd-shim-berth-v2 -namespace berth -id {id}");
    assert!(run(Command::new("pkill").args(["-KILL", "-f", &pattern])).success());
    // The container runs on without its shim: still Up, and stoppable.
    b.wait_status("orphan", "Up");
    let out = b.run(&["rm", "orphan"]);
    assert_eq!(out.code(), Some(1), "{}", out.stderr);
    b.ok(&["rm", "-f", "orphan"]);
    assert!(!b.record_dir(&id).exists());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&id),
        "the rootfs of the container stays mounted"
    );
    let left = run(Command::new("pgrep").args(["-f", "sleep 600"])).stdout;
    let ours: Vec<&str> = left
        .lines()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{}/cgroup", pid.trim()))
                .is_ok_and(|c| c.contains(&id))
        })
        .collect();
    assert!(
        ours.is_empty(),
        "the container's process survived rm -f: {ours:?}"
    );
}
