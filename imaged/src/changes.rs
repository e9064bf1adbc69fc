//! Dockerfile instructions applied to an image's container config, as `docker import -c`
//! and `docker commit -c` take them: CMD, ENTRYPOINT, ENV, EXPOSE, HEALTHCHECK, LABEL,
//! ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR, with the Dockerfile's syntax (exec and shell
//! forms, `key=value` pairs with quotes, `$VAR` and `${VAR}` from the config's own Env where
//! the Dockerfile expands them). Anything else is refused, as Docker refuses it.

use serde_json::{json, Map, Value};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("change {change:?}: {reason}")]
pub struct ChangeError {
    pub change: String,
    pub reason: String,
}

/// Apply `changes`, in order, to `config` (the `config` object of an image config: Cmd,
/// Env, ...). A later change sees what earlier ones set.
pub fn apply(config: &mut Map<String, Value>, changes: &[String]) -> Result<(), ChangeError> {
    let mut cmd_set = false;
    for change in changes {
        let fail = |reason: String| ChangeError {
            change: change.clone(),
            reason,
        };
        let line = change.trim();
        if line.is_empty() {
            continue;
        }
        let (word, rest) = match line.split_once(char::is_whitespace) {
            Some((w, r)) => (w, r.trim()),
            None => (line, ""),
        };
        let instruction = word.to_ascii_uppercase();
        let env = env_of(config);
        match instruction.as_str() {
            "CMD" => {
                config.insert("Cmd".into(), json!(command(rest)));
                cmd_set = true;
            }
            "ENTRYPOINT" => {
                config.insert("Entrypoint".into(), json!(command(rest)));
                // As in a Dockerfile: an ENTRYPOINT drops a CMD it did not come with.
                if !cmd_set {
                    config.insert("Cmd".into(), Value::Null);
                }
            }
            "ENV" => {
                for (k, v) in pairs(rest, &env, "ENV").map_err(fail)? {
                    set_env(config, &k, &v);
                }
            }
            "LABEL" => {
                let labels = object(config, "Labels");
                for (k, v) in pairs(rest, &env, "LABEL").map_err(fail)? {
                    labels.insert(k, json!(v));
                }
            }
            "EXPOSE" => {
                let ports = words(rest, Some(&env)).map_err(fail)?;
                if ports.is_empty() {
                    return Err(fail("EXPOSE requires at least one argument".into()));
                }
                let mut specs = Vec::new();
                for p in &ports {
                    specs.extend(port_specs(p).map_err(fail)?);
                }
                let exposed = object(config, "ExposedPorts");
                for s in specs {
                    exposed.insert(s, json!({}));
                }
            }
            "WORKDIR" => {
                let dir = one(rest, &env, "WORKDIR").map_err(fail)?;
                let base = config
                    .get("WorkingDir")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .unwrap_or("/")
                    .to_string();
                let joined = if dir.starts_with('/') {
                    dir
                } else {
                    format!("{base}/{dir}")
                };
                config.insert("WorkingDir".into(), json!(clean(&joined)));
            }
            "USER" => {
                let user = one(rest, &env, "USER").map_err(fail)?;
                config.insert("User".into(), json!(user));
            }
            "STOPSIGNAL" => {
                let sig = one(rest, &env, "STOPSIGNAL").map_err(fail)?;
                config.insert("StopSignal".into(), json!(sig));
            }
            "VOLUME" => {
                let vols = match json_array(rest) {
                    Some(v) => v,
                    None => words(rest, Some(&env)).map_err(fail)?,
                };
                if vols.is_empty() || vols.iter().any(|v| v.trim().is_empty()) {
                    return Err(fail("VOLUME specified can not be an empty string".into()));
                }
                let volumes = object(config, "Volumes");
                for v in vols {
                    volumes.insert(v, json!({}));
                }
            }
            "ONBUILD" => {
                let (trigger, args) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
                let trigger = trigger.to_ascii_uppercase();
                match trigger.as_str() {
                    "" => return Err(fail("ONBUILD requires at least one argument".into())),
                    "ONBUILD" => {
                        return Err(fail(
                            "chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".into(),
                        ))
                    }
                    "FROM" | "MAINTAINER" => {
                        return Err(fail(format!(
                            "{trigger} isn't allowed as an ONBUILD trigger"
                        )))
                    }
                    _ => {}
                }
                let line = format!("{trigger} {}", args.trim()).trim_end().to_string();
                match config.get_mut("OnBuild").and_then(Value::as_array_mut) {
                    Some(a) => a.push(json!(line)),
                    None => {
                        config.insert("OnBuild".into(), json!([line]));
                    }
                }
            }
            "HEALTHCHECK" => {
                config.insert("Healthcheck".into(), healthcheck(rest).map_err(fail)?);
            }
            _ => {
                return Err(fail(format!("{instruction} is not a valid change command")));
            }
        }
    }
    Ok(())
}

