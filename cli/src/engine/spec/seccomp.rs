//! Seccomp profiles in Docker's format, and their translation into OCI's `linux.seccomp`.
//!
//! Docker's format is OCI's plus conditions (`includes`/`excludes` on capabilities,
//! architectures and kernel version) and an `archMap`; the conditions are settled here, when
//! the container's capabilities are known, so the runtime only sees plain OCI rules. The
//! built-in profile is Docker's default, generated at build time from
//! `seccomp_default.facts` and evaluated by the same code as a user's profile file.

use std::path::Path;

use serde_json::{json, Map, Value};

use super::SpecError;

/// The generated default profile's shape (see cli/build.rs).
pub(super) struct StaticProfile {
    default_action: &'static str,
    default_errno_ret: Option<u32>,
    /// Host arch (Docker's name) → the filter's architectures, native first.
    arch_map: &'static [(&'static str, &'static [&'static str])],
    rules: &'static [StaticRule],
}

pub(super) struct StaticRule {
    action: &'static str,
    errno_ret: Option<u32>,
    names: &'static [&'static str],
    args: &'static [StaticArg],
    includes: StaticFilter,
    excludes: StaticFilter,
}

pub(super) struct StaticArg {
    index: u32,
    value: u64,
    value_two: u64,
    op: &'static str,
}

pub(super) struct StaticFilter {
    caps: &'static [&'static str],
    arches: &'static [&'static str],
    min_kernel: Option<(u32, u32)>,
}

include!(concat!(env!("OUT_DIR"), "/seccomp_default.rs"));

const ACTIONS: &[&str] = &[
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_TRAP",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_LOG",
    "SCMP_ACT_NOTIFY",
];

const OPS: &[&str] = &[
    "SCMP_CMP_NE",
    "SCMP_CMP_LT",
    "SCMP_CMP_LE",
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_MASKED_EQ",
];

/// A seccomp profile in Docker's format (`docker run --security-opt seccomp=FILE`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DockerProfile {
    pub default_action: String,
    pub default_errno_ret: Option<u32>,
    /// OCI's plain list; a profile has this or `arch_map`, never both (Docker's rule).
    pub architectures: Vec<String>,
    pub arch_map: Vec<ArchEntry>,
    pub flags: Vec<String>,
    pub listener_path: Option<String>,
    pub listener_metadata: Option<String>,
    pub syscalls: Vec<Rule>,
}

/// One `archMap` entry: when the host is `architecture`, the filter covers it and its
/// compat ABIs.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchEntry {
    pub architecture: String,
    pub sub_architectures: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Rule {
    pub names: Vec<String>,
    pub action: String,
    pub errno_ret: Option<u32>,
    pub args: Vec<Arg>,
    pub includes: Filter,
    pub excludes: Filter,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Arg {
    pub index: u32,
    pub value: u64,
    pub value_two: u64,
    pub op: String,
}

/// Docker's `includes`/`excludes`. Arch names are Docker's (`amd64`, `arm64`, `x86`, ...).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Filter {
    pub caps: Vec<String>,
    pub arches: Vec<String>,
    pub min_kernel: Option<(u32, u32)>,
}

/// What a profile's conditions are evaluated against besides the capabilities.
#[derive(Debug, Clone, PartialEq)]
pub struct Host {
    /// Docker's (libseccomp's) name for the architecture: `amd64`, `arm64`, `x86`, `arm`, ...
    pub arch: String,
    /// `(major, minor)` of the running kernel; None when it could not be read.
    pub kernel: Option<(u32, u32)>,
}

impl Host {
    /// The machine this process runs on.
    pub fn current() -> Host {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "x86",
            "arm" => "arm",
            "riscv64" => "riscv64",
            "s390x" => "s390x",
            "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
            "powerpc64" => "ppc64",
            "loongarch64" => "loong64",
            other => other,
        };
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .ok()
            .and_then(|r| parse_kernel_release(&r));
        Host {
            arch: arch.to_string(),
            kernel,
        }
    }
}

