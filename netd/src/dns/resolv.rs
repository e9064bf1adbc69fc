//! The host's resolv.conf: parsed for the upstream servers the DNS servers forward to and for
//! the lines containers inherit, and re-read only when the file changed.
//!
//! A change is seen by a stat on use (device, inode, size, modification time): a few
//! microseconds per forwarded query, no watcher thread, and it also catches the file being
//! replaced by a rename or a symlink being re-pointed (systemd-resolved, NetworkManager and
//! DHCP clients do both), which an inotify watch on the old inode would miss.

use std::net::{IpAddr, SocketAddr, SocketAddrV6};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// What we use of a resolv.conf.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ResolvConf {
    /// `nameserver` lines in order, port 53 (scoped IPv6 link-local ones with their scope).
    pub nameservers: Vec<SocketAddr>,
    /// `search` and `options` lines as written, for containers' own resolv.conf.
    pub search_options: Vec<String>,
}

impl ResolvConf {
    pub fn parse(text: &str) -> ResolvConf {
        let mut conf = ResolvConf::default();
        for line in text.lines() {
            let line = line.trim();
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => {
                    if let Some(addr) = words.next().and_then(nameserver) {
                        conf.nameservers.push(addr);
                    }
                }
                Some("search" | "domain" | "options") => {
                    conf.search_options.push(words_of(line));
                }
                _ => {} // comments (# or ;), sortlist and anything unknown
            }
        }
        conf
    }

    /// Reads `path`; a missing or unreadable file is an empty configuration.
    pub fn read(path: &std::path::Path) -> ResolvConf {
        ResolvConf::parse(&std::fs::read_to_string(path).unwrap_or_default())
    }
}

/// Collapses runs of blanks, so `search\ta  b` comes out as `search a b`.
fn words_of(line: &str) -> String {
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `1.2.3.4`, `2001:db8::1`, or `fe80::1%eth0` (glibc's scoped form).
fn nameserver(word: &str) -> Option<SocketAddr> {
    if let Ok(ip) = word.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, 53));
    }
    let (ip, scope) = word.split_once('%')?;
    let ip = ip.parse().ok()?;
    let scope = scope.parse::<u32>().ok().or_else(|| if_index(scope))?;
    Some(SocketAddr::V6(SocketAddrV6::new(ip, 53, 0, scope)))
}

fn if_index(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: c is a valid NUL-terminated string for the duration of the call.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i)
}

/// What identifies one version of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
}

fn stamp(path: &std::path::Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        dev: m.dev(),
        ino: m.ino(),
        size: m.size(),
        mtime: m.mtime(),
        mtime_nsec: m.mtime_nsec(),
    })
}

/// The current contents of one resolv.conf, re-parsed when the file changes; or a fixed
/// list of servers (no file).
pub struct Watch {
    path: Option<PathBuf>,
    current: Mutex<(Option<Stamp>, Arc<ResolvConf>)>,
    fixed: Vec<SocketAddr>,
}

impl Watch {
    pub fn new(path: impl Into<PathBuf>) -> Watch {
        let path = path.into();
        let s = stamp(&path);
        let conf = Arc::new(ResolvConf::read(&path));
        Watch {
            path: Some(path),
            current: Mutex::new((s, conf)),
            fixed: Vec::new(),
        }
    }

    /// `servers`, always: nothing to watch.
    pub fn fixed(servers: Vec<SocketAddr>) -> Watch {
        let conf = ResolvConf {
            nameservers: servers.clone(),
            search_options: Vec::new(),
        };
        Watch {
            path: None,
            current: Mutex::new((None, Arc::new(conf))),
            fixed: servers,
        }
    }

    pub fn fixed_servers(&self) -> &[SocketAddr] {
        &self.fixed
    }

    /// The configuration now, and whether it differs from what the last call returned.
    pub fn get(&self) -> (Arc<ResolvConf>, bool) {
        let Some(path) = &self.path else {
            return (
                self.current.lock().expect("resolv watch lock").1.clone(),
                false,
            );
        };
        let s = stamp(path);
        let mut cur = self.current.lock().expect("resolv watch lock");
        if s == cur.0 {
            return (cur.1.clone(), false);
        }
        let conf = ResolvConf::read(path);
        let changed = conf != *cur.1;
        if changed {
            tracing::info!("{}: nameservers now {:?}", path.display(), conf.nameservers);
        }
        *cur = (s, Arc::new(conf));
        (cur.1.clone(), changed)
    }
}

