//! Instruction nodes into typed [`Instruction`]s: each keyword's flags and argument shapes,
//! with BuildKit's error messages. Nothing is expanded here.

use berth_imaged::changes::go_duration;
use std::time::Duration;

use super::error::ErrorKind;
use super::instructions::*;
use super::parser::{self, heredoc_marker, Node};
use super::words::split_raw_words;

/// Interprets one node. `escape` is the file's escape character.
pub fn instruction(node: &Node, escape: char) -> Result<Instruction, ErrorKind> {
    let keyword = node.keyword.to_ascii_uppercase();
    let rest = node.rest.trim();
    let kw = keyword.as_str();
    let no_flags = || Flags::parse(node, &[]);
    Ok(match kw {
        "FROM" => from(node, rest)?,
        "RUN" => run(node, rest)?,
        "CMD" | "ENTRYPOINT" => {
            no_flags()?;
            let c = maybe_json(kw, rest)?;
            // An empty CMD or ENTRYPOINT resets it; it is the exec form of nothing.
            let c = match c {
                CommandLine::Shell(s) if s.is_empty() => CommandLine::Exec(Vec::new()),
                c => c,
            };
            match kw {
                "CMD" => Instruction::Cmd(c),
                _ => Instruction::Entrypoint(c),
            }
        }
        "ENV" => {
            no_flags()?;
            Instruction::Env(name_values(kw, rest, escape)?)
        }
        "LABEL" => {
            no_flags()?;
            Instruction::Label(name_values(kw, rest, escape)?)
        }
        "ARG" => {
            no_flags()?;
            Instruction::Arg(args(rest, escape)?)
        }
        "WORKDIR" | "USER" => {
            no_flags()?;
            if rest.is_empty() {
                return Err(exactly_one(kw));
            }
            match kw {
                "WORKDIR" => Instruction::Workdir(rest.to_string()),
                _ => Instruction::User(rest.to_string()),
            }
        }
        "MAINTAINER" => {
            no_flags()?;
            if rest.is_empty() {
                return Err(exactly_one(kw));
            }
            Instruction::Maintainer(rest.to_string())
        }
        "STOPSIGNAL" => {
            no_flags()?;
            if rest.split_whitespace().count() != 1 {
                return Err(exactly_one(kw));
            }
            Instruction::StopSignal(rest.to_string())
        }
        "COPY" | "ADD" => copy(node, kw, rest)?,
        "EXPOSE" => {
            no_flags()?;
            let ports: Vec<String> = rest.split_whitespace().map(String::from).collect();
            if ports.is_empty() {
                return Err(at_least_one(kw));
            }
            Instruction::Expose(ports)
        }
        "VOLUME" => {
            no_flags()?;
            let list = maybe_json_list(kw, rest)?;
            if list.is_empty() {
                return Err(at_least_one(kw));
            }
            if list.iter().any(|v| v.trim().is_empty()) {
                return Err(syntax("VOLUME specified can not be an empty string"));
            }
            Instruction::Volume(list.into_iter().map(|v| v.trim().to_string()).collect())
        }
        "HEALTHCHECK" => healthcheck(node, rest)?,
        "SHELL" => {
            no_flags()?;
            match maybe_json(kw, rest)? {
                CommandLine::Exec(args) if args.is_empty() => return Err(at_least_one(kw)),
                CommandLine::Exec(args) => Instruction::Shell(args),
                CommandLine::Shell(_) => {
                    return Err(syntax("SHELL requires the arguments to be in JSON form"))
                }
            }
        }
        "ONBUILD" => {
            no_flags()?;
            let Some(trigger) = parser::parse_line(rest) else {
                return Err(at_least_one(kw));
            };
            match trigger.keyword.to_ascii_uppercase().as_str() {
                "ONBUILD" => {
                    return Err(syntax("Cannot chain ONBUILD via `ONBUILD ONBUILD`"));
                }
                k @ ("FROM" | "MAINTAINER") => {
                    return Err(syntax(&format!("{k} isn't allowed as an ONBUILD trigger")));
                }
                _ => {}
            }
            Instruction::Onbuild(Onbuild {
                text: rest.to_string(),
                instruction: Box::new(instruction(&trigger, escape)?),
            })
        }
        _ => return Err(ErrorKind::UnknownInstruction(keyword)),
    })
}

