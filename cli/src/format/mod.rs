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
    header: fn(&str) -> String,
) -> Result<()> {
    let fmt = match format {
        None | Some("table") => default,
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
