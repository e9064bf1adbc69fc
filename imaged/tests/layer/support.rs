//! Building layer tarballs by hand (including the ones the tar crate's checks would refuse to
//! write), a scratch area with a sentinel beside the destination, and a description of a
//! tree to compare two trees with.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use berth_imaged::digest::Digest;
use berth_imaged::layer::{unpack, Compression, LayerError, UnpackOptions, UnpackReport};
use tar::{EntryType, Header};

pub const MTIME: u64 = 1_600_000_000;

/// One tar entry, spelled as raw bytes so that anything can be written.
#[derive(Clone)]
pub struct E {
    pub name: Vec<u8>,
    pub kind: EntryType,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub data: Vec<u8>,
    pub link: Option<Vec<u8>>,
    pub dev: (u32, u32),
    pub pax: Vec<(Vec<u8>, Vec<u8>)>,
    /// Put the name in a GNU long-name header instead of PAX when it is long.
    pub gnu_long_name: bool,
}

fn entry(name: impl AsRef<[u8]>, kind: EntryType, mode: u32) -> E {
    E {
        name: name.as_ref().to_vec(),
        kind,
        mode,
        uid: 0,
        gid: 0,
        mtime: MTIME,
        data: Vec::new(),
        link: None,
        dev: (0, 0),
        pax: Vec::new(),
        gnu_long_name: false,
    }
}

pub fn dir(name: impl AsRef<[u8]>) -> E {
    entry(name, EntryType::Directory, 0o755)
}

pub fn file(name: impl AsRef<[u8]>, data: impl AsRef<[u8]>) -> E {
    let mut e = entry(name, EntryType::Regular, 0o644);
    e.data = data.as_ref().to_vec();
    e
}

