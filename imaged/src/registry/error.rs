//! Errors of the registry client. Each one says what was being done to what
//! (`pull 127.0.0.1:5000/x:1`) and why (`manifest unknown`), on one line: the causes of a
//! transport error are folded into the message rather than chained, so that an `anyhow`
//! report prints each piece of text once.

use std::fmt;
use std::path::PathBuf;

use crate::digest::Digest;

/// A failed registry operation: `{action} {target}: {kind}`.
#[derive(Debug, thiserror::Error)]
#[error("{action} {target}: {kind}")]
pub struct Error {
    /// `pull`, `fetch`, `push`, `login`, ...
    pub action: &'static str,
    /// The reference, `registry/repo@digest`, registry or file the action was on.
    pub target: String,
    pub kind: ErrorKind,
}

impl Error {
    pub fn new(action: &'static str, target: impl fmt::Display, kind: ErrorKind) -> Error {
        let target = target.to_string();
        let mut kind = kind;
        // distribution's details mostly repeat the digest or tag asked for; keep the ones
        // that add something (which blob a manifest lacks, why a manifest is invalid).
        if let ErrorKind::Status { detail, .. } = &mut kind {
            detail.retain(|(_, value)| !target.contains(value.as_str()));
        }
        Error {
            action,
            target,
            kind,
        }
    }

    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// The HTTP status the registry answered with, when the error is the registry's answer.
    pub fn status(&self) -> Option<u16> {
        match &self.kind {
            ErrorKind::Status { status, .. } => Some(*status),
            ErrorKind::Unauthorized { .. } => Some(401),
            ErrorKind::Denied { .. } => Some(403),
            _ => None,
        }
    }

    /// Whether the registry said it does not have the thing (HTTP 404).
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// For a blob whose transfer broke off: where to resume (`Range: bytes=N-`).
    pub fn resume_offset(&self) -> Option<u64> {
        match &self.kind {
            ErrorKind::Interrupted { received, .. } => Some(*received),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ErrorKind {
    /// The registry answered with an error status; `message` is its own words (from the
    /// distribution error body when there is one), e.g. `manifest unknown`.
    #[error("{message}{}", detail_text(detail))]
    Status {
        status: u16,
        /// The distribution error code, e.g. `MANIFEST_UNKNOWN`, `BLOB_UNKNOWN`.
        code: Option<String>,
        message: String,
        /// The error's `detail`, as (key, value) pairs; the key is empty for a plain string.
        detail: Vec<(String, String)>,
    },
    #[error("unauthorized: {detail}")]
    Unauthorized { detail: String },
    #[error("denied: {detail}")]
    Denied { detail: String },
    /// No answer at all: refused, reset, DNS, TLS, timeout.
    #[error("cannot reach {url}: {detail}")]
    Connection { url: String, detail: String },
    /// The connection broke while a blob was streaming. `received` counts from the start
    /// of the blob, so it is the offset to resume from.
    // The digest is in the target (`fetch reg/repo@sha256:…`), so the text leaves it out.
    #[error("{}", interrupted(*received, *expected, detail))]
    Interrupted {
        digest: Digest,
        received: u64,
        expected: Option<u64>,
        detail: String,
    },
    #[error("token from {realm}: {detail}")]
    Token { realm: String, detail: String },
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error(
        "Docker image manifest schema 1 ({media_type}) is deprecated and not supported; \
         push the image again with a current client"
    )]
    Schema1 { media_type: String },
    #[error("unsupported manifest media type {media_type:?}")]
    UnsupportedMediaType { media_type: String },
    #[error(
        "no image for platform {wanted}; the index has {}",
        available_list(available)
    )]
    NoMatchingPlatform {
        wanted: String,
        available: Vec<String>,
    },
    #[error("invalid platform {input:?}: {reason}")]
    InvalidPlatform { input: String, reason: String },
    #[error("the registry does not serve byte ranges (HTTP 200 instead of 206)")]
    RangeNotSupported,
    #[error("range not satisfiable (blob size {})", size.map_or("unknown".to_string(), |s| s.to_string()))]
    RangeNotSatisfiable { size: Option<u64> },
    #[error("invalid response: {0}")]
    InvalidResponse(String),
    #[error("{path}: {detail}")]
    Config { path: PathBuf, detail: String },
    #[error("{0}")]
    Source(String),
}

fn interrupted(received: u64, expected: Option<u64>, detail: &str) -> String {
    let of = expected.map_or(String::new(), |e| format!(" of {e}"));
    format!("connection lost after {received}{of} bytes ({detail}); resume from byte {received}")
}

fn detail_text(detail: &[(String, String)]) -> String {
    if detail.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = detail
        .iter()
        .map(|(k, v)| {
            if k.is_empty() {
                v.clone()
            } else {
                format!("{k} {v}")
            }
        })
        .collect();
    format!(" ({})", parts.join(", "))
}

fn available_list(available: &[String]) -> String {
    if available.is_empty() {
        "no platform-specific images".to_string()
    } else {
        available.join(", ")
    }
}

