//! The executor of `berth build`: runs the plan the front half (`crate::build`) makes.
//!
//! - [`context`]: the build context (a directory, or a tar or Dockerfile on stdin), its
//!   `.dockerignore`, source resolution that never leaves the context, content digests.
//! - [`fsops`]: writing into a mounted snapshot through `openat2(RESOLVE_IN_ROOT)`, so that a
//!   symlink in the image can never send a COPY onto the host.
//! - [`cache`]: the persistent cache index (step key → image id), one file per key written
//!   temp+rename, written only once the image it names is committed.
//! - [`executor`]: stages in waves (independent stages concurrently), each step from cache
//!   or run; a step's scratch space (`Work`) and the sweep after a killed build.
//! - `run`: RUN through `berth-runtime run` on an active snapshot, with its network and
//!   mounts; `copy`: COPY/ADD into one; `meta`: metadata steps as config changes committed
//!   config-only (history `empty_layer`, as Docker's classic builder writes them).
//!
//! Output is the command's business: the executor reports [`Event`]s.

pub mod cache;
pub mod context;
mod copy;
pub mod executor;
pub mod fsops;
mod meta;
mod run;

use std::collections::BTreeMap;
use std::sync::Arc;

pub use context::Context;
pub use executor::build;

/// What the user asked of one build.
#[derive(Debug, Clone, Default)]
pub struct BuildRequest {
    /// The Dockerfile's name for messages (`Dockerfile`, `docker/Dockerfile.dev`).
    pub dockerfile_name: String,
    pub dockerfile: String,
    pub options: crate::build::BuildOptions,
    /// `-t`, each checked as a reference before anything runs.
    pub tags: Vec<String>,
    pub no_cache: bool,
    /// `--pull`: fetch base images even when present.
    pub pull: bool,
    /// `--label`: added to the final image as a last LABEL step, as Docker does.
    pub labels: BTreeMap<String, String>,
    /// `--network`: `default` (a netd sandbox on `bridge`), `none`, `host`, or a network name.
    pub network: String,
}

/// What the executor reports as it goes; the command prints it.
#[derive(Debug, Clone)]
pub enum Event {
    /// `Step 3/7 : RUN make`.
    Step {
        number: usize,
        total: usize,
        text: String,
    },
    /// The step's result came from the cache.
    UsingCache,
    /// A RUN's container started (its short id).
    Running(String),
    /// Output of a RUN.
    Output(Vec<u8>),
    /// A RUN's container is gone.
    Removed(String),
    /// The step's image (full id).
    Image(String),
    /// Informational lines (pull progress, warnings).
    Message(String),
}

pub type Reporter = Arc<dyn Fn(Event) + Send + Sync>;

/// The outcome of a build.
#[derive(Debug, Clone)]
pub struct Built {
    /// `sha256:...` of the final image.
    pub image_id: String,
    pub steps: usize,
    pub cached: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A Dockerfile that cannot be parsed or planned (names file and line).
    #[error("{0}")]
    Dockerfile(#[from] crate::build::Error),
    /// A step that failed, with the file and line of its instruction.
    #[error("{file}:{line}: {message}")]
    Step {
        file: String,
        line: usize,
        message: String,
    },
    /// A RUN whose command exited non-zero (Docker's words).
    #[error("{file}:{line}: The command '{command}' returned a non-zero code: {code}")]
    RunFailed {
        file: String,
        line: usize,
        command: String,
        code: i32,
    },
    #[error("{0}")]
    Context(String),
    #[error("{0}")]
    Daemon(String),
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

impl BuildError {
    pub fn io(path: &std::path::Path, source: std::io::Error) -> BuildError {
        BuildError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

impl From<tonic::Status> for BuildError {
    fn from(s: tonic::Status) -> Self {
        BuildError::Daemon(s.message().to_string())
    }
}