/// A container's resolv.conf: `base` (what netd gives: the network's DNS server, or the
/// host's resolvers, then the host's search and options lines) under the container's own
/// settings, as Docker applies them. Its servers replace the nameservers unless the
/// container uses a network's DNS server (`embedded`), which forwards to them instead; its
/// search domains and options replace the host's (`--dns-search .`: none).
pub fn for_container(base: &str, own: &crate::state::SandboxDns, embedded: bool) -> String {
    if own.servers.is_empty() && own.search.is_empty() && own.options.is_empty() {
        return base.to_string();
    }
    let starts = |l: &str, words: &[&str]| {
        words
            .iter()
            .any(|w| l.split_whitespace().next() == Some(*w))
    };
    let mut out = String::new();
    if embedded || own.servers.is_empty() {
        for l in base.lines().filter(|l| starts(l, &["nameserver"])) {
            out.push_str(l);
            out.push('\n');
        }
    } else {
        for s in &own.servers {
            out.push_str(&format!("nameserver {s}\n"));
        }
    }
    let search: Vec<&String> = own.search.iter().filter(|s| s.as_str() != ".").collect();
    if own.search.is_empty() {
        for l in base.lines().filter(|l| starts(l, &["search", "domain"])) {
            out.push_str(l);
            out.push('\n');
        }
    } else if !search.is_empty() {
        let words: Vec<&str> = search.iter().map(|s| s.as_str()).collect();
        out.push_str(&format!("search {}\n", words.join(" ")));
    }
    if own.options.is_empty() {
        for l in base.lines().filter(|l| starts(l, &["options"])) {
            out.push_str(l);
            out.push('\n');
        }
    } else {
        out.push_str(&format!("options {}\n", own.options.join(" ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_containers_own_settings_over_what_netd_gives() {
        let base = "nameserver 10.234.1.1\nsearch lan\noptions edns0\n";
        let own = |servers: &[&str], search: &[&str], options: &[&str]| crate::state::SandboxDns {
            servers: servers.iter().map(|s| s.to_string()).collect(),
            search: search.iter().map(|s| s.to_string()).collect(),
            options: options.iter().map(|s| s.to_string()).collect(),
        };
        assert_eq!(for_container(base, &own(&[], &[], &[]), true), base);
        // On a user network the network's server stays: it forwards to the container's.
        assert_eq!(
            for_container(base, &own(&["10.9.0.1"], &[], &[]), true),
            base
        );
        assert_eq!(
            for_container(
                base,
                &own(&["10.9.0.1"], &["a.example"], &["ndots:2"]),
                true
            ),
            "nameserver 10.234.1.1\nsearch a.example\noptions ndots:2\n"
        );
        // Elsewhere the container's servers are its nameservers.
        assert_eq!(
            for_container(base, &own(&["10.9.0.1", "10.9.0.2"], &["."], &[]), false),
            "nameserver 10.9.0.1\nnameserver 10.9.0.2\noptions edns0\n"
        );
    }

    #[test]
    fn parses_nameservers_search_options_and_skips_the_rest() {
        let c = ResolvConf::parse(
            "# comment\n; other comment\nnameserver 10.0.0.1\nnameserver\t127.0.0.53 # x\n\
             nameserver not-an-address\nnameserver 2001:db8::1\nnameserver fe80::1%1\n\
             search\ta.example  b.example\noptions edns0 trust-ad\nsortlist 10.0.0.0\n",
        );
        let ns: Vec<String> = c.nameservers.iter().map(|a| a.to_string()).collect();
        assert_eq!(
            ns,
            [
                "10.0.0.1:53",
                "127.0.0.53:53",
                "[2001:db8::1]:53",
                "[fe80::1%1]:53"
            ]
        );
        assert_eq!(
            c.search_options,
            ["search a.example b.example", "options edns0 trust-ad"]
        );
    }

    #[test]
    fn watch_sees_a_rewrite_a_rename_and_a_removal() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("resolv.conf");
        std::fs::write(&p, "nameserver 10.0.0.1\n").unwrap();
        let w = Watch::new(&p);
        let (c, changed) = w.get();
        assert!(!changed);
        assert_eq!(c.nameservers[0].to_string(), "10.0.0.1:53");
        // Same size, rewritten in place: the modification time tells.
        std::thread::sleep(std::time::Duration::from_millis(10));
        std::fs::write(&p, "nameserver 10.0.0.2\n").unwrap();
        let (c, changed) = w.get();
        assert!(changed);
        assert_eq!(c.nameservers[0].to_string(), "10.0.0.2:53");
        assert!(!w.get().1, "unchanged file, no change reported");
        // Replaced by a rename, as resolvconf and NetworkManager do.
        let tmp = dir.path().join("new");
        std::fs::write(&tmp, "nameserver 10.0.0.3\nnameserver 10.0.0.4\n").unwrap();
        std::fs::rename(&tmp, &p).unwrap();
        let (c, changed) = w.get();
        assert!(changed);
        assert_eq!(c.nameservers.len(), 2);
        std::fs::remove_file(&p).unwrap();
        let (c, changed) = w.get();
        assert!(changed && c.nameservers.is_empty());
    }
}
