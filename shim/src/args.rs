//! containerd's shim command line, read the way Go's `flag` package reads it, since containerd
//! calls every shim alike and its own shims use that package: `-name value`, `-name=value`,
//! `--name value`, bool flags bare or as `-debug=false`, `--` to end the flags, then an
//! optional action (`start` or `delete`).
//!
//! Also as in Go, `-h`, `-help` and `--help` ask for the usage (printed to stderr, exit 0)
//! and `-v` for the version; `-version` and `--version` are taken too, as every Berth binary
//! answers `--version`.

use std::fmt::Write as _;

use anyhow::{bail, Context, Result};

pub const NAME: &str = "containerd-shim-berth-v2";

#[derive(Debug, Default, Clone)]
pub struct Args {
    pub namespace: String,
    pub id: String,
    pub address: String,
    pub publish_binary: String,
    pub bundle: String,
    pub debug: bool,
    pub action: Option<Action>,
}

/// containerd's bootstrap actions; without one the shim serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Start,
    Delete,
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    Run(Args),
    Help,
    Version,
}

/// What a flag sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opt {
    Address,
    Bundle,
    Debug,
    Help,
    Id,
    Namespace,
    PublishBinary,
    /// Passed by some containerd versions; this shim has no use for it.
    Ignored,
    Version,
}

impl Opt {
    /// For the usage; the parser's match says the same per flag.
    fn takes_value(self) -> bool {
        !matches!(self, Opt::Debug | Opt::Help | Opt::Version)
    }
}

/// Every flag, in the order the usage lists them (Go's: by name). One table for the parser
/// and the usage, so neither can name a flag the other does not know.
const FLAGS: &[(&[&str], Opt, &str)] = &[
    (
        &["address"],
        Opt::Address,
        "containerd's address, given to -publish-binary",
    ),
    (
        &["bundle"],
        Opt::Bundle,
        "path to the bundle if not the working directory",
    ),
    (
        &["debug"],
        Opt::Debug,
        "enable debug output in the shim's log",
    ),
    (&["h", "help"], Opt::Help, "print this usage and exit"),
    (&["id"], Opt::Id, "id of the task"),
    (
        &["namespace"],
        Opt::Namespace,
        "namespace that owns the shim",
    ),
    (
        &["publish-binary"],
        Opt::PublishBinary,
        "binary that publishes events to containerd; without it or -address, none are sent",
    ),
    (
        &["socket"],
        Opt::Ignored,
        "accepted and ignored: `start` chooses the socket",
    ),
    (&["ttrpc-address"], Opt::Ignored, "accepted and ignored"),
    (
        &["v", "version"],
        Opt::Version,
        "print the version and exit",
    ),
];

/// The usage, laid out much as Go's flag package prints it.
pub fn usage() -> String {
    let mut s = format!(
        "Usage of {NAME}:\n  {NAME} [flags] [start|delete]\n\n\
         containerd's shim v2 for Berth, one per container. containerd runs `start` to launch\n\
         the serving shim and `delete` to clean up after one that died; without an action the\n\
         shim serves on the socket `start` handed it.\n\n\
         Flags (-name or --name; -name=value or -name value):\n"
    );
    for (names, opt, help) in FLAGS {
        let names = names.iter().map(|n| format!("-{n}")).collect::<Vec<_>>();
        let kind = if opt.takes_value() { " string" } else { "" };
        let _ = writeln!(s, "  {}{kind}\n    \t{help}", names.join(", "));
    }
    s
}

pub fn version() -> String {
    format!("{NAME} {}", env!("CARGO_PKG_VERSION"))
}

