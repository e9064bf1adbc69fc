//! A container whose init runs in its own user namespace: no mknod, locked mount flags, sysfs
//! refused without a network namespace, idmapped sources prepared outside.

use nix::sched::CloneFlags;
use serde_json::json;

use super::harness::*;
use crate::rootfs::{open_idmapped_sources, RootfsOptions};

#[test]
fn rootfs_user_namespace_container() {
    let fx = Fixture::new("userns");
    let src = fx.path().join("idsrc");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("f"), "x").unwrap();
    let mut mounts = default_mounts();
    mounts.as_array_mut().unwrap().extend([
        json!({"destination": "/idm", "type": "bind", "source": src, "options": ["rbind", "ro", "idmap"],
               "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 10}],
               "gidMappings": [{"containerID": 0, "hostID": 2000, "size": 10}]}),
        json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}),
    ]);
    let spec = make_spec(
        mounts,
        json!({"maskedPaths": ["/proc/keys", "/proc/acpi"], "readonlyPaths": ["/proc/sys"]}),
        true,
    );
    // Made here, in the initial user namespace, as the runtime would before starting init.
    let sources = open_idmapped_sources(&spec).expect("idmapped sources");
    let setup = Setup {
        opts: RootfsOptions {
            in_user_ns: true,
            ..Default::default()
        },
        extra: Some(CloneFlags::CLONE_NEWIPC),
        pidns: true,
        userns: true,
        sources,
        ..Default::default()
    };
    let run = run_in(
        &fx,
        &spec,
        setup,
        r#"set -ex
        grep -q "0 *0 *65536" /proc/self/uid_map
        fails mknod /tmp/node c 1 3
        grep -q ' /dev/null ' /proc/self/mountinfo
        test -c /dev/null
        echo x > /dev/null
        test -d /sys/class
        fails touch /sys/x
        fails mkdir /sys/fs/cgroup/memory/berth-x
        test "$(stat -c %u:%g /idm/f)" = 1000:2000
        fails touch /idm/new
        fails touch /newfile
        touch /tmp/ok
        test "$(head -c 4 /proc/keys | wc -c)" = 0
        test -z "$(ls -A /proc/acpi)"
        fails sh -c 'echo x > /proc/sys/kernel/hostname'
    "#,
        None,
    );
    run.assert_ok();
}

#[test]
fn rootfs_idmap_inside_user_namespace_without_sources_fails_clearly() {
    let fx = Fixture::new("usernsidm");
    let src = fx.path().join("idsrc");
    std::fs::create_dir(&src).unwrap();
    let spec = make_spec(
        json!([{"destination": "/idm", "type": "bind", "source": src, "options": ["bind", "idmap"],
                "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 10}],
                "gidMappings": [{"containerID": 0, "hostID": 2000, "size": 10}]}]),
        json!({}),
        false,
    );
    let setup = Setup {
        opts: RootfsOptions {
            in_user_ns: true,
            ..Default::default()
        },
        userns: true,
        ..Default::default()
    };
    let run = run_in(&fx, &spec, setup, "true", None);
    run.assert_failed(100, &format!("mount {} to /idm: ", src.display()));
    assert!(run.output.contains("EPERM"), "{}", run.output);
}
