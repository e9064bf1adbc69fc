//! RFC 3339 timestamps with nanoseconds in UTC, as Docker writes them in json-file logs.

use std::time::SystemTime;

pub fn rfc3339_nano(t: SystemTime) -> String {
    humantime::format_rfc3339_nanos(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339_nano(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        let t = UNIX_EPOCH + Duration::new(1_709_251_199, 5);
        assert_eq!(rfc3339_nano(t), "2024-02-29T23:59:59.000000005Z");
    }
}
