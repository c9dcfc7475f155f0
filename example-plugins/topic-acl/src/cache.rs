//! A bounded cache of read decisions per (subscriber, topic), so that a
//! steady stream of messages on one topic to one subscriber is decided by
//! the rules once. It lives in the instance's memory, not in the broker's
//! key-value store: a decision depends only on the configuration, which an
//! instance parses once (a configuration change makes new instances, with
//! empty caches, so nothing stale survives it), and a lookup here costs a
//! hash of the key where the key-value store would cost a host call. Each
//! instance has its own cache; the broker keeps a few instances per plugin.
//!
//! Bounded in entries and in bytes of keys (client ids and topics can be
//! long): when either bound would be passed, the cache is cleared and
//! starts over. Clearing is cheap and a steady stream refills the hot
//! entries at once, where eviction bookkeeping would cost every lookup.

use std::collections::HashMap;

/// The subscriber a decision is for: everything the rules look at.
#[derive(Clone, Copy, Debug)]
pub struct Key<'a> {
    pub username: Option<&'a str>,
    pub client_id: &'a str,
    pub mountpoint: &'a str,
    pub topic: &'a str,
}

/// Decisions by key, within `max_entries` and `max_bytes` of keys.
#[derive(Debug)]
pub struct DecisionCache<D> {
    map: HashMap<String, D>,
    bytes: usize,
    max_entries: usize,
    max_bytes: usize,
    /// The key being looked up (reused, so a hit allocates nothing).
    scratch: String,
}

impl<D: Copy> DecisionCache<D> {
    pub fn new(max_entries: usize, max_bytes: usize) -> Self {
        DecisionCache {
            map: HashMap::new(),
            bytes: 0,
            max_entries,
            max_bytes,
            scratch: String::new(),
        }
    }

    /// The cached decision for `key`, or `decide()`'s, which is cached
    /// unless the key alone is larger than the byte bound.
    pub fn get_or_insert_with(&mut self, key: Key<'_>, decide: impl FnOnce() -> D) -> D {
        encode(&mut self.scratch, key);
        if let Some(d) = self.map.get(self.scratch.as_str()) {
            return *d;
        }
        let d = decide();
        let size = self.scratch.len();
        if size > self.max_bytes {
            return d;
        }
        if self.map.len() >= self.max_entries || self.bytes + size > self.max_bytes {
            self.map.clear();
            self.bytes = 0;
        }
        self.bytes += size;
        self.map.insert(self.scratch.clone(), d);
        d
    }

    /// Entries held.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.len()
    }
}

/// Writes `key` unambiguously: each field but the last prefixed with its
/// length, so that no two keys share an encoding whatever they contain. A
/// missing username is the empty one: the rules treat them alike.
fn encode(out: &mut String, key: Key<'_>) {
    use std::fmt::Write;
    out.clear();
    for field in [key.username.unwrap_or(""), key.client_id, key.mountpoint] {
        // Writing to a String cannot fail.
        let _ = write!(out, "{}:{field}", field.len());
    }
    out.push_str(key.topic);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key<'a>(client_id: &'a str, topic: &'a str) -> Key<'a> {
        Key {
            username: None,
            client_id,
            mountpoint: "",
            topic,
        }
    }

    #[test]
    fn decisions_are_computed_once_per_key() {
        let mut cache = DecisionCache::new(16, 1024);
        let mut calls = 0;
        for _ in 0..3 {
            let d = cache.get_or_insert_with(key("c", "a/b"), || {
                calls += 1;
                true
            });
            assert!(d);
        }
        assert_eq!(calls, 1);
        assert!(!cache.get_or_insert_with(key("c", "private/x"), || false));
        assert!(!cache.get_or_insert_with(key("c", "private/x"), || true));
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn keys_are_unambiguous() {
        let mut cache = DecisionCache::new(16, 1024);
        let a = Key {
            username: Some("a"),
            client_id: "b:c",
            mountpoint: "",
            topic: "t",
        };
        let b = Key {
            username: Some("a1:b"),
            client_id: "c",
            mountpoint: "",
            topic: "t",
        };
        assert!(cache.get_or_insert_with(a, || true));
        assert!(!cache.get_or_insert_with(b, || false));
        assert!(!cache.get_or_insert_with(key("x", "t/1"), || false));
        assert!(cache.get_or_insert_with(key("x", "t"), || true));
        // No username and an empty one decide alike.
        let empty = Key {
            username: Some(""),
            ..key("x", "t")
        };
        assert!(cache.get_or_insert_with(empty, || false));
    }

    #[test]
    fn the_cache_stays_within_its_bounds() {
        let mut cache = DecisionCache::new(4, 1024);
        for i in 0..100 {
            let topic = format!("t/{i}");
            cache.get_or_insert_with(key("c", &topic), || i % 2 == 0);
            assert!(cache.len() <= 4);
        }
        let mut small = DecisionCache::new(1000, 64);
        for i in 0..100 {
            let topic = format!("topic/{i}");
            small.get_or_insert_with(key("client", &topic), || true);
            assert!(small.bytes <= 64);
        }
        // A key larger than the whole budget is decided, not cached.
        let long = "x".repeat(100);
        let mut calls = 0;
        for _ in 0..2 {
            small.get_or_insert_with(key("c", &long), || {
                calls += 1;
                true
            });
        }
        assert_eq!(calls, 2);
        assert!(small.bytes <= 64);
    }
}
