//! Tests of the subscription tree: hand-written cases and property tests
//! against [`TopicFilter::matches`], the reference for one filter and topic.

use std::collections::HashMap;

use proptest::prelude::*;

use super::*;

fn filter(s: &str) -> TopicFilter {
    TopicFilter::new(s).unwrap()
}

fn name(s: &str) -> TopicName {
    TopicName::new(s).unwrap()
}

/// Everything `topic` reaches, sorted: plain values as is, shared ones as
/// `group:value`.
fn matched(tree: &SubscriptionTree<&'static str>, topic: &str) -> Vec<String> {
    let mut out = Vec::new();
    tree.for_each_match(&name(topic), |m| {
        out.extend(m.plain.iter().map(|(_, v)| v.to_string()));
        for g in m.shared {
            out.extend(g.members().iter().map(|(_, v)| format!("{}:{v}", g.name())));
        }
    });
    out.sort();
    out
}

fn tree_of(filters: &[&'static str]) -> SubscriptionTree<&'static str> {
    let mut tree = SubscriptionTree::new();
    for (client, &f) in filters.iter().enumerate() {
        assert_eq!(tree.insert(&filter(f), client as ClientKey, f), None);
    }
    tree
}

#[test]
fn wildcards_and_exact_levels() {
    let tree = tree_of(&[
        "a/b/c", "a/+/c", "a/+", "a/#", "#", "+", "+/+", "/+", "a//b", "a/+/b", "+/#",
    ]);
    let cases: &[(&str, &[&str])] = &[
        ("a/b/c", &["#", "+/#", "a/#", "a/+/c", "a/b/c"]),
        ("a/b", &["#", "+/#", "+/+", "a/#", "a/+"]),
        ("a", &["#", "+", "+/#", "a/#"]),
        ("/a", &["#", "+/#", "+/+", "/+"]),
        ("a//b", &["#", "+/#", "a/#", "a/+/b", "a//b"]),
        ("a/", &["#", "+/#", "+/+", "a/#", "a/+"]),
        ("/", &["#", "+/#", "+/+", "/+"]),
        ("b/c/d", &["#", "+/#"]),
    ];
    for (topic, expected) in cases {
        assert_eq!(matched(&tree, topic), *expected, "{topic}");
    }
}

#[test]
fn dollar_topics_need_an_explicit_first_level() {
    let tree = tree_of(&["#", "+/uptime", "+/#", "$SYS/#", "$SYS/+", "$SYS/uptime/#"]);
    assert_eq!(
        matched(&tree, "$SYS/uptime"),
        ["$SYS/#", "$SYS/+", "$SYS/uptime/#"]
    );
    assert_eq!(matched(&tree, "$SYS"), ["$SYS/#"]);
    assert_eq!(matched(&tree, "x/uptime"), ["#", "+/#", "+/uptime"]);
    // Only the first level is special.
    let tree = tree_of(&["a/+", "a/#"]);
    assert_eq!(matched(&tree, "a/$b"), ["a/#", "a/+"]);
}

#[test]
fn shared_groups_beside_plain_subscriptions() {
    let mut tree = SubscriptionTree::new();
    let f = filter("a/+");
    assert_eq!(tree.insert(&f, 1, "p1"), None);
    assert_eq!(tree.insert_shared("g", &f, 1, "s1"), None);
    assert_eq!(tree.insert_shared("g", &f, 2, "s2"), None);
    assert_eq!(tree.insert_shared("h", &f, 2, "t2"), None);
    assert_eq!(tree.len(), 4);
    assert_eq!(matched(&tree, "a/x"), ["g:s1", "g:s2", "h:t2", "p1"]);
    let g = tree.shared_group("g", &f).unwrap();
    assert_eq!(g.name(), "g");
    assert_eq!(g.members().len(), 2);
    assert_eq!(g.get(2), Some(&"s2"));
    assert!(tree.shared_group("x", &f).is_none());
    assert!(tree.shared_group("g", &filter("a")).is_none());

    // Replacing returns the old value and keeps the count.
    assert_eq!(tree.insert_shared("g", &f, 2, "s2b"), Some("s2"));
    assert_eq!(tree.len(), 4);
    // Removing the plain subscription keeps the groups.
    assert_eq!(tree.remove(&f, 1), Some("p1"));
    assert_eq!(tree.remove(&f, 1), None);
    assert_eq!(matched(&tree, "a/x"), ["g:s1", "g:s2b", "h:t2"]);
    assert_eq!(tree.remove_shared("g", &f, 1), Some("s1"));
    assert_eq!(tree.remove_shared("g", &f, 2), Some("s2b"));
    assert!(tree.shared_group("g", &f).is_none());
    assert_eq!(tree.remove_shared("g", &f, 2), None);
    assert_eq!(tree.remove_shared("h", &f, 1), None);
    assert_eq!(tree.len(), 1);
    assert_eq!(tree.remove_shared("h", &f, 2), Some("t2"));
    assert!(tree.is_empty());
    assert_eq!(tree.node_count(), 1);
}

#[test]
fn replace_and_remove_missing() {
    let mut tree = SubscriptionTree::new();
    let f = filter("a/b");
    assert_eq!(tree.insert(&f, 7, "one"), None);
    assert_eq!(tree.insert(&f, 7, "two"), Some("one"));
    assert_eq!(tree.get(&f, 7), Some(&"two"));
    assert_eq!(tree.len(), 1);
    assert_eq!(tree.remove(&f, 8), None);
    assert_eq!(tree.remove(&filter("a"), 7), None);
    assert_eq!(tree.remove(&filter("a/b/c"), 7), None);
    assert_eq!(tree.remove(&filter("a/+"), 7), None);
    assert_eq!(tree.remove_shared("g", &f, 7), None);
    assert_eq!(tree.len(), 1);
    assert_eq!(tree.remove(&f, 7), Some("two"));
    assert_eq!(tree.get(&f, 7), None);
    assert_eq!(tree.len(), 0);
}

#[test]
fn pruning_returns_to_a_bare_root() {
    let filters = [
        "a/b/c", "a/b", "a/+/c", "a/#", "#", "+", "a//b", "$SYS/x", "a/b/c/d",
    ];
    let mut tree = tree_of(&filters);
    assert!(tree.node_count() > 1);
    // Remove in an order that empties inner nodes before their children.
    for (client, f) in filters.iter().enumerate().rev() {
        assert_eq!(tree.remove(&filter(f), client as ClientKey), Some(*f));
    }
    assert_eq!(tree.node_count(), 1);
    let mut tree = tree_of(&filters);
    for (client, f) in filters.iter().enumerate() {
        assert_eq!(tree.remove(&filter(f), client as ClientKey), Some(*f));
    }
    assert_eq!(tree.node_count(), 1);
    // A kept ancestor keeps only what it needs.
    let mut tree = tree_of(&["a", "a/b/c/d"]);
    assert_eq!(tree.node_count(), 5);
    tree.remove(&filter("a/b/c/d"), 1);
    assert_eq!(tree.node_count(), 2);
    assert_eq!(matched(&tree, "a"), ["a"]);
}

#[test]
fn many_subscribers_on_one_filter() {
    let mut tree = SubscriptionTree::new();
    let f = filter("hot/topic");
    for client in 0..10_000 {
        assert_eq!(tree.insert(&f, client, client), None);
    }
    for client in (0..10_000).step_by(2) {
        assert_eq!(tree.insert(&f, client, client + 1), Some(client));
    }
    for client in (0..10_000).step_by(3) {
        let expected = if client % 2 == 0 { client + 1 } else { client };
        assert_eq!(tree.remove(&f, client), Some(expected));
    }
    let mut seen = 0;
    tree.for_each_match(&name("hot/topic"), |m| {
        seen += m.plain.len();
        for (client, v) in m.plain {
            assert_ne!(client % 3, 0);
            assert_eq!(*v, if client % 2 == 0 { client + 1 } else { *client });
        }
    });
    assert_eq!(seen, tree.len());
    for client in 0..10_000 {
        tree.remove(&f, client);
    }
    assert_eq!(tree.node_count(), 1);
}

#[test]
fn deep_topics_do_not_overflow_the_stack() {
    const LEVELS: usize = 20_000;
    let mut tree = SubscriptionTree::new();
    let plus = vec!["+"; LEVELS].join("/");
    let exact = vec!["x"; LEVELS].join("/");
    let hash = format!("{}/#", vec!["x"; LEVELS / 2].join("/"));
    for (client, f) in [&plus, &exact, &hash].into_iter().enumerate() {
        tree.insert(&filter(f), client as ClientKey, client);
    }
    let mut hits = Vec::new();
    tree.for_each_match(&name(&exact), |m| hits.extend(m.plain.iter().map(|p| p.1)));
    hits.sort_unstable();
    assert_eq!(hits, [0, 1, 2]);
    assert_eq!(tree.remove(&filter(&exact), 1), Some(1));
    assert_eq!(tree.remove(&filter(&plus), 0), Some(0));
    assert_eq!(tree.node_count(), LEVELS / 2 + 2);
    // The rest is freed by dropping the tree.
}

#[test]
fn each_matching_node_is_visited_once() {
    let tree = tree_of(&["a/b", "a/+", "+/b", "+/+", "#", "a/#", "a/b/#"]);
    let mut visits = 0;
    tree.for_each_match(&name("a/b"), |m| {
        assert_eq!(m.plain.len(), 1);
        visits += 1;
    });
    assert_eq!(visits, 7);
}

fn level() -> impl Strategy<Value = &'static str> {
    prop::sample::select(&["a", "b", "$x", ""][..])
}

fn topic_strategy() -> impl Strategy<Value = TopicName> {
    prop::collection::vec(level(), 1..5).prop_filter_map("empty topic", |levels| {
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

#[derive(Debug, Clone)]
struct Op {
    insert: bool,
    filter: TopicFilter,
    client: ClientKey,
    group: Option<&'static str>,
}

fn op_strategy() -> impl Strategy<Value = Op> {
    (
        prop::bool::weighted(0.6),
        filter_strategy(),
        0..3u64,
        prop::option::of(prop::sample::select(&["g", "h"][..])),
    )
        .prop_map(|(insert, filter, client, group)| Op {
            insert,
            filter,
            client,
            group,
        })
}

type Key = (Option<&'static str>, TopicFilter, ClientKey);

fn apply(tree: &mut SubscriptionTree<usize>, op: &Op, value: usize) -> Option<usize> {
    match (op.insert, op.group) {
        (true, None) => tree.insert(&op.filter, op.client, value),
        (true, Some(g)) => tree.insert_shared(g, &op.filter, op.client, value),
        (false, None) => tree.remove(&op.filter, op.client),
        (false, Some(g)) => tree.remove_shared(g, &op.filter, op.client),
    }
}

proptest! {
    #[test]
    fn matches_like_brute_force(
        ops in prop::collection::vec(op_strategy(), 0..60),
        topics in prop::collection::vec(topic_strategy(), 1..20),
    ) {
        let mut tree = SubscriptionTree::new();
        let mut reference: HashMap<Key, usize> = HashMap::new();
        for (value, op) in ops.iter().enumerate() {
            let key = (op.group, op.filter.clone(), op.client);
            let expected = if op.insert {
                reference.insert(key, value)
            } else {
                reference.remove(&key)
            };
            prop_assert_eq!(apply(&mut tree, op, value), expected);
            prop_assert_eq!(tree.len(), reference.len());
        }
        for topic in &topics {
            let mut got = Vec::new();
            tree.for_each_match(topic, |m| {
                got.extend(m.plain.iter().map(|&(c, v)| (None, c, v)));
                for g in m.shared {
                    got.extend(g.members().iter().map(|&(c, v)| (Some(g.name()), c, v)));
                }
            });
            got.sort_unstable();
            let mut want: Vec<_> = reference
                .iter()
                .filter(|((_, f, _), _)| f.matches(topic))
                .map(|(&(g, _, c), &v)| (g, c, v))
                .collect();
            want.sort_unstable();
            prop_assert_eq!(got, want, "topic {}", topic);
        }
        for ((group, f, client), value) in &reference {
            let removed = match group {
                None => tree.remove(f, *client),
                Some(g) => tree.remove_shared(g, f, *client),
            };
            prop_assert_eq!(removed, Some(*value));
        }
        prop_assert_eq!(tree.len(), 0);
        prop_assert_eq!(tree.node_count(), 1);
    }
}
