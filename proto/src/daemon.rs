//! What both daemons do around their service: one instance per run directory (a held
//! lock), a unix socket that replaces a dead instance's, a clean stop on SIGTERM, and logs
//! to stderr and a file under the run directory.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use tokio_stream::wrappers::UnixListenerStream;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{what} {}: {source}", .path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("another {daemon} is running for {} (lock {} is held)", .run.display(), .lock.display())]
    Running {
        daemon: String,
        run: PathBuf,
        lock: PathBuf,
    },
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> DaemonError {
    let path = path.to_path_buf();
    move |source| DaemonError::Io { what, path, source }
}

/// Take `run/<name>.lock` for the life of the returned value: a second instance for the
/// same run directory fails here instead of stealing the first one's socket.
pub fn lock(run: &Path, daemon: &str, name: &str) -> Result<Flock<File>, DaemonError> {
    std::fs::create_dir_all(run).map_err(io("create", run))?;
    let path = run.join(format!("{name}.lock"));
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io("open", &path))?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|_| DaemonError::Running {
        daemon: daemon.to_string(),
        run: run.to_path_buf(),
        lock: path,
    })
}

/// Listen on `socket`. Call it with the lock held: a socket file still there belongs to an
/// instance that died, and is replaced.
pub fn listen(socket: &Path) -> Result<UnixListenerStream, DaemonError> {
    let _ = std::fs::remove_file(socket);
    let l = tokio::net::UnixListener::bind(socket).map_err(io("listen on", socket))?;
    Ok(UnixListenerStream::new(l))
}

/// Resolves on SIGTERM or SIGINT: the future a server stops on.
pub async fn stopped() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("install a SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutting down");
}

/// Log to stderr and to `run/<name>.log` (`BERTH_LOG` takes an env-filter spec).
pub fn init_logging(run: &Path, name: &str, debug: bool) -> Result<(), DaemonError> {
    use tracing_subscriber::prelude::*;
    let level = if debug { "debug" } else { "info" };
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG").unwrap_or_else(|_| level.into())
    };
    std::fs::create_dir_all(run).map_err(io("create", run))?;
    let path = run.join(format!("{name}.log"));
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(io("open log", &path))?;
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
