//! `berth build`: the context and flags in, Docker's classic-builder progress out.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, Result};
use clap::Args;

use crate::engine::build::{self, BuildError, BuildRequest, Context, Event};
use crate::engine::Engine;
use crate::Failure;

#[derive(Args, Debug)]
pub struct BuildArgs {
    /// Name and optionally a tag in the "name:tag" format
    #[arg(short = 't', long = "tag")]
    pub tags: Vec<String>,
    /// Name of the Dockerfile (default: "PATH/Dockerfile")
    #[arg(short = 'f', long = "file")]
    pub file: Option<String>,
    /// Set build-time variables
    #[arg(long = "build-arg")]
    pub build_args: Vec<String>,
    /// Set the target build stage to build
    #[arg(long)]
    pub target: Option<String>,
    /// Do not use cache when building the image
    #[arg(long)]
    pub no_cache: bool,
    /// Always attempt to pull a newer version of the image
    #[arg(long)]
    pub pull: bool,
    /// Set metadata for an image
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// Set the networking mode for the RUN instructions during build
    #[arg(long, default_value = "default")]
    pub network: String,
    /// Suppress the build output and print image ID on success
    #[arg(short, long)]
    pub quiet: bool,
    /// Write the image ID to the file
    #[arg(long)]
    pub iidfile: Option<String>,
    /// Set platform if server is multi-platform capable
    #[arg(long)]
    pub platform: Option<String>,
    /// Build context: a directory, or "-" for a tar or a Dockerfile on stdin
    pub context: String,
}

fn short(id: &str) -> &str {
    let hex = id.trim_start_matches("sha256:");
    &hex[..hex.len().min(12)]
}

pub async fn build(engine: &mut Engine, a: &BuildArgs) -> Result<()> {
    let started = Instant::now();
    let fail = |m: String| Failure::new(1, m);
    let (ctx, stdin_dockerfile) = if a.context == "-" {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("read the context from stdin")?;
        Context::stdin(bytes, &engine.root.join("build-tmp")).map_err(fail)?
    } else {
        (Context::dir(Path::new(&a.context)).map_err(fail)?, None)
    };
    let (name, text) = match (&stdin_dockerfile, &a.file) {
        (Some(text), _) => ("Dockerfile".to_string(), text.clone()),
        (None, Some(f)) if f == "-" => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s)?;
            ("Dockerfile".to_string(), s)
        }
        (None, Some(f)) => {
            // `-f` is relative to the working directory, as Docker takes it; a file
            // outside the context is fine for the Dockerfile itself.
            let text = std::fs::read_to_string(f)
                .or_else(|_| {
                    ctx.read_file(f)
                        .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
                })
                .map_err(|e| fail(format!("unable to prepare context: unable to evaluate the Dockerfile path {f}: {e}")))?;
            (f.clone(), text)
        }
        (None, None) => {
            let text = ctx.read_file("Dockerfile").ok_or_else(|| {
                fail(format!(
                    "unable to prepare context: the Dockerfile ({}/Dockerfile) cannot be read: no such file or directory",
                    a.context
                ))
            })?;
            ("Dockerfile".to_string(), text)
        }
    };
    let mut build_args = BTreeMap::new();
    for kv in &a.build_args {
        match kv.split_once('=') {
            Some((k, v)) => {
                build_args.insert(k.to_string(), v.to_string());
            }
            // `--build-arg NAME` takes the value from the environment, as Docker does.
            None => {
                if let Ok(v) = std::env::var(kv) {
                    build_args.insert(kv.clone(), v);
                }
            }
        }
    }
    let labels = a
        .labels
        .iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (l.clone(), String::new()),
        })
        .collect();
    let req = BuildRequest {
        dockerfile_name: name,
        dockerfile: text,
        options: crate::build::BuildOptions {
            target: a.target.clone(),
            build_args,
            platform: a.platform.clone(),
            build_platform: None,
        },
        tags: a.tags.clone(),
        no_cache: a.no_cache,
        pull: a.pull,
        labels,
        network: a.network.clone(),
    };

    let quiet = a.quiet;
    let report: build::Reporter = Arc::new(move |e: Event| {
        if quiet {
            return;
        }
        let mut out = std::io::stdout().lock();
        let _ = match e {
            Event::Step {
                number,
                total,
                text,
            } => writeln!(out, "Step {number}/{total} : {text}"),
            Event::UsingCache => writeln!(out, " ---> Using cache"),
            Event::Running(id) => writeln!(out, " ---> Running in {id}"),
            Event::Output(bytes) => out.write_all(&bytes),
            Event::Removed(id) => writeln!(out, "Removing intermediate container {id}"),
            Event::Image(id) => writeln!(out, " ---> {}", short(&id)),
            Event::Message(m) => writeln!(out, "{m}"),
        };
        let _ = out.flush();
    });
    let built = match build::build(engine, &req, &ctx, report).await {
        Ok(b) => b,
        Err(e @ BuildError::RunFailed { .. }) => return Err(fail(e.to_string()).into()),
        Err(e) => return Err(fail(e.to_string()).into()),
    };
    if let Some(f) = &a.iidfile {
        std::fs::write(f, &built.image_id).with_context(|| format!("write {f}"))?;
    }
    if quiet {
        println!("{}", built.image_id);
        return Ok(());
    }
    println!("Successfully built {}", short(&built.image_id));
    for t in &a.tags {
        let shown = berth_imaged::reference::Reference::parse(t)
            .map(|r| r.familiar())
            .unwrap_or_else(|_| t.clone());
        println!("Successfully tagged {shown}");
    }
    println!(
        "Cache: {} of {} steps from cache, {:.2}s",
        built.cached,
        built.steps,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
