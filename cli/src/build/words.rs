//! Docker's shell-word lexer: the small subset of POSIX shell that the builder itself applies
//! to the arguments of ENV, ARG, ADD, COPY, EXPOSE, FROM, LABEL, STOPSIGNAL, USER, VOLUME and
//! WORKDIR (RUN, CMD and ENTRYPOINT are left to the container's shell).
//!
//! What it does, as BuildKit's `shell.Lex`:
//! - `$name`, `${name}`, `${name:-word}`, `${name-word}`, `${name:+word}`, `${name+word}`,
//!   `${name:?message}`, `${name?message}`; an unset name expands to nothing;
//! - single quotes keep everything literal; double quotes keep spaces but expand `$`, and there
//!   the escape character only escapes `"`, `$` and itself;
//! - outside quotes the escape character (`\`, or the one of `# escape=`) makes the next
//!   character literal; one at the very end is dropped;
//! - [`expand_words`] splits on unquoted whitespace, including whitespace that comes out of an
//!   unquoted expansion, and keeps `""` as an empty word.

/// A lookup of a variable by name; `None` when it is unset.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// A malformed word, with BuildKit's wording.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    #[error("unexpected end of statement while looking for matching single-quote")]
    UnterminatedSingleQuote,
    #[error("unexpected end of statement while looking for matching double-quote")]
    UnterminatedDoubleQuote,
    #[error("syntax error: missing '}}'")]
    MissingBrace,
    #[error("syntax error: bad substitution")]
    BadSubstitution,
    #[error("unsupported modifier ({0}) in substitution")]
    UnsupportedModifier(String),
    #[error("syntax error: missing '/' in ${{}}")]
    MissingSlash,
    /// `${name:?message}` on an unset or empty variable.
    #[error("{name}: {message}")]
    Required { name: String, message: String },
}

/// Expands one word: quotes removed, escapes applied, variables substituted, no splitting.
pub fn expand_word(word: &str, escape: char, env: Lookup) -> Result<String, ExpandError> {
    Lexer::new(word, escape, env)
        .process(None, false)
        .map(|(text, _)| text)
}

/// Expands a line into words, splitting on unquoted whitespace (`a "b c" $X` with `X="d e"`
/// gives `a`, `b c`, `d`, `e`).
pub fn expand_words(text: &str, escape: char, env: Lookup) -> Result<Vec<String>, ExpandError> {
    Lexer::new(text, escape, env)
        .process(None, false)
        .map(|(_, words)| words)
}

