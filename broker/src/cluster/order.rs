//! The order of a replicated key-value bucket on one node: a node applies
//! its own writes at once and the bucket's entries as its watch delivers
//! them, and must end with the bucket's last value of each key.
//!
//! Per key with writes of this node on their way, [`Pending`] keeps how
//! many are in flight, the highest revision JetStream gave them, and the
//! newest entry of the watch held meanwhile. While a write is in flight no
//! entry of the key is applied (the node's own value is newer than what
//! the watch has delivered so far, or it is the node's own); once none is,
//! an entry applies only if its revision is above the node's last write.
//! Revisions, not the node's own entries coming back, decide: a bucket
//! that keeps one value per key may never deliver an entry the next write
//! replaced.

use std::collections::HashMap;

#[derive(Debug)]
struct Slot<V> {
    in_flight: u32,
    /// The highest revision of this node's writes that JetStream took.
    acked: u64,
    /// The newest entry delivered while writes were in flight.
    held: Option<(u64, V)>,
}

/// This node's writes on their way, per key.
#[derive(Debug)]
pub(crate) struct Pending<V> {
    slots: HashMap<String, Slot<V>>,
}

impl<V> Default for Pending<V> {
    fn default() -> Self {
        Pending {
            slots: HashMap::new(),
        }
    }
}

impl<V> Pending<V> {
    /// This node sent a write of `key` (and applied it itself).
    pub(crate) fn sent(&mut self, key: &str) {
        self.slots
            .entry(key.to_owned())
            .or_insert(Slot {
                in_flight: 0,
                acked: 0,
                held: None,
            })
            .in_flight += 1;
    }

    /// JetStream took a write of `key` as `revision` (`None`: the write
    /// failed). Returns an entry held meanwhile that is newer than every
    /// write of this node: apply it now.
    pub(crate) fn acked(&mut self, key: &str, revision: Option<u64>) -> Option<V> {
        let slot = self.slots.get_mut(key)?;
        slot.in_flight = slot.in_flight.saturating_sub(1);
        if let Some(r) = revision {
            slot.acked = slot.acked.max(r);
        }
        if slot.in_flight > 0 {
            return None;
        }
        let acked = slot.acked;
        let newer = slot.held.take().filter(|(r, _)| *r > acked);
        if newer.is_some() || acked == 0 {
            // The watch is past this node's writes (or none was stored).
            self.slots.remove(key);
        }
        newer.map(|(_, v)| v)
    }

    /// The watch delivered `value` of `key` at `revision`: returns it if it
    /// applies now.
    pub(crate) fn entry(&mut self, key: &str, revision: u64, value: V) -> Option<V> {
        let mut value = Some(value);
        if self.admit(key, revision, || value.take()) {
            value
        } else {
            None
        }
    }

    /// Whether the watch's entry of `key` at `revision` applies now;
    /// `hold` gives it to keep while this node's writes are in flight.
    pub(crate) fn admit(
        &mut self,
        key: &str,
        revision: u64,
        hold: impl FnOnce() -> Option<V>,
    ) -> bool {
        let Some(slot) = self.slots.get_mut(key) else {
            return true;
        };
        if slot.in_flight > 0 {
            if slot.held.as_ref().is_none_or(|(r, _)| revision > *r) {
                slot.held = hold().map(|v| (revision, v));
            }
            return false;
        }
        let acked = slot.acked;
        if revision >= acked {
            // The watch is at or past this node's last write.
            self.slots.remove(key);
        }
        revision > acked
    }

    /// Whether this node has writes of `key` it has not seen the bucket
    /// pass.
    pub(crate) fn contains(&self, key: &str) -> bool {
        self.slots.contains_key(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_apply_by_revision_around_own_writes() {
        let mut p = Pending::default();
        assert_eq!(
            p.entry("k", 1, "theirs"),
            Some("theirs"),
            "no write of ours"
        );
        // Two writes of ours on their way; the bucket keeps only the last
        // per key, so the first may never come back.
        p.sent("k");
        p.sent("k");
        assert_eq!(p.entry("k", 2, "older"), None, "held while in flight");
        assert_eq!(p.acked("k", Some(3)), None);
        assert_eq!(p.acked("k", Some(4)), None, "held entry is older than ours");
        assert_eq!(p.entry("k", 3, "ours"), None);
        assert_eq!(p.entry("k", 4, "ours"), None, "our own last write");
        assert_eq!(p.entry("k", 5, "later"), Some("later"));
    }

    #[test]
    fn a_newer_entry_held_in_flight_applies_at_the_ack() {
        let mut p = Pending::default();
        p.sent("k");
        // Another node's later write replaced ours before our watch saw it.
        assert_eq!(p.entry("k", 8, "newer"), None);
        assert_eq!(p.acked("k", Some(7)), Some("newer"));
        assert_eq!(p.entry("k", 9, "next"), Some("next"));
    }

    #[test]
    fn a_failed_write_lets_the_others_apply() {
        let mut p = Pending::default();
        p.sent("k");
        assert_eq!(p.entry("k", 2, "theirs"), None);
        assert_eq!(p.acked("k", None), Some("theirs"));
        assert_eq!(p.entry("k", 3, "more"), Some("more"));
        // An ack for a key with nothing in flight changes nothing.
        assert_eq!(p.acked("j", Some(1)), None);
    }
}
