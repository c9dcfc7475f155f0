//! The retained-message store: one value per topic name, found by topic
//! filter without scanning every topic.
//!
//! A trie over topic levels. Every walk is a loop, and dropping a node frees
//! its subtree with an explicit stack, so a topic of some 32k levels cannot
//! overflow a thread's stack.

use std::collections::HashMap;
use std::ops::ControlFlow;

use foldhash::fast::RandomState;

use crate::topic::{TopicFilter, TopicName};

/// Retained values of one topic namespace (one mountpoint), in a trie over
/// topic levels.
#[derive(Debug)]
pub struct RetainTree<V> {
    root: Node<V>,
    len: usize,
}

/// The node of one topic (prefix).
#[derive(Debug)]
struct Node<V> {
    children: HashMap<Box<str>, Node<V>, RandomState>,
    value: Option<V>,
}

impl<V> Node<V> {
    fn new() -> Self {
        Self {
            children: HashMap::default(),
            value: None,
        }
    }

    fn find(&self, topic: &TopicName) -> Option<&Node<V>> {
        let mut node = self;
        for level in topic.levels() {
            node = node.children.get(level)?;
        }
        Some(node)
    }

    fn find_mut(&mut self, topic: &TopicName) -> Option<&mut Node<V>> {
        let mut node = self;
        for level in topic.levels() {
            node = node.children.get_mut(level)?;
        }
        Some(node)
    }

    fn detach(&mut self, level: &str) -> Option<Node<V>> {
        let child = self.children.remove(level);
        let cap = self.children.capacity();
        if cap > 64 && self.children.len() < cap / 4 {
            self.children.shrink_to(self.children.len() * 2);
        }
        child
    }
}

impl<V> Drop for Node<V> {
    /// Frees the subtree without recursion.
    fn drop(&mut self) {
        if self.children.is_empty() {
            return;
        }
        let mut stack: Vec<Node<V>> = self.children.drain().map(|(_, c)| c).collect();
        while let Some(mut node) = stack.pop() {
            stack.extend(node.children.drain().map(|(_, c)| c));
            // `node` drops here, childless.
        }
    }
}

/// Splits the level of `s` starting at `pos` off the rest: the level and
/// where the next one starts (past the end when there is none).
fn split_level(s: &str, pos: usize) -> Option<(&str, usize)> {
    let rest = s.get(pos..)?;
    Some(match rest.find('/') {
        Some(i) => (&rest[..i], pos + i + 1),
        None => (rest, s.len() + 1),
    })
}

/// Marks a match frame whose whole subtree matches (below a `#`).
const SUBTREE: usize = usize::MAX;

impl<V> Default for RetainTree<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V> RetainTree<V> {
    /// An empty store.
    pub fn new() -> Self {
        Self {
            root: Node::new(),
            len: 0,
        }
    }

