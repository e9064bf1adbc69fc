//! berth: Docker's command line over Berth's engine.

use anyhow::Result;
use berth_cli::commands::container::{
    cp, exec, logs, manage, ps, run, snapshot, stats, update, view,
};
use berth_cli::commands::{archive, build, image, network, system, volume};
use berth_cli::engine::Engine;
use berth_cli::Failure;
use clap::{CommandFactory, Parser, Subcommand};

/// Berth: a container engine with Docker's command line
#[derive(Parser, Debug)]
#[command(name = "berth", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create and run a new container from an image
    Run(run::RunArgs),
    /// Create a new container
    Create(run::CreateArgs),
    /// Start one or more stopped containers
    Start(run::StartArgs),
    /// Stop one or more running containers
    Stop(manage::StopArgs),
    /// Restart one or more containers
    Restart(manage::StopArgs),
    /// Kill one or more running containers
    Kill(manage::KillArgs),
    /// Remove one or more containers
    Rm(manage::RmArgs),
    /// List containers
    Ps(ps::PsArgs),
    /// Fetch the logs of a container
    Logs(logs::LogsArgs),
    /// Execute a command in a running container
    Exec(exec::ExecArgs),
    /// Attach local standard input, output, and error streams to a running container
    Attach(run::AttachArgs),
    /// Return low-level information on Berth objects
    Inspect(view::InspectArgs),
    /// Display the running processes of a container
    Top(view::TopArgs),
    /// List port mappings or a specific mapping for the container
    Port(view::PortArgs),
    /// Rename a container
    Rename(manage::RenameArgs),
    /// Block until one or more containers stop, then print their exit codes
    Wait(manage::NamesArgs),
    /// Pause all processes within one or more containers
    Pause(manage::NamesArgs),
    /// Unpause all processes within one or more containers
    Unpause(manage::NamesArgs),
    /// Display a live stream of container(s) resource usage statistics
    Stats(stats::StatsArgs),
    /// Update configuration of one or more containers
    Update(update::UpdateArgs),
    /// Get real time events from the server
    Events(system::EventsArgs),
    /// Display system-wide information
    Info(system::InfoArgs),
    /// Generate the autocompletion script for the specified shell
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Copy files/folders between a container and the local filesystem
    Cp(cp::CpArgs),
    /// Create a new image from a container's changes
    Commit(snapshot::CommitArgs),
    /// Inspect changes to files or directories on a container's filesystem
    Diff(snapshot::DiffArgs),
    /// Export a container's filesystem as a tar archive
    Export(snapshot::ExportArgs),
    /// Manage containers
    #[command(subcommand)]
    Container(ContainerCommand),
    /// Build an image from a Dockerfile
    Build(build::BuildArgs),
    /// Download an image from a registry
    Pull(image::PullArgs),
    /// Upload an image to a registry
    Push(image::PushArgs),
    /// List images
    Images(image::ImagesArgs),
    /// Remove one or more images
    Rmi(image::RmiArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(image::TagArgs),
    /// Show the history of an image
    History(image::HistoryArgs),
    /// Save one or more images to a tar archive (streamed to STDOUT by default)
    Save(archive::SaveArgs),
    /// Load an image from a tar archive or STDIN
    Load(archive::LoadArgs),
    /// Import the contents from a tarball to create a filesystem image
    Import(archive::ImportArgs),
    /// Log in to a registry
    Login(image::LoginArgs),
    /// Log out from a registry
    Logout(image::LogoutArgs),
    /// Manage images
    #[command(subcommand)]
    Image(ImageCommand),
    /// Manage Berth
    #[command(subcommand)]
    System(SystemCommand),
    /// Manage volumes
    #[command(subcommand)]
    Volume(VolumeCommand),
    /// Manage networks
    #[command(subcommand)]
    Network(NetworkCommand),
    /// Show the Berth version information
    Version(system::VersionArgs),
}

