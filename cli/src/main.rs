//! Berth: a container engine with Docker's command line

use clap::Parser;

/// Berth: a container engine with Docker's command line
#[derive(Parser, Debug)]
#[command(name = "berth", version, about)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    let _cli = Cli::parse();
    Ok(())
}
