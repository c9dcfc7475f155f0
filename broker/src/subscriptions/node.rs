//! One node of the subscription trie, and the walks along a filter's path
//! (find, create, remove-and-prune).
//!
//! All walks are loops rather than recursion, and dropping a node frees its
//! subtree with an explicit stack: a topic may have some 32k levels, which
//! would overflow a thread's stack if every level took a call frame.

use std::collections::HashMap;

use foldhash::fast::RandomState;

use super::list::SubList;
use super::shared::SharedGroup;
use crate::topic::TopicFilter;

/// The node of one filter (prefix).
#[derive(Debug)]
pub(super) struct Node<V> {
    /// Children by exact level. Never holds the keys `+` or `#`: those are
    /// always wildcards in filters and never appear in topic names.
    pub(super) children: HashMap<Box<str>, Node<V>, RandomState>,
    /// The `+` child.
    pub(super) plus: Option<Box<Node<V>>>,
    /// The `#` child (which never has children of its own).
    pub(super) hash: Option<Box<Node<V>>>,
    /// Plain subscriptions of the filter ending here.
    pub(super) plain: SubList<V>,
    /// Shared groups of the filter ending here (usually none or one).
    pub(super) shared: Vec<SharedGroup<V>>,
}

impl<V> Node<V> {
    pub(super) fn new() -> Self {
        Self {
            children: HashMap::default(),
            plus: None,
            hash: None,
            plain: SubList::new(),
            shared: Vec::new(),
        }
    }

    /// Whether any subscription ends at this node.
    pub(super) fn has_subs(&self) -> bool {
        !self.plain.is_empty() || !self.shared.is_empty()
    }

    fn has_children(&self) -> bool {
        !self.children.is_empty() || self.plus.is_some() || self.hash.is_some()
    }

    fn child_count(&self) -> usize {
        self.children.len() + usize::from(self.plus.is_some()) + usize::from(self.hash.is_some())
    }

    pub(super) fn group(&self, name: &str) -> Option<&SharedGroup<V>> {
        self.shared.iter().find(|g| g.name() == name)
    }

    fn child(&self, level: &str) -> Option<&Node<V>> {
        match level {
            "+" => self.plus.as_deref(),
            "#" => self.hash.as_deref(),
            _ => self.children.get(level),
        }
    }

    fn child_mut(&mut self, level: &str) -> Option<&mut Node<V>> {
        match level {
            "+" => self.plus.as_deref_mut(),
            "#" => self.hash.as_deref_mut(),
            _ => self.children.get_mut(level),
        }
    }

    fn child_or_insert(&mut self, level: &str) -> &mut Node<V> {
        match level {
            "+" => self.plus.get_or_insert_with(|| Box::new(Node::new())),
            "#" => self.hash.get_or_insert_with(|| Box::new(Node::new())),
            _ => self.children.entry(level.into()).or_insert_with(Node::new),
        }
    }

    /// Takes the child at `level` out of the tree.
    fn detach(&mut self, level: &str) -> Option<Node<V>> {
        match level {
            "+" => self.plus.take().map(|b| *b),
            "#" => self.hash.take().map(|b| *b),
            _ => {
                let child = self.children.remove(level);
                let cap = self.children.capacity();
                if cap > 64 && self.children.len() < cap / 4 {
                    self.children.shrink_to(self.children.len() * 2);
                }
                child
            }
        }
    }

    /// The node of `filter`, if it exists.
    pub(super) fn find(&self, filter: &TopicFilter) -> Option<&Node<V>> {
        let mut node = self;
        for level in filter.levels() {
            node = node.child(level)?;
        }
        Some(node)
    }

    /// The node of `filter`, created (with its ancestors) if missing.
    pub(super) fn find_or_create(&mut self, filter: &TopicFilter) -> &mut Node<V> {
        let mut node = self;
        for level in filter.levels() {
            node = node.child_or_insert(level);
        }
        node
    }

    /// Removes an entry from the node of `filter` and prunes the nodes this
    /// leaves empty, up to the nearest ancestor that still holds something.
    ///
    /// `last` tells, for the node of `filter`, whether the entry exists
    /// (`None` if not) and whether it is the node's only subscription;
    /// `take` then removes it.
    pub(super) fn remove_path<R>(
        &mut self,
        filter: &TopicFilter,
        last: impl FnOnce(&Node<V>) -> Option<bool>,
        take: impl FnOnce(&mut Node<V>) -> Option<R>,
    ) -> Option<R> {
        // Pass 1: check the entry exists and find the deepest ancestor that
        // must stay (the root, or one with subscriptions or another child).
        let mut keep_depth = 0;
        let mut node: &Node<V> = self;
        for (depth, level) in filter.levels().enumerate() {
            if depth > 0 && (node.has_subs() || node.child_count() > 1) {
                keep_depth = depth;
            }
            node = node.child(level)?;
        }
        let emptied = last(node)? && !node.has_children();
        if !emptied {
            let mut node = self;
            for level in filter.levels() {
                node = node.child_mut(level)?;
            }
            return take(node);
        }
        // Pass 2: cut the branch that becomes empty off the kept ancestor,
        // then take the entry out of the detached branch (which drops after).
        let mut levels = filter.levels();
        let mut node = self;
        for level in levels.by_ref().take(keep_depth) {
            node = node.child_mut(level)?;
        }
        let mut branch = node.detach(levels.next()?)?;
        let mut node = &mut branch;
        for level in levels {
            node = node.child_mut(level)?;
        }
        take(node)
    }

    /// Moves the children out of this node onto `out`.
    fn detach_children(&mut self, out: &mut Vec<Node<V>>) {
        out.extend(self.children.drain().map(|(_, child)| child));
        out.extend(self.plus.take().map(|b| *b));
        out.extend(self.hash.take().map(|b| *b));
    }

    /// Number of nodes in this subtree, this one included.
    #[cfg(test)]
    pub(super) fn count(&self) -> usize {
        let mut count = 0;
        let mut stack = vec![self];
        while let Some(node) = stack.pop() {
            count += 1;
            stack.extend(node.children.values());
            stack.extend(node.plus.as_deref());
            stack.extend(node.hash.as_deref());
        }
        count
    }
}

impl<V> Drop for Node<V> {
    /// Frees the subtree without recursion (see the module documentation).
    fn drop(&mut self) {
        if !self.has_children() {
            return;
        }
        let mut stack = Vec::new();
        self.detach_children(&mut stack);
        while let Some(mut node) = stack.pop() {
            node.detach_children(&mut stack);
            // `node` drops here, childless.
        }
    }
}
