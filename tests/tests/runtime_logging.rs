//! What berth-runtime tells the tools that drive it: `--log` files in JSON
//! (containerd-shim-runc-v2 reads the last error line), `--version`,
//! `features`, and `spec` writing a config.json that `run` accepts.

mod runtime_support;

use std::fs;

use berth_tests::{bin, require_root, run, Bundle, TestEnv};
use runtime_support::*;
use serde_json::{json, Value};

/// Every line of a JSON log file, parsed.
#[track_caller]
fn json_lines(path: &std::path::Path) -> Vec<Value> {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l:?}")))
        .collect()
}

#[track_caller]
fn last_error(lines: &[Value]) -> &Value {
    lines
        .iter()
        .rev()
        .find(|l| l["level"] == "error")
        .expect("an error line")
}

#[test]
fn json_log_gets_runc_shaped_error_lines() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-logjson");
    let log = env.path().join("runtime.log");
    let ghost = env.unique("ghost");
    let out = run(rt(&env)
        .arg("--log")
        .arg(&log)
        .args(["--log-format", "json", "state", &ghost]));
    out.assert_failure();
    let lines = json_lines(&log);
    let err = last_error(&lines);
    assert!(err["msg"].as_str().unwrap().contains(&ghost), "{err}");
    let time = err["time"].as_str().unwrap();
    assert!(
        time.contains('T') && (time.ends_with('Z') || time.contains('+')),
        "{err}"
    );
    // The user still sees the error on stderr.
    assert!(out.stderr.contains(&ghost), "{}", out.stderr);

    // A create failure from inside the container process reaches the log too.
    let bundle = Bundle::busybox(&env);
    bundle.args(&["no-such-cmd"]);
    let id = env.unique("c");
    let out = run(rt(&env)
        .arg("--log")
        .arg(&log)
        .args(["--log-format", "json", "create", "--bundle"])
        .arg(bundle.path())
        .arg(&id));
    out.assert_failure();
    let lines = json_lines(&log);
    let msg = last_error(&lines)["msg"].as_str().unwrap().to_string();
    assert!(
        msg.contains("exec: \"no-such-cmd\": executable file not found in $PATH"),
        "{msg}"
    );
    assert_no_trace(&env, &bundle, &id);
}

#[test]
fn text_log_by_default() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-logtext");
    let log = env.path().join("runtime.log");
    let ghost = env.unique("ghost");
    run(rt(&env)
        .arg("--log")
        .arg(&log)
        .args(["kill", &ghost, "KILL"]))
    .assert_failure();
    let text = fs::read_to_string(&log).unwrap();
    let line = text.lines().last().unwrap();
    assert!(line.starts_with("time=\""), "{line}");
    assert!(
        line.contains("level=error") && line.contains(&ghost),
        "{line}"
    );
}

#[test]
fn version_prints_three_runc_style_lines() {
    let out = run(std::process::Command::new(bin("berth-runtime")).arg("--version"));
    out.assert_success();
    let lines: Vec<&str> = out.stdout.lines().collect();
    let version = lines[0]
        .strip_prefix("berth-runtime version ")
        .unwrap_or_else(|| panic!("first line: {:?}", lines[0]));
    assert!(
        version.chars().next().unwrap().is_ascii_digit(),
        "{version}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("commit: ")),
        "{}",
        out.stdout
    );
    let spec = lines
        .iter()
        .find_map(|l| l.strip_prefix("spec: "))
        .expect("spec: line");
    assert!(spec.starts_with("1."), "{spec}");
    let short = run(std::process::Command::new(bin("berth-runtime")).arg("-v"));
    assert_eq!(short.stdout, out.stdout);
}

