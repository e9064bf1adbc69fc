//! Small readers of /proc that several commands need.

use std::fs;
use std::io;

pub struct Stat {
    pub state: char,
    pub start_time: u64,
}

/// Parse /proc/PID/stat. The command name may contain spaces and parentheses, so fields are
/// counted from the last ')'.
pub fn stat(pid: i32) -> io::Result<Stat> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_stat(&s).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "malformed /proc stat"))
}

fn parse_stat(s: &str) -> Option<Stat> {
    let rest = &s[s.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let state = fields.next()?.chars().next()?;
    // After the state come fields 4..; starttime is field 22, i.e. the 19th after state.
    let start_time = fields.nth(18)?.parse().ok()?;
    Some(Stat { state, start_time })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_with_parens() {
        let line = "42 (a) b) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 100 18446744073709551615";
        let st = parse_stat(line).unwrap();
        assert_eq!(st.state, 'S');
        assert_eq!(st.start_time, 98765);
    }

    #[test]
    fn reads_self() {
        let st = stat(std::process::id() as i32).unwrap();
        // The main thread of the test binary may be sleeping while this test thread runs.
        assert!(matches!(st.state, 'R' | 'S'), "{}", st.state);
        assert!(st.start_time > 0);
    }
}
