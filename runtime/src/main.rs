//! berth-runtime: a low-level OCI runtime with runc's command line.

mod cli;
mod commands;
mod exe_guard;
mod hooks;
mod logging;
mod process;
mod procfs;
mod rootfs;
mod seccomp;
mod state;
mod timefmt;

use clap::Parser;

use cli::{Cli, Command};

fn print_version() {
    println!("berth-runtime version {}", env!("CARGO_PKG_VERSION"));
    println!("commit: {}", env!("BERTH_COMMIT"));
    println!("spec: 1.2.0");
}

fn main() {
    // Whatever the caller leaked to us (a descriptor without close-on-exec) must reach
    // neither a hook nor the container; `--preserve-fds` ones are handed on explicitly.
    process::fds::mark_cloexec_from(3);
    let cli = Cli::parse();
    if cli.version {
        print_version();
        return;
    }
    let Some(cmd) = cli.command.as_ref() else {
        use clap::CommandFactory;
        let _ = Cli::command().print_help();
        std::process::exit(1);
    };
    if !process::trampoline::SUPPORTED
        && matches!(cmd, Command::Create(_) | Command::Run(_) | Command::Exec(_))
    {
        // Never let a container process hold our host binary (CVE-2019-5736). Where the
        // exec trampoline exists it does that job without this copy.
        if let Err(e) = exe_guard::ensure_sealed_copy() {
            eprintln!("berth-runtime: {e:#}");
            std::process::exit(1);
        }
    }
    logging::init(cli.log.as_deref(), cli.log_format, cli.debug);
    match commands::dispatch(&cli, cmd) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            let msg = format!("{e:#}");
            tracing::error!("{msg}");
            if cli.log.is_some() {
                eprintln!("berth-runtime: {msg}");
            }
            std::process::exit(1);
        }
    }
}
