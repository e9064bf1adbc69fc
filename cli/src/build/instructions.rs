//! Typed instructions, how each is expanded against variables, and its canonical text.
//!
//! An [`Instruction`] comes out of the parser *raw*: the words the builder expands still hold
//! their quotes and `$variables`. [`Instruction::expand`] gives the same instruction with those
//! words expanded, which is what an executor acts on. Which words are expanded follows
//! Docker: FROM (image and `--platform`), ENV and LABEL (keys and values), ARG defaults,
//! ADD/COPY (sources, destination, `--from`, `--chown`, `--chmod`, heredoc bodies with an
//! unquoted delimiter), EXPOSE, STOPSIGNAL, USER, VOLUME and WORKDIR. RUN, CMD, ENTRYPOINT,
//! SHELL, HEALTHCHECK and ONBUILD are left to the container's shell or to the image that
//! inherits the trigger.

use std::fmt;
use std::time::Duration;

use super::parser::Heredoc;
use super::words::{expand_heredoc, expand_word, expand_words, ExpandError, Lookup};

/// One Dockerfile instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    From(From),
    Run(Run),
    Cmd(CommandLine),
    Entrypoint(CommandLine),
    /// `ENV k=v ...` or the legacy `ENV k v`, in order.
    Env(Vec<(String, String)>),
    Arg(Vec<ArgDecl>),
    Workdir(String),
    Copy(Copy),
    Add(Copy),
    User(String),
    Expose(Vec<String>),
    Label(Vec<(String, String)>),
    Volume(Vec<String>),
    StopSignal(String),
    Healthcheck(Healthcheck),
    /// The JSON array of SHELL.
    Shell(Vec<String>),
    Onbuild(Onbuild),
    /// Deprecated; sets the image's Author.
    Maintainer(String),
}

/// The exec form (`["node", "src/index.js"]`) or the shell form (`node src/index.js`, run as
/// the stage's SHELL, by default `/bin/sh -c`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandLine {
    Exec(Vec<String>),
    Shell(String),
}

/// `FROM [--platform=p] image [AS name]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct From {
    pub image: String,
    pub platform: Option<String>,
    /// The stage name, lowercased as BuildKit does.
    pub name: Option<String>,
}

/// `RUN [--mount=...]... [--network=...] command`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub command: CommandLine,
    /// Heredocs named in the shell form, in order; see [`Run::script`].
    pub heredocs: Vec<Heredoc>,
    pub mounts: Vec<Mount>,
    pub network: Option<Network>,
}

/// `RUN --network=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    Default,
    None,
    Host,
}

/// `RUN --mount=type=...,target=...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub kind: MountKind,
    pub target: String,
    /// Path in `from` (or in the context when `from` is absent) for bind mounts, or the
    /// subdirectory of a cache.
    pub source: Option<String>,
    /// A stage name or index, or an image, as for `COPY --from`.
    pub from: Option<String>,
    pub readonly: bool,
    /// The cache's id; defaults to the target.
    pub id: Option<String>,
    pub sharing: Sharing,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// tmpfs size in bytes.
    pub size: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountKind {
    Bind,
    Cache,
    Tmpfs,
}

/// How concurrent builds share a cache mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    Shared,
    Private,
    Locked,
}

/// One name of an `ARG` line, with its default as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDecl {
    pub name: String,
    pub default: Option<String>,
}

/// COPY or ADD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    pub sources: Vec<Source>,
    pub dest: String,
    /// `--from`: a stage name or index, or an image (COPY only).
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    /// `--link` is accepted; layers are independent of their parent either way here.
    pub link: bool,
    /// `ADD --checksum=sha256:...` for remote sources.
    pub checksum: Option<String>,
}

/// A source of COPY/ADD: a path (or glob, or URL for ADD) in the context or in `--from`, or
/// the body of a heredoc, which becomes a file named after the heredoc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Path(String),
    Heredoc(Heredoc),
}

