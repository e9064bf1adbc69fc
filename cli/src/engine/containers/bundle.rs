//! The OCI bundle's config.json, made from the record (image config merged with the flags),
//! the container's root and what netd handed back. Berth's shim settings travel as
//! annotations (shim/README.md).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::record::{MountPoint, Record};
use super::rootfs::read_in_root;
use super::ContainerError;

/// Where the container's namespaces come from.
pub enum NetNs {
    /// A namespace netd made, bind-mounted at this path.
    Path(PathBuf),
    /// A fresh namespace with only `lo` (`--network none`).
    New,
    /// The host's (`--network host`).
    Host,
}

/// Everything the spec needs beyond the record.
pub struct Inputs<'a> {
    pub rootfs: &'a Path,
    pub netns: NetNs,
    /// Files bind-mounted over the image's /etc/hostname, /etc/hosts, /etc/resolv.conf.
    pub etc_files: Vec<(PathBuf, &'static str)>,
    pub annotations: BTreeMap<String, String>,
    pub cgroups_path: String,
    pub security: Security,
}

/// uid, gid and supplementary groups of `user` (`name|uid[:group|gid]`), from the image's
/// /etc/passwd and /etc/group as Docker reads them.
pub fn resolve_user(
    rootfs: &Path,
    user: &str,
    group_add: &[String],
) -> Result<(u32, u32, Vec<u32>), ContainerError> {
    let passwd = read_in_root(rootfs, "/etc/passwd").unwrap_or_default();
    let groups = read_in_root(rootfs, "/etc/group").unwrap_or_default();
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let entry = |file: &str, key: &str| -> Option<Vec<String>> {
        file.lines()
            .map(|l| l.split(':').map(str::to_string).collect::<Vec<_>>())
            .find(|f| f.len() > 2 && (f[0] == key || f[2] == key))
    };
    let (uid, mut gid, name) = if u.is_empty() {
        (0, 0, "root".to_string())
    } else if let Some(f) = entry(&passwd, u) {
        let uid = f[2].parse().unwrap_or(0);
        let gid = f.get(3).and_then(|g| g.parse().ok()).unwrap_or(0);
        (uid, gid, f[0].clone())
    } else if let Ok(uid) = u.parse::<u32>() {
        (uid, 0, String::new())
    } else {
        return Err(ContainerError::Invalid(format!(
            "unable to find user {u}: no matching entries in passwd file"
        )));
    };
    if let Some(g) = g {
        gid = match entry(&groups, g) {
            Some(f) => f[2].parse().unwrap_or(0),
            None => g.parse().map_err(|_| {
                ContainerError::Invalid(format!(
                    "unable to find group {g}: no matching entries in group file"
                ))
            })?,
        };
    }
    let mut extra: Vec<u32> = Vec::new();
    if g.is_none() && !name.is_empty() {
        for l in groups.lines() {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() > 3 && f[3].split(',').any(|m| m == name) {
                if let Ok(id) = f[2].parse() {
                    extra.push(id);
                }
            }
        }
    }
    for g in group_add {
        let id = match entry(&groups, g) {
            Some(f) => f[2].parse().unwrap_or(0),
            None => g.parse().map_err(|_| {
                ContainerError::Invalid(format!(
                    "Unable to find group {g}: no matching entries in group file"
                ))
            })?,
        };
        extra.push(id);
    }
    extra.retain(|x| *x != gid);
    extra.sort_unstable();
    extra.dedup();
    Ok((uid, gid, extra))
}

fn mount_json(m: &MountPoint) -> Value {
    match m.kind.as_str() {
        "tmpfs" => {
            let mut opts = vec!["nosuid".to_string(), "nodev".to_string()];
            opts.extend(m.options.iter().cloned());
            json!({"destination": m.destination, "type": "tmpfs", "source": "tmpfs", "options": opts})
        }
        _ => {
            let mut opts = vec!["rbind".to_string()];
            opts.push(if m.rw { "rw" } else { "ro" }.to_string());
            let prop = if m.propagation.is_empty() {
                "rprivate"
            } else {
                m.propagation.as_str()
            };
            opts.push(prop.to_string());
            opts.extend(m.options.iter().cloned());
            json!({"destination": m.destination, "type": "bind", "source": m.source, "options": opts})
        }
    }
}

fn resources(rec: &Record, devices: &[Value]) -> Value {
    let h = &rec.host;
    let mut r = json!({"devices": devices});
    if h.memory > 0 {
        r["memory"] = json!({"limit": h.memory});
        // Docker: no --memory-swap means swap up to the memory limit again.
        let swap = match h.memory_swap {
            0 => h.memory * 2,
            -1 => -1,
            s => s,
        };
        r["memory"]["swap"] = json!(swap);
    }
    let mut cpu = serde_json::Map::new();
    if h.nano_cpus > 0 {
        cpu.insert("period".into(), json!(100_000u64));
        cpu.insert("quota".into(), json!(h.nano_cpus / 10_000));
    }
    if h.cpu_shares > 0 {
        cpu.insert("shares".into(), json!(h.cpu_shares));
    }
    if !h.cpuset_cpus.is_empty() {
        cpu.insert("cpus".into(), json!(h.cpuset_cpus));
    }
    if !cpu.is_empty() {
        r["cpu"] = Value::Object(cpu);
    }
    if h.pids_limit != 0 {
        r["pids"] = json!({"limit": h.pids_limit});
    }
    r
}

