//! Where containers meet the engine's other parts: the security defaults of the spec and
//! the volumes a container mounts.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::bundle::Security;
use super::record::Record;
use super::rootfs::open_in_root;
use super::ContainerError;
use crate::engine::spec;
use crate::engine::Engine;

/// Docker's confinement for the record's flags (engine::spec), plus its `--device`s.
pub fn security(rec: &Record) -> Result<Security, ContainerError> {
    let d = spec::linux_defaults(&spec::SecurityOptions {
        privileged: rec.host.privileged,
        cap_add: rec.host.cap_add.clone(),
        cap_drop: rec.host.cap_drop.clone(),
        security_opt: rec.host.security_opt.clone(),
    })
    .map_err(|e| ContainerError::Invalid(e.to_string()))?;
    let mut devices: Vec<Value> = d.devices.iter().map(spec::Device::to_json).collect();
    let mut device_rules: Vec<Value> = d
        .device_rules
        .iter()
        .map(spec::DeviceRule::to_json)
        .collect();
    for dev in &rec.host.devices {
        let (json, rule) = host_device(dev)?;
        devices.push(json);
        device_rules.push(rule);
    }
    Ok(Security {
        capabilities: d.capabilities,
        no_new_privileges: d.no_new_privileges,
        seccomp: d.seccomp,
        masked_paths: d.masked_paths,
        readonly_paths: d.readonly_paths,
        mounts: d.mounts.iter().map(spec::Mount::to_json).collect(),
        devices,
        device_rules,
    })
}

/// `--device /dev/x[:/dev/y[:rwm]]`: the node in the container and its cgroup rule.
fn host_device(dev: &Value) -> Result<(Value, Value), ContainerError> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let host = dev["PathOnHost"].as_str().unwrap_or_default();
    let inner = dev["PathInContainer"].as_str().unwrap_or(host);
    let perms = dev["CgroupPermissions"].as_str().unwrap_or("rwm");
    let m = std::fs::metadata(host).map_err(|e| ContainerError::io(Path::new(host), e))?;
    let kind = if m.file_type().is_char_device() {
        "c"
    } else if m.file_type().is_block_device() {
        "b"
    } else {
        return Err(ContainerError::Invalid(format!(
            "error gathering device information while adding custom device \"{host}\": not a device node"
        )));
    };
    let (major, minor) = (libc::major(m.rdev()), libc::minor(m.rdev()));
    Ok((
        json!({"path": inner, "type": kind, "major": major, "minor": minor,
               "fileMode": m.mode() & 0o7777, "uid": m.uid(), "gid": m.gid()}),
        json!({"allow": true, "type": kind, "major": major, "minor": minor, "access": perms}),
    ))
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
