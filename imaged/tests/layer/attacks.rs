//! Layers that try to put something outside their snapshot, or something a snapshot must not
//! hold. Each must fail with an error naming the layer and the entry, and leave the sentinel
//! directory beside dest (and the host) as it was.

use std::fs;
use std::os::unix::fs::MetadataExt;

use berth_imaged::layer::{Compression, LayerError, Refusal};

use crate::support::*;

fn refused(s: &Scratch, layer: &[u8], entry: &str) -> Refusal {
    let err = assert_refused(s.unpack(layer), entry);
    s.assert_untouched();
    match err {
        LayerError::Refused { reason, .. } => reason,
        other => panic!("expected a refusal, got: {other}"),
    }
}

#[test]
fn dotdot_traversal() {
    if !root() {
        return;
    }
    for name in [
        "../sentinel/evil",
        "a/../../sentinel/evil",
        "/../sentinel/evil",
        "../",
    ] {
        let s = Scratch::new();
        let entry = if name.ends_with('/') {
            dir(name)
        } else {
            file(name, "pwned")
        };
        let r = refused(&s, &tar(&[file("ok", "fine"), entry]), name);
        assert_eq!(r, Refusal::ClimbsOutOfRoot, "{name}");
    }
}

#[test]
fn absolute_symlink_then_write_through_it() {
    if !root() {
        return;
    }
    let s = Scratch::new();
    let target = s.sentinel.to_str().unwrap().to_string();
    let r = refused(
        &s,
        &tar(&[symlink("a", &target), file("a/evil", "pwned")]),
        "a/evil",
    );
    assert!(
        matches!(r, Refusal::SymlinkOutside { ref link, .. } if link == "a"),
        "{r:?}"
    );

    // The same through the host's /etc, with a name no host has.
    let s = Scratch::new();
    let name = format!("berth-layer-test-{}", std::process::id());
    let r = refused(
        &s,
        &tar(&[symlink("etc", "/etc"), file(format!("etc/{name}"), "pwned")]),
        &format!("etc/{name}"),
    );
    assert!(matches!(r, Refusal::SymlinkOutside { .. }), "{r:?}");
    assert!(!std::path::Path::new("/etc").join(&name).exists());
}

#[test]
fn relative_symlink_chain_climbing_out() {
    if !root() {
        return;
    }
    // d/l1 -> l2 -> ../l3 -> ../sentinel: each hop looks harmless on its own.
    let s = Scratch::new();
    let r = refused(
        &s,
        &tar(&[
            dir("d"),
            symlink("d/l1", "l2"),
            symlink("d/l2", "../l3"),
            symlink("l3", "../sentinel"),
            file("d/l1/evil", "pwned"),
        ]),
        "d/l1/evil",
    );
    assert!(
        matches!(r, Refusal::SymlinkOutside { ref link, .. } if link == "l3"),
        "{r:?}"
    );

    // a -> ../../.. straight away.
    let s = Scratch::new();
    let r = refused(
        &s,
        &tar(&[symlink("a", "../../.."), file("a/tmp/evil", "pwned")]),
        "a/tmp/evil",
    );
    assert!(matches!(r, Refusal::SymlinkOutside { .. }), "{r:?}");

    // A loop is refused, not followed forever.
    let s = Scratch::new();
    let r = refused(
        &s,
        &tar(&[symlink("x", "y"), symlink("y", "x"), file("x/evil", "")]),
        "x/evil",
    );
    assert!(matches!(r, Refusal::TooManySymlinks(_)), "{r:?}");
}

#[test]
fn hard_link_to_host_passwd() {
    if !root() {
        return;
    }
    let before = fs::metadata("/etc/passwd").unwrap();
    let s = Scratch::new();
    let r = refused(&s, &tar(&[hardlink("pw", "/etc/passwd")]), "pw");
    // Taken inside the layer, where there is no etc/passwd.
    assert!(
        matches!(r, Refusal::HardLinkTargetMissing { ref target } if target == "/etc/passwd"),
        "{r:?}"
    );

    // Through a symlink to the host's /etc.
    let s = Scratch::new();
    let r = refused(
        &s,
        &tar(&[symlink("etc", "/etc"), hardlink("pw", "etc/passwd")]),
        "pw",
    );
    assert!(
        matches!(r, Refusal::HardLink { ref reason, .. } if matches!(**reason, Refusal::SymlinkOutside { .. })),
        "{r:?}"
    );

    let after = fs::metadata("/etc/passwd").unwrap();
    assert_eq!((before.ino(), before.nlink()), (after.ino(), after.nlink()));
}