    /// Sets the value of `topic`; returns the value it replaced.
    pub fn insert(&mut self, topic: &TopicName, value: V) -> Option<V> {
        let mut node = &mut self.root;
        for level in topic.levels() {
            node = node.children.entry(level.into()).or_insert_with(Node::new);
        }
        let old = node.value.replace(value);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// The value of `topic`, if any.
    pub fn get(&self, topic: &TopicName) -> Option<&V> {
        self.root.find(topic)?.value.as_ref()
    }

    /// Clears `topic`; prunes emptied nodes.
    pub fn remove(&mut self, topic: &TopicName) -> Option<V> {
        // Pass 1: check the value exists and find the deepest ancestor that
        // must stay (the root, or one with a value or another child).
        let mut keep_depth = 0;
        let mut node = &self.root;
        for (depth, level) in topic.levels().enumerate() {
            if depth > 0 && (node.value.is_some() || node.children.len() > 1) {
                keep_depth = depth;
            }
            node = node.children.get(level)?;
        }
        node.value.as_ref()?;
        let old = if node.children.is_empty() {
            // Pass 2: cut off the branch that becomes empty and take the
            // value out of it (the branch drops after).
            let mut levels = topic.levels();
            let mut node = &mut self.root;
            for level in levels.by_ref().take(keep_depth) {
                node = node.children.get_mut(level)?;
            }
            let mut branch = node.detach(levels.next()?)?;
            let mut node = &mut branch;
            for level in levels {
                node = node.children.get_mut(level)?;
            }
            node.value.take()
        } else {
            self.root.find_mut(topic)?.value.take()
        };
        if old.is_some() {
            self.len -= 1;
        }
        old
    }

    /// Number of retained values.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls `visit` for every value, `$` topics included. The order is
    /// unspecified.
    pub fn for_each<'a>(&'a self, mut visit: impl FnMut(&'a V)) {
        let mut stack = vec![&self.root];
        while let Some(node) = stack.pop() {
            if let Some(value) = &node.value {
                visit(value);
            }
            stack.extend(node.children.values());
        }
    }

    /// Calls `visit` for every value whose topic matches `filter` (a leading
    /// wildcard does not match `$` topics). The order is unspecified.
    pub fn for_each_match<'a>(&'a self, filter: &TopicFilter, mut visit: impl FnMut(&'a V)) {
        let _ = self.try_for_each_match(filter, |v| {
            visit(v);
            ControlFlow::Continue(())
        });
    }

    /// [`RetainTree::for_each_match`] until `visit` breaks.
    pub fn try_for_each_match<'a>(
        &'a self,
        filter: &TopicFilter,
        mut visit: impl FnMut(&'a V) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        let f = filter.as_str();
        if !filter.has_wildcards() {
            let mut node = &self.root;
            for level in filter.levels() {
                match node.children.get(level) {
                    Some(child) => node = child,
                    None => return ControlFlow::Continue(()),
                }
            }
            return match &node.value {
                Some(value) => visit(value),
                None => ControlFlow::Continue(()),
            };
        }
        // Frames: a node, and where its filter level starts in `f` (past the
        // end when the filter is used up, `SUBTREE` below a `#`).
        let mut stack = vec![(&self.root, 0)];
        while let Some((node, pos)) = stack.pop() {
            let level = if pos == SUBTREE {
                None
            } else {
                split_level(f, pos)
            };
            let Some((level, next)) = level else {
                if let Some(value) = &node.value {
                    visit(value)?;
                }
                if pos == SUBTREE {
                    stack.extend(node.children.values().map(|c| (c, SUBTREE)));
                }
                continue;
            };
            // A leading wildcard does not match a `$` topic.
            let children = || {
                node.children
                    .iter()
                    .filter(move |(k, _)| pos != 0 || !k.starts_with('$'))
                    .map(|(_, c)| c)
            };
            match level {
                "#" => {
                    // "a/#" matches "a" too.
                    if let Some(value) = &node.value {
                        visit(value)?;
                    }
                    stack.extend(children().map(|c| (c, SUBTREE)));
                }
                "+" => stack.extend(children().map(|c| (c, next))),
                _ => stack.extend(node.children.get(level).map(|c| (c, next))),
            }
        }
        ControlFlow::Continue(())
    }

    /// Number of nodes, the root included (1 when empty).
    #[cfg(test)]
    pub fn node_count(&self) -> usize {
        let mut count = 0;
        let mut stack = vec![&self.root];
        while let Some(node) = stack.pop() {
            count += 1;
            stack.extend(node.children.values());
        }
        count
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    fn name(s: &str) -> TopicName {
        TopicName::new(s).unwrap()
    }

    fn filter(s: &str) -> TopicFilter {
        TopicFilter::new(s).unwrap()
    }

    fn store(topics: &[&'static str]) -> RetainTree<&'static str> {
        let mut tree = RetainTree::new();
        for &t in topics {
            assert_eq!(tree.insert(&name(t), t), None);
        }
        tree
    }

    fn matched(tree: &RetainTree<&'static str>, f: &str) -> Vec<&'static str> {
        let mut out = Vec::new();
        tree.for_each_match(&filter(f), |v| out.push(*v));
        out.sort_unstable();
        out
    }

    const TOPICS: &[&str] = &[
        "a", "a/b", "a/b/c", "a/c", "/a", "/", "a//b", "a/", "b", "$SYS/up", "$SYS", "a/$x",
    ];

    #[test]
    fn matching() {
        let tree = store(TOPICS);
        let cases: &[(&str, &[&str])] = &[
            ("a/b", &["a/b"]),
            ("a/b/c/d", &[]),
            ("a/+", &["a/", "a/$x", "a/b", "a/c"]),
            ("a/#", &["a", "a/", "a/$x", "a//b", "a/b", "a/b/c", "a/c"]),
            ("+/+", &["/", "/a", "a/", "a/$x", "a/b", "a/c"]),
            ("+", &["a", "b"]),
            ("/+", &["/", "/a"]),
            ("a/+/b", &["a//b"]),
            ("a//b", &["a//b"]),
            (
                "#",
                &[
                    "/", "/a", "a", "a/", "a/$x", "a//b", "a/b", "a/b/c", "a/c", "b",
                ],
            ),
            ("$SYS/#", &["$SYS", "$SYS/up"]),
            ("$SYS/+", &["$SYS/up"]),
            ("+/up", &[]),
            ("$SYS", &["$SYS"]),
        ];
        for (f, expected) in cases {
            assert_eq!(matched(&tree, f), *expected, "{f}");
        }
    }

    #[test]
    fn insert_replace_remove() {
        let mut tree = RetainTree::new();
        let t = name("a/b");
        assert_eq!(tree.insert(&t, 1), None);
        assert_eq!(tree.insert(&t, 2), Some(1));
        assert_eq!(tree.get(&t), Some(&2));
        assert_eq!(tree.len(), 1);
        assert_eq!(tree.remove(&name("a")), None);
        assert_eq!(tree.remove(&name("a/b/c")), None);
        assert_eq!(tree.remove(&name("x")), None);
        assert_eq!(tree.len(), 1);
        assert_eq!(tree.remove(&t), Some(2));
        assert_eq!(tree.remove(&t), None);
        assert!(tree.is_empty());
        assert_eq!(tree.node_count(), 1);
    }

    #[test]
    fn pruning() {
        let mut tree = store(TOPICS);
        for t in TOPICS {
            assert_eq!(tree.remove(&name(t)), Some(*t));
        }
        assert_eq!(tree.node_count(), 1);
        let mut tree = store(TOPICS);
        for t in TOPICS.iter().rev() {
            assert_eq!(tree.remove(&name(t)), Some(*t));
        }
        assert_eq!(tree.node_count(), 1);
        let mut tree = store(&["a", "a/b/c/d"]);
        assert_eq!(tree.remove(&name("a/b/c/d")), Some("a/b/c/d"));
        assert_eq!(tree.node_count(), 2);
    }

    #[test]
    fn deep_topics_do_not_overflow_the_stack() {
        let deep = name(&vec!["x"; 20_000].join("/"));
        let mut tree = RetainTree::new();
        tree.insert(&deep, 1);
        tree.insert(&name("x"), 2);
        let mut seen = Vec::new();
        tree.for_each_match(&filter("#"), |v| seen.push(*v));
        seen.sort_unstable();
        assert_eq!(seen, [1, 2]);
        assert_eq!(tree.remove(&name("x")), Some(2));
        assert_eq!(tree.len(), 1);
        assert_eq!(tree.remove(&deep), Some(1));
        assert_eq!(tree.node_count(), 1);
        tree.insert(&deep, 3);
        // Dropped with 20k levels.
    }

    fn topic_strategy() -> impl Strategy<Value = TopicName> {
        let level = prop::sample::select(&["a", "b", "$x", ""][..]);
        prop::collection::vec(level, 1..5).prop_filter_map("empty topic", |levels| {
            TopicName::new(&levels.join("/")).ok()
        })
    }

    fn filter_strategy() -> impl Strategy<Value = TopicFilter> {
        let level = prop::sample::select(&["a", "b", "$x", "", "+"][..]);
        (prop::collection::vec(level, 0..4), any::<bool>()).prop_filter_map(
            "empty filter",
            |(mut levels, hash)| {
                if hash {
                    levels.push("#");
                }
                TopicFilter::new(&levels.join("/")).ok()
            },
        )
    }

    proptest! {
        #[test]
        fn matches_like_brute_force(
            ops in prop::collection::vec((prop::bool::weighted(0.7), topic_strategy()), 0..60),
            filters in prop::collection::vec(filter_strategy(), 1..20),
            threshold in 0..60usize,
        ) {
            let mut tree = RetainTree::new();
            let mut reference = HashMap::new();
            for (value, (insert, topic)) in ops.into_iter().enumerate() {
                let (got, expected) = if insert {
                    (tree.insert(&topic, value), reference.insert(topic, value))
                } else {
                    (tree.remove(&topic), reference.remove(&topic))
                };
                prop_assert_eq!(got, expected);
                prop_assert_eq!(tree.len(), reference.len());
            }
            let check = |tree: &RetainTree<usize>, reference: &HashMap<TopicName, usize>| {
                for f in &filters {
                    let mut got = Vec::new();
                    tree.for_each_match(f, |v| got.push(*v));
                    got.sort_unstable();
                    let mut want: Vec<_> = reference
                        .iter()
                        .filter(|(t, _)| f.matches(t))
                        .map(|(_, v)| *v)
                        .collect();
                    want.sort_unstable();
                    prop_assert_eq!(got, want, "filter {}", f);
                }
                Ok(())
            };
            check(&tree, &reference)?;
            let below: Vec<TopicName> = reference
                .iter()
                .filter(|(_, v)| **v < threshold)
                .map(|(t, _)| t.clone())
                .collect();
            for topic in &below {
                prop_assert_eq!(tree.remove(topic), reference.remove(topic));
            }
            prop_assert_eq!(tree.len(), reference.len());
            check(&tree, &reference)?;
            for (topic, value) in &reference {
                prop_assert_eq!(tree.remove(topic), Some(*value));
            }
            prop_assert!(tree.is_empty());
            prop_assert_eq!(tree.node_count(), 1);
        }
    }
}
