//! Device rules on the v1 devices controller (devices.allow / devices.deny).
//!
//! The kernel keeps a default (allow or deny) and a list of exceptions keyed by
//! (type, major, minor) with access bits. Resetting it ("a" to devices.deny) and rebuilding
//! would briefly cut a running container off its devices on every update, so when the current
//! and wanted defaults are both deny, only the difference is written, the way runc does it.

use std::path::Path;

use crate::device_rules::{DevKind, DeviceRule, ACC_ALL, ACC_MKNOD, ACC_READ, ACC_WRITE};
use crate::error::Error;
use crate::fsio;

type Key = (u8, Option<u32>, Option<u32>);

/// Exceptions in the order they were granted: the kernel lists them in that order and
/// runtime-spec requires the config's order to be kept.
#[derive(Debug, Default, PartialEq, Eq)]
struct Exceptions(Vec<(Key, u32)>);

impl Exceptions {
    fn get(&self, k: &Key) -> Option<&u32> {
        self.0.iter().find(|(key, _)| key == k).map(|(_, v)| v)
    }
    fn get_mut(&mut self, k: &Key) -> Option<&mut u32> {
        self.0.iter_mut().find(|(key, _)| key == k).map(|(_, v)| v)
    }
    fn add(&mut self, k: Key, bits: u32) {
        match self.get_mut(&k) {
            Some(v) => *v |= bits,
            None => self.0.push((k, bits)),
        }
    }
    fn insert(&mut self, k: Key, bits: u32) {
        match self.get_mut(&k) {
            Some(v) => *v = bits,
            None => self.0.push((k, bits)),
        }
    }
    fn remove(&mut self, k: &Key) {
        self.0.retain(|(key, _)| key != k);
    }
    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.len()
    }
    fn iter(&self) -> impl Iterator<Item = (&Key, &u32)> {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

impl std::ops::Index<&Key> for Exceptions {
    type Output = u32;
    fn index(&self, k: &Key) -> &u32 {
        self.get(k).expect("no such device exception")
    }
}

#[derive(Debug, PartialEq, Eq)]
struct State {
    default_allow: bool,
    exceptions: Exceptions,
}

fn kind_byte(k: DevKind) -> u8 {
    match k {
        DevKind::All => b'a',
        DevKind::Char => b'c',
        DevKind::Block => b'b',
    }
}

fn rule_for(key: Key, access: u32, allow: bool) -> DeviceRule {
    let kind = match key.0 {
        b'c' => DevKind::Char,
        b'b' => DevKind::Block,
        _ => DevKind::All,
    };
    DeviceRule {
        allow,
        kind,
        major: key.1,
        minor: key.2,
        access,
    }
}

/// What the kernel will hold after the rules: exceptions are added by rules that go against
/// the default and taken away (bit by bit, exact key only) by rules that agree with it.
fn simulate(rules: &[DeviceRule]) -> State {
    let (default_allow, rest) = match rules.iter().rposition(DeviceRule::is_wildcard) {
        Some(i) => (rules[i].allow, &rules[i + 1..]),
        None => (false, rules),
    };
    let mut exceptions = Exceptions::default();
    for r in rest {
        let key = (kind_byte(r.kind), r.major, r.minor);
        if r.allow != default_allow {
            exceptions.add(key, r.access);
        } else if let Some(bits) = exceptions.get_mut(&key) {
            *bits &= !r.access;
            if *bits == 0 {
                exceptions.remove(&key);
            }
        }
    }
    State {
        default_allow,
        exceptions,
    }
}

/// devices.list shows "a *:* rwm" when the default is allow (its exceptions are not shown),
/// otherwise the allowed exceptions.
fn current(dir: &Path) -> Result<Option<State>, Error> {
    let text = fsio::read(dir, "devices.list")?;
    let mut exceptions = Exceptions::default();
    for line in text.lines() {
        if line.trim() == "a *:* rwm" {
            return Ok(None);
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        let parsed = (|| {
            let [kind, nums, acc] = f.as_slice() else {
                return None;
            };
            let (maj, min) = nums.split_once(':')?;
            let num = |s: &str| -> Option<Option<u32>> {
                if s == "*" {
                    Some(None)
                } else {
                    s.parse().ok().map(Some)
                }
            };
            let mut bits = 0;
            for ch in acc.chars() {
                bits |= match ch {
                    'r' => ACC_READ,
                    'w' => ACC_WRITE,
                    'm' => ACC_MKNOD,
                    _ => return None,
                };
            }
            Some(((*kind.as_bytes().first()?, num(maj)?, num(min)?), bits))
        })();
        let Some((key, bits)) = parsed else {
            return Err(Error::Parse {
                path: dir.join("devices.list"),
                reason: format!("unexpected line {line:?}"),
            });
        };
        exceptions.insert(key, bits);
    }
    Ok(Some(State {
        default_allow: false,
        exceptions,
    }))
}

fn write_rule(dir: &Path, r: &DeviceRule) -> Result<(), Error> {
    let file = if r.allow {
        "devices.allow"
    } else {
        "devices.deny"
    };
    fsio::write(dir, file, &r.v1_line())
}

pub fn set(dir: &Path, rules: &[DeviceRule]) -> Result<(), Error> {
    let target = simulate(rules);
    if let Some(cur) = current(dir)?.filter(|_| !target.default_allow) {
        // Grant what is new first, then take away, so nothing the container keeps access to
        // is ever missing in between.
        for (key, &bits) in target.exceptions.iter() {
            let added = bits & !cur.exceptions.get(key).copied().unwrap_or(0);
            if added != 0 {
                write_rule(dir, &rule_for(*key, added, true))?;
            }
        }
        for (key, &bits) in cur.exceptions.iter() {
            let removed = bits & !target.exceptions.get(key).copied().unwrap_or(0);
            if removed != 0 {
                write_rule(dir, &rule_for(*key, removed, false))?;
            }
        }
        return Ok(());
    }
    let reset = rule_for((b'a', None, None), ACC_ALL, target.default_allow);
    write_rule(dir, &reset)?;
    for (key, &bits) in target.exceptions.iter() {
        write_rule(dir, &rule_for(*key, bits, !target.default_allow))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(
        allow: bool,
        kind: DevKind,
        major: Option<u32>,
        minor: Option<u32>,
        access: u32,
    ) -> DeviceRule {
        DeviceRule {
            allow,
            kind,
            major,
            minor,
            access,
        }
    }

    #[test]
    fn simulation_follows_the_kernel() {
        let s = simulate(&[
            r(true, DevKind::Char, Some(9), Some(9), ACC_ALL),
            r(false, DevKind::All, None, None, ACC_ALL),
            r(true, DevKind::Char, Some(1), Some(3), ACC_ALL),
            r(false, DevKind::Char, Some(1), Some(3), ACC_WRITE),
            r(true, DevKind::Char, Some(136), None, ACC_READ),
        ]);
        assert!(!s.default_allow);
        assert_eq!(
            s.exceptions.len(),
            2,
            "rules before the reset are gone: {s:?}"
        );
        assert_eq!(
            s.exceptions[&(b'c', Some(1), Some(3))],
            ACC_READ | ACC_MKNOD
        );
        assert_eq!(s.exceptions[&(b'c', Some(136), None)], ACC_READ);
    }
}
