//! The security-relevant part of a container's config.json, as Docker makes it:
//! capabilities, seccomp, no_new_privs, AppArmor, masked and read-only paths, the default
//! mounts and devices; `--privileged`, `--cap-add`/`--cap-drop` and `--security-opt`
//! change it the way they do in Docker.
//!
//! Where this differs from Docker, on purpose:
//! - capability names are checked under `--privileged` too (Docker ignores them there);
//! - `label=disable` is accepted (it asks for no SELinux labelling, which is what a host
//!   without SELinux gives), other `label=` values are refused; `apparmor=NAME` is refused
//!   unless the host runs AppArmor;
//! - the built-in profile's `archMap` covers x86_64 (+x86, x32) and aarch64 (+arm), the
//!   ABIs berth-runtime compiles filters for; on other hosts the filter covers the native
//!   ABI only;
//! - /dev/shm is a 64 MiB tmpfs in the container's own mount table rather than a bind of a
//!   host mount the engine would have to clean up.
//!
//! Not here: Docker's `net.ipv4.ping_group_range` and `ip_unprivileged_port_start` sysctls
//! for containers with a private network namespace, `--device`, `--device-cgroup-rule`,
//! `--shm-size`, and the default AppArmor profile (`docker-default`).
//!
//! ```no_run
//! use berth_cli::engine::spec::{linux_defaults, SecurityOptions};
//!
//! let opts = SecurityOptions {
//!     cap_add: vec!["NET_ADMIN".into()],
//!     security_opt: vec!["no-new-privileges".into()],
//!     ..Default::default()
//! };
//! let defaults = linux_defaults(&opts)?;
//! let mut config = serde_json::json!({"process": {"args": ["sh"]}, "linux": {}});
//! defaults.apply_to(&mut config);
//! # Ok::<(), berth_cli::engine::spec::SpecError>(())
//! ```

pub mod defaults;
pub mod seccomp;

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

pub use defaults::{Device, DeviceRule, Mount};
pub use seccomp::DockerProfile;

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("unknown capability: {0:?}")]
    UnknownCapability(String),
    #[error("capability not supported by this kernel: {0:?}")]
    UnsupportedCapability(String),
    #[error("invalid --security-opt: {0:?}")]
    InvalidSecurityOpt(String),
    #[error("--security-opt {opt}: {reason}")]
    UnsupportedSecurityOpt { opt: String, reason: String },
    #[error("seccomp profile {}: {source}", path.display())]
    ReadProfile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("seccomp profile {origin}: {reason}")]
    BadProfile { origin: String, reason: String },
    #[error("kernel version: {0}")]
    KernelVersion(String),
    #[error("list host devices in {}: {source}", path.display())]
    HostDevices {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The flags of `berth run`/`create` that decide a container's confinement.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecurityOptions {
    pub privileged: bool,
    /// `--cap-add` values as given (`NET_ADMIN`, `cap_net_admin`, `ALL`, ...).
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    /// `--security-opt` values as given.
    pub security_opt: Vec<String>,
}

/// Which seccomp profile `--security-opt seccomp=` asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeccompChoice {
    /// Docker's default (`seccomp=builtin`, or no option at all).
    Builtin,
    Unconfined,
    /// A Docker-format profile file.
    File(PathBuf),
}

/// One parsed `--security-opt`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecurityOpt {
    Seccomp(SeccompChoice),
    NoNewPrivileges(bool),
    AppArmor(String),
    /// `label=disable`: no SELinux labelling, which is all this host can do anyway.
    LabelDisable,
    /// `systempaths=unconfined`: no masked or read-only paths.
    SystemPathsUnconfined,
}

/// Parses one `--security-opt` value as Docker does: `key=value`, or the older `key:value`,
/// and a bare `no-new-privileges`.
pub fn parse_security_opt(opt: &str) -> Result<SecurityOpt, SpecError> {
    let (key, value) = match opt.split_once('=') {
        Some(kv) => kv,
        None if opt == "no-new-privileges" => (opt, "true"),
        None => opt
            .split_once(':')
            .ok_or_else(|| SpecError::InvalidSecurityOpt(opt.to_string()))?,
    };
    if value.is_empty() {
        return Err(SpecError::InvalidSecurityOpt(opt.to_string()));
    }
    let unsupported = |reason: &str| SpecError::UnsupportedSecurityOpt {
        opt: opt.to_string(),
        reason: reason.to_string(),
    };
    match key {
        "seccomp" => Ok(SecurityOpt::Seccomp(match value {
            "builtin" => SeccompChoice::Builtin,
            "unconfined" => SeccompChoice::Unconfined,
            path => SeccompChoice::File(PathBuf::from(path)),
        })),
        "no-new-privileges" => match value {
            "true" | "1" | "t" | "T" | "TRUE" | "True" => Ok(SecurityOpt::NoNewPrivileges(true)),
            "false" | "0" | "f" | "F" | "FALSE" | "False" => {
                Ok(SecurityOpt::NoNewPrivileges(false))
            }
            _ => Err(unsupported("expected true or false")),
        },
        "apparmor" => Ok(SecurityOpt::AppArmor(value.to_string())),
        "label" => match value {
            "disable" => Ok(SecurityOpt::LabelDisable),
            _ => Err(unsupported(
                "SELinux labels are not supported: this host has no SELinux (only label=disable is accepted)",
            )),
        },
        "systempaths" => match value {
            "unconfined" => Ok(SecurityOpt::SystemPathsUnconfined),
            _ => Err(unsupported("the only value is unconfined")),
        },
        _ => Err(unsupported(&format!(
            "unknown option {key:?} (known: seccomp, no-new-privileges, apparmor, label, systempaths)"
        ))),
    }
}

