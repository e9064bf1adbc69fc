//! `.dockerignore`: which paths of the build context the builder never sees, with the
//! semantics of moby's `patternmatcher`:
//!
//! - one pattern a line; a line starting with `#` is a comment; blank lines are skipped;
//!   surrounding whitespace is trimmed;
//! - a pattern is cleaned like a path (`./a//b/` is `a/b`, `a/../b` is `b`), and a leading
//!   `/` is dropped, since every pattern is relative to the context root;
//! - `*` matches within one path segment, `?` one character of it, `[a-z]`/`[^a]` a class,
//!   `\` escapes; `**` matches any number of segments (`**/x`, `a/**/b`, `a/**`);
//! - a pattern that matches a directory matches everything under it;
//! - `!pattern` re-includes what earlier patterns excluded; the last pattern that matches
//!   decides.
//!
//! Docker still reads the Dockerfile and `.dockerignore` themselves when they are excluded;
//! only COPY and ADD don't see them. That is the executor's to honour.

/// A malformed pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error(".dockerignore:{line}: illegal exclusion pattern: \"!\"")]
    LoneExclamation { line: usize },
    #[error(
        ".dockerignore:{line}: syntax error in pattern {pattern:?}: unterminated character class"
    )]
    BadClass { line: usize, pattern: String },
}

/// The patterns of a `.dockerignore`, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DockerIgnore {
    patterns: Vec<Pattern>,
}

/// One cleaned pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    /// The cleaned pattern, without its `!`.
    pub text: String,
    /// A `!` pattern: it re-includes.
    pub exclusion: bool,
    tokens: Vec<Token>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(char),
    /// `*`: any run of characters other than `/`.
    Star,
    /// `?`: one character other than `/`.
    Question,
    /// `[...]`: one character in (or, negated, not in) the ranges.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
    /// `**/` or `**` inside a pattern: nothing, or anything ending in `/`.
    AnyDirs,
    /// `**` at the end: anything at all.
    AnyRest,
    /// A leading `**` in an otherwise literal pattern: any run of characters, `/` included
    /// (moby matches such patterns as suffixes, so `**foo` matches `barfoo`).
    Anything,
}

impl DockerIgnore {
    /// Parses the text of a `.dockerignore`.
    pub fn parse(text: &str) -> Result<DockerIgnore, PatternError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut patterns = Vec::new();
        for (i, line) in text.lines().enumerate() {
            // A comment only when `#` is the very first character, as in moby.
            if line.starts_with('#') {
                continue;
            }
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let (exclusion, body) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            if exclusion && body.is_empty() {
                return Err(PatternError::LoneExclamation { line: i + 1 });
            }
            let mut text = clean(body);
            if text.len() > 1 {
                if let Some(rest) = text.strip_prefix('/') {
                    text = rest.to_string();
                }
            }
            let tokens = compile(&text).ok_or_else(|| PatternError::BadClass {
                line: i + 1,
                pattern: text.clone(),
            })?;
            patterns.push(Pattern {
                text,
                exclusion,
                tokens,
            });
        }
        Ok(DockerIgnore { patterns })
    }

    /// The patterns, cleaned, in file order.
    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }

    /// Whether `path` (relative to the context root, `/`-separated) is excluded from the
    /// context: by a pattern matching it or one of its parent directories, the last matching
    /// pattern deciding.
    pub fn is_excluded(&self, path: &str) -> bool {
        let path = clean(path);
        let path = path.trim_start_matches('/');
        let parents: Vec<&str> = path.match_indices('/').map(|(i, _)| &path[..i]).collect();
        let mut excluded = false;
        for pattern in &self.patterns {
            // An inclusion cannot change an excluded path, nor an exception a kept one.
            if pattern.exclusion != excluded {
                continue;
            }
            if pattern.matches(path) || parents.iter().any(|p| pattern.matches(p)) {
                excluded = !pattern.exclusion;
            }
        }
        excluded
    }

    /// Whether a walk of the context must still descend into the excluded directory `dir`:
    /// true when some `!` pattern could match a path below it, so that
    /// `node_modules` + `!node_modules/keep` still finds `keep`.
    pub fn may_include_under(&self, dir: &str) -> bool {
        let dir = clean(dir);
        let prefix = format!("{}/", dir.trim_start_matches('/'));
        let chars: Vec<char> = prefix.chars().collect();
        self.patterns
            .iter()
            .any(|p| p.exclusion && prefix_match(&p.tokens, &chars))
    }
}

impl Pattern {
    /// Whether the pattern matches this exact path (not its parents).
    pub fn matches(&self, path: &str) -> bool {
        let chars: Vec<char> = path.chars().collect();
        full_match(&self.tokens, &chars)
    }
}

