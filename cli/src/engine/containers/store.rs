//! Container records on disk: `$BERTH_ROOT/containers/<id>/record.json`, each written to a
//! temp file and renamed, so a `kill -9` leaves the old record or the new one. Changes that
//! must see every record at once (a new name, a rename, a removal) hold `containers/.lock`.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use super::record::Record;
use super::ContainerError;

pub struct Store {
    dir: PathBuf,
}

/// The store's lock, held until dropped.
pub struct Locked {
    _lock: Flock<File>,
}

impl Store {
    pub fn new(root: &Path) -> Store {
        Store {
            dir: root.join("containers"),
        }
    }

    pub fn dir(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    pub fn lock(&self) -> Result<Locked, ContainerError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| ContainerError::io(&self.dir, e))?;
        let path = self.dir.join(".lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| ContainerError::io(&path, e))?;
        let lock = Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, e)| ContainerError::io(&path, e.into()))?;
        Ok(Locked { _lock: lock })
    }

    /// One container's lock: a start, the shim's exit command and a removal never
    /// interleave (the exit command of an old run must not shut a new run's shim down).
    pub fn lock_container(&self, id: &str) -> Result<Locked, ContainerError> {
        let dir = self.dir(id);
        let path = dir.join(".lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => ContainerError::NoSuch(id.to_string()),
                _ => ContainerError::io(&path, e),
            })?;
        let lock = Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, e)| ContainerError::io(&path, e.into()))?;
        Ok(Locked { _lock: lock })
    }

    /// Write the record: temp file, fsync, rename. Durable across a power cut.
    pub fn save(&self, rec: &Record) -> Result<(), ContainerError> {
        self.write(rec, true)
    }

    /// Write the record: temp file and rename, without the fsync. As safe as `save` against
    /// `kill -9` and a second command (each sees the old record or the new one), but a power
    /// cut may lose it: for the steps of `create` before its last, durable, `save`.
    pub fn save_draft(&self, rec: &Record) -> Result<(), ContainerError> {
        self.write(rec, false)
    }

    fn write(&self, rec: &Record, durable: bool) -> Result<(), ContainerError> {
        let dir = self.dir(&rec.id);
        std::fs::create_dir_all(&dir).map_err(|e| ContainerError::io(&dir, e))?;
        let path = dir.join("record.json");
        let tmp = dir.join(".record.json.tmp");
        let text = serde_json::to_vec_pretty(rec).expect("a record serialises");
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(&text)?;
            if durable {
                nix::unistd::fsync(f.as_fd())?;
            }
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|e| ContainerError::io(&path, e))
    }

    /// The right to remove container `id`, held until dropped. An attached `run --rm` holds
    /// it from start to removal; the shim's exit command (`container cleanup`) waits for it
    /// (`wait_removal_claim`) before removing, so it does not do the same work at the same
    /// moment, and takes over if that command dies.
    pub fn claim_removal(&self, id: &str) -> Result<Locked, ContainerError> {
        let path = self.dir(id).join("remove.lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| ContainerError::io(&path, e))?;
        let lock = Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, e)| ContainerError::io(&path, e.into()))?;
        Ok(Locked { _lock: lock })
    }

    /// Wait until no command holds the right to remove `id`; the lock, when there was one
    /// to take. Never creates the file: a removal under way could then not empty the
    /// directory.
    pub fn wait_removal_claim(&self, id: &str) -> Result<Option<Locked>, ContainerError> {
        let path = self.dir(id).join("remove.lock");
        let file = match File::options().write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(ContainerError::io(&path, e)),
        };
        let lock = Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, e)| ContainerError::io(&path, e.into()))?;
        Ok(Some(Locked { _lock: lock }))
    }

    pub fn load(&self, id: &str) -> Result<Record, ContainerError> {
        let path = self.dir(id).join("record.json");
        let text = std::fs::read(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ContainerError::NoSuch(id.to_string()),
            _ => ContainerError::io(&path, e),
        })?;
        serde_json::from_slice(&text).map_err(|e| ContainerError::Corrupt(path, e.to_string()))
    }

    /// Every record, newest first (as `ps` lists them). A directory without a readable
    /// record (a create that was killed before its first write) is skipped.
    pub fn all(&self) -> Vec<Record> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out: Vec<Record> = entries
            .flatten()
            .filter(|e| e.file_name().len() == 64)
            .filter_map(|e| self.load(&e.file_name().to_string_lossy()).ok())
            .collect();
        out.sort_by(|a, b| b.created.cmp(&a.created));
        out
    }

    /// A container by full id, unique id prefix or name (with or without Docker's `/`).
    pub fn resolve(&self, what: &str) -> Result<Record, ContainerError> {
        let name = what.strip_prefix('/').unwrap_or(what);
        if name.is_empty() {
            return Err(ContainerError::NoSuch(what.to_string()));
        }
        let all = self.all();
        if let Some(r) = all.iter().find(|r| r.id == name || r.name == name) {
            return Ok(r.clone());
        }
        let mut hits = all.iter().filter(|r| r.id.starts_with(name));
        match (hits.next(), hits.next()) {
            (Some(r), None) => Ok(r.clone()),
            (Some(_), Some(_)) => Err(ContainerError::Ambiguous(what.to_string())),
            _ => Err(ContainerError::NoSuch(what.to_string())),
        }
    }

    pub fn name_taken(&self, name: &str) -> Option<String> {
        self.all()
            .into_iter()
            .find(|r| r.name == name)
            .map(|r| r.id)
    }

    /// Drop the record last, after everything it points at is gone.
    pub fn remove(&self, id: &str) -> Result<(), ContainerError> {
        let dir = self.dir(id);
        // A shim on its way out (it lingers after Shutdown) may still write in its bundle:
        // a file made while the tree is removed is taken on the next pass.
        let mut tries = 0;
        loop {
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::DirectoryNotEmpty && tries < 3 => {
                    tries += 1;
                }
                Err(e) => return Err(ContainerError::io(&dir, e)),
            }
        }
    }
}
