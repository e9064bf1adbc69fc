//! Sizes and times as Docker prints them (go-units' HumanSize and HumanDuration).

/// `4.26MB`, `187kB`, `1.2GB`: decimal units, three significant digits.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1000.0 && i < UNITS.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    // %.3g: three significant digits, trailing zeros dropped.
    let digits = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    let s = format!("{v:.digits$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    format!("{s}{}", UNITS[i])
}

/// `2 weeks`, `About a minute`, `Less than a second`: how long ago, without "ago".
pub fn duration(secs: i64) -> String {
    let s = secs.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86400);
    match s {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        _ if s < 60 => format!("{s} seconds"),
        _ if m == 1 => "About a minute".into(),
        _ if m < 60 => format!("{m} minutes"),
        _ if (s as f64 / 3600.0).round() as i64 == 1 => "About an hour".into(),
        _ if h < 48 => format!("{} hours", (s as f64 / 3600.0).round() as i64),
        _ if h < 24 * 7 * 2 => format!("{d} days"),
        _ if h < 24 * 30 * 2 => format!("{} weeks", d / 7),
        _ if h < 24 * 365 * 2 => format!("{} months", d / 30),
        _ => format!("{} years", d / 365),
    }
}

/// `2 weeks ago`, or `N/A` for an unknown time.
pub fn ago(unix: i64) -> String {
    if unix <= 0 {
        return "N/A".into();
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    format!("{} ago", duration(now - unix))
}

/// Now, as Docker writes times in records: RFC 3339, UTC, nanoseconds.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string()
}

/// Seconds since the epoch of an RFC 3339 time, or 0 when it is not one.
pub fn unix_of(rfc3339: &str) -> i64 {
    humantime::parse_rfc3339_weak(rfc3339)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_read_like_dockers() {
        assert_eq!(size(4_261_000), "4.26MB");
        assert_eq!(size(187_000), "187kB");
        assert_eq!(size(1_200_000_000), "1.2GB");
        assert_eq!(size(0), "0B");
        assert_eq!(size(999), "999B");
        assert_eq!(duration(0), "Less than a second");
        assert_eq!(duration(75), "About a minute");
        assert_eq!(duration(3 * 3600), "3 hours");
        assert_eq!(duration(15 * 86400), "2 weeks");
    }
}
