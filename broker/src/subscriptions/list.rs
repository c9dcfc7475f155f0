//! A dense list of `(ClientKey, V)` entries with O(1)-ish insert, replace and
//! remove, used for the plain subscriptions of a filter and for the members of
//! a shared group.
//!
//! Entries live in one `Vec` (iterated on every match). Small lists are
//! searched linearly; once a list grows past [`INDEX_ABOVE`] entries, a
//! `ClientKey -> position` index is built so that a filter with 100k
//! subscribers still inserts and removes in constant time. Removal is a
//! `swap_remove`, fixing the index entry of the moved element.

use std::collections::HashMap;

use foldhash::fast::RandomState;

use super::ClientKey;

/// Above this many entries, positions are indexed by key.
const INDEX_ABOVE: usize = 16;
/// Below this many entries, the index is dropped again (hysteresis, so a list
/// hovering around the threshold does not rebuild it on every change).
const UNINDEX_BELOW: usize = 8;

/// Entries keyed by client, in a dense vector.
#[derive(Debug)]
pub(super) struct SubList<V> {
    entries: Vec<(ClientKey, V)>,
    /// When present, maps every key in `entries` to its position.
    #[expect(
        clippy::box_collection,
        reason = "boxed so that the many small, unindexed lists stay one pointer wide"
    )]
    index: Option<Box<HashMap<ClientKey, usize, RandomState>>>,
}

impl<V> SubList<V> {
    pub(super) const fn new() -> Self {
        Self {
            entries: Vec::new(),
            index: None,
        }
    }

    pub(super) fn as_slice(&self) -> &[(ClientKey, V)] {
        &self.entries
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn position(&self, key: ClientKey) -> Option<usize> {
        match &self.index {
            Some(index) => index.get(&key).copied(),
            None => self.entries.iter().position(|(k, _)| *k == key),
        }
    }

    pub(super) fn get(&self, key: ClientKey) -> Option<&V> {
        let pos = self.position(key)?;
        self.entries.get(pos).map(|(_, v)| v)
    }

    pub(super) fn contains(&self, key: ClientKey) -> bool {
        self.position(key).is_some()
    }

    /// Adds or replaces the entry of `key`; returns the replaced value.
    pub(super) fn insert(&mut self, key: ClientKey, value: V) -> Option<V> {
        if let Some(pos) = self.position(key) {
            if let Some((_, old)) = self.entries.get_mut(pos) {
                return Some(std::mem::replace(old, value));
            }
        }
        self.entries.push((key, value));
        let len = self.entries.len();
        match &mut self.index {
            Some(index) => {
                index.insert(key, len - 1);
            }
            None if len > INDEX_ABOVE => {
                let index = self
                    .entries
                    .iter()
                    .enumerate()
                    .map(|(pos, (k, _))| (*k, pos))
                    .collect();
                self.index = Some(Box::new(index));
            }
            None => {}
        }
        None
    }

    /// Removes the entry of `key`; returns its value.
    pub(super) fn remove(&mut self, key: ClientKey) -> Option<V> {
        let pos = self.position(key)?;
        let (_, value) = self.entries.swap_remove(pos);
        let len = self.entries.len();
        if len < UNINDEX_BELOW {
            self.index = None;
        } else if let Some(index) = &mut self.index {
            index.remove(&key);
            if let Some((moved, _)) = self.entries.get(pos) {
                index.insert(*moved, pos);
            }
            if index.capacity() > 64 && len < index.capacity() / 4 {
                index.shrink_to(len * 2);
            }
        }
        if self.entries.capacity() > 64 && len < self.entries.capacity() / 4 {
            self.entries.shrink_to(len * 2);
        }
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_kept_consistent_through_growth_and_shrink() {
        let mut list = SubList::new();
        for k in 0..100u64 {
            assert_eq!(list.insert(k, k * 10), None);
        }
        assert!(list.index.is_some());
        assert_eq!(list.insert(42, 7), Some(420));
        // Remove from the front so swap_remove moves the last entries around.
        for k in 0..95u64 {
            let expected = if k == 42 { 7 } else { k * 10 };
            assert_eq!(list.remove(k), Some(expected), "key {k}");
            assert_eq!(list.remove(k), None);
            for (pos, (key, _)) in list.as_slice().iter().enumerate() {
                assert_eq!(list.position(*key), Some(pos));
            }
        }
        assert!(list.index.is_none());
        assert_eq!(list.len(), 5);
        for k in 95..100u64 {
            assert_eq!(list.get(k), Some(&(k * 10)));
        }
    }
}
