//! Container commands, each also under `berth container ...`.

pub mod attach;
pub mod cp;
pub mod create;
pub mod exec;
pub mod logs;
pub mod manage;
pub mod ps;
pub mod run;
pub mod snapshot;
pub mod view;

use anyhow::Result;

use crate::engine::containers::ContainerError;
use crate::Failure;

/// An engine error as Docker words it, with the exit status the command gives.
pub fn engine_failure(e: ContainerError, code: i32) -> Failure {
    let msg = match &e {
        ContainerError::Invalid(m) if m.starts_with("docker:") || m.starts_with("Error") => {
            m.clone()
        }
        _ => format!("Error response from daemon: {e}"),
    };
    let msg = if code == 125 && !msg.starts_with("docker:") {
        format!("docker: {msg}")
    } else {
        msg
    };
    Failure::new(code, msg)
}

/// Commands over several containers go on past a failure and report each, exit 1.
pub fn report(errors: Vec<String>) -> Result<()> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Failure::new(1, errors.join("\n")).into())
    }
}
