//! `run`, `create`, `start` and `attach`.

use std::io::IsTerminal;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Result;
use berth_proto::imaged as pb;
use clap::Args;

use super::attach::{self, RawTerminal, DETACH_KEYS};
use super::create::CreateFlags;
use super::engine_failure;
use crate::engine::containers::record::Record;
use crate::engine::containers::ContainerError;
use crate::engine::Engine;
use crate::Failure;

#[derive(Args, Debug)]
#[command(disable_help_flag = true)]
pub struct RunArgs {
    /// Run container in background and print container ID
    #[arg(short, long)]
    pub detach: bool,
    /// Override the key sequence for detaching a container
    #[arg(long)]
    pub detach_keys: Option<String>,
    #[command(flatten)]
    pub flags: CreateFlags,
}

#[derive(Args, Debug)]
#[command(disable_help_flag = true)]
pub struct CreateArgs {
    #[command(flatten)]
    pub flags: CreateFlags,
}

async fn image_id(engine: &mut Engine, image: &str) -> Result<String> {
    let r = engine
        .images()
        .await?
        .inspect(pb::InspectRequest {
            image: image.to_string(),
        })
        .await?
        .into_inner();
    let id = r.summary.map(|s| s.id).unwrap_or_default();
    // `create` needs the same answer: it is not asked for twice.
    engine.remember_inspect(&id, r.json);
    Ok(id)
}

/// The image's id, pulled first when missing (or always, with `--pull always`).
async fn resolve_image(engine: &mut Engine, f: &CreateFlags) -> Result<String> {
    let image = f.image();
    if berth_imaged::reference::Reference::parse(image).is_err() && !image.starts_with("sha256:") {
        let id_like = image.len() >= 12 && image.chars().all(|c| c.is_ascii_hexdigit());
        if !id_like {
            return Err(Failure::new(
                125,
                format!(
                    "docker: invalid reference format: repository name ({image}) must be lowercase"
                ),
            )
            .into());
        }
    }
    match f.pull.as_str() {
        "always" => {}
        "missing" | "never" => {
            if let Ok(id) = image_id(engine, image).await {
                return Ok(id);
            }
            if f.pull == "never" {
                return Err(Failure::new(
                    125,
                    format!("docker: Error response from daemon: No such image: {image}"),
                )
                .into());
            }
            eprintln!("Unable to find image '{image}' locally");
        }
        other => {
            return Err(Failure::new(
                125,
                format!("docker: invalid pull option: '{other}': must be one of \"always\", \"missing\" or \"never\""),
            )
            .into())
        }
    }
    if let Err(e) = crate::commands::image::pull_for_run(engine, image, &f.platform).await {
        let msg = match e.downcast_ref::<Failure>() {
            Some(f) => f.message.clone(),
            None => format!("{e:#}"),
        };
        return Err(Failure::new(125, format!("docker: {msg}")).into());
    }
    image_id(engine, image).await
}

async fn create_from(engine: &mut Engine, f: &CreateFlags) -> Result<Record> {
    let mut req = f.request()?;
    req.image_id = resolve_image(engine, f).await?;
    engine
        .create_container(req)
        .await
        .map_err(|e| engine_failure(e, 125).into())
}

pub async fn create(engine: &mut Engine, a: &CreateArgs) -> Result<()> {
    // Docker's `create` reports the same failures as `run`, but as a plain error (status
    // 1, no "docker:" prefix): only `run` turns them into its 125.
    let rec = create_from(engine, &a.flags)
        .await
        .map_err(|e| match e.downcast::<Failure>() {
            Ok(f) if f.code == 125 => {
                Failure::new(1, f.message.strip_prefix("docker: ").unwrap_or(&f.message)).into()
            }
            Ok(f) => f.into(),
            Err(e) => e,
        })?;
    println!("{}", rec.id);
    Ok(())
}

/// Docker's exit codes for a process that could not start: 127 not found, 126 cannot run.
fn start_failure(e: ContainerError) -> Failure {
    let msg = e.to_string();
    let code = if msg.contains("executable file not found")
        || msg.contains("no such file or directory")
        || msg.contains("No such file or directory")
    {
        127
    } else if msg.contains("permission denied") || msg.contains("Permission denied") {
        126
    } else {
        125
    };
    Failure::new(
        code,
        format!("docker: Error response from daemon: failed to create task for container: {msg}"),
    )
}

pub async fn run(engine: &mut Engine, a: &RunArgs) -> Result<()> {
    let f = &a.flags;
    let rec = create_from(engine, f).await?;
    if a.detach {
        if let Err(e) = engine.start_container(&rec, || Ok(())) {
            let fail = start_failure(e);
            if f.rm {
                let _ = engine.remove_container(&rec.id, true, true).await;
            }
            return Err(fail.into());
        }
        println!("{}", rec.id);
        return Ok(());
    }
    let keys = match &a.detach_keys {
        Some(k) => attach::parse_detach_keys(k).map_err(|e| Failure::new(125, e))?,
        None => DETACH_KEYS.to_vec(),
    };
    let code = attach_and_wait(engine, &rec, true, f.interactive, keys).await?;
    std::process::exit(code);
}

