//! `berth build` as a user drives it, on the busybox fixture: Docker's getting-started
//! Dockerfiles built, run and inspected; multi-stage builds; the cache; failures and bad
//! input. Every `berth` runs inside a network namespace the test makes, so the berth-netd
//! that a RUN on the default network starts keeps its bridge and rules there.

mod engine_support;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_tests::{bin, fixtures, has_cmd, require_cmds, require_root, run, run_timeout};
use engine_support::Host;
use serde_json::Value;

impl Host {
    /// A context directory with these files.
    fn context(&self, name: &str, files: &[(&str, &str)]) -> PathBuf {
        let dir = self.env.path().join(name);
        for (path, content) in files {
            let p = dir.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
        dir
    }

    fn inspect(&self, image: &str) -> Value {
        let out = self.ok(&["image", "inspect", image]);
        let v: Value = serde_json::from_str(&out).unwrap();
        v[0].clone()
    }

    /// The history lines, newest first, as `history --no-trunc` shows CREATED BY.
    fn history(&self, image: &str) -> Vec<String> {
        self.ok(&["history", "--no-trunc", "--format", "{{.CreatedBy}}", image])
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The paths in each layer of `image`, bottom first, from `save`.
    fn layers(&self, image: &str) -> Vec<Vec<String>> {
        let dir = self
            .env
            .path()
            .join(format!("save-{}", image.replace([':', '/'], "-")));
        std::fs::create_dir_all(&dir).unwrap();
        let tar = dir.join("image.tar");
        self.ok(&["save", "-o", &tar.display().to_string(), image]);
        run(Command::new("tar").arg("-xf").arg(&tar).arg("-C").arg(&dir)).assert_success();
        let manifest: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap())
                .unwrap();
        manifest[0]["Layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                let listing = run(Command::new("tar")
                    .arg("-tf")
                    .arg(dir.join(l.as_str().unwrap())));
                listing.assert_success();
                let mut files: Vec<String> = listing.stdout.lines().map(str::to_string).collect();
                files.sort();
                files
            })
            .collect()
    }

    fn snapshot_dirs(&self) -> usize {
        std::fs::read_dir(self.env.root().join("snapshots"))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// What a build leaves behind when it must leave nothing: step dirs, containers.
    #[track_caller]
    fn assert_nothing_left(&self) {
        let build = self.env.run().join("build");
        let left: Vec<_> = std::fs::read_dir(&build)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "left in {}: {left:?}", build.display());
        let out = run(self
            .env
            .oci_runtime(bin("berth-runtime"))
            .args(["list", "-q"]));
        assert!(
            out.stdout.trim().is_empty(),
            "containers left: {}",
            out.stdout
        );
    }
}

fn can_run() -> bool {
    require_root() && require_cmds(&["ip", "nsenter", "nft", "tar"])
}

fn lines_with(out: &str, needle: &str) -> usize {
    out.lines().filter(|l| l.contains(needle)).count()
}

const GETTING_STARTED: &str = r#"# syntax=docker/dockerfile:1
FROM busybox
WORKDIR /app
COPY . .
ENV GREETING=hello PORT=3000
RUN echo "built $GREETING" > /app/built.txt && echo "appuser:x:1000:1000::/app:/bin/sh" >> /etc/passwd
USER appuser
EXPOSE 3000
LABEL org.example.app="getting started"
CMD ["sh", "-c", "cat /app/built.txt /app/src/index.txt; touch /tmp/u; stat -c %u /tmp/u"]
"#;

