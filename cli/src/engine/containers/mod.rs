//! Containers: records (`record`, `store`), their live state (`state`), the OCI bundle made
//! from an image config and the flags (`bundle`), the container's root (`rootfs`), the shim
//! that runs each one (`shim`) and what ties them together (`lifecycle`).

pub mod bundle;
pub mod copy;
pub mod lifecycle;
pub mod names;
pub mod record;
pub mod rootfs;
pub mod shim;
pub mod state;
pub mod store;
pub mod wiring;

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("No such container: {0}")]
    NoSuch(String),
    #[error("multiple containers found with provided prefix: {0}")]
    Ambiguous(String),
    #[error("Conflict. The container name \"/{name}\" is already in use by container \"{id}\". You have to remove (or rename) that container to be able to reuse that name.")]
    NameInUse { name: String, id: String },
    #[error("Invalid container name ({0}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")]
    BadName(String),
    #[error("container {0} is {1}")]
    WrongState(String, &'static str),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}: corrupt record: {1}")]
    Corrupt(PathBuf, String),
    #[error("shim {op}: {message}")]
    Shim { op: &'static str, message: String },
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Daemon(String),
}

impl ContainerError {
    pub fn io(path: &Path, source: std::io::Error) -> ContainerError {
        ContainerError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

impl From<tonic::Status> for ContainerError {
    fn from(s: tonic::Status) -> Self {
        ContainerError::Daemon(s.message().to_string())
    }
}
