//! Image references, parsed the way Docker parses them (distribution/reference's grammar and
//! its `ParseNormalizedNamed` + `TagNameOnly` normalisation):
//!
//! ```text
//! reference  := name [ ":" tag ] [ "@" digest ]
//! name       := [ domain "/" ] path
//! domain     := host [ ":" port ]        host: DNS-like name, IPv4, or [IPv6]
//! path       := component ( "/" component )*
//! component  := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
//! tag        := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
//! ```
//!
//! `busybox` is `docker.io/library/busybox:latest`; the first component is a registry only
//! when it contains `.` or `:`, is `localhost`, or has uppercase letters (paths cannot).
//!
//! One deliberate difference: digests are sha256 only (see [`crate::digest`]), so a
//! `@sha512:` reference that Docker accepts is refused here with a clear error.

use std::fmt;
use std::str::FromStr;

use crate::digest::{Digest, DigestError};

/// Where a reference without a registry lives.
pub const DEFAULT_REGISTRY: &str = "docker.io";
/// What Docker Hub used to be called; references naming it mean [`DEFAULT_REGISTRY`].
pub const LEGACY_DEFAULT_REGISTRY: &str = "index.docker.io";
/// The namespace of Docker Hub's official images (`busybox` is `library/busybox`).
pub const OFFICIAL_NAMESPACE: &str = "library/";
/// The tag of a reference that names neither a tag nor a digest.
pub const DEFAULT_TAG: &str = "latest";

/// Longest repository path (without the registry) that registries accept.
const PATH_MAX: usize = 255;
/// Longest tag: one leading character and up to 127 more.
const TAG_MAX: usize = 128;

/// A normalised image reference: always a registry and a repository path, and a tag, a
/// digest or both (`latest` when the input had neither).
///
/// `Display` gives the full form (`docker.io/library/busybox:latest`); the alternate form
/// (`{:#}`) gives Docker's familiar one (`busybox:latest`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

/// What [`parse_any`] finds: a name, or a bare digest or image id (`sha256:<hex>` or 64 hex
/// characters), as `docker inspect` and `docker rmi` accept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AnyReference {
    Named(Reference),
    Digest(Digest),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid reference {input:?}: {rule}")]
pub struct ReferenceError {
    pub input: String,
    pub rule: Rule,
}