#[test]
fn getting_started_dockerfile_builds_runs_and_inspects_as_docker() {
    if !can_run() {
        return;
    }
    let h = Host::new("build-getting-started");
    let ctx = h.context(
        "app",
        &[
            ("Dockerfile", GETTING_STARTED),
            ("src/index.txt", "index content\n"),
            ("package.json", "{}\n"),
            ("secret.env", "TOKEN=x\n"),
            (".dockerignore", "secret.env\nDockerfile\n"),
        ],
    );
    let out = h.berth(&["build", "-t", "getting-started", &ctx.display().to_string()]);
    out.assert_success();
    assert!(
        out.stdout.contains("Step 1/9 : FROM busybox"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("Step 5/9 : RUN echo"), "{}", out.stdout);
    assert!(out.stdout.contains(" ---> Running in "), "{}", out.stdout);
    assert!(out.stdout.contains("Successfully built "), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("Successfully tagged getting-started:latest"),
        "{}",
        out.stdout
    );

    let run_out = h.ok(&["run", "--rm", "--network", "none", "getting-started"]);
    assert_eq!(run_out, "built hello\nindex content\n1000\n");
    // .dockerignore kept the secret (and the Dockerfile, read all the same) out; COPY . .
    // took the rest.
    let ls = h.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "getting-started",
        "ls",
        "-a",
        "/app",
    ]);
    let names: Vec<&str> = ls.split_whitespace().collect();
    assert!(!names.contains(&"secret.env"), "{ls}");
    assert!(!names.contains(&"Dockerfile"), "{ls}");
    for n in ["package.json", "src", ".dockerignore", "built.txt"] {
        assert!(names.contains(&n), "{n} missing: {ls}");
    }

    let v = h.inspect("getting-started");
    let c = &v["Config"];
    assert_eq!(c["WorkingDir"], "/app");
    assert_eq!(c["User"], "appuser");
    assert_eq!(
        c["Cmd"],
        serde_json::json!([
            "sh",
            "-c",
            "cat /app/built.txt /app/src/index.txt; touch /tmp/u; stat -c %u /tmp/u"
        ])
    );
    assert!(c["ExposedPorts"]["3000/tcp"].is_object(), "{c}");
    assert_eq!(c["Labels"]["org.example.app"], "getting started");
    let env: Vec<&str> = c["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert!(
        env.contains(&"GREETING=hello") && env.contains(&"PORT=3000"),
        "{env:?}"
    );
    assert!(env.iter().any(|e| e.starts_with("PATH=")), "{env:?}");
    // Layers: busybox's, then WORKDIR (it made /app), COPY and RUN; the rest are config.
    let base = h.inspect("busybox");
    let n = |v: &Value| v["RootFS"]["Layers"].as_array().unwrap().len();
    assert_eq!(n(&v), n(&base) + 3);

    let hist = h.history("getting-started");
    let want_top = [
        "/bin/sh -c #(nop)  CMD [\"sh\" \"-c\" \"cat /app/built.txt /app/src/index.txt; touch /tmp/u; stat -c %u /tmp/u\"]",
        "/bin/sh -c #(nop)  LABEL org.example.app=getting started",
        "/bin/sh -c #(nop)  EXPOSE 3000",
        "/bin/sh -c #(nop)  USER appuser",
    ];
    assert_eq!(&hist[..4], &want_top, "{hist:#?}");
    assert!(
        hist[4].starts_with("/bin/sh -c echo \"built $GREETING\""),
        "{hist:#?}"
    );
    assert_eq!(hist[5], "/bin/sh -c #(nop)  ENV GREETING=hello PORT=3000");
    assert!(
        hist[6].starts_with("/bin/sh -c #(nop) COPY dir:"),
        "{hist:#?}"
    );
    assert_eq!(hist[7], "/bin/sh -c #(nop) WORKDIR /app");
    // The RUN's layer holds what the command wrote, not the mountpoints of /etc/hosts and
    // the like that the runtime made for it.
    let layers = h.layers("getting-started");
    assert_eq!(
        layers.last().unwrap(),
        &["app/", "app/built.txt", "etc/", "etc/passwd"],
        "{layers:?}"
    );
    // The steps' images are intermediate: hidden from `images`, listed by `images -a`.
    let listed = h.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    let mut listed: Vec<&str> = listed.lines().collect();
    listed.sort();
    assert_eq!(listed, ["busybox:latest", "getting-started:latest"]);
    assert_eq!(h.ok(&["images", "-a", "-q"]).lines().count(), 9);
    h.assert_nothing_left();
}

