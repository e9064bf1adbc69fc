//! Lines into instruction nodes: the layer of BuildKit's `parser` package. It joins
//! continuation lines, drops comments and blank lines (also inside a continuation, as Docker
//! does), splits off the instruction keyword and its leading `--flags`, and reads the bodies
//! of heredocs (`<<EOF`) for RUN, COPY and ADD. What the arguments mean is for
//! [`super::instructions`].

use super::directives::{self, Directives};
use super::error::ErrorKind;
use super::words;

/// One instruction as written, before its arguments are interpreted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The keyword as written (`run`, `RUN`...).
    pub keyword: String,
    /// First and last line of the instruction, 1-based, heredoc bodies included.
    pub line: usize,
    pub end_line: usize,
    /// The leading `--name=value` or `--name` flags, without the dashes, quotes removed.
    pub flags: Vec<String>,
    /// The arguments after the flags, untouched.
    pub rest: String,
    pub heredocs: Vec<Heredoc>,
    /// The whole instruction on one line, continuations joined.
    pub text: String,
}

/// A heredoc: `<<EOF` (expanded), `<<'EOF'` or `<<"EOF"` (not expanded), `<<-EOF` (leading
/// tabs stripped from the body), optionally preceded by a file descriptor (`3<<EOF`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    pub name: String,
    /// The body, each line ending in `\n`, tabs already stripped for `<<-`.
    pub content: String,
    /// Whether the builder substitutes variables in the body (the delimiter was unquoted).
    pub expand: bool,
    pub chomp: bool,
    pub fd: Option<u32>,
}

/// Parses a whole file into its directives and instruction nodes. Errors carry the line.
pub fn parse(text: &str) -> Result<(Directives, Vec<Node>), (usize, ErrorKind)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    let (directives, _) = directives::parse(&lines)?;
    let escape = directives.escape;
    let mut nodes = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let first = lines[i].trim_start();
        let start = i + 1;
        i += 1;
        if first.is_empty() || first.starts_with('#') {
            continue;
        }
        let (mut line, mut ended) = trim_continuation(first, escape);
        while !ended && i < lines.len() {
            let next = lines[i];
            i += 1;
            let trimmed = next.trim_start();
            // Comments and blank lines inside a continuation are skipped, not ends.
            if trimmed.starts_with('#') || trimmed.trim().is_empty() {
                continue;
            }
            let (part, done) = trim_continuation(next, escape);
            line.push_str(&part);
            ended = done;
        }
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (keyword, args) = match line.split_once(char::is_whitespace) {
            Some((k, a)) => (k, a.trim_start()),
            None => (line, ""),
        };
        let (flags, rest) = extract_flags(args);
        let mut heredocs = Vec::new();
        if matches!(
            keyword.to_ascii_lowercase().as_str(),
            "run" | "copy" | "add"
        ) {
            for marker in heredoc_markers(line) {
                let mut content = String::new();
                let mut terminated = false;
                while i < lines.len() {
                    let body = lines[i];
                    i += 1;
                    let candidate = match marker.chomp {
                        true => body.trim_start_matches('\t'),
                        false => body,
                    };
                    if candidate == marker.name {
                        terminated = true;
                        break;
                    }
                    content.push_str(candidate);
                    content.push('\n');
                }
                if !terminated {
                    return Err((start, ErrorKind::UnterminatedHeredoc(marker.name)));
                }
                heredocs.push(Heredoc { content, ..marker });
            }
        }
        nodes.push(Node {
            keyword: keyword.to_string(),
            line: start,
            end_line: i,
            flags,
            rest: rest.to_string(),
            heredocs,
            text: line.to_string(),
        });
    }
    Ok((directives, nodes))
}

/// Parses one instruction line on its own, as for an ONBUILD trigger stored in an image's
/// config. Heredocs are not read (the trigger is a single line).
pub fn parse_line(line: &str) -> Option<Node> {
    let line = line.trim();
    if line.is_empty() {
        return None;
    }
    let (keyword, args) = match line.split_once(char::is_whitespace) {
        Some((k, a)) => (k, a.trim_start()),
        None => (line, ""),
    };
    let (flags, rest) = extract_flags(args);
    Some(Node {
        keyword: keyword.to_string(),
        line: 1,
        end_line: 1,
        flags,
        rest: rest.to_string(),
        heredocs: Vec::new(),
        text: line.to_string(),
    })
}

/// Removes a trailing escape character (and the blanks after it); says whether the line ends
/// the instruction. An escaped escape character (`\\` at the end) does not continue the
/// line, as in BuildKit.
fn trim_continuation(line: &str, escape: char) -> (String, bool) {
    let trimmed = line.trim_end_matches([' ', '\t']);
    match trimmed.strip_suffix(escape) {
        Some(body) if !body.ends_with(escape) => (body.to_string(), false),
        _ => (line.to_string(), true),
    }
}

