//! The `berth` image commands as a user types them: a private root, the fixture registry,
//! and berth-imaged started by the first command (daemonless).

use std::process::Command;

use berth_tests::{
    bin, require_cmds, require_root, run, run_with_input, Output, Registry, TestEnv,
};

fn berth(env: &TestEnv, args: &[&str]) -> Output {
    run(env.command(bin("berth")).args(args))
}

fn can_run() -> bool {
    // pkill: the daemon test kills berth-imaged by its command line.
    require_root() && require_cmds(&["docker-registry", "skopeo", "pkill"])
}

#[test]
fn pull_images_tag_history_inspect_and_rmi_read_like_docker() {
    if !can_run() {
        return;
    }
    let env = TestEnv::new("cli-images");
    let reg = Registry::start(&env);
    let image = reg.reference("berth/busybox:latest");

    // The first command starts the daemon; the pull prints Docker's lines (not a terminal).
    let out = berth(&env, &["pull", &image]);
    out.assert_success();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines[0], "latest: Pulling from berth/busybox",
        "{}",
        out.stdout
    );
    assert!(
        lines.iter().any(|l| l.ends_with(": Pull complete")),
        "{}",
        out.stdout
    );
    assert!(
        lines.iter().any(|l| l.starts_with("Digest: sha256:")),
        "{}",
        out.stdout
    );
    assert_eq!(
        lines[lines.len() - 2],
        format!("Status: Downloaded newer image for {image}")
    );
    assert_eq!(lines[lines.len() - 1], image);
    assert!(env.run().join("imaged.sock").exists());

    // Pulled again: up to date, layers already there.
    let out = berth(&env, &["pull", &image]);
    out.assert_success();
    assert!(out.stdout.contains("Already exists"), "{}", out.stdout);
    assert!(out
        .stdout
        .contains(&format!("Status: Image is up to date for {image}")));

    berth(&env, &["tag", &image, "mybox:1"]).assert_success();
    let out = berth(&env, &["images"]);
    out.assert_success();
    let rows: Vec<Vec<&str>> = out
        .stdout
        .lines()
        .map(|l| {
            l.split("   ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect()
        })
        .collect();
    assert_eq!(
        rows[0],
        ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"],
        "{}",
        out.stdout
    );
    assert_eq!(rows.len(), 3, "{}", out.stdout);
    assert!(
        rows.iter().any(|r| r[0] == "mybox" && r[1] == "1"),
        "{}",
        out.stdout
    );
    let id = rows[1][2].to_string();
    assert_eq!(id.len(), 12);

    let out = berth(
        &env,
        &["images", "--format", "{{.Repository}}:{{.Tag}}", "mybox"],
    );
    assert_eq!(out.stdout, "mybox:1\n");
    let out = berth(&env, &["images", "-q"]);
    assert_eq!(out.stdout.trim(), id, "one id for two names");

    let out = berth(
        &env,
        &[
            "image",
            "inspect",
            "--format",
            "{{.Os}}/{{.Architecture}}",
            "mybox:1",
        ],
    );
    assert_eq!(out.stdout, "linux/amd64\n");
    let out = berth(&env, &["image", "inspect", "mybox:1"]);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v[0]["RepoTags"].as_array().unwrap().len(), 2, "{v}");
    let out = berth(&env, &["history", "mybox:1"]);
    assert!(out.stdout.starts_with("IMAGE "), "{}", out.stdout);
    assert!(out.stdout.contains(&id), "{}", out.stdout);

    // rmi: one name of two only untags; the last deletes; a missing one fails with 1.
    let out = berth(&env, &["rmi", "mybox:1"]);
    assert_eq!(out.stdout, "Untagged: mybox:1\n");
    let out = berth(&env, &["rmi", "nosuch:image"]);
    out.assert_code(1);
    assert_eq!(
        out.stderr.trim(),
        "Error response from daemon: No such image: nosuch:image"
    );
    let out = berth(&env, &["rmi", &image]);
    out.assert_success();
    assert!(
        out.stdout.contains(&format!("Untagged: {image}")),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("Deleted: sha256:"), "{}", out.stdout);
    let out = berth(&env, &["images", "-q"]);
    assert_eq!(out.stdout, "");
}

