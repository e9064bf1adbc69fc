//! berth-imaged: the image daemon. Serves `berth.imaged.v1` (proto/proto/imaged.proto) on
//! `$BERTH_RUN/imaged.sock`; keeps its store under `$BERTH_ROOT`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use berth_imaged::daemon::Daemon;
use berth_imaged::registry::RegistryConfig;
use berth_imaged::service::ImagesService;
use berth_proto::imaged::images_server::ImagesServer;
use clap::Parser;
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;

/// Berth image daemon: content store, registry pull/push, snapshots
#[derive(Parser, Debug)]
#[command(name = "berth-imaged", version, about)]
struct Cli {
    /// Where images, layers and snapshots are kept.
    #[arg(long, env = "BERTH_ROOT", default_value = "/var/lib/berth")]
    root: PathBuf,
    /// Where the socket, the lock and the log go.
    #[arg(long, env = "BERTH_RUN", default_value = "/run/berth")]
    run: PathBuf,
    /// Registries configuration (JSON: `insecure-registries`, `registry-mirrors`), as in
    /// Docker's daemon.json. Default: `$BERTH_ROOT/registries.json` when it exists.
    #[arg(long)]
    registries: Option<PathBuf>,
    /// Blobs at least this large (bytes) are fetched in parallel byte ranges where the
    /// registry serves them.
    #[arg(long, default_value_t = 64 << 20)]
    range_threshold: u64,
    /// Log at debug level.
    #[arg(long)]
    debug: bool,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    std::fs::create_dir_all(&cli.run).with_context(|| format!("create {}", cli.run.display()))?;
    init_logging(&cli)?;
    // One daemon per run directory: the lock is held for the process's life.
    let lock_path = cli.run.join("imaged.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("open {}", lock_path.display()))?;
    if nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusiveNonblock).is_err() {
        bail!(
            "another berth-imaged is running for {} (lock {} is held)",
            cli.run.display(),
            lock_path.display()
        );
    }
    let registries = match &cli.registries {
        Some(p) => RegistryConfig::load(p)?,
        None => {
            let p = cli.root.join("registries.json");
            if p.exists() {
                RegistryConfig::load(&p)?
            } else {
                RegistryConfig::default()
            }
        }
    };
    let (mut daemon, recovered) = Daemon::open(&cli.root, &cli.run, registries)?;
    daemon.range_threshold = cli.range_threshold;
    if recovered.snapshot_dirs > 0 {
        tracing::info!(
            "removed {} snapshot directories an interrupted run left",
            recovered.snapshot_dirs
        );
    }
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(serve(Arc::new(daemon), cli.run.join("imaged.sock")))
}

async fn serve(daemon: Arc<Daemon>, socket: PathBuf) -> Result<()> {
    // We hold the lock, so a socket file left here belongs to a daemon that died.
    let _ = std::fs::remove_file(&socket);
    let listener =
        UnixListener::bind(&socket).with_context(|| format!("listen on {}", socket.display()))?;
    tracing::info!(
        "berth-imaged {} serving on {}",
        env!("CARGO_PKG_VERSION"),
        socket.display()
    );
    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::info!("shutting down");
    };
    tonic::transport::Server::builder()
        .add_service(
            ImagesServer::new(ImagesService::new(daemon))
                .max_decoding_message_size(64 << 20)
                .max_encoding_message_size(64 << 20),
        )
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
        .await
        .context("serve")?;
    let _ = std::fs::remove_file(&socket);
    Ok(())
}

/// Log to stderr and to `$BERTH_RUN/imaged.log`.
fn init_logging(cli: &Cli) -> Result<()> {
    use tracing_subscriber::prelude::*;
    let level = if cli.debug { "debug" } else { "info" };
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG").unwrap_or_else(|_| level.into())
    };
    let path = cli.run.join("imaged.log");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("open log {}", path.display()))?;
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(filter()),
        )
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(file))
                .with_filter(filter()),
        )
        .init();
    Ok(())
}