#[test]
fn hard_link_climbing_out() {
    if !root() {
        return;
    }
    for target in ["../../x", "../sentinel/canary", "a/../../sentinel/canary"] {
        let s = Scratch::new();
        let canary = fs::metadata(s.sentinel.join("canary")).unwrap();
        let r = refused(&s, &tar(&[dir("a"), hardlink("a/link", target)]), "a/link");
        assert!(
            matches!(r, Refusal::HardLink { ref reason, .. } if **reason == Refusal::ClimbsOutOfRoot),
            "{target}: {r:?}"
        );
        assert_eq!(
            fs::metadata(s.sentinel.join("canary")).unwrap().nlink(),
            canary.nlink()
        );
    }
}

#[test]
fn hard_link_to_a_directory_or_a_whiteout() {
    if !root() {
        return;
    }
    let s = Scratch::new();
    let r = refused(&s, &tar(&[dir("d"), hardlink("l", "d")]), "l");
    assert!(matches!(r, Refusal::HardLinkToDirectory { .. }), "{r:?}");
    let s = Scratch::new();
    let r = refused(&s, &tar(&[file(".wh.w", ""), hardlink("l", "w")]), "l");
    assert!(matches!(r, Refusal::HardLinkToWhiteout { .. }), "{r:?}");
}

#[test]
fn whiteout_outside() {
    if !root() {
        return;
    }
    // ../.wh.x: the whiteout's directory is above the root.
    let s = Scratch::new();
    let r = refused(&s, &tar(&[file("../.wh.sentinel", "")]), "../.wh.sentinel");
    assert_eq!(r, Refusal::ClimbsOutOfRoot);

    // A whiteout of the sentinel's canary through a symlink.
    let s = Scratch::new();
    let target = s.sentinel.to_str().unwrap().to_string();
    let r = refused(
        &s,
        &tar(&[symlink("s", &target), file("s/.wh.canary", "")]),
        "s/.wh.canary",
    );
    assert!(matches!(r, Refusal::SymlinkOutside { .. }), "{r:?}");

    // An opaque marker through a symlink that climbs out.
    let s = Scratch::new();
    let r = refused(
        &s,
        &tar(&[symlink("up", ".."), file("up/sentinel/.wh..wh..opq", "")]),
        "up/sentinel/.wh..wh..opq",
    );
    assert!(matches!(r, Refusal::SymlinkOutside { .. }), "{r:?}");
    assert!(xattr::get(&s.sentinel, "trusted.overlay.opaque")
        .unwrap()
        .is_none());
}

#[test]
fn whiteout_named_dot_or_dotdot() {
    if !root() {
        return;
    }
    for name in [".wh...", "sub/.wh...", ".wh..", ".wh."] {
        let s = Scratch::new();
        let r = refused(&s, &tar(&[dir("sub"), file(name, "")]), name);
        assert!(matches!(r, Refusal::WhiteoutName { .. }), "{name}: {r:?}");
        assert!(fs::read_dir(&s.dest).unwrap().all(|e| {
            let m = e.unwrap().metadata().unwrap();
            m.is_dir()
        }));
    }
    // A whiteout name as a directory would turn into a whiteout at the next diff.
    let s = Scratch::new();
    let r = refused(&s, &tar(&[file(".wh.x/y", "")]), ".wh.x/y");
    assert!(matches!(r, Refusal::WhiteoutAsDirectory { .. }), "{r:?}");
}

