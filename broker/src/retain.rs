//! The retained-message store: one value per topic name, found by topic
//! filter without scanning every topic.

use crate::topic::{TopicFilter, TopicName};

/// Retained values of one topic namespace (one mountpoint), in a trie over
/// topic levels.
#[derive(Debug)]
pub struct RetainTree<V> {
    _v: Vec<V>,
}

impl<V> Default for RetainTree<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V> RetainTree<V> {
    /// An empty store.
    pub fn new() -> Self {
        unimplemented!()
    }

    /// Sets the value of `topic`; returns the value it replaced.
    pub fn insert(&mut self, topic: &TopicName, value: V) -> Option<V> {
        let _ = (topic, value);
        unimplemented!()
    }

    /// Clears `topic`; prunes emptied nodes.
    pub fn remove(&mut self, topic: &TopicName) -> Option<V> {
        let _ = topic;
        unimplemented!()
    }

    /// Number of retained values.
    pub fn len(&self) -> usize {
        unimplemented!()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls `visit` for every value whose topic matches `filter` (a leading
    /// wildcard does not match `$` topics).
    pub fn for_each_match<'a>(&'a self, filter: &TopicFilter, visit: impl FnMut(&'a V)) {
        let _ = (filter, visit);
        unimplemented!()
    }

    /// Keeps only the values for which `keep` holds (used to purge expired
    /// messages); prunes emptied nodes.
    pub fn retain(&mut self, keep: impl FnMut(&V) -> bool) {
        let _ = keep;
        unimplemented!()
    }
}