fn env_of(config: &Map<String, Value>) -> Vec<String> {
    config
        .get("Env")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn set_env(config: &mut Map<String, Value>, key: &str, value: &str) {
    let entry = format!("{key}={value}");
    let env = match config.get_mut("Env").and_then(Value::as_array_mut) {
        Some(a) => a,
        None => {
            config.insert("Env".into(), json!([]));
            config
                .get_mut("Env")
                .and_then(Value::as_array_mut)
                .expect("just set")
        }
    };
    let prefix = format!("{key}=");
    match env.iter_mut().find(|v| {
        v.as_str()
            .is_some_and(|s| s.starts_with(&prefix) || s == key)
    }) {
        Some(v) => *v = json!(entry),
        None => env.push(json!(entry)),
    }
}

/// The object under `key`, made when missing (or null).
fn object<'a>(config: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    if !config.get(key).is_some_and(Value::is_object) {
        config.insert(key.into(), json!({}));
    }
    config
        .get_mut(key)
        .and_then(Value::as_object_mut)
        .expect("just made")
}

/// The exec form (a JSON array of strings) when `rest` is one.
fn json_array(rest: &str) -> Option<Vec<String>> {
    if !rest.starts_with('[') {
        return None;
    }
    serde_json::from_str::<Vec<String>>(rest).ok()
}

/// CMD and ENTRYPOINT: the exec form as given, else the shell form run by `/bin/sh -c`.
fn command(rest: &str) -> Vec<String> {
    json_array(rest).unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into(), rest.into()])
}

/// One argument, with quotes and variables processed (spaces kept).
fn one(rest: &str, env: &[String], what: &str) -> Result<String, String> {
    let v = expand(rest, Some(env), false)?;
    let v = v.into_iter().next().unwrap_or_default();
    if v.is_empty() {
        return Err(format!("{what} requires exactly one argument"));
    }
    Ok(v)
}

