//! `docker images --filter`: dangling, reference, before, since and label, with Docker's
//! meaning (several values of one key match any of them; different keys must all match).

use std::collections::HashMap;

use crate::images::Summary;

/// Keep the images `filters` (`key=value` strings) select.
pub fn images(
    all: Vec<Summary>,
    filters: &[String],
    all_flag: bool,
) -> Result<Vec<Summary>, String> {
    let mut by_key: HashMap<&str, Vec<&str>> = HashMap::new();
    for f in filters {
        let (k, v) = f
            .split_once('=')
            .ok_or_else(|| format!("bad format of filter (expected name=value): {f:?}"))?;
        match k {
            "dangling" | "reference" | "before" | "since" | "label" => {
                by_key.entry(k).or_default().push(v)
            }
            _ => return Err(format!("invalid filter {k:?}")),
        }
    }
    let created_of = |image: &str| -> Result<i64, String> {
        all.iter()
            .find(|s| {
                s.repo_tags
                    .iter()
                    .any(|t| t == image || t == &format!("{image}:latest"))
                    || s.id.to_string() == image
                    || s.id.hex().starts_with(image.trim_start_matches("sha256:"))
            })
            .map(|s| s.created)
            .ok_or_else(|| format!("No such image: {image}"))
    };
    let mut before = None;
    let mut since = None;
    if let Some(v) = by_key.get("before") {
        before = Some(created_of(v[0])?);
    }
    if let Some(v) = by_key.get("since") {
        since = Some(created_of(v[0])?);
    }
    for v in by_key.get("dangling").into_iter().flatten() {
        if !matches!(*v, "true" | "false" | "1" | "0") {
            return Err(format!("invalid filter 'dangling={v}'"));
        }
    }
    Ok(all
        .into_iter()
        .filter(|s| all_flag || !s.intermediate)
        .filter(|s| {
            by_key.get("dangling").is_none_or(|vs| {
                vs.iter()
                    .any(|v| (matches!(*v, "true" | "1")) == s.repo_tags.is_empty())
            })
        })
        .filter(|s| {
            by_key.get("reference").is_none_or(|vs| {
                vs.iter().any(|pat| {
                    s.repo_tags.iter().any(|t| {
                        let name = t.rsplit_once(':').map_or(t.as_str(), |(n, _)| n);
                        glob(pat, t) || glob(pat, name)
                    })
                })
            })
        })
        .filter(|s| before.is_none_or(|b| s.created < b))
        .filter(|s| since.is_none_or(|b| s.created > b))
        .filter(|s| {
            by_key.get("label").is_none_or(|vs| {
                vs.iter().all(|l| match l.split_once('=') {
                    Some((k, v)) => s.labels.get(k).is_some_and(|x| x == v),
                    None => s.labels.contains_key(*l),
                })
            })
        })
        .collect())
}

/// Go's path.Match: `*` any run of characters but `/`, `?` one such character.
pub fn glob(pattern: &str, name: &str) -> bool {
    fn go(p: &[char], n: &[char]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some(('*', rest)) => (0..=n.len())
                .take_while(|&i| i == 0 || n[i - 1] != '/')
                .any(|i| go(rest, &n[i..])),
            Some(('?', rest)) => n.first().is_some_and(|c| *c != '/') && go(rest, &n[1..]),
            Some((c, rest)) => n.first() == Some(c) && go(rest, &n[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    go(&p, &n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches_like_go_path_match() {
        assert!(glob("busy*", "busybox"));
        assert!(glob("*/busybox", "berth/busybox"));
        assert!(!glob("*", "berth/busybox"));
        assert!(glob("b?sybox:*", "busybox:latest"));
    }
}
