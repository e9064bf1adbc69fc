//! What a container wrote: `commit` into an image, `diff` as Docker lists it, `export` as
//! a tar of its whole filesystem. imaged does the work on the container's snapshot.

use std::io::Write;

use anyhow::Result;
use berth_proto::imaged as pb;
use clap::Args;
use serde_json::{json, Value};

use super::engine_failure;
use crate::build::instructions::CommandLine;
use crate::build::{self, Instruction};
use crate::commands::image::daemon_error;
use crate::engine::containers::record::Record;
use crate::engine::Engine;
use crate::Failure;

#[derive(Args, Debug)]
pub struct CommitArgs {
    /// Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")
    #[arg(short, long)]
    pub author: Option<String>,
    /// Apply Dockerfile instruction to the created image
    #[arg(short, long)]
    pub change: Vec<String>,
    /// Commit message
    #[arg(short, long)]
    pub message: Option<String>,
    /// Pause container during commit
    #[arg(short, long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub pause: bool,
    pub container: String,
    /// REPOSITORY[:TAG]
    pub reference: Option<String>,
}

/// The new image's config: the container's settings, then the `-c` instructions.
fn commit_config(rec: &Record, changes: &[String]) -> Result<Value, Failure> {
    let c = &rec.config;
    let mut cfg = json!({
        "User": c.user,
        "Env": c.env,
        "Cmd": c.cmd,
        "Entrypoint": if c.entrypoint.is_empty() { Value::Null } else { json!(c.entrypoint) },
        "WorkingDir": c.working_dir,
        "Labels": c.labels,
        "ExposedPorts": c.exposed_ports,
        "Volumes": if c.volumes.is_empty() { Value::Null } else { json!(c.volumes) },
    });
    if let Some(s) = &c.stop_signal {
        cfg["StopSignal"] = json!(s);
    }
    if let Some(h) = &c.healthcheck {
        cfg["Healthcheck"] = h.clone();
    }
    for change in changes {
        let bad = |m: String| Failure::new(1, format!("Error response from daemon: {m}"));
        let ins = build::parse_trigger(change).map_err(|e| bad(format!("{change}: {e}")))?;
        let cmdline = |l: CommandLine| match l {
            CommandLine::Exec(v) => json!(v),
            CommandLine::Shell(s) => json!(["/bin/sh", "-c", s]),
        };
        match ins {
            Instruction::Cmd(l) => cfg["Cmd"] = cmdline(l),
            Instruction::Entrypoint(l) => cfg["Entrypoint"] = cmdline(l),
            Instruction::Env(kvs) => {
                let mut env: Vec<String> =
                    serde_json::from_value(cfg["Env"].clone()).unwrap_or_default();
                for (k, v) in kvs {
                    env.retain(|e| e.split('=').next() != Some(k.as_str()));
                    env.push(format!("{k}={v}"));
                }
                cfg["Env"] = json!(env);
            }
            Instruction::Workdir(w) => cfg["WorkingDir"] = json!(w),
            Instruction::User(u) => cfg["User"] = json!(u),
            Instruction::Expose(ports) => {
                for p in ports {
                    let key = if p.contains('/') {
                        p
                    } else {
                        format!("{p}/tcp")
                    };
                    cfg["ExposedPorts"][key] = json!({});
                }
            }
            Instruction::Label(kvs) => {
                for (k, v) in kvs {
                    cfg["Labels"][k] = json!(v);
                }
            }
            Instruction::Volume(vs) => {
                for v in vs {
                    if cfg["Volumes"].is_null() {
                        cfg["Volumes"] = json!({});
                    }
                    cfg["Volumes"][v] = json!({});
                }
            }
            Instruction::StopSignal(s) => cfg["StopSignal"] = json!(s),
            Instruction::Onbuild(o) => {
                let mut list: Vec<String> =
                    serde_json::from_value(cfg["OnBuild"].clone()).unwrap_or_default();
                list.push(o.text);
                cfg["OnBuild"] = json!(list);
            }
            other => {
                return Err(bad(format!(
                    "{} is not a valid change command",
                    other.keyword()
                )))
            }
        }
    }
    Ok(cfg)
}

