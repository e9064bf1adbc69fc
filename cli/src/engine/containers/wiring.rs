//! Where containers meet the engine's other parts: the security defaults of the spec and
//! the volumes a container mounts.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::bundle::Security;
use super::record::Record;
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

/// A volume a container mounts: made when absent (as `docker run -v name:/x` does),
/// mounted when it has driver options, and filled from the image's content at `dest`
/// when empty (unless `nocopy`). Its host directory.
pub fn volume_for(
    engine: &Engine,
    m: &mut super::record::MountPoint,
    root: &Path,
) -> Result<PathBuf, ContainerError> {
    let vols = engine.volumes();
    let err = |e: crate::engine::volumes::VolumeError| ContainerError::Invalid(e.to_string());
    let mut labels = std::collections::BTreeMap::new();
    if m.anonymous {
        labels.insert("com.docker.volume.anonymous".to_string(), String::new());
    }
    vols.create(&crate::engine::volumes::CreateOptions {
        name: Some(m.name.clone()),
        driver: "local".into(),
        labels,
        ..Default::default()
    })
    .map_err(err)?;
    let path = vols.mount(&m.name).map_err(err)?;
    if !m.options.iter().any(|o| o == "nocopy") {
        vols.populate_from_rootfs(&m.name, root, Path::new(&m.destination))
            .map_err(err)?;
    }
    m.options.retain(|o| o != "nocopy");
    Ok(path)
}

/// Containers whose mounts name a volume: what makes `volume rm` refuse and `prune` skip.
pub struct RecordUsers(pub super::store::Store);

impl crate::engine::volumes::VolumeUsers for RecordUsers {
    fn users(&self, volume: &str) -> Result<Vec<String>, Box<dyn std::error::Error + Send + Sync>> {
        Ok(self
            .0
            .all()
            .into_iter()
            .filter(|r| {
                r.mounts
                    .iter()
                    .any(|m| m.kind == "volume" && m.name == volume)
            })
            .map(|r| r.id)
            .collect())
    }
}