/// `6.8.0-45-generic` → (6, 8); suffixes and the patch level do not count, as in Docker.
fn parse_kernel_release(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.trim().split(['.', '-', '+']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// The SCMP_ARCH_ name of a Docker arch name, for finding the host in an `archMap`.
fn scmp_arch(docker_arch: &str) -> Option<&'static str> {
    Some(match docker_arch {
        "amd64" => "SCMP_ARCH_X86_64",
        "x86" => "SCMP_ARCH_X86",
        "x32" => "SCMP_ARCH_X32",
        "arm64" => "SCMP_ARCH_AARCH64",
        "arm" => "SCMP_ARCH_ARM",
        "riscv64" => "SCMP_ARCH_RISCV64",
        "s390" => "SCMP_ARCH_S390",
        "s390x" => "SCMP_ARCH_S390X",
        "ppc" => "SCMP_ARCH_PPC",
        "ppc64" => "SCMP_ARCH_PPC64",
        "ppc64le" => "SCMP_ARCH_PPC64LE",
        "loong64" => "SCMP_ARCH_LOONGARCH64",
        _ => return None,
    })
}

impl From<&StaticFilter> for Filter {
    fn from(f: &StaticFilter) -> Filter {
        Filter {
            caps: f.caps.iter().map(|s| s.to_string()).collect(),
            arches: f.arches.iter().map(|s| s.to_string()).collect(),
            min_kernel: f.min_kernel,
        }
    }
}

impl DockerProfile {
    /// Docker's default profile.
    pub fn builtin() -> DockerProfile {
        let p = &DEFAULT_PROFILE;
        DockerProfile {
            default_action: p.default_action.to_string(),
            default_errno_ret: p.default_errno_ret,
            architectures: Vec::new(),
            arch_map: p
                .arch_map
                .iter()
                .map(|(_, list)| ArchEntry {
                    architecture: list[0].to_string(),
                    sub_architectures: list[1..].iter().map(|s| s.to_string()).collect(),
                })
                .collect(),
            flags: Vec::new(),
            listener_path: None,
            listener_metadata: None,
            syscalls: p
                .rules
                .iter()
                .map(|r| Rule {
                    names: r.names.iter().map(|s| s.to_string()).collect(),
                    action: r.action.to_string(),
                    errno_ret: r.errno_ret,
                    args: r
                        .args
                        .iter()
                        .map(|a| Arg {
                            index: a.index,
                            value: a.value,
                            value_two: a.value_two,
                            op: a.op.to_string(),
                        })
                        .collect(),
                    includes: (&r.includes).into(),
                    excludes: (&r.excludes).into(),
                })
                .collect(),
        }
    }

    /// Reads a Docker-format profile file.
    pub fn from_file(path: &Path) -> Result<DockerProfile, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::ReadProfile {
            path: path.to_path_buf(),
            source,
        })?;
        DockerProfile::from_json(&text, &path.display().to_string())
    }

    /// Parses a Docker-format profile; `origin` names it in errors. Fields Docker ignores
    /// (`comment`, unknown keys) are ignored here too.
    pub fn from_json(text: &str, origin: &str) -> Result<DockerProfile, SpecError> {
        let bad = |reason: String| SpecError::BadProfile {
            origin: origin.to_string(),
            reason,
        };
        let v: Value = serde_json::from_str(text).map_err(|e| bad(format!("not JSON: {e}")))?;
        let top = v
            .as_object()
            .ok_or_else(|| bad("not a JSON object".into()))?;
        let mut p = DockerProfile {
            default_action: opt_str(top, "defaultAction")
                .map_err(bad)?
                .unwrap_or_default(),
            default_errno_ret: opt_u32(top, "defaultErrnoRet").map_err(bad)?,
            architectures: str_list(top, "architectures").map_err(bad)?,
            flags: str_list(top, "flags").map_err(bad)?,
            listener_path: opt_str(top, "listenerPath").map_err(bad)?,
            listener_metadata: opt_str(top, "listenerMetadata").map_err(bad)?,
            ..DockerProfile::default()
        };
        if !p.default_action.is_empty() && !ACTIONS.contains(&p.default_action.as_str()) {
            return Err(bad(format!(
                "defaultAction: unknown action {:?}",
                p.default_action
            )));
        }
        for (i, entry) in array(top, "archMap").map_err(bad)?.iter().enumerate() {
            let at = |e: String| bad(format!("archMap[{i}]: {e}"));
            let o = entry
                .as_object()
                .ok_or_else(|| at("not an object".into()))?;
            p.arch_map.push(ArchEntry {
                architecture: opt_str(o, "architecture")
                    .map_err(at)?
                    .ok_or_else(|| at("no architecture".into()))?,
                sub_architectures: str_list(o, "subArchitectures").map_err(at)?,
            });
        }
        if !p.architectures.is_empty() && !p.arch_map.is_empty() {
            return Err(bad(
                "both 'architectures' and 'archMap' are given; use one of them".into(),
            ));
        }
        for (i, entry) in array(top, "syscalls").map_err(bad)?.iter().enumerate() {
            let rule = parse_rule(entry).map_err(|e| bad(format!("syscalls[{i}]: {e}")))?;
            p.syscalls.push(rule);
        }
        Ok(p)
    }

    /// OCI's `linux.seccomp` for a container with capability set `caps` (bounding set, as
    /// `CAP_X` names) on `host`. None when the profile names neither a default action nor a
    /// syscall, which Docker takes as "no seccomp".
    pub fn to_oci(&self, caps: &[String], host: &Host) -> Result<Option<Value>, SpecError> {
        if self.default_action.is_empty() && self.syscalls.is_empty() {
            return Ok(None);
        }
        let mut out = Map::new();
        out.insert("defaultAction".into(), json!(self.default_action));
        if let Some(e) = self.default_errno_ret {
            out.insert("defaultErrnoRet".into(), json!(e));
        }
        let mut arches = self.architectures.clone();
        if let Some(native) = scmp_arch(&host.arch) {
            // An archMap without the host's arch leaves the list empty: the runtime then
            // filters the native ABI only, as Docker does.
            if let Some(e) = self.arch_map.iter().find(|e| e.architecture == native) {
                arches.push(e.architecture.clone());
                arches.extend(e.sub_architectures.iter().cloned());
            }
        }
        if !arches.is_empty() {
            out.insert("architectures".into(), json!(arches));
        }
        if !self.flags.is_empty() {
            out.insert("flags".into(), json!(self.flags));
        }
        if let Some(l) = &self.listener_path {
            out.insert("listenerPath".into(), json!(l));
        }
        if let Some(l) = &self.listener_metadata {
            out.insert("listenerMetadata".into(), json!(l));
        }
        let mut syscalls = Vec::new();
        for rule in &self.syscalls {
            if rule.applies(caps, host)? {
                syscalls.push(rule.to_oci());
            }
        }
        out.insert("syscalls".into(), Value::Array(syscalls));
        Ok(Some(Value::Object(out)))
    }
}