fn syntax(message: &str) -> ErrorKind {
    ErrorKind::Syntax(message.to_string())
}

fn at_least_one(kw: &str) -> ErrorKind {
    syntax(&format!("{kw} requires at least one argument"))
}

fn exactly_one(kw: &str) -> ErrorKind {
    syntax(&format!("{kw} requires exactly one argument"))
}

#[derive(Clone, Copy, PartialEq)]
enum FlagKind {
    Value,
    Bool,
    /// May be given more than once.
    List,
}

/// The flags of one instruction, checked against the ones it accepts.
struct Flags(Vec<(String, Option<String>)>);

impl Flags {
    fn parse(node: &Node, allowed: &[(&str, FlagKind)]) -> Result<Flags, ErrorKind> {
        let mut out: Vec<(String, Option<String>)> = Vec::new();
        for flag in &node.flags {
            let (name, value) = match flag.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (flag.as_str(), None),
            };
            let Some(&(_, kind)) = allowed.iter().find(|(n, _)| *n == name) else {
                return Err(ErrorKind::UnknownFlag(format!("--{name}")));
            };
            if kind != FlagKind::List && out.iter().any(|(n, _)| n == name) {
                return Err(ErrorKind::Flag(format!(
                    "duplicate flag specified: --{name}"
                )));
            }
            let value = match (kind, value) {
                (FlagKind::Bool, None) => Some("true".to_string()),
                (FlagKind::Bool, Some(v)) if v.eq_ignore_ascii_case("true") => Some("true".into()),
                (FlagKind::Bool, Some(v)) if v.eq_ignore_ascii_case("false") => {
                    Some("false".into())
                }
                (FlagKind::Bool, Some(v)) if !v.is_empty() => {
                    return Err(ErrorKind::Flag(format!(
                        "expecting boolean value for flag --{name}, not: {v}"
                    )))
                }
                (FlagKind::Bool, Some(_)) | (_, None) => {
                    return Err(ErrorKind::Flag(format!(
                        "missing a value on flag: --{name}"
                    )))
                }
                (_, v) => v,
            };
            out.push((name.to_string(), value));
        }
        Ok(Flags(out))
    }

    fn value(&self, name: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.clone())
    }

    fn list(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(n, _)| n == name)
            .filter_map(|(_, v)| v.clone())
            .collect()
    }

    fn bool(&self, name: &str) -> bool {
        self.0
            .iter()
            .any(|(n, v)| n == name && v.as_deref() == Some("true"))
    }
}

fn from(node: &Node, rest: &str) -> Result<Instruction, ErrorKind> {
    let flags = Flags::parse(node, &[("platform", FlagKind::Value)])?;
    let args: Vec<&str> = rest.split_whitespace().collect();
    let name = match args.len() {
        3 if args[1].eq_ignore_ascii_case("as") => {
            let name = args[2].to_ascii_lowercase();
            let mut chars = name.chars();
            let valid = chars.next().is_some_and(|c| c.is_ascii_lowercase())
                && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
            if !valid {
                return Err(syntax(&format!(
                    "invalid name for build stage: {:?}, name can't start with a number or contain symbols",
                    args[2]
                )));
            }
            Some(name)
        }
        1 => None,
        _ => return Err(syntax("FROM requires either one or three arguments")),
    };
    Ok(Instruction::From(From {
        image: args[0].to_string(),
        platform: flags.value("platform"),
        name,
    }))
}

fn run(node: &Node, rest: &str) -> Result<Instruction, ErrorKind> {
    let flags = Flags::parse(
        node,
        &[("mount", FlagKind::List), ("network", FlagKind::Value)],
    )?;
    if rest.is_empty() {
        return Err(at_least_one("RUN"));
    }
    let command = maybe_json("RUN", rest)?;
    let network = match flags.value("network").as_deref() {
        None => None,
        Some("default") => Some(Network::Default),
        Some("none") => Some(Network::None),
        Some("host") => Some(Network::Host),
        Some(other) => {
            return Err(ErrorKind::Flag(format!(
                "unsupported network mode {other:?} (want default, none or host)"
            )))
        }
    };
    let mounts = flags
        .list("mount")
        .iter()
        .map(|m| mount(m))
        .collect::<Result<_, _>>()?;
    let heredocs = match command {
        CommandLine::Shell(_) => node.heredocs.clone(),
        CommandLine::Exec(_) => Vec::new(),
    };
    Ok(Instruction::Run(Run {
        command,
        heredocs,
        mounts,
        network,
    }))
}

