//! berth-netd: the network daemon. Serves `berth.netd.v1` (proto/proto/netd.proto) on
//! `$BERTH_RUN/netd.sock`; keeps its state under `$BERTH_ROOT/networks/`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use berth_netd::daemon::{Config, Daemon};
use berth_netd::service::NetworksService;
use berth_proto::daemon;
use berth_proto::netd::networks_server::NetworksServer;
use clap::Parser;
use ipnet::Ipv4Net;

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
    daemon::init_logging(&cli.run, "netd", cli.debug)?;
    // Held for the process's life: one daemon per run directory.
    let _lock = daemon::lock(&cli.run, "berth-netd", "netd")?;
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
        daemon
            .shutdown(cli.remove_rules_on_exit)
            .await
            .context("shut down")?;
        Ok(())
    })
}

async fn serve(d: Arc<Daemon>, socket: PathBuf) -> Result<()> {
    let incoming = daemon::listen(&socket)?;
    tracing::info!(
        "berth-netd {} serving on {}",
        env!("CARGO_PKG_VERSION"),
        socket.display()
    );
    tonic::transport::Server::builder()
        .add_service(NetworksServer::new(NetworksService::new(d)))
        .serve_with_incoming_shutdown(incoming, daemon::stopped())
        .await
        .context("serve")?;
    let _ = std::fs::remove_file(&socket);
    Ok(())
}
