//! Image-controlled symlinks must never make a mount, a device or a masked path land outside
//! the rootfs.

use serde_json::json;

use super::harness::*;

#[test]
fn rootfs_absolute_symlink_mount_target_stays_inside() {
    let fx = Fixture::new("absesc");
    // On the host this link points at the host dir; in the container at /<that path>.
    std::os::unix::fs::symlink(&fx.host, fx.rootfs.join("data")).unwrap();
    let spec = make_spec(
        json!([
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/data/mnt", "type": "tmpfs", "source": "tmpfs"},
        ]),
        json!({}),
        false,
    );
    let inside = fx.host.display().to_string();
    let script =
        format!("set -ex\ngrep -q ' {inside}/mnt ' /proc/self/mountinfo\ntouch /data/mnt/x\n");
    run_in(&fx, &spec, Setup::default(), &script, None).assert_ok();
    assert!(fx.host_is_empty(), "mount target escaped the rootfs");
    assert!(fx
        .rootfs
        .join(fx.host.strip_prefix("/").unwrap())
        .join("mnt")
        .is_dir());
}

#[test]
fn rootfs_dotdot_symlink_mount_target_stays_inside() {
    let fx = Fixture::new("dotesc");
    // rootfs/up -> ../host would be the host dir if followed on the host.
    std::os::unix::fs::symlink("../host", fx.rootfs.join("up")).unwrap();
    std::os::unix::fs::symlink("../../../../../../../host", fx.rootfs.join("etc/deep")).unwrap();
    let src = fx.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let spec = make_spec(
        json!([
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/up/bound", "type": "bind", "source": src, "options": ["bind"]},
            {"destination": "/etc/deep/t", "type": "tmpfs", "source": "tmpfs"},
            {"destination": "/../../../host/direct", "type": "tmpfs", "source": "tmpfs"},
        ]),
        json!({}),
        false,
    );
    run_in(
        &fx,
        &spec,
        Setup::default(),
        "set -ex\ntest -d /host/bound\ntest -d /host/t\ntest -d /host/direct\n",
        None,
    )
    .assert_ok();
    assert!(fx.host_is_empty(), "mount target escaped the rootfs");
}

#[test]
fn rootfs_symlinked_device_path_stays_inside() {
    let fx = Fixture::new("devesc");
    std::os::unix::fs::symlink("../host", fx.rootfs.join("devlink")).unwrap();
    std::os::unix::fs::symlink(&fx.host, fx.rootfs.join("devabs")).unwrap();
    // An image /dev/null that is a symlink to a host file must become the real device.
    std::fs::create_dir_all(fx.rootfs.join("dev")).unwrap();
    let victim = fx.path().join("victim");
    std::fs::write(&victim, "keep").unwrap();
    std::os::unix::fs::symlink(&victim, fx.rootfs.join("dev/null")).unwrap();
    let spec = make_spec(
        json!([{"destination": "/proc", "type": "proc", "source": "proc"}]),
        json!({"devices": [
            {"path": "/devlink/mydev", "type": "c", "major": 1, "minor": 3},
            {"path": "/devabs/other", "type": "c", "major": 1, "minor": 5},
        ]}),
        false,
    );
    run_in(
        &fx,
        &spec,
        Setup::default(),
        "set -ex\ntest -c /host/mydev\ntest -c /dev/null\nfails test -L /dev/null\n",
        None,
    )
    .assert_ok();
    assert!(fx.host_is_empty(), "device node escaped the rootfs");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
}

#[test]
fn rootfs_magic_link_target_is_refused() {
    let fx = Fixture::new("magic");
    let target = format!("/proc/self/root{}", fx.host.display());
    std::os::unix::fs::symlink(&target, fx.rootfs.join("magic")).unwrap();
    let spec = make_spec(
        json!([
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/magic/x", "type": "tmpfs", "source": "tmpfs"},
        ]),
        json!({}),
        false,
    );
    let run = run_in(&fx, &spec, Setup::default(), "true", None);
    run.assert_failed(100, "mount tmpfs to /magic/x: ");
    assert!(
        fx.host_is_empty(),
        "mount target escaped through a magic link"
    );
}

#[test]
fn rootfs_proc_on_symlink_is_refused() {
    let fx = Fixture::new("procsym");
    std::fs::remove_dir(fx.rootfs.join("proc")).unwrap();
    std::os::unix::fs::symlink("../host", fx.rootfs.join("proc")).unwrap();
    let spec = make_spec(
        json!([{"destination": "/proc", "type": "proc", "source": "proc"}]),
        json!({}),
        false,
    );
    let run = run_in(&fx, &spec, Setup::default(), "true", None);
    run.assert_failed(
        100,
        "mount proc to /proc: proc must be mounted on an ordinary directory",
    );
    assert!(fx.host_is_empty());
}

#[test]
fn rootfs_masked_path_symlink_stays_inside() {
    let fx = Fixture::new("maskesc");
    let victim = fx.path().join("victim-dir");
    std::fs::create_dir(&victim).unwrap();
    std::fs::write(victim.join("keep"), "k").unwrap();
    std::os::unix::fs::symlink(&victim, fx.rootfs.join("etc/masklink")).unwrap();
    let spec = make_spec(
        json!([{"destination": "/proc", "type": "proc", "source": "proc"}]),
        json!({"maskedPaths": ["/etc/masklink"], "readonlyPaths": ["/etc/masklink"]}),
        false,
    );
    // The link's target does not exist inside the container, so there is nothing to mask.
    run_in(
        &fx,
        &spec,
        Setup::default(),
        "set -ex\nfails test -e /etc/masklink\n",
        None,
    )
    .assert_ok();
    assert!(victim.join("keep").exists());
}