/// Go's `filepath.Clean` for `/`-separated paths.
fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => match parts.last() {
                Some(&last) if last != ".." => {
                    parts.pop();
                }
                _ if rooted => {}
                _ => parts.push(".."),
            },
            p => parts.push(p),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// Compiles a pattern; `None` for an unterminated `[`.
fn compile(pattern: &str) -> Option<Vec<Token>> {
    if let Some(rest) = pattern.strip_prefix("**") {
        if !rest.contains(['*', '?', '[', ']', '\\']) {
            let (first, literal) = match rest.strip_prefix('/') {
                _ if rest.is_empty() => (Token::AnyRest, ""),
                Some(after) => (Token::AnyDirs, after),
                None => (Token::Anything, rest),
            };
            return Some(
                std::iter::once(first)
                    .chain(literal.chars().map(Token::Literal))
                    .collect(),
            );
        }
    }
    let chars: Vec<char> = pattern.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        match c {
            '*' if chars.get(i) == Some(&'*') => {
                i += 1;
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                tokens.push(match i == chars.len() {
                    true => Token::AnyRest,
                    false => Token::AnyDirs,
                });
            }
            '*' => tokens.push(Token::Star),
            '?' => tokens.push(Token::Question),
            '\\' => {
                tokens.push(Token::Literal(chars.get(i).copied().unwrap_or('\\')));
                i += 1;
            }
            '[' => {
                // Only `^` negates: moby hands classes to Go's regexp, where `[!a]` is
                // the class of `!` and `a`.
                let negated = chars.get(i) == Some(&'^');
                if negated {
                    i += 1;
                }
                let mut ranges = Vec::new();
                loop {
                    let mut lo = *chars.get(i)?;
                    i += 1;
                    if lo == ']' && !ranges.is_empty() {
                        break;
                    }
                    if lo == '\\' {
                        lo = *chars.get(i)?;
                        i += 1;
                    }
                    let mut hi = lo;
                    if chars.get(i) == Some(&'-') && chars.get(i + 1).is_some_and(|&c| c != ']') {
                        hi = chars[i + 1];
                        i += 2;
                        if hi == '\\' {
                            hi = *chars.get(i)?;
                            i += 1;
                        }
                    }
                    ranges.push((lo, hi));
                }
                tokens.push(Token::Class { negated, ranges });
            }
            c => tokens.push(Token::Literal(c)),
        }
    }
    Some(tokens)
}

fn one(token: &Token, c: char) -> bool {
    match token {
        Token::Literal(l) => *l == c,
        Token::Question => c != '/',
        Token::Class { negated, ranges } => {
            ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
        }
        _ => false,
    }
}

/// Whether the tokens match all of `s`.
fn full_match(tokens: &[Token], s: &[char]) -> bool {
    let Some((first, rest)) = tokens.split_first() else {
        return s.is_empty();
    };
    match first {
        Token::AnyRest => true,
        Token::Star => {
            let run = s.iter().take_while(|&&c| c != '/').count();
            (0..=run).any(|n| full_match(rest, &s[n..]))
        }
        Token::AnyDirs => {
            full_match(rest, s)
                || (0..s.len()).any(|i| s[i] == '/' && full_match(rest, &s[i + 1..]))
        }
        Token::Anything => (0..=s.len()).any(|i| full_match(rest, &s[i..])),
        t => s.first().is_some_and(|&c| one(t, c)) && full_match(rest, &s[1..]),
    }
}

