use nix::sched::CloneFlags;
use serde_json::json;

use super::harness::*;
use crate::rootfs::{CgroupView, RootfsOptions};

#[test]
fn rootfs_standard_mounts_proc_sysfs_tmpfs_devpts_mqueue() {
    let fx = Fixture::new("std");
    let spec = make_spec(default_mounts(), json!({}), false);
    let setup = Setup {
        extra: Some(CloneFlags::CLONE_NEWIPC),
        pidns: true,
        ..Default::default()
    };
    let run = run_in(
        &fx,
        &spec,
        setup,
        r#"set -ex
        test "$$" = 1
        grep -q '^proc /proc proc ' /proc/mounts
        grep -q '^sysfs /sys sysfs ro,' /proc/mounts
        grep -q '^devpts /dev/pts devpts ' /proc/mounts
        grep -q '^mqueue /dev/mqueue mqueue ' /proc/mounts
        grep ' /dev tmpfs ' /proc/mounts | grep -q 'size=65536k'
        grep ' /dev tmpfs ' /proc/mounts | grep -q 'mode=755'
        grep ' /dev/shm ' /proc/self/mountinfo | grep -q 'nosuid,nodev,noexec'
        test -c /dev/null && test -c /dev/zero && test -c /dev/full
        test -c /dev/random && test -c /dev/urandom && test -c /dev/tty
        test "$(stat -c %a /dev/null)" = 666
        test "$(readlink /dev/ptmx)" = pts/ptmx
        test "$(readlink /dev/fd)" = /proc/self/fd
        test "$(readlink /dev/stdin)" = /proc/self/fd/0
        test "$(readlink /dev/stderr)" = /proc/self/fd/2
        echo x > /dev/null
        test "$(head -c 3 /dev/zero | wc -c)" = 3
        test "$(wc -l < /proc/self/mountinfo)" -lt 20
    "#,
        None,
    );
    run.assert_ok();
}

#[test]
fn rootfs_bind_mounts_dir_file_and_readonly() {
    let fx = Fixture::new("bind");
    let src = fx.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("hello"), "hello\n").unwrap();
    let rw = fx.path().join("rw");
    std::fs::create_dir(&rw).unwrap();
    let file = fx.path().join("afile");
    std::fs::write(&file, "file-content\n").unwrap();
    let link = fx.path().join("alink");
    std::os::unix::fs::symlink("../run/target", &link).unwrap();
    let spec = make_spec(
        json!([
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/data/ro", "type": "bind", "source": src, "options": ["rbind", "ro"]},
            {"destination": "/data/rw", "type": "none", "source": rw, "options": ["bind", "rw"]},
            {"destination": "/etc/new/hostfile", "source": file, "options": ["bind", "ro", "nosuid"]},
            {"destination": "/etc/linked", "type": "bind", "source": link, "options": ["rbind", "copy-symlink"]},
        ]),
        json!({}),
        false,
    );
    let run = run_in(
        &fx,
        &spec,
        Setup::default(),
        r#"set -ex
        test "$(cat /data/ro/hello)" = hello
        fails touch /data/ro/new
        grep ' /data/ro ' /proc/self/mountinfo | grep -q ' ro,'
        touch /data/rw/created-inside
        test -f /etc/new/hostfile
        test "$(cat /etc/new/hostfile)" = file-content
        fails sh -c 'echo x >> /etc/new/hostfile'
        grep ' /etc/new/hostfile ' /proc/self/mountinfo | grep -q 'ro,nosuid'
        test "$(readlink /etc/linked)" = ../run/target
    "#,
        None,
    );
    run.assert_ok();
    assert!(
        rw.join("created-inside").exists(),
        "write through rw bind did not reach the source"
    );
    assert!(!src.join("new").exists());
    // The file target was created as a file, inside the rootfs.
    assert!(fx.rootfs.join("etc/new/hostfile").is_file());
}

