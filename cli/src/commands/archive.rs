//! `save`, `load` and `import`: archives streamed to and from berth-imaged.

use std::io::{IsTerminal, Read, Write};

use anyhow::{Context, Result};
use berth_proto::imaged as pb;
use clap::Args;

use super::image::daemon_error;
use crate::engine::Engine;
use crate::Failure;

#[derive(Args, Debug)]
pub struct SaveArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short, long)]
    pub output: Option<std::path::PathBuf>,
    /// docker-archive (default) or oci-archive
    #[arg(long, default_value = "docker-archive")]
    pub format: String,
    #[arg(required = true)]
    pub images: Vec<String>,
}

pub async fn save(engine: &mut Engine, a: &SaveArgs) -> Result<()> {
    let mut out: Box<dyn Write> = match &a.output {
        Some(p) => {
            Box::new(std::fs::File::create(p).with_context(|| format!("create {}", p.display()))?)
        }
        None => {
            if std::io::stdout().is_terminal() {
                return Err(Failure::new(
                    1,
                    "cowardly refusing to save to a terminal. Use the -o flag or redirect",
                )
                .into());
            }
            Box::new(std::io::stdout().lock())
        }
    };
    let mut stream = engine
        .images()
        .await?
        .save(pb::SaveRequest {
            images: a.images.clone(),
            format: a.format.clone(),
        })
        .await
        .map_err(daemon_error)?
        .into_inner();
    while let Some(c) = stream.message().await.map_err(daemon_error)? {
        out.write_all(&c.data)?;
    }
    out.flush()?;
    Ok(())
}

/// Chunks of a file or stdin, for the streaming RPCs.
fn chunks(mut src: Box<dyn Read + Send>) -> impl futures::Stream<Item = Vec<u8>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(8);
    std::thread::spawn(move || loop {
        let mut buf = vec![0u8; 1 << 20];
        match src.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                buf.truncate(n);
                if tx.blocking_send(buf).is_err() {
                    return;
                }
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

fn input(path: Option<&std::path::Path>) -> Result<Box<dyn Read + Send>> {
    Ok(match path {
        Some(p) if p != std::path::Path::new("-") => {
            Box::new(std::fs::File::open(p).with_context(|| format!("open {}", p.display()))?)
        }
        _ => Box::new(std::io::stdin()),
    })
}

#[derive(Args, Debug)]
pub struct LoadArgs {
    /// Read from tar archive file, instead of STDIN
    #[arg(short, long)]
    pub input: Option<std::path::PathBuf>,
    /// Suppress the load output
    #[arg(short, long)]
    pub quiet: bool,
}

pub async fn load(engine: &mut Engine, a: &LoadArgs) -> Result<()> {
    if a.input.is_none() && std::io::stdin().is_terminal() {
        return Err(Failure::new(1, "requested load from stdin, but stdin is empty").into());
    }
    use futures::StreamExt;
    let reqs = chunks(input(a.input.as_deref())?).map(|data| pb::LoadRequest { data });
    let r = engine
        .images()
        .await?
        .load(reqs)
        .await
        .map_err(daemon_error)?
        .into_inner();
    if !a.quiet {
        for l in r.lines {
            println!("{l}");
        }
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// Apply Dockerfile instruction to the created image
    #[arg(short, long = "change")]
    pub change: Vec<String>,
    /// Set commit message for imported image
    #[arg(short, long)]
    pub message: Option<String>,
    /// file or - for STDIN
    pub file: std::path::PathBuf,
    /// REPOSITORY[:TAG]
    pub reference: Option<String>,
}

pub async fn import(engine: &mut Engine, a: &ImportArgs) -> Result<()> {
    use futures::StreamExt;
    let first = pb::ImportRequest {
        reference: a.reference.clone().unwrap_or_default(),
        changes: a.change.clone(),
        message: a.message.clone().unwrap_or_default(),
        data: Vec::new(),
    };
    let data = chunks(input(Some(&a.file))?).map(|data| pb::ImportRequest {
        data,
        ..Default::default()
    });
    let reqs = futures::stream::iter([first]).chain(data);
    let r = engine
        .images()
        .await?
        .import(reqs)
        .await
        .map_err(daemon_error)?
        .into_inner();
    println!("{}", r.image_id);
    Ok(())
}