#[derive(Subcommand, Debug)]
enum ContainerCommand {
    /// Create and run a new container from an image
    Run(run::RunArgs),
    /// Create a new container
    Create(run::CreateArgs),
    /// Start one or more stopped containers
    Start(run::StartArgs),
    /// Stop one or more running containers
    Stop(manage::StopArgs),
    /// Restart one or more containers
    Restart(manage::StopArgs),
    /// Kill one or more running containers
    Kill(manage::KillArgs),
    /// Remove one or more containers
    #[command(alias = "remove")]
    Rm(manage::RmArgs),
    /// List containers
    #[command(aliases = ["ps", "list"])]
    Ls(ps::PsArgs),
    /// Fetch the logs of a container
    Logs(logs::LogsArgs),
    /// Execute a command in a running container
    Exec(exec::ExecArgs),
    /// Attach local standard input, output, and error streams to a running container
    Attach(run::AttachArgs),
    /// Display detailed information on one or more containers
    Inspect(view::InspectArgs),
    /// Display the running processes of a container
    Top(view::TopArgs),
    /// List port mappings or a specific mapping for the container
    Port(view::PortArgs),
    /// Rename a container
    Rename(manage::RenameArgs),
    /// Block until one or more containers stop, then print their exit codes
    Wait(manage::NamesArgs),
    /// Pause all processes within one or more containers
    Pause(manage::NamesArgs),
    /// Unpause all processes within one or more containers
    Unpause(manage::NamesArgs),
    /// Remove all stopped containers
    Prune(manage::PruneArgs),
    /// Display a live stream of container(s) resource usage statistics
    Stats(stats::StatsArgs),
    /// Update configuration of one or more containers
    Update(update::UpdateArgs),
    /// Copy files/folders between a container and the local filesystem
    Cp(cp::CpArgs),
    /// Create a new image from a container's changes
    Commit(snapshot::CommitArgs),
    /// Inspect changes to files or directories on a container's filesystem
    Diff(snapshot::DiffArgs),
    /// Export a container's filesystem as a tar archive
    Export(snapshot::ExportArgs),
    /// Record a container's exit and release its shim (the shim runs this)
    #[command(hide = true)]
    Cleanup { id: String },
    /// Record a restart the shim made (the shim runs this): `die CODE` or `start`
    #[command(name = "shim-event", hide = true)]
    ShimEvent {
        id: String,
        action: String,
        exit_code: Option<i32>,
    },
}

