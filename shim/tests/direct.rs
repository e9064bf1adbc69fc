//! The shim driven directly over ttrpc, the way the Berth CLI will: start it with the
//! `start` action in the bundle, connect to the address it prints, then Create, Start,
//! Wait, Kill, Delete and Shutdown. Berth's settings travel as config.json annotations.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;

use berth_tests::{run, TestEnv};
use common::SHIM;
use containerd_shim_protos::api;
use containerd_shim_protos::api::Status;
use containerd_shim_protos::protobuf;
use containerd_shim_protos::TaskClient;
use ttrpc::context::Context;

fn ctx() -> Context {
    ttrpc::context::with_timeout(0)
}

/// Root and runc, or the test is skipped (a failure under BERTH_REQUIRE_ALL=1).
fn can_run() -> bool {
    common::can_run(&["runc"])
}

/// A publish binary that appends each event's topic to `<dir>/events`, one per line: the
/// shim's event path without a containerd.
const RECORD_EVENTS: &str = "#!/bin/sh\n# --address A publish --topic T --namespace N\ncat >/dev/null\necho \"$5\" >>\"$(dirname \"$0\")/events\"\n";

/// One container under its own shim, torn down (shim, container, mounts, files) on drop.
struct Shim {
    env: TestEnv,
    id: String,
    bundle: PathBuf,
    runtime_root: PathBuf,
    client: TaskClient,
}

impl Shim {
    /// Write the bundle, start the shim and connect; `annotations` are Berth's settings.
    fn start(tag: &str, args: &[&str], annotations: &[(&str, &str)]) -> Shim {
        Shim::start_with(tag, args, annotations, |_| {})
    }

    fn start_with(
        tag: &str,
        args: &[&str],
        annotations: &[(&str, &str)],
        edit: impl FnOnce(&mut serde_json::Value),
    ) -> Shim {
        Shim::start_opts(tag, args, annotations, edit, false)
    }

    /// Like `start_with`; with `record_events` the shim publishes its events through
    /// `RECORD_EVENTS` (read them with `events`).
    fn start_opts(
        tag: &str,
        args: &[&str],
        annotations: &[(&str, &str)],
        edit: impl FnOnce(&mut serde_json::Value),
        record_events: bool,
    ) -> Shim {
        let env = TestEnv::new(tag);
        let dir = env.path().to_path_buf();
        let id = env.unique(tag);
        let runtime_root = env.run().join("runtime");
        let sock = dir.join("shim.sock");
        let mut ann = serde_json::Map::new();
        ann.insert(
            "io.berth.shim.socket".into(),
            sock.display().to_string().into(),
        );
        ann.insert(
            "io.berth.runtime.root".into(),
            runtime_root.display().to_string().into(),
        );
        for (k, v) in annotations {
            let v = v.replace("$DIR", &dir.display().to_string());
            ann.insert(k.to_string(), v.into());
        }
        let bundle = common::bundle(&env, args, |spec| {
            spec["annotations"] = serde_json::Value::Object(ann);
            edit(spec);
        })
        .path()
        .to_path_buf();
        let mut cmd = env.command(SHIM);
        cmd.args(["-namespace", "berth-test", "-id", &id]);
        if record_events {
            let publisher = dir.join("publish");
            std::fs::write(&publisher, RECORD_EVENTS).unwrap();
            std::fs::set_permissions(
                &publisher,
                std::os::unix::fs::PermissionsExt::from_mode(0o755),
            )
            .unwrap();
            cmd.arg("-publish-binary")
                .arg(&publisher)
                .args(["-address", "/nonexistent/containerd.sock"]);
        }
        let out = run(cmd
            .arg("start")
            .current_dir(&bundle)
            .env("BERTH_SHIM_RUNTIME", common::runtime_binary()));
        out.assert_success();
        let address = out.stdout.trim().to_string();
        assert_eq!(address, format!("unix://{}", sock.display()));
        let client = TaskClient::new(ttrpc::Client::connect(&address).expect("connect to shim"));
        Shim {
            env,
            id,
            bundle,
            runtime_root,
            client,
        }
    }

