//! Parser directives: `# syntax=...`, `# escape=...` and `# check=...` comments, which count
//! only in the unbroken run of directive comments at the very top of the file. The first
//! line that is not a directive (an ordinary comment, a blank line, an instruction) ends
//! them, and a directive-looking comment after that is just a comment.

use super::error::ErrorKind;

/// The directives a Dockerfile declared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directives {
    /// The escape character: `\` unless `# escape=` said `` ` ``.
    pub escape: char,
    /// The frontend image of `# syntax=`; Berth records it and builds with its own parser.
    pub syntax: Option<String>,
    /// The lint settings of `# check=`, recorded only.
    pub check: Option<String>,
}

impl Default for Directives {
    fn default() -> Directives {
        Directives {
            escape: '\\',
            syntax: None,
            check: None,
        }
    }
}

/// Reads the directives from the top of the file. Returns them and how many lines they took
/// (those lines are comments, so the instruction parser skips them anyway). Errors carry the
/// 1-based line.
pub fn parse(lines: &[&str]) -> Result<(Directives, usize), (usize, ErrorKind)> {
    let mut directives = Directives::default();
    let mut seen: Vec<String> = Vec::new();
    let mut count = 0;
    for (i, line) in lines.iter().enumerate() {
        let Some((name, value)) = directive(line) else {
            break;
        };
        let lower = name.to_ascii_lowercase();
        if seen.contains(&lower) {
            return Err((
                i + 1,
                ErrorKind::Directive(format!("only one {lower} parser directive can be used")),
            ));
        }
        match lower.as_str() {
            "escape" => {
                directives.escape = match value {
                    "\\" => '\\',
                    "`" => '`',
                    _ => {
                        return Err((
                            i + 1,
                            ErrorKind::Directive(format!(
                                "invalid escape token '{value}' does not match ` or \\"
                            )),
                        ))
                    }
                }
            }
            "syntax" => directives.syntax = Some(value.to_string()),
            "check" => directives.check = Some(value.to_string()),
            // Unknown directives are still directives (BuildKit ignores them), so they do
            // not end the run.
            _ => {}
        }
        seen.push(lower);
        count = i + 1;
    }
    Ok((directives, count))
}

/// `# name=value` with a name of letters and digits starting with a letter.
fn directive(line: &str) -> Option<(&str, &str)> {
    let rest = line.trim_start().strip_prefix('#')?;
    let (name, value) = rest.split_once('=')?;
    let name = name.trim();
    let mut chars = name.chars();
    if !chars.next()?.is_ascii_alphabetic() || !chars.all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    Some((name, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(s: &str) -> Vec<&str> {
        s.lines().collect()
    }

    #[test]
    fn escape_and_syntax() {
        let (d, n) = parse(&lines("# syntax=docker/dockerfile:1\n#escape=`\nFROM x")).unwrap();
        assert_eq!(d.escape, '`');
        assert_eq!(d.syntax.as_deref(), Some("docker/dockerfile:1"));
        assert_eq!(n, 2);
    }

    #[test]
    fn only_at_the_top() {
        let (d, _) = parse(&lines("# a comment\n# escape=`\nFROM x")).unwrap();
        assert_eq!(d.escape, '\\');
        let (d, _) = parse(&lines("\n# escape=`\nFROM x")).unwrap();
        assert_eq!(d.escape, '\\');
        let (d, _) = parse(&lines("FROM x\n# escape=`")).unwrap();
        assert_eq!(d.escape, '\\');
        // An unknown directive does not end the run.
        let (d, _) = parse(&lines("# foo=bar\n# escape = `")).unwrap();
        assert_eq!(d.escape, '`');
    }

    #[test]
    fn bad_directives() {
        let (line, e) = parse(&lines("# escape=x")).unwrap_err();
        assert_eq!(line, 1);
        assert_eq!(
            e.to_string(),
            "invalid escape token 'x' does not match ` or \\"
        );
        let (line, e) = parse(&lines("# escape=`\n# ESCAPE=\\")).unwrap_err();
        assert_eq!(line, 2);
        assert_eq!(
            e.to_string(),
            "only one escape parser directive can be used"
        );
    }
}