/// Parses the csv of `--mount=type=cache,target=/root/.cache,sharing=locked`.
fn mount(spec: &str) -> Result<Mount, ErrorKind> {
    let bad = |m: String| ErrorKind::Flag(format!("--mount={spec}: {m}"));
    let mut kind = MountKind::Bind;
    let mut m = Mount {
        kind,
        target: String::new(),
        source: None,
        from: None,
        readonly: false,
        id: None,
        sharing: Sharing::Shared,
        mode: None,
        uid: None,
        gid: None,
        size: None,
    };
    let mut readonly: Option<bool> = None;
    for field in spec.split(',').map(str::trim).filter(|f| !f.is_empty()) {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.to_ascii_lowercase(), Some(v)),
            None => (field.to_ascii_lowercase(), None),
        };
        let need = || value.ok_or_else(|| bad(format!("{key} needs a value")));
        let number = |radix: u32| {
            let v = need()?;
            u32::from_str_radix(v, radix).map_err(|_| bad(format!("invalid {key} {v:?}")))
        };
        match key.as_str() {
            "type" => {
                kind = match need()? {
                    "bind" => MountKind::Bind,
                    "cache" => MountKind::Cache,
                    "tmpfs" => MountKind::Tmpfs,
                    t @ ("secret" | "ssh") => {
                        return Err(bad(format!("mount type {t} is not supported by berth")))
                    }
                    t => return Err(bad(format!("unsupported mount type {t:?}"))),
                }
            }
            "target" | "dst" | "destination" => m.target = need()?.to_string(),
            "source" | "src" => m.source = Some(need()?.to_string()),
            "from" => m.from = Some(need()?.to_string()),
            "id" => m.id = Some(need()?.to_string()),
            "ro" | "readonly" => readonly = Some(value != Some("false")),
            "rw" | "readwrite" => readonly = Some(value.is_some_and(|v| v == "false")),
            "sharing" => {
                m.sharing = match need()? {
                    "shared" => Sharing::Shared,
                    "private" => Sharing::Private,
                    "locked" => Sharing::Locked,
                    s => return Err(bad(format!("unsupported sharing value {s:?}"))),
                }
            }
            "mode" => m.mode = Some(number(8)?),
            "uid" => m.uid = Some(number(10)?),
            "gid" => m.gid = Some(number(10)?),
            "size" => {
                let v = need()?;
                m.size = Some(v.parse().map_err(|_| bad(format!("invalid size {v:?}")))?);
            }
            _ => return Err(bad(format!("unexpected key '{key}'"))),
        }
    }
    if m.target.is_empty() {
        return Err(bad("mount destination not specified".to_string()));
    }
    m.kind = kind;
    // Bind mounts are read-only unless asked; caches are writable, which is their point.
    m.readonly = readonly.unwrap_or(kind == MountKind::Bind);
    Ok(m)
}