pub fn symlink(name: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> E {
    let mut e = entry(name, EntryType::Symlink, 0o777);
    e.link = Some(target.as_ref().to_vec());
    e
}

pub fn hardlink(name: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> E {
    let mut e = entry(name, EntryType::Link, 0o644);
    e.link = Some(target.as_ref().to_vec());
    e
}

pub fn chardev(name: impl AsRef<[u8]>, major: u32, minor: u32) -> E {
    let mut e = entry(name, EntryType::Char, 0o666);
    e.dev = (major, minor);
    e
}

pub fn blockdev(name: impl AsRef<[u8]>, major: u32, minor: u32) -> E {
    let mut e = entry(name, EntryType::Block, 0o660);
    e.dev = (major, minor);
    e
}

pub fn fifo(name: impl AsRef<[u8]>) -> E {
    entry(name, EntryType::Fifo, 0o600)
}

impl E {
    pub fn mode(mut self, mode: u32) -> E {
        self.mode = mode;
        self
    }
    pub fn owner(mut self, uid: u64, gid: u64) -> E {
        self.uid = uid;
        self.gid = gid;
        self
    }
    pub fn mtime(mut self, mtime: u64) -> E {
        self.mtime = mtime;
        self
    }
    pub fn xattr(mut self, name: &str, value: impl AsRef<[u8]>) -> E {
        let key = format!("SCHILY.xattr.{name}").into_bytes();
        self.pax.push((key, value.as_ref().to_vec()));
        self
    }
    pub fn pax(mut self, key: &str, value: impl AsRef<[u8]>) -> E {
        self.pax
            .push((key.as_bytes().to_vec(), value.as_ref().to_vec()));
        self
    }
    pub fn gnu_long_name(mut self) -> E {
        self.gnu_long_name = true;
        self
    }
}

fn pax_records(records: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in records {
        let body = k.len() + v.len() + 3;
        let mut len = body + 1;
        while len != body + len.to_string().len() {
            len = body + len.to_string().len();
        }
        out.extend_from_slice(format!("{len} ").as_bytes());
        out.extend_from_slice(k);
        out.push(b'=');
        out.extend_from_slice(v);
        out.push(b'\n');
    }
    out
}

/// A tar of `entries`, written through the tar crate's `Builder` with headers whose name
/// and link fields are set byte by byte: `Header::set_path` refuses `..` and absolute names,
/// which is exactly what the attack tests need.
pub fn tar(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut pax = e.pax.clone();
        let mut name_field = e.name.clone();
        if e.name.len() > 100 {
            if e.gnu_long_name {
                let mut l = Header::new_gnu();
                l.set_entry_type(EntryType::GNULongName);
                l.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
                let mut data = e.name.clone();
                data.push(0);
                l.set_size(data.len() as u64);
                l.set_cksum();
                b.append(&l, data.as_slice()).unwrap();
            } else {
                pax.push((b"path".to_vec(), e.name.clone()));
            }
            name_field.truncate(100);
        }
        let mut link_field = e.link.clone().unwrap_or_default();
        if link_field.len() > 100 {
            pax.push((b"linkpath".to_vec(), link_field.clone()));
            link_field.truncate(100);
        }
        if !pax.is_empty() {
            let records = pax_records(&pax);
            let mut x = Header::new_ustar();
            x.set_entry_type(EntryType::XHeader);
            x.as_old_mut().name[..9].copy_from_slice(b"PaxHeader");
            x.set_size(records.len() as u64);
            x.set_mode(0o644);
            x.set_cksum();
            b.append(&x, records.as_slice()).unwrap();
        }
        let mut h = if e.gnu_long_name {
            Header::new_gnu()
        } else {
            Header::new_ustar()
        };
        h.set_entry_type(e.kind);
        h.set_mode(e.mode);
        h.set_uid(e.uid);
        h.set_gid(e.gid);
        h.set_mtime(e.mtime);
        h.set_size(e.data.len() as u64);
        h.as_old_mut().name[..name_field.len()].copy_from_slice(&name_field);
        h.as_old_mut().linkname[..link_field.len()].copy_from_slice(&link_field);
        if matches!(e.kind, EntryType::Char | EntryType::Block) {
            h.set_device_major(e.dev.0).unwrap();
            h.set_device_minor(e.dev.1).unwrap();
        }
        h.set_cksum();
        b.append(&h, e.data.as_slice()).unwrap();
    }
    b.into_inner().unwrap()
}

pub fn compress(c: Compression, data: &[u8]) -> Vec<u8> {
    let mut w = c.writer(Vec::new()).unwrap();
    w.write_all(data).unwrap();
    w.finish().unwrap()
}

/// A temp dir holding `dest/` (empty, where a layer goes) and `sentinel/` beside it (what
/// an escaping entry would reach with `../sentinel`). The sentinel's state is recorded at
/// the start; [`Scratch::assert_untouched`] checks it and that nothing new appeared next to
/// `dest`.
pub struct Scratch {
    pub tmp: tempfile::TempDir,
    pub dest: PathBuf,
    pub sentinel: PathBuf,
    before: (Vec<String>, Tree),
}

impl Scratch {
    pub fn new() -> Scratch {
        let tmp = tempfile::Builder::new()
            .prefix("berth-layer-")
            .tempdir()
            .unwrap();
        let dest = tmp.path().join("dest");
        let sentinel = tmp.path().join("sentinel");
        fs::create_dir(&dest).unwrap();
        fs::create_dir(&sentinel).unwrap();
        fs::write(sentinel.join("canary"), "canary\n").unwrap();
        fs::create_dir(sentinel.join("sub")).unwrap();
        let before = (listing(tmp.path()), Tree::of(&sentinel));
        Scratch {
            tmp,
            dest,
            sentinel,
            before,
        }
    }

    /// Another empty directory in the scratch area.
    pub fn dir(&mut self, name: &str) -> PathBuf {
        let p = self.tmp.path().join(name);
        fs::create_dir(&p).unwrap();
        self.before.0 = listing(self.tmp.path());
        p
    }

    pub fn unpack(&self, layer: &[u8]) -> Result<UnpackReport, LayerError> {
        unpack(layer, &self.dest, &UnpackOptions::new(LAYER))
    }

    pub fn assert_untouched(&self) {
        assert_eq!(
            Tree::of(&self.sentinel),
            self.before.1,
            "the sentinel beside dest changed"
        );
        assert_eq!(
            listing(self.tmp.path()),
            self.before.0,
            "something appeared beside dest"
        );
    }
}

/// The name layers get in tests, to find in error messages.
pub const LAYER: &str = "sha256:test-layer";

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Asserts that unpacking failed, naming the layer and the entry.
pub fn assert_refused(result: Result<UnpackReport, LayerError>, entry: &str) -> LayerError {
    let err = match result {
        Ok(report) => panic!("unpack succeeded ({report:?}), expected a refusal of {entry:?}"),
        Err(e) => e,
    };
    let msg = err.to_string();
    assert!(msg.contains(LAYER), "error does not name the layer: {msg}");
    assert!(
        msg.contains(entry),
        "error does not name entry {entry:?}: {msg}"
    );
    err
}

/// What a tree holds, for comparing two trees: every path with its type, owner, mode, mtime
/// (seconds), xattrs, content digest, symlink target, device number, and for hard links the
/// first path of the same inode.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tree(pub BTreeMap<String, Node>);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: char,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub content: Option<Digest>,
    pub link: Option<String>,
    pub rdev: (u32, u32),
    pub xattrs: BTreeMap<String, Vec<u8>>,
    pub same_as: Option<String>,
}

