//! `berth volume ...` as a user types it, on a private root. Volumes are plain files under
//! `$BERTH_ROOT/volumes` (no daemon), so these run without root. Refusal of a volume in
//! use needs containers: it is a unit test of the engine (cli/src/engine/volumes.rs) until
//! the container engine exists.

use std::time::Duration;

use berth_tests::{bin, run, run_with_input, Output, TestEnv};

fn berth(env: &TestEnv, args: &[&str]) -> Output {
    run(env.command(bin("berth")).args(args))
}

/// Table rows split into cells (Docker pads with 3+ spaces).
fn rows(out: &str) -> Vec<Vec<String>> {
    out.lines()
        .map(|l| {
            l.split("   ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(String::from)
                .collect()
        })
        .collect()
}

#[test]
fn create_ls_inspect_rm_read_like_docker() {
    let env = TestEnv::new("cli-volumes");
    let out = berth(&env, &["volume", "create", "data"]);
    out.assert_success();
    assert_eq!(out.stdout, "data\n");
    // Again: the same volume, no error (Docker's create is idempotent by name).
    berth(&env, &["volume", "create", "data"]).assert_success();
    let out = berth(
        &env,
        &[
            "volume",
            "create",
            "--name",
            "v10",
            "--label",
            "env=test",
            "--label",
            "flag",
            "-o",
            "type=tmpfs",
            "-o",
            "device=tmpfs",
        ],
    );
    out.assert_success();
    assert_eq!(out.stdout, "v10\n");
    berth(&env, &["volume", "create", "v2", "-d", "local"]).assert_success();
    let anon = berth(&env, &["volume", "create"]);
    anon.assert_success();
    let anon = anon.stdout.trim().to_string();
    assert_eq!(anon.len(), 64, "{anon}");

    // Docker's table: DRIVER, VOLUME NAME, names in natural order.
    let out = berth(&env, &["volume", "ls"]);
    out.assert_success();
    assert!(
        out.stdout.starts_with("DRIVER    VOLUME NAME\n"),
        "{}",
        out.stdout
    );
    let r = rows(&out.stdout);
    let names: Vec<&str> = r[1..].iter().map(|c| c[1].as_str()).collect();
    // The anonymous name is hex, so it sorts before "v…"; against "data" no digit runs
    // meet, so natural order is plain order there.
    let mut first = [anon.as_str(), "data"];
    first.sort();
    let expected = [first[0], first[1], "v2", "v10"];
    assert_eq!(names, expected, "{}", out.stdout);
    assert!(r[1..].iter().all(|c| c[0] == "local"));

    let out = berth(&env, &["volume", "ls", "-q"]);
    assert_eq!(out.stdout, format!("{}\n", expected.join("\n")));
    let out = berth(&env, &["volume", "ls", "--filter", "label=env=test", "-q"]);
    assert_eq!(out.stdout, "v10\n");
    let out = berth(&env, &["volume", "ls", "--filter", "label=flag", "-q"]);
    assert_eq!(out.stdout, "v10\n");
    let out = berth(&env, &["volume", "ls", "-f", "name=v", "-q"]);
    assert_eq!(out.stdout, "v2\nv10\n");
    // Nothing uses a volume yet: all are dangling.
    let out = berth(&env, &["volume", "ls", "-f", "dangling=true", "-q"]);
    assert_eq!(out.stdout.lines().count(), 4);
    let out = berth(&env, &["volume", "ls", "-f", "dangling=false", "-q"]);
    assert_eq!(out.stdout, "");
    let out = berth(&env, &["volume", "ls", "-f", "until=1h"]);
    out.assert_code(1);
    assert_eq!(
        out.stderr.trim(),
        "Error response from daemon: invalid filter 'until'"
    );

    // --format: fields, table with headers, json.
    let out = berth(
        &env,
        &[
            "volume",
            "ls",
            "-f",
            "name=v10",
            "--format",
            "{{.Name}} {{.Labels}} {{.Scope}}",
        ],
    );
    assert_eq!(out.stdout, "v10 env=test,flag= local\n");
    let out = berth(
        &env,
        &[
            "volume",
            "ls",
            "-f",
            "name=data",
            "--format",
            "table {{.Name}}\t{{.Mountpoint}}",
        ],
    );
    let mp = env.root().join("volumes/data/_data");
    assert_eq!(
        rows(&out.stdout),
        [
            vec!["VOLUME NAME".to_string(), "MOUNTPOINT".into()],
            vec!["data".into(), mp.display().to_string()]
        ],
        "{}",
        out.stdout
    );
    let out = berth(
        &env,
        &["volume", "ls", "-f", "name=data", "--format", "json"],
    );
    let j: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(j["Name"], "data");
    assert_eq!(j["Driver"], "local");

    // inspect: Docker's object, four-space JSON; a missing one after the found ones.
    let out = berth(&env, &["volume", "inspect", "v10"]);
    out.assert_success();
    assert!(out.stdout.starts_with("[\n    {\n"), "{}", out.stdout);
    let j: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let v = &j[0];
    assert_eq!(v["Name"], "v10");
    assert_eq!(v["Driver"], "local");
    assert_eq!(v["Scope"], "local");
    assert_eq!(v["Labels"]["env"], "test");
    assert_eq!(v["Options"]["type"], "tmpfs");
    assert_eq!(
        v["Mountpoint"],
        env.root().join("volumes/v10/_data").display().to_string()
    );
    assert!(v["CreatedAt"].as_str().unwrap().starts_with("20"));
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "CreatedAt",
            "Driver",
            "Labels",
            "Mountpoint",
            "Name",
            "Options",
            "Scope"
        ]
    );
    assert!(mp.is_dir());
    let out = berth(
        &env,
        &[
            "volume",
            "inspect",
            "--format",
            "{{.Name}}:{{.Driver}}",
            "data",
            "nosuch",
        ],
    );
    out.assert_code(1);
    assert_eq!(out.stdout, "data:local\n");
    assert_eq!(out.stderr.trim(), "Error: No such volume: nosuch");
    let out = berth(&env, &["volume", "inspect", "nosuch"]);
    out.assert_code(1);
    assert_eq!(out.stdout.trim(), "[]");

    // rm: each name printed; missing ones are Docker's error (exit 1) unless -f.
    let out = berth(&env, &["volume", "rm", "v2", "nosuch", "data"]);
    out.assert_code(1);
    assert_eq!(out.stdout, "v2\ndata\n");
    assert_eq!(
        out.stderr.trim(),
        "Error response from daemon: get nosuch: no such volume"
    );
    assert!(!mp.exists());
    let out = berth(&env, &["volume", "rm", "-f", "nosuch"]);
    out.assert_success();
    let out = berth(&env, &["volume", "ls", "-q"]);
    assert_eq!(out.stdout, format!("{anon}\nv10\n"));
    let out = berth(&env, &["volume", "rm"]);
    out.assert_failure();
}

