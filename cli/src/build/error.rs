//! The one error type of the front half of `berth build`. Every error a user sees names the
//! Dockerfile and, when it comes from one instruction, the line that instruction starts on, the
//! way Docker prints them (`Dockerfile:7: unknown instruction: FOOBAR`).

use super::words::ExpandError;

/// A parse or plan error, located in a Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// An error in the instruction starting on `line` (1-based).
    #[error("{file}:{line}: {kind}")]
    At {
        file: String,
        line: usize,
        kind: ErrorKind,
    },
    /// An error about the file as a whole (no instructions, no such `--target`).
    #[error("{file}: {kind}")]
    File { file: String, kind: ErrorKind },
}

impl Error {
    pub(crate) fn at(file: &str, line: usize, kind: ErrorKind) -> Error {
        Error::At {
            file: file.to_string(),
            line,
            kind,
        }
    }

    pub(crate) fn file(file: &str, kind: ErrorKind) -> Error {
        Error::File {
            file: file.to_string(),
            kind,
        }
    }

    /// What went wrong, without the location.
    pub fn kind(&self) -> &ErrorKind {
        match self {
            Error::At { kind, .. } | Error::File { kind, .. } => kind,
        }
    }

    /// The line the failing instruction starts on, when there is one.
    pub fn line(&self) -> Option<usize> {
        match self {
            Error::At { line, .. } => Some(*line),
            Error::File { .. } => None,
        }
    }
}

/// What went wrong. Messages follow BuildKit's Dockerfile frontend where it has one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    #[error("unknown instruction: {0}")]
    UnknownInstruction(String),
    #[error("unknown flag: {0}")]
    UnknownFlag(String),
    #[error("{0}")]
    Flag(String),
    /// Wrong number or shape of arguments; the message names the instruction.
    #[error("{0}")]
    Syntax(String),
    #[error("{0}")]
    Directive(String),
    #[error("unterminated heredoc {0}")]
    UnterminatedHeredoc(String),
    #[error("{0}")]
    Expand(#[from] ExpandError),
    #[error("{instruction} --from={name}: no stage or image named {name}")]
    NoSuchStage { instruction: String, name: String },
    #[error("{0}")]
    Stage(String),
    #[error("target stage {0:?} could not be found")]
    NoTarget(String),
    #[error("circular dependency detected on stage: {0}")]
    Cycle(String),
    #[error("file with no instructions")]
    Empty,
    #[error("no build stage in current context")]
    NoStage,
}