impl Tree {
    pub fn of(root: &Path) -> Tree {
        let mut t = Tree::default();
        let mut inodes = BTreeMap::new();
        walk(root, root, &mut t.0, &mut inodes);
        t
    }

    pub fn get(&self, path: &str) -> &Node {
        self.0
            .get(path)
            .unwrap_or_else(|| panic!("{path} missing from {:#?}", self.0.keys()))
    }
}

fn walk(
    root: &Path,
    dir: &Path,
    out: &mut BTreeMap<String, Node>,
    inodes: &mut BTreeMap<(u64, u64), String>,
) {
    let mut names: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    for p in names {
        let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        let m = fs::symlink_metadata(&p).unwrap();
        let ft = m.file_type();
        let kind = if ft.is_dir() {
            'd'
        } else if ft.is_file() {
            'f'
        } else if ft.is_symlink() {
            'l'
        } else if ft.is_char_device() {
            'c'
        } else if ft.is_block_device() {
            'b'
        } else if ft.is_fifo() {
            'p'
        } else {
            's'
        };
        let mut same_as = None;
        if !ft.is_dir() && m.nlink() > 1 && !(kind == 'c' && m.rdev() == 0) {
            let key = (m.dev(), m.ino());
            match inodes.get(&key) {
                Some(first) => same_as = Some(first.clone()),
                None => {
                    inodes.insert(key, rel.clone());
                }
            }
        }
        let mut xattrs = BTreeMap::new();
        for name in xattr::list(&p).unwrap() {
            let n = name.to_string_lossy().into_owned();
            if let Some(v) = xattr::get(&p, &name).unwrap() {
                xattrs.insert(n, v);
            }
        }
        let content = ft.is_file().then(|| {
            let mut data = Vec::new();
            fs::File::open(&p).unwrap().read_to_end(&mut data).unwrap();
            Digest::of(&data)
        });
        let node = Node {
            kind,
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
            mtime: m.mtime(),
            content,
            link: ft
                .is_symlink()
                .then(|| fs::read_link(&p).unwrap().to_string_lossy().into_owned()),
            rdev: (libc::major(m.rdev()), libc::minor(m.rdev())),
            xattrs,
            same_as,
        };
        out.insert(rel, node);
        if ft.is_dir() {
            walk(root, &p, out, inodes);
        }
    }
}

/// The names in a tar, in order (through the tar crate's reader, with long names resolved).
pub fn tar_names(data: &[u8]) -> Vec<String> {
    let mut a = tar::Archive::new(data);
    a.entries()
        .unwrap()
        .map(|e| String::from_utf8_lossy(&e.unwrap().path_bytes()).into_owned())
        .collect()
}

/// Whether this host can run the tests that need root (mknod, chown, trusted xattrs).
pub fn root() -> bool {
    berth_tests::require_root()
}