#[test]
fn run_arguments_append_to_entrypoint_and_entrypoint_flag_overrides() {
    if !can_run() {
        return;
    }
    let h = Host::new("build-entrypoint");
    let df = "FROM busybox\nENTRYPOINT [\"echo\", \"hello\"]\nCMD [\"world\"]\n";
    h.berth_stdin(&["build", "-q", "-t", "greeter", "-"], df.as_bytes())
        .assert_success();
    let r = |args: &[&str]| {
        let mut a = vec!["run", "--rm", "--network", "none"];
        a.extend_from_slice(args);
        h.ok(&a)
    };
    assert_eq!(r(&["greeter"]), "hello world\n");
    assert_eq!(r(&["greeter", "there"]), "hello there\n");
    assert_eq!(r(&["--entrypoint", "echo", "greeter", "bye"]), "bye\n");
    let c = &h.inspect("greeter")["Config"];
    assert_eq!(c["Entrypoint"], serde_json::json!(["echo", "hello"]));
    assert_eq!(c["Cmd"], serde_json::json!(["world"]));
    // ENTRYPOINT after an inherited CMD resets it, as Docker does.
    let df2 = "FROM busybox\nENTRYPOINT [\"echo\"]\n";
    h.berth_stdin(&["build", "-q", "-t", "bare", "-"], df2.as_bytes())
        .assert_success();
    assert!(h.inspect("bare")["Config"]["Cmd"].is_null());
}

#[test]
fn multi_stage_final_image_holds_only_what_copy_from_took() {
    if !can_run() {
        return;
    }
    let h = Host::new("build-multistage");
    let df = r#"FROM busybox AS builder
RUN mkdir -p /out && echo artifact > /out/app.txt && echo junk > /junk.txt
FROM busybox AS unused
RUN exit 1
FROM busybox AS other
RUN echo other > /other.txt
FROM scratch
COPY --from=builder /out/app.txt /app.txt
COPY --from=other /other.txt /other.txt
"#;
    let ctx = h.context("ms", &[("Dockerfile", df)]);
    let out = h.berth(&[
        "build",
        "--network",
        "none",
        "-t",
        "ms",
        &ctx.display().to_string(),
    ]);
    out.assert_success();
    // The stage the target does not need never ran.
    assert!(!out.stdout.contains("RUN exit 1"), "{}", out.stdout);
    let v = h.inspect("ms");
    assert_eq!(v["RootFS"]["Layers"].as_array().unwrap().len(), 2);
    let mut files: Vec<String> = h.layers("ms").concat();
    files.sort();
    assert_eq!(files, ["app.txt", "other.txt"], "{files:?}");

    // --target builds a stage and what it needs, no more.
    let out = h.berth(&[
        "build",
        "--network",
        "none",
        "--target",
        "other",
        "-t",
        "o",
        &ctx.display().to_string(),
    ]);
    out.assert_success();
    assert!(!out.stdout.contains("builder"), "{}", out.stdout);
    h.assert_nothing_left();
}

