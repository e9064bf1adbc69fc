//! Restart policies as Docker defines them, and the back-off between restarts.

use std::str::FromStr;
use std::time::Duration;

use anyhow::{bail, Context};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    No,
    Always,
    /// Restart after a non-zero exit, at most N times when a limit is given.
    OnFailure(Option<u32>),
    /// Like `always` inside the shim; the difference (not restarting after the engine
    /// comes back if the user had stopped it) is the CLI's to apply.
    UnlessStopped,
}

impl FromStr for RestartPolicy {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        Ok(match s {
            "no" | "" => RestartPolicy::No,
            "always" => RestartPolicy::Always,
            "unless-stopped" => RestartPolicy::UnlessStopped,
            "on-failure" => RestartPolicy::OnFailure(None),
            _ => match s.strip_prefix("on-failure:") {
                Some(n) => RestartPolicy::OnFailure(Some(
                    n.parse().context("on-failure:N wants a whole number")?,
                )),
                None => bail!("unknown restart policy {s:?}: want no, always, on-failure[:N] or unless-stopped"),
            },
        })
    }
}

impl RestartPolicy {
    /// Whether an init that exited with `code` after `restarts` restarts should be started
    /// again. A stop the user asked for is never undone.
    pub fn should_restart(self, code: u32, restarts: u32, stopped_by_user: bool) -> bool {
        if stopped_by_user {
            return false;
        }
        match self {
            RestartPolicy::No => false,
            RestartPolicy::Always | RestartPolicy::UnlessStopped => true,
            RestartPolicy::OnFailure(limit) => code != 0 && limit.is_none_or(|n| restarts < n),
        }
    }
}

const FIRST_DELAY: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_secs(60);
/// A run at least this long counts as healthy and resets the back-off, as in Docker.
const HEALTHY_RUN: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { next: FIRST_DELAY }
    }
}

impl Backoff {
    /// The delay before the next start, given how long the last run lasted; doubles each
    /// time up to a minute.
    pub fn delay(&mut self, last_run: Duration) -> Duration {
        if last_run >= HEALTHY_RUN {
            self.next = FIRST_DELAY;
        }
        let d = self.next;
        self.next = (self.next * 2).min(MAX_DELAY);
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_policies() {
        assert_eq!("no".parse::<RestartPolicy>().unwrap(), RestartPolicy::No);
        assert_eq!(
            "always".parse::<RestartPolicy>().unwrap(),
            RestartPolicy::Always
        );
        assert_eq!(
            "on-failure:3".parse::<RestartPolicy>().unwrap(),
            RestartPolicy::OnFailure(Some(3))
        );
        assert!("on-failure:x".parse::<RestartPolicy>().is_err());
        assert!("maybe".parse::<RestartPolicy>().is_err());
    }

    #[test]
    fn decisions() {
        let p = RestartPolicy::OnFailure(Some(2));
        assert!(p.should_restart(1, 0, false));
        assert!(p.should_restart(1, 1, false));
        assert!(!p.should_restart(1, 2, false));
        assert!(!p.should_restart(0, 0, false));
        assert!(RestartPolicy::Always.should_restart(0, 100, false));
        assert!(!RestartPolicy::Always.should_restart(137, 0, true));
        assert!(!RestartPolicy::No.should_restart(1, 0, false));
    }

    #[test]
    fn backoff_grows_and_resets() {
        let mut b = Backoff::default();
        let quick = Duration::from_millis(10);
        assert_eq!(b.delay(quick), Duration::from_millis(100));
        assert_eq!(b.delay(quick), Duration::from_millis(200));
        assert_eq!(b.delay(quick), Duration::from_millis(400));
        assert_eq!(b.delay(Duration::from_secs(11)), Duration::from_millis(100));
        for _ in 0..20 {
            b.delay(quick);
        }
        assert_eq!(b.delay(quick), MAX_DELAY);
    }
}