#[test]
fn features_json_describes_the_runtime() {
    let out = run(std::process::Command::new(bin("berth-runtime")).arg("features"));
    out.assert_success();
    let f: Value = serde_json::from_str(&out.stdout).unwrap();
    assert!(
        f["ociVersionMin"].as_str().unwrap().starts_with("1.0"),
        "{f}"
    );
    assert!(
        f["ociVersionMax"].as_str().unwrap().starts_with("1."),
        "{f}"
    );
    let hooks: Vec<&str> = f["hooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap())
        .collect();
    for h in [
        "prestart",
        "createRuntime",
        "createContainer",
        "startContainer",
        "poststart",
        "poststop",
    ] {
        assert!(hooks.contains(&h), "{h} missing: {hooks:?}");
    }
    let opts = f["mountOptions"].as_array().unwrap();
    for o in ["ro", "rbind", "nosuid", "rprivate"] {
        assert!(opts.contains(&json!(o)), "mount option {o} missing");
    }
    let linux = &f["linux"];
    let ns = linux["namespaces"].as_array().unwrap();
    for n in [
        "cgroup", "ipc", "mount", "network", "pid", "user", "uts", "time",
    ] {
        assert!(ns.contains(&json!(n)), "namespace {n} missing: {ns:?}");
    }
    assert!(linux["capabilities"]
        .as_array()
        .unwrap()
        .contains(&json!("CAP_SYS_ADMIN")));
    assert_eq!(linux["cgroup"]["v1"], true);
    assert_eq!(linux["cgroup"]["v2"], true);
    assert_eq!(linux["seccomp"]["enabled"], true);
    assert!(linux["seccomp"]["actions"]
        .as_array()
        .unwrap()
        .contains(&json!("SCMP_ACT_ERRNO")));
}

#[test]
fn spec_writes_a_config_that_run_accepts() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-spec");
    let dir = env.path().join("fresh");
    fs::create_dir_all(&dir).unwrap();
    let out = run(env
        .command(bin("berth-runtime"))
        .args(["spec", "--bundle"])
        .arg(&dir));
    out.assert_success();
    let bundle = Bundle::at(&dir);
    let config = bundle.config();
    assert_eq!(config["process"]["args"], json!(["sh"]));
    assert_eq!(config["root"]["path"], "rootfs");
    // A second spec refuses to overwrite it.
    let out = run(env
        .command(bin("berth-runtime"))
        .args(["spec", "--bundle"])
        .arg(&dir));
    out.assert_failure_mentioning("config.json");

    // The busybox rootfs, and the config with args and no terminal.
    let fixture = Bundle::busybox(&env);
    run(std::process::Command::new("cp")
        .arg("-a")
        .arg(fixture.rootfs())
        .arg(bundle.rootfs()))
    .assert_success();
    bundle.edit_config(|c| {
        c["process"]["terminal"] = json!(false);
        c["process"]["args"] = json!(["sh", "-c", "echo spec ok; hostname"]);
    });
    let out = run_bundle(&env, &bundle, "c");
    out.assert_success();
    assert_eq!(out.stdout, "spec ok\nberth\n");

    // spec --rootless: a user namespace mapping the caller.
    let dir = env.path().join("rootless");
    fs::create_dir_all(&dir).unwrap();
    run(env
        .command(bin("berth-runtime"))
        .args(["spec", "--rootless", "--bundle"])
        .arg(&dir))
    .assert_success();
    let config = Bundle::at(&dir).config();
    let ns = config["linux"]["namespaces"].as_array().unwrap();
    assert!(ns.iter().any(|n| n["type"] == "user"), "{ns:?}");
    assert_eq!(config["linux"]["uidMappings"][0]["hostID"], 0);
}

#[test]
fn systemd_cgroup_is_a_clear_error_here() {
    if !require_root() || std::path::Path::new("/run/systemd/system").exists() {
        return;
    }
    let env = TestEnv::new("rt-systemd");
    let bundle = Bundle::busybox(&env);
    bundle.edit_config(|c| c["linux"]["cgroupsPath"] = json!("system.slice:berth:x"));
    let id = env.unique("c");
    let out = run(rt(&env)
        .args(["--systemd-cgroup", "run", "--bundle"])
        .arg(bundle.path())
        .arg(&id));
    out.assert_failure_mentioning("systemd");
    assert_no_trace(&env, &bundle, &id);
}

#[test]
fn debug_adds_debug_lines_and_a_quiet_success_logs_nothing() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("rt-logdebug");
    let bundle = Bundle::busybox(&env);
    let quiet = env.path().join("quiet.log");
    let out = run(rt(&env)
        .arg("--log")
        .arg(&quiet)
        .args(["--log-format", "json", "run", "--bundle"])
        .arg(bundle.path())
        .arg(env.unique("q")));
    out.assert_success();
    let lines = if quiet.exists() {
        json_lines(&quiet)
    } else {
        Vec::new()
    };
    assert!(
        lines
            .iter()
            .all(|l| l["level"] != "debug" && l["level"] != "error"),
        "{lines:?}"
    );

    let verbose = env.path().join("debug.log");
    let out = run(rt(&env)
        .args(["--debug", "--log"])
        .arg(&verbose)
        .args(["--log-format", "json", "run", "--bundle"])
        .arg(bundle.path())
        .arg(env.unique("d")));
    out.assert_success();
    assert_eq!(
        out.stdout, "hello from busybox\n",
        "debug output leaked to stdout"
    );
    let lines = json_lines(&verbose);
    assert!(lines.iter().any(|l| l["level"] == "debug"), "{lines:?}");
    assert!(lines
        .iter()
        .all(|l| l["msg"].is_string() && l["time"].is_string()));
}