/// Everything this module decides for one container's config.json.
#[derive(Debug, Clone, PartialEq)]
pub struct Defaults {
    /// The bounding, permitted and effective sets (`CAP_X` names).
    pub capabilities: Vec<String>,
    /// OCI `linux.seccomp`; None for no filter.
    pub seccomp: Option<Value>,
    pub no_new_privileges: bool,
    pub apparmor_profile: Option<String>,
    pub masked_paths: Vec<String>,
    pub readonly_paths: Vec<String>,
    pub mounts: Vec<Mount>,
    /// `linux.devices`: nodes created beyond the runtime's defaults (all of the host's
    /// for `--privileged`).
    pub devices: Vec<Device>,
    /// `linux.resources.devices`.
    pub device_rules: Vec<DeviceRule>,
}

/// Docker's confinement for a Linux container given its flags.
pub fn linux_defaults(opts: &SecurityOptions) -> Result<Defaults, SpecError> {
    linux_defaults_with(opts, apparmor_enabled())
}

/// Whether the host runs AppArmor, so that a named profile could be applied.
fn apparmor_enabled() -> bool {
    Path::new("/sys/kernel/security/apparmor").exists()
}

fn linux_defaults_with(opts: &SecurityOptions, apparmor: bool) -> Result<Defaults, SpecError> {
    let mut seccomp_choice = None;
    let mut no_new_privileges = false;
    let mut apparmor_profile = None;
    let mut system_paths = true;
    for raw in &opts.security_opt {
        match parse_security_opt(raw)? {
            SecurityOpt::Seccomp(c) => seccomp_choice = Some(c),
            SecurityOpt::NoNewPrivileges(b) => no_new_privileges = b,
            SecurityOpt::AppArmor(p) if p == "unconfined" => apparmor_profile = None,
            SecurityOpt::AppArmor(p) if apparmor => apparmor_profile = Some(p),
            SecurityOpt::AppArmor(_) => return Err(SpecError::UnsupportedSecurityOpt {
                opt: raw.clone(),
                reason:
                    "AppArmor is not enabled on this host (only apparmor=unconfined is accepted)"
                        .into(),
            }),
            SecurityOpt::LabelDisable => {}
            SecurityOpt::SystemPathsUnconfined => system_paths = false,
        }
    }

    // Names are checked even under --privileged (where Docker ignores them): a typo in a
    // capability name is worth an error either way.
    let base: Vec<String> = defaults::DEFAULT_CAPABILITIES
        .iter()
        .map(|c| c.to_string())
        .collect();
    let tweaked = defaults::apply_cap_changes(&base, &opts.cap_add, &opts.cap_drop)?;
    let capabilities = if opts.privileged {
        defaults::all_capabilities()
    } else {
        tweaked
    };

    // Docker: --privileged drops the default filter but keeps a profile asked for by name.
    let seccomp = match (seccomp_choice, opts.privileged) {
        (Some(SeccompChoice::Unconfined), _) | (None, true) => None,
        (Some(SeccompChoice::Builtin), _) | (None, false) => {
            Some(seccomp::default_profile(&capabilities)?)
        }
        (Some(SeccompChoice::File(path)), _) => {
            DockerProfile::from_file(&path)?.to_oci(&capabilities, &seccomp::Host::current())?
        }
    };

    let confined_paths = system_paths && !opts.privileged;
    Ok(Defaults {
        seccomp,
        no_new_privileges,
        apparmor_profile,
        masked_paths: if confined_paths {
            defaults::masked_paths()
        } else {
            Vec::new()
        },
        readonly_paths: if confined_paths {
            defaults::readonly_paths()
        } else {
            Vec::new()
        },
        mounts: if opts.privileged {
            defaults::privileged_mounts()
        } else {
            defaults::default_mounts()
        },
        devices: if opts.privileged {
            defaults::host_devices()?
        } else {
            Vec::new()
        },
        device_rules: if opts.privileged {
            defaults::privileged_device_rules()
        } else {
            defaults::default_device_rules()
        },
        capabilities,
    })
}

