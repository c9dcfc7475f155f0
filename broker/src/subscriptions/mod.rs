//! The subscription tree: which subscriptions match a topic, without scanning.
//!
//! A trie over topic levels, with `+` and `#` as special children. Each node
//! holds the plain subscriptions of its filter and its shared-subscription
//! groups. The tree is generic over the stored value, so it knows nothing of
//! sessions: the router decides what a match means.
//!
//! Matching a topic walks the trie level by level, following at each node the
//! exact child, the `+` child and the `#` child, with a small on-stack work
//! list: it does not allocate unless the topic is unusually deep.

mod list;
mod node;
mod shared;
#[cfg(test)]
mod tests;

use node::Node;
pub use shared::SharedGroup;

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

/// The subscriptions of one topic namespace (one mountpoint).
#[derive(Debug)]
pub struct SubscriptionTree<V> {
    root: Node<V>,
    /// Plain subscriptions plus shared memberships.
    len: usize,
}

impl<V> Default for SubscriptionTree<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V> SubscriptionTree<V> {
    /// An empty tree.
    pub fn new() -> Self {
        Self {
            root: Node::new(),
            len: 0,
        }
    }

    /// Adds `client`'s subscription to `filter`, or replaces it; returns the
    /// value it replaced.
    pub fn insert(&mut self, filter: &TopicFilter, client: ClientKey, value: V) -> Option<V> {
        let old = self.root.find_or_create(filter).plain.insert(client, value);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Removes `client`'s subscription to `filter`; prunes emptied nodes.
    pub fn remove(&mut self, filter: &TopicFilter, client: ClientKey) -> Option<V> {
        let old = self.root.remove_path(
            filter,
            |node| {
                let only = node.plain.len() == 1 && node.shared.is_empty();
                node.plain.contains(client).then_some(only)
            },
            |node| node.plain.remove(client),
        );
        if old.is_some() {
            self.len -= 1;
        }
        old
    }

    /// `client`'s subscription to `filter`, if any.
    pub fn get(&self, filter: &TopicFilter, client: ClientKey) -> Option<&V> {
        self.root.find(filter)?.plain.get(client)
    }

    /// Adds or replaces `client`'s membership of `$share/{group}/{filter}`.
    pub fn insert_shared(
        &mut self,
        group: &str,
        filter: &TopicFilter,
        client: ClientKey,
        value: V,
    ) -> Option<V> {
        let node = self.root.find_or_create(filter);
        let at = match node.shared.iter().position(|g| g.name() == group) {
            Some(at) => at,
            None => {
                node.shared.push(SharedGroup::new(group));
                node.shared.len() - 1
            }
        };
        let old = node.shared.get_mut(at)?.list_mut().insert(client, value);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Removes `client` from `$share/{group}/{filter}`; prunes emptied nodes.
    pub fn remove_shared(
        &mut self,
        group: &str,
        filter: &TopicFilter,
        client: ClientKey,
    ) -> Option<V> {
        let old = self.root.remove_path(
            filter,
            |node| {
                let members = node.group(group)?.list();
                let only = node.plain.is_empty() && node.shared.len() == 1 && members.len() == 1;
                members.contains(client).then_some(only)
            },
            |node| {
                let at = node.shared.iter().position(|g| g.name() == group)?;
                let members = node.shared.get_mut(at)?.list_mut();
                let old = members.remove(client);
                if members.is_empty() {
                    node.shared.swap_remove(at);
                }
                old
            },
        );
        if old.is_some() {
            self.len -= 1;
        }
        old
    }

    /// The group `$share/{group}/{filter}`, if it has members.
    pub fn shared_group(&self, group: &str, filter: &TopicFilter) -> Option<&SharedGroup<V>> {
        self.root.find(filter)?.group(group)
    }

    /// Number of subscriptions (plain ones plus shared memberships).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the tree holds no subscription.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls `visit` once for every node whose filter matches `topic` and
    /// that holds subscriptions. The order of the nodes is unspecified.
    pub fn for_each_match<'a>(
        &'a self,
        topic: &TopicName,
        mut visit: impl FnMut(NodeMatch<'a, V>),
    ) {
        let topic_str = topic.as_str();
        let end = topic_str.len();
        let dollar = topic.is_dollar();
        let mut stack = WorkStack::new();
        stack.push(Frame {
            node: &self.root,
            pos: 0,
        });
        while let Some(Frame { node, pos }) = stack.pop() {
            // `pos` is where the node's next topic level starts; past the end
            // when the topic is used up.
            let Some(rest) = topic_str.get(pos..) else {
                // The topic ends at this node: its own filter matches, and so
                // does its `#` child ("a/#" matches "a").
                visit_node(node, &mut visit);
                if let Some(hash) = &node.hash {
                    visit_node(hash, &mut visit);
                }
                continue;
            };
            let (level, next) = match rest.find('/') {
                Some(i) => (&rest[..i], pos + i + 1),
                None => (rest, end + 1),
            };
            // A leading wildcard does not match a `$` topic.
            if !(dollar && pos == 0) {
                if let Some(hash) = &node.hash {
                    visit_node(hash, &mut visit);
                }
                if let Some(plus) = &node.plus {
                    stack.push(Frame {
                        node: plus,
                        pos: next,
                    });
                }
            }
            if let Some(child) = node.children.get(level) {
                stack.push(Frame {
                    node: child,
                    pos: next,
                });
            }
        }
    }

    /// Number of nodes, the root included (1 when empty).
    #[cfg(test)]
    pub fn node_count(&self) -> usize {
        self.root.count()
    }
}

fn visit_node<'a, V>(node: &'a Node<V>, visit: &mut impl FnMut(NodeMatch<'a, V>)) {
    if node.has_subs() {
        visit(NodeMatch {
            plain: node.plain.as_slice(),
            shared: &node.shared,
        });
    }
}

/// A node still to visit while matching, and where its topic level starts.
struct Frame<'a, V> {
    node: &'a Node<V>,
    pos: usize,
}

// Not derived: derives would require `V: Clone`.
impl<V> Clone for Frame<'_, V> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<V> Copy for Frame<'_, V> {}

/// Frames kept on the stack; the matching walk holds at most one frame per
/// topic level plus one, so this covers topics of up to 31 levels.
const INLINE_FRAMES: usize = 32;

/// A LIFO work list that lives on the stack and spills to the heap only when
/// it outgrows [`INLINE_FRAMES`].
struct WorkStack<'a, V> {
    inline: [Option<Frame<'a, V>>; INLINE_FRAMES],
    len: usize,
    spill: Vec<Frame<'a, V>>,
}

impl<'a, V> WorkStack<'a, V> {
    fn new() -> Self {
        Self {
            inline: [None; INLINE_FRAMES],
            len: 0,
            spill: Vec::new(),
        }
    }

    fn push(&mut self, frame: Frame<'a, V>) {
        // The spill only grows while the inline part is full, so popping it
        // first keeps the whole LIFO.
        match self.inline.get_mut(self.len) {
            Some(slot) if self.spill.is_empty() => {
                *slot = Some(frame);
                self.len += 1;
            }
            _ => self.spill.push(frame),
        }
    }

    fn pop(&mut self) -> Option<Frame<'a, V>> {
        if let Some(frame) = self.spill.pop() {
            return Some(frame);
        }
        self.len = self.len.checked_sub(1)?;
        self.inline.get_mut(self.len)?.take()
    }
}
