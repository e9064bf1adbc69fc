//! What each kind of entry becomes, and entries that replace each other.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

use berth_imaged::digest::Digest;
use berth_imaged::layer::{unpack, Compression, LayerError, UnpackOptions};

use crate::support::*;

/// security.capability v2 granting CAP_NET_RAW (bit 13) permitted and effective.
pub fn cap_net_raw() -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&0x0200_0001u32.to_le_bytes());
    v.extend_from_slice(&(1u32 << 13).to_le_bytes());
    v.extend_from_slice(&0u32.to_le_bytes());
    v.extend_from_slice(&0u32.to_le_bytes());
    v.extend_from_slice(&0u32.to_le_bytes());
    v
}

#[test]
fn every_kind_of_entry() {
    if !root() {
        return;
    }
    let s = Scratch::new();
    let entries = [
        dir("etc").mode(0o755),
        file("etc/passwd", "root:x:0:0::/root:/bin/sh\n").mode(0o644),
        dir("home/user")
            .mode(0o750)
            .owner(1000, 1001)
            .mtime(1_500_000_000),
        file("home/user/notes", "hi").owner(1000, 1001).mode(0o600),
        file("bin/su", "elf").mode(0o4755),
        file("bin/wall", "elf").mode(0o2755).owner(0, 5),
        file("bin/ping", "elf")
            .mode(0o755)
            .xattr("security.capability", cap_net_raw()),
        dir("tmp").mode(0o1777),
        file("tagged", "x")
            .xattr("user.origin", "berth")
            .xattr("trusted.note", "t"),
        symlink("bin/sh", "/bin/busybox"),
        symlink("lib", "usr/lib"),
        hardlink("bin/su2", "bin/su"),
        hardlink("/bin/su3", "/bin/su"),
        chardev("dev/null", 1, 3),
        blockdev("dev/loop0", 7, 0),
        fifo("run/fifo").mode(0o620),
        file("sub/../dotdot", "resolved lexically"),
        file("/abs/name", "inside"),
        file("empty", ""),
    ];
    let layer = tar(&entries);
    let report = s.unpack(&layer).unwrap();
    assert_eq!(report.diff_id, Digest::of(&layer));
    assert_eq!(report.tar_size, layer.len() as u64);
    assert_eq!(report.compression, Compression::None);
    assert_eq!(report.entries, 19);
    let content: usize = entries.iter().map(|e| e.data.len()).sum();
    assert_eq!(
        report.written, content as u64,
        "file content, hard links once"
    );

    let t = Tree::of(&s.dest);
    let n = t.get("home/user");
    assert_eq!((n.kind, n.mode, n.uid, n.gid), ('d', 0o750, 1000, 1001));
    assert_eq!(
        n.mtime, 1_500_000_000,
        "directory times are set after its children"
    );
    assert_eq!(t.get("home/user/notes").mode, 0o600);
    assert_eq!(t.get("bin/su").mode, 0o4755, "setuid survives the chown");
    let wall = t.get("bin/wall");
    assert_eq!((wall.mode, wall.gid), (0o2755, 5));
    assert_eq!(
        t.get("bin/ping").xattrs["security.capability"],
        cap_net_raw()
    );
    assert_eq!(t.get("tmp").mode, 0o1777);
    let tagged = t.get("tagged");
    assert_eq!(tagged.xattrs["user.origin"], b"berth");
    assert_eq!(tagged.xattrs["trusted.note"], b"t");
    assert_eq!(t.get("bin/sh").link.as_deref(), Some("/bin/busybox"));
    assert_eq!(t.get("bin/sh").mtime, MTIME as i64, "a symlink's own time");
    assert_eq!(t.get("lib").link.as_deref(), Some("usr/lib"));
    assert_eq!(t.get("bin/su2").same_as.as_deref(), Some("bin/su"));
    assert_eq!(t.get("bin/su3").same_as.as_deref(), Some("bin/su"));
    let null = t.get("dev/null");
    assert_eq!((null.kind, null.rdev, null.mode), ('c', (1, 3), 0o666));
    assert_eq!(t.get("dev/loop0").rdev, (7, 0));
    assert_eq!(
        (t.get("run/fifo").kind, t.get("run/fifo").mode),
        ('p', 0o620)
    );
    assert!(t.0.contains_key("dotdot") && !t.0.contains_key("sub/dotdot"));
    assert_eq!(t.get("abs/name").kind, 'f');
    // Parents no entry listed are made 0755 root:root.
    let bin = t.get("bin");
    assert_eq!((bin.mode, bin.uid), (0o755, 0));
}