#[test]
fn bad_input_gets_dockers_messages() {
    let env = TestEnv::new("cli-volumes-bad");
    for bad in ["a", "a b", "-x", "/abs", "x/y", ".hidden"] {
        let out = berth(&env, &["volume", "create", &format!("--name={bad}")]);
        out.assert_code(1);
        assert_eq!(
            out.stderr.trim(),
            format!("Error response from daemon: create {bad}: \"{bad}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path")
        );
    }
    let out = berth(&env, &["volume", "create", "--name", "a1", "b1"]);
    out.assert_code(1);
    assert_eq!(
        out.stderr.trim(),
        "conflicting options: cannot specify a volume-name through both --name and as a positional arg"
    );
    let out = berth(&env, &["volume", "create", "-d", "nfs", "v1"]);
    out.assert_code(1);
    assert_eq!(
        out.stderr.trim(),
        "Error response from daemon: create v1: error looking up volume plugin nfs: plugin \"nfs\" not found"
    );
    let out = berth(&env, &["volume", "create", "-o", "size=1G", "v1"]);
    out.assert_code(1);
    assert_eq!(
        out.stderr.trim(),
        "Error response from daemon: create v1: invalid option: \"size\""
    );
    let out = berth(&env, &["volume", "create", "--bogus"]);
    out.assert_failure();
    // Nothing half-made by any of them.
    let out = berth(&env, &["volume", "ls", "-q"]);
    assert_eq!(out.stdout, "");
    let left: Vec<String> = std::fs::read_dir(env.root().join("volumes"))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n != ".lock")
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn prune_removes_anonymous_by_default_and_all_with_a() {
    let env = TestEnv::new("cli-volumes-prune");
    berth(&env, &["volume", "create", "named"]).assert_success();
    berth(
        &env,
        &["volume", "create", "--label", "tier=cache", "cache1"],
    )
    .assert_success();
    let anon = berth(&env, &["volume", "create"]).stdout.trim().to_string();
    std::fs::write(
        env.root().join("volumes/cache1/_data/blob"),
        vec![7u8; 1234],
    )
    .unwrap();

    // No -f and no "y": nothing happens.
    let out = run_with_input(
        env.command(bin("berth")).args(["volume", "prune"]),
        b"n\n",
        Duration::from_secs(30),
    );
    out.assert_success();
    assert!(
        out.stdout.starts_with(
            "WARNING! This will remove anonymous local volumes not used by at least one container.\nAre you sure you want to continue? [y/N] "
        ),
        "{}",
        out.stdout
    );
    assert_eq!(
        berth(&env, &["volume", "ls", "-q"]).stdout.lines().count(),
        3
    );

    // Default: only the anonymous one.
    let out = berth(&env, &["volume", "prune", "-f"]);
    out.assert_success();
    assert_eq!(
        out.stdout,
        format!("Deleted Volumes:\n{anon}\n\nTotal reclaimed space: 0B\n")
    );
    // -a with a label filter: only the matching named one, with its size.
    let out = berth(
        &env,
        &[
            "volume",
            "prune",
            "-a",
            "-f",
            "--filter",
            "label=tier=cache",
        ],
    );
    out.assert_success();
    assert_eq!(
        out.stdout,
        "Deleted Volumes:\ncache1\n\nTotal reclaimed space: 1.234kB\n"
    );
    let out = berth(&env, &["volume", "prune", "-f", "--filter", "until=1h"]);
    out.assert_code(1);
    assert_eq!(
        out.stderr.trim(),
        "Error response from daemon: invalid filter 'until'"
    );
    // Nothing anonymous left: nothing to delete.
    let out = berth(&env, &["volume", "prune", "-f"]);
    assert_eq!(out.stdout, "Total reclaimed space: 0B\n");
    let out = berth(&env, &["volume", "prune", "--all", "--force"]);
    assert_eq!(
        out.stdout,
        "Deleted Volumes:\nnamed\n\nTotal reclaimed space: 0B\n"
    );
    assert_eq!(berth(&env, &["volume", "ls", "-q"]).stdout, "");
}

#[test]
fn concurrent_commands_agree_on_one_volume() {
    let env = TestEnv::new("cli-volumes-race");
    // Sixteen processes create the same two names at once, and remove a third: the lock
    // makes each create see either nothing or a whole volume.
    berth(&env, &["volume", "create", "gone"]).assert_success();
    let children: Vec<_> = (0..16)
        .map(|i| {
            let mut c = env.command(bin("berth"));
            match i % 4 {
                3 => c.args(["volume", "rm", "-f", "gone"]),
                n => c.args(["volume", "create", if n == 0 { "one" } else { "two" }]),
            };
            c.stdout(std::process::Stdio::null());
            env.spawn(&mut c)
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let out = berth(&env, &["volume", "ls", "-q"]);
    assert_eq!(out.stdout, "one\ntwo\n");
    let left: Vec<String> = std::fs::read_dir(env.root().join("volumes"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left.len(), 3, "no staging dirs left: {left:?}");
}