/// Substitutes variables in a heredoc body, as a shell does for an unquoted heredoc delimiter:
/// quotes stay as they are, and the escape character only escapes `$`, itself and a newline.
pub fn expand_heredoc(text: &str, escape: char, env: Lookup) -> Result<String, ExpandError> {
    let mut lexer = Lexer::new(text, escape, env);
    let mut out = String::new();
    while let Some(c) = lexer.peek() {
        if c == '$' {
            out.push_str(&lexer.dollar()?);
            continue;
        }
        lexer.next();
        if c == escape {
            match lexer.peek() {
                Some('$') => out.push(lexer.next().unwrap_or('$')),
                Some('\n') => {
                    lexer.next();
                }
                Some(n) if n == escape => out.push(lexer.next().unwrap_or(n)),
                _ => out.push(c),
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

/// Splits a line into words without expanding anything: quotes and escapes stay in the words,
/// so each word can be expanded later with [`expand_word`]. This is how ENV, LABEL and ARG
/// find their `name=value` pairs (BuildKit's `parseWords`).
pub fn split_raw_words(text: &str, escape: char) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut words = Vec::new();
    let mut word = String::new();
    // A word that had quotes counts even when empty (`a=""`).
    let mut started = false;
    let mut quote: Option<char> = None;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match quote {
            None if c.is_whitespace() => {
                if started {
                    words.push(std::mem::take(&mut word));
                    started = false;
                }
            }
            None => {
                started = true;
                if c == '\'' || c == '"' {
                    quote = Some(c);
                    word.push(c);
                } else if c == escape {
                    // Keep the escape with the escaped character; a trailing one is dropped.
                    if let Some(&n) = chars.get(i + 1) {
                        word.push(c);
                        word.push(n);
                        i += 1;
                    }
                } else {
                    word.push(c);
                }
            }
            Some(q) => {
                if c == q {
                    quote = None;
                    word.push(c);
                } else if c == escape && q != '\'' {
                    if let Some(&n) = chars.get(i + 1) {
                        word.push(c);
                        word.push(n);
                        i += 1;
                    } else {
                        quote = None;
                    }
                } else {
                    word.push(c);
                }
            }
        }
        i += 1;
    }
    if started {
        words.push(word);
    }
    words
}

/// The names of the variables a word refers to, in order, for cache keys and diagnostics.
pub fn referenced_names(word: &str, escape: char) -> Vec<String> {
    let seen = std::cell::RefCell::new(Vec::new());
    let record = |name: &str| {
        seen.borrow_mut().push(name.to_string());
        None
    };
    // Errors only mean some names after the error are missed, which is fine for a list.
    let _ = expand_word(word, escape, &record);
    seen.into_inner()
}

/// Words being accumulated by [`Lexer::process`]: splitting only happens on whitespace that
/// is neither quoted nor escaped.
#[derive(Default)]
struct Words {
    words: Vec<String>,
    current: String,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, c: char) {
        if c.is_whitespace() {
            self.flush();
        } else {
            self.current.push(c);
            self.in_word = true;
        }
    }

    fn add_raw_char(&mut self, c: char) {
        self.current.push(c);
        self.in_word = true;
    }

    fn add_str(&mut self, s: &str) {
        s.chars().for_each(|c| self.add_char(c));
    }

    fn add_raw_str(&mut self, s: &str) {
        self.current.push_str(s);
        self.in_word = true;
    }

    fn flush(&mut self) {
        if self.in_word {
            self.words.push(std::mem::take(&mut self.current));
            self.in_word = false;
        }
    }

    fn finish(mut self) -> Vec<String> {
        self.flush();
        self.words
    }
}

struct Lexer<'a> {
    chars: Vec<char>,
    pos: usize,
    escape: char,
    env: Lookup<'a>,
}