/// HEALTHCHECK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Healthcheck {
    /// `HEALTHCHECK NONE`: disable the base image's check.
    None,
    Check {
        test: CommandLine,
        interval: Option<Duration>,
        timeout: Option<Duration>,
        start_period: Option<Duration>,
        start_interval: Option<Duration>,
        retries: Option<u32>,
    },
}

/// `ONBUILD <instruction>`: the trigger, kept as text for the image config, and parsed so that
/// it is checked now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Onbuild {
    pub text: String,
    pub instruction: Box<Instruction>,
}

impl Instruction {
    /// The keyword, upper case.
    pub fn keyword(&self) -> &'static str {
        match self {
            Instruction::From(_) => "FROM",
            Instruction::Run(_) => "RUN",
            Instruction::Cmd(_) => "CMD",
            Instruction::Entrypoint(_) => "ENTRYPOINT",
            Instruction::Env(_) => "ENV",
            Instruction::Arg(_) => "ARG",
            Instruction::Workdir(_) => "WORKDIR",
            Instruction::Copy(_) => "COPY",
            Instruction::Add(_) => "ADD",
            Instruction::User(_) => "USER",
            Instruction::Expose(_) => "EXPOSE",
            Instruction::Label(_) => "LABEL",
            Instruction::Volume(_) => "VOLUME",
            Instruction::StopSignal(_) => "STOPSIGNAL",
            Instruction::Healthcheck(_) => "HEALTHCHECK",
            Instruction::Shell(_) => "SHELL",
            Instruction::Onbuild(_) => "ONBUILD",
            Instruction::Maintainer(_) => "MAINTAINER",
        }
    }

    /// The instruction with the words Docker expands expanded against `env` (see the module
    /// documentation for which). Expanding an expanded instruction again is not idempotent
    /// (quotes are gone), so keep the raw one.
    pub fn expand(&self, escape: char, env: Lookup) -> Result<Instruction, ExpandError> {
        let word = |w: &str| expand_word(w, escape, env);
        let opt = |w: &Option<String>| w.as_deref().map(word).transpose();
        let pairs = |p: &[(String, String)]| -> Result<Vec<(String, String)>, ExpandError> {
            p.iter().map(|(k, v)| Ok((word(k)?, word(v)?))).collect()
        };
        Ok(match self {
            Instruction::From(f) => Instruction::From(From {
                image: word(&f.image)?,
                platform: opt(&f.platform)?,
                name: f.name.clone(),
            }),
            Instruction::Env(p) => Instruction::Env(pairs(p)?),
            Instruction::Label(p) => Instruction::Label(pairs(p)?),
            Instruction::Arg(decls) => Instruction::Arg(
                decls
                    .iter()
                    .map(|d| {
                        Ok(ArgDecl {
                            name: d.name.clone(),
                            default: opt(&d.default)?,
                        })
                    })
                    .collect::<Result<_, ExpandError>>()?,
            ),
            Instruction::Workdir(w) => Instruction::Workdir(word(w)?),
            Instruction::User(w) => Instruction::User(word(w)?),
            Instruction::StopSignal(w) => Instruction::StopSignal(word(w)?),
            Instruction::Volume(v) => {
                Instruction::Volume(v.iter().map(|w| word(w)).collect::<Result<_, _>>()?)
            }
            Instruction::Expose(ports) => {
                let mut out = Vec::new();
                for p in ports {
                    out.extend(expand_words(p, escape, env)?);
                }
                Instruction::Expose(out)
            }
            Instruction::Copy(c) => Instruction::Copy(c.expand(escape, env)?),
            Instruction::Add(c) => Instruction::Add(c.expand(escape, env)?),
            other => other.clone(),
        })
    }
}

