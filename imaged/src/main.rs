//! Berth image daemon: content store, registry pull/push, snapshots

use clap::Parser;

/// Berth image daemon: content store, registry pull/push, snapshots
#[derive(Parser, Debug)]
#[command(name = "berth-imaged", version, about)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    let _cli = Cli::parse();
    Ok(())
}
