//! berth-imaged: the image daemon. Serves `berth.imaged.v1` (proto/proto/imaged.proto) on
//! `$BERTH_RUN/imaged.sock`; keeps its store under `$BERTH_ROOT`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use berth_imaged::daemon::Daemon;
use berth_imaged::registry::RegistryConfig;
use berth_imaged::service::ImagesService;
use berth_proto::daemon;
use berth_proto::imaged::images_server::ImagesServer;
use clap::Parser;

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
    daemon::init_logging(&cli.run, "imaged", cli.debug)?;
    // Held for the process's life: one daemon per run directory.
    let _lock = daemon::lock(&cli.run, "berth-imaged", "imaged")?;
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
    let (mut images, recovered) = Daemon::open(&cli.root, &cli.run, registries)?;
    images.range_threshold = cli.range_threshold;
    if recovered.snapshot_dirs > 0 {
        tracing::info!(
            "removed {} snapshot directories an interrupted run left",
            recovered.snapshot_dirs
        );
    }
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(serve(Arc::new(images), cli.run.join("imaged.sock")))
}

async fn serve(d: Arc<Daemon>, socket: PathBuf) -> Result<()> {
    let incoming = daemon::listen(&socket)?;
    tracing::info!(
        "berth-imaged {} serving on {}",
        env!("CARGO_PKG_VERSION"),
        socket.display()
    );
    tonic::transport::Server::builder()
        .add_service(
            ImagesServer::new(ImagesService::new(d))
                .max_decoding_message_size(64 << 20)
                .max_encoding_message_size(64 << 20),
        )
        .serve_with_incoming_shutdown(incoming, daemon::stopped())
        .await
        .context("serve")?;
    let _ = std::fs::remove_file(&socket);
    Ok(())
}
