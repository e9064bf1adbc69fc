//! Docker's defaults for a Linux container: capabilities, masked and read-only paths,
//! mounts, devices and the device cgroup rules (moby's daemon/pkg/oci/defaults.go and
//! daemon/oci_linux.go), and what `--privileged` turns them into.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use serde_json::{json, Value};

use super::SpecError;

/// Docker's default capability set, in Docker's order.
pub const DEFAULT_CAPABILITIES: [&str; 14] = [
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

/// Every capability Linux defines, indexed by its number (linux/capability.h).
pub const KNOWN_CAPABILITIES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The highest capability number the running kernel knows. A capability it does not know
/// cannot be granted (capset fails), so `ALL` and `--privileged` stop there, as in Docker.
pub fn host_last_cap() -> usize {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(KNOWN_CAPABILITIES.len() - 1)
}

/// Every capability the running kernel supports.
pub fn all_capabilities() -> Vec<String> {
    capabilities_up_to(host_last_cap())
}

fn capabilities_up_to(last_cap: usize) -> Vec<String> {
    KNOWN_CAPABILITIES
        .iter()
        .take(last_cap + 1)
        .map(|c| c.to_string())
        .collect()
}

/// `net_raw`, `NET_RAW` and `cap_net_raw` all become `CAP_NET_RAW`; `all` becomes `ALL`.
pub fn normalize_capability(name: &str) -> Result<String, SpecError> {
    normalize_with(name, host_last_cap())
}

fn normalize_with(name: &str, last_cap: usize) -> Result<String, SpecError> {
    let upper = name.trim().to_ascii_uppercase();
    if upper == "ALL" {
        return Ok(upper);
    }
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    match KNOWN_CAPABILITIES.iter().position(|c| *c == full) {
        None => Err(SpecError::UnknownCapability(name.to_string())),
        Some(n) if n > last_cap => Err(SpecError::UnsupportedCapability(full)),
        Some(_) => Ok(full),
    }
}

/// Docker's `--cap-add`/`--cap-drop` arithmetic on `base`: `--cap-add ALL` gives every
/// capability but the dropped ones; `--cap-drop ALL` gives exactly the added ones;
/// otherwise `base` minus the dropped plus the added. Unknown names are refused.
pub fn apply_cap_changes(
    base: &[String],
    add: &[String],
    drop: &[String],
) -> Result<Vec<String>, SpecError> {
    apply_with(base, add, drop, host_last_cap())
}

fn apply_with(
    base: &[String],
    add: &[String],
    drop: &[String],
    last_cap: usize,
) -> Result<Vec<String>, SpecError> {
    let norm = |list: &[String]| -> Result<Vec<String>, SpecError> {
        list.iter().map(|c| normalize_with(c, last_cap)).collect()
    };
    let add = norm(add)?;
    let drop = norm(drop)?;
    let has_all = |l: &[String]| l.iter().any(|c| c == "ALL");
    let mut out: Vec<String> = if has_all(&add) {
        capabilities_up_to(last_cap)
            .into_iter()
            .filter(|c| !drop.contains(c))
            .collect()
    } else if has_all(&drop) {
        add
    } else {
        base.iter()
            .filter(|c| !drop.contains(c))
            .cloned()
            .chain(add)
            .collect()
    };
    // A capability given twice (in base and --cap-add) would be listed twice in the spec.
    let mut seen = std::collections::HashSet::new();
    out.retain(|c| seen.insert(c.clone()));
    Ok(out)
}

/// Paths the container sees as empty: kernel information that leaks host details or lets a
/// container attack the host (moby's defaultLinuxMaskedPaths).
pub fn masked_paths() -> Vec<String> {
    let mut paths: Vec<String> = [
        "/proc/acpi",
        "/proc/asound",
        "/proc/interrupts",
        "/proc/kcore",
        "/proc/keys",
        "/proc/latency_stats",
        "/proc/sched_debug",
        "/proc/scsi",
        "/proc/timer_list",
        "/proc/timer_stats",
        "/sys/devices/virtual/powercap",
        "/sys/firmware",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // Per-CPU throttle counters leak the host's load (GHSA-6fw5-f8r9-fgfm); Docker masks
    // those that exist.
    let possible = std::fs::read_to_string("/sys/devices/system/cpu/possible").unwrap_or_default();
    for cpu in parse_cpu_list(&possible) {
        let p = format!("/sys/devices/system/cpu/cpu{cpu}/thermal_throttle");
        if Path::new(&p).exists() {
            paths.push(p);
        }
    }
    paths
}

/// `0-3,8,10-11` → 0,1,2,3,8,10,11.
fn parse_cpu_list(list: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for part in list.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) {
                    out.extend(a..=b);
                }
            }
            None => out.extend(part.parse::<u32>().ok()),
        }
    }
    out
}

