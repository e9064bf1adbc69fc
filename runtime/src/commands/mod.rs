//! One module per runc subcommand group.

use std::path::PathBuf;

use anyhow::Result;

use crate::cli::{Cli, Command};

pub mod create;
pub mod delete;
pub mod exec;
pub mod foreground;
pub mod info;
pub mod manage;
pub mod run;
pub mod start;

pub struct Global {
    pub root: PathBuf,
    pub systemd_cgroup: bool,
}

/// Runs the subcommand; the result is the process exit code.
pub fn dispatch(cli: &Cli, cmd: &Command) -> Result<i32> {
    let g = Global {
        root: cli.state_root(),
        systemd_cgroup: cli.systemd_cgroup,
    };
    let root = &g.root;
    match cmd {
        Command::Create(a) => create::create(&g, a, false).map(|_| 0),
        Command::Start(a) => start::start(root, &a.id).map(|_| 0),
        Command::Run(a) => run::run(&g, a),
        Command::State(a) => info::state(root, &a.id).map(|_| 0),
        Command::Kill(a) => info::kill(root, &a.id, &a.signal, a.all).map(|_| 0),
        Command::Delete(a) => delete::delete(root, &a.id, a.force).map(|_| 0),
        Command::Exec(a) => exec::exec(&g, a),
        Command::Ps(a) => info::ps(root, &a.id, &a.format, &a.ps_args).map(|_| 0),
        Command::List(a) => info::list(root, &a.format, a.quiet).map(|_| 0),
        Command::Pause(a) => info::pause(root, &a.id).map(|_| 0),
        Command::Resume(a) => info::resume(root, &a.id).map(|_| 0),
        Command::Update(a) => manage::update(root, a).map(|_| 0),
        Command::Events(a) => manage::events(root, a).map(|_| 0),
        Command::Features => manage::features().map(|_| 0),
        // `spec --rootless` arrives through the global flag (see Cli::rootless).
        Command::Spec(a) => manage::spec(a, cli.rootless.as_deref() == Some("true")).map(|_| 0),
    }
}
