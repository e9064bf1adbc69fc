//! Cache keys of build steps. A step's result may be reused when its key matches: the key
//! covers the parent (the previous step's key, or the base image's id), the instruction
//! after expansion, the build args the step uses, and for COPY/ADD a digest of the content it
//! copies, which the executor computes from the files.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

/// The sha256 hex key of a step. Each part is length-prefixed so that no two different
/// inputs can run together into the same bytes.
pub fn cache_key(
    parent: &str,
    instruction: &str,
    args: &BTreeMap<String, String>,
    content_digest: Option<&str>,
) -> String {
    let mut hasher = Sha256::new();
    let mut part = |tag: &str, bytes: &[u8]| {
        hasher.update(tag.as_bytes());
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    };
    // A version, so that a change to what a key means never reuses old entries.
    part("v", b"berth-build-cache-1");
    part("parent", parent.as_bytes());
    part("instruction", instruction.as_bytes());
    for (k, v) in args {
        part("arg", k.as_bytes());
        part("value", v.as_bytes());
    }
    if let Some(d) = content_digest {
        part("content", d.as_bytes());
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn keys_depend_on_every_part() {
        let base = cache_key("p", "RUN x", &args(&[("A", "1")]), None);
        assert_eq!(base.len(), 64);
        assert!(base.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(base, cache_key("p", "RUN x", &args(&[("A", "1")]), None));
        let others = [
            cache_key("q", "RUN x", &args(&[("A", "1")]), None),
            cache_key("p", "RUN y", &args(&[("A", "1")]), None),
            cache_key("p", "RUN x", &args(&[("A", "2")]), None),
            cache_key("p", "RUN x", &args(&[]), None),
            cache_key("p", "RUN x", &args(&[("A", "1")]), Some("sha256:00")),
            // Parts do not run together.
            cache_key("pR", "UN x", &args(&[("A", "1")]), None),
            cache_key("p", "RUN x", &args(&[("A", ""), ("1", "")]), None),
        ];
        for o in others {
            assert_ne!(o, base);
        }
    }
}
