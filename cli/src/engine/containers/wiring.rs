//! Where containers meet the engine's other parts: the security defaults of the spec and
//! the volumes a container mounts.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::bundle::Security;
use super::record::Record;
use super::rootfs::open_in_root;
use super::ContainerError;
use crate::engine::Engine;

const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

pub fn security(rec: &Record) -> Result<Security, ContainerError> {
    let mut caps: Vec<String> = DEFAULT_CAPS.iter().map(|c| c.to_string()).collect();
    let norm = |c: &str| {
        let up = c.to_ascii_uppercase();
        if up.starts_with("CAP_") || up == "ALL" {
            up
        } else {
            format!("CAP_{up}")
        }
    };
    for c in &rec.host.cap_drop {
        let c = norm(c);
        if c == "ALL" {
            caps.clear();
        }
        caps.retain(|x| *x != c);
    }
    for c in &rec.host.cap_add {
        let c = norm(c);
        if !caps.contains(&c) && c != "ALL" {
            caps.push(c);
        }
    }
    let mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=67108864"]}),
    ];
    Ok(Security {
        capabilities: caps,
        no_new_privileges: false,
        seccomp: None,
        masked_paths: [
            "/proc/asound",
            "/proc/acpi",
            "/proc/kcore",
            "/proc/keys",
            "/proc/latency_stats",
            "/proc/timer_list",
            "/proc/timer_stats",
            "/proc/sched_debug",
            "/proc/scsi",
            "/sys/firmware",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        readonly_paths: [
            "/proc/bus",
            "/proc/fs",
            "/proc/irq",
            "/proc/sys",
            "/proc/sysrq-trigger",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        mounts,
        devices: Vec::<Value>::new(),
        device_rules: vec![json!({"allow": false, "access": "rwm"})],
    })
}

/// A volume's data directory, made when absent.
pub fn volume_dir(
    engine: &Engine,
    name: &str,
    _anonymous: bool,
) -> Result<PathBuf, ContainerError> {
    let dir = engine.root.join("volumes").join(name).join("_data");
    std::fs::create_dir_all(&dir).map_err(|e| ContainerError::io(&dir, e))?;
    Ok(dir)
}

/// Fill an empty volume with what the image has at `dest`, as Docker does.
pub fn populate_volume(
    data: &Path,
    root: &Path,
    dest: &str,
    _inside: &Path,
) -> Result<(), ContainerError> {
    if std::fs::read_dir(data)
        .map(|mut d| d.next().is_some())
        .unwrap_or(true)
    {
        return Ok(());
    }
    let Ok(src) = open_in_root(root, dest) else {
        return Ok(());
    };
    let from = format!("/proc/{}/fd/{}/.", std::process::id(), src.as_raw_fd());
    let status = std::process::Command::new("cp")
        .args(["-a", &from])
        .arg(data)
        .status()
        .map_err(|e| ContainerError::io(data, e))?;
    if !status.success() {
        return Err(ContainerError::Invalid(format!(
            "copy the image's {dest} into volume {}: cp failed",
            data.display()
        )));
    }
    Ok(())
}

pub fn remove_anonymous_volume(engine: &Engine, name: &str) {
    let _ = std::fs::remove_dir_all(engine.root.join("volumes").join(name));
}
