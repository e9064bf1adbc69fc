//! The part of Go's text/template that `--format` needs: `{{.Field}}`, nested
//! `{{.Config.Cmd}}`, `{{json .}}` and `{{json .Field}}`, `{{upper ...}}`, `{{lower ...}}`,
//! `{{join .List "sep"}}`, and Docker's `table` prefix, over a JSON object.

use serde_json::Value;

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("template parsing error: {0}")]
pub struct TemplateError(pub String);

#[derive(Debug, Clone)]
enum Piece {
    Text(String),
    Expr(Vec<String>),
}

/// A parsed `--format` string.
#[derive(Debug, Clone)]
pub struct Template {
    pieces: Vec<Piece>,
    /// `table ...`: print a header row and align the columns.
    pub table: bool,
}

impl Template {
    pub fn parse(src: &str) -> Result<Template, TemplateError> {
        let (table, src) = match src.strip_prefix("table") {
            Some(rest) => (true, rest.trim_start()),
            None => (false, src),
        };
        // Docker turns the two-character escapes into the characters.
        let src = src.replace("\\t", "\t").replace("\\n", "\n");
        let mut pieces = Vec::new();
        let mut rest = src.as_str();
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                pieces.push(Piece::Text(rest[..start].to_string()));
            }
            let end = rest[start..]
                .find("}}")
                .ok_or_else(|| TemplateError(format!("unclosed action in {src:?}")))?;
            let inner = rest[start + 2..start + end].trim().trim_matches('-').trim();
            pieces.push(Piece::Expr(words(inner)?));
            rest = &rest[start + end + 2..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_string()));
        }
        Ok(Template { pieces, table })
    }

    /// The header row of a table: each field's name as `header` gives it.
    pub fn header(&self, header: impl Fn(&str) -> String) -> String {
        self.pieces
            .iter()
            .map(|p| match p {
                Piece::Text(t) => t.clone(),
                Piece::Expr(w) => w
                    .iter()
                    .rev()
                    .find(|x| x.starts_with('.'))
                    .map(|f| header(f.trim_start_matches('.')))
                    .unwrap_or_default(),
            })
            .collect()
    }

    pub fn render(&self, v: &Value) -> Result<String, TemplateError> {
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Expr(words) => out.push_str(&eval(words, v)?),
            }
        }
        Ok(out)
    }
}

fn words(s: &str) -> Result<Vec<String>, TemplateError> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '"' {
            chars.next();
            let mut w = String::new();
            loop {
                match chars.next() {
                    Some('"') => break,
                    Some('\\') => {
                        if let Some(n) = chars.next() {
                            w.push(match n {
                                'n' => '\n',
                                't' => '\t',
                                o => o,
                            });
                        }
                    }
                    Some(ch) => w.push(ch),
                    None => return Err(TemplateError(format!("unterminated string in {s:?}"))),
                }
            }
            out.push(format!("\"{w}"));
        } else {
            let mut w = String::new();
            while let Some(&ch) = chars.peek() {
                if ch.is_whitespace() {
                    break;
                }
                w.push(ch);
                chars.next();
            }
            out.push(w);
        }
    }
    if out.is_empty() {
        return Err(TemplateError("missing value for command".into()));
    }
    Ok(out)
}

fn lookup<'a>(path: &str, v: &'a Value) -> Option<&'a Value> {
    if path == "." {
        return Some(v);
    }
    path.trim_start_matches('.')
        .split('.')
        .try_fold(v, |cur, key| cur.get(key))
}

fn arg(w: &str, v: &Value) -> Result<Value, TemplateError> {
    if let Some(s) = w.strip_prefix('"') {
        return Ok(Value::String(s.to_string()));
    }
    if w.starts_with('.') {
        return Ok(lookup(w, v).cloned().unwrap_or(Value::Null));
    }
    Err(TemplateError(format!("function {w:?} not defined")))
}

/// As Go prints a value: strings bare, nothing for null, lists as `[a b]`, maps as `map[k:v]`.
pub fn plain(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(a) => format!("[{}]", a.iter().map(plain).collect::<Vec<_>>().join(" ")),
        Value::Object(m) => format!(
            "map[{}]",
            m.iter()
                .map(|(k, x)| format!("{k}:{}", plain(x)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        other => other.to_string(),
    }
}

fn eval(words: &[String], v: &Value) -> Result<String, TemplateError> {
    let (f, args) = words.split_first().expect("words are never empty");
    match f.as_str() {
        "json" => Ok(serde_json::to_string(&arg(one(args)?, v)?).unwrap_or_default()),
        "upper" => Ok(plain(&arg(one(args)?, v)?).to_uppercase()),
        "lower" => Ok(plain(&arg(one(args)?, v)?).to_lowercase()),
        "join" => {
            let [list, sep] = args else {
                return Err(TemplateError("join takes a list and a separator".into()));
            };
            let sep = plain(&arg(sep, v)?);
            Ok(match arg(list, v)? {
                Value::Array(a) => a.iter().map(plain).collect::<Vec<_>>().join(&sep),
                other => plain(&other),
            })
        }
        _ if f.starts_with('.') && args.is_empty() => Ok(plain(&arg(f, v)?)),
        _ => Err(TemplateError(format!("function {f:?} not defined"))),
    }
}

fn one(args: &[String]) -> Result<&str, TemplateError> {
    match args {
        [a] => Ok(a),
        _ => Err(TemplateError("wrong number of args".into())),
    }
}

/// Align tab-separated cells into columns three spaces apart, as Docker's tabwriter does
/// (`tabwriter.NewWriter(out, 10, 1, 3, ' ', 0)`: a column is at least 10 wide, padding
/// included, so `DRIVER    local` lines up as in Docker).
pub fn align(rows: &[String]) -> String {
    let cells: Vec<Vec<&str>> = rows.iter().map(|r| r.split('\t').collect()).collect();
    let cols = cells.iter().map(Vec::len).max().unwrap_or(0);
    let mut width = vec![7; cols];
    for r in &cells {
        for (i, c) in r.iter().enumerate().take(r.len().saturating_sub(1)) {
            width[i] = width[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in &cells {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i + 1 < r.len() {
                line.push_str(&format!("{c:<w$}   ", w = width[i]));
            } else {
                line.push_str(c);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_fields_json_and_functions() {
        let v = json!({"ID": "abc", "Config": {"Cmd": ["sh", "-c"]}, "Tags": ["a", "b"]});
        let t = |s: &str| Template::parse(s).unwrap().render(&v).unwrap();
        assert_eq!(t("{{.ID}}"), "abc");
        assert_eq!(t("{{.Config.Cmd}}"), "[sh -c]");
        assert_eq!(t("{{json .Config.Cmd}}"), r#"["sh","-c"]"#);
        assert_eq!(t(r#"{{join .Tags ", "}}"#), "a, b");
        assert_eq!(t("{{upper .ID}}\\t{{.Missing}}"), "ABC\t");
        assert!(Template::parse("{{.ID").is_err());
        assert!(Template::parse("{{nosuch .ID}}")
            .unwrap()
            .render(&v)
            .is_err());
    }

    #[test]
    fn tables_align_like_tabwriter() {
        let out = align(&["A\tBB\tC".into(), "AAAA\tB\tC".into()]);
        assert_eq!(out, "A         BB        C\nAAAA      B         C\n");
        let out = align(&["NAME\tDRIVER".into(), "a-long-name\tbridge".into()]);
        assert_eq!(out, "NAME          DRIVER\na-long-name   bridge\n");
    }
}