    /// The topics the shim has published so far, in order (see `start_opts`).
    fn events(&self) -> Vec<String> {
        std::fs::read_to_string(self.path("events"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn create(&self) -> ttrpc::Result<api::CreateTaskResponse> {
        self.create_with(|_| {})
    }

    fn create_with(
        &self,
        edit: impl FnOnce(&mut api::CreateTaskRequest),
    ) -> ttrpc::Result<api::CreateTaskResponse> {
        let mut req = api::CreateTaskRequest {
            id: self.id.clone(),
            bundle: self.bundle.display().to_string(),
            ..Default::default()
        };
        edit(&mut req);
        self.client.create(ctx(), &req)
    }

    fn start_init(&self) -> u32 {
        let req = api::StartRequest {
            id: self.id.clone(),
            ..Default::default()
        };
        self.client.start(ctx(), &req).expect("start").pid
    }

    fn wait(&self, exec_id: &str) -> u32 {
        let req = api::WaitRequest {
            id: self.id.clone(),
            exec_id: exec_id.into(),
            ..Default::default()
        };
        self.client.wait(ctx(), &req).expect("wait").exit_status
    }

    fn state(&self, exec_id: &str) -> api::StateResponse {
        let req = api::StateRequest {
            id: self.id.clone(),
            exec_id: exec_id.into(),
            ..Default::default()
        };
        self.client.state(ctx(), &req).expect("state")
    }

    fn stats(&self) -> ttrpc::Result<api::StatsResponse> {
        let req = api::StatsRequest {
            id: self.id.clone(),
            ..Default::default()
        };
        self.client.stats(ctx(), &req)
    }

    fn kill(&self, signal: u32) -> ttrpc::Result<()> {
        let req = api::KillRequest {
            id: self.id.clone(),
            signal,
            ..Default::default()
        };
        self.client.kill(ctx(), &req).map(drop)
    }

    fn delete(&self) -> api::DeleteResponse {
        let req = api::DeleteRequest {
            id: self.id.clone(),
            ..Default::default()
        };
        self.client.delete(ctx(), &req).expect("delete")
    }

    fn status_file(&self) -> serde_json::Value {
        let text = std::fs::read(self.bundle.join("status.json")).expect("status.json");
        serde_json::from_slice(&text).unwrap()
    }

    fn shim_pid(&self) -> i32 {
        common::shim_pid(&self.bundle).expect("shim.pid in the bundle")
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.env.path().join(rel)
    }

    /// SIGKILL the serving shim and wait until it is gone.
    fn kill_shim(&self) {
        let shim = nix::unistd::Pid::from_raw(self.shim_pid());
        nix::sys::signal::kill(shim, nix::sys::signal::Signal::SIGKILL).unwrap();
        common::eventually("the shim to die", || {
            nix::sys::signal::kill(shim, None).is_err().then_some(())
        });
    }

    /// containerd's `delete` action, run after the serving shim is gone; it must succeed.
    /// Its stdout is protobuf, so it is read as bytes, not through the harness's `run`.
    fn delete_action(&self) -> api::DeleteResponse {
        let out = self.run_delete_action();
        assert!(
            out.status.success(),
            "delete: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        <api::DeleteResponse as protobuf::Message>::parse_from_bytes(&out.stdout).unwrap()
    }

    /// The shim's `delete` bootstrap action, as containerd runs it after a shim died.
    fn run_delete_action(&self) -> std::process::Output {
        self.env
            .command(SHIM)
            .args(["-namespace", "berth-test", "-id", &self.id, "-bundle"])
            .arg(&self.bundle)
            .arg("delete")
            .env("BERTH_SHIM_RUNTIME", common::runtime_binary())
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run the shim's delete action")
    }
}

impl Drop for Shim {
    fn drop(&mut self) {
        common::kill_shim(&self.bundle);
        common::force_delete_all(&self.runtime_root);
    }
}

fn log_entries(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("json-file line"))
        .collect()
}

#[test]
fn json_file_log_and_exit_status_on_disk() {
    if !can_run() {
        return;
    }
    let s = Shim::start(
        "jsonlog",
        &["sh", "-c", "echo to-out; echo to-err >&2; exit 7"],
        &[("io.berth.log.path", "$DIR/logs/c.log")],
    );
    let pid = s.create().expect("create").pid;
    assert!(pid > 0);
    assert_eq!(s.status_file()["status"], "created");
    s.start_init();
    assert_eq!(s.wait(""), 7);

    let st = s.state("");
    assert_eq!(st.status.enum_value_or_default(), Status::STOPPED);
    assert_eq!(st.exit_status, 7);

    let entries = log_entries(&s.path("logs/c.log"));
    let find = |stream: &str| {
        entries
            .iter()
            .find(|e| e["stream"] == stream)
            .cloned()
            .unwrap()
    };
    assert_eq!(find("stdout")["log"], "to-out\n");
    assert_eq!(find("stderr")["log"], "to-err\n");
    assert!(find("stdout")["time"].as_str().unwrap().ends_with('Z'));

    let status = s.status_file();
    assert_eq!(status["status"], "exited");
    assert_eq!(status["exit_code"], 7);
    assert!(status["exited_at"].is_string());

    let del = s.delete();
    assert_eq!(del.exit_status, 7);
    s.client
        .shutdown(
            ctx(),
            &api::ShutdownRequest {
                id: s.id.clone(),
                ..Default::default()
            },
        )
        .ok();
    let pid = nix::unistd::Pid::from_raw(s.shim_pid());
    common::eventually("the shim to exit", || {
        nix::sys::signal::kill(pid, None).is_err().then_some(())
    });
    // The status survives the shim.
    assert_eq!(s.status_file()["exit_code"], 7);
}

#[test]
fn json_file_log_rotates_by_size() {
    if !can_run() {
        return;
    }
    let s = Shim::start(
        "rotate",
        &[
            "sh",
            "-c",
            "i=0; while [ $i -lt 200 ]; do echo line-$i; i=$((i+1)); done",
        ],
        &[
            ("io.berth.log.path", "$DIR/c.log"),
            ("io.berth.log.max-size", "2k"),
            ("io.berth.log.max-file", "3"),
        ],
    );
    s.create().unwrap();
    s.start_init();
    assert_eq!(s.wait(""), 0);
    let current = std::fs::metadata(s.path("c.log")).unwrap().len();
    assert!(current <= 2048, "current log is {current} bytes");
    assert!(s.path("c.log.1").exists() && s.path("c.log.2").exists());
    assert!(!s.path("c.log.3").exists());
    let last = log_entries(&s.path("c.log"));
    assert_eq!(last.last().unwrap()["log"], "line-199\n");
}

#[test]
fn on_failure_restarts_up_to_the_limit_then_reports_the_exit() {
    if !can_run() {
        return;
    }
    let s = Shim::start(
        "onfail",
        &["sh", "-c", "echo attempt; exit 2"],
        &[
            ("io.berth.log.path", "$DIR/c.log"),
            ("io.berth.restart", "on-failure:2"),
        ],
    );
    s.create().unwrap();
    s.start_init();
    assert_eq!(s.wait(""), 2);
    let status = s.status_file();
    assert_eq!(status["restart_count"], 2);
    assert_eq!(status["status"], "exited");
    let attempts = log_entries(&s.path("c.log"))
        .iter()
        .filter(|e| e["log"] == "attempt\n")
        .count();
    assert_eq!(attempts, 3);
}

#[test]
fn always_restarts_until_the_user_stops_it() {
    if !can_run() {
        return;
    }
    let s = Shim::start(
        "always",
        &["sh", "-c", "echo up; exit 0"],
        &[
            ("io.berth.log.path", "$DIR/c.log"),
            ("io.berth.restart", "always"),
        ],
    );
    s.create().unwrap();
    s.start_init();
    common::eventually("a restart", || {
        (s.status_file()["restart_count"].as_u64().unwrap_or(0) >= 2).then_some(())
    });
    // A user stop: whatever state the container is in (running or backing off), no
    // further restart happens.
    let _ = s.kill(9);
    let code = s.wait("");
    assert!(code == 0 || code == 137, "exit {code}");
    let status = s.status_file();
    assert_eq!(status["stopped_by_user"], true);
    assert_eq!(status["status"], "exited");
    let count = status["restart_count"].clone();
    assert_eq!(s.state("").status.enum_value_or_default(), Status::STOPPED);
    assert_eq!(s.status_file()["restart_count"], count);
}

#[test]
fn stop_sends_the_stop_signal_first() {
    if !can_run() {
        return;
    }
    let s = Shim::start(
        "stopsig",
        &[
            "sh",
            "-c",
            "trap 'echo got-usr1; exit 0' USR1; echo ready; while true; do sleep 0.1; done",
        ],
        &[
            ("io.berth.log.path", "$DIR/c.log"),
            ("io.berth.stop-signal", "SIGUSR1"),
        ],
    );
    s.create().unwrap();
    s.start_init();
    common::eventually("the trap to be set", || {
        log_entries(&s.path("c.log"))
            .iter()
            .any(|e| e["log"] == "ready\n")
            .then_some(())
    });
    // Signal 0 on the init means "stop" to this shim.
    s.kill(0).expect("stop");
    assert_eq!(s.wait(""), 0);
    assert!(log_entries(&s.path("c.log"))
        .iter()
        .any(|e| e["log"] == "got-usr1\n"));
}

#[test]
fn stop_kills_a_container_that_ignores_sigterm_after_the_timeout() {
    if !can_run() {
        return;
    }
    let s = Shim::start(
        "stopkill",
        &["sh", "-c", "trap '' TERM; while true; do sleep 0.1; done"],
        &[("io.berth.stop-timeout", "1")],
    );
    s.create().unwrap();
    s.start_init();
    s.kill(0).expect("stop");
    assert_eq!(s.wait(""), 137);
    assert_eq!(s.status_file()["stopped_by_user"], true);
}

#[test]
fn create_failure_carries_the_runtime_message() {
    if !can_run() {
        return;
    }
    let s = Shim::start("createfail", &["/no/such/binary"], &[]);
    let err = s.create().expect_err("create must fail");
    let msg = format!("{err:?}");
    assert!(
        msg.contains("/no/such/binary") && msg.contains("no such file or directory"),
        "{msg}"
    );
    // Nothing is left to wait for.
    let req = api::StateRequest {
        id: s.id.clone(),
        ..Default::default()
    };
    assert!(s.client.state(ctx(), &req).is_err());
}

#[test]
fn init_that_dies_at_once_is_reported() {
    if !can_run() {
        return;
    }
    let s = Shim::start("diesatonce", &["sh", "-c", "exit 5"], &[]);
    s.create().unwrap();
    s.start_init();
    assert_eq!(s.wait(""), 5);
    assert_eq!(s.status_file()["exit_code"], 5);
    // Killing a finished process is "not found", as containerd expects.
    assert!(s.kill(15).is_err());
    assert_eq!(s.delete().exit_status, 5);
}

#[test]
fn killed_shim_leaves_the_container_running_and_readable() {
    if !can_run() {
        return;
    }
    let s = Shim::start("shimkill", &["sleep", "1000"], &[]);
    s.create().unwrap();
    let pid = s.start_init();
    s.kill_shim();
    // The container lives on and the runtime still knows it.
    assert!(nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok());
    let out = run(Command::new(common::runtime_binary())
        .arg("--root")
        .arg(&s.runtime_root)
        .args(["state", &s.id]));
    let state: serde_json::Value = serde_json::from_str(&out.stdout).expect("runtime state");
    assert_eq!(state["status"], "running");
    assert_eq!(state["pid"], pid);
    let status = s.status_file();
    assert_eq!(status["status"], "running");
    assert_eq!(status["pid"], pid);

    // The `delete` action cleans up after the dead shim and reports a SIGKILL exit.
    assert_eq!(s.delete_action().exit_status, 137);
    common::eventually("the container to be gone", || {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None)
            .is_err()
            .then_some(())
    });
    run(Command::new(common::runtime_binary())
        .arg("--root")
        .arg(&s.runtime_root)
        .args(["state", &s.id]))
    .assert_failure();
}

#[test]
fn delete_after_a_shim_killed_before_create_still_cleans_up() {
    if !can_run() {
        return;
    }
    // Killed before Create: no container, and no record of which runtime it would have used.
    let s = Shim::start("earlykill", &["true"], &[]);
    let sock = s.path("shim.sock");
    assert!(sock.exists());
    s.kill_shim();
    assert_eq!(s.delete_action().exit_status, 137);
    // The socket the dead shim left behind is gone, so a new shim can bind it.
    assert!(!sock.exists());
}

#[test]
fn delete_with_a_corrupt_runtime_record_still_cleans_up_and_names_the_file() {
    if !can_run() {
        return;
    }
    let s = Shim::start("badrecord", &["sleep", "600"], &[]);
    s.create().unwrap();
    s.start_init();
    let sock = s.path("shim.sock");
    s.kill_shim();
    let record = s.bundle.join("berth-shim-runtime.json");
    assert!(record.exists(), "no runtime record at {}", record.display());
    std::fs::write(&record, "{not json").unwrap();
    let out = s.run_delete_action();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("berth-shim-runtime.json"), "{err}");
    // The rest of the clean-up still happened.
    assert!(!sock.exists());
}

#[test]
fn attach_streams_output_takes_stdin_and_detaches() {
    if !can_run() {
        return;
    }
    let s = Shim::start(
        "attach",
        &[
            "sh",
            "-c",
            "while read line; do echo got:$line; echo err:$line >&2; done",
        ],
        &[
            ("io.berth.attach.socket", "$DIR/attach.sock"),
            ("io.berth.stdin", "true"),
            ("io.berth.log.path", "$DIR/c.log"),
        ],
    );
    s.create().unwrap();
    s.start_init();

    let read_frame = |c: &mut UnixStream| -> (u8, String) {
        let mut hdr = [0u8; 8];
        c.read_exact(&mut hdr).unwrap();
        let len = u32::from_be_bytes(hdr[4..8].try_into().unwrap()) as usize;
        let mut buf = vec![0u8; len];
        c.read_exact(&mut buf).unwrap();
        (hdr[0], String::from_utf8(buf).unwrap())
    };

    let mut a = UnixStream::connect(s.path("attach.sock")).unwrap();
    a.write_all(b"one\n").unwrap();
    let mut seen = vec![read_frame(&mut a), read_frame(&mut a)];
    seen.sort();
    assert_eq!(
        seen,
        vec![(1, "got:one\n".to_string()), (2, "err:one\n".to_string())]
    );
    // Detach: the container keeps running.
    drop(a);
    assert_eq!(s.state("").status.enum_value_or_default(), Status::RUNNING);

    let mut b = UnixStream::connect(s.path("attach.sock")).unwrap();
    b.write_all(b"two\n").unwrap();
    let (stream, text) = read_frame(&mut b);
    assert!(
        (stream, text.as_str()) == (1, "got:two\n") || (stream, text.as_str()) == (2, "err:two\n")
    );
    // Closing stdin through the API ends `read`, so the container exits 0.
    let req = api::CloseIORequest {
        id: s.id.clone(),
        stdin: true,
        ..Default::default()
    };
    s.client.close_io(ctx(), &req).unwrap();
    assert_eq!(s.wait(""), 0);
    // The attached client sees the end of the stream.
    let mut rest = Vec::new();
    let _ = b.read_to_end(&mut rest);
    let log: Vec<_> = log_entries(&s.path("c.log"))
        .into_iter()
        .map(|e| e["log"].clone())
        .collect();
    assert!(log.contains(&"got:one\n".into()) && log.contains(&"got:two\n".into()));
}

#[test]
fn exec_with_file_output_pids_and_exec_kill() {
    if !can_run() {
        return;
    }
    let s = Shim::start("exec", &["sleep", "1000"], &[]);
    s.create().unwrap();
    let init_pid = s.start_init();

    let out = s.path("exec.out");
    let spec = serde_json::json!({
        "args": ["sh", "-c", "echo exec-says-hi; hostname"],
        "cwd": "/", "env": ["PATH=/bin"], "user": {"uid": 0, "gid": 0},
    });
    let exec = |exec_id: &str, spec: &serde_json::Value, stdout: String| {
        let req = api::ExecProcessRequest {
            id: s.id.clone(),
            exec_id: exec_id.into(),
            stdout,
            spec: protobuf::MessageField::some(protobuf::well_known_types::any::Any {
                type_url: "types.containerd.io/opencontainers/runtime-spec/1/Process".into(),
                value: serde_json::to_vec(spec).unwrap(),
                ..Default::default()
            }),
            ..Default::default()
        };
        s.client.exec(ctx(), &req).expect("exec");
        let req = api::StartRequest {
            id: s.id.clone(),
            exec_id: exec_id.into(),
            ..Default::default()
        };
        s.client.start(ctx(), &req).expect("start exec").pid
    };
    exec("e1", &spec, format!("file://{}", out.display()));
    assert_eq!(s.wait("e1"), 0);
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "exec-says-hi\nberth-test\n"
    );
    // The same exec id cannot be added twice while it exists.
    let dup = api::ExecProcessRequest {
        id: s.id.clone(),
        exec_id: "e1".into(),
        ..Default::default()
    };
    assert!(s.client.exec(ctx(), &dup).is_err());
    let del = s
        .client
        .delete(
            ctx(),
            &api::DeleteRequest {
                id: s.id.clone(),
                exec_id: "e1".into(),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(del.exit_status, 0);

    let long = serde_json::json!({"args": ["sleep", "1000"], "cwd": "/", "env": ["PATH=/bin"], "user": {"uid": 0, "gid": 0}});
    let exec_pid = exec("e2", &long, String::new());
    let pids = s
        .client
        .pids(
            ctx(),
            &api::PidsRequest {
                id: s.id.clone(),
                ..Default::default()
            },
        )
        .unwrap();
    // The exec carries containerd's ProcessDetails{exec_id}, the init nothing.
    let exec_id_of = |pid: u32| {
        let p = pids.processes.iter().find(|p| p.pid == pid)?;
        let info = p.info.as_ref()?;
        assert_eq!(info.type_url, "containerd.runc.v1.ProcessDetails");
        let mut is = protobuf::CodedInputStream::from_bytes(&info.value);
        assert_eq!(is.read_raw_tag_or_eof().unwrap(), Some(1 << 3 | 2));
        Some(is.read_string().unwrap())
    };
    assert_eq!(exec_id_of(exec_pid).as_deref(), Some("e2"), "{pids:?}");
    assert_eq!(exec_id_of(init_pid), None, "{pids:?}");
    let pids: Vec<u32> = pids.processes.iter().map(|p| p.pid).collect();
    assert!(
        pids.contains(&init_pid) && pids.contains(&exec_pid),
        "{pids:?}"
    );
    let kill = api::KillRequest {
        id: s.id.clone(),
        exec_id: "e2".into(),
        signal: 9,
        ..Default::default()
    };
    s.client.kill(ctx(), &kill).unwrap();
    assert_eq!(s.wait("e2"), 137);
    assert_eq!(s.state("").status.enum_value_or_default(), Status::RUNNING);

    // The running init cannot be deleted; after SIGKILL it can.
    assert!(s
        .client
        .delete(
            ctx(),
            &api::DeleteRequest {
                id: s.id.clone(),
                ..Default::default()
            }
        )
        .is_err());
    s.kill(9).unwrap();
    assert_eq!(s.wait(""), 137);
    assert_eq!(s.delete().exit_status, 137);
}

#[test]
fn terminal_resize_and_stats() {
    if !can_run() {
        return;
    }
    let s = Shim::start_with("tty", &["sleep", "1000"], &[], |spec| {
        spec["process"]["terminal"] = true.into();
        spec["linux"]["resources"]["memory"] = serde_json::json!({"limit": 64 << 20});
        spec["linux"]["resources"]["pids"] = serde_json::json!({"limit": 64});
    });
    s.create_with(|r| r.terminal = true).unwrap();
    s.start_init();
    let req = api::ResizePtyRequest {
        id: s.id.clone(),
        width: 123,
        height: 45,
        ..Default::default()
    };
    s.client.resize_pty(ctx(), &req).expect("resize");
    let out = s.path("stty.out");
    let spec = serde_json::json!({
        "args": ["stty", "-F", "/dev/console", "size"],
        "cwd": "/", "env": ["PATH=/bin"], "user": {"uid": 0, "gid": 0},
    });
    let req = api::ExecProcessRequest {
        id: s.id.clone(),
        exec_id: "size".into(),
        stdout: format!("file://{}", out.display()),
        stderr: format!("file://{}", out.display()),
        spec: protobuf::MessageField::some(protobuf::well_known_types::any::Any {
            type_url: "types.containerd.io/opencontainers/runtime-spec/1/Process".into(),
            value: serde_json::to_vec(&spec).unwrap(),
            ..Default::default()
        }),
        ..Default::default()
    };
    s.client.exec(ctx(), &req).unwrap();
    s.client
        .start(
            ctx(),
            &api::StartRequest {
                id: s.id.clone(),
                exec_id: "size".into(),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(s.wait("size"), 0);
    assert_eq!(std::fs::read_to_string(&out).unwrap().trim(), "45 123");

    assert_container_metrics(&s.stats().expect("stats").stats);

    // Resizing a process without a terminal (the "size" exec writes to a file) is refused.
    let err = s
        .client
        .resize_pty(
            ctx(),
            &api::ResizePtyRequest {
                id: s.id.clone(),
                exec_id: "size".into(),
                width: 80,
                height: 24,
                ..Default::default()
            },
        )
        .expect_err("resize of a process without a terminal");
    assert!(format!("{err:?}").contains("no terminal"), "{err:?}");

    // Stats of a container that has exited is refused.
    s.kill(9).unwrap();
    s.wait("");
    let err = s.stats().expect_err("stats of an exited container");
    assert!(format!("{err:?}").contains("not running"), "{err:?}");
}

/// The metrics containerd would decode for the container of `terminal_resize_and_stats`
/// (64 MiB memory limit, 64 pids): v2 only on a cgroup2-only host, like runc's shim.
fn assert_container_metrics(any: &protobuf::well_known_types::any::Any) {
    use containerd_shim_protos::cgroups::metrics as v1;
    use containerd_shim_protos::cgroups_v2::metrics as v2;
    use protobuf::Message;
    let host = berth_cgroups::detect().unwrap();
    if host.layout == berth_cgroups::Layout::V2 {
        assert_eq!(any.type_url, "io.containerd.cgroups.v2.Metrics");
        let m = v2::Metrics::parse_from_bytes(&any.value).unwrap();
        assert_eq!(m.memory.usage_limit, 64 << 20, "{m:?}");
        assert!(m.memory.usage > 0, "{m:?}");
        assert_eq!(m.pids.limit, 64, "{m:?}");
        assert!(m.pids.current >= 1, "{m:?}");
        return;
    }
    assert_eq!(any.type_url, "io.containerd.cgroups.v1.Metrics");
    let m = v1::Metrics::parse_from_bytes(&any.value).unwrap();
    if host.v1_mount("memory").is_some() {
        assert_eq!(m.memory.usage.limit, 64 << 20, "{m:?}");
        assert!(m.memory.usage.usage > 0, "{m:?}");
        assert!(m.memory_oom_control.is_some(), "{m:?}");
    }
    if host.v1_mount("pids").is_some() {
        assert_eq!(m.pids.limit, 64, "{m:?}");
        assert!(m.pids.current >= 1, "{m:?}");
    }
    if host.v1_mount("cpuacct").is_some() {
        assert!(!m.cpu.usage.per_cpu.is_empty(), "{m:?}");
    }
}

#[test]
fn pause_resume_update_and_shim_log() {
    if !can_run() {
        return;
    }
    let s = Shim::start("pause", &["sleep", "1000"], &[]);
    s.create().unwrap();
    let pid = s.start_init();
    let id = s.id.clone();
    s.client
        .pause(
            ctx(),
            &api::PauseRequest {
                id: id.clone(),
                ..Default::default()
            },
        )
        .expect("pause");
    assert_eq!(s.state("").status.enum_value_or_default(), Status::PAUSED);
    assert_eq!(s.status_file()["status"], "paused");
    // The runtime froze the cgroup.
    let frozen = match cgroup_file(pid, "freezer", "freezer.state") {
        Some(f) => std::fs::read_to_string(f).unwrap().trim() == "FROZEN",
        None => {
            std::fs::read_to_string(cgroup_file(pid, "", "cgroup.freeze").unwrap())
                .unwrap()
                .trim()
                == "1"
        }
    };
    assert!(frozen);
    s.client
        .resume(
            ctx(),
            &api::ResumeRequest {
                id: id.clone(),
                ..Default::default()
            },
        )
        .expect("resume");
    assert_eq!(s.state("").status.enum_value_or_default(), Status::RUNNING);

    // Update takes the OCI LinuxResources JSON, as containerd sends it.
    let resources = serde_json::json!({"pids": {"limit": 42}});
    let req = api::UpdateTaskRequest {
        id: id.clone(),
        resources: protobuf::MessageField::some(protobuf::well_known_types::any::Any {
            type_url: "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources".into(),
            value: serde_json::to_vec(&resources).unwrap(),
            ..Default::default()
        }),
        ..Default::default()
    };
    s.client.update(ctx(), &req).expect("update");
    let pids_path = cgroup_file(pid, "pids", "pids.max")
        .or_else(|| cgroup_file(pid, "", "pids.max"))
        .unwrap();
    assert_eq!(std::fs::read_to_string(&pids_path).unwrap().trim(), "42");

    // A bad update carries the runtime's complaint.
    let bad = api::UpdateTaskRequest {
        id: id.clone(),
        resources: protobuf::MessageField::some(protobuf::well_known_types::any::Any {
            value: b"not json".to_vec(),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert!(s.client.update(ctx(), &bad).is_err());

    s.kill(9).unwrap();
    assert_eq!(s.wait(""), 137);
    // Without containerd the shim logs into the bundle.
    let log = std::fs::read_to_string(s.bundle.join("shim.log")).unwrap();
    assert!(log.contains("create"), "{log}");
}

/// A file of `pid`'s cgroup: in the v1 hierarchy of `controller`, or with `controller` ""
/// in the v2 hierarchy. None when that hierarchy does not have the process.
fn cgroup_file(pid: u32, controller: &str, file: &str) -> Option<PathBuf> {
    let cgroup = berth_cgroups::CgroupManager::of_process(pid)
        .unwrap_or_else(|e| panic!("cgroups of pid {pid}: {e}"));
    let f = cgroup.path(controller)?.join(file);
    f.exists().then_some(f)
}

#[test]
fn start_rejects_bad_berth_settings() {
    if !can_run() {
        return;
    }
    let env = TestEnv::new("badsettings");
    let sock = env.path().join("shim.sock");
    let bundle = common::bundle(&env, &["true"], |spec| {
        spec["annotations"] = serde_json::json!({
            "io.berth.shim.socket": sock.display().to_string(),
            "io.berth.restart": "sometimes",
        });
    });
    let out = run(env
        .command(SHIM)
        .args([
            "-namespace",
            "berth-test",
            "-id",
            &env.unique("bad"),
            "start",
        ])
        .current_dir(bundle.path()));
    out.assert_failure();
    assert!(
        out.stderr.contains("io.berth.restart=sometimes"),
        "{}",
        out.stderr
    );
    assert!(!sock.exists());
}

/// How many times `topic` is in `events`, and where first.
fn topic_count(events: &[String], topic: &str) -> (usize, Option<usize>) {
    (
        events.iter().filter(|e| *e == topic).count(),
        events.iter().position(|e| e == topic),
    )
}

/// Delete the exited container and wait until its TaskDelete has been published: events go
/// out in order, so by then every TaskOOM it will ever send has been sent.
fn delete_and_collect_events(s: &Shim) -> Vec<String> {
    s.delete();
    common::eventually("TaskDelete to be published", || {
        let events = s.events();
        events
            .iter()
            .any(|e| e == "/tasks/delete")
            .then_some(events)
    })
}

#[test]
fn oom_kill_is_recorded() {
    if !can_run() {
        return;
    }
    let s = Shim::start_opts(
        "oom",
        &["tail", "/dev/zero"],
        &[],
        |spec| {
            // `tail` keeps the unterminated "line" of zeros in memory until the limit stops it.
            spec["linux"]["resources"]["memory"] = serde_json::json!({"limit": 16 * 1024 * 1024});
        },
        true,
    );
    s.create().unwrap();
    s.start_init();
    assert_eq!(s.wait(""), 137);
    let status = s.status_file();
    assert_eq!(status["oom_killed"], true);
    assert_eq!(status["exit_code"], 137);
    // The live watch and the check at exit both see this kill: one TaskOOM, ahead of
    // the TaskExit.
    let events = delete_and_collect_events(&s);
    let (ooms, oom_at) = topic_count(&events, "/tasks/oom");
    let (exits, exit_at) = topic_count(&events, "/tasks/exit");
    assert_eq!((ooms, exits), (1, 1), "{events:?}");
    assert!(oom_at < exit_at, "{events:?}");
}

#[test]
fn oom_kill_of_a_child_is_reported_while_the_init_lives() {
    if !can_run() {
        return;
    }
    let s = Shim::start_opts(
        "oomchild",
        &["sh", "-c", "tail /dev/zero; echo survived; sleep 600"],
        &[("io.berth.log.path", "$DIR/c.log")],
        |spec| {
            spec["linux"]["resources"]["memory"] = serde_json::json!({"limit": 16 * 1024 * 1024});
        },
        true,
    );
    s.create().unwrap();
    s.start_init();
    common::eventually("TaskOOM while the container runs", || {
        s.events().iter().any(|e| e == "/tasks/oom").then_some(())
    });
    common::eventually("the shell to go on after its child's OOM kill", || {
        log_entries(&s.path("c.log"))
            .iter()
            .any(|e| e["log"] == "survived\n")
            .then_some(())
    });
    assert_eq!(s.state("").status.enum_value_or_default(), Status::RUNNING);
    assert_eq!(s.status_file()["status"], "running");
    assert!(!s.events().iter().any(|e| e == "/tasks/exit"));

    // A SIGKILL from the user after the child's OOM kill is not an OOM death of the init.
    s.kill(9).unwrap();
    assert_eq!(s.wait(""), 137);
    assert_eq!(s.status_file()["oom_killed"], false);
    let events = delete_and_collect_events(&s);
    assert_eq!(topic_count(&events, "/tasks/oom").0, 1, "{events:?}");
}

#[test]
fn plain_kill_is_not_an_oom() {
    if !can_run() {
        return;
    }
    let s = Shim::start("nooom", &["sleep", "1000"], &[]);
    s.create().unwrap();
    s.start_init();
    s.kill(9).unwrap();
    assert_eq!(s.wait(""), 137);
    assert_eq!(s.status_file()["oom_killed"], false);
}

#[test]
fn output_waits_in_the_fifo_for_a_reader_that_opens_late() {
    if !can_run() {
        return;
    }
    let s = Shim::start("latefifo", &["sh", "-c", "echo last words"], &[]);
    let fifo = s.path("stdout");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    s.create_with(|r| r.stdout = fifo.display().to_string())
        .unwrap();
    s.start_init();
    // The process is done and its exit reported before anyone opens the FIFO to read,
    // as happens to a client slowed down by load.
    assert_eq!(s.wait(""), 0);
    let mut reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let mut buf = [0u8; 64];
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(std::time::Instant::now() < deadline, "no EOF on the FIFO");
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => panic!("read stdout FIFO: {e}"),
        }
    }
    assert_eq!(String::from_utf8_lossy(&got), "last words\n");
    s.delete();
}