#[test]
fn cache_unchanged_rebuild_starts_nothing_and_one_change_rebuilds_from_its_step() {
    if !can_run() {
        return;
    }
    let h = Host::new("build-cache");
    let df = "FROM busybox\nWORKDIR /app\nCOPY a.txt .\nRUN cat a.txt > copy.txt\nCOPY b.txt .\nRUN cat b.txt >> copy.txt\nCMD [\"cat\", \"/app/copy.txt\"]\n";
    let ctx = h.context(
        "c",
        &[("Dockerfile", df), ("a.txt", "a1\n"), ("b.txt", "b1\n")],
    );
    let c = ctx.display().to_string();
    let build = |extra: &[&str]| {
        let mut a = vec!["build", "--network", "none", "-t", "cached"];
        a.extend_from_slice(extra);
        a.push(&c);
        let out = h.berth(&a);
        out.assert_success();
        out.stdout
    };
    let first = build(&[]);
    assert_eq!(lines_with(&first, "Using cache"), 0, "{first}");
    let id1 = h.inspect("cached")["Id"].clone();
    let snaps = h.snapshot_dirs();

    let started = Instant::now();
    let second = build(&[]);
    let took = started.elapsed();
    assert_eq!(lines_with(&second, "Using cache"), 6, "{second}");
    assert_eq!(lines_with(&second, "Running in"), 0, "{second}");
    assert_eq!(
        h.snapshot_dirs(),
        snaps,
        "an unchanged rebuild wrote a snapshot"
    );
    assert_eq!(h.inspect("cached")["Id"], id1);
    assert!(
        took < Duration::from_secs(2),
        "unchanged rebuild took {took:?}"
    );

    // One copied file changed: the steps before it come from the cache, the rest run.
    std::fs::write(ctx.join("b.txt"), "b2\n").unwrap();
    let third = build(&[]);
    assert_eq!(lines_with(&third, "Using cache"), 3, "{third}");
    assert_eq!(lines_with(&third, "Running in"), 1, "{third}");
    assert_eq!(
        h.ok(&["run", "--rm", "--network", "none", "cached"]),
        "a1\nb2\n"
    );

    // --no-cache runs everything again.
    let fourth = build(&["--no-cache"]);
    assert_eq!(lines_with(&fourth, "Using cache"), 0, "{fourth}");
    assert_eq!(lines_with(&fourth, "Running in"), 2, "{fourth}");

    // A cache entry whose image was removed is a miss, not an error.
    let id = h.inspect("cached")["Id"].as_str().unwrap().to_string();
    h.ok(&["rmi", &id]);
    let fifth = build(&[]);
    assert_eq!(lines_with(&fifth, "Using cache"), 5, "{fifth}");
    h.assert_nothing_left();
}

#[test]
fn a_failing_run_names_step_command_and_code_and_leaves_nothing() {
    if !can_run() {
        return;
    }
    let h = Host::new("build-fail");
    let snaps = h.snapshot_dirs();
    let df = "FROM busybox\nRUN echo before > /before\nRUN exit 3\nRUN echo never\n";
    let out = h.berth_stdin(&["build", "--network", "none", "-"], df.as_bytes());
    out.assert_code(1);
    assert!(
        out.stderr
            .contains("Dockerfile:3: The command '/bin/sh -c exit 3' returned a non-zero code: 3"),
        "{}",
        out.stderr
    );
    assert!(!out.stdout.contains("echo never"), "{}", out.stdout);
    h.assert_nothing_left();
    // Only the committed layer of the first RUN was added.
    assert_eq!(h.snapshot_dirs(), snaps + 1);
}

#[test]
fn bad_input_is_named_with_file_and_line() {
    if !can_run() {
        return;
    }
    let h = Host::new("build-bad");
    let cases: &[(&str, &str)] = &[
        ("FROM busybox\nFOOBAR x\n", "Dockerfile:2: unknown instruction: FOOBAR"),
        (
            "FROM busybox\nCOPY ../outside /x\n",
            "Dockerfile:2: COPY failed: forbidden path outside the build context: ../outside",
        ),
        (
            "FROM busybox\nCOPY missing.txt /x\n",
            "Dockerfile:2: COPY failed: file not found in build context or excluded by .dockerignore: stat missing.txt: file does not exist",
        ),
        ("FROM busybox\nCOPY --from=nosuch /a /b\n", "Dockerfile:2: COPY --from=nosuch: no stage or image named nosuch"),
        ("FROM nosuch.invalid/none:1\n", "Dockerfile:1: base image nosuch.invalid/none:1 could not be pulled"),
        ("FROM busybox\nADD http://example.com/x /x\n", "Dockerfile:2: ADD http://example.com/x"),
    ];
    for (i, (df, want)) in cases.iter().enumerate() {
        let ctx = h.context(&format!("bad{i}"), &[("Dockerfile", df), ("ok.txt", "ok")]);
        let out = h.berth(&["build", "--network", "none", &ctx.display().to_string()]);
        out.assert_code(1);
        assert!(out.stderr.contains(want), "{df}: {}", out.stderr);
    }
    h.assert_nothing_left();
}

