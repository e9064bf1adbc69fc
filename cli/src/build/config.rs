//! Values of the image config as Docker derives them from expanded instructions: the
//! `ExposedPorts` keys of EXPOSE, the signal of STOPSIGNAL, the `Healthcheck.Test` of
//! HEALTHCHECK. Checked here so that a bad value fails with the instruction's line before
//! anything runs.

use super::instructions::{CommandLine, Healthcheck};

/// The `ExposedPorts` keys of an EXPOSE's (expanded) words: `80` is `80/tcp`, a range gives
/// every port in it, the protocol is lower-cased, and a published form
/// (`127.0.0.1:8080:80/udp`) keeps only the container port, as Docker's `ParsePortSpecs`.
pub fn exposed_ports(words: &[String]) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for word in words {
        let (spec, proto) = match word.rsplit_once('/') {
            Some((s, p)) => (s, p.to_ascii_lowercase()),
            None => (word.as_str(), "tcp".to_string()),
        };
        if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
            return Err(format!("invalid proto: {proto}"));
        }
        let container = spec.rsplit(':').next().unwrap_or(spec);
        let invalid = || format!("invalid containerPort: {container}");
        let port = |s: &str| s.parse::<u16>().map_err(|_| invalid());
        let (lo, hi) = match container.split_once('-') {
            Some((a, b)) => (port(a)?, port(b)?),
            None => (port(container)?, port(container)?),
        };
        if hi < lo {
            return Err(invalid());
        }
        for p in lo..=hi {
            let key = format!("{p}/{proto}");
            if !out.contains(&key) {
                out.push(key);
            }
        }
    }
    Ok(out)
}

/// Checks a STOPSIGNAL value as Docker's `signal.ParseSignal`: a number, or a name with or
/// without `SIG` (`SIGTERM`, `term`, `SIGRTMIN+3`). Returns it as written, since that is what
/// the config stores.
pub fn stop_signal(value: &str) -> Result<String, String> {
    const NAMES: &[&str] = &[
        "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT",
        "KILL", "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM",
        "TRAP", "TSTP", "TTIN", "TTOU", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ",
    ];
    let bad = || format!("invalid signal: {value}");
    if let Ok(n) = value.parse::<u32>() {
        return match n {
            1..=64 => Ok(value.to_string()),
            _ => Err(bad()),
        };
    }
    let upper = value.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    let realtime = |base: &str| {
        name.strip_prefix(base).is_some_and(|rest| {
            rest.is_empty()
                || rest
                    .strip_prefix(['+', '-'])
                    .and_then(|n| n.parse::<u8>().ok())
                    .is_some_and(|n| n <= 15)
        })
    };
    if NAMES.contains(&name) || realtime("RTMIN") || realtime("RTMAX") {
        Ok(value.to_string())
    } else {
        Err(bad())
    }
}

/// The config's `Healthcheck.Test`: `["NONE"]`, `["CMD", args...]` for the exec form, or
/// `["CMD-SHELL", line]` for the shell form.
pub fn healthcheck_test(check: &Healthcheck) -> Vec<String> {
    match check {
        Healthcheck::None => vec!["NONE".to_string()],
        Healthcheck::Check { test, .. } => match test {
            CommandLine::Exec(args) => std::iter::once("CMD".to_string())
                .chain(args.iter().cloned())
                .collect(),
            CommandLine::Shell(line) => vec!["CMD-SHELL".to_string(), line.clone()],
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ports(words: &[&str]) -> Result<Vec<String>, String> {
        let words: Vec<String> = words.iter().map(|w| w.to_string()).collect();
        exposed_ports(&words)
    }

    #[test]
    fn ports_as_docker_keys() {
        assert_eq!(ports(&["3000"]).unwrap(), ["3000/tcp"]);
        assert_eq!(
            ports(&["53/UDP", "8000-8002", "127.0.0.1:8080:80/tcp", "3000", "80"]).unwrap(),
            ["53/udp", "8000/tcp", "8001/tcp", "8002/tcp", "80/tcp", "3000/tcp"]
        );
        assert_eq!(ports(&["80/icmp"]).unwrap_err(), "invalid proto: icmp");
        assert_eq!(ports(&["http"]).unwrap_err(), "invalid containerPort: http");
        assert_eq!(
            ports(&["90-80"]).unwrap_err(),
            "invalid containerPort: 90-80"
        );
    }

    #[test]
    fn signals() {
        for ok in ["SIGTERM", "term", "9", "SIGRTMIN+3", "RTMAX-1", "SIGWINCH"] {
            assert_eq!(stop_signal(ok).unwrap(), ok);
        }
        for bad in ["SIGFOO", "0", "65", "SIGRTMIN+20", ""] {
            assert!(stop_signal(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn healthcheck_tests() {
        assert_eq!(healthcheck_test(&Healthcheck::None), ["NONE"]);
        let check = |test| Healthcheck::Check {
            test,
            interval: None,
            timeout: None,
            start_period: None,
            start_interval: None,
            retries: None,
        };
        assert_eq!(
            healthcheck_test(&check(CommandLine::Shell(
                "curl -f http://localhost/".into()
            ))),
            ["CMD-SHELL", "curl -f http://localhost/"]
        );
        assert_eq!(
            healthcheck_test(&check(CommandLine::Exec(vec![
                "/bin/check".into(),
                "-q".into()
            ]))),
            ["CMD", "/bin/check", "-q"]
        );
    }
}