#[test]
fn devices_outside_dev() {
    if !root() {
        return;
    }
    let cases: Vec<(Vec<E>, &str)> = vec![
        (vec![chardev("tmp/mem", 1, 1)], "tmp/mem"),
        (vec![blockdev("disk", 8, 0)], "disk"),
        (vec![chardev("dev", 1, 3)], "dev"),
        // dev/ reached through a symlink is where the node would land: tmp/.
        (
            vec![dir("tmp"), symlink("dev", "tmp"), blockdev("dev/sda", 8, 0)],
            "dev/sda",
        ),
        // A second name for a device is a device.
        (
            vec![chardev("dev/null", 1, 3), hardlink("null", "dev/null")],
            "null",
        ),
        (vec![chardev("usr/dev/kmsg", 1, 11)], "usr/dev/kmsg"),
    ];
    for (entries, name) in cases {
        let s = Scratch::new();
        let r = refused(&s, &tar(&entries), name);
        assert!(
            matches!(r, Refusal::DeviceOutsideDev { .. }),
            "{name}: {r:?}"
        );
    }
}

#[test]
fn directory_replaced_by_symlink_then_written_below() {
    if !root() {
        return;
    }
    let s = Scratch::new();
    let target = s.sentinel.to_str().unwrap().to_string();
    let r = refused(
        &s,
        &tar(&[
            dir("d"),
            file("d/f", "in the layer"),
            symlink("d", &target),
            file("d/evil", "pwned"),
        ]),
        "d/evil",
    );
    assert!(
        matches!(r, Refusal::SymlinkOutside { ref link, .. } if link == "d"),
        "{r:?}"
    );

    // The same with a relative link that climbs out.
    let s = Scratch::new();
    let r = refused(
        &s,
        &tar(&[
            dir("d"),
            symlink("d", "../sentinel"),
            dir("d/sub"),
            file("d/sub/evil", ""),
        ]),
        "d/sub",
    );
    assert!(matches!(r, Refusal::SymlinkOutside { .. }), "{r:?}");
}

#[test]
fn entries_replacing_symlinks_do_not_follow_them() {
    if !root() {
        return;
    }
    let s = Scratch::new();
    let canary = s.sentinel.join("canary");
    s.unpack(&tar(&[
        symlink("f", canary.to_str().unwrap()),
        file("f", "replaced the link"),
        symlink("d", s.sentinel.to_str().unwrap()),
        dir("d").mode(0o700),
        symlink("h", canary.to_str().unwrap()),
        hardlink("h", "f"),
        symlink("p", canary.to_str().unwrap()),
        fifo("p"),
    ]))
    .unwrap();
    s.assert_untouched();
    assert_eq!(
        fs::read_to_string(s.dest.join("f")).unwrap(),
        "replaced the link"
    );
    assert!(fs::symlink_metadata(s.dest.join("d")).unwrap().is_dir());
}

#[test]
fn long_names_and_pax_paths() {
    if !root() {
        return;
    }
    // A component longer than NAME_MAX: the system's error, naming the entry.
    let s = Scratch::new();
    let long = "n".repeat(300);
    let err = assert_refused(s.unpack(&tar(&[file(&long, "")])), &long);
    assert!(matches!(err, LayerError::Entry { .. }), "{err}");
    s.assert_untouched();

    // A PAX path hiding a traversal behind an innocent header name.
    let s = Scratch::new();
    let r = refused(
        &s,
        &tar(&[file("innocent", "pwned").pax("path", "../sentinel/evil")]),
        "../sentinel/evil",
    );
    assert_eq!(r, Refusal::ClimbsOutOfRoot);

    // The same in a GNU long name.
    let s = Scratch::new();
    let name = format!("{}/../../../sentinel/evil", "x".repeat(120));
    let r = refused(
        &s,
        &tar(&[file(&name, "pwned").gnu_long_name()]),
        "sentinel/evil",
    );
    assert_eq!(r, Refusal::ClimbsOutOfRoot);

    // A PAX link path that climbs out.
    let s = Scratch::new();
    let r = refused(
        &s,
        &tar(&[
            file("a", "x"),
            hardlink("b", "a").pax("linkpath", "../sentinel/canary"),
        ]),
        "b",
    );
    assert!(matches!(r, Refusal::HardLink { .. }), "{r:?}");

    // A PAX header of 2 MiB: refused before it is held in memory.
    let s = Scratch::new();
    let r = refused(
        &s,
        &tar(&[
            file("ok", ""),
            file("big", "").pax("comment", "z".repeat(2 << 20)),
        ]),
        "after entry \"ok\"",
    );
    assert!(matches!(r, Refusal::HeadersTooLarge(_)), "{r:?}");

    // A NUL in a PAX path.
    let s = Scratch::new();
    let r = refused(&s, &tar(&[file("x", "").pax("path", "a\0b")]), "a");
    assert_eq!(r, Refusal::NulInName);
}