impl<'a> Lexer<'a> {
    fn new(text: &str, escape: char, env: Lookup<'a>) -> Lexer<'a> {
        Lexer {
            chars: text.chars().collect(),
            pos: 0,
            escape,
            env,
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    /// Reads up to `stop` (consumed) or the end; returns the joined text and the words.
    /// With `raw_escapes`, escapes stay in the text (for patterns, which read them).
    fn process(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>), ExpandError> {
        let mut text = String::new();
        let mut words = Words::default();
        while let Some(c) = self.peek() {
            if Some(c) == stop {
                self.next();
                return Ok((text, words.finish()));
            }
            match c {
                '\'' => {
                    let s = self.single_quoted()?;
                    text.push_str(&s);
                    words.add_raw_str(&s);
                }
                '"' => {
                    let s = self.double_quoted()?;
                    text.push_str(&s);
                    words.add_raw_str(&s);
                }
                '$' => {
                    let s = self.dollar()?;
                    text.push_str(&s);
                    words.add_str(&s);
                }
                _ => {
                    self.next();
                    if c == self.escape {
                        if raw_escapes {
                            words.add_raw_char(c);
                            text.push(c);
                        }
                        let Some(n) = self.next() else { break };
                        words.add_raw_char(n);
                        text.push(n);
                    } else {
                        words.add_char(c);
                        text.push(c);
                    }
                }
            }
        }
        if stop.is_some() {
            return Err(ExpandError::MissingBrace);
        }
        Ok((text, words.finish()))
    }

    fn single_quoted(&mut self) -> Result<String, ExpandError> {
        self.next();
        let mut s = String::new();
        loop {
            match self.next() {
                None => return Err(ExpandError::UnterminatedSingleQuote),
                Some('\'') => return Ok(s),
                Some(c) => s.push(c),
            }
        }
    }

    fn double_quoted(&mut self) -> Result<String, ExpandError> {
        self.next();
        let mut s = String::new();
        loop {
            match self.peek() {
                None => return Err(ExpandError::UnterminatedDoubleQuote),
                Some('"') => {
                    self.next();
                    return Ok(s);
                }
                Some('$') => s.push_str(&self.dollar()?),
                Some(c) => {
                    self.next();
                    let escaped = c == self.escape
                        && matches!(self.peek(), Some(n) if n == '"' || n == '$' || n == self.escape);
                    match escaped {
                        true => s.extend(self.next()),
                        false => s.push(c),
                    }
                }
            }
        }
    }

    fn dollar(&mut self) -> Result<String, ExpandError> {
        self.next();
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".to_string());
            }
            return Ok((self.env)(&name).unwrap_or_default());
        }
        self.next();
        match self.peek() {
            None => return Err(ExpandError::MissingBrace),
            Some('{' | '}' | ':') => return Err(ExpandError::BadSubstitution),
            _ => {}
        }
        let name = self.name();
        if name.is_empty() {
            return Err(ExpandError::BadSubstitution);
        }
        let value = (self.env)(&name);
        let (colon, modifier) = match self.next() {
            None => return Err(ExpandError::MissingBrace),
            Some('}') => return Ok(value.unwrap_or_default()),
            Some(':') => match self.next() {
                None => return Err(ExpandError::MissingBrace),
                Some(m @ ('-' | '+' | '?')) => (true, m),
                Some(m) => return Err(ExpandError::UnsupportedModifier(format!(":{m}"))),
            },
            Some(m @ ('-' | '+' | '?' | '#' | '%' | '/')) => (false, m),
            Some(m) => return Err(ExpandError::UnsupportedModifier(m.to_string())),
        };
        let value_chars = || -> Vec<char> { value.as_deref().unwrap_or("").chars().collect() };
        match modifier {
            '#' | '%' => {
                let longest = self.peek() == Some(modifier);
                if longest {
                    self.next();
                }
                let (pattern, _) = self.process(Some('}'), true)?;
                let pattern = self.pattern(&pattern);
                return Ok(trim(&value_chars(), &pattern, modifier == '#', longest));
            }
            '/' => {
                let all = self.peek() == Some('/');
                if all {
                    self.next();
                }
                let (pattern, _) = self
                    .process(Some('/'), true)
                    .map_err(|_| ExpandError::MissingSlash)?;
                let (replacement, _) = self.process(Some('}'), true)?;
                let pattern = self.pattern(&pattern);
                return Ok(replace(&value_chars(), &pattern, &replacement, all));
            }
            _ => {}
        }
        let (word, _) = self.process(Some('}'), false)?;
        let set = value.is_some();
        // With a colon, an empty value counts as unset.
        let present = match colon {
            true => value.as_deref().is_some_and(|v| !v.is_empty()),
            false => set,
        };
        match (modifier, present) {
            ('-', true) | ('?', true) => Ok(value.unwrap_or_default()),
            ('-', false) => Ok(word),
            ('+', true) => Ok(word),
            ('+', false) => Ok(String::new()),
            (_, _) => Err(ExpandError::Required {
                message: match (word.is_empty(), set) {
                    (false, _) => word,
                    (true, false) => "is not allowed to be unset".to_string(),
                    (true, true) => "is not allowed to be empty".to_string(),
                },
                name,
            }),
        }
    }

    /// A pattern's text as tokens: the escape character makes the next one literal.
    fn pattern(&self, text: &str) -> Vec<Glob> {
        let mut out = Vec::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            out.push(match c {
                c if c == self.escape => Glob::Literal(chars.next().unwrap_or(c)),
                '*' => Glob::Any,
                '?' => Glob::One,
                c => Glob::Literal(c),
            });
        }
        out
    }

    /// A variable name: letters, digits and `_`, or all digits (`$1`), or one of the shell's
    /// special parameters (`$@`), which is never set here and so expands to nothing.
    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek() {
            if name.is_empty() && c.is_ascii_digit() {
                while let Some(d) = self.peek().filter(char::is_ascii_digit) {
                    self.next();
                    name.push(d);
                }
                return name;
            }
            if name.is_empty() && matches!(c, '@' | '*' | '#' | '?' | '-' | '$' | '!') {
                self.next();
                return c.to_string();
            }
            if !(c.is_alphanumeric() || c == '_') {
                break;
            }
            self.next();
            name.push(c);
        }
        name
    }
}

/// A token of a shell pattern in `${var#pattern}` and friends.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Glob {
    Literal(char),
    /// `*`: any run of characters, `/` included.
    Any,
    /// `?`: any one character.
    One,
}

