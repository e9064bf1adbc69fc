//! Turns `src/engine/spec/seccomp_default.facts` (Docker's default seccomp policy written as
//! facts about the syscall ABI) into Rust data that `engine::spec::seccomp` includes.
//! A mistake in the facts file fails the build with its line number, not a container start.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

const FACTS: &str = "src/engine/spec/seccomp_default.facts";

#[derive(Default)]
struct Filter {
    caps: Vec<String>,
    arches: Vec<String>,
    min_kernel: Option<(u32, u32)>,
}

struct Arg {
    index: u32,
    value: u64,
    value_two: u64,
    op: &'static str,
}

struct Rule {
    line: usize,
    action: &'static str,
    errno_ret: Option<u64>,
    names: Vec<String>,
    args: Vec<Arg>,
    includes: Filter,
    excludes: Filter,
}

fn main() {
    println!("cargo:rerun-if-changed={FACTS}");
    println!("cargo:rerun-if-changed=build.rs");
    let text = std::fs::read_to_string(FACTS).unwrap_or_else(|e| panic!("{FACTS}: {e}"));
    let code = generate(&text).unwrap_or_else(|e| panic!("{FACTS}: {e}"));
    let out = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("seccomp_default.rs");
    std::fs::write(&out, code).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
}

fn generate(text: &str) -> Result<String, String> {
    let mut consts: HashMap<String, u64> = HashMap::new();
    let mut default: Option<(&'static str, Option<u64>)> = None;
    let mut arch_map: Vec<(String, Vec<String>)> = Vec::new();
    let mut rules: Vec<Rule> = Vec::new();

    for (n, raw) in text.lines().enumerate() {
        let line_no = n + 1;
        let at = |e: String| format!("line {line_no}: {e}");
        let line = raw.split('#').next().unwrap_or("");
        if line.trim().is_empty() {
            continue;
        }
        if line.starts_with(char::is_whitespace) {
            let rule = rules
                .last_mut()
                .ok_or_else(|| at("a list of names outside any rule".into()))?;
            for name in line.split_whitespace() {
                if !name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                {
                    return Err(at(format!("{name:?} is not a syscall name")));
                }
                if rule.names.iter().any(|n| n == name) {
                    return Err(at(format!("{name} listed twice in one rule")));
                }
                rule.names.push(name.to_string());
            }
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        match words[0] {
            "const" => {
                if words.len() < 4 || words[2] != "=" {
                    return Err(at("expected: const NAME = EXPR".into()));
                }
                let value = eval(&words[3..].join(" "), &consts).map_err(at)?;
                if consts.insert(words[1].to_string(), value).is_some() {
                    return Err(at(format!("{} defined twice", words[1])));
                }
            }
            "default" => {
                let (action, errno, rest) = action(&words[1..], &consts).map_err(at)?;
                if !rest.is_empty() {
                    return Err(at(format!("unexpected {:?}", rest.join(" "))));
                }
                default = Some((action, errno));
            }
            "arch" => {
                if words.len() < 4 || words[2] != "=" {
                    return Err(at("expected: arch NATIVE = SCMP_ARCH_...".into()));
                }
                let list: Vec<String> = words[3..].iter().map(|s| s.to_string()).collect();
                if let Some(bad) = list.iter().find(|a| !a.starts_with("SCMP_ARCH_")) {
                    return Err(at(format!("{bad:?} is not a SCMP_ARCH_ name")));
                }
                arch_map.push((words[1].to_string(), list));
            }
            "rule" => {
                let (action, errno_ret, rest) = action(&words[1..], &consts).map_err(at)?;
                let mut rule = Rule {
                    line: line_no,
                    action,
                    errno_ret,
                    names: Vec::new(),
                    args: Vec::new(),
                    includes: Filter::default(),
                    excludes: Filter::default(),
                };
                let mut rest = rest.iter();
                while let Some(&kw) = rest.next() {
                    let cond = rest
                        .next()
                        .ok_or_else(|| at(format!("{kw} without a condition")))?;
                    match kw {
                        "when" => condition(cond, &consts, &mut rule, true).map_err(at)?,
                        "unless" => condition(cond, &consts, &mut rule, false).map_err(at)?,
                        other => return Err(at(format!("expected when/unless, got {other:?}"))),
                    }
                }
                rules.push(rule);
            }
            other => return Err(at(format!("unknown statement {other:?}"))),
        }
    }

    let (default_action, default_errno) = default.ok_or("no default action")?;
    if let Some(r) = rules.iter().find(|r| r.names.is_empty()) {
        return Err(format!("line {}: rule without syscall names", r.line));
    }

    let mut out = String::from("// Generated by cli/build.rs from seccomp_default.facts.\n");
    writeln!(
        out,
        "pub(super) static DEFAULT_PROFILE: StaticProfile = StaticProfile {{"
    )
    .unwrap();
    writeln!(out, "    default_action: {default_action:?},").unwrap();
    writeln!(out, "    default_errno_ret: {},", opt_u32(default_errno)).unwrap();
    writeln!(out, "    arch_map: &[").unwrap();
    for (native, list) in &arch_map {
        writeln!(out, "        ({native:?}, &{list:?}),").unwrap();
    }
    writeln!(out, "    ],\n    rules: &[").unwrap();
    for r in &rules {
        writeln!(out, "        StaticRule {{").unwrap();
        writeln!(out, "            action: {:?},", r.action).unwrap();
        writeln!(out, "            errno_ret: {},", opt_u32(r.errno_ret)).unwrap();
        writeln!(out, "            names: &{:?},", r.names).unwrap();
        writeln!(out, "            args: &[").unwrap();
        for a in &r.args {
            writeln!(
                out,
                "                StaticArg {{ index: {}, value: {:#x}, value_two: {:#x}, op: {:?} }},",
                a.index, a.value, a.value_two, a.op
            )
            .unwrap();
        }
        writeln!(out, "            ],").unwrap();
        for (field, f) in [("includes", &r.includes), ("excludes", &r.excludes)] {
            let kernel = match f.min_kernel {
                Some((a, b)) => format!("Some(({a}, {b}))"),
                None => "None".into(),
            };
            writeln!(
                out,
                "            {field}: StaticFilter {{ caps: &{:?}, arches: &{:?}, min_kernel: {kernel} }},",
                f.caps, f.arches
            )
            .unwrap();
        }
        writeln!(out, "        }},").unwrap();
    }
    writeln!(out, "    ],\n}};").unwrap();
    Ok(out)
}

fn opt_u32(v: Option<u64>) -> String {
    match v {
        Some(v) => format!("Some({v})"),
        None => "None".into(),
    }
}

/// `allow` or `errno ERRNO`; returns the words after it.
fn action<'a>(
    words: &'a [&'a str],
    consts: &HashMap<String, u64>,
) -> Result<(&'static str, Option<u64>, &'a [&'a str]), String> {
    match words.first() {
        Some(&"allow") => Ok(("SCMP_ACT_ALLOW", None, &words[1..])),
        Some(&"errno") => {
            let errno = words.get(1).ok_or("errno without a value")?;
            let v = eval(errno, consts)?;
            if v == 0 || v > 4095 {
                return Err(format!("errno {errno} = {v} is out of range 1..=4095"));
            }
            Ok(("SCMP_ACT_ERRNO", Some(v), &words[2..]))
        }
        other => Err(format!("expected allow or errno, got {other:?}")),
    }
}

fn condition(
    cond: &str,
    consts: &HashMap<String, u64>,
    rule: &mut Rule,
    when: bool,
) -> Result<(), String> {
    let filter = if when {
        &mut rule.includes
    } else {
        &mut rule.excludes
    };
    if let Some(caps) = cond.strip_prefix("cap=") {
        for c in caps.split(',') {
            if !c.starts_with("CAP_") {
                return Err(format!("{c:?} is not a capability name"));
            }
            filter.caps.push(c.to_string());
        }
        return Ok(());
    }
    if let Some(arches) = cond.strip_prefix("arch=") {
        filter.arches.extend(arches.split(',').map(str::to_string));
        return Ok(());
    }
    if let Some(v) = cond.strip_prefix("kernel>=") {
        let (a, b) = v
            .split_once('.')
            .ok_or_else(|| format!("kernel version {v:?} is not X.Y"))?;
        let parse = |s: &str| s.parse::<u32>().map_err(|e| format!("kernel {v:?}: {e}"));
        filter.min_kernel = Some((parse(a)?, parse(b)?));
        return Ok(());
    }
    if let Some(rest) = cond.strip_prefix("arg") {
        if !when {
            // Docker's excludes have no argument tests; a negated comparison would be a
            // different operator, so write that instead.
            return Err(format!("unless {cond}: argument tests go after when"));
        }
        let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        let index: u32 = digits
            .parse()
            .map_err(|_| format!("{cond:?}: expected argN"))?;
        if index > 5 {
            return Err(format!("{cond:?}: syscalls have arguments 0 to 5"));
        }
        let rest = &rest[digits.len()..];
        let arg = if let Some(r) = rest.strip_prefix('&') {
            let (mask, v) = r
                .split_once("==")
                .ok_or_else(|| format!("{cond:?}: expected argN&MASK==V"))?;
            Arg {
                index,
                value: eval(mask, consts)?,
                value_two: eval(v, consts)?,
                op: "SCMP_CMP_MASKED_EQ",
            }
        } else {
            let (op, v) = if let Some(v) = rest.strip_prefix("==") {
                ("SCMP_CMP_EQ", v)
            } else if let Some(v) = rest.strip_prefix('<') {
                ("SCMP_CMP_LT", v)
            } else if let Some(v) = rest.strip_prefix('>') {
                ("SCMP_CMP_GT", v)
            } else {
                return Err(format!("{cond:?}: expected ==, <, > or &"));
            };
            Arg {
                index,
                value: eval(v, consts)?,
                value_two: 0,
                op,
            }
        };
        rule.args.push(arg);
        return Ok(());
    }
    Err(format!("unknown condition {cond:?}"))
}

/// Numbers (decimal or 0x) and consts joined by `|`.
fn eval(expr: &str, consts: &HashMap<String, u64>) -> Result<u64, String> {
    let mut v = 0u64;
    for term in expr.split('|').map(str::trim) {
        let t = if let Some(hex) = term.strip_prefix("0x") {
            u64::from_str_radix(hex, 16).map_err(|e| format!("{term:?}: {e}"))?
        } else if term.starts_with(|c: char| c.is_ascii_digit()) {
            term.parse().map_err(|e| format!("{term:?}: {e}"))?
        } else {
            *consts
                .get(term)
                .ok_or_else(|| format!("{term:?} is not defined (const)"))?
        };
        v |= t;
    }
    Ok(v)
}
