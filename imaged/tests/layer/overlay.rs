//! Whiteouts and opaque directories proved the only way that counts: through a real overlayfs
//! mount. Mounts are made in a thread that first moves into a private mount namespace, so the
//! host never sees them and they go away with the thread even when a check fails.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use berth_imaged::layer::{diff, unpack, UnpackOptions};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};

use crate::support::*;

/// Runs `f` in a new thread inside a private mount namespace; a panic in it is re-raised.
fn in_private_mount_namespace<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            unshare(CloneFlags::CLONE_NEWNS).expect("unshare(CLONE_NEWNS)");
            mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                None::<&str>,
            )
            .expect("make / private");
            f()
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

/// An overlayfs mount, unmounted on drop.
struct Overlay(PathBuf);

impl Overlay {
    fn mount(target: &Path, options: &str) -> Overlay {
        mount(
            Some("overlay"),
            target,
            Some("overlay"),
            MsFlags::empty(),
            Some(options),
        )
        .unwrap_or_else(|e| panic!("mount overlay {options}: {e}"));
        Overlay(target.to_path_buf())
    }

    /// Read-only, from lower directories given top first.
    fn lowers(target: &Path, lowers: &[&Path]) -> Overlay {
        let l: Vec<String> = lowers.iter().map(|p| p.display().to_string()).collect();
        Overlay::mount(target, &format!("lowerdir={}", l.join(":")))
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        let _ = umount2(&self.0, MntFlags::MNT_DETACH);
    }
}

fn overlay_available() -> bool {
    fs::read_to_string("/proc/filesystems")
        .map(|f| f.lines().any(|l| l.ends_with("\toverlay")))
        .unwrap_or(false)
        || berth_tests::skip("overlayfs is not available (modprobe overlay)")
}

fn lower_layer() -> Vec<u8> {
    tar(&[
        dir("keep"),
        file("keep/a", "a"),
        file("keep/b", "b"),
        file("gone", "gone"),
        dir("opq"),
        file("opq/old", "old"),
        file("opq/sub/x", "x"),
        dir("wd"),
        file("wd/x", "x"),
        dir("again"),
        file("again/old", "old"),
    ])
}

fn exists(p: PathBuf) -> bool {
    fs::symlink_metadata(p).is_ok()
}

#[test]
fn whiteouts_and_opaque_dirs_hide_the_lower_layer() {
    if !root() || !overlay_available() {
        return;
    }
    let mut s = Scratch::new();
    let (l1, l2, mnt) = (s.dir("l1"), s.dir("l2"), s.dir("mnt"));
    unpack(&lower_layer()[..], &l1, &UnpackOptions::new("l1")).unwrap();
    let upper = tar(&[
        file(".wh.gone", ""),
        file("keep/.wh.b", ""),
        file("keep/c", "c"),
        dir("opq"),
        file("opq/.wh..wh..opq", ""),
        file("opq/new", "new"),
        file(".wh.wd", ""),
        // Deleted and made again in the same layer, the other way to say opaque.
        file(".wh.again", ""),
        dir("again"),
        file("again/new", "new"),
    ]);
    unpack(&upper[..], &l2, &UnpackOptions::new("l2")).unwrap();

    in_private_mount_namespace(|| {
        let _m = Overlay::lowers(&mnt, &[&l2, &l1]);
        assert!(!exists(mnt.join("gone")), "a whiteout deletes a file");
        assert!(!exists(mnt.join("wd")), "a whiteout deletes a directory");
        assert!(exists(mnt.join("keep/a")));
        assert!(
            !exists(mnt.join("keep/b")),
            "a whiteout in a merged directory"
        );
        assert_eq!(fs::read_to_string(mnt.join("keep/c")).unwrap(), "c");
        assert_eq!(fs::read_to_string(mnt.join("opq/new")).unwrap(), "new");
        assert!(
            !exists(mnt.join("opq/old")),
            "an opaque directory hides the lower's files"
        );
        assert!(!exists(mnt.join("opq/sub")), "and its directories");
        assert!(exists(mnt.join("again/new")));
        assert!(
            !exists(mnt.join("again/old")),
            "whiteout then directory is opaque"
        );
    });
}

#[test]
fn a_container_s_changes_survive_diff_and_unpack() {
    if !root() || !overlay_available() {
        return;
    }
    let mut s = Scratch::new();
    let (l1, up, work, mnt, l2) = (
        s.dir("l1"),
        s.dir("upper"),
        s.dir("work"),
        s.dir("mnt"),
        s.dir("l2"),
    );
    unpack(&lower_layer()[..], &l1, &UnpackOptions::new("l1")).unwrap();

    let (seen, layer) = in_private_mount_namespace(|| {
        let seen = {
            let _m = Overlay::mount(
                &mnt,
                &format!(
                    "lowerdir={},upperdir={},workdir={},redirect_dir=off,metacopy=off,index=off",
                    l1.display(),
                    up.display(),
                    work.display()
                ),
            );
            // What a container does.
            fs::remove_file(mnt.join("gone")).unwrap();
            fs::remove_dir_all(mnt.join("opq")).unwrap();
            fs::create_dir(mnt.join("opq")).unwrap();
            fs::write(mnt.join("opq/new"), "new").unwrap();
            fs::remove_file(mnt.join("keep/b")).unwrap();
            fs::remove_file(mnt.join("wd/x")).unwrap();
            fs::write(mnt.join("keep/c"), "c").unwrap();
            fs::hard_link(mnt.join("keep/c"), mnt.join("keep/c2")).unwrap();
            fs::set_permissions(
                mnt.join("keep/a"),
                std::os::unix::fs::PermissionsExt::from_mode(0o600),
            )
            .unwrap();
            xattr::set(mnt.join("keep/a"), "user.note", b"changed").unwrap();
            std::os::unix::fs::symlink("keep/a", mnt.join("link")).unwrap();
            Tree::of(&mnt)
        };
        let mut layer = Vec::new();
        diff(&up, &mut layer).unwrap();
        (seen, layer)
    });

    let names = tar_names(&layer);
    for want in [
        ".wh.gone",
        "opq/.wh..wh..opq",
        "keep/.wh.b",
        "wd/.wh.x",
        "keep/c2",
    ] {
        assert!(names.contains(&want.to_string()), "{want} not in {names:?}");
    }
    let mut ar = tar::Archive::new(&layer[..]);
    let c2 = ar
        .entries()
        .unwrap()
        .map(|e| e.unwrap())
        .find(|e| &*e.path_bytes() == b"keep/c2")
        .unwrap();
    assert_eq!(c2.header().entry_type(), tar::EntryType::Link);
    assert!(!names.iter().any(|n| n.starts_with("work")));

    unpack(&layer[..], &l2, &UnpackOptions::new("l2")).unwrap();
    in_private_mount_namespace(|| {
        let _m = Overlay::lowers(&mnt, &[&l2, &l1]);
        let now = Tree::of(&mnt);
        assert_eq!(
            now, seen,
            "the committed image shows what the container saw"
        );
        assert!(!exists(mnt.join("opq/old")));
        assert!(!exists(mnt.join("gone")));
        let (c, c2) = (
            fs::metadata(mnt.join("keep/c")).unwrap(),
            fs::metadata(mnt.join("keep/c2")).unwrap(),
        );
        assert_eq!(c.ino(), c2.ino());
        assert_eq!(
            fs::metadata(mnt.join("keep/a")).unwrap().mode() & 0o777,
            0o600
        );
    });
}