impl Copy {
    fn expand(&self, escape: char, env: Lookup) -> Result<Copy, ExpandError> {
        let word = |w: &str| expand_word(w, escape, env);
        let opt = |w: &Option<String>| w.as_deref().map(word).transpose();
        let sources = self
            .sources
            .iter()
            .map(|s| match s {
                Source::Path(p) => Ok(Source::Path(word(p)?)),
                Source::Heredoc(h) if h.expand => Ok(Source::Heredoc(Heredoc {
                    content: expand_heredoc(&h.content, escape, env)?,
                    ..h.clone()
                })),
                Source::Heredoc(h) => Ok(Source::Heredoc(h.clone())),
            })
            .collect::<Result<_, ExpandError>>()?;
        Ok(Copy {
            sources,
            dest: word(&self.dest)?,
            from: opt(&self.from)?,
            chown: opt(&self.chown)?,
            chmod: opt(&self.chmod)?,
            link: self.link,
            checksum: opt(&self.checksum)?,
        })
    }
}

impl Run {
    /// The command a shell-form RUN gives its shell, with heredocs folded in as BuildKit does:
    /// `RUN <<EOF` alone runs the body itself as the script (a body starting with `#!` is for
    /// the executor to write to a file and run instead); `RUN cmd <<EOF` passes the line, each
    /// body and its delimiter to the shell, which reads the heredocs itself. `None` for the
    /// exec form.
    pub fn script(&self) -> Option<String> {
        let CommandLine::Shell(line) = &self.command else {
            return None;
        };
        if self.heredocs.is_empty() {
            return Some(line.clone());
        }
        if self.heredocs.len() == 1 && super::parser::heredoc_marker(line.trim()).is_some() {
            return Some(self.heredocs[0].content.clone());
        }
        let mut full = line.clone();
        for h in &self.heredocs {
            full.push('\n');
            full.push_str(&h.content);
            full.push_str(&h.name);
        }
        Some(full)
    }
}

impl CommandLine {
    /// The image config form: the exec form as is, the shell form after `shell`.
    pub fn to_args(&self, shell: &[String]) -> Vec<String> {
        match self {
            CommandLine::Exec(args) => args.clone(),
            CommandLine::Shell(line) => {
                let mut args = shell.to_vec();
                args.push(line.clone());
                args
            }
        }
    }
}

impl fmt::Display for CommandLine {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            CommandLine::Exec(args) => f.write_str(&json(args)),
            CommandLine::Shell(line) => f.write_str(line),
        }
    }
}

fn json(args: &[String]) -> String {
    serde_json::to_string(args).unwrap_or_default()
}