fn copy(node: &Node, kw: &str, rest: &str) -> Result<Instruction, ErrorKind> {
    let mut allowed = vec![
        ("chown", FlagKind::Value),
        ("chmod", FlagKind::Value),
        ("link", FlagKind::Bool),
    ];
    match kw {
        "COPY" => allowed.push(("from", FlagKind::Value)),
        _ => allowed.push(("checksum", FlagKind::Value)),
    }
    let flags = Flags::parse(node, &allowed)?;
    let mut args = maybe_json_list(kw, rest)?;
    match args.len() {
        0 => return Err(syntax(&format!("{kw} requires at least two arguments"))),
        1 => {
            return Err(syntax(&format!(
                "{kw} requires at least two arguments, but only one was provided. Destination could not be determined"
            )))
        }
        _ => {}
    }
    let dest = args.pop().unwrap_or_default();
    let mut heredocs = node.heredocs.iter();
    let sources = args
        .into_iter()
        .map(|src| match heredoc_marker(&src) {
            Some(marker) => match heredocs.find(|h| h.name == marker.name) {
                Some(h) => Source::Heredoc(h.clone()),
                None => Source::Path(src),
            },
            None => Source::Path(src),
        })
        .collect();
    let copy = Copy {
        sources,
        dest,
        from: flags.value("from"),
        chown: flags.value("chown"),
        chmod: flags.value("chmod"),
        link: flags.bool("link"),
        checksum: flags.value("checksum"),
    };
    Ok(match kw {
        "COPY" => Instruction::Copy(copy),
        _ => Instruction::Add(copy),
    })
}

fn healthcheck(node: &Node, rest: &str) -> Result<Instruction, ErrorKind> {
    let flags = Flags::parse(
        node,
        &[
            ("interval", FlagKind::Value),
            ("timeout", FlagKind::Value),
            ("start-period", FlagKind::Value),
            ("start-interval", FlagKind::Value),
            ("retries", FlagKind::Value),
        ],
    )?;
    let (kind, command) = match rest.split_once(char::is_whitespace) {
        Some((k, c)) => (k, c.trim()),
        None => (rest, ""),
    };
    match kind.to_ascii_uppercase().as_str() {
        "" => Err(at_least_one("HEALTHCHECK")),
        "NONE" if command.is_empty() => Ok(Instruction::Healthcheck(Healthcheck::None)),
        "NONE" => Err(syntax("HEALTHCHECK NONE takes no arguments")),
        "CMD" => {
            if command.is_empty() {
                return Err(syntax("Missing command after HEALTHCHECK CMD"));
            }
            let interval = |name: &str| -> Result<Option<Duration>, ErrorKind> {
                let Some(v) = flags.value(name) else {
                    return Ok(None);
                };
                let d = go_duration(&v)
                    .ok_or_else(|| ErrorKind::Flag(format!("time: invalid duration {v:?}")))?;
                match d {
                    // Zero means "use the default", as Docker reads it.
                    d if d.is_zero() => Ok(None),
                    d if d < Duration::from_millis(1) => Err(ErrorKind::Flag(format!(
                        "Interval {name:?} cannot be less than 1ms"
                    ))),
                    d => Ok(Some(d)),
                }
            };
            let retries = match flags.value("retries") {
                None => None,
                Some(v) => {
                    let n: i64 = v.parse().map_err(|_| {
                        ErrorKind::Flag(format!("invalid value {v:?} for --retries"))
                    })?;
                    if n < 0 {
                        return Err(ErrorKind::Flag(format!(
                            "--retries cannot be negative ({n})"
                        )));
                    }
                    Some(n.try_into().unwrap_or(u32::MAX))
                }
            };
            let test = maybe_json("HEALTHCHECK", command)?;
            Ok(Instruction::Healthcheck(Healthcheck::Check {
                test,
                interval: interval("interval")?,
                timeout: interval("timeout")?,
                start_period: interval("start-period")?,
                start_interval: interval("start-interval")?,
                retries,
            }))
        }
        _ => Err(syntax(&format!(
            "Unknown type {kind:?} in HEALTHCHECK (try CMD)"
        ))),
    }
}

/// The exec form when the arguments are a JSON array of strings, else the shell form.
fn maybe_json(kw: &str, rest: &str) -> Result<CommandLine, ErrorKind> {
    if rest.starts_with('[') {
        if let Ok(serde_json::Value::Array(items)) = serde_json::from_str(rest) {
            return items
                .into_iter()
                .map(|v| match v {
                    serde_json::Value::String(s) => Ok(s),
                    _ => Err(syntax(&format!(
                        "{kw}: the JSON form takes an array of strings only"
                    ))),
                })
                .collect::<Result<_, _>>()
                .map(CommandLine::Exec);
        }
    }
    Ok(CommandLine::Shell(rest.to_string()))
}