/// The rule of the grammar an input broke.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Rule {
    #[error("repository name must have at least one component")]
    Empty,
    #[error(
        "a 64-character hexadecimal string is an image id, not a repository name (use sha256:<hex>)"
    )]
    Identifier,
    #[error("repository name {0:?} must be lowercase")]
    Uppercase(String),
    #[error("repository name {0:?} is longer than {PATH_MAX} characters")]
    NameTooLong(String),
    #[error(
        "path component {0:?} must be lowercase letters and digits, separated by one '.', \
         one or two '_', or any number of '-'"
    )]
    PathComponent(String),
    #[error(
        "registry {0:?} must be a host name (letters, digits, inner '-', dot-separated), \
         an IPv4 address or a bracketed IPv6 address, with an optional numeric port"
    )]
    Registry(String),
    #[error("{0:?} is a registry with no repository after it ({0}/<name>)")]
    NoRepository(String),
    #[error(
        "tag {0:?} must be 1 to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'"
    )]
    Tag(String),
    #[error("{0}")]
    Digest(#[from] DigestError),
    #[error("{0}")]
    Format(&'static str),
}

impl Reference {
    /// Parses a reference as `docker pull` does: `[registry[:port]/]repo[:tag][@digest]`.
    pub fn parse(input: &str) -> Result<Reference, ReferenceError> {
        parse_normalized(input).map_err(|rule| ReferenceError {
            input: input.to_string(),
            rule,
        })
    }

    /// The registry as written in references: `docker.io`, `127.0.0.1:5000`, `[::1]:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path inside the registry: `library/busybox`, `berth/busybox`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// `registry/repository`, without tag or digest: `docker.io/library/busybox`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The name as Docker shows it: `busybox`, `someone/app`, `127.0.0.1:5000/x`.
    pub fn familiar_name(&self) -> String {
        if self.registry != DEFAULT_REGISTRY {
            return self.name();
        }
        match self.repository.strip_prefix(OFFICIAL_NAMESPACE) {
            // `library/a/b` keeps its prefix: only single-component official names shorten.
            Some(rest) if !rest.contains('/') => rest.to_string(),
            _ => self.repository.clone(),
        }
    }

    /// The familiar form with tag and digest: `busybox:latest`.
    pub fn familiar(&self) -> String {
        format!("{self:#}")
    }

    /// What a registry is asked for: the digest when there is one (it pins the content
    /// even when a tag is also given), else the tag.
    pub fn tag_or_digest(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => DEFAULT_TAG.to_string(),
        }
    }

    /// The same repository with `tag` (and this reference's digest, if any).
    pub fn with_tag(&self, tag: &str) -> Result<Reference, ReferenceError> {
        check_tag(tag).map_err(|rule| ReferenceError {
            input: format!("{}:{tag}", self.name()),
            rule,
        })?;
        Ok(Reference {
            tag: Some(tag.to_string()),
            ..self.clone()
        })
    }

    /// The same repository and tag, pinned to `digest`.
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// The same repository by digest alone, as Docker records a pulled image's RepoDigests.
    pub fn by_digest(&self, digest: Digest) -> Reference {
        Reference {
            tag: None,
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// Another repository in the same registry, tagged `latest`; for cross-repository
    /// mounts and tests.
    pub fn in_repository(&self, repository: &str) -> Result<Reference, ReferenceError> {
        Reference::parse(&format!("{}/{repository}", self.registry))
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.alternate() {
            f.write_str(&self.familiar_name())?;
        } else {
            write!(f, "{}/{}", self.registry, self.repository)?;
        }
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reference({self})")
    }
}

impl serde::Serialize for Reference {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Reference {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for AnyReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AnyReference::Named(r) => fmt::Display::fmt(r, f),
            AnyReference::Digest(d) => write!(f, "{d}"),
        }
    }
}

/// Parses a name, a `sha256:<hex>` digest or a bare 64-hex image id, as Docker's
/// `ParseAnyReference` does for commands that take either an image name or an id.
pub fn parse_any(input: &str) -> Result<AnyReference, ReferenceError> {
    if is_identifier(input) {
        if let Ok(d) = format!("sha256:{input}").parse() {
            return Ok(AnyReference::Digest(d));
        }
    }
    if let Ok(d) = input.parse::<Digest>() {
        return Ok(AnyReference::Digest(d));
    }
    Reference::parse(input).map(AnyReference::Named)
}

/// The pieces of a reference as the grammar alone splits them (distribution's `Parse`), before
/// Docker's defaults are applied. `domain` is `None` when the name has no registry part.
#[derive(Debug, PartialEq, Eq)]
struct Parts<'a> {
    domain: Option<&'a str>,
    path: &'a str,
    tag: Option<&'a str>,
    digest: Option<Digest>,
}

fn parse_normalized(input: &str) -> Result<Reference, Rule> {
    if input.is_empty() {
        return Err(Rule::Empty);
    }
    if is_identifier(input) {
        return Err(Rule::Identifier);
    }
    let (domain, remainder, user_remainder) = split_docker_domain(input);
    let remote = remainder.split(':').next().unwrap_or_default();
    if remote.chars().any(|c| c.is_ascii_uppercase()) {
        let written = user_remainder.split([':', '@']).next().unwrap_or_default();
        return Err(Rule::Uppercase(written.to_string()));
    }
    let joined = format!("{domain}/{remainder}");
    let parts = parse_parts(&joined)?;
    // The heuristic picked `domain`; the grammar must agree, or the first component was
    // neither a valid registry nor something Docker would look up anywhere.
    if parts.domain != Some(domain) {
        return Err(Rule::Registry(domain.to_string()));
    }
    let tag = match (parts.tag, &parts.digest) {
        (Some(t), _) => Some(t.to_string()),
        (None, Some(_)) => None,
        (None, None) => Some(DEFAULT_TAG.to_string()),
    };
    Ok(Reference {
        registry: domain.to_string(),
        repository: parts.path.to_string(),
        tag,
        digest: parts.digest,
    })
}

/// Docker's registry heuristic. Returns the registry, the rest of the reference with the
/// `library/` prefix added where Docker adds it, and the rest as the user wrote it.
fn split_docker_domain(input: &str) -> (&str, String, &str) {
    let Some((first, rest)) = input.split_once('/') else {
        // A single component is always a Docker Hub name, even `localhost` or `example.com`:
        // `example.com:5000` is the repository `example.com` with tag `5000`.
        return (
            DEFAULT_REGISTRY,
            format!("{OFFICIAL_NAMESPACE}{input}"),
            input,
        );
    };
    let (domain, remote, user) = if first == "localhost" {
        (first, rest, rest)
    } else if first == LEGACY_DEFAULT_REGISTRY {
        (DEFAULT_REGISTRY, rest, rest)
    } else if first.contains(['.', ':']) {
        (first, rest, rest)
    } else if first.chars().any(|c| c.is_ascii_uppercase()) {
        // Paths are lowercase, so an uppercase first component can only be a host name.
        (first, rest, rest)
    } else {
        (DEFAULT_REGISTRY, input, input)
    };
    if domain == DEFAULT_REGISTRY && !remote.contains('/') {
        return (domain, format!("{OFFICIAL_NAMESPACE}{remote}"), user);
    }
    (domain, remote.to_string(), user)
}

