//! Volumes of the `local` driver: `$BERTH_ROOT/volumes/<name>/_data` with the volume's
//! metadata beside it in `volume.json`.
//!
//! Every change (create, remove, prune, populate) holds an exclusive `flock` on
//! `volumes/.lock`, taken through [`Volumes::lock`]; the operations that change things live
//! on the guard, so a caller that must keep the lock across several steps (the container
//! engine checking a volume and recording its use) cannot deadlock by locking twice.
//! Reads take no lock: a volume appears and disappears by one `rename`, so a reader sees it
//! whole or not at all. Names never start with `.`, so the lock file and the staging
//! directories (`.new-*`, `.gone-*`) cannot collide with a volume.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::{CStr, CString, OsStr};
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, Flock, FlockArg, OFlag};
use nix::sys::stat::{fchmod, fchmodat, fstat, fstatat, mkdirat, mknodat, utimensat};
use nix::sys::stat::{FchmodatFlags, FileStat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchownat, linkat, symlinkat, Gid, Uid};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The label Docker (≥ 23) puts on anonymous volumes; `volume prune` without `--all`
/// removes only volumes carrying it.
pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";

/// The `local` driver's options (`-o`), as Docker's accepts them on Linux.
const LOCAL_OPTIONS: [&str; 3] = ["type", "device", "o"];

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("create {0}: \"{0}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path")]
    InvalidName(String),
    #[error("get {0}: no such volume")]
    NotFound(String),
    #[error("remove {name}: volume is in use - [{}]", users.join(", "))]
    InUse { name: String, users: Vec<String> },
    #[error(
        "create {name}: error looking up volume plugin {driver}: plugin \"{driver}\" not found"
    )]
    UnknownDriver { name: String, driver: String },
    #[error("create {name}: invalid option: \"{key}\"")]
    BadOption { name: String, key: String },
    #[error("invalid filter '{0}'")]
    BadFilter(String),
    #[error("containers using volume {name}: {source}")]
    Users {
        name: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("error while mounting volume '{name}': {source}")]
    Mount {
        name: String,
        #[source]
        source: io::Error,
    },
    #[error("volume {name}: metadata: {source}")]
    Meta {
        name: String,
        #[source]
        source: serde_json::Error,
    },
}

type Result<T, E = VolumeError> = std::result::Result<T, E>;

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> VolumeError + 'a {
    move |source| VolumeError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

fn nix_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(Errno) -> VolumeError + 'a {
    move |e| VolumeError::Io {
        what,
        path: path.to_path_buf(),
        source: io::Error::from(e),
    }
}

/// Who uses a volume: the container engine answers with the ids of the containers (in
/// any state) whose mounts name it. `remove` and `prune` refuse or skip such volumes.
pub trait VolumeUsers {
    fn users(&self, volume: &str) -> Result<Vec<String>, Box<dyn std::error::Error + Send + Sync>>;
}

impl<F: Fn(&str) -> Vec<String>> VolumeUsers for F {
    fn users(&self, volume: &str) -> Result<Vec<String>, Box<dyn std::error::Error + Send + Sync>> {
        Ok(self(volume))
    }
}

/// No containers exist (yet): every volume is unused.
pub struct NoUsers;

impl VolumeUsers for NoUsers {
    fn users(&self, _: &str) -> Result<Vec<String>, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Vec::new())
    }
}

/// What `volume.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Meta {
    name: String,
    /// RFC 3339, UTC, whole seconds (Docker's `CreatedAt`).
    created_at: String,
    driver: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    options: BTreeMap<String, String>,
    #[serde(default)]
    anonymous: bool,
}

/// One volume as `volume inspect` and `volume ls` show it.
#[derive(Debug, Clone, PartialEq)]
pub struct Volume {
    pub name: String,
    pub driver: String,
    pub created_at: String,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
    pub anonymous: bool,
    /// `volumes/<name>/_data`: what a container mounts.
    pub mountpoint: PathBuf,
}

impl Volume {
    /// Docker's `volume inspect` object.
    pub fn inspect(&self) -> Value {
        json!({
            "CreatedAt": self.created_at,
            "Driver": self.driver,
            "Labels": self.labels,
            "Mountpoint": self.mountpoint.display().to_string(),
            "Name": self.name,
            "Options": self.options,
            "Scope": "local",
        })
    }
}

/// What `volume create` asks for. `name: None` makes an anonymous volume.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub name: Option<String>,
    /// Empty or `local`: the only driver.
    pub driver: String,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
}

#[derive(Debug, Default)]
pub struct PruneReport {
    pub deleted: Vec<String>,
    /// Bytes of the removed volumes' files.
    pub reclaimed: u64,
}

/// A `label=`/`label!=` condition of `volume ls` and `volume prune`.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelFilter {
    pub key: String,
    pub value: Option<String>,
    pub negate: bool,
}

impl LabelFilter {
    /// `key` or `key=value` (the part after `label=`).
    pub fn parse(spec: &str, negate: bool) -> LabelFilter {
        let (key, value) = match spec.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (spec.to_string(), None),
        };
        LabelFilter { key, value, negate }
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let hit = match (labels.get(&self.key), &self.value) {
            (Some(_), None) => true,
            (Some(v), Some(want)) => v == want,
            (None, _) => false,
        };
        hit != self.negate
    }
}

/// Docker's rule for local volume names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() >= 2
        && b[0].is_ascii_alphanumeric()
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// The volumes of one engine root.
#[derive(Debug, Clone)]
pub struct Volumes {
    dir: PathBuf,
    /// The run root whose events log gets `volume create`/`destroy` (none: not logged).
    events: Option<PathBuf>,
}

/// The exclusive lock on the volumes; changes go through it. Dropping it unlocks.
pub struct Locked<'a> {
    volumes: &'a Volumes,
    _lock: Flock<File>,
}

