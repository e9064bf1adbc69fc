//! Upstream answers kept for their TTL, so a container asking the same name again (most
//! programs resolve on every connection) costs no round trip to the host's resolvers.
//!
//! Positive answers live for the smallest TTL among their records, negative ones (NXDOMAIN,
//! or no records of the type) for the SOA's negative TTL as RFC 2308 says; both are capped so
//! that a bad upstream cannot pin a name for days. The cache is bounded: when full, expired
//! entries go first, then the one closest to expiring.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{DNSClass, RData, RecordType};

/// The longest a positive answer is kept, whatever its TTL says.
pub const MAX_TTL: u32 = 3600;
/// The longest a negative answer is kept.
pub const MAX_NEGATIVE_TTL: u32 = 300;

/// One question as the cache tells them apart: the DNSSEC bits change what an upstream puts
/// in the answer, so they are part of the key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    name: String,
    qtype: RecordType,
    qclass: DNSClass,
    dnssec_ok: bool,
    checking_disabled: bool,
}

impl Key {
    /// The key of a query with exactly one question (what resolvers send); None otherwise.
    pub fn of(query: &Message) -> Option<Key> {
        let [q] = query.queries.as_slice() else {
            return None;
        };
        Some(Key {
            name: q.name().to_ascii().to_ascii_lowercase(),
            qtype: q.query_type(),
            qclass: q.query_class(),
            dnssec_ok: query.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok),
            checking_disabled: query.metadata.checking_disabled,
        })
    }
}

struct Entry {
    msg: Message,
    stored: Instant,
    expires: Instant,
}

pub struct Cache {
    entries: HashMap<Key, Entry>,
    capacity: usize,
}

/// How long `reply` may be kept; None when it must not be (errors, truncated, TTL 0).
pub fn ttl_of(reply: &Message) -> Option<u32> {
    if reply.metadata.truncation {
        return None;
    }
    let ttl = match reply.metadata.response_code {
        ResponseCode::NoError if !reply.answers.is_empty() => {
            reply.answers.iter().map(|r| r.ttl).min()?.min(MAX_TTL)
        }
        ResponseCode::NoError | ResponseCode::NXDomain => reply
            .authorities
            .iter()
            .find_map(|r| match &r.data {
                RData::SOA(soa) => Some(r.ttl.min(soa.minimum)),
                _ => None,
            })?
            .min(MAX_NEGATIVE_TTL),
        _ => return None, // SERVFAIL, REFUSED...: ask again next time
    };
    (ttl > 0).then_some(ttl)
}

