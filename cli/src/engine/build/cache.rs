//! The persistent build cache: `$BERTH_ROOT/build-cache/index/<key>.json` holds the image a
//! step's key produced. An entry is written (temp file, fsync, rename) only after imaged has
//! committed the image it names, so a build killed at any point leaves either no entry or a
//! complete one; an entry whose image was removed since is a miss.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    /// `sha256:...` of the step's image.
    pub image_id: String,
}

pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    pub fn new(root: &Path) -> Cache {
        Cache {
            dir: root.join("build-cache").join("index"),
        }
    }

    /// Where `RUN --mount=type=cache,id=ID` keeps its files between builds.
    pub fn mount_dir(root: &Path, id: &str) -> PathBuf {
        // Ids are free text (`/root/.cache/go-build`): hex of their digest names the dir.
        let name = crate::build::cache::cache_key("", id, &Default::default(), None);
        root.join("build-cache").join("mounts").join(name)
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.json"))
    }

    pub fn get(&self, key: &str) -> Option<Entry> {
        let bytes = fs::read(self.path(key)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    pub fn put(&self, key: &str, entry: &Entry) -> std::io::Result<()> {
        fs::create_dir_all(&self.dir)?;
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
        tmp.write_all(&serde_json::to_vec(entry).expect("json"))?;
        tmp.as_file().sync_all()?;
        tmp.persist(self.path(key)).map_err(|e| e.error)?;
        // The rename itself must survive a crash too.
        fs::File::open(&self.dir)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_leave_no_temp_files() {
        let d = tempfile::tempdir().unwrap();
        let c = Cache::new(d.path());
        assert!(c.get("k").is_none());
        c.put(
            "k",
            &Entry {
                image_id: "sha256:00".into(),
            },
        )
        .unwrap();
        assert_eq!(c.get("k").unwrap().image_id, "sha256:00");
        let files: Vec<_> = fs::read_dir(d.path().join("build-cache/index"))
            .unwrap()
            .flatten()
            .collect();
        assert_eq!(files.len(), 1);
    }
}