/// ENV and LABEL: `k=v k2="v 2"`, or the old `key value with spaces`.
fn pairs(rest: &str, env: &[String], what: &str) -> Result<Vec<(String, String)>, String> {
    let first = rest.split(char::is_whitespace).next().unwrap_or_default();
    if rest.is_empty() {
        return Err(format!("{what} requires at least one argument"));
    }
    if !first.contains('=') {
        let (key, value) = rest
            .split_once(char::is_whitespace)
            .ok_or_else(|| format!("{what} {rest} must have two arguments"))?;
        let value = expand(value.trim(), Some(env), false)?
            .into_iter()
            .next()
            .unwrap_or_default();
        return Ok(vec![(key.to_string(), value)]);
    }
    let mut out = Vec::new();
    // A variable set earlier on the same line is not seen by later pairs, as in Docker.
    for w in words(rest, Some(env))? {
        let (k, v) = w.split_once('=').ok_or_else(|| {
            format!("syntax error - can't find = in {w:?}. Must be of the form: name=value")
        })?;
        if k.is_empty() {
            return Err(format!("{what} names can not be blank"));
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

/// Words split on whitespace, quotes and escapes removed, variables expanded from `env`.
fn words(s: &str, env: Option<&[String]>) -> Result<Vec<String>, String> {
    expand(s, env, true)
}

/// The Dockerfile's word processing: `'...'` literal, `"..."` with `\"`, `\\`, `\$` escapes
/// and expansion, `\x` outside quotes is x; `$NAME`, `${NAME}`, `${NAME:-default}`,
/// `${NAME:+alternative}`. With `split`, unquoted whitespace separates words; without it
/// the result is one word.
fn expand(s: &str, env: Option<&[String]>, split: bool) -> Result<Vec<String>, String> {
    let lookup = |name: &str| -> Option<String> {
        env?.iter().find_map(|e| {
            let (k, v) = e.split_once('=')?;
            (k == name).then(|| v.to_string())
        })
    };
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() && split => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(n) => cur.push(n),
                    None => cur.push('\\'),
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(n) => cur.push(n),
                        None => return Err(
                            "unexpected end of statement while looking for matching single-quote"
                                .into(),
                        ),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.peek() {
                            Some(&n @ ('"' | '\\' | '$')) => {
                                cur.push(n);
                                chars.next();
                            }
                            _ => cur.push('\\'),
                        },
                        Some('$') if env.is_some() => cur.push_str(&variable(&mut chars, &lookup)?),
                        Some(n) => cur.push(n),
                        None => return Err(
                            "unexpected end of statement while looking for matching double-quote"
                                .into(),
                        ),
                    }
                }
            }
            '$' if env.is_some() => {
                in_word = true;
                cur.push_str(&variable(&mut chars, &lookup)?);
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word || !split {
        out.push(cur);
    }
    Ok(out)
}

/// What a `$` starts, its value expanded (the `$` already taken).
fn variable(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let name_char = |c: char| c.is_ascii_alphanumeric() || c == '_';
    match chars.peek() {
        Some('{') => {
            chars.next();
            let mut name = String::new();
            while let Some(&c) = chars.peek() {
                if !name_char(c) {
                    break;
                }
                name.push(c);
                chars.next();
            }
            match chars.next() {
                Some('}') => Ok(lookup(&name).unwrap_or_default()),
                Some(':') => {
                    let op = chars.next();
                    let mut word = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) => word.push(c),
                            None => return Err(format!("missing '}}' in ${{{name}")),
                        }
                    }
                    let value = lookup(&name).filter(|v| !v.is_empty());
                    match op {
                        Some('-') => Ok(value.unwrap_or(word)),
                        Some('+') => Ok(if value.is_some() { word } else { String::new() }),
                        _ => Err(format!("unsupported modifier in ${{{name}:...}}")),
                    }
                }
                _ => Err(format!("missing '}}' in ${{{name}")),
            }
        }
        Some(&c) if name_char(c) => {
            let mut name = String::new();
            while let Some(&c) = chars.peek() {
                if !name_char(c) {
                    break;
                }
                name.push(c);
                chars.next();
            }
            Ok(lookup(&name).unwrap_or_default())
        }
        _ => Ok("$".into()),
    }
}

/// `80`, `80/udp`, `8000-8002/tcp` as Docker's ExposedPorts keys.
fn port_specs(p: &str) -> Result<Vec<String>, String> {
    let (ports, proto) = p.split_once('/').unwrap_or((p, "tcp"));
    let proto = proto.to_ascii_lowercase();
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("invalid proto: {proto}"));
    }
    let port = |s: &str| {
        s.parse::<u16>()
            .map_err(|_| format!("invalid containerPort: {s}"))
    };
    let (lo, hi) = match ports.split_once('-') {
        Some((a, b)) => (port(a)?, port(b)?),
        None => {
            let n = port(ports)?;
            (n, n)
        }
    };
    if hi < lo {
        return Err(format!(
            "invalid range specified for containerPort: {ports}"
        ));
    }
    Ok((lo..=hi).map(|n| format!("{n}/{proto}")).collect())
}