impl Defaults {
    /// Writes these into a config.json: replaces the capability sets, seccomp, the path
    /// lists, devices and device rules, sets the default mounts in place of any with the
    /// same destination and keeps the config's other mounts after them.
    pub fn apply_to(&self, config: &mut Value) {
        let caps = json!(self.capabilities);
        // No inheritable or ambient set: Docker stopped granting them (CVE-2022-24769).
        config["process"]["capabilities"] = json!({
            "bounding": caps,
            "permitted": caps,
            "effective": caps,
        });
        config["process"]["noNewPrivileges"] = json!(self.no_new_privileges);
        match &self.apparmor_profile {
            Some(p) => config["process"]["apparmorProfile"] = json!(p),
            None => remove(&mut config["process"], "apparmorProfile"),
        }
        let linux = &mut config["linux"];
        match &self.seccomp {
            Some(s) => linux["seccomp"] = s.clone(),
            None => remove(linux, "seccomp"),
        }
        linux["maskedPaths"] = json!(self.masked_paths);
        linux["readonlyPaths"] = json!(self.readonly_paths);
        linux["devices"] = Value::Array(self.devices.iter().map(Device::to_json).collect());
        linux["resources"]["devices"] =
            Value::Array(self.device_rules.iter().map(DeviceRule::to_json).collect());

        let ours: Vec<&str> = self.mounts.iter().map(|m| m.destination.as_str()).collect();
        let mut mounts: Vec<Value> = self.mounts.iter().map(Mount::to_json).collect();
        if let Some(existing) = config["mounts"].as_array() {
            mounts.extend(
                existing
                    .iter()
                    .filter(|m| {
                        !m["destination"]
                            .as_str()
                            .is_some_and(|d| ours.contains(&d.trim_end_matches('/')))
                    })
                    .cloned(),
            );
        }
        config["mounts"] = Value::Array(mounts);
    }
}

