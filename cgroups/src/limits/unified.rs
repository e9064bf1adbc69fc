//! `linux.resources.unified`: raw cgroup v2 interface files, written last so they override the
//! typed fields.

use std::collections::HashMap;
use std::path::Path;

use crate::error::Error;
use crate::fsio;

/// Writes each key; `owned_by_v1` tells which controllers live in v1 on a hybrid host, whose
/// v2 files can not be used.
pub fn set(
    dir: &Path,
    unified: &HashMap<String, String>,
    owned_by_v1: impl Fn(&str) -> bool,
) -> Result<(), Error> {
    let mut keys: Vec<_> = unified.iter().collect();
    keys.sort_by(|a, b| a.0.cmp(b.0));
    for (key, value) in keys {
        if key.contains('/') || key.starts_with('.') || !key.contains('.') {
            return Err(Error::InvalidValue {
                what: format!("unified key {key:?}"),
                reason: "must be a cgroup v2 interface file name like memory.high".into(),
            });
        }
        let controller = key.split('.').next().unwrap_or_default();
        if owned_by_v1(controller) {
            return Err(Error::InvalidValue {
                what: format!("unified key {key:?}"),
                reason: format!("the {controller} controller is mounted as cgroup v1 on this host"),
            });
        }
        match fsio::write(dir, key, value) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                return Err(Error::InvalidValue {
                    what: format!("unified key {key:?}"),
                    reason: format!(
                        "{} has no such file: the {controller} controller is not enabled \
                         there or the key does not exist",
                        dir.display()
                    ),
                })
            }
            other => other?,
        }
    }
    Ok(())
}