fn glob_match(pattern: &[Glob], s: &[char]) -> bool {
    match pattern.split_first() {
        None => s.is_empty(),
        Some((Glob::Any, rest)) => (0..=s.len()).any(|i| glob_match(rest, &s[i..])),
        Some((Glob::One, rest)) => !s.is_empty() && glob_match(rest, &s[1..]),
        Some((Glob::Literal(c), rest)) => s.first() == Some(c) && glob_match(rest, &s[1..]),
    }
}

/// `${v#p}` / `${v##p}` (prefix) and `${v%p}` / `${v%%p}` (suffix): removes the shortest
/// or longest match.
fn trim(value: &[char], pattern: &[Glob], prefix: bool, longest: bool) -> String {
    let n = value.len();
    let mut cuts: Vec<usize> = (0..=n).collect();
    // For a prefix the shortest match ends first; for a suffix it starts last.
    if prefix == longest {
        cuts.reverse();
    }
    for i in cuts {
        let (matched, kept) = match prefix {
            true => (&value[..i], &value[i..]),
            false => (&value[i..], &value[..i]),
        };
        if glob_match(pattern, matched) {
            return kept.iter().collect();
        }
    }
    value.iter().collect()
}

/// `${v/p/r}` replaces the first longest match, `${v//p/r}` every one.
fn replace(value: &[char], pattern: &[Glob], replacement: &str, all: bool) -> String {
    let mut out = String::new();
    let mut i = 0;
    let mut replaced = false;
    while i < value.len() {
        let found = match replaced && !all {
            true => None,
            false => (i + 1..=value.len())
                .rev()
                .find(|&end| glob_match(pattern, &value[i..end])),
        };
        match found {
            Some(end) => {
                out.push_str(replacement);
                i = end;
                replaced = true;
            }
            None => {
                out.push(value[i]);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "A" => Some("a".into()),
            "EMPTY" => Some(String::new()),
            "SPACED" => Some("x  y".into()),
            "HOME" => Some("/root".into()),
            _ => None,
        }
    }

    fn w(word: &str) -> String {
        expand_word(word, '\\', &env).unwrap()
    }

    fn ws(text: &str) -> Vec<String> {
        expand_words(text, '\\', &env).unwrap()
    }

    #[test]
    fn plain_variables() {
        assert_eq!(w("$A"), "a");
        assert_eq!(w("${A}"), "a");
        assert_eq!(w("x${A}y"), "xay");
        assert_eq!(w("$Ab"), "");
        assert_eq!(w("$NOPE"), "");
        assert_eq!(w("$HOME/bin"), "/root/bin");
        assert_eq!(w("a$"), "a$");
        assert_eq!(w("$/x"), "$/x");
        assert_eq!(w("$1x"), "x");
    }

    #[test]
    fn modifiers() {
        assert_eq!(w("${A:-d}"), "a");
        assert_eq!(w("${NOPE:-d}"), "d");
        assert_eq!(w("${EMPTY:-d}"), "d");
        assert_eq!(w("${EMPTY-d}"), "");
        assert_eq!(w("${NOPE-d}"), "d");
        assert_eq!(w("${A:+set}"), "set");
        assert_eq!(w("${EMPTY:+set}"), "");
        assert_eq!(w("${EMPTY+set}"), "set");
        assert_eq!(w("${NOPE+set}"), "");
        assert_eq!(w("${NOPE:-$A/x}"), "a/x");
        assert_eq!(w("${NOPE:-${HOME}}"), "/root");
        assert_eq!(w("${NOPE:-'a b'}"), "a b");
        assert_eq!(w("${A:?boom}"), "a");
        assert_eq!(
            expand_word("${NOPE:?must be set}", '\\', &env).unwrap_err(),
            ExpandError::Required {
                name: "NOPE".into(),
                message: "must be set".into()
            }
        );
        assert!(expand_word("${EMPTY?x}", '\\', &env).is_ok());
        assert!(expand_word("${EMPTY:?}", '\\', &env).is_err());
    }

    #[test]
    fn malformed() {
        let e = |s: &str| expand_word(s, '\\', &env).unwrap_err();
        assert_eq!(e("${A"), ExpandError::MissingBrace);
        assert_eq!(e("${"), ExpandError::MissingBrace);
        assert_eq!(e("${}"), ExpandError::BadSubstitution);
        assert_eq!(e("${:-x}"), ExpandError::BadSubstitution);
        assert_eq!(e("${A:3}"), ExpandError::UnsupportedModifier(":3".into()));
        assert_eq!(e("${A^^}"), ExpandError::UnsupportedModifier("^".into()));
        assert_eq!(e("${A/x}"), ExpandError::MissingSlash);
        assert_eq!(
            e("${NOPE?}").to_string(),
            "NOPE: is not allowed to be unset"
        );
        assert_eq!(
            e("${EMPTY:?}").to_string(),
            "EMPTY: is not allowed to be empty"
        );
        assert_eq!(e("${A:-x"), ExpandError::MissingBrace);
        assert_eq!(e("'abc"), ExpandError::UnterminatedSingleQuote);
        assert_eq!(e("\"abc"), ExpandError::UnterminatedDoubleQuote);
    }

    #[test]
    fn patterns() {
        let env = |n: &str| match n {
            "F" => Some("archive.tar.gz".to_string()),
            "P" => Some("/usr/local/bin".to_string()),
            _ => None,
        };
        let w = |s: &str| expand_word(s, '\\', &env).unwrap();
        assert_eq!(w("${F#*.}"), "tar.gz");
        assert_eq!(w("${F##*.}"), "gz");
        assert_eq!(w("${F%.*}"), "archive.tar");
        assert_eq!(w("${F%%.*}"), "archive");
        assert_eq!(w("${F#nomatch}"), "archive.tar.gz");
        assert_eq!(w("${P##*/}"), "bin");
        assert_eq!(w("${F/a/A}"), "Archive.tar.gz");
        assert_eq!(w("${F//a/A}"), "Archive.tAr.gz");
        assert_eq!(w("${F/.*/}"), "archive");
        assert_eq!(w("${P//\\//:}"), ":usr:local:bin");
        assert_eq!(w("${NOPE#x}"), "");
    }

    #[test]
    fn quotes_and_escapes() {
        assert_eq!(w("'$A'"), "$A");
        assert_eq!(w("\"$A\""), "a");
        assert_eq!(w("\"a b\""), "a b");
        assert_eq!(w(r"\$A"), "$A");
        assert_eq!(w(r#""\$A""#), "$A");
        assert_eq!(w(r#""\"q\"""#), "\"q\"");
        assert_eq!(w(r#""\n""#), r"\n");
        assert_eq!(w(r"a\ b"), "a b");
        assert_eq!(w(r"a\\b"), r"a\b");
        assert_eq!(w(r"trailing\"), "trailing");
        assert_eq!(w(r"'a\b'"), r"a\b");
        assert_eq!(w("don't'"), "dont");
        // With the backtick as escape character, a backslash is an ordinary character.
        assert_eq!(expand_word(r"C:\dir\`$A", '`', &env).unwrap(), r"C:\dir\$A");
    }

    #[test]
    fn splitting() {
        assert_eq!(ws("a b  c"), ["a", "b", "c"]);
        assert_eq!(ws("a \"b c\" d"), ["a", "b c", "d"]);
        assert_eq!(ws("$SPACED"), ["x", "y"]);
        assert_eq!(ws("\"$SPACED\""), ["x  y"]);
        assert_eq!(ws("a \"\" b"), ["a", "", "b"]);
        assert_eq!(ws(r"a\ b c"), ["a b", "c"]);
        assert_eq!(ws("$NOPE"), Vec::<String>::new());
        assert_eq!(ws("  "), Vec::<String>::new());
    }

    #[test]
    fn heredoc_bodies_keep_quotes() {
        let out = expand_heredoc("echo \"$A\" '${HOME}' \\$A \\x\n", '\\', &env).unwrap();
        assert_eq!(out, "echo \"a\" '/root' $A \\x\n");
    }

    #[test]
    fn raw_words() {
        assert_eq!(
            split_raw_words(r#"a=1 b="x y" c='p q' d=e\ f"#, '\\'),
            ["a=1", "b=\"x y\"", "c='p q'", r"d=e\ f"]
        );
        assert_eq!(split_raw_words("  k=  ", '\\'), ["k="]);
        assert_eq!(split_raw_words("k=\"\"", '\\'), ["k=\"\""]);
    }

    #[test]
    fn names() {
        assert_eq!(referenced_names("${A:-$B}/$C '$D'", '\\'), ["A", "B", "C"]);
    }
}
