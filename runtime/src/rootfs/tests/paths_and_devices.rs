use serde_json::json;

use super::harness::*;
use crate::rootfs::RootfsOptions;

#[test]
fn rootfs_linux_devices_are_created_with_mode_and_owner() {
    let fx = Fixture::new("devs");
    let spec = make_spec(
        json!([
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755", "ro"]},
        ]),
        json!({"devices": [
            {"path": "/dev/mynull", "type": "c", "major": 1, "minor": 3, "fileMode": 416, "uid": 1000, "gid": 1001},
            {"path": "/dev/sub/dir/myzero", "type": "u", "major": 1, "minor": 5},
            {"path": "/dev/myloop", "type": "b", "major": 7, "minor": 200, "fileMode": 432},
            {"path": "/dev/myfifo", "type": "p"},
            {"path": "/dev/null", "type": "c", "major": 1, "minor": 3, "fileMode": 438, "uid": 7, "gid": 7},
        ]}),
        false,
    );
    let run = run_in(
        &fx,
        &spec,
        Setup::default(),
        r#"set -ex
        test "$(stat -c '%t:%T %a %u:%g' /dev/mynull)" = '1:3 640 1000:1001'
        test "$(stat -c '%t:%T' /dev/sub/dir/myzero)" = '1:5'
        test "$(head -c 2 /dev/sub/dir/myzero | wc -c)" = 2
        test -b /dev/myloop
        test "$(stat -c '%t:%T %a' /dev/myloop)" = '7:c8 660'
        test -p /dev/myfifo
        test "$(stat -c '%u:%g' /dev/null)" = 7:7
        test -c /dev/zero
        grep ' /dev ' /proc/self/mountinfo | grep -q ' ro,'
        fails touch /dev/newfile
    "#,
        None,
    );
    run.assert_ok();
}

#[test]
fn rootfs_devices_in_user_ns_mode_are_bind_mounts_of_host_nodes() {
    let fx = Fixture::new("devbind");
    let spec = make_spec(
        json!([
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]},
        ]),
        json!({}),
        false,
    );
    let setup = Setup {
        opts: RootfsOptions {
            in_user_ns: true,
            ..Default::default()
        },
        ..Default::default()
    };
    let run = run_in(
        &fx,
        &spec,
        setup,
        r#"set -ex
        grep -q ' /dev/null ' /proc/self/mountinfo
        grep -q ' /dev/urandom ' /proc/self/mountinfo
        test -c /dev/null
        echo x > /dev/null
    "#,
        None,
    );
    run.assert_ok();
}

#[test]
fn rootfs_dev_bind_mount_skips_device_setup() {
    let fx = Fixture::new("devhost");
    let spec = make_spec(
        json!([
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "bind", "source": "/dev", "options": ["rbind"]},
        ]),
        json!({}),
        false,
    );
    // The host's /dev is used as is: no ptmx symlink is forced onto it.
    let run = run_in(
        &fx,
        &spec,
        Setup::default(),
        r#"set -ex
        test -c /dev/null
        test -c /dev/ptmx
    "#,
        None,
    );
    run.assert_ok();
}

#[test]
fn rootfs_masked_and_readonly_paths() {
    let fx = Fixture::new("masked");
    std::fs::create_dir_all(fx.rootfs.join("etc/secret-dir")).unwrap();
    std::fs::write(fx.rootfs.join("etc/secret-dir/key"), "k").unwrap();
    std::fs::write(fx.rootfs.join("etc/secret-file"), "s").unwrap();
    std::fs::create_dir_all(fx.rootfs.join("etc/ro-dir")).unwrap();
    let mut mounts = default_mounts();
    mounts
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}));
    let spec = make_spec(
        mounts,
        json!({
            "maskedPaths": ["/proc/keys", "/proc/acpi", "/etc/secret-dir", "/etc/secret-file", "/does/not/exist", "/etc/secret-file"],
            "readonlyPaths": ["/proc/sys", "/proc/sysrq-trigger", "/etc/ro-dir", "/nope"],
        }),
        false,
    );
    let setup = Setup {
        extra: Some(nix::sched::CloneFlags::CLONE_NEWIPC),
        pidns: true,
        ..Default::default()
    };
    let run = run_in(
        &fx,
        &spec,
        setup,
        r#"set -ex
        test "$(cat /etc/secret-file)" = ""
        test "$(ls -A /etc/secret-dir | wc -l)" = 0
        fails touch /etc/secret-dir/x
        test "$(head -c 10 /proc/keys | wc -c)" = 0
        fails sh -c 'echo host > /proc/sys/kernel/hostname'
        grep ' /proc/sys ' /proc/self/mountinfo | grep -q ' ro,'
        fails touch /etc/ro-dir/x
        touch /etc/rw-ok
        touch /tmp/rw-ok
    "#,
        None,
    );
    run.assert_ok();
    assert_eq!(
        std::fs::read_to_string(fx.rootfs.join("etc/secret-file")).unwrap(),
        "s"
    );
}