#[test]
fn stdin_context_dockerfile_or_tar_and_build_args() {
    if !can_run() {
        return;
    }
    let h = Host::new("build-stdin");
    let df = "FROM busybox\nARG NAME=world\nRUN echo \"hello $NAME\" > /greet\nCMD [\"cat\", \"/greet\"]\n";
    let out = h.berth_stdin(
        &[
            "build",
            "--network",
            "none",
            "--build-arg",
            "NAME=berth",
            "-t",
            "g",
            "-",
        ],
        df.as_bytes(),
    );
    out.assert_success();
    assert_eq!(
        h.ok(&["run", "--rm", "--network", "none", "g"]),
        "hello berth\n"
    );
    let hist = h.history("g");
    assert!(
        hist.iter()
            .any(|l| l.starts_with("|1 NAME=berth /bin/sh -c echo")),
        "{hist:#?}"
    );
    // The default then, and the step that uses it misses the cache.
    let out = h.berth_stdin(
        &["build", "--network", "none", "-t", "g", "-"],
        df.as_bytes(),
    );
    out.assert_success();
    assert_eq!(
        h.ok(&["run", "--rm", "--network", "none", "g"]),
        "hello world\n"
    );

    // A tar of a whole context on stdin.
    let ctx = h.context(
        "tarctx",
        &[
            (
                "Dockerfile",
                "FROM busybox\nCOPY data/ /data/\nCMD [\"cat\", \"/data/x.txt\"]\n",
            ),
            ("data/x.txt", "from the tar\n"),
        ],
    );
    let tar = run(Command::new("tar")
        .arg("-C")
        .arg(&ctx)
        .args(["-cf", "-", "."]));
    let mut bytes = Vec::new();
    Command::new("tar")
        .arg("-C")
        .arg(&ctx)
        .args(["-cf", "-", "."])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut bytes)
        .unwrap();
    let _ = tar;
    h.berth_stdin(&["build", "-t", "fromtar", "-"], &bytes)
        .assert_success();
    assert_eq!(
        h.ok(&["run", "--rm", "--network", "none", "fromtar"]),
        "from the tar\n"
    );
    h.assert_nothing_left();
}

#[test]
fn copy_chown_chmod_add_tar_and_cache_mounts() {
    if !can_run() {
        return;
    }
    let h = Host::new("build-copy");
    let ctx = h.context(
        "cp",
        &[
            (
                "Dockerfile",
                "FROM busybox\n\
                 RUN echo app:x:1234:1234::/:/bin/sh >> /etc/passwd && echo app:x:1234: >> /etc/group\n\
                 COPY --chown=app:app --chmod=750 run.sh /opt/\n\
                 COPY *.cfg /etc/conf/\n\
                 ADD bundle.tar /srv/\n\
                 RUN --mount=type=cache,target=/cache echo x >> /cache/count && grep -c x /cache/count > /runs\n\
                 RUN --mount=type=bind,source=run.sh,target=/mnt/run.sh cp /mnt/run.sh /bound\n\
                 RUN mkdir -p /usr/lib2 && ln -s usr/lib2 /lib2\n\
                 COPY tree/ /\n",
            ),
            ("run.sh", "#!/bin/sh\necho hi\n"),
            ("a.cfg", "a"),
            ("b.cfg", "b"),
            ("c.txt", "c"),
            ("t/inner/file.txt", "in the tar\n"),
            ("tree/lib2/x.so", "lib\n"),
        ],
    );
    run(Command::new("tar")
        .arg("-C")
        .arg(ctx.join("t"))
        .arg("-cf")
        .arg(ctx.join("bundle.tar"))
        .arg("inner"))
    .assert_success();
    let c = ctx.display().to_string();
    h.ok(&["build", "--network", "none", "-t", "cp", &c]);
    let sh = |cmd: &str| h.ok(&["run", "--rm", "--network", "none", "cp", "sh", "-c", cmd]);
    assert_eq!(sh("stat -c '%u:%g %a' /opt/run.sh"), "1234:1234 750\n");
    assert_eq!(sh("ls /etc/conf"), "a.cfg\nb.cfg\n");
    assert_eq!(sh("cat /srv/inner/file.txt"), "in the tar\n");
    assert_eq!(sh("cat /runs"), "1\n");
    assert_eq!(sh("cat /bound"), "#!/bin/sh\necho hi\n");
    // A directory copied onto the image's symlink (merged /usr) goes where it points.
    assert_eq!(
        sh("cat /usr/lib2/x.so; [ -L /lib2 ] && echo link"),
        "lib\nlink\n"
    );
    // The cache mount persists between builds (the step runs again with --no-cache).
    h.ok(&["build", "--no-cache", "--network", "none", "-t", "cp", &c]);
    assert_eq!(sh("cat /runs"), "2\n");
    h.assert_nothing_left();
}