/// Paths the container sees read-only: kernel tunables that are global to the host.
pub fn readonly_paths() -> Vec<String> {
    [
        "/proc/bus",
        "/proc/fs",
        "/proc/irq",
        "/proc/sys",
        "/proc/sysrq-trigger",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// One entry of config.json's `mounts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub destination: String,
    pub kind: String,
    pub source: String,
    pub options: Vec<String>,
}

impl Mount {
    fn new(destination: &str, kind: &str, source: &str, options: &[&str]) -> Mount {
        Mount {
            destination: destination.into(),
            kind: kind.into(),
            source: source.into(),
            options: options.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Drops `ro`, which `--privileged` does for /sys and the cgroup mount.
    fn make_writable(&mut self) {
        self.options.retain(|o| o != "ro");
    }

    pub fn to_json(&self) -> Value {
        json!({
            "destination": self.destination,
            "type": self.kind,
            "source": self.source,
            "options": self.options,
        })
    }
}

/// Docker's size for /dev/shm (`--shm-size` default).
pub const DEFAULT_SHM_SIZE: u64 = 64 * 1024 * 1024;

/// Docker's mounts for every container. Docker bind-mounts a /dev/shm it made itself; a
/// tmpfs of the same size is what the container sees, without a host mount to clean up.
pub fn default_mounts() -> Vec<Mount> {
    let shm_size = format!("size={DEFAULT_SHM_SIZE}");
    vec![
        Mount::new("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        Mount::new(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        Mount::new(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        Mount::new(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        ),
        Mount::new(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["ro", "nosuid", "noexec", "nodev"],
        ),
        Mount::new(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        Mount::new(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", &shm_size],
        ),
    ]
}

/// The mounts of a `--privileged` container: /sys and the cgroup tree writable.
pub fn privileged_mounts() -> Vec<Mount> {
    let mut mounts = default_mounts();
    for m in &mut mounts {
        if m.destination == "/sys" || m.kind == "cgroup" {
            m.make_writable();
        }
    }
    mounts
}

/// One entry of `linux.devices`: a device node the runtime creates in the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub path: String,
    /// `c` or `b`.
    pub kind: char,
    pub major: u64,
    pub minor: u64,
    pub file_mode: u32,
    pub uid: u32,
    pub gid: u32,
}

impl Device {
    pub fn to_json(&self) -> Value {
        json!({
            "path": self.path,
            "type": self.kind.to_string(),
            "major": self.major,
            "minor": self.minor,
            "fileMode": self.file_mode,
            "uid": self.uid,
            "gid": self.gid,
        })
    }
}

/// One entry of `linux.resources.devices`; None for type, major or minor means any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRule {
    pub allow: bool,
    pub kind: Option<char>,
    pub major: Option<i64>,
    pub minor: Option<i64>,
    pub access: String,
}

impl DeviceRule {
    fn char_dev(allow: bool, major: i64, minor: i64) -> DeviceRule {
        DeviceRule {
            allow,
            kind: Some('c'),
            major: Some(major),
            minor: Some(minor),
            access: "rwm".into(),
        }
    }

    pub fn to_json(&self) -> Value {
        let mut v = json!({ "allow": self.allow, "access": self.access });
        if let Some(k) = self.kind {
            v["type"] = json!(k.to_string());
        }
        if let Some(m) = self.major {
            v["major"] = json!(m);
        }
        if let Some(m) = self.minor {
            v["minor"] = json!(m);
        }
        v
    }
}

/// Docker's device cgroup rules: deny everything, then allow null, zero, urandom, random,
/// tty and console, and deny /dev/fuse outright. The runtime appends runc's own allow list
/// (full, ptmx, the pty slaves, tun, mknod), as runc does for Docker.
pub fn default_device_rules() -> Vec<DeviceRule> {
    vec![
        DeviceRule {
            allow: false,
            kind: None,
            major: None,
            minor: None,
            access: "rwm".into(),
        },
        DeviceRule::char_dev(true, 1, 5),
        DeviceRule::char_dev(true, 1, 3),
        DeviceRule::char_dev(true, 1, 9),
        DeviceRule::char_dev(true, 1, 8),
        DeviceRule::char_dev(true, 5, 0),
        DeviceRule::char_dev(true, 5, 1),
        DeviceRule::char_dev(false, 10, 229),
    ]
}

/// A `--privileged` container may use any device.
pub fn privileged_device_rules() -> Vec<DeviceRule> {
    vec![DeviceRule {
        allow: true,
        kind: None,
        major: None,
        minor: None,
        access: "rwm".into(),
    }]
}

/// Every device node under the host's /dev, for `--privileged` (containerd's HostDevices).
pub fn host_devices() -> Result<Vec<Device>, SpecError> {
    let mut out = Vec::new();
    walk_devices(Path::new("/dev"), &mut out)?;
    Ok(out)
}

fn walk_devices(dir: &Path, out: &mut Vec<Device>) -> Result<(), SpecError> {
    let err = |source| SpecError::HostDevices {
        path: dir.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(err)? {
        let entry = entry.map_err(err)?;
        let path = entry.path();
        // Vanished between readdir and lstat: a device unplugged meanwhile.
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let ft = meta.file_type();
        if ft.is_dir() {
            // The container gets its own of these (pts, shm, mqueue are mounts; fd is a
            // symlink into its /proc), and the hidden ones belong to other managers.
            let name = entry.file_name();
            if matches!(
                name.to_str(),
                Some("pts" | "shm" | "fd" | "mqueue" | ".lxc" | ".lxd-mounts" | ".udev")
            ) {
                continue;
            }
            walk_devices(&path, out)?;
            continue;
        }
        // The runtime sets /dev/console up itself from the container's terminal.
        if path == Path::new("/dev/console") {
            continue;
        }
        let kind = if ft.is_char_device() {
            'c'
        } else if ft.is_block_device() {
            'b'
        } else {
            continue;
        };
        let rdev = meta.rdev();
        out.push(Device {
            path: path.to_string_lossy().into_owned(),
            kind,
            major: libc::major(rdev) as u64,
            minor: libc::minor(rdev) as u64,
            file_mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(list: &[&str]) -> Vec<String> {
        list.iter().map(|c| c.to_string()).collect()
    }

    fn defaults() -> Vec<String> {
        s(&DEFAULT_CAPABILITIES)
    }

    #[test]
    fn names_normalise_with_or_without_prefix_in_any_case() {
        for n in ["net_admin", "NET_ADMIN", "cap_net_admin", "Cap_Net_Admin"] {
            assert_eq!(normalize_with(n, 40).unwrap(), "CAP_NET_ADMIN", "{n}");
        }
        assert_eq!(normalize_with("all", 40).unwrap(), "ALL");
    }

    #[test]
    fn unknown_and_unsupported_capabilities_are_refused_by_name() {
        let e = normalize_with("NET_FOO", 40).unwrap_err().to_string();
        assert!(
            e.contains("unknown capability") && e.contains("NET_FOO"),
            "{e}"
        );
        let e = apply_with(&defaults(), &s(&["bogus"]), &[], 40)
            .unwrap_err()
            .to_string();
        assert!(e.contains("bogus"), "{e}");
        let e = apply_with(&defaults(), &[], &s(&["cap_nope"]), 40)
            .unwrap_err()
            .to_string();
        assert!(e.contains("cap_nope"), "{e}");
        // a kernel that stops at CAP_AUDIT_READ (37) has no CAP_BPF
        let e = normalize_with("bpf", 37).unwrap_err().to_string();
        assert!(e.contains("CAP_BPF") && e.contains("kernel"), "{e}");
    }

    #[test]
    fn add_and_drop_change_the_default_set() {
        let got = apply_with(
            &defaults(),
            &s(&["sys_admin"]),
            &s(&["NET_RAW", "mknod"]),
            40,
        )
        .unwrap();
        let mut want: Vec<String> = defaults()
            .into_iter()
            .filter(|c| c != "CAP_NET_RAW" && c != "CAP_MKNOD")
            .collect();
        want.push("CAP_SYS_ADMIN".into());
        assert_eq!(got, want);
        // adding one already held does not list it twice
        let got = apply_with(&defaults(), &s(&["CHOWN"]), &[], 40).unwrap();
        assert_eq!(got, defaults());
        // no changes: the base as is
        assert_eq!(apply_with(&defaults(), &[], &[], 40).unwrap(), defaults());
    }

    #[test]
    fn all_in_add_or_drop() {
        let all = apply_with(&defaults(), &s(&["ALL"]), &[], 40).unwrap();
        assert_eq!(all, s(&KNOWN_CAPABILITIES));
        let all_but = apply_with(&defaults(), &s(&["all"]), &s(&["sys_admin"]), 40).unwrap();
        assert_eq!(all_but.len(), 40);
        assert!(!all_but.contains(&"CAP_SYS_ADMIN".to_string()));
        // ALL stops at the kernel's last capability
        assert_eq!(apply_with(&[], &s(&["ALL"]), &[], 37).unwrap().len(), 38);
        let only = apply_with(&defaults(), &s(&["chown", "kill"]), &s(&["ALL"]), 40).unwrap();
        assert_eq!(only, s(&["CAP_CHOWN", "CAP_KILL"]));
        assert!(apply_with(&defaults(), &[], &s(&["all"]), 40)
            .unwrap()
            .is_empty());
        // Docker: --cap-add ALL wins over --cap-drop ALL
        assert_eq!(
            apply_with(&defaults(), &s(&["ALL"]), &s(&["ALL"]), 40)
                .unwrap()
                .len(),
            41
        );
    }

    #[test]
    fn cpu_lists_parse() {
        assert_eq!(parse_cpu_list("0-3,8,10-11\n"), [0, 1, 2, 3, 8, 10, 11]);
        assert_eq!(parse_cpu_list("0"), [0]);
        assert!(parse_cpu_list("").is_empty());
    }

    #[test]
    fn masked_and_readonly_paths_are_dockers() {
        let masked = masked_paths();
        for p in [
            "/proc/kcore",
            "/proc/keys",
            "/sys/firmware",
            "/proc/sched_debug",
        ] {
            assert!(masked.iter().any(|m| m == p), "{p}");
        }
        assert_eq!(readonly_paths().len(), 5);
    }

    #[test]
    fn privileged_mounts_make_sys_and_cgroup_writable_only() {
        let normal = default_mounts();
        let privileged = privileged_mounts();
        for (n, p) in normal.iter().zip(&privileged) {
            let writable = p.destination == "/sys" || p.destination == "/sys/fs/cgroup";
            assert_eq!(n.options.contains(&"ro".to_string()), writable, "{n:?}");
            assert!(!p.options.contains(&"ro".to_string()), "{p:?}");
        }
        let shm = normal.iter().find(|m| m.destination == "/dev/shm").unwrap();
        assert!(shm.options.contains(&"size=67108864".to_string()));
    }

    #[test]
    fn device_rules_serialise_as_oci() {
        let rules: Vec<Value> = default_device_rules().iter().map(|r| r.to_json()).collect();
        assert_eq!(rules[0], json!({"allow": false, "access": "rwm"}));
        assert_eq!(
            rules[1],
            json!({"allow": true, "type": "c", "major": 1, "minor": 5, "access": "rwm"})
        );
        assert_eq!(rules.len(), 8);
    }

    #[test]
    fn host_devices_include_dev_null() {
        let devs = host_devices().unwrap();
        let null = devs
            .iter()
            .find(|d| d.path == "/dev/null")
            .expect("/dev/null");
        assert_eq!((null.kind, null.major, null.minor), ('c', 1, 3));
        assert!(!devs.iter().any(|d| d.path.starts_with("/dev/pts/")));
    }
}