impl Volumes {
    /// The volumes under `root` (`$BERTH_ROOT`).
    pub fn new(root: &Path) -> Volumes {
        Volumes {
            dir: root.join("volumes"),
            events: None,
        }
    }

    /// Log `volume create` and `volume destroy` to the events log under `run`.
    pub fn with_events(mut self, run: &Path) -> Volumes {
        self.events = Some(run.to_path_buf());
        self
    }

    fn emit(&self, action: &str, name: &str) {
        if let Some(run) = &self.events {
            let mut a = BTreeMap::new();
            a.insert("driver".to_string(), "local".to_string());
            crate::engine::events::emit(
                run,
                &crate::engine::events::Event::new("volume", action, name, a),
            );
        }
    }

    fn data_dir(&self, name: &str) -> PathBuf {
        self.dir.join(name).join("_data")
    }

    /// Where volume `name`'s content lives (`volumes/<name>/_data`); `NotFound` for a
    /// volume that does not exist, so a name never leads outside `volumes/`.
    pub fn mountpoint(&self, name: &str) -> Result<PathBuf> {
        Ok(self.get(name)?.mountpoint)
    }

    /// See [`Locked::mount`].
    pub fn mount(&self, name: &str) -> Result<PathBuf> {
        self.lock()?.mount(name)
    }