#[test]
fn truncated_tar() {
    if !root() {
        return;
    }
    let layer = tar(&[
        file("first", "1"),
        file("big", vec![7u8; 100_000]),
        file("last", "z"),
    ]);
    // In the middle of big's data.
    let s = Scratch::new();
    let err = assert_refused(s.unpack(&layer[..512 * 3 + 50_000]), "big");
    assert!(matches!(err, LayerError::Stream { .. }), "{err}");
    assert!(err.to_string().contains("truncated"), "{err}");
    s.assert_untouched();
    // In the middle of last's header.
    let s = Scratch::new();
    let cut = layer.len() - 1024 - 512 - 512 + 300;
    let err = assert_refused(s.unpack(&layer[..cut]), "after entry \"big\"");
    assert!(matches!(err, LayerError::Stream { .. }), "{err}");
    s.assert_untouched();
}

#[test]
fn corrupt_or_truncated_gzip() {
    if !root() {
        return;
    }
    let layer = tar(&[
        file("a", "a".repeat(10_000)),
        file(
            "b",
            (0..200_000u32)
                .map(|i| (i * 7 % 251) as u8)
                .collect::<Vec<_>>(),
        ),
    ]);
    let gz = compress(Compression::Gzip, &layer);
    let mut corrupt = gz.clone();
    let mid = corrupt.len() / 2;
    for b in &mut corrupt[mid..mid + 16] {
        *b ^= 0x5a;
    }
    let s = Scratch::new();
    let err = s.unpack(&corrupt).unwrap_err();
    assert!(matches!(err, LayerError::Stream { .. }), "{err}");
    assert!(err.to_string().contains(LAYER), "{err}");
    assert!(err.to_string().contains("entry"), "{err}");
    s.assert_untouched();

    let s = Scratch::new();
    let err = s.unpack(&gz[..gz.len() / 2]).unwrap_err();
    assert!(matches!(err, LayerError::Stream { .. }), "{err}");
    assert!(err.to_string().contains("entry \"b\""), "{err}");
    s.assert_untouched();

    // A stream that is whole until its last bytes: the trailer's CRC must still be checked.
    let s = Scratch::new();
    let mut bad_crc = gz.clone();
    let n = bad_crc.len();
    bad_crc[n - 8] ^= 0xff;
    let err = s.unpack(&bad_crc).unwrap_err();
    assert!(err.to_string().contains(LAYER), "{err}");
    s.assert_untouched();

    // xz: recognised, refused by name.
    let s = Scratch::new();
    let err = s.unpack(b"\xfd7zXZ\0rest").unwrap_err();
    assert!(err.to_string().contains("xz"), "{err}");
}

#[test]
fn odd_entry_types_and_ids() {
    if !root() {
        return;
    }
    let s = Scratch::new();
    let mut vol = file("label", "");
    vol.kind = tar::EntryType::new(b'V');
    let r = refused(&s, &tar(&[vol]), "label");
    assert_eq!(r, Refusal::UnsupportedType('V'));

    let s = Scratch::new();
    let r = refused(
        &s,
        &tar(&[file("big-uid", "").pax("uid", "4294967296")]),
        "big-uid",
    );
    assert_eq!(r, Refusal::IdOutOfRange(1 << 32));

    let s = Scratch::new();
    let r = refused(&s, &tar(&[file("/", "")]), "/");
    assert!(matches!(r, Refusal::ReplacesRoot { .. }), "{r:?}");
}
