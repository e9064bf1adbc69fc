//! RFC 3339 timestamps in UTC with nanoseconds, as runc writes them (state.json's `created`,
//! log lines).

use std::time::SystemTime;

pub fn now() -> String {
    humantime::format_rfc3339_nanos(SystemTime::now()).to_string()
}