impl Rule {
    /// Docker's reading: every `includes` condition holds and no `excludes` condition does;
    /// `includes.caps` needs all of them, `excludes.caps` any one.
    fn applies(&self, caps: &[String], host: &Host) -> Result<bool, SpecError> {
        let has = |c: &String| caps.iter().any(|x| x == c);
        let kernel_at_least = |min: (u32, u32)| {
            match host.kernel {
            Some(k) => Ok(k >= min),
            None => Err(SpecError::KernelVersion(format!(
                "a seccomp rule for {} depends on kernel {}.{}, and /proc/sys/kernel/osrelease could not be read",
                self.names.join(","),
                min.0,
                min.1
            ))),
        }
        };
        let ex = &self.excludes;
        if ex.arches.contains(&host.arch) || ex.caps.iter().any(has) {
            return Ok(false);
        }
        if let Some(min) = ex.min_kernel {
            if kernel_at_least(min)? {
                return Ok(false);
            }
        }
        let inc = &self.includes;
        if !inc.arches.is_empty() && !inc.arches.contains(&host.arch) {
            return Ok(false);
        }
        if !inc.caps.iter().all(has) {
            return Ok(false);
        }
        if let Some(min) = inc.min_kernel {
            if !kernel_at_least(min)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn to_oci(&self) -> Value {
        let mut o = Map::new();
        o.insert("names".into(), json!(self.names));
        o.insert("action".into(), json!(self.action));
        if let Some(e) = self.errno_ret {
            o.insert("errnoRet".into(), json!(e));
        }
        if !self.args.is_empty() {
            let args: Vec<Value> = self
                .args
                .iter()
                .map(|a| {
                    let mut m = Map::new();
                    m.insert("index".into(), json!(a.index));
                    m.insert("value".into(), json!(a.value));
                    if a.value_two != 0 {
                        m.insert("valueTwo".into(), json!(a.value_two));
                    }
                    m.insert("op".into(), json!(a.op));
                    Value::Object(m)
                })
                .collect();
            o.insert("args".into(), Value::Array(args));
        }
        Value::Object(o)
    }
}

/// Docker's default profile in OCI form for capability set `caps` on this host.
pub fn default_profile(caps: &[String]) -> Result<Value, SpecError> {
    Ok(DockerProfile::builtin()
        .to_oci(caps, &Host::current())?
        .expect("the built-in profile has a default action"))
}

fn parse_rule(v: &Value) -> Result<Rule, String> {
    let o = v.as_object().ok_or("not an object")?;
    let mut names = str_list(o, "names")?;
    if let Some(name) = opt_str(o, "name")? {
        if !names.is_empty() {
            return Err("both 'name' and 'names' are given; use 'names'".into());
        }
        names.push(name);
    }
    if names.is_empty() {
        return Err("no syscall names".into());
    }
    let action = opt_str(o, "action")?.ok_or("no action")?;
    if !ACTIONS.contains(&action.as_str()) {
        return Err(format!("unknown action {action:?}"));
    }
    let mut args = Vec::new();
    for (i, a) in array(o, "args")?.iter().enumerate() {
        let at = |e: String| format!("args[{i}]: {e}");
        let a = a.as_object().ok_or_else(|| at("not an object".into()))?;
        let index = opt_u64(a, "index").map_err(at)?.unwrap_or(0);
        if index > 5 {
            return Err(at(format!("index {index}: syscalls have arguments 0 to 5")));
        }
        let op = opt_str(a, "op")
            .map_err(at)?
            .ok_or_else(|| at("no op".into()))?;
        if !OPS.contains(&op.as_str()) {
            return Err(at(format!("unknown op {op:?}")));
        }
        args.push(Arg {
            index: index as u32,
            value: opt_u64(a, "value").map_err(at)?.unwrap_or(0),
            value_two: opt_u64(a, "valueTwo").map_err(at)?.unwrap_or(0),
            op,
        });
    }
    Ok(Rule {
        names,
        action,
        errno_ret: opt_u32(o, "errnoRet")?,
        args,
        includes: parse_filter(o, "includes")?,
        excludes: parse_filter(o, "excludes")?,
    })
}

fn parse_filter(o: &Map<String, Value>, key: &str) -> Result<Filter, String> {
    let f = match o.get(key) {
        None | Some(Value::Null) => return Ok(Filter::default()),
        Some(Value::Object(f)) => f,
        Some(_) => return Err(format!("{key}: not an object")),
    };
    let at = |e: String| format!("{key}: {e}");
    let min_kernel = match opt_str(f, "minKernel").map_err(at)? {
        None => None,
        Some(s) if s.is_empty() => None,
        Some(s) => {
            let parsed = s
                .split_once('.')
                .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
                .filter(|&v| v != (0, 0));
            Some(
                parsed
                    .ok_or_else(|| at(format!("minKernel {s:?}: expected \"<kernel>.<major>\"")))?,
            )
        }
    };
    Ok(Filter {
        caps: str_list(f, "caps").map_err(at)?,
        arches: str_list(f, "arches").map_err(at)?,
        min_kernel,
    })
}

fn opt_str(o: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v) => Err(format!("{key}: expected a string, got {v}")),
    }
}

