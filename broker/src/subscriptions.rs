//! The subscription tree: which subscriptions match a topic, without scanning.
//!
//! A trie over topic levels, with `+` and `#` as special children. Each node
//! holds the plain subscriptions of its filter and its shared-subscription
//! groups. The tree is generic over the stored value, so it knows nothing of
//! sessions: the router decides what a match means.

use crate::topic::{TopicFilter, TopicName};

/// A client's key in the tree: one subscription per client and filter (and
/// share group).
pub type ClientKey = u64;

/// The subscriptions of one node whose filter matched a topic.
#[derive(Debug)]
pub struct NodeMatch<'a, V> {
    /// Plain subscriptions on this filter.
    pub plain: &'a [(ClientKey, V)],
    /// Shared-subscription groups on this filter.
    pub shared: &'a [SharedGroup<V>],
}

/// The members of one `$share/{group}/{filter}`.
#[derive(Debug)]
pub struct SharedGroup<V> {
    _v: Vec<(ClientKey, V)>,
}

impl<V> SharedGroup<V> {
    /// The group name.
    pub fn name(&self) -> &str {
        unimplemented!()
    }

    /// The members, in subscription order.
    pub fn members(&self) -> &[(ClientKey, V)] {
        unimplemented!()
    }

    /// Picks a member round-robin: the next one for which `eligible` holds,
    /// or the next one regardless when none does. `None` when empty.
    pub fn pick(&self, eligible: impl Fn(&V) -> bool) -> Option<&(ClientKey, V)> {
        let _ = eligible;
        unimplemented!()
    }
}

/// The subscriptions of one topic namespace (one mountpoint).
#[derive(Debug)]
pub struct SubscriptionTree<V> {
    _v: Vec<V>,
}

impl<V> Default for SubscriptionTree<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V> SubscriptionTree<V> {
    /// An empty tree.
    pub fn new() -> Self {
        unimplemented!()
    }

    /// Adds `client`'s subscription to `filter`, or replaces it; returns the
    /// value it replaced.
    pub fn insert(&mut self, filter: &TopicFilter, client: ClientKey, value: V) -> Option<V> {
        let _ = (filter, client, value);
        unimplemented!()
    }

    /// Removes `client`'s subscription to `filter`; prunes emptied nodes.
    pub fn remove(&mut self, filter: &TopicFilter, client: ClientKey) -> Option<V> {
        let _ = (filter, client);
        unimplemented!()
    }

    /// Adds or replaces `client`'s membership of `$share/{group}/{filter}`.
    pub fn insert_shared(
        &mut self,
        group: &str,
        filter: &TopicFilter,
        client: ClientKey,
        value: V,
    ) -> Option<V> {
        let _ = (group, filter, client, value);
        unimplemented!()
    }

    /// Removes `client` from `$share/{group}/{filter}`; prunes emptied nodes.
    pub fn remove_shared(
        &mut self,
        group: &str,
        filter: &TopicFilter,
        client: ClientKey,
    ) -> Option<V> {
        let _ = (group, filter, client);
        unimplemented!()
    }

    /// The group `$share/{group}/{filter}`, if it has members.
    pub fn shared_group(&self, group: &str, filter: &TopicFilter) -> Option<&SharedGroup<V>> {
        let _ = (group, filter);
        unimplemented!()
    }

    /// Number of subscriptions (plain ones plus shared memberships).
    pub fn len(&self) -> usize {
        unimplemented!()
    }

    /// Whether the tree holds no subscription.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls `visit` once for every node whose filter matches `topic`.
    pub fn for_each_match<'a>(&'a self, topic: &TopicName, visit: impl FnMut(NodeMatch<'a, V>)) {
        let _ = (topic, visit);
        unimplemented!()
    }
}
