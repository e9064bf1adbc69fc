//! Metadata instructions: how each changes the image config, and the history line Docker's
//! classic builder writes for it.

use serde_json::{json, Value};

use super::executor::*;
use crate::build;
use crate::build::instructions::{Healthcheck, Instruction};

pub(super) fn workdir(state: &ImageState) -> String {
    match state.config["WorkingDir"].as_str() {
        Some(w) if !w.is_empty() => w.to_string(),
        _ => "/".to_string(),
    }
}

pub(super) fn shell(config: &Value) -> Vec<String> {
    match config["Shell"].as_array() {
        Some(a) if !a.is_empty() => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => vec!["/bin/sh".to_string(), "-c".to_string()],
    }
}

/// The history line of a config-only step: the stage's SHELL, `#(nop)`, the comment.
pub(super) fn nop(config: &Value, comment: &str) -> String {
    format!("{} #(nop)  {comment}", shell(config).join(" "))
}

/// Go's `%v` of a duration (`5s`, `1m30s`, `0s`), as Docker's history prints HEALTHCHECK.
pub(super) fn go_duration(d: Option<std::time::Duration>) -> String {
    let ns = d.map_or(0, |d| d.as_nanos());
    if ns == 0 {
        return "0s".into();
    }
    if ns < 1_000_000_000 {
        return match ns {
            n if n % 1_000_000 == 0 => format!("{}ms", n / 1_000_000),
            n if n % 1_000 == 0 => format!("{}µs", n / 1_000),
            n => format!("{n}ns"),
        };
    }
    let (h, rest) = (ns / 3_600_000_000_000, ns % 3_600_000_000_000);
    let (m, rest) = (rest / 60_000_000_000, rest % 60_000_000_000);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&format!("{}s", rest as f64 / 1e9));
    out
}

/// Go's `%q` of an integer, a rune literal (`'\x02'`): how Docker's history prints Retries.
pub(super) fn go_rune(n: u32) -> String {
    match char::from_u32(n) {
        Some(c) if c == '\'' || c == '\\' => format!("'\\{c}'"),
        Some(c) if (' '..='~').contains(&c) => format!("'{c}'"),
        _ if n < 0x100 => format!("'\\x{n:02x}'"),
        _ => format!("'\\u{n:04x}'"),
    }
}

/// Go's `%q` of a string slice, as Docker's history shows CMD and ENTRYPOINT.
pub(super) fn go_quoted(args: &[String]) -> String {
    let q: Vec<String> = args
        .iter()
        .map(|a| serde_json::to_string(a).unwrap_or_default())
        .collect();
    format!("[{}]", q.join(" "))
}