#[test]
fn rootfs_mount_options_show_in_mountinfo() {
    let fx = Fixture::new("opts");
    std::fs::create_dir_all(fx.rootfs.join("srv/a/sub")).unwrap();
    let srv_a = fx.rootfs.join("srv/a");
    let spec = make_spec(
        json!([
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/t", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "nodev", "noexec", "noatime", "size=1m", "mode=700"]},
            {"destination": "/s", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosymfollow", "sync", "dirsync"]},
            {"destination": "/srv/a/sub", "type": "tmpfs", "source": "tmpfs"},
            {"destination": "/rec", "type": "bind", "source": srv_a, "options": ["rbind", "rro", "rnosuid"]},
            {"destination": "/tro", "type": "tmpfs", "source": "tmpfs", "options": ["ro"]},
        ]),
        json!({}),
        false,
    );
    let run = run_in(
        &fx,
        &spec,
        Setup::default(),
        r#"set -ex
        grep ' /t ' /proc/self/mountinfo | grep -q ' rw,nosuid,nodev,noexec,noatime '
        grep ' /t ' /proc/self/mountinfo | grep -q 'size=1024k'
        test "$(stat -c %a /t)" = 700
        grep ' /s ' /proc/self/mountinfo
        grep ' /s ' /proc/self/mountinfo | grep -q 'nosymfollow'
        grep ' /s ' /proc/self/mountinfo | grep -q ' - tmpfs tmpfs rw,sync,dirsync'
        grep ' /rec ' /proc/self/mountinfo | grep -q ' ro,nosuid'
        grep ' /rec/sub ' /proc/self/mountinfo | grep -q ' ro,nosuid'
        fails touch /rec/sub/x
        touch /srv/a/sub/x
        grep ' /tro ' /proc/self/mountinfo | grep -q ' ro,'
        fails touch /tro/x
    "#,
        None,
    );
    run.assert_ok();
}

#[test]
fn rootfs_tmpcopyup_keeps_image_content() {
    let fx = Fixture::new("copyup");
    let d = fx.rootfs.join("var/lib/app");
    std::fs::create_dir_all(d.join("sub")).unwrap();
    std::fs::write(d.join("a"), "from-image\n").unwrap();
    std::os::unix::fs::symlink("a", d.join("link")).unwrap();
    std::fs::write(d.join("sub/b"), "deep\n").unwrap();
    let spec = make_spec(
        json!([
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/var/lib/app", "type": "tmpfs", "source": "tmpfs", "options": ["tmpcopyup", "nosuid"]},
        ]),
        json!({}),
        false,
    );
    let run = run_in(
        &fx,
        &spec,
        Setup::default(),
        r#"set -ex
        grep ' /var/lib/app ' /proc/self/mountinfo | grep -q ' - tmpfs '
        test "$(cat /var/lib/app/a)" = from-image
        test "$(cat /var/lib/app/sub/b)" = deep
        test "$(readlink /var/lib/app/link)" = a
        echo new > /var/lib/app/written
    "#,
        None,
    );
    run.assert_ok();
    assert!(
        !d.join("written").exists(),
        "tmpcopyup wrote through to the image"
    );
}

#[test]
fn rootfs_propagation_rslave_sees_host_mounts_rprivate_does_not() {
    let fx = Fixture::new("prop");
    let shared = fx.path().join("shared");
    std::fs::create_dir_all(shared.join("sub")).unwrap();
    crate::rootfs::sys::mount(Some(shared.as_os_str()), &shared, None, libc::MS_BIND, None)
        .unwrap();
    let _outer = HostMount(shared.clone());
    crate::rootfs::sys::mount(None, &shared, None, libc::MS_SHARED, None).unwrap();
    let spec = make_spec(
        json!([
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/slave", "type": "bind", "source": shared, "options": ["rbind", "rslave"]},
            {"destination": "/private", "type": "bind", "source": shared, "options": ["rbind", "rprivate"]},
        ]),
        json!({}),
        false,
    );
    let sub = shared.join("sub");
    let mut on_ready = || {
        crate::rootfs::sys::mount(Some("tmpfs".as_ref()), &sub, Some("tmpfs"), 0, None).unwrap();
        let guard = HostMount(sub.clone());
        std::fs::write(sub.join("marker"), "m").unwrap();
        Some(guard)
    };
    let run = run_in(
        &fx,
        &spec,
        Setup::default(),
        r#"
        echo ready; read go
        set -ex
        test -e /slave/sub/marker
        fails test -e /private/sub/marker
    "#,
        Some(&mut on_ready),
    );
    run.assert_ok();
}

#[test]
fn rootfs_root_propagation_shared_and_unbindable() {
    for (prop, expect) in [("rshared", "shared:"), ("unbindable", "unbindable")] {
        let fx = Fixture::new("rootprop");
        let spec = make_spec(
            json!([{"destination": "/proc", "type": "proc", "source": "proc"}]),
            json!({"rootfsPropagation": prop}),
            false,
        );
        let script =
            format!("set -ex\nawk '$5 == \"/\"' /proc/self/mountinfo | grep -q '{expect}'");
        run_in(&fx, &spec, Setup::default(), &script, None).assert_ok();
    }
}

#[test]
fn rootfs_readonly_root_keeps_tmpfs_writable() {
    let fx = Fixture::new("roroot");
    let spec = make_spec(
        json!([
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"},
        ]),
        json!({}),
        true,
    );
    let run = run_in(
        &fx,
        &spec,
        Setup::default(),
        r#"set -ex
        fails touch /newfile
        touch /tmp/ok
        awk '$5 == "/"' /proc/self/mountinfo | grep -q ' ro,'
    "#,
        None,
    );
    run.assert_ok();
    assert!(!fx.rootfs.join("newfile").exists());
}

#[test]
fn rootfs_no_pivot_hides_host_proc_and_sys() {
    let fx = Fixture::new("nopivot");
    let spec = make_spec(default_mounts(), json!({}), false);
    let setup = Setup {
        opts: RootfsOptions {
            no_pivot: true,
            ..Default::default()
        },
        extra: Some(CloneFlags::CLONE_NEWIPC),
        pidns: true,
        ..Default::default()
    };
    let run = run_in(
        &fx,
        &spec,
        setup,
        r#"set -ex
        test -x /bin/sh
        test -c /dev/null
        test "$(grep -c ' - proc ' /proc/self/mountinfo)" = 1
        test "$(grep -c ' - sysfs ' /proc/self/mountinfo)" = 1
    "#,
        None,
    );
    run.assert_ok();
}

#[test]
fn rootfs_no_pivot_refuses_private_root_propagation() {
    let fx = Fixture::new("nopivotpriv");
    let spec = make_spec(json!([]), json!({"rootfsPropagation": "rprivate"}), false);
    let setup = Setup {
        opts: RootfsOptions {
            no_pivot: true,
            ..Default::default()
        },
        ..Default::default()
    };
    let run = run_in(&fx, &spec, setup, "true", None);
    run.assert_failed(100, "not safe without pivot_root");
}

#[test]
fn rootfs_unknown_root_propagation_is_an_error() {
    let fx = Fixture::new("badprop");
    let spec = make_spec(json!([]), json!({"rootfsPropagation": "sideways"}), false);
    let run = run_in(&fx, &spec, Setup::default(), "true", None);
    run.assert_failed(100, "rootfsPropagation \"sideways\" is not supported");
}

#[test]
fn rootfs_cgroup_v1_binds_own_cgroups() {
    let fx = Fixture::new("cgv1");
    let mut mounts = default_mounts();
    mounts.as_array_mut().unwrap().push(json!(
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}));
    let spec = make_spec(mounts, json!({}), false);
    let layout = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let v1 = layout.lines().any(|l| l.contains(" - cgroup "));
    let script = if v1 {
        r#"set -ex
        grep ' /sys/fs/cgroup ' /proc/self/mountinfo | grep -q ' - tmpfs '
        for c in $(cut -d: -f2 /proc/self/cgroup | tr , ' '); do
            case $c in name=*) c=${c#name=};; esac
            test -d /sys/fs/cgroup/$c
            grep -q " /sys/fs/cgroup/$c " /proc/self/mountinfo || test -L /sys/fs/cgroup/$c
        done
        test -e /sys/fs/cgroup/memory/cgroup.procs
        fails mkdir /sys/fs/cgroup/memory/x
        fails mkdir /sys/fs/cgroup/x
        "#
    } else {
        r#"set -ex
        test -e /sys/fs/cgroup/cgroup.procs
        fails mkdir /sys/fs/cgroup/x
        "#
    };
    let setup = Setup {
        opts: RootfsOptions {
            cgroups: Some(own_cgroups()),
            ..Default::default()
        },
        extra: Some(CloneFlags::CLONE_NEWIPC),
        ..Default::default()
    };
    run_in(&fx, &spec, setup, script, None).assert_ok();
}

