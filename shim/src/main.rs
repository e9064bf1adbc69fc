//! containerd-shim-berth-v2: containerd's shim v2 Task API for one container, driving a
//! runc-compatible runtime. Synchronous by design: a handful of threads and no async
//! runtime keep an idle shim small.

mod args;
mod attach;
mod bootstrap;
mod context;
mod events;
mod footprint;
mod health;
mod jsonlog;
mod metrics;
mod mount;
mod oom;
mod options;
mod process;
mod reaper;
mod restart;
mod runtime;
mod service;
mod settings;
mod stats;
mod status;
mod stdio;
mod threads;
mod timefmt;

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use nix::sys::signal::Signal;

use crate::args::{Action, Args, Command};
use crate::context::ShimContext;
use crate::service::{Service, TaskService};

fn main() {
    // One malloc arena for all threads: per-thread arenas would each keep pages resident
    // in a process that is idle nearly all the time.
    // SAFETY: mallopt only sets an allocator tunable; called before any thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
    // Exit statuses as with Go's flag package, which containerd's own shims use: 0 after
    // the usage asked for, 2 for a command line that cannot be read.
    let args = match Command::parse(std::env::args().skip(1)) {
        Ok(Command::Run(args)) => args,
        Ok(Command::Help) => {
            eprint!("{}", args::usage());
            std::process::exit(0);
        }
        Ok(Command::Version) => {
            println!("{}", args::version());
            std::process::exit(0);
        }
        Err(e) => {
            eprintln!("{}: {e:#} (-help lists the flags)", args::NAME);
            std::process::exit(2);
        }
    };
    let result = match args.action {
        Some(Action::Start) => bootstrap::start(&args),
        Some(Action::Delete) => bootstrap::delete(&args),
        None => serve(&args, ShimContext::new(&args.id, &args.namespace)),
    };
    if let Err(e) = result {
        eprintln!("{}: {e:#}", args::NAME);
        std::process::exit(1);
    }
}

/// containerd reads the shim's log from the FIFO `log` in the bundle when it made one;
/// opened non-blocking, since a shim must never stall because nobody reads its log.
/// Without containerd (Berth's CLI) the log goes to `shim.log` in the bundle.
fn open_log(bundle: &Path) -> Option<File> {
    let fifo = bundle.join("log");
    if std::fs::metadata(&fifo).is_ok_and(|m| m.file_type().is_fifo()) {
        return OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(fifo)
            .ok();
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(bundle.join("shim.log"))
        .ok()
}

fn init_logging(bundle: &Path, debug: bool) {
    let level = if debug {
        tracing::Level::DEBUG
    } else {
        tracing::Level::INFO
    };
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_ansi(false)
        .with_target(false);
    match open_log(bundle) {
        Some(f) => builder.with_writer(Mutex::new(f)).init(),
        None => builder.with_writer(std::io::sink).init(),
    }
}

fn serve(args: &Args, ctx: ShimContext) -> Result<()> {
    // Block the signals we handle before any thread exists, so every thread inherits the
    // mask and only the sigwait below takes them.
    let signals = reaper::handled_signals();
    signals.thread_block().context("block signals")?;
    let bundle = bootstrap::bundle_dir(args)?;
    init_logging(&bundle, args.debug);
    reaper::become_subreaper().context("become child subreaper")?;
    check_listener()?;
    // Kept now: containerd removes the bundle before it asks the shim to shut down.
    let socket = listener_path();

    let publisher = events::Publisher::new(&args.publish_binary, &args.address, &ctx.namespace)?;
    let service = Service::new(ctx, &bundle, publisher)?;
    let mut server = ttrpc::Server::new()
        .add_listener(bootstrap::LISTEN_FD)
        .context("use the listening socket")?
        .register_service(task_methods(service))
        .set_thread_count_min(1)
        .set_thread_count_default(2)
        .set_thread_count_max(64);
    footprint::start_trimmer()?;
    reaper::mark_loop_running();
    server.start().context("start the ttrpc server")?;
    tracing::info!(id = args.id, "serving");

    loop {
        match signals.wait() {
            Ok(Signal::SIGCHLD) => {
                reaper::global().reap_all();
                footprint::activity();
            }
            Ok(Signal::SIGUSR1) => break,
            Ok(sig) => tracing::debug!("ignoring {sig}"),
            Err(e) => tracing::warn!("sigwait: {e}"),
        }
    }
    if let Some(path) = &socket {
        let _ = std::fs::remove_file(path);
    }
    std::process::exit(0);
}

fn check_listener() -> Result<()> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes one stat into the buffer we own, and reports failure by return.
    let rc = unsafe { libc::fstat(bootstrap::LISTEN_FD, st.as_mut_ptr()) };
    // SAFETY: fstat succeeded, so the buffer is initialised.
    if rc != 0 || unsafe { st.assume_init() }.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        bail!(
            "no listening socket on fd {}: run the shim through its `start` action",
            bootstrap::LISTEN_FD
        );
    }
    Ok(())
}

fn listener_path() -> Option<PathBuf> {
    use nix::sys::socket::{getsockname, UnixAddr};
    let addr: UnixAddr = getsockname(bootstrap::LISTEN_FD).ok()?;
    addr.path().map(Path::to_path_buf)
}

/// The Task service under both names: containerd 1.6 and 1.7 call `containerd.task.v2.Task`,
/// 2.x `containerd.task.v3.Task`; the messages are the same.
fn task_methods(
    service: Arc<Service>,
) -> HashMap<String, Box<dyn ttrpc::MethodHandler + Send + Sync>> {
    let task: Arc<dyn containerd_shim_protos::Task + Send + Sync> = Arc::new(TaskService(service));
    let mut methods = containerd_shim_protos::create_task(task.clone());
    for (name, handler) in containerd_shim_protos::create_task(task) {
        methods.insert(
            name.replace("/containerd.task.v3.Task/", "/containerd.task.v2.Task/"),
            handler,
        );
    }
    methods
}