#[test]
fn errors_have_dockers_shape_and_exit_codes() {
    if !can_run() {
        return;
    }
    let env = TestEnv::new("cli-errors");
    let reg = Registry::start(&env);
    let out = berth(&env, &["pull", &reg.reference("berth/nothing:here")]);
    out.assert_code(1);
    assert!(
        out.stderr.starts_with("Error response from daemon: ")
            && out.stderr.contains("manifest unknown"),
        "{}",
        out.stderr
    );
    let out = berth(&env, &["pull", "Bad/Name"]);
    out.assert_code(1);
    assert!(out.stderr.contains("invalid reference"), "{}", out.stderr);
    let out = berth(&env, &["images", "--filter", "nonsense=1"]);
    out.assert_code(1);
    assert!(out.stderr.contains("invalid filter"), "{}", out.stderr);
    let out = berth(&env, &["images", "--format", "{{.Nope"]);
    out.assert_code(1);
    assert!(out.stderr.contains("template"), "{}", out.stderr);
    // Docker: an unknown command is status 1, an unknown flag 125.
    let out = berth(&env, &["no-such-command"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        out.stderr
            .contains("unknown command: berth no-such-command"),
        "{}",
        out.stderr
    );
    let out = berth(&env, &["ps", "--nosuch"]);
    assert_eq!(out.status.code(), Some(125), "{out:?}");
}

#[test]
fn save_load_and_import_round_trip_through_files_and_pipes() {
    if !can_run() {
        return;
    }
    let env = TestEnv::new("cli-archive");
    let reg = Registry::start(&env);
    let image = reg.reference("berth/busybox:docker");
    berth(&env, &["pull", "-q", &image]).assert_success();
    let id = berth(&env, &["images", "-q", "--no-trunc"])
        .stdout
        .trim()
        .to_string();
    let tar = env.path().join("saved.tar");
    berth(&env, &["save", "-o", tar.to_str().unwrap(), &image]).assert_success();
    // skopeo reads what we wrote.
    let st = Command::new("skopeo")
        .args(["inspect", &format!("docker-archive:{}", tar.display())])
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );

    berth(&env, &["rmi", &image]).assert_success();
    let out = berth(&env, &["load", "-i", tar.to_str().unwrap()]);
    out.assert_success();
    assert_eq!(out.stdout, format!("Loaded image: {image}\n"));
    assert_eq!(
        berth(&env, &["images", "-q", "--no-trunc"]).stdout.trim(),
        id
    );

    // Import a root filesystem from stdin, with a change.
    let mut tb = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(3);
    h.set_mode(0o644);
    h.set_mtime(1);
    h.set_uid(0);
    h.set_gid(0);
    h.set_cksum();
    tb.append_data(&mut h, "hello.txt", &b"hi\n"[..]).unwrap();
    let data = tb.into_inner().unwrap();
    let out = run_with_input(
        env.command(bin("berth")).args([
            "import",
            "-c",
            "CMD [\"cat\", \"/hello.txt\"]",
            "-",
            "imported:1",
        ]),
        &data,
        std::time::Duration::from_secs(60),
    );
    out.assert_success();
    assert!(out.stdout.trim().starts_with("sha256:"), "{}", out.stdout);
    let out = berth(
        &env,
        &[
            "image",
            "inspect",
            "--format",
            "{{json .Config.Cmd}}",
            "imported:1",
        ],
    );
    assert_eq!(out.stdout.trim(), r#"["cat","/hello.txt"]"#);
}

#[test]
fn a_dead_daemon_is_replaced_by_the_next_command() {
    if !can_run() {
        return;
    }
    let env = TestEnv::new("cli-daemon");
    berth(&env, &["images"]).assert_success();
    let socket = env.run().join("imaged.sock");
    assert!(socket.exists());
    // Kill it the hard way; its socket file stays behind.
    run(Command::new("pkill").args([
        "-9",
        "-f",
        &format!("berth-imaged --root {}", env.root().display()),
    ]))
    .assert_success();
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(
        socket.exists(),
        "the dead daemon's socket file is still there"
    );
    let out = berth(&env, &["images"]);
    out.assert_success();
    assert!(out.stdout.starts_with("REPOSITORY"), "{}", out.stdout);
    let out = berth(&env, &["system", "df"]);
    out.assert_success();
    assert!(out.stdout.starts_with("TYPE"), "{}", out.stdout);
}
