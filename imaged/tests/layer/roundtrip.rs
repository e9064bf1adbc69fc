//! unpack → diff → unpack keeps everything, whatever the compression, and diff writes the
//! same bytes for the same tree.

use std::fs;

use berth_imaged::digest::Digest;
use berth_imaged::layer::{archive_dir, diff, unpack, Compression, UnpackOptions};

use crate::support::*;
use crate::unpack::cap_net_raw;

pub fn rich_layer() -> Vec<u8> {
    let deep: String = (0..3).map(|i| format!("{i:x>90}/")).collect();
    // Every directory is listed, so that two unpacks of this layer agree on all times (a
    // parent made on the way gets the time it was made).
    let levels: Vec<E> = (1..=3)
        .map(|n| dir(deep.split_inclusive('/').take(n).collect::<String>()))
        .collect();
    let mut entries = levels;
    entries.extend([
        dir("home"),
        dir("usr"),
        dir("usr/bin"),
        dir("dev"),
        dir("run"),
        dir("etc").mode(0o755).mtime(1_500_000_000),
        file("etc/hostname", "berth\n").mode(0o644),
        dir("home/u")
            .mode(0o750)
            .owner(1000, 1000)
            .mtime(1_400_000_000),
        file("home/u/.profile", "export A=1\n")
            .owner(1000, 1000)
            .mode(0o600),
        file("usr/bin/su", "su").mode(0o4755),
        file("usr/bin/wall", "wall").mode(0o2755).owner(0, 5),
        file("usr/bin/ping", "ping").xattr("security.capability", cap_net_raw()),
        file(
            "usr/bin/big",
            (0..300_000u32).map(|i| (i % 253) as u8).collect::<Vec<_>>(),
        ),
        hardlink("usr/bin/su-again", "usr/bin/su"),
        hardlink("usr/bin/ping-again", "usr/bin/ping"),
        dir("tmp").mode(0o1777),
        dir("shared").mode(0o2775).owner(0, 100),
        file("tagged", "t")
            .xattr("user.origin", "berth")
            .xattr("trusted.mark", [0u8, 1, 2, 255]),
        symlink("bin", "usr/bin"),
        symlink("etc/mtab", "/proc/self/mounts"),
        symlink("dangling", "../nowhere/at/all").owner(4, 4),
        chardev("dev/null", 1, 3),
        chardev("dev/tty", 5, 0).mode(0o620).owner(0, 5),
        blockdev("dev/loop0", 7, 0),
        fifo("run/initctl").mode(0o600),
        file(".wh.deleted", ""),
        dir("opaque").mode(0o711),
        file("opaque/.wh..wh..opq", ""),
        file("opaque/inside", "i"),
        file(format!("{deep}long-name-beyond-ustar"), "deep"),
        symlink("long-target", "t".repeat(150)),
        file("empty", "").mtime(0),
    ]);
    tar(&entries)
}

fn unpack_into(dir: &std::path::Path, layer: &[u8]) {
    unpack(layer, dir, &UnpackOptions::new(LAYER)).unwrap();
}

#[test]
fn unpack_diff_unpack_keeps_everything() {
    if !root() {
        return;
    }
    let mut s = Scratch::new();
    let a = s.dir("a");
    let b = s.dir("b");
    unpack_into(&a, &rich_layer());

    let mut layer2 = Vec::new();
    let report = diff(&a, &mut layer2).unwrap();
    assert_eq!(report.diff_id, Digest::of(&layer2));
    assert_eq!(report.size, layer2.len() as u64);
    let names = tar_names(&layer2);
    assert!(names.contains(&".wh.deleted".to_string()), "{names:?}");
    assert!(
        names.contains(&"opaque/.wh..wh..opq".to_string()),
        "{names:?}"
    );
    let mut sorted = names.clone();
    sorted.sort_by(|x, y| {
        // Directory by directory: compare component lists.
        x.trim_end_matches('/')
            .split('/')
            .cmp(y.trim_end_matches('/').split('/'))
    });
    assert_eq!(names, sorted, "entries in path order");
    assert!(names
        .iter()
        .all(|n| !n.starts_with('/') && !n.starts_with("./")));

    unpack_into(&b, &layer2);
    let (ta, tb) = (Tree::of(&a), Tree::of(&b));
    assert_eq!(ta, tb);
    // What the round trip was about, checked on the result.
    assert_eq!(tb.get("usr/bin/su").mode, 0o4755);
    assert_eq!(
        tb.get("usr/bin/su-again").same_as.as_deref(),
        Some("usr/bin/su")
    );
    assert_eq!(
        tb.get("usr/bin/ping").xattrs["security.capability"],
        cap_net_raw()
    );
    assert_eq!(
        tb.get("usr/bin/ping-again").same_as.as_deref(),
        Some("usr/bin/ping")
    );
    assert_eq!(tb.get("tagged").xattrs["trusted.mark"], [0u8, 1, 2, 255]);
    assert_eq!(tb.get("home/u").mtime, 1_400_000_000);
    assert_eq!(tb.get("dev/tty").rdev, (5, 0));
    assert_eq!(tb.get("dev/loop0").kind, 'b');
    assert_eq!(tb.get("run/initctl").kind, 'p');
    assert_eq!(tb.get("deleted").rdev, (0, 0));
    assert_eq!(tb.get("opaque").xattrs["trusted.overlay.opaque"], b"y");
    assert_eq!(tb.get("dangling").uid, 4);

    // The same tree gives the same bytes: again from a, and from b.
    let mut again = Vec::new();
    assert_eq!(diff(&a, &mut again).unwrap().diff_id, report.diff_id);
    let mut from_b = Vec::new();
    assert_eq!(diff(&b, &mut from_b).unwrap().diff_id, report.diff_id);
    assert_eq!(again, layer2);
}