/// The host layout and this test process's own cgroups, standing in for a container's.
fn own_cgroups() -> CgroupView {
    let own = berth_cgroups::CgroupManager::of_process(std::process::id()).expect("own cgroups");
    CgroupView {
        host: own.host().expect("host cgroup layout").clone(),
        paths: own.paths().clone(),
    }
}

#[test]
fn rootfs_cgroup_mount_without_the_containers_cgroups_names_the_mount() {
    let fx = Fixture::new("cgnone");
    let spec = make_spec(
        json!([{"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup"}]),
        json!({}),
        false,
    );
    let run = run_in(&fx, &spec, Setup::default(), "true", None);
    run.assert_failed(
        100,
        "cgroup mount on /sys/fs/cgroup: the container's cgroups are unknown",
    );
}

#[test]
fn rootfs_cgroup_with_cgroupns_mounts_cgroup_filesystems() {
    let fx = Fixture::new("cgns");
    let mut mounts = default_mounts();
    mounts.as_array_mut().unwrap().push(json!(
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["ro"]}));
    let spec = make_spec(mounts, json!({}), false);
    let setup = Setup {
        opts: RootfsOptions {
            cgroup_ns: true,
            cgroups: Some(own_cgroups()),
            ..Default::default()
        },
        extra: Some(CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWCGROUP),
        ..Default::default()
    };
    let run = run_in(
        &fx,
        &spec,
        setup,
        r#"set -ex
        grep ' /sys/fs/cgroup' /proc/self/mountinfo | grep -Eq ' - cgroup2? '
        grep ' /sys/fs/cgroup' /proc/self/mountinfo | grep -E ' - cgroup2? ' | grep -q ' ro,'
    "#,
        None,
    );
    run.assert_ok();
}