#[derive(Subcommand, Debug)]
enum ImageCommand {
    /// Build an image from a Dockerfile
    Build(build::BuildArgs),
    /// List images
    #[command(alias = "list")]
    Ls(image::ImagesArgs),
    /// Download an image from a registry
    Pull(image::PullArgs),
    /// Upload an image to a registry
    Push(image::PushArgs),
    /// Remove one or more images
    #[command(alias = "remove")]
    Rm(image::RmiArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(image::TagArgs),
    /// Display detailed information on one or more images
    Inspect(image::InspectArgs),
    /// Show the history of an image
    History(image::HistoryArgs),
    /// Remove unused images
    Prune(image::PruneArgs),
    /// Save one or more images to a tar archive
    Save(archive::SaveArgs),
    /// Load an image from a tar archive or STDIN
    Load(archive::LoadArgs),
    /// Import the contents from a tarball to create a filesystem image
    Import(archive::ImportArgs),
}

#[derive(Subcommand, Debug)]
enum VolumeCommand {
    /// Create a volume
    Create(volume::CreateArgs),
    /// List volumes
    #[command(alias = "list")]
    Ls(volume::LsArgs),
    /// Display detailed information on one or more volumes
    Inspect(volume::InspectArgs),
    /// Remove one or more volumes
    #[command(alias = "remove")]
    Rm(volume::RmArgs),
    /// Remove unused local volumes
    Prune(volume::PruneArgs),
}

#[derive(Subcommand, Debug)]
enum NetworkCommand {
    /// Create a network
    Create(network::CreateArgs),
    /// List networks
    #[command(alias = "list")]
    Ls(network::LsArgs),
    /// Display detailed information on one or more networks
    Inspect(network::InspectArgs),
    /// Remove one or more networks
    #[command(alias = "remove")]
    Rm(network::RmArgs),
    /// Remove all unused networks
    Prune(network::PruneArgs),
    /// Connect a container to a network
    Connect(network::ConnectArgs),
    /// Disconnect a container from a network
    Disconnect(network::DisconnectArgs),
}

#[derive(Subcommand, Debug)]
enum SystemCommand {
    /// Show disk usage
    Df(system::DfArgs),
    /// Display system-wide information
    Info(system::InfoArgs),
    /// Get real time events from the server
    Events(system::EventsArgs),
    /// Remove unused data
    Prune(system::PruneArgs),
    /// Start the always and unless-stopped containers after a reboot (or write a unit that does)
    Boot(system::BootArgs),
}

async fn dispatch(engine: &mut Engine, cmd: Command) -> Result<()> {
    use ContainerCommand as C;
    match cmd {
        Command::Run(a) | Command::Container(C::Run(a)) => run::run(engine, &a).await,
        Command::Create(a) | Command::Container(C::Create(a)) => run::create(engine, &a).await,
        Command::Start(a) | Command::Container(C::Start(a)) => run::start(engine, &a).await,
        Command::Stop(a) | Command::Container(C::Stop(a)) => manage::stop(engine, &a).await,
        Command::Restart(a) | Command::Container(C::Restart(a)) => {
            manage::restart(engine, &a).await
        }
        Command::Kill(a) | Command::Container(C::Kill(a)) => manage::kill(engine, &a).await,
        Command::Rm(a) | Command::Container(C::Rm(a)) => manage::rm(engine, &a).await,
        Command::Ps(a) | Command::Container(C::Ls(a)) => ps::ps(engine, &a).await,
        Command::Logs(a) | Command::Container(C::Logs(a)) => logs::logs(engine, &a).await,
        Command::Exec(a) | Command::Container(C::Exec(a)) => exec::exec(engine, &a).await,
        Command::Attach(a) | Command::Container(C::Attach(a)) => run::attach_cmd(engine, &a).await,
        Command::Inspect(a) => view::inspect(engine, &a).await,
        Command::Container(C::Inspect(mut a)) => {
            a.kind = Some("container".into());
            view::inspect(engine, &a).await
        }
        Command::Top(a) | Command::Container(C::Top(a)) => view::top(engine, &a).await,
        Command::Port(a) | Command::Container(C::Port(a)) => view::port(engine, &a).await,
        Command::Rename(a) | Command::Container(C::Rename(a)) => manage::rename(engine, &a).await,
        Command::Wait(a) | Command::Container(C::Wait(a)) => manage::wait(engine, &a).await,
        Command::Pause(a) | Command::Container(C::Pause(a)) => {
            manage::pause(engine, &a, true).await
        }
        Command::Unpause(a) | Command::Container(C::Unpause(a)) => {
            manage::pause(engine, &a, false).await
        }
        Command::Container(C::Prune(a)) => manage::prune(engine, &a).await,
        Command::Stats(a) | Command::Container(C::Stats(a)) => stats::stats(engine, &a).await,
        Command::Update(a) | Command::Container(C::Update(a)) => update::update(engine, &a).await,
        Command::Events(a) | Command::System(SystemCommand::Events(a)) => {
            system::events(engine, &a).await
        }
        Command::Info(a) | Command::System(SystemCommand::Info(a)) => {
            system::info(engine, &a).await
        }
        Command::System(SystemCommand::Prune(a)) => system::prune(engine, &a).await,
        Command::System(SystemCommand::Boot(a)) => system::boot(engine, &a).await,
        Command::Completion { shell } => {
            // Whole, then written once: a reader that stops early (`| head`) is no error.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "berth", &mut script);
            let _ = std::io::Write::write_all(&mut std::io::stdout(), &script);
            Ok(())
        }
        Command::Cp(a) | Command::Container(C::Cp(a)) => cp::cp(engine, &a).await,
        Command::Commit(a) | Command::Container(C::Commit(a)) => snapshot::commit(engine, &a).await,
        Command::Diff(a) | Command::Container(C::Diff(a)) => snapshot::diff(engine, &a).await,
        Command::Export(a) | Command::Container(C::Export(a)) => snapshot::export(engine, &a).await,
        Command::Container(C::Cleanup { id }) => manage::cleanup(engine, &id).await,
        Command::Container(C::ShimEvent {
            id,
            action,
            exit_code,
        }) => {
            engine.shim_event(&id, &action, exit_code);
            Ok(())
        }
        Command::Build(a) | Command::Image(ImageCommand::Build(a)) => {
            build::build(engine, &a).await
        }
        Command::Pull(a) | Command::Image(ImageCommand::Pull(a)) => image::pull(engine, &a).await,
        Command::Push(a) | Command::Image(ImageCommand::Push(a)) => image::push(engine, &a).await,
        Command::Images(a) | Command::Image(ImageCommand::Ls(a)) => image::images(engine, &a).await,
        Command::Rmi(a) | Command::Image(ImageCommand::Rm(a)) => image::rmi(engine, &a).await,
        Command::Tag(a) | Command::Image(ImageCommand::Tag(a)) => image::tag(engine, &a).await,
        Command::History(a) | Command::Image(ImageCommand::History(a)) => {
            image::history(engine, &a).await
        }
        Command::Image(ImageCommand::Inspect(a)) => image::inspect(engine, &a).await,
        Command::Image(ImageCommand::Prune(a)) => image::prune(engine, &a).await,
        Command::Save(a) | Command::Image(ImageCommand::Save(a)) => archive::save(engine, &a).await,
        Command::Load(a) | Command::Image(ImageCommand::Load(a)) => archive::load(engine, &a).await,
        Command::Import(a) | Command::Image(ImageCommand::Import(a)) => {
            archive::import(engine, &a).await
        }
        Command::Login(a) => image::login(engine, &a).await,
        Command::Logout(a) => image::logout(engine, &a).await,
        Command::System(SystemCommand::Df(a)) => system::df(engine, &a).await,
        Command::Version(a) => system::version(engine, &a).await,
        Command::Volume(c) => volume_command(engine, c),
        Command::Network(c) => network_command(engine, c).await,
    }
}

fn volume_command(engine: &mut Engine, cmd: VolumeCommand) -> Result<()> {
    match cmd {
        VolumeCommand::Create(a) => volume::create(engine, &a),
        VolumeCommand::Ls(a) => volume::ls(engine, &a),
        VolumeCommand::Inspect(a) => volume::inspect(engine, &a),
        VolumeCommand::Rm(a) => volume::rm(engine, &a),
        VolumeCommand::Prune(a) => volume::prune(engine, &a),
    }
}

async fn network_command(engine: &mut Engine, cmd: NetworkCommand) -> Result<()> {
    match cmd {
        NetworkCommand::Create(a) => network::create(engine, &a).await,
        NetworkCommand::Ls(a) => network::ls(engine, &a).await,
        NetworkCommand::Inspect(a) => network::inspect(engine, &a).await,
        NetworkCommand::Rm(a) => network::rm(engine, &a).await,
        NetworkCommand::Prune(a) => network::prune(engine, &a).await,
        NetworkCommand::Connect(a) => network::connect(engine, &a).await,
        NetworkCommand::Disconnect(a) => network::disconnect(engine, &a).await,
    }
}

fn main() {
    // Docker's exit status for a command line it cannot read is 125, not clap's 2.
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if e.kind() == ErrorKind::InvalidSubcommand {
                // Docker's words and status for a command it does not have.
                let words: Vec<String> = std::env::args().skip(1).collect();
                let cmd = words
                    .iter()
                    .find(|w| !w.starts_with('-'))
                    .cloned()
                    .unwrap_or_default();
                eprintln!("berth: unknown command: berth {cmd}\n\nRun 'berth --help' for more information");
                std::process::exit(1);
            }
            let code = match e.kind() {
                ErrorKind::DisplayHelp
                | ErrorKind::DisplayVersion
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => 0,
                _ => 125,
            };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berth: {e}");
            std::process::exit(125);
        }
    };
    let mut engine = Engine::from_env();
    let result = rt.block_on(dispatch(&mut engine, cli.command));
    if let Err(e) = result {
        match e.downcast_ref::<Failure>() {
            Some(f) => {
                if !f.message.is_empty() {
                    eprintln!("{}", f.message);
                }
                std::process::exit(f.code);
            }
            None => {
                eprintln!("Error: {e:#}");
                std::process::exit(1);
            }
        }
    }
}