#[test]
fn gzip_zstd_and_plain_layers() {
    if !root() {
        return;
    }
    let plain = rich_layer();
    let mut s = Scratch::new();
    let mut trees = Vec::new();
    for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let dir = s.dir(&format!("{c:?}"));
        let blob = compress(c, &plain);
        let report = unpack(&blob[..], &dir, &UnpackOptions::new(LAYER)).unwrap();
        assert_eq!(report.compression, c);
        assert_eq!(report.diff_id, Digest::of(&plain), "{c:?}");
        assert_eq!(report.tar_size, plain.len() as u64);
        trees.push(Tree::of(&dir));
    }
    assert_eq!(trees[0], trees[1]);
    assert_eq!(trees[0], trees[2]);
}

#[test]
fn a_reader_that_trickles() {
    if !root() {
        return;
    }
    // A network body hands out whatever it has: here 7 bytes at a time.
    struct Trickle<'a>(&'a [u8]);
    impl std::io::Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.0.len().min(buf.len()).min(7);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }
    let plain = rich_layer();
    let mut s = Scratch::new();
    let (a, b) = (s.dir("a"), s.dir("b"));
    unpack_into(&a, &plain);
    let blob = compress(Compression::Zstd, &plain);
    let report = unpack(Trickle(&blob), &b, &UnpackOptions::new(LAYER)).unwrap();
    assert_eq!(report.diff_id, Digest::of(&plain));
    assert_eq!(Tree::of(&a), Tree::of(&b));
}

#[test]
fn diff_id_covers_bytes_after_the_end_blocks() {
    if !root() {
        return;
    }
    // GNU tar pads archives to 10 KiB records: zeros after the two end blocks are part of
    // the blob and of its diff_id.
    let mut layer = tar(&[file("a", "a")]);
    layer.resize(10240, 0);
    let s = Scratch::new();
    let report = s.unpack(&compress(Compression::Gzip, &layer)).unwrap();
    assert_eq!(report.diff_id, Digest::of(&layer));
    assert_eq!(report.tar_size, 10240);
}

#[test]
fn archive_dir_keeps_whiteout_devices_and_never_follows_symlinks() {
    if !root() {
        return;
    }
    let mut s = Scratch::new();
    let a = s.dir("a");
    unpack_into(&a, &rich_layer());
    // A symlink to the sentinel must be archived as a symlink, not as the sentinel's content.
    std::os::unix::fs::symlink(&s.sentinel, a.join("to-sentinel")).unwrap();
    let mut out = Vec::new();
    let report = archive_dir(&a, &mut out).unwrap();
    assert_eq!(report.diff_id, Digest::of(&out));
    let names = tar_names(&out);
    assert!(
        names.contains(&"deleted".to_string()),
        "a 0:0 device as itself"
    );
    assert!(names.contains(&"to-sentinel".to_string()));
    assert!(!names.iter().any(|n| n.contains("canary")));
    assert!(!names.iter().any(|n| n.contains(".wh.")));
    // The opaque xattr is overlayfs's own and is left out.
    let mut ar = tar::Archive::new(&out[..]);
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        if let Some(pax) = e.pax_extensions().unwrap() {
            for r in pax {
                assert!(!r.unwrap().key().unwrap().contains("overlay"));
            }
        }
    }
    // And it unpacks to the same tree, whiteout devices included (as devices).
    let b = s.dir("b");
    unpack_into(&b, &out);
    let mut ta = Tree::of(&a);
    ta.0.get_mut("opaque").unwrap().xattrs.clear();
    assert_eq!(ta, Tree::of(&b));
}

#[test]
fn diff_refuses_redirects_and_names_that_read_as_whiteouts() {
    if !root() {
        return;
    }
    let mut s = Scratch::new();
    let up = s.dir("upper");
    fs::create_dir(up.join("moved")).unwrap();
    xattr::set(up.join("moved"), "trusted.overlay.redirect", b"/old").unwrap();
    let err = diff(&up, &mut Vec::new()).unwrap_err();
    assert!(err.to_string().contains("redirect"), "{err}");
    assert!(err.to_string().contains("moved"), "{err}");

    let up = s.dir("upper2");
    fs::write(up.join(".wh.not-a-whiteout"), "a file a container made").unwrap();
    let err = diff(&up, &mut Vec::new()).unwrap_err();
    assert!(err.to_string().contains(".wh.not-a-whiteout"), "{err}");
}

#[test]
fn diff_takes_user_overlay_opaque_and_keeps_sockets_out() {
    if !root() {
        return;
    }
    let mut s = Scratch::new();
    let up = s.dir("upper");
    fs::create_dir(up.join("o")).unwrap();
    xattr::set(up.join("o"), "user.overlay.opaque", b"y").unwrap();
    let _sock = std::os::unix::net::UnixListener::bind(up.join("sock")).unwrap();
    let mut out = Vec::new();
    diff(&up, &mut out).unwrap();
    assert_eq!(tar_names(&out), ["o/", "o/.wh..wh..opq"]);
}

#[test]
fn diff_of_a_tree_deeper_than_the_bound_is_an_error_not_a_crash() {
    if !root() {
        return;
    }
    let mut s = Scratch::new();
    let up = s.dir("upper");
    let deep: std::path::PathBuf = std::iter::repeat_n("d", 1100).collect();
    fs::create_dir_all(up.join(&deep)).unwrap();
    let err = diff(&up, &mut Vec::new()).unwrap_err();
    assert!(err.to_string().contains("deeper than"), "{err}");
}
