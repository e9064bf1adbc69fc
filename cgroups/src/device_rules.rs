//! Device access rules as the OCI spec gives them (`linux.resources.devices`), normalised once
//! and then written either to v1 devices.allow/devices.deny or compiled into the v2 eBPF
//! filter. Semantics for both: rules apply in order, the last matching rule wins, anything no
//! rule matches is denied.

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use crate::error::Error;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DevKind {
    All,
    Char,
    Block,
}

/// Access bits in the kernel's BPF_DEVCG_ACC_* encoding.
pub const ACC_MKNOD: u32 = 1;
pub const ACC_READ: u32 = 2;
pub const ACC_WRITE: u32 = 4;
pub const ACC_ALL: u32 = ACC_MKNOD | ACC_READ | ACC_WRITE;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceRule {
    pub allow: bool,
    pub kind: DevKind,
    /// None is the wildcard "*".
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub access: u32,
}

impl DeviceRule {
    /// The rule that matches every device and every access.
    pub fn is_wildcard(&self) -> bool {
        self.kind == DevKind::All
            && self.major.is_none()
            && self.minor.is_none()
            && self.access == ACC_ALL
    }

    /// The line the v1 devices controller parses: "c 1:3 rwm".
    pub fn v1_line(&self) -> String {
        let kind = match self.kind {
            DevKind::All => 'a',
            DevKind::Char => 'c',
            DevKind::Block => 'b',
        };
        let num = |n: Option<u32>| n.map_or_else(|| "*".to_string(), |v| v.to_string());
        let mut acc = String::new();
        if self.access & ACC_READ != 0 {
            acc.push('r');
        }
        if self.access & ACC_WRITE != 0 {
            acc.push('w');
        }
        if self.access & ACC_MKNOD != 0 {
            acc.push('m');
        }
        format!("{kind} {}:{} {acc}", num(self.major), num(self.minor))
    }
}

fn parse_access(access: Option<&str>) -> Result<u32, Error> {
    let Some(text) = access.filter(|a| !a.is_empty()) else {
        // runc treats a missing access as all of them.
        return Ok(ACC_ALL);
    };
    let mut bits = 0;
    for ch in text.chars() {
        bits |= match ch {
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            'm' => ACC_MKNOD,
            other => {
                return Err(Error::InvalidValue {
                    what: format!("device access {text:?}"),
                    reason: format!("{other:?} is not one of r, w, m"),
                })
            }
        };
    }
    Ok(bits)
}

fn parse_number(n: Option<i64>, what: &str) -> Result<Option<u32>, Error> {
    match n {
        None | Some(-1) => Ok(None),
        Some(v) => u32::try_from(v).map(Some).map_err(|_| Error::InvalidValue {
            what: format!("device {what} number {v}"),
            reason: "must be -1 (any) or between 0 and 4294967295".into(),
        }),
    }
}

/// Normalises the spec's rules. FIFO ("p") rules are dropped: the device cgroup never checks
/// FIFOs, and runc drops them the same way.
pub fn from_spec(rules: &[LinuxDeviceCgroup]) -> Result<Vec<DeviceRule>, Error> {
    let mut out = Vec::with_capacity(rules.len());
    for r in rules {
        let kind = match r.typ().unwrap_or(LinuxDeviceType::A) {
            LinuxDeviceType::A => DevKind::All,
            LinuxDeviceType::C | LinuxDeviceType::U => DevKind::Char,
            LinuxDeviceType::B => DevKind::Block,
            LinuxDeviceType::P => continue,
        };
        out.push(DeviceRule {
            allow: r.allow(),
            kind,
            major: parse_number(r.major(), "major")?,
            minor: parse_number(r.minor(), "minor")?,
            access: parse_access(r.access().as_deref())?,
        });
    }
    Ok(out)
}

/// The devices every runc container may use unless its spec says otherwise (runc's
/// AllowedDevices): mknod of any char/block device, /dev/null, zero, full, random, urandom,
/// tty, console, ptmx, the pty slaves and tun. The runtime appends these to the spec's rules.
pub fn default_allowed() -> Vec<LinuxDeviceCgroup> {
    let rule = |typ, major: Option<i64>, minor: Option<i64>, access: &str| {
        let mut r = LinuxDeviceCgroup::default();
        r.set_allow(true);
        r.set_typ(Some(typ));
        r.set_major(major);
        r.set_minor(minor);
        r.set_access(Some(access.to_string()));
        r
    };
    use LinuxDeviceType::{B, C};
    vec![
        rule(C, None, None, "m"),
        rule(B, None, None, "m"),
        rule(C, Some(1), Some(3), "rwm"),
        rule(C, Some(1), Some(8), "rwm"),
        rule(C, Some(1), Some(7), "rwm"),
        rule(C, Some(5), Some(0), "rwm"),
        rule(C, Some(1), Some(5), "rwm"),
        rule(C, Some(1), Some(9), "rwm"),
        rule(C, Some(5), Some(1), "rwm"),
        rule(C, Some(136), None, "rwm"),
        rule(C, Some(5), Some(2), "rwm"),
        rule(C, Some(10), Some(200), "rwm"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(allow: bool, typ: LinuxDeviceType, maj: i64, min: i64, acc: &str) -> LinuxDeviceCgroup {
        let mut r = LinuxDeviceCgroup::default();
        r.set_allow(allow);
        r.set_typ(Some(typ));
        r.set_major(Some(maj));
        r.set_minor(Some(min));
        r.set_access(Some(acc.into()));
        r
    }

    #[test]
    fn normalises_and_formats_rules() {
        let rules = from_spec(&[
            spec(false, LinuxDeviceType::A, -1, -1, "rwm"),
            spec(true, LinuxDeviceType::U, 1, 3, "rw"),
            spec(true, LinuxDeviceType::P, 1, 1, "rw"),
        ])
        .unwrap();
        assert_eq!(rules.len(), 2);
        assert!(rules[0].is_wildcard());
        assert_eq!(rules[0].v1_line(), "a *:* rwm");
        assert_eq!(rules[1].v1_line(), "c 1:3 rw");
    }

    #[test]
    fn rejects_bad_access_and_numbers() {
        let e = from_spec(&[spec(true, LinuxDeviceType::C, 1, 3, "rx")]).unwrap_err();
        assert!(e.to_string().contains("\"rx\""), "{e}");
        let e = from_spec(&[spec(true, LinuxDeviceType::C, -5, 3, "r")]).unwrap_err();
        assert!(e.to_string().contains("-5"), "{e}");
    }
}