/// Applies an instruction's config change to `state` and returns the history comment
/// Docker's classic builder writes for it (after `/bin/sh -c #(nop)  `).
pub(super) fn apply_config(
    state: &mut ImageState,
    instr: &Instruction,
    workdir: &str,
) -> Result<String, String> {
    let c = &mut state.config;
    if !c.is_object() {
        *c = json!({});
    }
    let map = |c: &mut Value, key: &str| -> serde_json::Map<String, Value> {
        c[key].as_object().cloned().unwrap_or_default()
    };
    Ok(match instr {
        Instruction::Env(pairs) => {
            let mut env: Vec<String> = c["Env"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            for (k, v) in pairs {
                let entry = format!("{k}={v}");
                match env
                    .iter_mut()
                    .find(|e| e.split('=').next() == Some(k.as_str()))
                {
                    Some(e) => *e = entry,
                    None => env.push(entry),
                }
            }
            c["Env"] = json!(env);
            let shown: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("ENV {}", shown.join(" "))
        }
        Instruction::Cmd(cmd) => {
            let args = cmd.to_args(&shell(c));
            c["Cmd"] = json!(args);
            state.cmd_set = true;
            format!("CMD {}", go_quoted(&args))
        }
        Instruction::Entrypoint(ep) => {
            let args = ep.to_args(&shell(c));
            c["Entrypoint"] = json!(args);
            if !state.cmd_set {
                c["Cmd"] = Value::Null;
            }
            format!("ENTRYPOINT {}", go_quoted(&args))
        }
        Instruction::Workdir(w) => {
            let dir = if w.starts_with('/') {
                w.clone()
            } else {
                format!("{}/{w}", workdir.trim_end_matches('/'))
            };
            let dir = clean_abs(&dir);
            c["WorkingDir"] = json!(dir);
            format!("WORKDIR {dir}")
        }
        Instruction::User(u) => {
            c["User"] = json!(u);
            format!("USER {u}")
        }
        Instruction::Expose(ports) => {
            let keys = build::config::exposed_ports(ports)?;
            let mut m = map(c, "ExposedPorts");
            for k in &keys {
                m.insert(k.clone(), json!({}));
            }
            c["ExposedPorts"] = Value::Object(m);
            format!("EXPOSE {}", ports.join(" "))
        }
        Instruction::Label(pairs) => {
            let mut m = map(c, "Labels");
            for (k, v) in pairs {
                m.insert(k.clone(), json!(v));
            }
            c["Labels"] = Value::Object(m);
            let shown: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("LABEL {}", shown.join(" "))
        }
        Instruction::Volume(vols) => {
            let mut m = map(c, "Volumes");
            for v in vols {
                if v.trim().is_empty() {
                    return Err("VOLUME specified can not be an empty string".into());
                }
                m.insert(v.clone(), json!({}));
            }
            c["Volumes"] = Value::Object(m);
            format!("VOLUME [{}]", vols.join(" "))
        }
        Instruction::StopSignal(s) => {
            build::config::stop_signal(s)?;
            c["StopSignal"] = json!(s);
            format!("STOPSIGNAL {s}")
        }
        Instruction::Healthcheck(h) => {
            let test = build::config::healthcheck_test(h);
            let mut hc = json!({"Test": test});
            if let Healthcheck::Check {
                interval,
                timeout,
                start_period,
                start_interval,
                retries,
                ..
            } = h
            {
                for (k, d) in [
                    ("Interval", interval),
                    ("Timeout", timeout),
                    ("StartPeriod", start_period),
                    ("StartInterval", start_interval),
                ] {
                    if let Some(d) = d {
                        hc[k] = json!(d.as_nanos() as u64);
                    }
                }
                if let Some(r) = retries {
                    hc["Retries"] = json!(r);
                }
            }
            // Docker prints its HealthConfig struct with `%v`.
            let shown = match h {
                Healthcheck::None => r#"&{["NONE"] "0s" "0s" "0s" '\x00'}"#.to_string(),
                Healthcheck::Check {
                    interval,
                    timeout,
                    start_period,
                    retries,
                    ..
                } => format!(
                    "&{{{} {:?} {:?} {:?} {}}}",
                    go_quoted(&build::config::healthcheck_test(h)),
                    go_duration(*interval),
                    go_duration(*timeout),
                    go_duration(*start_period),
                    go_rune(retries.unwrap_or(0))
                ),
            };
            c["Healthcheck"] = hc;
            format!("HEALTHCHECK {shown}")
        }
        Instruction::Shell(s) => {
            c["Shell"] = json!(s);
            format!("SHELL [{}]", s.join(" "))
        }
        Instruction::Onbuild(o) => {
            let mut triggers: Vec<Value> = c["OnBuild"].as_array().cloned().unwrap_or_default();
            triggers.push(json!(o.text));
            c["OnBuild"] = json!(triggers);
            format!("ONBUILD {}", o.text)
        }
        Instruction::Arg(decls) => {
            let shown: Vec<String> = decls
                .iter()
                .map(|d| match &d.default {
                    Some(v) => format!("{}={v}", d.name),
                    None => d.name.clone(),
                })
                .collect();
            format!("ARG {}", shown.join(" "))
        }
        Instruction::Maintainer(m) => format!("MAINTAINER {m}"),
        Instruction::Run(_) | Instruction::Copy(_) | Instruction::Add(_) | Instruction::From(_) => {
            String::new()
        }
    })
}

pub(super) fn clean_abs(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            x => parts.push(x),
        }
    }
    format!("/{}", parts.join("/"))
}