fn opt_u64(o: &Map<String, Value>, key: &str) -> Result<Option<u64>, String> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| format!("{key}: expected an unsigned integer, got {v}")),
    }
}

fn opt_u32(o: &Map<String, Value>, key: &str) -> Result<Option<u32>, String> {
    match opt_u64(o, key)? {
        None => Ok(None),
        Some(v) => u32::try_from(v)
            .map(Some)
            .map_err(|_| format!("{key}: {v} is too large")),
    }
}

fn array<'a>(o: &'a Map<String, Value>, key: &str) -> Result<&'a [Value], String> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(v) => Err(format!("{key}: expected a list, got {v}")),
    }
}

fn str_list(o: &Map<String, Value>, key: &str) -> Result<Vec<String>, String> {
    array(o, key)?
        .iter()
        .map(|v| {
            v.as_str()
                .map(str::to_string)
                .ok_or_else(|| format!("{key}: expected strings, got {v}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amd64() -> Host {
        Host {
            arch: "amd64".into(),
            kernel: Some((6, 1)),
        }
    }

    fn caps(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    /// The rules that name `syscall`, in order.
    fn rules_for<'a>(profile: &'a Value, syscall: &str) -> Vec<&'a Value> {
        profile["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["names"].as_array().unwrap().iter().any(|n| n == syscall))
            .collect()
    }

    fn default_for(list: &[&str]) -> Value {
        DockerProfile::builtin()
            .to_oci(&caps(list), &amd64())
            .unwrap()
            .unwrap()
    }

    #[test]
    fn default_profile_denies_with_eperm_and_covers_the_compat_abis() {
        let p = default_for(&super::super::defaults::DEFAULT_CAPABILITIES);
        assert_eq!(p["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(p["defaultErrnoRet"], 1);
        assert_eq!(
            p["architectures"],
            json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"])
        );
        let arm = DockerProfile::builtin()
            .to_oci(
                &[],
                &Host {
                    arch: "arm64".into(),
                    kernel: Some((6, 1)),
                },
            )
            .unwrap()
            .unwrap();
        assert_eq!(
            arm["architectures"],
            json!(["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"])
        );
        // arch-specific rules follow the host
        assert_eq!(rules_for(&p, "arch_prctl").len(), 1);
        assert!(rules_for(&arm, "arch_prctl").is_empty());
        assert_eq!(rules_for(&arm, "set_tls").len(), 1);
    }

    #[test]
    fn default_profile_allows_the_ordinary_calls() {
        let p = default_for(&super::super::defaults::DEFAULT_CAPABILITIES);
        for name in [
            "read",
            "write",
            "openat",
            "execve",
            "clock_gettime",
            "chroot",
        ] {
            let r = rules_for(&p, name);
            assert_eq!(r.len(), 1, "{name}: {r:?}");
            assert_eq!(r[0]["action"], "SCMP_ACT_ALLOW");
            assert!(r[0].get("args").is_none());
        }
        // ptrace is allowed on kernels >= 4.8 only
        assert_eq!(rules_for(&p, "ptrace").len(), 1);
        let old = DockerProfile::builtin()
            .to_oci(
                &[],
                &Host {
                    arch: "amd64".into(),
                    kernel: Some((4, 4)),
                },
            )
            .unwrap()
            .unwrap();
        assert!(rules_for(&old, "ptrace").is_empty());
    }

    #[test]
    fn sys_admin_unlocks_namespaces_and_mounts() {
        let without = default_for(&["CAP_CHOWN"]);
        for name in ["mount", "umount2", "unshare", "setns", "bpf"] {
            assert!(rules_for(&without, name).is_empty(), "{name}");
        }
        // clone only without namespace flags, clone3 answered ENOSYS
        let clone = rules_for(&without, "clone");
        assert_eq!(clone.len(), 1);
        assert_eq!(
            clone[0]["args"],
            json!([{"index": 0, "value": 2114060288u64, "op": "SCMP_CMP_MASKED_EQ"}])
        );
        let clone3 = rules_for(&without, "clone3");
        assert_eq!(clone3.len(), 1);
        assert_eq!(clone3[0]["action"], "SCMP_ACT_ERRNO");
        assert_eq!(clone3[0]["errnoRet"], 38);

        let with = default_for(&["CAP_SYS_ADMIN"]);
        for name in ["mount", "umount2", "unshare", "setns", "bpf", "clone3"] {
            let r = rules_for(&with, name);
            assert_eq!(r.len(), 1, "{name}: {r:?}");
            assert_eq!(r[0]["action"], "SCMP_ACT_ALLOW");
        }
        let clone = rules_for(&with, "clone");
        assert_eq!(clone.len(), 1);
        assert!(clone[0].get("args").is_none());
    }

    #[test]
    fn other_capabilities_unlock_their_calls() {
        let cases = [
            ("CAP_SYS_PTRACE", "kcmp"),
            ("CAP_SYS_MODULE", "init_module"),
            ("CAP_SYS_BOOT", "reboot"),
            ("CAP_SYS_TIME", "clock_settime"),
            ("CAP_SYS_NICE", "mbind"),
            ("CAP_SYS_RAWIO", "iopl"),
            ("CAP_SYS_PACCT", "acct"),
            ("CAP_SYSLOG", "syslog"),
            ("CAP_BPF", "bpf"),
            ("CAP_PERFMON", "perf_event_open"),
            ("CAP_DAC_READ_SEARCH", "open_by_handle_at"),
            ("CAP_SYS_TTY_CONFIG", "vhangup"),
            ("CAP_SYS_CHROOT", "chroot"),
        ];
        for (cap, call) in cases {
            assert!(rules_for(&default_for(&[]), call).is_empty(), "{call}");
            assert_eq!(rules_for(&default_for(&[cap]), call).len(), 1, "{cap}");
        }
    }

    #[test]
    fn socket_refuses_alg_and_vsock_and_personality_is_limited() {
        let p = default_for(&[]);
        let socket: Vec<(u64, &str)> = rules_for(&p, "socket")
            .iter()
            .map(|r| {
                let a = &r["args"][0];
                (a["value"].as_u64().unwrap(), a["op"].as_str().unwrap())
            })
            .collect();
        assert_eq!(
            socket,
            [
                (38, "SCMP_CMP_LT"),
                (39, "SCMP_CMP_EQ"),
                (40, "SCMP_CMP_GT")
            ]
        );
        let personas: Vec<u64> = rules_for(&p, "personality")
            .iter()
            .map(|r| r["args"][0]["value"].as_u64().unwrap())
            .collect();
        assert_eq!(personas, [0, 8, 0x20000, 0x20008, 0xffff_ffff]);
    }

    #[test]
    fn docker_format_profile_translates_to_oci() {
        let text = r#"{
            "defaultAction": "SCMP_ACT_ALLOW",
            "archMap": [
                {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]},
                {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": null}
            ],
            "syscalls": [
                {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
                 "comment": "no new directories"},
                {"name": "chown", "action": "SCMP_ACT_ERRNO", "excludes": {"caps": ["CAP_CHOWN"]}},
                {"names": ["mount"], "action": "SCMP_ACT_ERRNO", "includes": {"caps": ["CAP_SYS_ADMIN"], "arches": ["amd64"]}},
                {"names": ["bpf"], "action": "SCMP_ACT_ERRNO", "includes": {"minKernel": "9.0"}},
                {"names": ["getpid"], "action": "SCMP_ACT_LOG",
                 "args": [{"index": 1, "value": 4, "valueTwo": 4, "op": "SCMP_CMP_MASKED_EQ"}]}
            ]
        }"#;
        let p = DockerProfile::from_json(text, "test.json").unwrap();
        let oci = p
            .to_oci(&caps(&["CAP_CHOWN", "CAP_SYS_ADMIN"]), &amd64())
            .unwrap()
            .unwrap();
        assert_eq!(
            oci,
            json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
                "syscalls": [
                    {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
                    {"names": ["mount"], "action": "SCMP_ACT_ERRNO"},
                    {"names": ["getpid"], "action": "SCMP_ACT_LOG",
                     "args": [{"index": 1, "value": 4, "valueTwo": 4, "op": "SCMP_CMP_MASKED_EQ"}]}
                ]
            })
        );
        let arm = p
            .to_oci(
                &[],
                &Host {
                    arch: "arm64".into(),
                    kernel: Some((10, 0)),
                },
            )
            .unwrap()
            .unwrap();
        assert_eq!(arm["architectures"], json!(["SCMP_ARCH_AARCH64"]));
        let names: Vec<&str> = arm["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["names"][0].as_str().unwrap())
            .collect();
        assert_eq!(names, ["mkdir", "chown", "bpf", "getpid"]);
    }

    #[test]
    fn oci_format_profile_passes_through() {
        let text = r#"{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
            "architectures": ["SCMP_ARCH_X86_64"], "flags": ["SECCOMP_FILTER_FLAG_LOG"],
            "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}"#;
        let oci = DockerProfile::from_json(text, "t")
            .unwrap()
            .to_oci(&[], &amd64())
            .unwrap()
            .unwrap();
        assert_eq!(oci, serde_json::from_str::<Value>(text).unwrap());
    }

    #[test]
    fn empty_profile_means_no_seccomp() {
        let p = DockerProfile::from_json("{}", "t").unwrap();
        assert_eq!(p.to_oci(&[], &amd64()).unwrap(), None);
    }

    #[test]
    fn bad_profiles_are_refused_naming_the_problem() {
        let cases = [
            ("not json", "not JSON"),
            ("[]", "not a JSON object"),
            (r#"{"defaultAction": "SCMP_ACT_NOPE"}"#, "SCMP_ACT_NOPE"),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86"], "archMap": [{"architecture": "SCMP_ARCH_X86_64"}]}"#,
                "both 'architectures' and 'archMap'",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"]}]}"#,
                "syscalls[0]: no action",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"name": "read", "names": ["write"], "action": "SCMP_ACT_ALLOW"}]}"#,
                "both 'name' and 'names'",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}"#,
                "args[0]: index 6",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 1, "op": "EQ"}]}]}"#,
                "unknown op \"EQ\"",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "includes": {"minKernel": "4"}}]}"#,
                "minKernel \"4\"",
            ),
        ];
        for (text, needle) in cases {
            let err = DockerProfile::from_json(text, "my.json")
                .unwrap_err()
                .to_string();
            assert!(err.contains("my.json"), "{err}");
            assert!(err.contains(needle), "{text}: {err} lacks {needle:?}");
        }
    }

    #[test]
    fn kernel_release_parses_like_docker() {
        assert_eq!(parse_kernel_release("6.8.0-45-generic\n"), Some((6, 8)));
        assert_eq!(parse_kernel_release("3.12-1-amd64"), Some((3, 12)));
        assert_eq!(parse_kernel_release("5.15+"), Some((5, 15)));
        assert_eq!(parse_kernel_release("x"), None);
    }
}
