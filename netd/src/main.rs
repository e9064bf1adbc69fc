//! berth-netd: the network daemon. Serves `berth.netd.v1` (proto/proto/netd.proto) on
//! `$BERTH_RUN/netd.sock`; keeps its state under `$BERTH_ROOT/networks/`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use berth_netd::daemon::{Config, Daemon};
use berth_netd::service::NetworksService;
use berth_proto::netd::networks_server::NetworksServer;
use clap::Parser;
use ipnet::Ipv4Net;
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;

/// Berth network daemon: bridges, IPAM, published ports, DNS
#[derive(Parser, Debug)]
#[command(name = "berth-netd", version, about)]
struct Cli {
    /// Where network definitions and leases are kept (under networks/).
    #[arg(long, env = "BERTH_ROOT", default_value = "/var/lib/berth")]
    root: PathBuf,
    /// Where the socket, the lock, the log and the netns files go.
    #[arg(long, env = "BERTH_RUN", default_value = "/run/berth")]
    run: PathBuf,
    /// Address pools for subnets chosen by netd (comma-separated CIDRs). Subnets overlapping a
    /// route or address of the host, or 172.17.0.0/16, are never taken.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "172.18.0.0/16,172.19.0.0/16,172.20.0.0/14,172.24.0.0/14,172.28.0.0/14,192.168.0.0/16"
    )]
    pool: Vec<Ipv4Net>,
    /// Prefix length of subnets taken from the pool.
    #[arg(long, default_value_t = 24)]
    pool_size: u8,
    /// Subnet of the default `bridge` network (default: the first free one of the pool).
    #[arg(long)]
    default_subnet: Option<Ipv4Net>,
    /// Linux bridge of the default network.
    #[arg(long, default_value = "berth0")]
    default_bridge: String,
    /// The nftables table (family inet) holding all of netd's rules.
    #[arg(long, default_value = "berth")]
    nft_table: String,
    /// MTU of bridges and veths.
    #[arg(long, default_value_t = 1500)]
    mtu: u32,
    /// Port of the per-network DNS servers (on each gateway address).
    #[arg(long, default_value_t = 53)]
    dns_port: u16,
    /// The host's resolver configuration, read (never written) for upstream servers.
    #[arg(long, default_value = "/etc/resolv.conf")]
    resolv_conf: String,
    /// Remove the nft table when stopping (for private instances, e.g. tests). Bridges and
    /// containers' networking are kept either way.
    #[arg(long)]
    remove_rules_on_exit: bool,
    /// Log at debug level.
    #[arg(long)]
    debug: bool,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    std::fs::create_dir_all(&cli.run).with_context(|| format!("create {}", cli.run.display()))?;
    init_logging(&cli)?;
    // One daemon per run directory: the lock is held for the process's life.
    let lock_path = cli.run.join("netd.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("open {}", lock_path.display()))?;
    let _lock = match nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(l) => l,
        Err(_) => bail!(
            "another berth-netd is running for {} (lock {} is held)",
            cli.run.display(),
            lock_path.display()
        ),
    };
    let cfg = Config {
        root: cli.root.clone(),
        run: cli.run.clone(),
        pool: cli.pool.clone(),
        pool_size: cli.pool_size,
        default_subnet: cli.default_subnet,
        default_bridge: cli.default_bridge.clone(),
        nft_table: cli.nft_table.clone(),
        mtu: cli.mtu,
        dns_port: cli.dns_port,
        resolv_conf: cli.resolv_conf.clone(),
    };
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let daemon = Arc::new(Daemon::open(cfg).await.context("start")?);
        serve(daemon.clone(), cli.run.join("netd.sock")).await?;
        if cli.remove_rules_on_exit {
            daemon.delete_table().context("remove nft table")?;
        }
        Ok(())
    })
}

async fn serve(daemon: Arc<Daemon>, socket: PathBuf) -> Result<()> {
    // We hold the lock, so a socket file left here belongs to a daemon that died.
    let _ = std::fs::remove_file(&socket);
    let listener =
        UnixListener::bind(&socket).with_context(|| format!("listen on {}", socket.display()))?;
    tracing::info!(
        "berth-netd {} serving on {}",
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
        .add_service(NetworksServer::new(NetworksService::new(daemon)))
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
        .await
        .context("serve")?;
    let _ = std::fs::remove_file(&socket);
    Ok(())
}

/// Log to stderr and to `$BERTH_RUN/netd.log`.
fn init_logging(cli: &Cli) -> Result<()> {
    use tracing_subscriber::prelude::*;
    let level = if cli.debug { "debug" } else { "info" };
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG").unwrap_or_else(|_| level.into())
    };
    let path = cli.run.join("netd.log");
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
