//! Device rules on the v1 devices controller (devices.allow / devices.deny).

use std::path::Path;

use crate::device_rules::DeviceRule;
use crate::error::Error;
use crate::fsio;

/// Resets the cgroup to the rules' default (the last match-everything rule, else deny-all),
/// then writes the remaining rules in order; the kernel's own list then gives last-match-wins.
pub fn set(dir: &Path, rules: &[DeviceRule]) -> Result<(), Error> {
    let (default_allow, rest) = match rules.iter().rposition(DeviceRule::is_wildcard) {
        Some(i) => (rules[i].allow, &rules[i + 1..]),
        None => (false, rules),
    };
    let reset_file = if default_allow {
        "devices.allow"
    } else {
        "devices.deny"
    };
    fsio::write(dir, reset_file, "a")?;
    for r in rest {
        let file = if r.allow {
            "devices.allow"
        } else {
            "devices.deny"
        };
        fsio::write(dir, file, &r.v1_line())?;
    }
    Ok(())
}