impl Cache {
    pub fn new(capacity: usize) -> Cache {
        Cache {
            entries: HashMap::new(),
            capacity: capacity.max(1),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// The stored answer with its TTLs lowered by the time it has spent here.
    pub fn get(&mut self, key: &Key, now: Instant) -> Option<Message> {
        let e = self.entries.get(key)?;
        if now >= e.expires {
            self.entries.remove(key);
            return None;
        }
        let age = now.duration_since(e.stored).as_secs() as u32;
        let mut msg = e.msg.clone();
        for r in msg
            .answers
            .iter_mut()
            .chain(msg.authorities.iter_mut())
            .chain(msg.additionals.iter_mut())
        {
            r.ttl = r.ttl.saturating_sub(age);
        }
        Some(msg)
    }

    /// Keeps `reply` if it may be kept.
    pub fn insert(&mut self, key: Key, reply: &Message, now: Instant) {
        let Some(ttl) = ttl_of(reply) else { return };
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&key) {
            self.entries.retain(|_, e| e.expires > now);
            if self.entries.len() >= self.capacity {
                let soonest = self
                    .entries
                    .iter()
                    .min_by_key(|(_, e)| e.expires)
                    .map(|(k, _)| k.clone());
                if let Some(k) = soonest {
                    self.entries.remove(&k);
                }
            }
        }
        self.entries.insert(
            key,
            Entry {
                msg: reply.clone(),
                stored: now,
                expires: now + Duration::from_secs(ttl.into()),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{OpCode, Query};
    use hickory_proto::rr::rdata::{A, SOA};
    use hickory_proto::rr::{Name, Record};
    use std::str::FromStr;

    fn query(name: &str) -> Message {
        let mut m = Message::query();
        m.add_query(Query::query(Name::from_str(name).unwrap(), RecordType::A));
        m
    }

    fn answer(name: &str, ttls: &[u32]) -> Message {
        let mut m = Message::response(1, OpCode::Query);
        m.add_query(Query::query(Name::from_str(name).unwrap(), RecordType::A));
        for (i, ttl) in ttls.iter().enumerate() {
            let ip = std::net::Ipv4Addr::new(10, 0, 0, i as u8 + 1);
            m.add_answer(Record::from_rdata(
                Name::from_str(name).unwrap(),
                *ttl,
                RData::A(A(ip)),
            ));
        }
        m
    }

    fn nxdomain(name: &str, soa_ttl: u32, minimum: u32) -> Message {
        let mut m = answer(name, &[]);
        m.metadata.response_code = ResponseCode::NXDomain;
        let zone = Name::from_str("example.").unwrap();
        m.add_authority(Record::from_rdata(
            zone.clone(),
            soa_ttl,
            RData::SOA(SOA::new(zone.clone(), zone, 1, 2, 3, 4, minimum)),
        ));
        m
    }

    #[test]
    fn ttls_positive_negative_and_never() {
        assert_eq!(ttl_of(&answer("a.example.", &[30, 10, 20])), Some(10));
        assert_eq!(ttl_of(&answer("a.example.", &[999_999])), Some(MAX_TTL));
        assert_eq!(ttl_of(&answer("a.example.", &[0])), None);
        assert_eq!(ttl_of(&nxdomain("a.example.", 60, 30)), Some(30));
        assert_eq!(ttl_of(&nxdomain("a.example.", 9000, 9000)), Some(300));
        // No SOA: nothing says how long the name is absent.
        let mut nx = answer("a.example.", &[]);
        nx.metadata.response_code = ResponseCode::NXDomain;
        assert_eq!(ttl_of(&nx), None);
        let mut fail = answer("a.example.", &[60]);
        fail.metadata.response_code = ResponseCode::ServFail;
        assert_eq!(ttl_of(&fail), None);
        let mut tc = answer("a.example.", &[60]);
        tc.metadata.truncation = true;
        assert_eq!(ttl_of(&tc), None);
    }

    #[test]
    fn entries_age_expire_and_keys_ignore_case() {
        let mut c = Cache::new(8);
        let t0 = Instant::now();
        let k = Key::of(&query("Www.Example.")).unwrap();
        c.insert(k, &answer("www.example.", &[10]), t0);
        let k = Key::of(&query("www.example.")).unwrap();
        let hit = c.get(&k, t0 + Duration::from_secs(4)).unwrap();
        assert_eq!(hit.answers[0].ttl, 6, "TTL lowered by the age");
        assert!(c.get(&k, t0 + Duration::from_secs(10)).is_none(), "expired");
        assert!(c.is_empty(), "expired entry dropped");
    }

    #[test]
    fn bounded_evicting_expired_then_soonest() {
        let mut c = Cache::new(2);
        let t0 = Instant::now();
        let key = |n: &str| Key::of(&query(n)).unwrap();
        c.insert(key("a.x."), &answer("a.x.", &[5]), t0);
        c.insert(key("b.x."), &answer("b.x.", &[100]), t0);
        c.insert(key("c.x."), &answer("c.x.", &[50]), t0);
        assert_eq!(c.len(), 2);
        assert!(c.get(&key("a.x."), t0).is_none(), "soonest to expire went");
        let t1 = t0 + Duration::from_secs(60);
        c.insert(key("d.x."), &answer("d.x.", &[50]), t1);
        assert!(c.get(&key("c.x."), t1).is_none(), "expired went first");
        assert!(c.get(&key("b.x."), t1).is_some());
        assert!(c.get(&key("d.x."), t1).is_some());
    }
}