#[test]
fn whiteouts_become_overlay_whiteouts() {
    if !root() {
        return;
    }
    let s = Scratch::new();
    s.unpack(&tar(&[
        file(".wh.gone", "").owner(3, 4),
        dir("d"),
        file("d/.wh..wh..opq", ""),
        file("d/kept", "k"),
        file("e/.wh.x", ""),
        file(".wh..wh.plnk", "aufs"),
        chardev("raw-whiteout", 0, 0),
    ]))
    .unwrap();
    let t = Tree::of(&s.dest);
    let gone = t.get("gone");
    assert_eq!(
        (gone.kind, gone.rdev, gone.uid, gone.gid),
        ('c', (0, 0), 3, 4)
    );
    assert!(!t.0.contains_key(".wh.gone"));
    assert_eq!(t.get("d").xattrs["trusted.overlay.opaque"], b"y");
    assert!(!t.0.contains_key("d/.wh..wh..opq"));
    assert_eq!(t.get("d/kept").kind, 'f');
    assert_eq!(t.get("e/x").rdev, (0, 0));
    assert!(!t.get("e").xattrs.contains_key("trusted.overlay.opaque"));
    assert!(
        !t.0.contains_key(".wh..wh.plnk"),
        "AUFS metadata is skipped"
    );
    // A raw 0:0 character device is overlayfs's whiteout and may stand anywhere.
    assert_eq!(t.get("raw-whiteout").kind, 'c');
}

#[test]
fn later_entries_replace_earlier_ones_as_in_docker() {
    if !root() {
        return;
    }
    let s = Scratch::new();
    s.unpack(&tar(&[
        // file, then file: the second wins
        file("f", "one"),
        file("f", "two"),
        // directory, then file: the directory goes with what it held
        dir("d2f"),
        file("d2f/child", "c"),
        file("d2f", "now a file"),
        // file, then directory
        file("f2d", "x"),
        dir("f2d").mode(0o711),
        // directory, then directory: they merge, the second's metadata wins
        dir("merge").mode(0o700),
        file("merge/a", "a"),
        dir("merge").mode(0o755).owner(7, 7),
        file("merge/b", "b"),
        // symlink, then directory: the link is replaced, not followed
        symlink("l2d", "/"),
        dir("l2d"),
        // a file of this layer, then its whiteout: the file stays (OCI: a whiteout never
        // deletes entries of its own layer)
        file("keep", "k"),
        file(".wh.keep", ""),
        // whiteout first, then a new directory: it hides the lower one
        file(".wh.again", ""),
        dir("again"),
        file("again/new", "n"),
        // directory first, then its whiteout: the same
        dir("again2"),
        file("again2/new", "n"),
        file(".wh.again2", ""),
        // a hard link keeps the old content when its target is replaced
        file("orig", "old"),
        hardlink("link", "orig"),
        file("orig", "new"),
        // children before their directory's entry
        file("late/child", "c"),
        dir("late").mode(0o700).owner(5, 6).mtime(1_400_000_000),
    ]))
    .unwrap();
    let read = |p: &str| fs::read_to_string(s.dest.join(p)).unwrap();
    let t = Tree::of(&s.dest);
    assert_eq!(read("f"), "two");
    assert_eq!(read("d2f"), "now a file");
    assert!(!t.0.contains_key("d2f/child"));
    assert_eq!((t.get("f2d").kind, t.get("f2d").mode), ('d', 0o711));
    let merge = t.get("merge");
    assert_eq!((merge.mode, merge.uid), (0o755, 7));
    assert!(t.0.contains_key("merge/a") && t.0.contains_key("merge/b"));
    assert_eq!(t.get("l2d").kind, 'd');
    assert_eq!(read("keep"), "k");
    for d in ["again", "again2"] {
        assert_eq!(t.get(d).kind, 'd');
        assert_eq!(t.get(d).xattrs["trusted.overlay.opaque"], b"y", "{d}");
        assert_eq!(read(&format!("{d}/new")), "n");
    }
    assert_eq!(read("link"), "old");
    assert_eq!(read("orig"), "new");
    let late = t.get("late");
    assert_eq!(
        (late.mode, late.uid, late.gid, late.mtime),
        (0o700, 5, 6, 1_400_000_000)
    );
    assert_eq!(read("late/child"), "c");
}