pub fn spec(rec: &Record, inp: &Inputs<'_>) -> Result<Value, ContainerError> {
    let c = &rec.config;
    let (uid, gid, additional) = resolve_user(inp.rootfs, &c.user, &rec.host.group_add)?;
    let mut env: Vec<String> = c.env.clone();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(
            0,
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        );
    }
    env.retain(|e| !e.starts_with("HOSTNAME="));
    env.insert(1.min(env.len()), format!("HOSTNAME={}", c.hostname));
    if c.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    let mut args = rec.command();
    if rec.host.init {
        args.insert(0, "--".into());
        args.insert(0, "/sbin/docker-init".into());
    }
    let sec = &inp.security;
    let cwd = if c.working_dir.is_empty() {
        "/".to_string()
    } else {
        c.working_dir.clone()
    };
    let mut process = json!({
        "terminal": c.tty,
        "user": {"uid": uid, "gid": gid, "additionalGids": additional},
        "args": args,
        "env": env,
        "cwd": cwd,
        "capabilities": {
            "bounding": sec.capabilities, "effective": sec.capabilities,
            "permitted": sec.capabilities,
        },
        "noNewPrivileges": sec.no_new_privileges,
    });
    let mut rlimits: Vec<Value> = vec![];
    for u in &rec.host.ulimits {
        let name = u["Name"].as_str().unwrap_or_default().to_ascii_uppercase();
        rlimits
            .push(json!({"type": format!("RLIMIT_{name}"), "hard": u["Hard"], "soft": u["Soft"]}));
    }
    if !rlimits.is_empty() {
        process["rlimits"] = json!(rlimits);
    }

    let mut mounts: Vec<Value> = sec.mounts.clone();
    let mut user_mounts: Vec<&MountPoint> = rec.mounts.iter().collect();
    // Parents before children, so a mount inside another volume lands on top of it.
    user_mounts.sort_by_key(|m| m.destination.matches('/').count());
    // A user's mount over a default one (a tmpfs on /dev/shm, say) replaces it.
    mounts.retain(|d| {
        !user_mounts
            .iter()
            .any(|m| d["destination"].as_str() == Some(m.destination.as_str()))
    });
    for (file, dest) in &inp.etc_files {
        if user_mounts.iter().any(|m| m.destination == *dest) {
            continue;
        }
        mounts.push(json!({"destination": dest, "type": "bind", "source": file,
            "options": ["rbind", "rprivate", if rec.host.readonly_rootfs { "ro" } else { "rw" }]}));
    }
    mounts.extend(user_mounts.iter().map(|m| mount_json(m)));
    if rec.host.init {
        let init = init_binary().ok_or_else(|| {
            ContainerError::Invalid(
                "--init: this host has no init binary for containers (install tini: /usr/bin/docker-init or /usr/bin/tini-static)".into(),
            )
        })?;
        mounts.push(
            json!({"destination": "/sbin/docker-init", "type": "bind", "source": init,
            "options": ["rbind", "ro", "rprivate"]}),
        );
    }

    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
    ];
    if cgroupns_available() {
        namespaces.push(json!({"type": "cgroup"}));
    }
    match &inp.netns {
        NetNs::Path(p) => namespaces.push(json!({"type": "network", "path": p})),
        NetNs::New => namespaces.push(json!({"type": "network"})),
        NetNs::Host => {}
    }
    let sysctl: BTreeMap<&String, &String> = rec.host.sysctls.iter().collect();
    let mut linux = json!({
        "namespaces": namespaces,
        "cgroupsPath": inp.cgroups_path,
        "resources": resources(rec, &sec.device_rules),
        "devices": sec.devices,
        "maskedPaths": sec.masked_paths,
        "readonlyPaths": sec.readonly_paths,
        "sysctl": sysctl,
    });
    if let Some(s) = &sec.seccomp {
        linux["seccomp"] = s.clone();
    }
    let hostname = match inp.netns {
        NetNs::Host => None,
        _ => Some(c.hostname.clone()),
    };
    let mut spec = json!({
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": inp.rootfs, "readonly": rec.host.readonly_rootfs},
        "mounts": mounts,
        "linux": linux,
        "annotations": inp.annotations,
    });
    if let Some(h) = hostname {
        spec["hostname"] = json!(h);
    }
    Ok(spec)
}

/// Docker's `--init` is tini, statically linked, bound in at /sbin/docker-init.
fn init_binary() -> Option<PathBuf> {
    [
        "/usr/bin/docker-init",
        "/usr/bin/tini-static",
        "/usr/local/bin/docker-init",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
}

fn cgroupns_available() -> bool {
    Path::new("/proc/self/ns/cgroup").exists()
}

/// The security side of the spec: capabilities, seccomp, masked paths, default mounts and
/// devices (Docker's defaults unless `--privileged`).
pub struct Security {
    pub capabilities: Vec<String>,
    pub no_new_privileges: bool,
    pub seccomp: Option<Value>,
    pub masked_paths: Vec<String>,
    pub readonly_paths: Vec<String>,
    pub mounts: Vec<Value>,
    pub devices: Vec<Value>,
    pub device_rules: Vec<Value>,
}
