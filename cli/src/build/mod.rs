//! The front half of `berth build`: everything about a Dockerfile and a context that can be
//! decided without running anything. The executor (RUN through berth-runtime, COPY into
//! snapshots, commits through berth-imaged) works from what this produces.
//!
//! - [`directives`]: `# syntax=`, `# escape=` and `# check=` at the top of the file.
//! - [`parser`]: lines into instruction nodes (continuations, comments, flags, heredocs).
//! - [`interpret`]: nodes into typed [`Instruction`]s, with each keyword's rules.
//! - [`instructions`]: the typed instructions, their expansion, their canonical text.
//! - [`words`]: Docker's shell-word lexer (`${var:-default}`, quotes, escapes).
//! - [`dockerignore`]: `.dockerignore` patterns and whether a context path is excluded.
//! - [`mod@plan`]: stages, bases, `--from` references, `--target` pruning, parallel waves, ARG
//!   scoping, and the [`plan::Scope`] an executor expands each step with.
//! - [`config`]: image-config values from expanded instructions (ports, signal, health test).
//! - [`cache`]: the cache key of a step.
//!
//! ```
//! # fn main() -> Result<(), berth_cli::build::Error> {
//! use berth_cli::build::{self, BuildOptions};
//! let dockerfile = build::parse("Dockerfile", "FROM busybox\nRUN echo hi\n")?;
//! let plan = build::plan(&dockerfile, &BuildOptions::default())?;
//! for wave in &plan.waves {
//!     for &index in wave {
//!         let stage = plan.stage(index).expect("waves hold planned stages");
//!         // Base::Image: pull it and pass its config's Env; Base::Scratch: nothing;
//!         // Base::Stage(i): clone the final Scope of stage i instead.
//!         let mut scope = plan.scope(stage, &[]);
//!         for step in &stage.steps {
//!             let expanded = scope.expand(step)?;
//!             // ... run it, keyed by expanded.cache_key(parent, content_digest)
//!         }
//!     }
//! }
//! # Ok(()) }
//! ```

pub mod cache;
pub mod config;
pub mod directives;
pub mod dockerignore;
pub mod error;
pub mod instructions;
pub mod interpret;
pub mod parser;
pub mod plan;
pub mod words;

pub use directives::Directives;
pub use error::{Error, ErrorKind};
pub use instructions::Instruction;
pub use plan::{plan, BuildOptions, Plan};

/// A parsed Dockerfile: global ARGs, then stages, each with its raw instructions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// The name errors show (`Dockerfile`, `build/Dockerfile.dev`).
    pub file_name: String,
    /// The parser directives at the top (escape character, syntax).
    pub directives: Directives,
    /// The ARG instructions before the first FROM, usable in FROM lines.
    pub meta_args: Vec<Command>,
    /// The stages in file order; a stage's `index` is its position here.
    pub stages: Vec<Stage>,
}

/// One `FROM` and the instructions up to the next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// Position among the stages, what `--from=0` names.
    pub index: usize,
    /// `AS name`, lowercased.
    pub name: Option<String>,
    /// The FROM line itself.
    pub from: Command,
    /// The instructions after the FROM, up to the next FROM.
    pub commands: Vec<Command>,
}

/// An instruction with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// The 1-based line the instruction starts on, which errors name.
    pub line: usize,
    /// Its last line, continuation lines and heredoc bodies included.
    pub end_line: usize,
    /// The instruction as written, continuations joined (for messages).
    pub text: String,
    /// Raw: expandable words still hold their quotes and variables.
    pub instruction: Instruction,
}

impl Stage {
    /// The FROM instruction of the stage.
    pub fn from(&self) -> &instructions::From {
        match &self.from.instruction {
            Instruction::From(f) => f,
            _ => unreachable!("a stage always starts with FROM"),
        }
    }

    /// How messages name the stage: its name, or its index.
    pub fn label(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.index.to_string())
    }
}

/// Parses a Dockerfile. `file_name` is only used in error messages.
pub fn parse(file_name: &str, text: &str) -> Result<Dockerfile, Error> {
    let (directives, nodes) = parser::parse(text).map_err(|(l, k)| Error::at(file_name, l, k))?;
    let mut dockerfile = Dockerfile {
        file_name: file_name.to_string(),
        directives,
        meta_args: Vec::new(),
        stages: Vec::new(),
    };
    if nodes.is_empty() {
        return Err(Error::file(file_name, ErrorKind::Empty));
    }
    for node in &nodes {
        let at = |kind| Error::at(file_name, node.line, kind);
        let instruction = interpret::instruction(node, dockerfile.directives.escape).map_err(at)?;
        let command = Command {
            line: node.line,
            end_line: node.end_line,
            text: node.text.clone(),
            instruction,
        };
        match (&command.instruction, dockerfile.stages.last_mut()) {
            (Instruction::From(from), _) => {
                if let Some(name) = &from.name {
                    if dockerfile
                        .stages
                        .iter()
                        .any(|s| s.name.as_ref() == Some(name))
                    {
                        return Err(at(ErrorKind::Stage(format!(
                            "duplicate stage name {name:?}"
                        ))));
                    }
                }
                dockerfile.stages.push(Stage {
                    index: dockerfile.stages.len(),
                    name: from.name.clone(),
                    from: command,
                    commands: Vec::new(),
                });
            }
            (_, Some(stage)) => stage.commands.push(command),
            (Instruction::Arg(_), None) => dockerfile.meta_args.push(command),
            (_, None) => return Err(at(ErrorKind::NoStage)),
        }
    }
    if dockerfile.stages.is_empty() {
        return Err(Error::file(file_name, ErrorKind::NoStage));
    }
    Ok(dockerfile)
}

/// Parses one instruction from a single line, as an ONBUILD trigger stored in a base image's
/// config is. The executor runs these at the start of a stage built on that image.
pub fn parse_trigger(line: &str) -> Result<Instruction, ErrorKind> {
    let node = parser::parse_line(line).ok_or(ErrorKind::Empty)?;
    match node.keyword.to_ascii_uppercase().as_str() {
        "ONBUILD" => Err(ErrorKind::Syntax(
            "Cannot chain ONBUILD via `ONBUILD ONBUILD`".to_string(),
        )),
        k @ ("FROM" | "MAINTAINER") => Err(ErrorKind::Syntax(format!(
            "{k} isn't allowed as an ONBUILD trigger"
        ))),
        _ => interpret::instruction(&node, '\\'),
    }
}

#[cfg(test)]
mod tests;