#[test]
fn relative_symlinks_inside_are_followed_for_parents() {
    if !root() {
        return;
    }
    let s = Scratch::new();
    s.unpack(&tar(&[
        dir("usr/lib"),
        symlink("lib", "usr/lib"),
        file("lib/libc.so", "c"),
        dir("a/b"),
        symlink("a/b/up", "../../usr"),
        file("a/b/up/share", "s"),
    ]))
    .unwrap();
    assert_eq!(
        fs::read_to_string(s.dest.join("usr/lib/libc.so")).unwrap(),
        "c"
    );
    assert_eq!(fs::read_to_string(s.dest.join("usr/share")).unwrap(), "s");
    assert!(fs::symlink_metadata(s.dest.join("lib"))
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn pax_times_xattrs_and_long_names() {
    if !root() {
        return;
    }
    let s = Scratch::new();
    let deep: String = (0..60).map(|i| format!("{i:0>99}/")).collect();
    let long_target = "t".repeat(300);
    s.unpack(&tar(&[
        file("precise", "p")
            .pax("mtime", "1600000000.25")
            .pax("atime", "1600000001.5"),
        file(format!("{deep}leaf"), "deep"),
        file(format!("{}/gnu", "g".repeat(150)), "gnu").gnu_long_name(),
        symlink("longlink", &long_target),
    ]))
    .unwrap();
    let m = fs::metadata(s.dest.join("precise")).unwrap();
    assert_eq!((m.mtime(), m.mtime_nsec()), (1_600_000_000, 250_000_000));
    assert_eq!((m.atime(), m.atime_nsec()), (1_600_000_001, 500_000_000));
    // 6000 bytes: past PATH_MAX, so only a walk one component at a time can check it.
    let mut fd = nix::fcntl::open(
        &s.dest,
        nix::fcntl::OFlag::O_DIRECTORY,
        nix::sys::stat::Mode::empty(),
    )
    .unwrap();
    for c in deep.split('/').filter(|c| !c.is_empty()) {
        fd = nix::fcntl::openat(
            &fd,
            c,
            nix::fcntl::OFlag::O_DIRECTORY,
            nix::sys::stat::Mode::empty(),
        )
        .unwrap();
    }
    let st = nix::sys::stat::fstatat(&fd, "leaf", nix::fcntl::AtFlags::empty()).unwrap();
    assert_eq!(st.st_size, 4);
    assert!(s.dest.join("g".repeat(150)).join("gnu").is_file());
    assert_eq!(
        fs::read_link(s.dest.join("longlink"))
            .unwrap()
            .to_string_lossy(),
        long_target
    );
}

#[test]
fn overlay_xattrs_in_a_layer_are_dropped_except_opaque() {
    if !root() {
        return;
    }
    let s = Scratch::new();
    s.unpack(&tar(&[
        dir("o").xattr("trusted.overlay.opaque", "y"),
        dir("r").xattr("trusted.overlay.redirect", "/elsewhere"),
        file("m", "")
            .xattr("trusted.overlay.metacopy", "")
            .xattr("user.overlay.origin", "x"),
    ]))
    .unwrap();
    let t = Tree::of(&s.dest);
    assert_eq!(t.get("o").xattrs["trusted.overlay.opaque"], b"y");
    assert!(t.get("r").xattrs.is_empty());
    assert!(t.get("m").xattrs.is_empty());
}

#[test]
fn destination_must_be_an_empty_directory() {
    if !root() {
        return;
    }
    let s = Scratch::new();
    fs::write(s.dest.join("leftover"), "").unwrap();
    let err = s.unpack(&tar(&[file("a", "")])).unwrap_err();
    assert!(matches!(err, LayerError::Destination { .. }), "{err}");
    assert!(err.to_string().contains("not empty"), "{err}");
    let missing = s.tmp.path().join("missing");
    let err = unpack(&tar(&[])[..], &missing, &UnpackOptions::new(LAYER)).unwrap_err();
    assert!(err.to_string().contains(LAYER), "{err}");
}

#[test]
fn device_files_are_what_the_header_says() {
    if !root() {
        return;
    }
    let s = Scratch::new();
    s.unpack(&tar(&[chardev("dev/tty", 5, 0).owner(0, 5).mode(0o620)]))
        .unwrap();
    let m = fs::symlink_metadata(s.dest.join("dev/tty")).unwrap();
    assert!(m.file_type().is_char_device());
    assert_eq!((m.mode() & 0o7777, m.gid()), (0o620, 5));
}

#[test]
fn unlisted_parents_are_made_like_the_lower_snapshots() {
    if !root() {
        return;
    }
    let mut s = Scratch::new();
    let (low, mid, top) = (s.dir("low"), s.dir("mid"), s.dir("top"));
    let opts = |name: &str| UnpackOptions::new(name);
    unpack(
        &tar(&[
            dir("tmp").mode(0o1777),
            dir("usr/local")
                .mode(0o750)
                .owner(5, 6)
                .mtime(1_300_000_000),
            dir("gone").mode(0o700),
            dir("hidden").mode(0o700),
            dir("hidden/sub").mode(0o711),
        ])[..],
        &low,
        &opts("low"),
    )
    .unwrap();
    // mid deletes gone/ and makes hidden/ opaque (without sub/).
    unpack(
        &tar(&[
            file(".wh.gone", ""),
            dir("hidden").mode(0o755),
            file("hidden/.wh..wh..opq", ""),
        ])[..],
        &mid,
        &opts("mid"),
    )
    .unwrap();
    unpack(
        &tar(&[
            file("tmp/x", "x"),
            file("usr/local/bin/tool", "t"),
            file("gone/again", "a"),
            file("hidden/sub/f", "f"),
        ])[..],
        &top,
        &opts("top").with_parents([mid.clone(), low.clone()]),
    )
    .unwrap();
    let t = Tree::of(&top);
    assert_eq!(t.get("tmp").mode, 0o1777, "not the 0755 default");
    let local = t.get("usr/local");
    assert_eq!(
        (local.mode, local.uid, local.gid, local.mtime),
        (0o750, 5, 6, 1_300_000_000),
        "the mtime survives the children written after it"
    );
    assert_eq!(
        t.get("usr/local/bin").mode,
        0o755,
        "in no parent: the default"
    );
    assert_eq!(
        t.get("gone").mode,
        0o755,
        "deleted in mid: low's does not show"
    );
    assert_eq!(t.get("hidden").mode, 0o755, "mid's own");
    assert_eq!(
        t.get("hidden/sub").mode,
        0o755,
        "hidden by mid's opaque directory"
    );
    assert!(!t
        .get("hidden")
        .xattrs
        .contains_key("trusted.overlay.opaque"));
}