/// Canonical one-line text of an instruction: flags in a fixed order, exec forms as JSON,
/// heredoc bodies included. Used for cache keys and history entries, so two instructions
/// that mean the same thing print the same.
impl fmt::Display for Instruction {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let kw = self.keyword();
        let pairs = |p: &[(String, String)]| {
            p.iter()
                .map(|(k, v)| format!("{}={}", quote(k), quote(v)))
                .collect::<Vec<_>>()
                .join(" ")
        };
        match self {
            Instruction::From(x) => {
                write!(f, "FROM")?;
                if let Some(p) = &x.platform {
                    write!(f, " --platform={p}")?;
                }
                write!(f, " {}", x.image)?;
                if let Some(n) = &x.name {
                    write!(f, " AS {n}")?;
                }
                Ok(())
            }
            Instruction::Run(r) => {
                write!(f, "RUN")?;
                for m in &r.mounts {
                    write!(f, " --mount={m}")?;
                }
                if let Some(n) = r.network {
                    let n = match n {
                        Network::Default => "default",
                        Network::None => "none",
                        Network::Host => "host",
                    };
                    write!(f, " --network={n}")?;
                }
                write!(f, " {}", r.command)?;
                for h in &r.heredocs {
                    write!(f, "\n{}{}", h.content, h.name)?;
                }
                Ok(())
            }
            Instruction::Cmd(c) | Instruction::Entrypoint(c) => write!(f, "{kw} {c}"),
            Instruction::Env(p) | Instruction::Label(p) => write!(f, "{kw} {}", pairs(p)),
            Instruction::Arg(decls) => {
                write!(f, "ARG")?;
                for d in decls {
                    match &d.default {
                        Some(v) => write!(f, " {}={}", d.name, quote(v))?,
                        None => write!(f, " {}", d.name)?,
                    }
                }
                Ok(())
            }
            Instruction::Workdir(s)
            | Instruction::User(s)
            | Instruction::StopSignal(s)
            | Instruction::Maintainer(s) => write!(f, "{kw} {s}"),
            Instruction::Copy(c) | Instruction::Add(c) => {
                write!(f, "{kw}")?;
                for (name, v) in [
                    ("from", &c.from),
                    ("chown", &c.chown),
                    ("chmod", &c.chmod),
                    ("checksum", &c.checksum),
                ] {
                    if let Some(v) = v {
                        write!(f, " --{name}={v}")?;
                    }
                }
                if c.link {
                    write!(f, " --link")?;
                }
                let mut bodies = String::new();
                for s in &c.sources {
                    match s {
                        Source::Path(p) => write!(f, " {}", quote(p))?,
                        Source::Heredoc(h) => {
                            write!(f, " <<{}", h.name)?;
                            bodies.push_str(&format!("\n{}{}", h.content, h.name));
                        }
                    }
                }
                write!(f, " {}{bodies}", quote(&c.dest))
            }
            Instruction::Expose(v) => write!(f, "EXPOSE {}", v.join(" ")),
            Instruction::Volume(v) | Instruction::Shell(v) => write!(f, "{kw} {}", json(v)),
            Instruction::Healthcheck(Healthcheck::None) => write!(f, "HEALTHCHECK NONE"),
            Instruction::Healthcheck(Healthcheck::Check {
                test,
                interval,
                timeout,
                start_period,
                start_interval,
                retries,
            }) => {
                write!(f, "HEALTHCHECK")?;
                for (name, d) in [
                    ("interval", interval),
                    ("timeout", timeout),
                    ("start-period", start_period),
                    ("start-interval", start_interval),
                ] {
                    if let Some(d) = d {
                        write!(f, " --{name}={}ns", d.as_nanos())?;
                    }
                }
                if let Some(r) = retries {
                    write!(f, " --retries={r}")?;
                }
                write!(f, " CMD {test}")
            }
            Instruction::Onbuild(o) => write!(f, "ONBUILD {}", o.text),
        }
    }
}

impl fmt::Display for Mount {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let kind = match self.kind {
            MountKind::Bind => "bind",
            MountKind::Cache => "cache",
            MountKind::Tmpfs => "tmpfs",
        };
        write!(f, "type={kind},target={}", self.target)?;
        for (name, v) in [
            ("source", &self.source),
            ("from", &self.from),
            ("id", &self.id),
        ] {
            if let Some(v) = v {
                write!(f, ",{name}={v}")?;
            }
        }
        if self.readonly {
            write!(f, ",readonly")?;
        }
        let sharing = match self.sharing {
            Sharing::Shared => None,
            Sharing::Private => Some("private"),
            Sharing::Locked => Some("locked"),
        };
        if let Some(s) = sharing {
            write!(f, ",sharing={s}")?;
        }
        if let Some(m) = self.mode {
            write!(f, ",mode={m:o}")?;
        }
        for (name, v) in [("uid", self.uid), ("gid", self.gid)] {
            if let Some(v) = v {
                write!(f, ",{name}={v}")?;
            }
        }
        if let Some(s) = self.size {
            write!(f, ",size={s}")?;
        }
        Ok(())
    }
}

/// Quotes a value for canonical text when it would otherwise be ambiguous.
fn quote(v: &str) -> String {
    if !v.is_empty() && !v.contains(|c: char| c.is_whitespace() || c == '"' || c == '\\') {
        return v.to_string();
    }
    serde_json::to_string(v).unwrap_or_default()
}
