//! `berth` beside `docker`: the same commands against a private dockerd (its own data root,
//! network namespace and socket) and a private Berth engine, in one test, with the busybox
//! fixture loaded in both. What a user sees must match: output, exit codes, columns,
//! inspect fields, the shape of errors. `--network none` throughout (the private dockerd has
//! no bridge).

mod dockerd_support;
mod runtime_support;

use std::time::Duration;

use berth_tests::{bin, fixtures, run_timeout, Output, TestEnv};
use dockerd_support::{dockerd_with_busybox, Dockerd};

struct Both<'a> {
    env: &'a TestEnv,
    dockerd: &'a Dockerd,
}

impl Both<'_> {
    fn docker(&self, args: &[&str]) -> Output {
        run_timeout(
            self.dockerd.docker(self.env).args(args),
            Duration::from_secs(60),
        )
    }

    fn berth(&self, args: &[&str]) -> Output {
        let mut c = self.env.command(bin("berth"));
        c.args(args)
            .env("BERTH_CGROUP_PARENT", self.env.unique("cg"));
        run_timeout(&mut c, Duration::from_secs(60))
    }

    /// Both, with the same exit code and stdout; the two outputs.
    #[track_caller]
    fn same(&self, args: &[&str]) -> (Output, Output) {
        let d = self.docker(args);
        let b = self.berth(args);
        assert_eq!(
            b.code(),
            d.code(),
            "{args:?}: exit codes differ\ndocker: {}\nberth: {}",
            d.stderr,
            b.stderr
        );
        assert_eq!(b.stdout, d.stdout, "{args:?}: stdout differs");
        (d, b)
    }

    /// Both, with the same exit code; stdout may differ (ids).
    #[track_caller]
    fn same_code(&self, args: &[&str]) -> (Output, Output) {
        let d = self.docker(args);
        let b = self.berth(args);
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
    }
}