#[test]
fn rootfs_idmap_mount_shows_mapped_owner() {
    let fx = Fixture::new("idmap");
    let src = fx.path().join("idsrc");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("f"), "x").unwrap();
    nix::unistd::chown(&src.join("f"), Some(0.into()), Some(0.into())).unwrap();
    let spec = make_spec(
        json!([
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/idm", "type": "bind", "source": src, "options": ["bind", "idmap"],
             "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 10}],
             "gidMappings": [{"containerID": 0, "hostID": 2000, "size": 10}]},
        ]),
        json!({}),
        false,
    );
    let run = run_in(
        &fx,
        &spec,
        Setup::default(),
        r#"set -ex
        test "$(stat -c %u:%g /idm/f)" = 1000:2000
        grep ' /idm ' /proc/self/mountinfo | grep -q idmapped
    "#,
        None,
    );
    run.assert_ok();
}

/// Turn the child's view of this hybrid host into a cgroup v2 host: cgroup2 on /sys/fs/cgroup
/// (the test passes the matching `HostCgroups::v2_at`).
fn fake_unified_host() -> Result<(), String> {
    let target = std::path::Path::new("/sys/fs/cgroup");
    crate::rootfs::sys::mount(Some("cgroup2".as_ref()), target, Some("cgroup2"), 0, None)
        .map_err(|e| format!("mount cgroup2 on /sys/fs/cgroup: {e}"))
}

fn v2_test_cgroup(test_pid: u32) -> String {
    format!("berth-rootfs-cgv2-{test_pid}")
}

/// ... and join a cgroup of our own in it, as the init would have.
fn fake_unified_host_in_own_cgroup() -> Result<(), String> {
    fake_unified_host()?;
    let dir = std::path::Path::new("/sys/fs/cgroup")
        .join(v2_test_cgroup(nix::unistd::getppid().as_raw() as u32));
    std::fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    std::fs::write(dir.join("cgroup.procs"), "0")
        .map_err(|e| format!("join {}: {e}", dir.display()))
}

/// Removes the test's cgroup from the real unified hierarchy once its process is gone.
struct RemoveCgroup(std::path::PathBuf);

impl Drop for RemoveCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
fn rootfs_cgroup_v2_binds_own_cgroup_or_mounts_with_cgroupns() {
    let unified = std::path::Path::new("/sys/fs/cgroup/unified");
    let _cleanup = RemoveCgroup(unified.join(v2_test_cgroup(std::process::id())));
    for cgroup_ns in [false, true] {
        let fx = Fixture::new("cgv2");
        let mut mounts = default_mounts();
        mounts.as_array_mut().unwrap().push(json!(
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["ro", "nosuid"]}));
        let spec = make_spec(mounts, json!({}), false);
        let mut extra = CloneFlags::CLONE_NEWIPC;
        if cgroup_ns {
            extra |= CloneFlags::CLONE_NEWCGROUP;
        }
        let setup = Setup {
            opts: RootfsOptions {
                cgroup_ns,
                cgroups: Some(CgroupView {
                    host: berth_cgroups::HostCgroups::v2_at("/sys/fs/cgroup"),
                    paths: berth_cgroups::CgroupPaths {
                        layout: berth_cgroups::Layout::V2,
                        v1: Default::default(),
                        unified: Some(
                            std::path::Path::new("/sys/fs/cgroup")
                                .join(v2_test_cgroup(std::process::id())),
                        ),
                    },
                }),
                ..Default::default()
            },
            extra: Some(extra),
            before_prepare: Some(if cgroup_ns {
                fake_unified_host
            } else {
                fake_unified_host_in_own_cgroup
            }),
            ..Default::default()
        };
        let own = if cgroup_ns {
            // A fresh cgroup2 mount shows the namespace's root.
            "/".to_string()
        } else {
            format!("/{}", v2_test_cgroup(std::process::id()))
        };
        let script = format!(
            r#"set -ex
            grep ' /sys/fs/cgroup ' /proc/self/mountinfo | grep -q ' - cgroup2 '
            grep ' /sys/fs/cgroup ' /proc/self/mountinfo | grep -q ' ro,nosuid'
            test "$(awk '$5 == "/sys/fs/cgroup" {{print $4}}' /proc/self/mountinfo)" = "{own}"
            grep -qx $$ /sys/fs/cgroup/cgroup.procs
            test "$(grep -c ' /sys/fs/cgroup/' /proc/self/mountinfo)" = 0
            fails mkdir /sys/fs/cgroup/x
        "#
        );
        run_in(&fx, &spec, setup, &script, None).assert_ok();
    }
}
