//! Berth's engine and command line. `engine` is the library a command (or, later, a Docker
//! Engine API server) calls; `commands` parse arguments and print as Docker does.

pub mod build;
pub mod commands;
pub mod engine;
pub mod format;

/// An error the user sees as Docker would show it, with the exit status Docker would give:
/// 1 for a failed command, 125 for an engine error of `run`/`create`, 126 and 127 for a
/// program that cannot run or does not exist.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    pub code: i32,
    pub message: String,
}

impl Failure {
    pub fn new(code: i32, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }
}