#[test]
fn berth_and_docker_agree_on_what_a_user_sees() {
    let Some((env, dockerd)) = dockerd_with_busybox("cli-vs-docker") else {
        return;
    };
    let load = run_timeout(
        env.command(bin("berth"))
            .args(["load", "-i"])
            .arg(fixtures().join("busybox.tar")),
        Duration::from_secs(120),
    );
    load.assert_success();
    let both = Both {
        env: &env,
        dockerd: &dockerd,
    };
    let args = |rest: &[&'static str]| -> Vec<&'static str> {
        let mut v = vec!["run", "--network", "none"];
        v.extend_from_slice(rest);
        v
    };

    // Output streams and the container's status.
    let (d, b) = both.same(&args(&[
        "busybox",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]));
    assert_eq!(b.stderr, d.stderr);
    // 127, 126, 125.
    both.same_code(&args(&["busybox", "/nonexistent"]));
    both.same_code(&args(&["busybox", "/etc/passwd"]));
    both.same_code(&["run", "--nosuchflag", "busybox"]);
    both.same_code(&args(&["--cpus", "999", "busybox", "true"]));
    both.same_code(&args(&["--restart", "always", "--rm", "busybox", "true"]));
    // The image's config under the flags.
    both.same(&args(&[
        "-e",
        "A=1",
        "-w",
        "/tmp",
        "-u",
        "nobody",
        "busybox",
        "sh",
        "-c",
        "echo $A $(pwd) $(id -un) $HOME",
    ]));
    both.same(&args(&["--entrypoint", "echo", "busybox", "a", "b"]));
    both.same(&args(&["--rm", "busybox", "sh", "-c", "grep -E '^Cap(Eff|Bnd)' /proc/self/status; cat /proc/sys/net/ipv4/ip_forward; ls /dev | sort | tr '\\n' ' '"]));
    both.same(&args(&[
        "--rm",
        "--cap-drop",
        "ALL",
        "--cap-add",
        "NET_RAW",
        "busybox",
        "grep",
        "CapEff",
        "/proc/self/status",
    ]));
    both.same(&args(&[
        "--rm",
        "--read-only",
        "--tmpfs",
        "/scratch",
        "busybox",
        "sh",
        "-c",
        "touch /x 2>/dev/null || echo ro; touch /scratch/y && echo tmpfs-ok",
    ]));

    // Names: taken once; then ps, inspect, logs, wait, rm agree.
    both.same_code(&[
        "create",
        "--network",
        "none",
        "--name",
        "cmp1",
        "busybox",
        "true",
    ]);
    let (d, b) = both.same_code(&[
        "create",
        "--network",
        "none",
        "--name",
        "cmp1",
        "busybox",
        "true",
    ]);
    assert!(
        d.stderr.contains("is already in use") && b.stderr.contains("is already in use"),
        "{}\n{}",
        d.stderr,
        b.stderr
    );
    both.same(&args(&[
        "--name",
        "cmp2",
        "busybox",
        "sh",
        "-c",
        "echo logged; exit 2",
    ]));
    both.same(&[
        "ps",
        "-a",
        "--filter",
        "name=cmp",
        "--format",
        "{{.Names}} {{.Image}} {{.Command}} {{.State}}",
    ]);
    let (d, b) = both.same_code(&["ps", "-a"]);
    let header = |o: &str| {
        o.lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(
        header(&b.stdout),
        header(&d.stdout),
        "ps header\n{}\n{}",
        d.stdout,
        b.stdout
    );
    // Same states (times and generated names aside).
    let (d, b) = both.same_code(&["ps", "-a", "--format", "{{.State}}"]);
    let sorted = |o: &str| {
        let mut v: Vec<String> = o.lines().map(str::to_string).collect();
        v.sort();
        v
    };
    assert_eq!(sorted(&b.stdout), sorted(&d.stdout));
    both.same(&["inspect", "-f", "{{.State.Status}} {{.State.ExitCode}} {{.Path}} {{.Args}} {{.Name}} {{.Config.Cmd}} {{.Config.Image}} {{.HostConfig.NetworkMode}} {{.RestartCount}}", "cmp2"]);
    both.same(&["logs", "cmp2"]);
    both.same(&["logs", "--tail", "1", "cmp2"]);
    both.same(&["wait", "cmp2"]);
    both.same_code(&["inspect", "nosuch"]);
    let (d, b) = both.same_code(&["start", "nosuch"]);
    assert!(
        d.stderr.contains("No such container: nosuch")
            && b.stderr.contains("No such container: nosuch"),
        "{}\n{}",
        d.stderr,
        b.stderr
    );

    // A running container: exec, rm refused, kill, stop.
    both.same_code(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "r1",
        "busybox",
        "sleep",
        "600",
    ]);
    both.same(&["exec", "r1", "sh", "-c", "echo in; exit 5"]);
    both.same_code(&["exec", "r1", "nosuchcmd"]);
    both.same(&[
        "exec",
        "-u",
        "nobody",
        "-w",
        "/etc",
        "r1",
        "sh",
        "-c",
        "id -u; pwd",
    ]);
    let (d, b) = both.same_code(&["rm", "r1"]);
    assert!(!d.stderr.is_empty() && !b.stderr.is_empty());
    both.same(&["pause", "r1"]);
    both.same(&["ps", "--format", "{{.Names}} {{.State}}"]);
    both.same(&["unpause", "r1"]);
    both.same(&["kill", "-s", "KILL", "r1"]);
    both.same(&["wait", "r1"]);
    both.same(&[
        "inspect",
        "-f",
        "{{.State.Status}} {{.State.ExitCode}}",
        "r1",
    ]);
    // What a container wrote: diff and cp agree.
    both.same(&args(&[
        "--name",
        "w1",
        "busybox",
        "sh",
        "-c",
        "echo x > /etc/motd; mkdir /newdir; rm /etc/group",
    ]));
    // Docker lists changes in its walk's order, which varies; Berth sorts them by path.
    let (d, b) = both.same_code(&["diff", "w1"]);
    let sorted = |o: &str| {
        let mut v: Vec<String> = o.lines().map(str::to_string).collect();
        v.sort();
        v
    };
    assert_eq!(sorted(&b.stdout), sorted(&d.stdout));
    both.same(&["rm", "cmp1", "cmp2", "r1", "w1"]);
    let (d, b) = both.same_code(&["ps", "-aq", "--filter", "name=cmp"]);
    assert_eq!((d.stdout.as_str(), b.stdout.as_str()), ("", ""));
}

/// The entries of the top layer of the image `save` wrote to `archive`, as `tar tf` lists
/// them.
fn top_layer_listing(archive: &std::path::Path) -> Vec<String> {
    let dir = archive.with_extension("d");
    std::fs::create_dir_all(&dir).unwrap();
    berth_tests::run(
        std::process::Command::new("tar")
            .arg("xf")
            .arg(archive)
            .arg("-C")
            .arg(&dir),
    )
    .assert_success();
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    let top = manifest[0]["Layers"].as_array().unwrap().last().unwrap();
    let out = berth_tests::run(
        std::process::Command::new("tar")
            .arg("tf")
            .arg(dir.join(top.as_str().unwrap())),
    );
    out.assert_success();
    let mut v: Vec<String> = out.stdout.lines().map(String::from).collect();
    v.sort();
    v
}

/// A running container's commit and diff hold what it wrote, not the mount points of the
/// files the engine binds: Docker has those in its init layer.
#[test]
fn commit_and_diff_of_a_running_container_match_dockers() {
    let Some((env, dockerd)) = dockerd_with_busybox("cli-vs-docker-commit") else {
        return;
    };
    let load = run_timeout(
        env.command(bin("berth"))
            .args(["load", "-i"])
            .arg(fixtures().join("busybox.tar")),
        Duration::from_secs(120),
    );
    load.assert_success();
    let both = Both {
        env: &env,
        dockerd: &dockerd,
    };
    both.same_code(&[
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
    both.same(&[
        "exec",
        "up",
        "sh",
        "-c",
        "echo '10.9.9.9 extra' >> /etc/hosts; mkdir /root/sub; echo mine > /root/sub/f",
    ]);
    let (d, b) = both.same_code(&["diff", "up"]);
    let sorted = |o: &str| {
        let mut v: Vec<String> = o.lines().map(str::to_string).collect();
        v.sort();
        v
    };
    assert_eq!(sorted(&b.stdout), sorted(&d.stdout));
    both.same_code(&["commit", "up", "snap:1"]);
    let (da, ba) = (env.path().join("d.tar"), env.path().join("b.tar"));
    both.docker(&["save", "-o", &da.display().to_string(), "snap:1"])
        .assert_success();
    both.berth(&["save", "-o", &ba.display().to_string(), "snap:1"])
        .assert_success();
    let (dl, bl) = (top_layer_listing(&da), top_layer_listing(&ba));
    assert_eq!(bl, dl);
    assert!(!bl.iter().any(|l| l.starts_with("etc")), "{bl:?}");
    both.same(&["rm", "-f", "up"]);
    both.same_code(&["rmi", "snap:1"]);
}
