//! Berth network daemon: bridges, IPAM, published ports, DNS

use clap::Parser;

/// Berth network daemon: bridges, IPAM, published ports, DNS
#[derive(Parser, Debug)]
#[command(name = "berth-netd", version, about)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    let _cli = Cli::parse();
    Ok(())
}