#[test]
fn rootfs_proc_cannot_be_covered() {
    let fx = Fixture::new("proccover");
    let spec = make_spec(
        json!([
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/proc", "type": "tmpfs", "source": "tmpfs"},
        ]),
        json!({}),
        false,
    );
    let run = run_in(&fx, &spec, Setup::default(), "true", None);
    run.assert_failed(
        100,
        "mount tmpfs to /proc: /proc cannot be mounted because it is not of type proc",
    );

    let spec2 = make_spec(
        json!([
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/proc/self", "type": "tmpfs", "source": "tmpfs"},
        ]),
        json!({}),
        false,
    );
    let run = run_in(&fx, &spec2, Setup::default(), "true", None);
    run.assert_failed(100, "is inside /proc");
}

#[test]
fn rootfs_errors_name_the_mount() {
    let fx = Fixture::new("errname");
    let spec = make_spec(
        json!([{"destination": "/data", "type": "bind", "source": "/nonexistent/berth/src", "options": ["rbind"]}]),
        json!({}),
        false,
    );
    let run = run_in(&fx, &spec, Setup::default(), "true", None);
    run.assert_failed(
        100,
        "mount /nonexistent/berth/src to /data: stat /nonexistent/berth/src: ENOENT",
    );
    let spec = make_spec(
        json!([{"destination": "/x", "type": "nosuchfs", "source": "none"}]),
        json!({}),
        false,
    );
    let run = run_in(&fx, &spec, Setup::default(), "true", None);
    run.assert_failed(100, "mount none to /x: mount /x: ENODEV");

    for (mount, expect) in [
        (
            json!({"destination": "/", "type": "tmpfs", "source": "tmpfs"}),
            "mount tmpfs to /: mountpoint is the rootfs itself",
        ),
        (
            json!({"destination": "/idm", "type": "bind", "source": "/etc", "options": ["bind", "idmap"]}),
            "mount /etc to /idm: idmapped mount needs both uidMappings and gidMappings",
        ),
        (
            json!({"destination": "/d", "type": "nosuchtype"}),
            "mount nosuchtype to /d: mount /d: ENODEV",
        ),
    ] {
        let spec = make_spec(json!([mount]), json!({}), false);
        let run = run_in(&fx, &spec, Setup::default(), "true", None);
        run.assert_failed(100, expect);
    }
}

#[test]
fn rootfs_relative_masked_path_is_an_error() {
    let fx = Fixture::new("relmask");
    let spec = make_spec(
        json!([{"destination": "/proc", "type": "proc", "source": "proc"}]),
        json!({"maskedPaths": ["masked-relpath"]}),
        false,
    );
    let run = run_in(&fx, &spec, Setup::default(), "true", None);
    run.assert_failed(
        102,
        "linux.maskedPaths entry \"masked-relpath\" is not an absolute path",
    );
}

#[test]
fn rootfs_masked_symlink_loop_is_an_error() {
    let fx = Fixture::new("maskloop");
    std::os::unix::fs::symlink("../masked-symlink", fx.rootfs.join("masked-symlink")).unwrap();
    let spec = make_spec(
        json!([{"destination": "/proc", "type": "proc", "source": "proc"}]),
        json!({"maskedPaths": ["/masked-symlink"]}),
        false,
    );
    let run = run_in(&fx, &spec, Setup::default(), "true", None);
    run.assert_failed(102, "mask /masked-symlink: open /masked-symlink: ELOOP");
}