pub async fn commit(engine: &mut Engine, a: &CommitArgs) -> Result<()> {
    let rec = engine
        .container(&a.container)
        .map_err(|e| engine_failure(e, 1))?;
    let cfg = commit_config(&rec, &a.change)?;
    let st = engine.state_of(&rec);
    // Paused, the container cannot change files while the diff is taken.
    let shim = (a.pause && st.status == crate::engine::containers::state::Status::Running)
        .then(|| engine.shim_of(&rec.id))
        .flatten();
    if let Some(s) = &shim {
        let _ = s.pause();
    }
    let created_by = rec.command().join(" ");
    let r = engine
        .images()
        .await?
        .commit(pb::CommitRequest {
            key: rec.id.clone(),
            reference: a.reference.clone().unwrap_or_default(),
            author: a.author.clone().unwrap_or_default(),
            message: a.message.clone().unwrap_or_default(),
            config_json: cfg.to_string(),
            created_by,
            init_paths: ETC_MOUNTS.map(String::from).to_vec(),
            ..Default::default()
        })
        .await;
    if let Some(s) = &shim {
        let _ = s.resume();
    }
    println!("{}", r.map_err(daemon_error)?.into_inner().image_id);
    Ok(())
}

/// The files the engine binds over the image's (`bundle.rs`). Where the image has none, the
/// runtime makes empty mount points in the container's layer; Docker keeps those in an init
/// layer, so imaged leaves them out of commits and diffs (what a container writes to these
/// paths goes to the bound files, never to its layer).
const ETC_MOUNTS: [&str; 3] = ["/etc/hostname", "/etc/hosts", "/etc/resolv.conf"];

#[derive(Args, Debug)]
pub struct DiffArgs {
    pub container: String,
}

pub async fn diff(engine: &mut Engine, a: &DiffArgs) -> Result<()> {
    let rec = engine
        .container(&a.container)
        .map_err(|e| engine_failure(e, 1))?;
    let r = engine
        .images()
        .await?
        .changes(pb::ChangesRequest {
            key: rec.id,
            init_paths: ETC_MOUNTS.map(String::from).to_vec(),
        })
        .await
        .map_err(daemon_error)?
        .into_inner();
    let mut changes = r.changes;
    // By path, as Docker lists them.
    changes.sort_by(|a, b| a.path.cmp(&b.path));
    let mut out = std::io::stdout().lock();
    for c in changes {
        let k = match c.kind {
            0 => 'C',
            1 => 'A',
            _ => 'D',
        };
        writeln!(out, "{k} {}", c.path)?;
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short, long)]
    pub output: Option<String>,
    pub container: String,
}

pub async fn export(engine: &mut Engine, a: &ExportArgs) -> Result<()> {
    let rec = engine
        .container(&a.container)
        .map_err(|e| engine_failure(e, 1))?;
    if a.output.is_none() && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        return Err(Failure::new(
            1,
            "cowardly refusing to save to a terminal. Use the -o flag or redirect",
        )
        .into());
    }
    let mut stream = engine
        .images()
        .await?
        .export(pb::SnapshotRequest { key: rec.id })
        .await
        .map_err(daemon_error)?
        .into_inner();
    let (mut out, tmp): (Box<dyn Write>, Option<(String, String)>) = match &a.output {
        Some(path) => {
            // Whole or not at all: the file appears only once the stream has ended well.
            let tmp = format!("{path}.berth-tmp");
            (
                Box::new(std::fs::File::create(&tmp)?),
                Some((tmp, path.clone())),
            )
        }
        None => (Box::new(std::io::stdout().lock()), None),
    };
    while let Some(chunk) = stream.message().await.map_err(daemon_error)? {
        match out.write_all(&chunk.data) {
            // The reader had enough (`| head`): as tar would, stop quietly.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            r => r?,
        }
    }
    out.flush()?;
    drop(out);
    if let Some((tmp, path)) = tmp {
        std::fs::rename(tmp, path)?;
    }
    Ok(())
}