/// A JSON array of strings, or whitespace-separated words.
fn maybe_json_list(kw: &str, rest: &str) -> Result<Vec<String>, ErrorKind> {
    Ok(match maybe_json(kw, rest)? {
        CommandLine::Exec(list) => list,
        CommandLine::Shell(s) => s.split_whitespace().map(String::from).collect(),
    })
}

/// `k=v k2="v 2"` or the legacy `k v with spaces` of ENV and LABEL.
fn name_values(kw: &str, rest: &str, escape: char) -> Result<Vec<(String, String)>, ErrorKind> {
    let words = split_raw_words(rest, escape);
    let Some(first) = words.first() else {
        return Err(at_least_one(kw));
    };
    if !first.contains('=') {
        let Some((key, value)) = rest.split_once(char::is_whitespace) else {
            return Err(syntax(&format!("{kw} must have two arguments")));
        };
        return Ok(vec![(key.to_string(), value.trim_start().to_string())]);
    }
    words
        .iter()
        .map(|w| {
            let Some((k, v)) = w.split_once('=') else {
                return Err(syntax(&format!(
                    "Syntax error - can't find = in {w:?}. Must be of the form: name=value"
                )));
            };
            if k.is_empty() {
                return Err(syntax(&format!("{kw} names can not be blank")));
            }
            Ok((k.to_string(), v.to_string()))
        })
        .collect()
}

