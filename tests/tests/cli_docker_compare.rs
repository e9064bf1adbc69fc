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

/// A dual-stack network beside a private dockerd's (IPv6 needs no ip6tables for this):
/// network inspect's EnableIPv6, IPAM configs and IPv6Address, inspect's IPv6 fields and
/// IPAMConfig on the dual-stack network and on an IPv4-only one, a static `--ip6` taken
/// again refused with the same exit code. berth runs in a network namespace of its own, so
/// its netd's bridges stay off the host.
#[test]
fn ipv6_network_and_container_inspect_match_dockers() {
    if !berth_tests::features::ipv6() {
        berth_tests::host_lacks("IPv6");
        return;
    }
    if !berth_tests::require_cmds(&["nsenter"]) {
        return;
    }
    let Some((env, dockerd)) = dockerd_with_busybox("cli-vs-docker-ipv6") else {
        return;
    };
    let ns_name = env.unique("h");
    run_timeout(
        std::process::Command::new("ip").args(["netns", "add", &ns_name]),
        Duration::from_secs(10),
    )
    .assert_success();
    let ns = format!("--net=/run/netns/{ns_name}");
    let docker =
        |args: &[&str]| run_timeout(dockerd.docker(&env).args(args), Duration::from_secs(60));
    let berth = |args: &[&str]| {
        run_timeout(
            env.command("nsenter")
                .arg(&ns)
                .arg(bin("berth"))
                .args(args)
                .env("BERTH_CGROUP_PARENT", env.unique("cg")),
            Duration::from_secs(60),
        )
    };
    berth(&[
        "load",
        "-i",
        &fixtures().join("busybox.tar").display().to_string(),
    ])
    .assert_success();
    let json = |o: Output| -> serde_json::Value {
        o.assert_success();
        serde_json::from_str(&o.stdout).unwrap()
    };
    let mut seen = Vec::new();
    for (who, tool) in [
        ("docker", &docker as &dyn Fn(&[&str]) -> Output),
        ("berth", &berth),
    ] {
        for args in [
            [
                "network",
                "create",
                "--ipv6",
                "--subnet",
                "10.234.40.0/24",
                "--subnet",
                "fd00:234:40::/64",
                "ds",
            ]
            .as_slice(),
            &["network", "create", "--subnet", "10.234.41.0/24", "v4"],
            &[
                "run",
                "-d",
                "--network",
                "ds",
                "--ip6",
                "fd00:234:40::80",
                "--name",
                "web",
                "busybox",
                "sleep",
                "600",
            ],
            &[
                "run",
                "-d",
                "--network",
                "ds",
                "--name",
                "peer",
                "busybox",
                "sleep",
                "600",
            ],
            &[
                "run",
                "-d",
                "--network",
                "v4",
                "--name",
                "solo",
                "busybox",
                "sleep",
                "600",
            ],
        ] {
            let out = tool(args);
            assert!(out.success(), "{who} {args:?}: {}", out.stderr);
        }
        let taken = tool(&[
            "run",
            "-d",
            "--network",
            "ds",
            "--ip6",
            "fd00:234:40::80",
            "busybox",
            "true",
        ]);
        // Names: a peer's AAAA record; an IPv4-only name's AAAA query is no NXDOMAIN.
        let aaaa = tool(&["exec", "web", "nslookup", "-type=aaaa", "peer"]);
        let v4_only = tool(&["exec", "solo", "nslookup", "-type=aaaa", "solo"]);
        let dns = (
            aaaa.code(),
            aaaa.stdout.contains("fd00:234:40::2"),
            aaaa.stdout.contains("Non-authoritative answer"),
            v4_only.code(),
            v4_only.stdout.contains("NXDOMAIN") || v4_only.stderr.contains("NXDOMAIN"),
        );
        let net = json(tool(&["network", "inspect", "ds"]))[0].clone();
        let net4 = json(tool(&["network", "inspect", "v4"]))[0].clone();
        let ids: Vec<String> = ["web", "peer", "solo"]
            .iter()
            .map(|c| {
                tool(&["inspect", "-f", "{{.Id}}", c])
                    .stdout
                    .trim()
                    .to_string()
            })
            .collect();
        let eps: Vec<serde_json::Value> = [("web", "ds"), ("peer", "ds"), ("solo", "v4")]
            .iter()
            .map(|(c, n)| json(tool(&["inspect", c]))[0]["NetworkSettings"]["Networks"][n].clone())
            .collect();
        // What a user reads, with the ids put in place of each engine's own.
        let containers = |n: &serde_json::Value| -> Vec<String> {
            ids.iter()
                .map(|id| n["Containers"][id]["IPv6Address"].to_string())
                .collect()
        };
        let fields: Vec<String> = eps
            .iter()
            .flat_map(|ep| {
                [
                    "IPv6Gateway",
                    "GlobalIPv6Address",
                    "GlobalIPv6PrefixLen",
                    "IPAMConfig",
                ]
                .map(|k| format!("{k}={}", ep[k]))
            })
            .collect();
        seen.push((
            who,
            net["EnableIPv6"].clone(),
            // Subnets: dockerd 20.10 lists a Gateway only when one was given, berth always
            // (as newer Docker's inspect reports the gateway it chose).
            net["IPAM"]["Config"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["Subnet"].to_string())
                .collect::<Vec<_>>(),
            containers(&net),
            net4["EnableIPv6"].clone(),
            containers(&net4),
            fields,
            taken.code(),
            dns,
        ));
        for c in ["web", "peer", "solo"] {
            tool(&["rm", "-f", c]).assert_success();
        }
        tool(&["network", "rm", "ds", "v4"]).assert_success();
        // Docker's words: "Address already in use"; ours name the address.
        assert!(
            taken.stderr.to_lowercase().contains("already in use"),
            "{who}: {}",
            taken.stderr
        );
    }
    let (d, b) = (&seen[0], &seen[1]);
    assert_eq!(d.1, b.1, "EnableIPv6");
    assert_eq!(d.2, b.2, "IPAM.Config");
    assert_eq!(d.3, b.3, "Containers.*.IPv6Address");
    assert_eq!(d.4, b.4, "EnableIPv6 of an IPv4-only network");
    assert_eq!(d.5, b.5, "Containers.*.IPv6Address of an IPv4-only network");
    assert_eq!(d.6, b.6, "inspect's IPv6 fields");
    assert_eq!(d.7, b.7, "exit code of a taken --ip6");
    assert_eq!(
        d.8, b.8,
        "AAAA answers (exit codes, peer's address, no NXDOMAIN)"
    );
    assert!(b.8 .1, "berth resolves the peer's AAAA record");
}