/// `e` and its sources as one line, each piece once: reqwest's own text ("error sending
/// request") says little, the cause three levels down ("Connection refused") says what
/// happened.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    // What reqwest and hyper wrap every cause in; the cause itself is what tells.
    const WRAPPERS: &[&str] = &[
        "error sending request",
        "client error (Connect)",
        "client error (SendRequest)",
        "error decoding response body",
        "request or response body error",
        "error reading a body from connection",
    ];
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = cur {
        let text = err.to_string();
        let wrapper = WRAPPERS.iter().any(|w| text.starts_with(w));
        if !wrapper && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = err.source();
    }
    if parts.is_empty() {
        return e.to_string();
    }
    parts.join(": ")
}

/// The body of a distribution error response:
/// `{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":...}]}`.
#[derive(serde::Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ErrorEntry>,
}

#[derive(serde::Deserialize)]
struct ErrorEntry {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    detail: Option<serde_json::Value>,
}

/// Turns an error response into its kind: the registry's own code and message when the
/// body has them, else the status line and the start of the body.
pub(crate) async fn from_response(resp: reqwest::Response) -> ErrorKind {
    let status = resp.status();
    // An error body is small; a proxy's HTML page may not be, and only its start is useful.
    let body = read_capped(resp, 64 * 1024).await;
    status_kind(status, &body)
}

pub(crate) fn status_kind(status: reqwest::StatusCode, body: &[u8]) -> ErrorKind {
    let (code, message, detail) = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(b) if !b.errors.is_empty() => {
            let code = b.errors[0].code.clone();
            let messages: Vec<String> = b
                .errors
                .iter()
                .map(|e| {
                    e.message
                        .clone()
                        .filter(|m| !m.is_empty())
                        .or_else(|| e.code.as_ref().map(|c| c.to_lowercase().replace('_', " ")))
                        .unwrap_or_default()
                })
                .collect();
            let detail = b
                .errors
                .iter()
                .flat_map(|e| e.detail.as_ref().map(detail_pairs).unwrap_or_default())
                .collect();
            (code, messages.join("; "), detail)
        }
        _ => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            let snippet: String = text.chars().take(200).collect();
            let line = format!(
                "HTTP {} {}",
                status.as_u16(),
                status.canonical_reason().unwrap_or("")
            );
            let line = line.trim_end().to_string();
            if snippet.is_empty() {
                (None, line, Vec::new())
            } else {
                (None, format!("{line}: {snippet}"), Vec::new())
            }
        }
    };
    match status.as_u16() {
        401 => ErrorKind::Unauthorized {
            detail: format!("{message}{}", detail_text(&detail)),
        },
        403 => ErrorKind::Denied {
            detail: format!("{message}{}", detail_text(&detail)),
        },
        s => ErrorKind::Status {
            status: s,
            code,
            message,
            detail,
        },
    }
}

/// The `detail` of a distribution error, when it is something a person can read:
/// distribution puts a string (a digest) or an object (`{"Tag":"x"}`) there.
fn detail_pairs(v: &serde_json::Value) -> Vec<(String, String)> {
    match v {
        serde_json::Value::String(s) if !s.is_empty() => vec![(String::new(), s.clone())],
        serde_json::Value::Object(m) => m
            .iter()
            .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
            .filter(|(_, v)| !v.is_empty())
            .collect(),
        _ => Vec::new(),
    }
}

/// Reads at most `cap` bytes of a body; what follows is dropped with the connection.
pub(crate) async fn read_capped(mut resp: reqwest::Response, cap: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        let room = cap - out.len();
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() >= cap {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;

    #[test]
    fn registry_error_body_gives_its_message() {
        let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"nope"}}]}"#;
        let kind = status_kind(StatusCode::NOT_FOUND, body);
        assert_eq!(kind.to_string(), "manifest unknown (Tag nope)");
        // The detail repeats the target, so the error leaves it out.
        let e = Error::new("pull", "127.0.0.1:5000/x:nope", kind);
        assert_eq!(
            e.to_string(),
            "pull 127.0.0.1:5000/x:nope: manifest unknown"
        );
        assert!(e.is_not_found());
        // A detail that says something new stays.
        let body = br#"{"errors":[{"code":"MANIFEST_BLOB_UNKNOWN","message":"blob unknown to registry","detail":"sha256:abc"}]}"#;
        let e = Error::new("push", "r/x:1", status_kind(StatusCode::BAD_REQUEST, body));
        assert_eq!(
            e.to_string(),
            "push r/x:1: blob unknown to registry (sha256:abc)"
        );
    }

    #[test]
    fn other_bodies_give_the_status_line() {
        let kind = status_kind(StatusCode::BAD_GATEWAY, b"<html>upstream down</html>");
        assert_eq!(
            kind.to_string(),
            "HTTP 502 Bad Gateway: <html>upstream down</html>"
        );
        let kind = status_kind(StatusCode::UNAUTHORIZED, b"");
        assert_eq!(kind.to_string(), "unauthorized: HTTP 401 Unauthorized");
    }

    #[test]
    fn interrupted_says_where_to_resume() {
        let d = Digest::of(b"x");
        let e = Error::new(
            "fetch",
            format!("r/x@{d}"),
            ErrorKind::Interrupted {
                digest: d.clone(),
                received: 4096,
                expected: Some(10000),
                detail: "connection reset".into(),
            },
        );
        assert_eq!(e.resume_offset(), Some(4096));
        assert_eq!(
            e.to_string(),
            format!(
                "fetch r/x@{d}: connection lost after 4096 of 10000 bytes (connection reset); \
                 resume from byte 4096"
            )
        );
    }
}