    /// Waits for the exclusive lock, then clears what an interrupted change left behind.
    pub fn lock(&self) -> Result<Locked<'_>> {
        // 0701 as Docker's: others may reach a volume's _data by its path (a user
        // namespaced container must) but not list the names.
        if !self.dir.is_dir() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o701)
                .create(&self.dir)
                .map_err(io_err("create", &self.dir))?;
        }
        let path = self.dir.join(".lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err("open", &path))?;
        let lock = Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, e)| nix_err("lock", &path)(e))?;
        let locked = Locked {
            volumes: self,
            _lock: lock,
        };
        locked.sweep();
        Ok(locked)
    }

    fn meta_path(&self, name: &str) -> PathBuf {
        self.dir.join(name).join("volume.json")
    }

    /// Volume `name`, or `NotFound`.
    pub fn get(&self, name: &str) -> Result<Volume> {
        if !valid_name(name) {
            return Err(VolumeError::NotFound(name.into()));
        }
        let path = self.meta_path(name);
        let meta = match fs::read(&path) {
            Ok(b) => serde_json::from_slice::<Meta>(&b).map_err(|source| VolumeError::Meta {
                name: name.into(),
                source,
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // A directory with _data but no metadata (made by hand, or by an older
                // layout) is still a volume, as Docker's local driver sees it.
                let data = self.data_dir(name);
                let m = fs::metadata(&data).map_err(|e| match e.kind() {
                    io::ErrorKind::NotFound => VolumeError::NotFound(name.into()),
                    _ => io_err("stat", &data)(e),
                })?;
                Meta {
                    name: name.into(),
                    created_at: rfc3339(m.modified().unwrap_or(SystemTime::UNIX_EPOCH)),
                    driver: "local".into(),
                    labels: BTreeMap::new(),
                    options: BTreeMap::new(),
                    anonymous: false,
                }
            }
            Err(e) => return Err(io_err("read", &path)(e)),
        };
        Ok(self.volume(meta))
    }

    fn volume(&self, m: Meta) -> Volume {
        Volume {
            mountpoint: self.data_dir(&m.name),
            anonymous: m.anonymous || m.labels.contains_key(ANONYMOUS_LABEL),
            name: m.name,
            driver: m.driver,
            created_at: m.created_at,
            labels: m.labels,
            options: m.options,
        }
    }

    /// Every volume, in no particular order.
    pub fn list(&self) -> Result<Vec<Volume>> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("read", &self.dir)(e)),
        };
        let mut out = Vec::new();
        for e in entries {
            let e = e.map_err(io_err("read", &self.dir))?;
            let Some(name) = e.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if !valid_name(&name) {
                continue;
            }
            match self.get(&name) {
                Ok(v) => out.push(v),
                // Removed while we listed.
                Err(VolumeError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Bytes of the regular files in the volume, each inode counted once (`du`'s
    /// apparent size, as Docker's `system df -v` and prune count).
    pub fn size(&self, name: &str) -> u64 {
        let mut seen = HashSet::new();
        tree_size(&self.data_dir(name), &mut seen)
    }

    pub fn create(&self, opts: &CreateOptions) -> Result<Volume> {
        self.lock()?.create(opts)
    }

    /// A new anonymous volume (64-hex name, Docker's anonymous label), as `run -v /path`
    /// and an image's VOLUME make.
    pub fn create_anonymous(&self, labels: BTreeMap<String, String>) -> Result<Volume> {
        self.lock()?.create(&CreateOptions {
            name: None,
            labels,
            ..Default::default()
        })
    }

    pub fn remove(&self, name: &str, force: bool, users: &dyn VolumeUsers) -> Result<()> {
        self.lock()?.remove(name, force, users)
    }

    pub fn prune(
        &self,
        all: bool,
        labels: &[LabelFilter],
        users: &dyn VolumeUsers,
    ) -> Result<PruneReport> {
        self.lock()?.prune(all, labels, users)
    }

    pub fn populate_from(&self, name: &str, source: &Path) -> Result<bool> {
        self.lock()?.populate_from(name, source)
    }

    pub fn populate_from_rootfs(&self, name: &str, rootfs: &Path, target: &Path) -> Result<bool> {
        self.lock()?.populate_from_rootfs(name, rootfs, target)
    }
}

impl Locked<'_> {
    fn dir(&self) -> &Path {
        &self.volumes.dir
    }

    /// Staging directories of a create or remove that was killed half-way.
    fn sweep(&self) {
        let Ok(entries) = fs::read_dir(self.dir()) else {
            return;
        };
        for e in entries.flatten() {
            let n = e.file_name();
            let n = n.to_string_lossy();
            if n.starts_with(".new-") || n.starts_with(".gone-") {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }

    /// Creates the volume, or returns the existing one of that name unchanged, as Docker
    /// does (its labels and options are not compared).
    pub fn create(&self, opts: &CreateOptions) -> Result<Volume> {
        let (name, anonymous) = match &opts.name {
            Some(n) if !n.is_empty() => (n.clone(), false),
            _ => (random_hex(32), true),
        };
        if !valid_name(&name) {
            return Err(VolumeError::InvalidName(name));
        }
        if !opts.driver.is_empty() && opts.driver != "local" {
            return Err(VolumeError::UnknownDriver {
                name,
                driver: opts.driver.clone(),
            });
        }
        if let Some(key) = opts
            .options
            .keys()
            .find(|k| !LOCAL_OPTIONS.contains(&k.as_str()))
        {
            return Err(VolumeError::BadOption {
                name,
                key: key.clone(),
            });
        }
        match self.volumes.get(&name) {
            Ok(v) => return Ok(v),
            Err(VolumeError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        let mut labels = opts.labels.clone();
        if anonymous {
            labels.entry(ANONYMOUS_LABEL.into()).or_default();
        }
        let meta = Meta {
            name: name.clone(),
            created_at: rfc3339(SystemTime::now()),
            driver: "local".into(),
            labels,
            options: opts.options.clone(),
            anonymous,
        };
        // Built aside and renamed into place, so a crash leaves either no volume or a
        // whole one (the staging dir is swept by the next lock).
        let stage = self
            .dir()
            .join(format!(".new-{name}-{}", std::process::id()));
        let result = (|| {
            fs::DirBuilder::new()
                .mode(0o701)
                .create(&stage)
                .map_err(io_err("create", &stage))?;
            let data = stage.join("_data");
            fs::DirBuilder::new()
                .mode(0o755)
                .create(&data)
                .map_err(io_err("create", &data))?;
            let bytes = serde_json::to_vec_pretty(&meta).map_err(|source| VolumeError::Meta {
                name: name.clone(),
                source,
            })?;
            write_synced(&stage.join("volume.json"), &bytes)?;
            sync_dir(&stage)?;
            let dest = self.dir().join(&name);
            fs::rename(&stage, &dest).map_err(io_err("rename", &dest))?;
            sync_dir(self.dir())
        })();
        if let Err(e) = result {
            let _ = fs::remove_dir_all(&stage);
            return Err(e);
        }
        self.volumes.emit("create", &name);
        Ok(self.volumes.volume(meta))
    }

    /// What a container about to mount the volume calls: for a volume made with
    /// `-o type=… -o device=… [-o o=…]`, mounts that on `_data` (once; later calls see it
    /// mounted), as Docker's local driver does. Returns the path to bind into the
    /// container. It stays mounted until the volume is removed.
    pub fn mount(&self, name: &str) -> Result<PathBuf> {
        let v = self.volumes.get(name)?;
        let (Some(fstype), Some(device)) = (v.options.get("type"), v.options.get("device")) else {
            return Ok(v.mountpoint);
        };
        if is_mountpoint(&v.mountpoint) {
            return Ok(v.mountpoint);
        }
        let (flags, data) = mount_flags(v.options.get("o").map(String::as_str).unwrap_or(""));
        nix::mount::mount(
            Some(device.as_str()),
            &v.mountpoint,
            Some(fstype.as_str()),
            flags,
            (!data.is_empty()).then_some(data.as_str()),
        )
        .map_err(|e| VolumeError::Mount {
            name: name.into(),
            source: io::Error::from(e),
        })?;
        Ok(v.mountpoint)
    }

    /// Removes the volume unless a container uses it. `force`: a missing volume is no
    /// error (in-use still is, as Docker's `volume rm -f`).
    pub fn remove(&self, name: &str, force: bool, users: &dyn VolumeUsers) -> Result<()> {
        match self.volumes.get(name) {
            Ok(_) => {}
            Err(VolumeError::NotFound(_)) if force => return Ok(()),
            Err(e) => return Err(e),
        }
        let ids = users.users(name).map_err(|source| VolumeError::Users {
            name: name.into(),
            source,
        })?;
        if !ids.is_empty() {
            return Err(VolumeError::InUse {
                name: name.into(),
                users: ids,
            });
        }
        self.delete(name)
    }

    /// Out of the namespace by one rename, then deleted: a crash mid-way leaves a
    /// `.gone-*` dir for the next lock to sweep, never half a volume under its name.
    fn delete(&self, name: &str) -> Result<()> {
        let data = self.volumes.data_dir(name);
        if is_mountpoint(&data) {
            // An options volume (tmpfs, nfs, a bind): its content is not ours to delete.
            nix::mount::umount2(&data, nix::mount::MntFlags::MNT_DETACH)
                .map_err(nix_err("unmount", &data))?;
        }
        let from = self.dir().join(name);
        let gone = self
            .dir()
            .join(format!(".gone-{name}-{}", std::process::id()));
        fs::rename(&from, &gone).map_err(io_err("rename", &from))?;
        sync_dir(self.dir())?;
        self.volumes.emit("destroy", name);
        fs::remove_dir_all(&gone).map_err(io_err("remove", &gone))
    }

    /// Removes unused volumes: anonymous ones, or all with `all` (Docker ≥ 23), that
    /// match every label filter.
    pub fn prune(
        &self,
        all: bool,
        labels: &[LabelFilter],
        users: &dyn VolumeUsers,
    ) -> Result<PruneReport> {
        let mut report = PruneReport::default();
        let mut volumes = self.volumes.list()?;
        volumes.sort_by(|a, b| a.name.cmp(&b.name));
        for v in volumes {
            if !(all || v.anonymous) || !labels.iter().all(|f| f.matches(&v.labels)) {
                continue;
            }
            let ids = users.users(&v.name).map_err(|source| VolumeError::Users {
                name: v.name.clone(),
                source,
            })?;
            if !ids.is_empty() {
                continue;
            }
            let size = self.volumes.size(&v.name);
            self.delete(&v.name)?;
            report.reclaimed += size;
            report.deleted.push(v.name);
        }
        Ok(report)
    }

    /// Fills an empty volume with the image's content at the mount path (`source`, a
    /// directory in the container's root file system), as Docker does when a container
    /// first mounts a volume: ownership, modes, times, xattrs, symlinks (as links, never
    /// followed), device nodes and hard links are kept, and the volume's root takes the
    /// source directory's owner and mode. Returns whether anything was copied: nothing
    /// is when the volume has content already or `source` is not a directory.
    ///
    /// `source` itself is not followed when it is a symlink (see
    /// [`populate_from_rootfs`](Self::populate_from_rootfs) to resolve the mount path
    /// inside the container's root); below it nothing is followed: every
    /// step is `openat(O_NOFOLLOW)` from the parent's descriptor, so a symlink swapped in
    /// by a running container cannot lead the copy out of its tree.
    pub fn populate_from(&self, name: &str, source: &Path) -> Result<bool> {
        let src = match nix::fcntl::open(
            source,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP) => return Ok(false),
            Err(e) => return Err(nix_err("open", source)(e)),
        };
        self.populate_from_fd(name, src, source)
    }

    /// [`populate_from`](Self::populate_from) with the mount path resolved inside the
    /// container's root file system as the kernel would resolve it for the container
    /// (`openat2` with `RESOLVE_IN_ROOT`): a `/var/run -> /run` symlink in the image leads
    /// to the image's `/run`, and nothing leads out of `rootfs`.
    pub fn populate_from_rootfs(&self, name: &str, rootfs: &Path, target: &Path) -> Result<bool> {
        let root = nix::fcntl::open(
            rootfs,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(nix_err("open", rootfs))?;
        let rel = target.strip_prefix("/").unwrap_or(target);
        let rel = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        let how = nix::fcntl::OpenHow::new()
            .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
            .resolve(
                nix::fcntl::ResolveFlag::RESOLVE_IN_ROOT
                    | nix::fcntl::ResolveFlag::RESOLVE_NO_MAGICLINKS,
            );
        let shown = rootfs.join(rel);
        let mut tries = 0;
        let src = loop {
            match nix::fcntl::openat2(&root, rel, how) {
                Ok(fd) => break fd,
                // The kernel's answer when a mount or rename anywhere raced the walk.
                Err(Errno::EAGAIN) if tries < 100 => tries += 1,
                Err(Errno::ENOENT | Errno::ENOTDIR) => return Ok(false),
                Err(e) => return Err(nix_err("open", &shown)(e)),
            }
        };
        self.populate_from_fd(name, src, &shown)
    }

    fn populate_from_fd(&self, name: &str, src: OwnedFd, source: &Path) -> Result<bool> {
        let vol = self.volumes.get(name)?;
        let dst_path = vol.mountpoint;
        let dst = nix::fcntl::open(
            &dst_path,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(nix_err("open", &dst_path))?;
        if !dir_is_empty(&dst).map_err(nix_err("read", &dst_path))? {
            return Ok(false);
        }
        let mut c = Copier {
            src_root: source,
            dst_root: &dst_path,
            dst_fd: dst.as_fd(),
            links: HashMap::new(),
        };
        c.dir(src.as_fd(), dst.as_fd(), Path::new(""))?;
        // The volume's root takes the source directory's owner, mode and xattrs (the
        // times stay the volume's own, as Docker's copyOwnership leaves them).
        let st = fstat(&src).map_err(nix_err("stat", source))?;
        fchownat(
            &dst,
            "",
            Some(Uid::from_raw(st.st_uid)),
            Some(Gid::from_raw(st.st_gid)),
            AtFlags::AT_EMPTY_PATH,
        )
        .map_err(nix_err("chown", &dst_path))?;
        fchmod(&dst, Mode::from_bits_truncate(st.st_mode & 0o7777))
            .map_err(nix_err("chmod", &dst_path))?;
        Ok(true)
    }
}

fn dir_is_empty(fd: &OwnedFd) -> nix::Result<bool> {
    let mut d = Dir::openat(
        fd,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    for e in d.iter() {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            return Ok(false);
        }
    }
    Ok(true)
}

/// A recursive copy between two directory descriptors.
struct Copier<'a> {
    src_root: &'a Path,
    dst_root: &'a Path,
    /// The volume root, to which hard links' first paths are relative.
    dst_fd: BorrowedFd<'a>,
    /// (dev, ino) of multiply-linked sources → path (relative to the volume) of the
    /// first copy, which later names link to instead of copying again.
    links: HashMap<(u64, u64), PathBuf>,
}

impl Copier<'_> {
    fn dir(&mut self, src: BorrowedFd, dst: BorrowedFd, rel: &Path) -> Result<()> {
        let src_path = self.src_root.join(rel);
        let mut d = Dir::openat(
            src,
            ".",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(nix_err("open", &src_path))?;
        let mut names: Vec<CString> = Vec::new();
        for e in d.iter() {
            let e = e.map_err(nix_err("read", &src_path))?;
            let n = e.file_name();
            if n.to_bytes() != b"." && n.to_bytes() != b".." {
                names.push(n.to_owned());
            }
        }
        for n in names {
            let child_rel = rel.join(OsStr::from_bytes(n.to_bytes()));
            self.entry(src, dst, &n, &child_rel)?;
        }
        Ok(())
    }

    fn entry(&mut self, src: BorrowedFd, dst: BorrowedFd, n: &CStr, rel: &Path) -> Result<()> {
        let sp = self.src_root.join(rel);
        let dp = self.dst_root.join(rel);
        let st = match fstatat(src, n, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            // Gone since we listed it (a running container's file): nothing to copy.
            Err(Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(nix_err("stat", &sp)(e)),
        };
        let kind = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
        if kind != SFlag::S_IFDIR && st.st_nlink > 1 {
            let key = (st.st_dev, st.st_ino);
            if let Some(first) = self.links.get(&key) {
                linkat(self.dst_fd, first.as_path(), dst, n, AtFlags::empty())
                    .map_err(nix_err("link", &dp))?;
                return Ok(());
            }
            self.links.insert(key, rel.to_path_buf());
        }
        match kind {
            SFlag::S_IFDIR => {
                mkdirat(dst, n, Mode::from_bits_truncate(0o700)).map_err(nix_err("mkdir", &dp))?;
                let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW;
                let s = openat(src, n, flags | OFlag::O_CLOEXEC, Mode::empty())
                    .map_err(nix_err("open", &sp))?;
                let d = openat(dst, n, flags | OFlag::O_CLOEXEC, Mode::empty())
                    .map_err(nix_err("open", &dp))?;
                self.dir(s.as_fd(), d.as_fd(), rel)?;
                // Owner, mode and times after the content, which would change them.
                self.attrs(src, dst, n, &st, &dp)?;
                return Ok(());
            }
            SFlag::S_IFREG => {
                // O_NONBLOCK: should a FIFO have been swapped in since the stat, the open
                // must not hang; the fstat below then refuses it.
                let s = openat(
                    src,
                    n,
                    OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(nix_err("open", &sp))?;
                let now = fstat(&s).map_err(nix_err("stat", &sp))?;
                if now.st_mode & SFlag::S_IFMT.bits() != SFlag::S_IFREG.bits() {
                    return Ok(());
                }
                let d = openat(
                    dst,
                    n,
                    OFlag::O_WRONLY
                        | OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(nix_err("create", &dp))?;
                let mut s = File::from(s);
                let mut d = File::from(d);
                io::copy(&mut s, &mut d).map_err(io_err("copy", &sp))?;
            }
            SFlag::S_IFLNK => {
                let target = nix::fcntl::readlinkat(src, n).map_err(nix_err("readlink", &sp))?;
                symlinkat(target.as_os_str(), dst, n).map_err(nix_err("symlink", &dp))?;
            }
            SFlag::S_IFCHR | SFlag::S_IFBLK | SFlag::S_IFIFO | SFlag::S_IFSOCK => {
                mknodat(dst, n, kind, Mode::from_bits_truncate(0o600), st.st_rdev)
                    .map_err(nix_err("mknod", &dp))?;
            }
            _ => return Ok(()),
        }
        self.attrs(src, dst, n, &st, &dp)
    }

    /// Owner, then mode (a chown clears set-id bits), then xattrs (a chown clears
    /// security.capability), then times (every step before changes ctime, not mtime, but
    /// writing content did).
    fn attrs(
        &self,
        src: BorrowedFd,
        dst: BorrowedFd,
        n: &CStr,
        st: &FileStat,
        dp: &Path,
    ) -> Result<()> {
        let is_link = st.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFLNK.bits();
        fchownat(
            dst,
            n,
            Some(Uid::from_raw(st.st_uid)),
            Some(Gid::from_raw(st.st_gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(nix_err("chown", dp))?;
        if !is_link {
            fchmodat(
                dst,
                n,
                Mode::from_bits_truncate(st.st_mode & 0o7777),
                FchmodatFlags::FollowSymlink,
            )
            .map_err(nix_err("chmod", dp))?;
        }
        copy_xattrs(src, dst, n).map_err(io_err("copy xattrs to", dp))?;
        let at = TimeSpec::new(st.st_atime, st.st_atime_nsec);
        let mt = TimeSpec::new(st.st_mtime, st.st_mtime_nsec);
        utimensat(dst, n, &at, &mt, UtimensatFlags::NoFollowSymlink)
            .map_err(nix_err("set times of", dp))?;
        Ok(())
    }
}

/// `/proc/self/fd/<dir>/<name>`: a path for the l*xattr calls that resolves the directory
/// through its descriptor and does not follow `name` itself.
fn fd_path(dir: BorrowedFd, n: &CStr) -> CString {
    let mut p = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    p.extend_from_slice(n.to_bytes());
    CString::new(p).expect("no NUL in a path from a C string")
}

fn copy_xattrs(src: BorrowedFd, dst: BorrowedFd, n: &CStr) -> io::Result<()> {
    let sp = fd_path(src, n);
    let dp = fd_path(dst, n);
    // SAFETY: a size query with a null buffer; sp is a valid C string.
    let len = unsafe { libc::llistxattr(sp.as_ptr(), std::ptr::null_mut(), 0) };
    if len < 0 {
        let e = io::Error::last_os_error();
        // File systems without xattrs (or a proc without them) have nothing to copy.
        return match e.raw_os_error() {
            Some(libc::ENOTSUP) => Ok(()),
            _ => Err(e),
        };
    }
    if len == 0 {
        return Ok(());
    }
    let mut names = vec![0u8; len as usize];
    // SAFETY: names has room for len bytes, as the kernel just said it needs.
    let len = unsafe { libc::llistxattr(sp.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if len < 0 {
        return Err(io::Error::last_os_error());
    }
    names.truncate(len as usize);
    for name in names.split(|b| *b == 0).filter(|s| !s.is_empty()) {
        let cname = CString::new(name).expect("split at NUL");
        // SAFETY: size query with a null buffer; both strings are valid C strings.
        let vlen = unsafe { libc::lgetxattr(sp.as_ptr(), cname.as_ptr(), std::ptr::null_mut(), 0) };
        if vlen < 0 {
            continue;
        }
        let mut value = vec![0u8; vlen as usize];
        // SAFETY: value has room for vlen bytes.
        let vlen = unsafe {
            libc::lgetxattr(
                sp.as_ptr(),
                cname.as_ptr(),
                value.as_mut_ptr().cast(),
                value.len(),
            )
        };
        if vlen < 0 {
            continue;
        }
        // SAFETY: value holds vlen initialised bytes; the strings are valid.
        let r = unsafe {
            libc::lsetxattr(
                dp.as_ptr(),
                cname.as_ptr(),
                value.as_ptr().cast(),
                vlen as usize,
                0,
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            // user.* on a symlink, or a namespace this file system refuses: Docker's copy
            // skips those too rather than failing the container.
            if !matches!(e.raw_os_error(), Some(libc::EPERM | libc::ENOTSUP)) {
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Whether something is mounted exactly at `path` (mountinfo's fifth field, with the
/// kernel's octal escapes undone). thread-self: the mount namespace of the calling thread,
/// which is what mount(2) acted on.
fn is_mountpoint(path: &Path) -> bool {
    let Ok(info) = fs::read_to_string("/proc/thread-self/mountinfo") else {
        return false;
    };
    let want = path.as_os_str().as_bytes();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|m| unescape_octal(m) == want)
}

fn unescape_octal(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// `-o o=…` split as mount(8) does: the flags the kernel takes as bits, and the rest as
/// the file system's data string (`size=64m,uid=1000`).
fn mount_flags(o: &str) -> (nix::mount::MsFlags, String) {
    use nix::mount::MsFlags as F;
    let mut flags = F::empty();
    let mut data = Vec::new();
    for opt in o.split(',').filter(|x| !x.is_empty()) {
        match opt {
            "ro" => flags |= F::MS_RDONLY,
            "rw" => flags &= !F::MS_RDONLY,
            "nosuid" => flags |= F::MS_NOSUID,
            "suid" => flags &= !F::MS_NOSUID,
            "nodev" => flags |= F::MS_NODEV,
            "dev" => flags &= !F::MS_NODEV,
            "noexec" => flags |= F::MS_NOEXEC,
            "exec" => flags &= !F::MS_NOEXEC,
            "sync" => flags |= F::MS_SYNCHRONOUS,
            "async" => flags &= !F::MS_SYNCHRONOUS,
            "noatime" => flags |= F::MS_NOATIME,
            "nodiratime" => flags |= F::MS_NODIRATIME,
            "relatime" => flags |= F::MS_RELATIME,
            "strictatime" => flags |= F::MS_STRICTATIME,
            "bind" => flags |= F::MS_BIND,
            "rbind" => flags |= F::MS_BIND | F::MS_REC,
            "defaults" => {}
            other => data.push(other),
        }
    }
    (flags, data.join(","))
}

fn tree_size(path: &Path, seen: &mut HashSet<(u64, u64)>) -> u64 {
    let Ok(entries) = fs::read_dir(path) else {
        return 0;
    };
    let mut total = 0;
    for e in entries.flatten() {
        let Ok(m) = e.metadata() else { continue };
        if m.is_dir() {
            total += tree_size(&e.path(), seen);
        } else if m.is_file() && seen.insert((m.dev(), m.ino())) {
            total += m.len();
        }
    }
    total
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = File::create(path).map_err(io_err("create", path))?;
    f.write_all(bytes).map_err(io_err("write", path))?;
    f.sync_all().map_err(io_err("sync", path))
}

fn sync_dir(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(io_err("sync", path))
}

/// `n` random bytes as hex, from the kernel's generator.
pub fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    let mut filled = 0;
    while filled < n {
        // SAFETY: writes at most n - filled bytes into buf's remaining space.
        let r = unsafe { libc::getrandom(buf[filled..].as_mut_ptr().cast(), n - filled, 0) };
        if r > 0 {
            filled += r as usize;
        }
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// `2024-05-01T10:00:00Z`.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn vols() -> (tempfile::TempDir, Volumes) {
        let t = tempfile::tempdir().unwrap();
        let v = Volumes::new(t.path());
        (t, v)
    }

    fn named(n: &str) -> CreateOptions {
        CreateOptions {
            name: Some(n.into()),
            ..Default::default()
        }
    }

    #[test]
    fn names_follow_dockers_rule() {
        for ok in ["ab", "a1", "my_vol.1-x", "0a"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["a", "", "-a", ".a", "_a", "a b", "a/b", "../x", "é1"] {
            assert!(!valid_name(bad), "{bad}");
        }
        let (_t, v) = vols();
        let e = v.create(&named("a/b")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "create a/b: \"a/b\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
        );
        assert!(matches!(v.get("../etc"), Err(VolumeError::NotFound(_))));
    }

    #[test]
    fn create_is_idempotent_and_inspects_like_docker() {
        let (t, v) = vols();
        let mut o = named("data");
        o.labels.insert("team".into(), "a".into());
        o.options.insert("type".into(), "tmpfs".into());
        let a = v.create(&o).unwrap();
        assert!(a.mountpoint.is_dir());
        assert_eq!(a.mountpoint, t.path().join("volumes/data/_data"));
        // Same name again: the existing volume, labels as first given.
        let b = v.create(&named("data")).unwrap();
        assert_eq!(a, b);
        let j = b.inspect();
        assert_eq!(j["Name"], "data");
        assert_eq!(j["Driver"], "local");
        assert_eq!(j["Scope"], "local");
        assert_eq!(j["Labels"]["team"], "a");
        assert_eq!(j["Options"]["type"], "tmpfs");
        assert!(j["CreatedAt"].as_str().unwrap().ends_with('Z'));
        let e = v
            .create(&CreateOptions {
                driver: "nfs".into(),
                ..named("x1")
            })
            .unwrap_err();
        assert!(matches!(e, VolumeError::UnknownDriver { .. }), "{e}");
        let mut o = named("x2");
        o.options.insert("bogus".into(), "1".into());
        assert_eq!(
            v.create(&o).unwrap_err().to_string(),
            "create x2: invalid option: \"bogus\""
        );
        assert_eq!(v.list().unwrap().len(), 1, "failed creates leave nothing");
        // Nothing staged is left beside it.
        let names: Vec<String> = fs::read_dir(t.path().join("volumes"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}"); // data, .lock
    }

    #[test]
    fn anonymous_volumes_remove_in_use_and_prune() {
        let (_t, v) = vols();
        let anon = v.create_anonymous(BTreeMap::new()).unwrap();
        assert_eq!(anon.name.len(), 64);
        assert!(anon.name.bytes().all(|c| c.is_ascii_hexdigit()));
        assert!(anon.anonymous);
        assert!(anon.labels.contains_key(ANONYMOUS_LABEL));
        v.create(&named("keep")).unwrap();
        let mut o = named("tagged");
        o.labels.insert("env".into(), "test".into());
        v.create(&o).unwrap();
        fs::write(v.mountpoint("tagged").unwrap().join("f"), b"12345").unwrap();
        fs::hard_link(
            v.mountpoint("tagged").unwrap().join("f"),
            v.mountpoint("tagged").unwrap().join("g"),
        )
        .unwrap();

        let users = |n: &str| {
            if n == "keep" {
                vec!["c0ffee".to_string()]
            } else {
                vec![]
            }
        };
        let e = v.remove("keep", false, &users).unwrap_err();
        assert_eq!(e.to_string(), "remove keep: volume is in use - [c0ffee]");
        // -f does not override in-use; it only forgives a missing volume.
        assert!(v.remove("keep", true, &users).is_err());
        v.remove("nosuch", true, &users).unwrap();
        assert_eq!(
            v.remove("nosuch", false, &users).unwrap_err().to_string(),
            "get nosuch: no such volume"
        );

        // Default prune: anonymous only.
        let r = v.prune(false, &[], &users).unwrap();
        assert_eq!(r.deleted, std::slice::from_ref(&anon.name));
        // --all with a label filter: only the tagged one; hard links counted once.
        let f = [LabelFilter::parse("env=test", false)];
        let r = v.prune(true, &f, &users).unwrap();
        assert_eq!(r.deleted, ["tagged"]);
        assert_eq!(r.reclaimed, 5);
        // --all: the in-use one stays.
        let r = v.prune(true, &[], &users).unwrap();
        assert!(r.deleted.is_empty());
        assert_eq!(v.list().unwrap().len(), 1);
        v.remove("keep", false, &NoUsers).unwrap();
        assert!(v.list().unwrap().is_empty());
    }

    #[test]
    fn interrupted_changes_are_swept_and_concurrent_creates_agree() {
        let (t, v) = vols();
        let dir = t.path().join("volumes");
        fs::create_dir_all(dir.join(".new-half-1/_data")).unwrap();
        fs::create_dir_all(dir.join(".gone-old-1/_data")).unwrap();
        drop(v.lock().unwrap());
        assert!(!dir.join(".new-half-1").exists());
        assert!(!dir.join(".gone-old-1").exists());

        let handles: Vec<_> = (0..8)
            .map(|i| {
                let v = v.clone();
                std::thread::spawn(move || {
                    let name = if i % 2 == 0 { "shared" } else { "other" };
                    v.create(&named(name)).unwrap().created_at
                })
            })
            .collect();
        let times: Vec<String> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let shared = v.get("shared").unwrap().created_at;
        assert!(times.iter().step_by(2).all(|t| *t == shared));
        assert_eq!(v.list().unwrap().len(), 2);
    }

    #[test]
    fn populate_copies_metadata_links_and_never_follows_symlinks() {
        let (t, v) = vols();
        let src = t.path().join("rootfs/data");
        fs::create_dir_all(src.join("sub/deeper")).unwrap();
        fs::write(src.join("file"), b"hello").unwrap();
        fs::set_permissions(src.join("file"), fs::Permissions::from_mode(0o4751)).unwrap();
        fs::hard_link(src.join("file"), src.join("sub/hard")).unwrap();
        symlink("/etc", src.join("escape")).unwrap();
        symlink("../file", src.join("sub/rel")).unwrap();
        fs::write(src.join("sub/deeper/x"), b"x").unwrap();
        fs::set_permissions(src.join("sub"), fs::Permissions::from_mode(0o710)).unwrap();
        nix::unistd::mkfifo(&src.join("fifo"), Mode::from_bits_truncate(0o640)).unwrap();
        let then = TimeSpec::new(1_000_000_000, 0);
        utimensat(
            nix::fcntl::AT_FDCWD,
            &src.join("file"),
            &then,
            &then,
            UtimensatFlags::NoFollowSymlink,
        )
        .unwrap();
        let xattr = CString::new("user.berth").unwrap();
        let path = CString::new(src.join("file").as_os_str().as_bytes()).unwrap();
        // SAFETY: valid C strings and a 3-byte value.
        let has_xattrs =
            unsafe { libc::setxattr(path.as_ptr(), xattr.as_ptr(), b"yes".as_ptr().cast(), 3, 0) }
                == 0;
        let is_root = nix::unistd::geteuid().is_root();
        if is_root {
            std::os::unix::fs::chown(src.join("sub/deeper/x"), Some(1234), Some(5678)).unwrap();
        }
        fs::set_permissions(&src, fs::Permissions::from_mode(0o750)).unwrap();

        v.create(&named("pop")).unwrap();
        assert!(v.populate_from("pop", &src).unwrap());
        let d = v.mountpoint("pop").unwrap();
        assert_eq!(fs::read(d.join("file")).unwrap(), b"hello");
        let m = fs::metadata(d.join("file")).unwrap();
        assert_eq!(m.permissions().mode() & 0o7777, 0o4751);
        assert_eq!(m.mtime(), 1_000_000_000);
        assert_eq!(m.nlink(), 2);
        assert_eq!(m.ino(), fs::metadata(d.join("sub/hard")).unwrap().ino());
        assert_eq!(fs::read_link(d.join("escape")).unwrap(), Path::new("/etc"));
        assert_eq!(
            fs::read_link(d.join("sub/rel")).unwrap(),
            Path::new("../file")
        );
        assert!(fs::symlink_metadata(d.join("fifo"))
            .unwrap()
            .file_type()
            .is_fifo_like());
        assert_eq!(
            fs::metadata(d.join("sub")).unwrap().permissions().mode() & 0o7777,
            0o710
        );
        assert_eq!(
            fs::metadata(&d).unwrap().permissions().mode() & 0o7777,
            0o750
        );
        if is_root {
            let m = fs::metadata(d.join("sub/deeper/x")).unwrap();
            assert_eq!((m.uid(), m.gid()), (1234, 5678));
        }
        if has_xattrs {
            let dp = CString::new(d.join("file").as_os_str().as_bytes()).unwrap();
            let mut buf = [0u8; 8];
            // SAFETY: buf has room for 8 bytes.
            let n =
                unsafe { libc::getxattr(dp.as_ptr(), xattr.as_ptr(), buf.as_mut_ptr().cast(), 8) };
            assert_eq!(&buf[..n.max(0) as usize], b"yes");
        }

        // Not empty any more: a second populate copies nothing.
        fs::write(src.join("new"), b"n").unwrap();
        assert!(!v.populate_from("pop", &src).unwrap());
        assert!(!d.join("new").exists());

        // A source that is a symlink (or missing) is not followed: nothing to copy.
        v.create(&named("pop2")).unwrap();
        let link = t.path().join("rootfs/link");
        symlink(&src, &link).unwrap();
        assert!(!v.populate_from("pop2", &link).unwrap());
        assert!(!v
            .populate_from("pop2", &t.path().join("rootfs/missing"))
            .unwrap());
        assert!(dir_is_empty(
            &nix::fcntl::open(
                &v.mountpoint("pop2").unwrap(),
                OFlag::O_RDONLY,
                Mode::empty()
            )
            .unwrap()
        )
        .unwrap());
        assert!(matches!(
            v.populate_from("nosuch", &src),
            Err(VolumeError::NotFound(_))
        ));
    }

    #[test]
    fn populate_from_rootfs_resolves_inside_the_root() {
        let (t, v) = vols();
        let rootfs = t.path().join("rootfs");
        fs::create_dir_all(rootfs.join("run/app")).unwrap();
        fs::create_dir_all(rootfs.join("var")).unwrap();
        fs::write(rootfs.join("run/app/pid"), b"1").unwrap();
        // Absolute and escaping links resolve inside the rootfs, as for the container.
        symlink("/run", rootfs.join("var/run")).unwrap();
        symlink("../../../../../run", rootfs.join("up")).unwrap();
        fs::create_dir_all(t.path().join("run/app")).unwrap();
        fs::write(t.path().join("run/app/host-secret"), b"s").unwrap();
        for (vol, target) in [("r1", "/var/run/app"), ("r2", "/up/app")] {
            v.create(&named(vol)).unwrap();
            assert!(v
                .populate_from_rootfs(vol, &rootfs, Path::new(target))
                .unwrap());
            let d = v.mountpoint(vol).unwrap();
            assert_eq!(fs::read(d.join("pid")).unwrap(), b"1", "{target}");
            assert!(!d.join("host-secret").exists(), "{target}");
        }
        v.create(&named("r3")).unwrap();
        assert!(!v
            .populate_from_rootfs("r3", &rootfs, Path::new("/nonexistent"))
            .unwrap());
        assert!(matches!(
            v.mountpoint("../../etc"),
            Err(VolumeError::NotFound(_))
        ));
    }

    #[test]
    fn options_volumes_mount_on_use_and_unmount_on_remove() {
        assert_eq!(
            mount_flags("ro,size=64m,nosuid,uid=1000"),
            (
                nix::mount::MsFlags::MS_RDONLY | nix::mount::MsFlags::MS_NOSUID,
                "size=64m,uid=1000".to_string()
            )
        );
        assert_eq!(unescape_octal("/a\\040b"), b"/a b");
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        // In a mount namespace of a thread of its own, so a failure leaves no tmpfs on
        // the host: the namespace goes when the thread ends.
        std::thread::spawn(|| {
            use nix::mount::MsFlags;
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).unwrap();
            nix::mount::mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                None::<&str>,
            )
            .unwrap();
            mount_in_this_thread();
        })
        .join()
        .unwrap();
    }

    fn mount_in_this_thread() {
        let (_t, v) = vols();
        // A volume without options needs no mount.
        v.create(&named("plain")).unwrap();
        let p = v.mount("plain").unwrap();
        assert!(!is_mountpoint(&p));
        let mut o = named("tmp");
        for (k, x) in [
            ("type", "tmpfs"),
            ("device", "tmpfs"),
            ("o", "size=1m,mode=0750"),
        ] {
            o.options.insert(k.into(), x.into());
        }
        v.create(&o).unwrap();
        let p = v.mount("tmp").unwrap();
        assert!(is_mountpoint(&p));
        assert_eq!(
            v.mount("tmp").unwrap(),
            p,
            "a second use mounts nothing more"
        );
        let mounts = fs::read_to_string("/proc/thread-self/mountinfo").unwrap();
        assert_eq!(
            mounts
                .lines()
                .filter(|l| l.split(' ').nth(4) == p.to_str())
                .count(),
            1
        );
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o7777,
            0o750
        );
        v.remove("tmp", false, &NoUsers).unwrap();
        assert!(!is_mountpoint(&p));
        assert!(!fs::read_to_string("/proc/thread-self/mountinfo")
            .unwrap()
            .contains("/tmp/_data"));
        let mut o = named("bad");
        o.options.insert("type".into(), "nosuchfs".into());
        o.options.insert("device".into(), "x".into());
        v.create(&o).unwrap();
        let e = v.mount("bad").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("error while mounting volume 'bad': "),
            "{e}"
        );
    }

    trait FifoLike {
        fn is_fifo_like(&self) -> bool;
    }
    impl FifoLike for fs::FileType {
        fn is_fifo_like(&self) -> bool {
            std::os::unix::fs::FileTypeExt::is_fifo(self)
        }
    }
}
