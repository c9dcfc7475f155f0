//! MQTT topic names and topic filters (MQTT 5 §4.7): whether a filter
//! matches a topic, and the two questions an ACL asks of two filters,
//! whether one covers the other and whether they intersect. As the broker
//! does, `+` matches one level, a final `#` any number of levels including
//! none (`a/#` matches `a`), and a wildcard in the first level never
//! matches a topic starting with `$` (`#` does not reach `$SYS/...`).
//!
//! The functions take filters as they are written; check configured ones
//! with [`check_filter`] first. A subscription's filter may be shared
//! (`$share/GROUP/FILTER`): [`strip_shared`] gives the filter proper.
//!
//! ```
//! use sluice_plugin_sdk::topic;
//!
//! assert!(topic::matches("sensors/+/temp", "sensors/kitchen/temp"));
//! assert!(!topic::matches("#", "$SYS/broker/uptime"));
//! // Every topic `sensors/+/temp` matches, `sensors/#` matches too...
//! assert!(topic::covers("sensors/#", "sensors/+/temp"));
//! // ...and `#` can receive some, not all, of `private/#`.
//! assert!(topic::intersects("private/#", "#"));
//! assert!(!topic::covers("private/#", "#"));
//! assert_eq!(topic::strip_shared("$share/g/sensors/#"), "sensors/#");
//! ```

/// Whether `filter` is a valid topic filter: not empty, and `+` and `#`
/// only as whole levels, `#` only as the last one. The error says what is
/// wrong.
///
/// ```
/// use sluice_plugin_sdk::topic::check_filter;
///
/// assert_eq!(check_filter("a/+/#"), Ok(()));
/// assert_eq!(check_filter("a/#/b"), Err("'#' must be the last level".to_owned()));
/// ```
pub fn check_filter(filter: &str) -> Result<(), String> {
    if filter.is_empty() {
        return Err("an empty topic filter".into());
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        match level {
            "#" if levels.peek().is_some() => return Err("'#' must be the last level".into()),
            "#" | "+" => {}
            _ if level.contains(['+', '#']) => {
                return Err("a wildcard ('+' or '#') must be a whole level".into());
            }
            _ => {}
        }
    }
    Ok(())
}

/// Whether the first level of `filter` is a wildcard, which `$` topics
/// are out of reach of.
fn leading_wildcard(filter: &str) -> bool {
    matches!(filter.split('/').next(), Some("+" | "#"))
}

/// Whether `filter` matches the topic name `topic` (which has no
/// wildcards).
///
/// ```
/// use sluice_plugin_sdk::topic::matches;
///
/// assert!(matches("a/#", "a"));
/// assert!(matches("+/x", "/x"));
/// assert!(!matches("a/+", "a/b/c"));
/// assert!(!matches("+/uptime", "$SYS/uptime"));
/// ```
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && leading_wildcard(filter) {
        return false;
    }
    let mut topic = topic.split('/');
    for level in filter.split('/') {
        match (level, topic.next()) {
            ("#", _) => return true,
            (_, None) => return false,
            ("+", Some(_)) => {}
            (_, Some(t)) if t != level => return false,
            _ => {}
        }
    }
    topic.next().is_none()
}

/// Whether `filter` matches every topic that the filter `other` matches
/// (so a subscription to `other` receives nothing `filter` would not).
///
/// ```
/// use sluice_plugin_sdk::topic::covers;
///
/// assert!(covers("sensors/#", "sensors"));
/// assert!(covers("+/temp", "a/temp"));
/// assert!(!covers("sensors/+", "sensors/#"));
/// assert!(!covers("#", "$SYS/#"));
/// ```
pub fn covers(filter: &str, other: &str) -> bool {
    if other.starts_with('$') && leading_wildcard(filter) {
        return false;
    }
    let mut other = other.split('/');
    for level in filter.split('/') {
        match (level, other.next()) {
            ("#", _) => return true,
            // `other` matches topics with fewer levels, or with any levels
            // from here on.
            (_, None | Some("#")) => return false,
            ("+", Some(_)) => {}
            (_, Some(o)) if o != level => return false,
            _ => {}
        }
    }
    other.next().is_none()
}

/// Whether some topic matches both filters.
///
/// ```
/// use sluice_plugin_sdk::topic::intersects;
///
/// assert!(intersects("sensors/secret/#", "+/+/x"));
/// assert!(intersects("a", "a/#"));
/// assert!(!intersects("a/+", "a"));
/// assert!(!intersects("$SYS/#", "#"));
/// ```
pub fn intersects(a: &str, b: &str) -> bool {
    if (a.starts_with('$') && leading_wildcard(b)) || (b.starts_with('$') && leading_wildcard(a)) {
        return false;
    }
    let (mut a, mut b) = (a.split('/'), b.split('/'));
    loop {
        match (a.next(), b.next()) {
            (None, None) | (Some("#"), _) | (_, Some("#")) => return true,
            (None, Some(_)) | (Some(_), None) => return false,
            (Some(x), Some(y)) if x != "+" && y != "+" && x != y => return false,
            _ => {}
        }
    }
}