fn remove(v: &mut Value, key: &str) {
    if let Some(o) = v.as_object_mut() {
        o.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(security_opt: &[&str]) -> SecurityOptions {
        SecurityOptions {
            security_opt: security_opt.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn security_opts_parse_as_docker_does() {
        use SecurityOpt::*;
        let cases = [
            ("seccomp=unconfined", Seccomp(SeccompChoice::Unconfined)),
            ("seccomp:unconfined", Seccomp(SeccompChoice::Unconfined)),
            ("seccomp=builtin", Seccomp(SeccompChoice::Builtin)),
            (
                "seccomp=/etc/p.json",
                Seccomp(SeccompChoice::File("/etc/p.json".into())),
            ),
            ("no-new-privileges", NoNewPrivileges(true)),
            ("no-new-privileges=true", NoNewPrivileges(true)),
            ("no-new-privileges:true", NoNewPrivileges(true)),
            ("no-new-privileges=false", NoNewPrivileges(false)),
            ("no-new-privileges:false", NoNewPrivileges(false)),
            ("apparmor=unconfined", AppArmor("unconfined".into())),
            ("label=disable", LabelDisable),
            ("label:disable", LabelDisable),
            ("systempaths=unconfined", SystemPathsUnconfined),
        ];
        for (text, want) in cases {
            assert_eq!(parse_security_opt(text).unwrap(), want, "{text}");
        }
    }

    #[test]
    fn bad_security_opts_are_refused_naming_the_option() {
        let cases = [
            ("seccomp", "invalid --security-opt"),
            ("seccomp=", "invalid --security-opt"),
            ("no-new-privileges=maybe", "true or false"),
            ("label=user:system_u", "SELinux"),
            ("label=type:svirt_t", "SELinux"),
            ("systempaths=confined", "unconfined"),
            ("foo=bar", "unknown option \"foo\""),
        ];
        for (text, needle) in cases {
            let e = parse_security_opt(text).unwrap_err().to_string();
            assert!(e.contains(text), "{e} does not name {text}");
            assert!(e.contains(needle), "{text}: {e} lacks {needle:?}");
        }
    }

    #[test]
    fn apparmor_profiles_need_apparmor() {
        let o = opts(&["apparmor=docker-default"]);
        let e = linux_defaults_with(&o, false).unwrap_err().to_string();
        assert!(
            e.contains("apparmor=docker-default") && e.contains("AppArmor is not enabled"),
            "{e}"
        );
        let d = linux_defaults_with(&o, true).unwrap();
        assert_eq!(d.apparmor_profile.as_deref(), Some("docker-default"));
        let d = linux_defaults_with(&opts(&["apparmor=unconfined"]), false).unwrap();
        assert_eq!(d.apparmor_profile, None);
    }

    #[test]
    fn defaults_without_flags_are_dockers() {
        let d = linux_defaults_with(&SecurityOptions::default(), false).unwrap();
        assert_eq!(d.capabilities, defaults::DEFAULT_CAPABILITIES);
        assert_eq!(d.seccomp.as_ref().unwrap()["defaultErrnoRet"], 1);
        assert!(!d.no_new_privileges);
        assert!(d.masked_paths.contains(&"/proc/kcore".to_string()));
        assert!(d.readonly_paths.contains(&"/proc/sys".to_string()));
        assert!(d.devices.is_empty());
        assert_eq!(d.device_rules, defaults::default_device_rules());
        assert_eq!(d.mounts, defaults::default_mounts());
    }

    #[test]
    fn options_change_the_defaults() {
        let d = linux_defaults_with(
            &opts(&[
                "seccomp=unconfined",
                "no-new-privileges",
                "systempaths=unconfined",
            ]),
            false,
        )
        .unwrap();
        assert_eq!(d.seccomp, None);
        assert!(d.no_new_privileges);
        assert!(d.masked_paths.is_empty() && d.readonly_paths.is_empty());

        let d = linux_defaults_with(
            &SecurityOptions {
                cap_add: vec!["sys_admin".into()],
                cap_drop: vec!["net_raw".into()],
                ..Default::default()
            },
            false,
        )
        .unwrap();
        assert!(d.capabilities.contains(&"CAP_SYS_ADMIN".to_string()));
        assert!(!d.capabilities.contains(&"CAP_NET_RAW".to_string()));
        // the profile follows the final capability set
        let seccomp = d.seccomp.unwrap().to_string();
        assert!(seccomp.contains("\"mount\""), "{seccomp}");

        let e = linux_defaults_with(
            &SecurityOptions {
                cap_add: vec!["CAP_WHATEVER".into()],
                ..Default::default()
            },
            false,
        )
        .unwrap_err()
        .to_string();
        assert_eq!(e, "unknown capability: \"CAP_WHATEVER\"");
    }

    #[test]
    fn a_missing_profile_file_is_named() {
        let e = linux_defaults_with(&opts(&["seccomp=/nonexistent/p.json"]), false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/p.json"), "{e}");
    }

    #[test]
    fn privileged_lifts_the_confinement() {
        let d = linux_defaults_with(
            &SecurityOptions {
                privileged: true,
                cap_drop: vec!["ALL".into()],
                ..Default::default()
            },
            false,
        )
        .unwrap();
        assert_eq!(d.capabilities, defaults::all_capabilities());
        assert_eq!(d.seccomp, None);
        assert!(d.masked_paths.is_empty() && d.readonly_paths.is_empty());
        assert!(d.devices.iter().any(|dev| dev.path == "/dev/null"));
        assert_eq!(d.device_rules, defaults::privileged_device_rules());
        let sys = d.mounts.iter().find(|m| m.destination == "/sys").unwrap();
        assert!(!sys.options.contains(&"ro".to_string()));
        // an explicit profile still applies
        let d = linux_defaults_with(
            &SecurityOptions {
                privileged: true,
                security_opt: vec!["seccomp=builtin".into()],
                ..Default::default()
            },
            false,
        )
        .unwrap();
        assert!(d.seccomp.is_some());
    }

    #[test]
    fn apply_to_replaces_same_destination_mounts_and_keeps_others() {
        let d = linux_defaults_with(&SecurityOptions::default(), false).unwrap();
        let mut config = json!({
            "process": {"capabilities": {"inheritable": ["CAP_KILL"]}, "apparmorProfile": "x"},
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/data", "type": "bind", "source": "/srv", "options": ["rbind"]}
            ],
            "linux": {"seccomp": {"defaultAction": "SCMP_ACT_ALLOW"}}
        });
        d.apply_to(&mut config);
        let caps = &config["process"]["capabilities"];
        assert!(caps.get("inheritable").is_none());
        assert_eq!(caps["bounding"].as_array().unwrap().len(), 14);
        assert!(config["process"].get("apparmorProfile").is_none());
        let dests: Vec<&str> = config["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["destination"].as_str().unwrap())
            .collect();
        assert_eq!(
            dests,
            [
                "/proc",
                "/dev",
                "/dev/pts",
                "/sys",
                "/sys/fs/cgroup",
                "/dev/mqueue",
                "/dev/shm",
                "/data"
            ]
        );
        assert_eq!(
            config["linux"]["seccomp"]["defaultAction"],
            "SCMP_ACT_ERRNO"
        );
        assert_eq!(config["linux"]["resources"]["devices"][0]["allow"], false);
    }
}
