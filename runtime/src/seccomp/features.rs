//! The runtime-spec features.json `linux.seccomp` object.

use serde::Serialize;

use super::arch::Abi;
use super::load::flags_supported;

/// What `berth-runtime features` reports under `linux.seccomp`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Features {
    pub enabled: bool,
    pub actions: Vec<String>,
    pub operators: Vec<String>,
    pub archs: Vec<String>,
    pub known_flags: Vec<String>,
    /// The known flags the running kernel accepts.
    pub supported_flags: Vec<String>,
}

const ACTIONS: [&str; 9] = [
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_LOG",
    "SCMP_ACT_NOTIFY",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_TRAP",
];

const OPERATORS: [&str; 7] = [
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_LE",
    "SCMP_CMP_LT",
    "SCMP_CMP_MASKED_EQ",
    "SCMP_CMP_NE",
];

/// Known flags and the kernel flag bits that test each (WAIT_KILLABLE_RECV is only valid
/// together with NEW_LISTENER).
const FLAGS: [(&str, libc::c_ulong); 4] = [
    ("SECCOMP_FILTER_FLAG_TSYNC", libc::SECCOMP_FILTER_FLAG_TSYNC),
    ("SECCOMP_FILTER_FLAG_LOG", libc::SECCOMP_FILTER_FLAG_LOG),
    (
        "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
        libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW,
    ),
    (
        "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
        libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV | libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
    ),
];

#[cfg(test)]
impl Features {
    /// The same object as oci-spec's type, for a runtime that builds its whole features
    /// document with oci-spec.
    pub fn to_oci(&self) -> oci_spec::runtime::Seccomp {
        let mut out = oci_spec::runtime::Seccomp::default();
        out.set_enabled(Some(self.enabled))
            .set_actions(Some(parse_names(&self.actions)))
            .set_operators(Some(self.operators.clone()))
            .set_archs(Some(parse_names(&self.archs)))
            .set_known_flags(Some(self.known_flags.clone()))
            .set_supported_flags(Some(self.supported_flags.clone()));
        out
    }
}

/// config.json names to oci-spec enum values; every name here comes from oci-spec's own set.
#[cfg(test)]
fn parse_names<T: serde::de::DeserializeOwned>(names: &[String]) -> Vec<T> {
    names
        .iter()
        .filter_map(|s| serde_json::from_value(serde_json::Value::from(s.as_str())).ok())
        .collect()
}

pub fn supported() -> Features {
    let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let mut archs: Vec<String> = Abi::ALL.iter().map(|a| a.oci_name().to_owned()).collect();
    archs.sort();
    Features {
        enabled: true,
        actions: strings(&ACTIONS),
        operators: strings(&OPERATORS),
        archs,
        known_flags: FLAGS.iter().map(|(n, _)| n.to_string()).collect(),
        supported_flags: FLAGS
            .iter()
            .filter(|(_, bits)| flags_supported(*bits))
            .map(|(n, _)| n.to_string())
            .collect(),
    }
}