/// distribution's `Parse`: the grammar without defaults.
fn parse_parts(input: &str) -> Result<Parts<'_>, Rule> {
    if input.is_empty() {
        return Err(Rule::Empty);
    }
    let (name_tag, digest) = match input.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (input, None),
    };
    let digest = match digest {
        Some(d) if d.contains('@') => return Err(Rule::Format("more than one '@'")),
        Some(d) => Some(d.parse::<Digest>()?),
        None => None,
    };
    // A tag holds neither ':' nor '/', and a ':' before a '/' belongs to the registry's port:
    // so the last ':' with no '/' after it is where the tag starts.
    let (name, tag) = match name_tag.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => (n, Some(t)),
        _ => (name_tag, None),
    };
    if name.is_empty() {
        return Err(Rule::Format("the repository name is missing"));
    }
    if let Some(t) = tag {
        check_tag(t)?;
    }
    let (domain, path) = split_name(name)?;
    if path.len() > PATH_MAX {
        return Err(Rule::NameTooLong(path.to_string()));
    }
    Ok(Parts {
        domain,
        path,
        tag,
        digest,
    })
}

/// `[domain/]path`, preferring a registry when the first component can be one, as the
/// greedy optional group of distribution's name pattern does (`a/b` is registry `a`).
fn split_name(name: &str) -> Result<(Option<&str>, &str), Rule> {
    if let Some((first, rest)) = name.split_once('/') {
        if is_domain(first) && check_path(rest).is_ok() {
            return Ok((Some(first), rest));
        }
    }
    match check_path(name) {
        Ok(()) => Ok((None, name)),
        Err(component_error) => {
            // Say what is wrong with the part that looks wrong: a first component that looks
            // like a registry but is not a valid one, else the bad path component.
            if let Some((first, rest)) = name.split_once('/') {
                let looks_like_domain = first.contains(['.', ':', '[']) || first == "localhost";
                if looks_like_domain && !is_domain(first) {
                    return Err(Rule::Registry(first.to_string()));
                }
                if is_domain(first) {
                    return Err(check_path(rest).unwrap_err());
                }
            } else if name.starts_with('[') && is_domain(name) {
                return Err(Rule::NoRepository(name.to_string()));
            }
            Err(component_error)
        }
    }
}

fn check_path(path: &str) -> Result<(), Rule> {
    for component in path.split('/') {
        if !is_path_component(component) {
            if component.is_empty() {
                return Err(Rule::Format(
                    "empty path component (leading, trailing or double '/')",
                ));
            }
            let lower = component.to_ascii_lowercase();
            if lower != component && is_path_component(&lower) {
                return Err(Rule::Uppercase(path.to_string()));
            }
            return Err(Rule::PathComponent(component.to_string()));
        }
    }
    Ok(())
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn is_path_component(s: &str) -> bool {
    let b = s.as_bytes();
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let mut i = 0;
    loop {
        let start = i;
        while i < b.len() && alnum(b[i]) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i == b.len() {
            return true;
        }
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
    }
}

/// `host[:port]` where host is a DNS-like name (IPv4 included) or a bracketed IPv6 address.
fn is_domain(s: &str) -> bool {
    let (host_ok, port) = if let Some(after) = s.strip_prefix('[') {
        let Some((inner, rest)) = after.split_once(']') else {
            return false;
        };
        let hex_or_colon = |c: u8| c.is_ascii_hexdigit() || c == b':';
        (!inner.is_empty() && inner.bytes().all(hex_or_colon), rest)
    } else {
        let (host, port) = s.find(':').map_or((s, ""), |i| s.split_at(i));
        (host.split('.').all(is_domain_component), port)
    };
    let port_ok = port.is_empty()
        || port
            .strip_prefix(':')
            .is_some_and(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()));
    host_ok && port_ok
}

/// `[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]`
fn is_domain_component(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'-')
}

fn check_tag(tag: &str) -> Result<(), Rule> {
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let b = tag.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= TAG_MAX
        && word(b[0])
        && b.iter().all(|&c| word(c) || c == b'.' || c == b'-');
    if ok {
        Ok(())
    } else {
        Err(Rule::Tag(tag.to_string()))
    }
}

/// 64 lowercase hex characters: an image id, which Docker refuses as a name.
fn is_identifier(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
}

#[cfg(test)]
mod tests;
