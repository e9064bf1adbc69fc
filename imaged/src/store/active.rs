//! Writable snapshots for containers and build steps: an upper and a work directory on an
//! image's chain of unpacked layers, named by the caller's key (a container id).

use super::meta::{ActiveRecord, MetaError};
use super::snapshots::OverlayMount;
use super::{Store, StoreError};
use crate::digest::Digest;

#[derive(Debug, thiserror::Error)]
pub enum ActiveError {
    #[error("snapshot {0:?} already exists")]
    Exists(String),
    #[error("no snapshot {0:?}")]
    NotFound(String),
    #[error("snapshot {key:?}: {op} {}: {source}", .path.display())]
    Io {
        key: String,
        op: &'static str,
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Store {
    /// A writable snapshot `key` on the chain whose top is `parent` (None: an empty root).
    /// The directories are made before the record, so a crash leaves at most an unnamed
    /// directory, which the next start sweeps.
    pub fn prepare(
        &self,
        key: &str,
        parent: Option<&Digest>,
        image: Option<&Digest>,
    ) -> Result<OverlayMount, ActiveError> {
        if self.meta.active(key)?.is_some() {
            return Err(ActiveError::Exists(key.to_string()));
        }
        let dir = self.meta.write(|tx| tx.next_dir())?;
        self.snapshots
            .create_active(dir)
            .map_err(|source| ActiveError::Io {
                key: key.to_string(),
                op: "create",
                path: self.snapshots.dir(dir),
                source,
            })?;
        let rec = ActiveRecord {
            key: key.to_string(),
            parent: parent.cloned(),
            dir,
            image: image.cloned(),
        };
        let put = self.meta.write(|tx| -> Result<(), ActiveError> {
            // Checked again inside the transaction: two prepares of one key may race.
            if tx.active(key)?.is_some() {
                return Err(ActiveError::Exists(key.to_string()));
            }
            tx.put_active(&rec)?;
            Ok(())
        });
        if let Err(e) = put {
            let _ = self.snapshots.remove(dir);
            return Err(e);
        }
        self.mounts(key)
    }

    /// The overlay mount of snapshot `key`.
    pub fn mounts(&self, key: &str) -> Result<OverlayMount, ActiveError> {
        let a = self
            .meta
            .active(key)?
            .ok_or_else(|| ActiveError::NotFound(key.to_string()))?;
        let lowers = match &a.parent {
            Some(top) => self
                .meta
                .chain(top)?
                .iter()
                .map(|s| self.snapshots.fs(s.dir))
                .collect(),
            None => Vec::new(),
        };
        Ok(OverlayMount {
            lowers,
            upper: self.snapshots.fs(a.dir),
            work: self.snapshots.work(a.dir),
        })
    }

    pub fn active_record(&self, key: &str) -> Result<ActiveRecord, ActiveError> {
        self.meta
            .active(key)?
            .ok_or_else(|| ActiveError::NotFound(key.to_string()))
    }

    /// Remove snapshot `key` and the layers only it kept.
    pub fn remove_active(&self, key: &str) -> Result<(), ActiveError> {
        let (a, freed) = self
            .meta
            .write(|tx| tx.remove_active(key))?
            .ok_or_else(|| ActiveError::NotFound(key.to_string()))?;
        if let Err(e) = self.snapshots.remove(a.dir) {
            tracing::warn!(key, "remove snapshot directory: {e}");
        }
        self.remove_snapshot_dirs(&freed);
        Ok(())
    }
}