/// The topic filter proper of a subscription: a shared subscription's
/// `$share/GROUP/` removed, any other filter as it is.
///
/// ```
/// use sluice_plugin_sdk::topic::strip_shared;
///
/// assert_eq!(strip_shared("$share/g/sensors/#"), "sensors/#");
/// assert_eq!(strip_shared("sensors/#"), "sensors/#");
/// ```
pub fn strip_shared(filter: &str) -> &str {
    filter
        .strip_prefix("$share/")
        .and_then(|rest| rest.split_once('/'))
        .map_or(filter, |(_group, f)| f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_matching() {
        let yes = [
            ("a/b", "a/b"),
            ("a/+", "a/b"),
            ("+/+", "a/b"),
            ("a/#", "a"),
            ("a/#", "a/b/c"),
            ("#", "a/b"),
            ("+", ""),
            ("a/+/c", "a//c"),
            ("/+", "/x"),
            ("$SYS/#", "$SYS/uptime"),
            ("$SYS/+", "$SYS/x"),
        ];
        for (filter, topic) in yes {
            assert!(matches(filter, topic), "{filter} ~ {topic}");
        }
        let no = [
            ("a/b", "a/c"),
            ("a/b", "a/b/c"),
            ("a/+", "a"),
            ("a/+", "a/b/c"),
            ("+", "a/b"),
            ("a/#", "ab"),
            ("#", "$SYS/uptime"),
            ("+/uptime", "$SYS/uptime"),
            ("a/b/c", "a/b"),
        ];
        for (filter, topic) in no {
            assert!(!matches(filter, topic), "{filter} !~ {topic}");
        }
    }

    #[test]
    fn filter_covers_filter() {
        let yes = [
            ("sensors/#", "sensors/+/temp"),
            ("sensors/#", "sensors/#"),
            ("sensors/#", "sensors"),
            ("sensors/#", "sensors/a/b"),
            ("#", "#"),
            ("#", "+/x"),
            ("+/temp", "+/temp"),
            ("+/temp", "a/temp"),
            ("a/b", "a/b"),
            ("$SYS/#", "$SYS/+"),
        ];
        for (filter, other) in yes {
            assert!(covers(filter, other), "{filter} covers {other}");
        }
        let no = [
            ("sensors/+/temp", "sensors/#"),
            ("sensors/a/temp", "sensors/+/temp"),
            ("sensors/+", "sensors/#"),
            ("sensors/+", "sensors"),
            ("sensors/+", "sensors/a/b"),
            ("a/b", "a/b/c"),
            ("a/b/c", "a/b"),
            ("a/b", "a/+"),
            ("#", "$SYS/#"),
            ("+/x", "$SYS/x"),
            ("other/#", "sensors/#"),
            ("$SYS/#", "#"),
        ];
        for (filter, other) in no {
            assert!(!covers(filter, other), "{filter} does not cover {other}");
        }
    }

    #[test]
    fn filters_intersect() {
        let yes = [
            ("sensors/secret/#", "sensors/#"),
            ("sensors/secret/#", "#"),
            ("sensors/secret/#", "+/+/x"),
            ("sensors/secret", "sensors/+"),
            ("sensors/+/temp", "sensors/a/+"),
            ("a/#", "a"),
            ("a", "a/#"),
            ("#", "a/b"),
            ("+", "+"),
            ("$SYS/#", "$SYS/+"),
        ];
        for (a, b) in yes {
            assert!(intersects(a, b), "{a} & {b}");
            assert!(intersects(b, a), "{b} & {a}");
        }
        let no = [
            ("sensors/secret/#", "sensors/public/#"),
            ("sensors/secret", "sensors/+/+"),
            ("a/b", "a"),
            ("a/+", "a"),
            ("a", "a/+"),
            ("#", "$SYS/#"),
            ("$SYS/#", "#"),
            ("$SYS/#", "+/x"),
            ("x/y", "x/z/#"),
        ];
        for (a, b) in no {
            assert!(!intersects(a, b), "{a} and {b} are disjoint");
            assert!(!intersects(b, a), "{b} and {a} are disjoint");
        }
    }

    #[test]
    fn invalid_filters_are_explained() {
        for (bad, why) in [
            ("", "empty"),
            ("a/#/b", "last level"),
            ("#/", "last level"),
            ("a/b#", "whole level"),
            ("a+/b", "whole level"),
        ] {
            match check_filter(bad) {
                Ok(()) => panic!("{bad:?} accepted"),
                Err(e) => assert!(e.contains(why), "{bad:?}: {e}"),
            }
        }
        for good in ["#", "+", "a/+/b/#", "/", "$SYS/#", "a//b"] {
            assert_eq!(check_filter(good), Ok(()), "{good}");
        }
    }

    #[test]
    fn shared_subscriptions_are_stripped_to_their_filter() {
        assert_eq!(strip_shared("$share/g/sensors/#"), "sensors/#");
        assert_eq!(strip_shared("sensors/#"), "sensors/#");
        assert_eq!(strip_shared("$share/g"), "$share/g");
        assert_eq!(strip_shared("$share/g/"), "");
    }
}