/// A bool flag's value: bare means true, else Go's strconv.ParseBool spellings.
fn bool_value(name: &str, inline: Option<&str>) -> Result<bool> {
    match inline {
        None | Some("1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(true),
        Some("0" | "f" | "F" | "false" | "FALSE" | "False") => Ok(false),
        Some(v) => bail!("invalid boolean value {v:?} for -{name}"),
    }
}

/// A value flag's value: after `=`, else the next argument even if it starts with `-`, as
/// in Go.
fn text_value(
    name: &str,
    inline: Option<&str>,
    rest: &mut impl Iterator<Item = String>,
) -> Result<String> {
    match inline {
        Some(v) => Ok(v.to_string()),
        None => rest
            .next()
            .with_context(|| format!("flag -{name} needs a value")),
    }
}

impl Command {
    /// Errors are the caller's to report as a usage error.
    pub fn parse<I: IntoIterator<Item = String>>(argv: I) -> Result<Command> {
        let mut args = Args::default();
        let mut version = false;
        let mut flags_ended = false;
        let mut it = argv.into_iter();
        while let Some(arg) = it.next() {
            // As in Go: `-` alone is an argument, not a flag, and `--` ends the flags.
            if flags_ended || arg.len() < 2 || !arg.starts_with('-') {
                let action = match arg.as_str() {
                    "start" => Action::Start,
                    "delete" => Action::Delete,
                    other => bail!("unknown action {other:?}: want start or delete"),
                };
                if args.action.is_some() {
                    bail!("unexpected argument {arg:?} after action");
                }
                args.action = Some(action);
                continue;
            }
            if arg == "--" {
                flags_ended = true;
                continue;
            }
            let body = arg.strip_prefix("--").unwrap_or(&arg[1..]);
            if body.starts_with(['-', '=']) {
                bail!("bad flag syntax: {arg}");
            }
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (body, None),
            };
            let Some(&(_, opt, _)) = FLAGS.iter().find(|(names, ..)| names.contains(&name)) else {
                bail!("unknown flag -{name}");
            };
            match opt {
                // Go's flag package stops at -help, whatever its value or what follows.
                Opt::Help => return Ok(Command::Help),
                Opt::Version => version = bool_value(name, inline)?,
                Opt::Debug => args.debug = bool_value(name, inline)?,
                Opt::Namespace => args.namespace = text_value(name, inline, &mut it)?,
                Opt::Id => args.id = text_value(name, inline, &mut it)?,
                Opt::Address => args.address = text_value(name, inline, &mut it)?,
                Opt::PublishBinary => args.publish_binary = text_value(name, inline, &mut it)?,
                Opt::Bundle => args.bundle = text_value(name, inline, &mut it)?,
                Opt::Ignored => {
                    text_value(name, inline, &mut it)?;
                }
            }
        }
        // Like containerd's shims, -v answers before any action is looked at.
        Ok(if version {
            Command::Version
        } else {
            Command::Run(args)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Command> {
        Command::parse(s.split_whitespace().map(String::from))
    }

    fn run(s: &str) -> Args {
        match parse(s).unwrap() {
            Command::Run(a) => a,
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn containerd_start_line() {
        let a = run("-namespace ns -address /run/c.sock -publish-binary /usr/bin/containerd -id c1 -debug start");
        assert_eq!(a.namespace, "ns");
        assert_eq!(a.address, "/run/c.sock");
        assert_eq!(a.publish_binary, "/usr/bin/containerd");
        assert_eq!(a.id, "c1");
        assert!(a.debug);
        assert_eq!(a.action, Some(Action::Start));
    }

    #[test]
    fn delete_line_with_bundle_and_equals() {
        let a = run("--namespace=ns -id=c1 -bundle /b -socket /s --ttrpc-address=/t delete");
        assert_eq!(a.bundle, "/b");
        assert_eq!(a.id, "c1");
        assert_eq!(a.action, Some(Action::Delete));
    }

    #[test]
    fn serving_line_and_go_style_values() {
        let a = run("-id -debug -debug=false -namespace=");
        assert_eq!(a.id, "-debug", "a value flag takes the next argument as is");
        assert!(!a.debug);
        assert_eq!(a.namespace, "");
        assert_eq!(a.action, None);
        assert_eq!(run("-debug=T -- start").action, Some(Action::Start));
        assert!(run("-debug=1").debug);
    }

    #[test]
    fn help_and_version() {
        for s in [
            "-h",
            "-help",
            "--help",
            "--h",
            "-id x -h",
            "-help=false",
            "-h -bogus",
        ] {
            assert!(matches!(parse(s), Ok(Command::Help)), "{s}");
        }
        for s in [
            "-v",
            "--v",
            "-version",
            "--version",
            "-v start",
            "-id x -v=true",
        ] {
            assert!(matches!(parse(s), Ok(Command::Version)), "{s}");
        }
        assert!(matches!(parse("-v=false"), Ok(Command::Run(_))));
        // An error before -v still counts, as in Go.
        assert!(parse("-v -bogus").is_err());
    }

    #[test]
    fn rejects_bad_command_lines() {
        let err = |s: &str| format!("{:#}", parse(s).unwrap_err());
        assert_eq!(err("-id"), "flag -id needs a value");
        assert_eq!(err("-debug -namespace"), "flag -namespace needs a value");
        assert_eq!(err("-bogus x"), "unknown flag -bogus");
        assert_eq!(
            err("-debug=maybe"),
            "invalid boolean value \"maybe\" for -debug"
        );
        assert_eq!(err("---id x"), "bad flag syntax: ---id");
        assert_eq!(err("-=x"), "bad flag syntax: -=x");
        assert!(err("start delete").contains("after action"));
        assert!(err("run").contains("unknown action \"run\""));
    }

    #[test]
    fn usage_says_which_flags_take_a_value_as_the_parser_does() {
        for (names, opt, _) in FLAGS {
            for n in *names {
                let needs = parse(&format!("-{n}"))
                    .err()
                    .is_some_and(|e| e.to_string().contains("needs a value"));
                assert_eq!(needs, opt.takes_value(), "-{n}");
            }
        }
    }

    #[test]
    fn usage_lists_every_flag() {
        let u = usage();
        for (names, ..) in FLAGS {
            for n in *names {
                assert!(u.contains(&format!("-{n}")), "-{n} missing from\n{u}");
            }
        }
        assert!(u.contains("  -id string\n    \tid of the task\n"), "{u}");
        assert!(u.contains("  -debug\n    \t"), "{u}");
    }
}
