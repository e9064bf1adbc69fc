//! Output as Docker prints it: human sizes and times, `--format` templates, aligned tables.

pub mod human;
pub mod template;

use anyhow::Result;
use serde_json::Value;

use crate::Failure;

/// Print `rows` with a `--format` template, Docker's default table, or JSON lines;
/// `header` names a field's column as the command's table does.
pub fn print_rows(
    rows: &[Value],
    format: Option<&str>,
    default: &str,
    header: impl Fn(&str) -> String,
) -> Result<()> {
    let fmt = match format {
        None | Some("") | Some("table") => default,
        Some("json") => "{{json .}}",
        Some(f) => f,
    };
    let t = template::Template::parse(fmt).map_err(|e| Failure::new(1, e.to_string()))?;
    let mut lines = Vec::new();
    if t.table {
        lines.push(t.header(header));
    }
    for r in rows {
        lines.push(t.render(r).map_err(|e| Failure::new(1, e.to_string()))?);
    }
    if t.table {
        print!("{}", template::align(&lines));
    } else {
        for l in lines {
            println!("{l}");
        }
    }
    Ok(())
}

/// Docker's `inspect` output: the objects as a JSON array indented by four spaces, or
/// each through `--format`.
pub fn print_inspect(found: &[Value], format: Option<&str>) -> Result<()> {
    match format {
        Some(f) if !f.is_empty() && f != "json" => {
            let t = template::Template::parse(f).map_err(|e| Failure::new(1, e.to_string()))?;
            for v in found {
                println!(
                    "{}",
                    t.render(v).map_err(|e| Failure::new(1, e.to_string()))?
                );
            }
        }
        _ => {
            let mut out = Vec::new();
            let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
            let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
            serde::Serialize::serialize(&found, &mut ser)?;
            println!("{}", String::from_utf8_lossy(&out));
        }
    }
    Ok(())
}
