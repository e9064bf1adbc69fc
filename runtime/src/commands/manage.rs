//! update, events, features, spec.

use std::fs;
use std::io::Read;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use oci_spec::runtime::{LinuxPids, LinuxResources, Spec};
use serde_json::json;

use crate::cli::{EventsArgs, SpecArgs, UpdateArgs};
use crate::seccomp;
use crate::state::{Container, Status};

/// "512m", "1g", "1024", "-1".
fn parse_bytes(s: &str) -> Result<i64> {
    let t = s.trim().to_ascii_lowercase();
    if t == "-1" {
        return Ok(-1);
    }
    let t = t.trim_end_matches('b');
    let (num, mul) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: f64 = num.parse().with_context(|| format!("invalid size {s:?}"))?;
    Ok((n * mul as f64) as i64)
}

pub fn update(root: &Path, a: &UpdateArgs) -> Result<()> {
    let mut c = Container::load(root, &a.id)?;
    if c.status(root) == Status::Stopped {
        bail!("container {} is not running", a.id);
    }
    let mut r: LinuxResources = match &a.resources {
        Some(p) => {
            let mut data = Vec::new();
            if p.as_os_str() == "-" {
                std::io::stdin()
                    .read_to_end(&mut data)
                    .context("read resources from stdin")?;
            } else {
                data = fs::read(p).with_context(|| format!("read {}", p.display()))?;
            }
            serde_json::from_slice(&data).context("parse resources JSON")?
        }
        None => LinuxResources::default(),
    };
    let mut mem = (*r.memory()).unwrap_or_default();
    let mut mem_set = r.memory().is_some();
    if let Some(m) = &a.memory {
        mem.set_limit(Some(parse_bytes(m)?));
        mem_set = true;
    }
    if let Some(m) = &a.memory_reservation {
        mem.set_reservation(Some(parse_bytes(m)?));
        mem_set = true;
    }
    if let Some(m) = &a.memory_swap {
        mem.set_swap(Some(parse_bytes(m)?));
        mem_set = true;
    }
    if mem_set {
        r.set_memory(Some(mem));
    }
    let mut cpu = r.cpu().clone().unwrap_or_default();
    let before = serde_json::to_value(&cpu)?;
    if let Some(v) = a.cpu_period {
        cpu.set_period(Some(v));
    }
    if let Some(v) = a.cpu_quota {
        cpu.set_quota(Some(v));
    }
    if let Some(v) = a.cpu_share {
        cpu.set_shares(Some(v));
    }
    if let Some(v) = a.cpu_rt_period {
        cpu.set_realtime_period(Some(v));
    }
    if let Some(v) = a.cpu_rt_runtime {
        cpu.set_realtime_runtime(Some(v));
    }
    if let Some(v) = &a.cpuset_cpus {
        cpu.set_cpus(Some(v.clone()));
    }
    if let Some(v) = &a.cpuset_mems {
        cpu.set_mems(Some(v.clone()));
    }
    if r.cpu().is_some() || serde_json::to_value(&cpu)? != before {
        r.set_cpu(Some(cpu));
    }
    if let Some(p) = a.pids_limit {
        let mut pids = LinuxPids::default();
        pids.set_limit(p);
        r.set_pids(Some(pids));
    }
    if let Some(w) = a.blkio_weight {
        let mut b = r.block_io().clone().unwrap_or_default();
        b.set_weight(Some(w));
        r.set_block_io(Some(b));
    }
    c.cgroup()?
        .set(&r)
        .with_context(|| format!("update resources of {}", a.id))?;
    // Remember the new limits so that a later `update` merges with them.
    let mut linux = c.spec.linux().clone().unwrap_or_default();
    let merged = merge(linux.resources().clone(), &r)?;
    linux.set_resources(Some(merged));
    c.spec.set_linux(Some(linux));
    c.save(root)
}

fn merge(old: Option<LinuxResources>, new: &LinuxResources) -> Result<LinuxResources> {
    let mut base = serde_json::to_value(old.unwrap_or_default())?;
    fn deep(a: &mut serde_json::Value, b: serde_json::Value) {
        match (a, b) {
            (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                for (k, v) in b {
                    deep(a.entry(k).or_insert(serde_json::Value::Null), v);
                }
            }
            (a, b) => *a = b,
        }
    }
    deep(&mut base, serde_json::to_value(new)?);
    Ok(serde_json::from_value(base)?)
}

fn parse_duration(s: &str) -> Result<Duration> {
    let (n, unit) = s.split_at(
        s.find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(s.len()),
    );
    let n: f64 = n
        .parse()
        .with_context(|| format!("invalid interval {s:?}"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => bail!("invalid interval {s:?}"),
    };
    if secs <= 0.0 {
        bail!("interval must be positive: {s:?}");
    }
    Ok(Duration::from_secs_f64(secs))
}

pub fn events(root: &Path, a: &EventsArgs) -> Result<()> {
    let interval = parse_duration(&a.interval)?;
    let mut ooms = None;
    loop {
        let c = Container::load(root, &a.id)?;
        if c.status(root) == Status::Stopped {
            if a.stats {
                bail!("container {} is not running", a.id);
            }
            return Ok(());
        }
        let cg = c.cgroup()?;
        // runc reports each OOM kill as its own event between the stats samples.
        if let Ok(n) = cg.oom_kill_count() {
            if ooms.is_some_and(|seen| n > seen) {
                println!("{}", json!({"type": "oom", "id": a.id}));
            }
            ooms = Some(n);
        }
        let stats = cg.stats().with_context(|| format!("stats of {}", a.id))?;
        println!("{}", json!({"type": "stats", "id": a.id, "data": stats}));
        if a.stats {
            return Ok(());
        }
        std::thread::sleep(interval);
    }
}

pub fn features() -> Result<()> {
    let caps: Vec<String> = caps::all().iter().map(|c| c.to_string()).collect();
    let mut caps = caps;
    caps.sort();
    let v = json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.2.0",
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": crate::rootfs::known_mount_options(),
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"],
            "capabilities": caps,
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false, "rdma": true},
            "seccomp": seccomp::supported(),
            "apparmor": {"enabled": true},
            "selinux": {"enabled": false},
            "intelRdt": {"enabled": false},
            "mountExtensions": {"idmap": {"enabled": true}}
        },
        "annotations": {
            "org.opencontainers.runtime-spec.features.version": "1.2.0",
            "io.berth.runtime.version": env!("CARGO_PKG_VERSION")
        }
    });
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
}

pub fn spec(a: &SpecArgs, rootless: bool) -> Result<()> {
    let path = a.bundle.join("config.json");
    if path.exists() {
        bail!("File {} exists. Remove it first", path.display());
    }
    let spec = if rootless {
        Spec::rootless(
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        )
    } else {
        Spec::default()
    };
    let mut v = serde_json::to_value(&spec)?;
    v["process"]["terminal"] = json!(true);
    v["process"]["args"] = json!(["sh"]);
    // oci-spec's default names another runtime; runc's template uses its own name.
    v["hostname"] = json!("berth");
    fs::write(&path, serde_json::to_string_pretty(&v)? + "\n")
        .with_context(|| format!("write {}", path.display()))?;
    Ok(())
}