/// Whether `s` is the start of something the tokens match.
fn prefix_match(tokens: &[Token], s: &[char]) -> bool {
    if s.is_empty() {
        return true;
    }
    let Some((first, rest)) = tokens.split_first() else {
        return false;
    };
    match first {
        Token::AnyRest | Token::AnyDirs | Token::Anything => true,
        Token::Star => {
            let run = s.iter().take_while(|&&c| c != '/').count();
            (0..=run).any(|n| prefix_match(rest, &s[n..]))
        }
        t => one(t, s[0]) && prefix_match(rest, &s[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ignore(text: &str) -> DockerIgnore {
        DockerIgnore::parse(text).unwrap()
    }

    #[test]
    fn getting_started_ignore() {
        let d = ignore("node_modules\n");
        assert!(d.is_excluded("node_modules"));
        assert!(d.is_excluded("node_modules/express/index.js"));
        assert!(!d.is_excluded("src/node_modules"));
        assert!(!d.is_excluded("src/index.js"));
        assert!(!d.is_excluded("package.json"));
    }

    #[test]
    fn comments_blank_and_cleaning() {
        let d = ignore("# comment\n\n  /tmp/  \n./build//out/\na/../secret\n #not-a-comment\n");
        let texts: Vec<&str> = d.patterns().iter().map(|p| p.text.as_str()).collect();
        assert_eq!(texts, ["tmp", "build/out", "secret", "#not-a-comment"]);
        assert!(d.is_excluded("tmp/x"));
        assert!(d.is_excluded("build/out/bin"));
        assert!(!d.is_excluded("build/other"));
        assert!(d.is_excluded("./secret"));
        assert!(d.is_excluded("#not-a-comment"));
    }

    #[test]
    fn stars() {
        let d = ignore("*.md\n*/temp*\ntemp?\n");
        assert!(d.is_excluded("README.md"));
        assert!(!d.is_excluded("docs/README.md"));
        assert!(d.is_excluded("somedir/temporary.txt"));
        assert!(d.is_excluded("somedir/temp"));
        assert!(!d.is_excluded("a/b/temp.txt"));
        assert!(d.is_excluded("tempa"));
        assert!(!d.is_excluded("temp"));
        assert!(!d.is_excluded("tempab"));
    }

    #[test]
    fn double_stars() {
        let d = ignore("**/*.go\n");
        assert!(d.is_excluded("main.go"));
        assert!(d.is_excluded("a/b/c.go"));
        assert!(!d.is_excluded("a/b/c.rs"));
        let d = ignore("a/**/b\n");
        assert!(d.is_excluded("a/b"));
        assert!(d.is_excluded("a/x/y/b"));
        assert!(d.is_excluded("a/x/b/file"));
        assert!(!d.is_excluded("a/xb"));
        let d = ignore("dir/**\n");
        assert!(d.is_excluded("dir/x"));
        assert!(d.is_excluded("dir/x/y"));
        assert!(!d.is_excluded("dir"));
        let d = ignore("**\n");
        assert!(d.is_excluded("anything/at/all"));
    }

    #[test]
    fn exceptions_last_match_wins() {
        let d = ignore("*.md\n!README.md\n");
        assert!(d.is_excluded("CHANGES.md"));
        assert!(!d.is_excluded("README.md"));
        let d = ignore("*.md\n!README*.md\nREADME-secret.md\n");
        assert!(!d.is_excluded("README-public.md"));
        assert!(d.is_excluded("README-secret.md"));
        // A re-inclusion inside an excluded directory.
        let d = ignore("node_modules\n!node_modules/keep\n");
        assert!(d.is_excluded("node_modules/drop"));
        assert!(!d.is_excluded("node_modules/keep"));
        assert!(!d.is_excluded("node_modules/keep/inner"));
        assert!(d.may_include_under("node_modules"));
        assert!(!d.may_include_under("other"));
        // Everything, then back the Dockerfile and src.
        let d = ignore("*\n!src\n!Dockerfile\n");
        assert!(d.is_excluded("secret.txt"));
        assert!(!d.is_excluded("src/main.rs"));
        assert!(!d.is_excluded("Dockerfile"));
    }

    #[test]
    fn descend_decisions() {
        let d = ignore("build\n!build/**/*.txt\n");
        assert!(d.may_include_under("build"));
        assert!(d.may_include_under("build/deep/er"));
        let d = ignore("a\n!b/keep\n");
        assert!(!d.may_include_under("a"));
        let d = ignore("a\n!*/keep\n");
        assert!(d.may_include_under("a"));
        assert!(!d.may_include_under("a/b"));
        let d = ignore("a\n");
        assert!(!d.may_include_under("a"));
    }

    #[test]
    fn leading_double_star_is_a_suffix() {
        let d = ignore("**/foo\n");
        assert!(d.is_excluded("foo"));
        assert!(d.is_excluded("a/b/foo"));
        assert!(!d.is_excluded("afoo"));
        let d = ignore("**foo\n");
        assert!(d.is_excluded("barfoo"));
        assert!(d.is_excluded("a/barfoo"));
    }

    #[test]
    fn classes_and_escapes() {
        let d = ignore("[!a]b\n");
        assert!(d.is_excluded("!b"));
        assert!(d.is_excluded("ab"));
        assert!(!d.is_excluded("cb"));
        let d = ignore("file[0-9].txt\n[^x]y\n\\*literal\n");
        assert!(d.is_excluded("file7.txt"));
        assert!(!d.is_excluded("filex.txt"));
        assert!(d.is_excluded("ay"));
        assert!(!d.is_excluded("xy"));
        assert!(d.is_excluded("*literal"));
        assert!(!d.is_excluded("aliteral"));
    }

    #[test]
    fn errors() {
        assert_eq!(
            DockerIgnore::parse("a\n!\n").unwrap_err().to_string(),
            ".dockerignore:2: illegal exclusion pattern: \"!\""
        );
        assert!(DockerIgnore::parse("[abc\n").is_err());
    }

    #[test]
    fn path_cleaning() {
        assert_eq!(clean("./a//b/"), "a/b");
        assert_eq!(clean("a/../../b"), "../b");
        assert_eq!(clean("/../a"), "/a");
        assert_eq!(clean(""), ".");
    }
}