fn args(rest: &str, escape: char) -> Result<Vec<ArgDecl>, ErrorKind> {
    let words = split_raw_words(rest, escape);
    if words.is_empty() {
        return Err(at_least_one("ARG"));
    }
    words
        .into_iter()
        .map(|w| {
            let (name, default) = match w.split_once('=') {
                Some((n, d)) => (n.to_string(), Some(d.to_string())),
                None => (w, None),
            };
            if name.is_empty() {
                return Err(syntax("ARG names can not be blank"));
            }
            Ok(ArgDecl { name, default })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(line: &str) -> Result<Instruction, ErrorKind> {
        let (_, nodes) = parser::parse(line).map_err(|(_, e)| e)?;
        instruction(&nodes[0], '\\')
    }

    fn err(line: &str) -> String {
        one(line).unwrap_err().to_string()
    }

    #[test]
    fn from_forms() {
        assert_eq!(
            one("FROM --platform=linux/arm64 node:18-alpine AS Build").unwrap(),
            Instruction::From(From {
                image: "node:18-alpine".into(),
                platform: Some("linux/arm64".into()),
                name: Some("build".into()),
            })
        );
        assert_eq!(
            err("FROM a b"),
            "FROM requires either one or three arguments"
        );
        assert_eq!(err("FROM"), "FROM requires either one or three arguments");
        assert_eq!(
            err("FROM a to b"),
            "FROM requires either one or three arguments"
        );
        assert!(err("FROM a AS 1x").starts_with("invalid name for build stage: \"1x\""));
        assert_eq!(err("FROM --plat=x a"), "unknown flag: --plat");
    }

    #[test]
    fn run_forms() {
        let Instruction::Run(r) = one(r#"RUN ["echo", "hi"]"#).unwrap() else {
            panic!()
        };
        assert_eq!(
            r.command,
            CommandLine::Exec(vec!["echo".into(), "hi".into()])
        );
        // Invalid JSON falls back to the shell form, as Docker does.
        let Instruction::Run(r) = one("RUN [ -f x ] && echo").unwrap() else {
            panic!()
        };
        assert_eq!(r.command, CommandLine::Shell("[ -f x ] && echo".into()));
        assert_eq!(err("RUN"), "RUN requires at least one argument");
        assert_eq!(err("RUN --foo=bar x"), "unknown flag: --foo");
        assert_eq!(
            err("RUN --network=x y"),
            "unsupported network mode \"x\" (want default, none or host)"
        );
    }

    #[test]
    fn run_mounts() {
        let Instruction::Run(r) = one(
            "RUN --mount=type=cache,target=/root/.cache,sharing=locked,id=pip --mount=type=bind,from=build,source=/out,target=/in --network=none make",
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(r.mounts.len(), 2);
        assert_eq!(r.mounts[0].kind, MountKind::Cache);
        assert_eq!(r.mounts[0].sharing, Sharing::Locked);
        assert!(!r.mounts[0].readonly);
        assert_eq!(r.mounts[1].kind, MountKind::Bind);
        assert_eq!(r.mounts[1].from.as_deref(), Some("build"));
        assert!(r.mounts[1].readonly);
        assert_eq!(r.network, Some(Network::None));
        assert!(err("RUN --mount=type=secret,id=x,target=/s x").contains("not supported"));
        assert!(err("RUN --mount=type=cache x").contains("mount destination not specified"));
        assert!(
            err("RUN --mount=type=cache,target=/x,bogus=1 x").contains("unexpected key 'bogus'")
        );
        assert_eq!(
            err("RUN --network=host --network=none x"),
            "duplicate flag specified: --network"
        );
    }

    #[test]
    fn run_heredoc_scripts() {
        let (_, nodes) = parser::parse("RUN <<EOF\necho a\necho b\nEOF\n").unwrap();
        let Instruction::Run(r) = instruction(&nodes[0], '\\').unwrap() else {
            panic!()
        };
        assert_eq!(r.script().unwrap(), "echo a\necho b\n");
        let (_, nodes) = parser::parse("RUN python3 <<EOF > out\nprint(1)\nEOF\n").unwrap();
        let Instruction::Run(r) = instruction(&nodes[0], '\\').unwrap() else {
            panic!()
        };
        assert_eq!(r.script().unwrap(), "python3 <<EOF > out\nprint(1)\nEOF");
    }

    #[test]
    fn env_and_label() {
        assert_eq!(
            one(r#"ENV A=1 B="two words" C=3\ 4"#).unwrap(),
            Instruction::Env(vec![
                ("A".into(), "1".into()),
                ("B".into(), "\"two words\"".into()),
                ("C".into(), r"3\ 4".into()),
            ])
        );
        assert_eq!(
            one("ENV LEGACY value with  spaces").unwrap(),
            Instruction::Env(vec![("LEGACY".into(), "value with  spaces".into())])
        );
        assert_eq!(err("ENV A"), "ENV must have two arguments");
        assert_eq!(err("ENV"), "ENV requires at least one argument");
        assert_eq!(
            err("ENV A=1 B"),
            "Syntax error - can't find = in \"B\". Must be of the form: name=value"
        );
        assert_eq!(err("LABEL =x"), "LABEL names can not be blank");
        assert_eq!(
            one(r#"LABEL "com.example.vendor"="ACME" version=1.0"#).unwrap(),
            Instruction::Label(vec![
                ("\"com.example.vendor\"".into(), "\"ACME\"".into()),
                ("version".into(), "1.0".into()),
            ])
        );
    }

    #[test]
    fn arg_forms() {
        assert_eq!(
            one("ARG A B=2 C=\"x y\"").unwrap(),
            Instruction::Arg(vec![
                ArgDecl {
                    name: "A".into(),
                    default: None
                },
                ArgDecl {
                    name: "B".into(),
                    default: Some("2".into())
                },
                ArgDecl {
                    name: "C".into(),
                    default: Some("\"x y\"".into())
                },
            ])
        );
        assert_eq!(err("ARG"), "ARG requires at least one argument");
        assert_eq!(err("ARG =1"), "ARG names can not be blank");
    }

    #[test]
    fn copy_and_add() {
        let Instruction::Copy(c) =
            one("COPY --from=build --chown=app:app --chmod=755 --link a b* /dst/").unwrap()
        else {
            panic!()
        };
        assert_eq!(
            c.sources,
            [Source::Path("a".into()), Source::Path("b*".into())]
        );
        assert_eq!(c.dest, "/dst/");
        assert_eq!(c.from.as_deref(), Some("build"));
        assert_eq!(c.chown.as_deref(), Some("app:app"));
        assert_eq!(c.chmod.as_deref(), Some("755"));
        assert!(c.link);
        let Instruction::Add(c) = one(r#"ADD ["a b", "/c d/"]"#).unwrap() else {
            panic!()
        };
        assert_eq!(c.sources, [Source::Path("a b".into())]);
        assert_eq!(c.dest, "/c d/");
        assert_eq!(err("COPY"), "COPY requires at least two arguments");
        assert_eq!(
            err("COPY a"),
            "COPY requires at least two arguments, but only one was provided. Destination could not be determined"
        );
        assert_eq!(err("ADD --from=x a b"), "unknown flag: --from");
        assert_eq!(err("COPY --chown a b"), "missing a value on flag: --chown");
        assert_eq!(
            err("COPY --link=maybe a b"),
            "expecting boolean value for flag --link, not: maybe"
        );
    }

    #[test]
    fn copy_heredoc() {
        let (_, nodes) =
            parser::parse("COPY <<one <<'two' /dst/\nhello $X\none\nraw $X\ntwo\n").unwrap();
        let Instruction::Copy(c) = instruction(&nodes[0], '\\').unwrap() else {
            panic!()
        };
        let [Source::Heredoc(a), Source::Heredoc(b)] = &c.sources[..] else {
            panic!("{:?}", c.sources)
        };
        assert_eq!((a.name.as_str(), a.expand), ("one", true));
        assert_eq!((b.name.as_str(), b.expand), ("two", false));
        let env = |n: &str| (n == "X").then(|| "x".to_string());
        let Instruction::Copy(c) = Instruction::Copy(c).expand('\\', &env).unwrap() else {
            panic!()
        };
        let [Source::Heredoc(a), Source::Heredoc(b)] = &c.sources[..] else {
            panic!()
        };
        assert_eq!(a.content, "hello x\n");
        assert_eq!(b.content, "raw $X\n");
    }

    #[test]
    fn small_instructions() {
        assert_eq!(
            one("WORKDIR /a b").unwrap(),
            Instruction::Workdir("/a b".into())
        );
        assert_eq!(err("WORKDIR"), "WORKDIR requires exactly one argument");
        assert_eq!(err("USER"), "USER requires exactly one argument");
        assert_eq!(
            one("USER app:app").unwrap(),
            Instruction::User("app:app".into())
        );
        assert_eq!(
            err("STOPSIGNAL A B"),
            "STOPSIGNAL requires exactly one argument"
        );
        assert_eq!(
            one("EXPOSE 3000 53/udp").unwrap(),
            Instruction::Expose(vec!["3000".into(), "53/udp".into()])
        );
        assert_eq!(err("EXPOSE"), "EXPOSE requires at least one argument");
        assert_eq!(
            one(r#"VOLUME ["/data", "/logs"]"#).unwrap(),
            Instruction::Volume(vec!["/data".into(), "/logs".into()])
        );
        assert_eq!(
            one("VOLUME /data /logs").unwrap(),
            Instruction::Volume(vec!["/data".into(), "/logs".into()])
        );
        assert_eq!(
            err(r#"VOLUME [""]"#),
            "VOLUME specified can not be an empty string"
        );
        assert_eq!(
            one(r#"SHELL ["powershell", "-command"]"#).unwrap(),
            Instruction::Shell(vec!["powershell".into(), "-command".into()])
        );
        assert_eq!(
            err("SHELL /bin/bash -c"),
            "SHELL requires the arguments to be in JSON form"
        );
        assert_eq!(
            one("MAINTAINER Jo <jo@x>").unwrap(),
            Instruction::Maintainer("Jo <jo@x>".into())
        );
        assert_eq!(
            one("CMD").unwrap(),
            Instruction::Cmd(CommandLine::Exec(vec![]))
        );
        assert_eq!(err("FOOBAR x"), "unknown instruction: FOOBAR");
        assert_eq!(err("CMD --help"), "unknown flag: --help");
    }

    #[test]
    fn healthchecks() {
        assert_eq!(
            one("HEALTHCHECK NONE").unwrap(),
            Instruction::Healthcheck(Healthcheck::None)
        );
        assert_eq!(
            one("HEALTHCHECK --interval=30s --timeout=1m30s --start-period=0 --retries=3 CMD curl -f http://localhost/")
                .unwrap(),
            Instruction::Healthcheck(Healthcheck::Check {
                test: CommandLine::Shell("curl -f http://localhost/".into()),
                interval: Some(Duration::from_secs(30)),
                timeout: Some(Duration::from_secs(90)),
                start_period: None,
                start_interval: None,
                retries: Some(3),
            })
        );
        assert_eq!(
            err("HEALTHCHECK NONE x"),
            "HEALTHCHECK NONE takes no arguments"
        );
        assert_eq!(
            err("HEALTHCHECK CMD"),
            "Missing command after HEALTHCHECK CMD"
        );
        assert_eq!(
            err("HEALTHCHECK RUN x"),
            "Unknown type \"RUN\" in HEALTHCHECK (try CMD)"
        );
        assert_eq!(
            err("HEALTHCHECK --retries=-1 CMD x"),
            "--retries cannot be negative (-1)"
        );
        assert_eq!(
            err("HEALTHCHECK --interval=10us CMD x"),
            "Interval \"interval\" cannot be less than 1ms"
        );
        assert_eq!(
            err("HEALTHCHECK --interval=abc CMD x"),
            "time: invalid duration \"abc\""
        );
    }

    #[test]
    fn durations() {
        assert_eq!(go_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(go_duration("2h45m"), Some(Duration::from_secs(9900)));
        assert_eq!(go_duration("300ms"), Some(Duration::from_millis(300)));
        assert_eq!(go_duration("5"), None);
        assert_eq!(go_duration(""), None);
    }

    #[test]
    fn onbuild() {
        let Instruction::Onbuild(o) = one("ONBUILD COPY . /app").unwrap() else {
            panic!()
        };
        assert_eq!(o.text, "COPY . /app");
        assert!(matches!(*o.instruction, Instruction::Copy(_)));
        assert_eq!(
            err("ONBUILD ONBUILD RUN x"),
            "Cannot chain ONBUILD via `ONBUILD ONBUILD`"
        );
        assert_eq!(
            err("ONBUILD FROM x"),
            "FROM isn't allowed as an ONBUILD trigger"
        );
        assert_eq!(
            err("ONBUILD MAINTAINER x"),
            "MAINTAINER isn't allowed as an ONBUILD trigger"
        );
        assert_eq!(err("ONBUILD BOGUS"), "unknown instruction: BOGUS");
    }

    #[test]
    fn expansion() {
        let env = |n: &str| match n {
            "V" => Some("1.2".to_string()),
            "PORTS" => Some("80 443".to_string()),
            "HOME" => Some("/home/app".to_string()),
            _ => None,
        };
        let x = |line: &str| one(line).unwrap().expand('\\', &env).unwrap();
        assert_eq!(
            x("ENV A=$V B=\"${V} x\" C=${NOPE:-d}"),
            Instruction::Env(vec![
                ("A".into(), "1.2".into()),
                ("B".into(), "1.2 x".into()),
                ("C".into(), "d".into()),
            ])
        );
        assert_eq!(
            x("EXPOSE $PORTS 8080"),
            Instruction::Expose(vec!["80".into(), "443".into(), "8080".into()])
        );
        assert_eq!(
            x("WORKDIR $HOME/src"),
            Instruction::Workdir("/home/app/src".into())
        );
        // RUN is the shell's to expand.
        assert_eq!(x("RUN echo $V"), one("RUN echo $V").unwrap());
        let Instruction::Copy(c) = x("COPY --chown=${U:-app} app-$V.tar /opt/") else {
            panic!()
        };
        assert_eq!(c.chown.as_deref(), Some("app"));
        assert_eq!(c.sources, [Source::Path("app-1.2.tar".into())]);
        assert_eq!(
            x("LABEL \"a b\"=\"c d\"").to_string(),
            "LABEL \"a b\"=\"c d\""
        );
    }

    #[test]
    fn canonical_text() {
        let t = |line: &str| one(line).unwrap().to_string();
        assert_eq!(
            t("copy  --link --from=x  a   b"),
            "COPY --from=x --link a b"
        );
        assert_eq!(
            t("CMD [\"node\",   \"src/index.js\"]"),
            "CMD [\"node\",\"src/index.js\"]"
        );
        assert_eq!(t("ENV A 1"), "ENV A=1");
        assert_eq!(
            t("RUN --mount=type=cache,target=/c make"),
            "RUN --mount=type=cache,target=/c make"
        );
    }
}
