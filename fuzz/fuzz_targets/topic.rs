//! Fuzz target `topic`: the topic-name and topic-filter parsers
//! (`topic::{TopicName, TopicFilter, Subscription}`) and matching.
//!
//! Input layout: `filter 0xFF topic` (0xFF never occurs in UTF-8; without it
//! the whole input is used as both). Each side is read as UTF-8, invalid
//! sequences replaced.
//!
//! Checked, besides "never panics":
//! - each parser accepts exactly the strings the MQTT rules allow (checked
//!   by an independent reading of the rules), and keeps the string as given;
//! - `Subscription::parse(s).to_string() == s`, and it parses again to the
//!   same value;
//! - `TopicFilter::matches` agrees with a reference matcher; a filter
//!   without wildcards matches the topic of the same string; `T/#` and `T`
//!   itself match every topic `T`;
//! - the subscription tree and the retained store find the same matches.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_broker::retain::RetainTree;
use sluice_broker::subscriptions::SubscriptionTree;
use sluice_broker::topic::{Subscription, TopicFilter, TopicName};

fuzz_target!(|data: &[u8]| run(data));

fn run(data: &[u8]) {
    let (filter, topic) = match data.iter().position(|&b| b == 0xFF) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, data),
    };
    let filter = String::from_utf8_lossy(filter);
    let topic = String::from_utf8_lossy(topic);

    let name = check_name(&topic);
    let parsed = check_filter(&filter);
    check_subscription(&filter);
    if let (Some(filter), Some(name)) = (&parsed, &name) {
        check_match(filter, name);
    }
    if let Some(name) = &name {
        check_name_as_filter(name);
    }
    if let Some(filter) = &parsed
        && !filter.has_wildcards()
    {
        let same = TopicName::new(filter.as_str()).expect("a filter without wildcards is a name");
        assert!(filter.matches(&same), "{filter:?} does not match itself");
    }
}

/// The MQTT rules shared by names and filters.
fn common_rules(s: &str) -> bool {
    !s.is_empty() && s.len() <= usize::from(u16::MAX) && !s.contains('\0')
}

fn check_name(s: &str) -> Option<TopicName> {
    let valid = common_rules(s) && !s.contains(['+', '#']);
    let name = TopicName::new(s);
    assert_eq!(name.is_ok(), valid, "TopicName::new({s:?}) = {name:?}");
    let name = name.ok()?;
    assert_eq!(name.as_str(), s);
    assert_eq!(name.to_string(), s);
    assert_eq!(name.levels().count(), s.matches('/').count() + 1);
    assert_eq!(name.is_dollar(), s.starts_with('$'));
    Some(name)
}

fn check_filter(s: &str) -> Option<TopicFilter> {
    let levels: Vec<&str> = s.split('/').collect();
    let valid = common_rules(s)
        && levels.iter().enumerate().all(|(i, level)| match *level {
            "#" => i == levels.len() - 1,
            "+" => true,
            other => !other.contains(['+', '#']),
        });
    let filter = TopicFilter::new(s);
    assert_eq!(
        filter.is_ok(),
        valid,
        "TopicFilter::new({s:?}) = {filter:?}"
    );
    let filter = filter.ok()?;
    assert_eq!(filter.as_str(), s);
    assert_eq!(filter.to_string(), s);
    assert_eq!(filter.has_wildcards(), s.contains(['+', '#']));
    assert!(filter.levels().eq(levels.iter().copied()));
    Some(filter)
}

fn check_subscription(s: &str) {
    let Ok(sub) = Subscription::parse(s) else {
        // A valid plain filter is refused only for looking shared.
        if TopicFilter::new(s).is_ok() {
            assert!(s.starts_with("$share/") || s == "$share", "{s:?} refused");
        }
        return;
    };
    assert_eq!(sub.to_string(), s);
    assert_eq!(Subscription::parse(&sub.to_string()).as_ref(), Ok(&sub));
    match sub.group() {
        None => assert_eq!(sub.filter().as_str(), s),
        Some(group) => {
            assert!(
                !group.is_empty() && !group.contains(['/', '+', '#']),
                "{group:?}"
            );
            assert_eq!(format!("$share/{group}/{}", sub.filter()), s);
        }
    }
}

/// Matching by the MQTT rules, as written in the specification: level by
/// level, `+` takes one level, `#` the rest (zero levels included), and a
/// filter starting with a wildcard does not match a `$` topic.
fn reference_match(filter: &str, topic: &str) -> bool {
    fn levels(f: &[&str], t: &[&str]) -> bool {
        match (f, t) {
            (["#"], _) => true,
            ([], []) => true,
            (["+", f @ ..], [_, t @ ..]) => levels(f, t),
            ([fl, f @ ..], [tl, t @ ..]) => fl == tl && levels(f, t),
            _ => false,
        }
    }
    if topic.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let f: Vec<&str> = filter.split('/').collect();
    let t: Vec<&str> = topic.split('/').collect();
    levels(&f, &t)
}

fn check_match(filter: &TopicFilter, name: &TopicName) {
    let expected = reference_match(filter.as_str(), name.as_str());
    assert_eq!(filter.matches(name), expected, "{filter:?} on {name:?}");

    let mut tree = SubscriptionTree::new();
    tree.insert(filter, 1, ());
    let mut found = 0;
    tree.for_each_match(name, |m| found += m.plain.len());
    assert_eq!(
        found,
        usize::from(expected),
        "subscription tree: {filter:?} on {name:?}"
    );

    let mut retained = RetainTree::new();
    retained.insert(name, ());
    let mut found = 0;
    retained.for_each_match(filter, |_| found += 1);
    assert_eq!(
        found,
        usize::from(expected),
        "retained store: {filter:?} on {name:?}"
    );
}

/// Every topic name is a filter that matches it, and so is `name/#` (when
/// short enough to be valid).
fn check_name_as_filter(name: &TopicName) {
    let itself = TopicFilter::new(name.as_str()).expect("every topic name is a filter");
    assert!(itself.matches(name), "{name:?} does not match itself");
    if let Ok(parent) = TopicFilter::new(&format!("{name}/#")) {
        assert!(parent.matches(name), "{parent:?} does not match {name:?}");
    }
    let all = TopicFilter::new("#").expect("# is a filter");
    assert_eq!(all.matches(name), !name.is_dollar());
}
