//! Freezing a cgroup: v1 freezer.state, or v2 cgroup.freeze with cgroup.events telling when the
//! freeze has taken effect. Both are asynchronous in the kernel, so the caller's "frozen" must
//! wait for the state to settle.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::fsio;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FreezerState {
    Thawed,
    /// Asked to freeze, some task not stopped yet.
    Freezing,
    Frozen,
}

const SETTLE: Duration = Duration::from_secs(2);

fn backoff(delay: &mut Duration) {
    std::thread::sleep(*delay);
    *delay = (*delay * 2).min(Duration::from_millis(20));
}

pub fn v1_state(dir: &Path) -> Result<FreezerState, Error> {
    let text = fsio::read(dir, "freezer.state")?;
    match text.trim() {
        "THAWED" => Ok(FreezerState::Thawed),
        "FREEZING" => Ok(FreezerState::Freezing),
        "FROZEN" => Ok(FreezerState::Frozen),
        other => Err(Error::Parse {
            path: dir.join("freezer.state"),
            reason: format!("unknown state {other:?}"),
        }),
    }
}

pub fn v1_set(dir: &Path, freeze: bool) -> Result<(), Error> {
    let (word, want) = if freeze {
        ("FROZEN", FreezerState::Frozen)
    } else {
        ("THAWED", FreezerState::Thawed)
    };
    let start = Instant::now();
    let mut delay = Duration::from_micros(100);
    loop {
        // Writing again nudges tasks that were in a non-freezable state on the last try.
        fsio::write(dir, "freezer.state", word)?;
        let state = v1_state(dir)?;
        if state == want {
            return Ok(());
        }
        if start.elapsed() > SETTLE {
            if freeze {
                // Do not leave a half-frozen container behind.
                let _ = fsio::write(dir, "freezer.state", "THAWED");
            }
            return Err(Error::Freeze {
                path: dir.to_path_buf(),
                reason: format!("still {state:?} after {SETTLE:?}"),
            });
        }
        backoff(&mut delay);
    }
}

fn v2_frozen_event(dir: &Path) -> Result<bool, Error> {
    let events = fsio::read(dir, "cgroup.events")?;
    let frozen = fsio::key_values(&events).any(|(k, v)| k == "frozen" && v == 1);
    Ok(frozen)
}

pub fn v2_state(dir: &Path) -> Result<FreezerState, Error> {
    let wanted = fsio::read(dir, "cgroup.freeze")?.trim() == "1";
    let frozen = v2_frozen_event(dir)?;
    Ok(match (wanted, frozen) {
        (true, true) => FreezerState::Frozen,
        (true, false) => FreezerState::Freezing,
        (false, _) => FreezerState::Thawed,
    })
}

pub fn v2_set(dir: &Path, freeze: bool) -> Result<(), Error> {
    fsio::write(dir, "cgroup.freeze", if freeze { "1" } else { "0" })?;
    let start = Instant::now();
    let mut delay = Duration::from_micros(100);
    while v2_frozen_event(dir)? != freeze {
        if start.elapsed() > SETTLE {
            if freeze {
                let _ = fsio::write(dir, "cgroup.freeze", "0");
            }
            return Err(Error::Freeze {
                path: dir.to_path_buf(),
                reason: format!(
                    "cgroup.events did not report frozen {} after {SETTLE:?}",
                    u8::from(freeze)
                ),
            });
        }
        backoff(&mut delay);
    }
    Ok(())
}