#[test]
fn kill_9_during_a_build_then_rebuild_works_and_cleans_up() {
    if !can_run() {
        return;
    }
    let h = Host::new("build-kill");
    let ctx = h.context(
        "k",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN echo first > /first\nRUN sleep 30 && echo slow > /slow\n",
        )],
    );
    let c = ctx.display().to_string();
    let mut child = h
        .cmd(&["build", "--network", "none", "-t", "k", &c])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait for the slow step's container, then kill the build hard.
    let mut stdout = child.stdout.take().unwrap();
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut buf = [0u8; 4096];
    while lines_with(&seen, "Running in") < 2 {
        assert!(
            Instant::now() < deadline,
            "never reached the slow step: {seen}"
        );
        let n = stdout.read(&mut buf).unwrap();
        assert!(n > 0, "build ended early: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    // nsenter execs berth: the child is the build itself.
    let _ = Command::new("kill")
        .args(["-9", &child.id().to_string()])
        .status();
    let _ = child.wait();
    assert!(
        h.env
            .run()
            .join("build")
            .read_dir()
            .unwrap()
            .next()
            .is_some(),
        "a killed build leaves its step for the next one to clean"
    );

    // The next build finds what the killed one left, cleans it, and reuses the first RUN.
    let fast = ctx.join("Dockerfile");
    std::fs::write(
        &fast,
        "FROM busybox\nRUN echo first > /first\nRUN echo fast > /slow\n",
    )
    .unwrap();
    let out = h.berth(&["build", "--network", "none", "-t", "k", &c]);
    out.assert_success();
    assert_eq!(lines_with(&out.stdout, "Using cache"), 1, "{}", out.stdout);
    assert_eq!(
        h.ok(&[
            "run",
            "--rm",
            "--network",
            "none",
            "k",
            "cat",
            "/first",
            "/slow"
        ]),
        "first\nfast\n"
    );
    h.assert_nothing_left();
    let _ = Path::new("");
}

#[test]
fn onbuild_triggers_run_in_the_child_build_and_copy_from_an_image() {
    if !can_run() {
        return;
    }
    let h = Host::new("build-onbuild");
    let df =
        "FROM busybox\nONBUILD COPY hello.txt /hello.txt\nONBUILD RUN cat /hello.txt > /seen\n";
    h.berth_stdin(
        &["build", "-q", "--network", "none", "-t", "onb", "-"],
        df.as_bytes(),
    )
    .assert_success();
    let ctx = h.context(
        "child",
        &[
            (
                "Dockerfile",
                "FROM onb\nCOPY --from=busybox /bin/busybox /opt/busybox\n",
            ),
            ("hello.txt", "from the trigger\n"),
        ],
    );
    let out = h.berth(&[
        "build",
        "--network",
        "none",
        "-t",
        "child",
        &ctx.display().to_string(),
    ]);
    out.assert_success();
    assert!(
        out.stdout.contains("# Executing 2 build triggers"),
        "{}",
        out.stdout
    );
    assert_eq!(
        h.ok(&["run", "--rm", "--network", "none", "child", "cat", "/seen"]),
        "from the trigger\n"
    );
    assert!(h.inspect("child")["Config"]["OnBuild"].is_null());
    assert_eq!(
        h.ok(&[
            "run",
            "--rm",
            "--network",
            "none",
            "child",
            "/opt/busybox",
            "echo",
            "ok"
        ]),
        "ok\n"
    );
    h.assert_nothing_left();
}

#[test]
fn run_heredocs_run_as_shell_scripts_or_as_programs() {
    if !can_run() {
        return;
    }
    let h = Host::new("build-heredoc");
    let df = "FROM busybox\n\
              RUN <<EOF\n\
              echo one > /one\n\
              echo two >> /one\n\
              EOF\n\
              RUN <<EOF\n\
              #!/bin/sh -e\n\
              echo \"ran as $0\" > /prog\n\
              EOF\n";
    h.berth_stdin(
        &["build", "-q", "--network", "none", "-t", "hd", "-"],
        df.as_bytes(),
    )
    .assert_success();
    assert_eq!(
        h.ok(&[
            "run",
            "--rm",
            "--network",
            "none",
            "hd",
            "cat",
            "/one",
            "/prog"
        ]),
        "one\ntwo\nran as /dev/pipes/EOF\n"
    );
    h.assert_nothing_left();
}

/// The Dockerfile built beside Docker's classic builder and podman's (buildah).
const COMPARED: &str = r#"FROM busybox
ARG VER=1
WORKDIR /app
COPY . .
COPY src/a.txt /x/
ENV GREETING=hello PORT=3000
RUN echo "built $GREETING $VER" > /app/built.txt
RUN ["echo", "exec", "form"]
USER 1000
EXPOSE 3000 53/udp
LABEL org.example.app="getting started" b=c
VOLUME ["/data", "/logs"]
STOPSIGNAL SIGINT
HEALTHCHECK --interval=5s --retries=2 CMD wget -q localhost || exit 1
SHELL ["/bin/sh", "-ec"]
ONBUILD RUN echo child
ENTRYPOINT ["sh"]
CMD ["-c", "cat /app/built.txt"]
"#;

/// The history lines with COPY's content hash taken out (each tool hashes differently).
fn unhash(l: &str) -> String {
    match l.find(':') {
        Some(i) if l.contains("#(nop) COPY ") && l.len() >= i + 65 => {
            format!("{}{}", &l[..i], &l[i + 65..])
        }
        _ => l.to_string(),
    }
}

/// A config without the zero values some builders write and others leave out.
fn meaningful(c: &Value) -> serde_json::Map<String, Value> {
    c.as_object()
        .unwrap()
        .iter()
        .filter(|(k, v)| {
            *k != "Image"
                && !matches!(v, Value::Null | Value::Bool(false))
                && v.as_str() != Some("")
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The same Dockerfile through `podman build` (buildah) gives the same config (but for
/// buildah's own version label), the same history lines and as many layers.
#[test]
fn config_and_history_match_podman_build() {
    if !can_run() || !require_cmds(&["podman", "runc"]) {
        return;
    }
    let h = Host::new("build-vs-podman");
    let ctx = h.context("cmp", &[("Dockerfile", COMPARED), ("src/a.txt", "a\n")]);
    let c = ctx.display().to_string();
    h.ok(&["build", "-q", "-t", "cmp", &c]);
    let pd = h.env.path().join("podman");
    let podman = |args: &[&str]| {
        run_timeout(
            h.env
                .command("podman")
                .arg("--root")
                .arg(pd.join("root"))
                .arg("--runroot")
                .arg(pd.join("run"))
                // crun refuses this host's hybrid cgroups (MACHINE-NOTES).
                .args(["--runtime", "runc", "--storage-driver", "vfs"])
                .args(["--cgroup-manager", "cgroupfs", "--events-backend", "file"])
                .args(args),
            Duration::from_secs(180),
        )
    };
    let busybox = fixtures().join("busybox.tar").display().to_string();
    podman(&["load", "-i", &busybox]).assert_success();
    podman(&[
        "build",
        "-q",
        "--network",
        "host",
        "--ulimit",
        "nofile=1024:1024",
        // Docker's image format: OCI's config has no HEALTHCHECK, ONBUILD or SHELL.
        "--format",
        "docker",
        "-t",
        "cmp",
        &c,
    ])
    .assert_success();
    let pj: Value = serde_json::from_str(&podman(&["image", "inspect", "cmp"]).stdout).unwrap();
    let mut theirs_cfg = meaningful(&pj[0]["Config"]);
    if let Some(l) = theirs_cfg.get_mut("Labels").and_then(Value::as_object_mut) {
        l.remove("io.buildah.version");
    }
    let bj = h.inspect("cmp");
    // podman's inspect shows the OCI view of the config (no Healthcheck, OnBuild, Shell):
    // every field it shows must match ours.
    let ours_cfg = meaningful(&bj["Config"]);
    for (k, v) in &theirs_cfg {
        assert_eq!(ours_cfg.get(k), Some(v), "Config.{k}");
    }
    assert!(theirs_cfg.len() >= 9, "{theirs_cfg:?}");
    if let Some(hc) = pj[0].get("HealthCheck").filter(|v| !v.is_null()) {
        assert_eq!(hc["Test"], bj["Config"]["Healthcheck"]["Test"]);
    }
    // buildah spells its history lines its own way (`#(nop)  CMD [...]`, Go structs): the
    // same instructions in the same order is what can be compared.
    let keyword = |l: &str| match l.split_once("#(nop)") {
        Some((_, rest)) => rest
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string(),
        None if l.starts_with("berth ") => "BASE".into(),
        None => "RUN".into(),
    };
    let ours: Vec<String> = h.history("cmp").iter().map(|l| keyword(l)).collect();
    let theirs: Vec<String> =
        podman(&["history", "--no-trunc", "--format", "{{.CreatedBy}}", "cmp"])
            .stdout
            .lines()
            .map(keyword)
            .collect();
    assert_eq!(ours, theirs);
    let _ = podman(&["rmi", "-a", "-f"]);
}

/// Where dockerd runs here (optional: skipped otherwise), the same Dockerfile through
/// `DOCKER_BUILDKIT=0 docker build` gives the same image config, the same history lines (but
/// for the content hashes of COPY, which Docker takes over tar headers) and as many layers.
#[test]
fn config_history_and_layers_match_dockers_classic_builder() {
    if !can_run() || !has_cmd("dockerd") || !has_cmd("docker") {
        return;
    }
    let h = Host::new("build-vs-docker");
    let ctx = h.context("cmp", &[("Dockerfile", COMPARED), ("src/a.txt", "a\n")]);
    let c = ctx.display().to_string();
    h.ok(&["build", "-q", "-t", "cmp", &c]);

    // A private dockerd in the test's namespace: its docker0 and rules stay there.
    let d = h.env.path().join("docker");
    let sock = format!("unix://{}", d.join("d.sock").display());
    let mut dockerd = h.env.spawn(
        Command::new("nsenter")
            .arg(format!("--net={}", h.ns.display()))
            .arg("dockerd")
            .arg("--data-root")
            .arg(d.join("data"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--pidfile")
            .arg(d.join("pid"))
            .args(["-H", &sock])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let docker = |args: &[&str]| {
        run_timeout(
            Command::new("docker")
                .args(["-H", &sock])
                .args(args)
                .env("DOCKER_BUILDKIT", "0"),
            Duration::from_secs(120),
        )
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !docker(&["info"]).success() {
        if Instant::now() > deadline {
            eprintln!("dockerd did not start here; comparison skipped");
            let _ = dockerd.kill();
            let _ = dockerd.wait();
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let busybox = fixtures().join("busybox.tar").display().to_string();
    docker(&["load", "-i", &busybox]).assert_success();
    docker(&["build", "-q", "-t", "cmp", &c]).assert_success();
    let dj: Value = serde_json::from_str(&docker(&["image", "inspect", "cmp"]).stdout).unwrap();
    let bj = h.inspect("cmp");
    // Docker's classic builder also writes the zero values of the container config it
    // commits (`"Tty": false`, `"Hostname": ""`) and the parent's id as `Image`.
    assert_eq!(meaningful(&bj["Config"]), meaningful(&dj[0]["Config"]));
    assert_eq!(
        bj["RootFS"]["Layers"].as_array().unwrap().len(),
        dj[0]["RootFS"]["Layers"].as_array().unwrap().len()
    );
    let ours: Vec<String> = h.history("cmp").iter().map(|l| unhash(l)).collect();
    let theirs: Vec<String> =
        docker(&["history", "--no-trunc", "--format", "{{.CreatedBy}}", "cmp"])
            .stdout
            .lines()
            .map(unhash)
            .collect();
    assert_eq!(ours, theirs);
    let _ = Command::new("kill").arg(dockerd.id().to_string()).status();
    let _ = dockerd.wait();
}