/// An absolute path with `.`, `..` and repeated slashes resolved, as Go's path.Clean.
fn clean(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

/// `HEALTHCHECK NONE` or `HEALTHCHECK [--interval=D] [--timeout=D] [--start-period=D]
/// [--start-interval=D] [--retries=N] CMD ...`, as the Dockerfile writes it.
fn healthcheck(rest: &str) -> Result<Value, String> {
    if rest.trim().eq_ignore_ascii_case("NONE") {
        return Ok(json!({"Test": ["NONE"]}));
    }
    let mut hc = Map::new();
    let mut rest = rest.trim();
    while let Some(flag) = rest.strip_prefix("--") {
        let (opt, after) = flag.split_once(char::is_whitespace).unwrap_or((flag, ""));
        let (name, value) = opt
            .split_once('=')
            .ok_or_else(|| format!("HEALTHCHECK flag --{opt} needs a value"))?;
        let key = match name {
            "interval" => "Interval",
            "timeout" => "Timeout",
            "start-period" => "StartPeriod",
            "start-interval" => "StartInterval",
            "retries" => "Retries",
            other => return Err(format!("unknown flag: --{other}")),
        };
        let v = if key == "Retries" {
            json!(value
                .parse::<u32>()
                .map_err(|_| format!("--retries: {value:?} is not a number"))?)
        } else {
            json!(go_duration(value)
                .map(|d| d.as_nanos() as u64)
                .ok_or_else(|| format!("--{name}: {value:?} is not a duration"))?)
        };
        hc.insert(key.into(), v);
        rest = after.trim_start();
    }
    let (word, cmd) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    if !word.eq_ignore_ascii_case("CMD") {
        return Err(format!("unknown type {word:?} in HEALTHCHECK (try CMD)"));
    }
    let cmd = cmd.trim();
    let test = match json_array(cmd) {
        Some(args) => [vec!["CMD".to_string()], args].concat(),
        None => vec!["CMD-SHELL".to_string(), cmd.to_string()],
    };
    hc.insert("Test".into(), json!(test));
    Ok(Value::Object(hc))
}

/// Go's duration syntax (`30s`, `1m30s`, `1.5h`, `500ms`, `0`), as Docker's flags and
/// `--change` take it. The CLI parses its flags with it too.
pub fn go_duration(s: &str) -> Option<std::time::Duration> {
    if s == "0" {
        return Some(std::time::Duration::ZERO);
    }
    if s.is_empty() {
        return None;
    }
    const UNITS: [(&str, f64); 7] = [
        ("ns", 1.0),
        ("us", 1e3),
        ("µs", 1e3),
        ("ms", 1e6),
        ("s", 1e9),
        ("m", 60e9),
        ("h", 3600e9),
    ];
    let mut rest = s;
    let mut nanos = 0f64;
    while !rest.is_empty() {
        let len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..len].parse().ok()?;
        rest = &rest[len..];
        let (unit, scale) = UNITS
            .iter()
            .filter(|(u, _)| rest.starts_with(u))
            .max_by_key(|(u, _)| u.len())?;
        rest = &rest[unit.len()..];
        nanos += number * scale;
    }
    Some(std::time::Duration::from_nanos(nanos.round() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(changes: &[&str]) -> Result<Value, ChangeError> {
        let mut c = Map::new();
        c.insert("Env".into(), json!(["PATH=/usr/bin:/bin"]));
        apply(
            &mut c,
            &changes.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )?;
        Ok(Value::Object(c))
    }

    #[test]
    fn the_instructions_docker_import_takes() {
        let c = applied(&[
            r#"CMD ["/bin/sh", "-c", "echo hi"]"#,
            "entrypoint /entry.sh --flag",
            r#"ENV A=1 B="two words" PATH=$PATH:/opt/bin"#,
            "ENV OLD legacy form $A",
            "WORKDIR /srv",
            "WORKDIR app/../data",
            "USER 1000:1000",
            "EXPOSE 80 53/udp 8000-8001",
            r#"LABEL org.example.name="berth test" version=1"#,
            r#"VOLUME ["/data"]"#,
            "VOLUME /cache /logs",
            "STOPSIGNAL SIGQUIT",
            "ONBUILD run echo built",
            "HEALTHCHECK --interval=30s --retries=3 CMD wget -q http://localhost/",
        ])
        .unwrap();
        assert_eq!(
            c["Cmd"],
            json!(["/bin/sh", "-c", "echo hi"]),
            "CMD first: kept"
        );
        assert_eq!(
            c["Entrypoint"],
            json!(["/bin/sh", "-c", "/entry.sh --flag"])
        );
        assert_eq!(
            c["Env"],
            json!([
                "PATH=/usr/bin:/bin:/opt/bin",
                "A=1",
                "B=two words",
                "OLD=legacy form 1"
            ])
        );
        assert_eq!(c["WorkingDir"], "/srv/data");
        assert_eq!(c["User"], "1000:1000");
        assert_eq!(
            c["ExposedPorts"],
            json!({"80/tcp": {}, "53/udp": {}, "8000/tcp": {}, "8001/tcp": {}})
        );
        assert_eq!(
            c["Labels"],
            json!({"org.example.name": "berth test", "version": "1"})
        );
        assert_eq!(
            c["Volumes"],
            json!({"/data": {}, "/cache": {}, "/logs": {}})
        );
        assert_eq!(c["StopSignal"], "SIGQUIT");
        assert_eq!(c["OnBuild"], json!(["RUN echo built"]));
        assert_eq!(
            c["Healthcheck"],
            json!({"Interval": 30_000_000_000u64, "Retries": 3, "Test": ["CMD-SHELL", "wget -q http://localhost/"]})
        );
    }

    #[test]
    fn an_entrypoint_alone_drops_the_cmd() {
        let mut c = Map::new();
        c.insert("Cmd".into(), json!(["sh"]));
        apply(&mut c, &["ENTRYPOINT [\"/init\"]".to_string()]).unwrap();
        assert_eq!(c["Cmd"], Value::Null);
        assert_eq!(c["Entrypoint"], json!(["/init"]));
    }

    #[test]
    fn quoting_and_expansion_follow_the_dockerfile() {
        let env = vec!["HOME=/root".to_string(), "EMPTY=".to_string()];
        let w = |s: &str| words(s, Some(&env)).unwrap();
        assert_eq!(
            w(r#"a 'b $HOME' "c $HOME" d\ e"#),
            ["a", "b $HOME", "c /root", "d e"]
        );
        assert_eq!(w("${HOME}/x $NOPE. \\$HOME"), ["/root/x", ".", "$HOME"]);
        assert_eq!(
            w("${EMPTY:-dflt} ${HOME:+set} x${EMPTY:+no}"),
            ["dflt", "set", "x"]
        );
        assert_eq!(w(r#""""#), [""]);
        assert!(words("'open", Some(&env)).is_err());
    }

    #[test]
    fn refusals_name_the_change() {
        for (change, want) in [
            ("RUN echo hi", "RUN is not a valid change command"),
            ("FROM scratch", "FROM is not a valid change command"),
            ("ENV", "requires at least one argument"),
            ("ENV =x", "names can not be blank"),
            ("EXPOSE 99999", "invalid containerPort"),
            ("EXPOSE 80/xyz", "invalid proto"),
            ("USER", "requires exactly one argument"),
            ("ONBUILD ONBUILD RUN x", "chaining"),
            ("HEALTHCHECK --bogus=1 CMD x", "unknown flag"),
        ] {
            let e = applied(&[change]).unwrap_err();
            assert_eq!(e.change, change);
            assert!(e.to_string().contains(want), "{change}: {e}");
        }
    }

    #[test]
    fn go_durations() {
        let nanos = |s| go_duration(s).map(|d| d.as_nanos());
        assert_eq!(nanos("1m30s"), Some(90_000_000_000));
        assert_eq!(nanos("500ms"), Some(500_000_000));
        assert_eq!(nanos("1.5h"), Some(5_400_000_000_000));
        assert_eq!(nanos("2h45m"), Some(9_900_000_000_000));
        assert_eq!(nanos("0"), Some(0));
        assert_eq!(nanos("10"), None);
        assert_eq!(nanos("1x"), None);
        assert_eq!(nanos(""), None);
    }
}