/// Splits the leading `--flag[=value]` words off the arguments. A word not starting with `--`
/// ends the flags, and so does a bare `--`. Quotes in flags are removed and a backslash
/// escapes the next character (BuildKit's `extractBuilderFlags`).
fn extract_flags(args: &str) -> (Vec<String>, &str) {
    let mut flags = Vec::new();
    let mut rest = args.trim_start();
    while rest.starts_with("--") {
        let mut word = String::new();
        let mut quote: Option<char> = None;
        let mut end = rest.len();
        let mut chars = rest.char_indices();
        while let Some((pos, c)) = chars.next() {
            match quote {
                None if c.is_whitespace() => {
                    end = pos;
                    break;
                }
                None if c == '\'' || c == '"' => quote = Some(c),
                Some(q) if c == q => quote = None,
                _ if c == '\\' => {
                    if let Some((_, n)) = chars.next() {
                        word.push(n);
                    }
                }
                _ => word.push(c),
            }
        }
        rest = rest[end..].trim_start();
        if word == "--" {
            break;
        }
        flags.push(word[2..].to_string());
    }
    (flags, rest)
}

/// The heredoc markers of a RUN/COPY/ADD line, in order. Quoted words are not markers
/// (`echo '<<EOF'`), and neither is a here-string (`<<<`).
fn heredoc_markers(line: &str) -> Vec<Heredoc> {
    words::split_raw_words(line, '\\')
        .iter()
        .filter_map(|w| heredoc_marker(w))
        .collect()
}

/// Parses one word as a heredoc marker: `[fd]<<[-]name` where name may be quoted.
pub fn heredoc_marker(word: &str) -> Option<Heredoc> {
    let digits = word.len() - word.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let fd = word[..digits].parse().ok();
    let rest = word[digits..].strip_prefix("<<")?;
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    if rest.is_empty() || rest.contains('<') {
        return None;
    }
    let name = words::expand_word(rest, '\\', &|_| None).ok()?;
    if name.is_empty() || name.contains(char::is_whitespace) {
        return None;
    }
    Some(Heredoc {
        name,
        content: String::new(),
        expand: !rest.contains(['\'', '"']),
        chomp,
        fd,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(text: &str) -> Vec<Node> {
        parse(text).unwrap().1
    }

    #[test]
    fn continuation_comments_and_blank_lines() {
        let n =
            nodes("FROM busybox\n\n# comment\nRUN echo a \\\n  # inside\n\n    && echo b\nCMD x\n");
        assert_eq!(n.len(), 3);
        assert_eq!(n[1].keyword, "RUN");
        assert_eq!(n[1].rest, "echo a     && echo b");
        assert_eq!((n[1].line, n[1].end_line), (4, 7));
        assert_eq!(n[2].line, 8);
    }

    #[test]
    fn escape_directive_changes_continuation() {
        let n = nodes("# escape=`\nFROM windows\nRUN dir C:\\ `\n  /b\n");
        assert_eq!(n[1].rest, "dir C:\\   /b");
        // Without the directive, the backslash continues the line.
        let n = nodes("FROM windows\nRUN dir C:\\\n  /b\n");
        assert_eq!(n[1].rest, "dir C:  /b");
    }

    #[test]
    fn escaped_escape_ends_the_line() {
        let n = nodes("FROM a\nRUN echo a\\\\\nCMD b\n");
        assert_eq!(n.len(), 3);
        assert_eq!(n[1].rest, "echo a\\\\");
        let n = nodes("FROM a\nRUN echo \\\n\\\n  b\n");
        assert_eq!(n[1].rest, "echo   b");
    }

    #[test]
    fn continuation_at_end_of_file() {
        let n = nodes("FROM a\nRUN echo \\");
        assert_eq!(n[1].rest, "echo");
    }

    #[test]
    fn flags() {
        let n = nodes("COPY --from=build --chown=\"1:1\" --link a b\nRUN -- --x");
        assert_eq!(n[0].flags, ["from=build", "chown=1:1", "link"]);
        assert_eq!(n[0].rest, "a b");
        assert!(n[1].flags.is_empty());
        assert_eq!(n[1].rest, "--x");
    }

    #[test]
    fn heredocs() {
        let n = nodes(
            "FROM a\nRUN <<EOF\necho $HOME\n\n  indented\nEOF\nCOPY <<-'END' 2<<x /dst\n\t\tkept\n\tEND\nline\nx\nCMD y\n",
        );
        assert_eq!(n.len(), 4);
        assert_eq!(n[1].heredocs.len(), 1);
        let h = &n[1].heredocs[0];
        assert_eq!(h.name, "EOF");
        assert_eq!(h.content, "echo $HOME\n\n  indented\n");
        assert!(h.expand && !h.chomp);
        assert_eq!((n[1].line, n[1].end_line), (2, 6));
        let docs = &n[2].heredocs;
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].content, "kept\n");
        assert!(!docs[0].expand && docs[0].chomp);
        assert_eq!(docs[1].fd, Some(2));
        assert_eq!(docs[1].content, "line\n");
        assert_eq!(n[3].line, 12);
    }

    #[test]
    fn not_heredocs() {
        let n = nodes("FROM a\nRUN echo '<<EOF' <<<here\nENV A <<B\n");
        assert!(n[1].heredocs.is_empty());
        assert!(n[2].heredocs.is_empty());
    }

    #[test]
    fn unterminated_heredoc() {
        let (line, e) = parse("FROM a\nRUN <<EOF\nno end\n").unwrap_err();
        assert_eq!(line, 2);
        assert_eq!(e.to_string(), "unterminated heredoc EOF");
    }

    #[test]
    fn bom_and_crlf() {
        let n = nodes("\u{feff}FROM a\r\nRUN b \\\r\n c\r\n");
        assert_eq!(n[0].keyword, "FROM");
        assert_eq!(n[1].rest, "b  c");
    }
}