/// Attach to the container's init (starting it when `start`), stream until it ends or the
/// user detaches, and return the status to exit with.
async fn attach_and_wait(
    engine: &mut Engine,
    rec: &Record,
    start: bool,
    stdin: bool,
    keys: Vec<u8>,
) -> Result<i32> {
    let tty = rec.config.tty;
    // With --rm this command removes the container when it ends; the shim's exit command
    // waits for that instead of racing it (see `Store::claim_removal`).
    let _claim = if rec.host.auto_remove {
        engine.store().claim_removal(&rec.id).ok()
    } else {
        None
    };
    let sock_path = engine.attach_socket(&rec.id);
    let mut stream: Option<UnixStream> = None;
    let connect = || UnixStream::connect(&sock_path).map_err(|e| ContainerError::io(&sock_path, e));
    if start {
        let started = engine.start_container(rec, || {
            stream = Some(connect()?);
            Ok(())
        });
        if let Err(e) = started {
            let fail = start_failure(e);
            if rec.host.auto_remove {
                let _ = engine.remove_container(&rec.id, true, true).await;
            }
            return Err(fail.into());
        }
    } else {
        stream = Some(connect().map_err(|e| engine_failure(e, 1))?);
    }
    let stream = stream.expect("connected before start");
    let _raw = (tty && stdin && std::io::stdin().is_terminal()).then(RawTerminal::enter);
    let done = Arc::new(AtomicBool::new(false));
    if tty {
        let id = rec.id.clone();
        let run = engine.run.clone();
        attach::follow_size(done.clone(), move |w, h| {
            if let Some(s) = crate::engine::containers::shim::Shim::connect(
                &id,
                &crate::engine::containers::shim::socket(&run, &id),
            ) {
                let _ = s.resize("", w as u32, h as u32);
            }
        });
    }
    let detached = Arc::new(AtomicBool::new(false));
    if stdin {
        let detach = tty.then(|| detached.clone());
        attach::pump_stdin(stream.try_clone()?, detach, keys);
    }
    let out = attach::pump_output(stream, tty);
    let _ = out.join();
    done.store(true, Ordering::SeqCst);
    if detached.load(Ordering::SeqCst) {
        return Ok(0);
    }
    let code = engine
        .wait_container(rec)
        .map_err(|e| engine_failure(e, 125))?;
    if rec.host.auto_remove {
        let _ = engine.remove_container(&rec.id, true, true).await;
    }
    Ok(code)
}

#[derive(Args, Debug)]
pub struct StartArgs {
    /// Attach STDOUT/STDERR and forward signals
    #[arg(short, long)]
    pub attach: bool,
    /// Attach container's STDIN
    #[arg(short, long)]
    pub interactive: bool,
    /// Override the key sequence for detaching a container
    #[arg(long)]
    pub detach_keys: Option<String>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub async fn start(engine: &mut Engine, a: &StartArgs) -> Result<()> {
    if a.attach || a.interactive {
        if a.containers.len() > 1 {
            return Err(
                Failure::new(1, "you cannot start and attach multiple containers at once").into(),
            );
        }
        let rec = engine
            .container(&a.containers[0])
            .map_err(|e| engine_failure(e, 1))?;
        let keys = match &a.detach_keys {
            Some(k) => attach::parse_detach_keys(k).map_err(|e| Failure::new(1, e))?,
            None => DETACH_KEYS.to_vec(),
        };
        let code = attach_and_wait(engine, &rec, true, a.interactive, keys).await?;
        std::process::exit(code);
    }
    let mut errors = Vec::new();
    for c in &a.containers {
        let r = engine
            .container(c)
            .and_then(|rec| engine.start_container(&rec, || Ok(())).map(|_| ()));
        match r {
            Ok(()) => println!("{c}"),
            Err(e) => errors.push(format!("Error response from daemon: {e}")),
        }
    }
    super::report(errors)
}

#[derive(Args, Debug)]
pub struct AttachArgs {
    /// Do not attach STDIN
    #[arg(long)]
    pub no_stdin: bool,
    /// Override the key sequence for detaching a container
    #[arg(long)]
    pub detach_keys: Option<String>,
    pub container: String,
}

pub async fn attach_cmd(engine: &mut Engine, a: &AttachArgs) -> Result<()> {
    let rec = engine
        .container(&a.container)
        .map_err(|e| engine_failure(e, 1))?;
    if !engine.state_of(&rec).status.is_live() {
        return Err(Failure::new(
            1,
            "You cannot attach to a stopped container, start it first",
        )
        .into());
    }
    let keys = match &a.detach_keys {
        Some(k) => attach::parse_detach_keys(k).map_err(|e| Failure::new(1, e))?,
        None => DETACH_KEYS.to_vec(),
    };
    let stdin = !a.no_stdin && rec.config.open_stdin;
    let code = attach_and_wait(engine, &rec, false, stdin, keys).await?;
    std::process::exit(code);
}
