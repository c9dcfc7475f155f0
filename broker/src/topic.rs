//! Validated MQTT names: topic names, topic filters (plain and shared), client
//! identifiers and packet identifiers.
//!
//! Every value of these types has passed the MQTT rules for its kind, so the
//! router, the subscription tree and the retained store never re-check them.

use std::fmt;
use std::num::NonZeroU16;
use std::sync::Arc;

/// Why a string is not a valid topic name, topic filter or client id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("empty topic")]
    Empty,
    #[error("topic longer than 65535 bytes")]
    TooLong,
    #[error("topic contains the NUL character")]
    Nul,
    #[error("topic name contains a wildcard ('+' or '#')")]
    WildcardInName,
    #[error("'#' must be the last level of a filter and stand alone")]
    BadMultiLevelWildcard,
    #[error("'+' must occupy a whole level of a filter")]
    BadSingleLevelWildcard,
    #[error(
        "shared subscription needs '$share/<group>/<filter>' with a non-empty group without wildcards"
    )]
    BadSharedSubscription,
}

fn check_common(s: &str) -> Result<(), TopicError> {
    if s.is_empty() {
        return Err(TopicError::Empty);
    }
    if s.len() > u16::MAX as usize {
        return Err(TopicError::TooLong);
    }
    if s.contains('\0') {
        return Err(TopicError::Nul);
    }
    Ok(())
}

/// A topic name a message is published to: non-empty, no wildcards, no NUL.
///
/// Cheap to clone (shared string).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicName(Arc<str>);

impl TopicName {
    /// Validates `s` as a topic name.
    pub fn new(s: &str) -> Result<Self, TopicError> {
        check_common(s)?;
        if s.bytes().any(|b| b == b'+' || b == b'#') {
            return Err(TopicError::WildcardInName);
        }
        Ok(TopicName(Arc::from(s)))
    }

    /// The topic as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The topic levels, split on `/`.
    pub fn levels(&self) -> std::str::Split<'_, char> {
        self.0.split('/')
    }

    /// Topics starting with `$` (such as `$SYS/...`) are not matched by a
    /// filter that starts with a wildcard.
    pub fn is_dollar(&self) -> bool {
        self.0.starts_with('$')
    }

    /// `$SYS` or a topic under it: the broker's own, which clients may not
    /// publish to.
    pub fn is_sys(&self) -> bool {
        self.0
            .strip_prefix("$SYS")
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }
}

impl fmt::Debug for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A topic filter a client subscribes to: a topic name that may contain `+`
/// (a whole level) and `#` (a whole, last level).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicFilter(Arc<str>);

impl TopicFilter {
    /// Validates `s` as a (non-shared) topic filter.
    pub fn new(s: &str) -> Result<Self, TopicError> {
        check_common(s)?;
        let mut levels = s.split('/').peekable();
        while let Some(level) = levels.next() {
            if level.contains('#') && (level != "#" || levels.peek().is_some()) {
                return Err(TopicError::BadMultiLevelWildcard);
            }
            if level.contains('+') && level != "+" {
                return Err(TopicError::BadSingleLevelWildcard);
            }
        }
        Ok(TopicFilter(Arc::from(s)))
    }

    /// The filter as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The filter levels, split on `/`.
    pub fn levels(&self) -> std::str::Split<'_, char> {
        self.0.split('/')
    }

    /// Whether the filter contains `+` or `#`.
    pub fn has_wildcards(&self) -> bool {
        self.0.bytes().any(|b| b == b'+' || b == b'#')
    }

    /// Whether `topic` matches this filter, following the MQTT rules
    /// (including: a leading wildcard does not match a `$` topic).
    ///
    /// The subscription tree does this for many filters at once; this is the
    /// reference for one pair.
    pub fn matches(&self, topic: &TopicName) -> bool {
        if topic.is_dollar() && self.0.starts_with(['+', '#']) {
            return false;
        }
        let mut t = topic.levels();
        for f in self.levels() {
            match f {
                "#" => return true,
                "+" => {
                    if t.next().is_none() {
                        return false;
                    }
                }
                _ => {
                    if t.next() != Some(f) {
                        return false;
                    }
                }
            }
        }
        t.next().is_none()
    }
}

impl fmt::Debug for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a SUBSCRIBE or UNSUBSCRIBE names: a plain filter or a shared
/// subscription `$share/{group}/{filter}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Subscription {
    Plain(TopicFilter),
    Shared {
        group: Arc<str>,
        filter: TopicFilter,
    },
}

impl Subscription {
    /// Parses a filter string as sent by a client.
    pub fn parse(s: &str) -> Result<Self, TopicError> {
        match s.strip_prefix("$share/") {
            Some(rest) => {
                let (group, filter) = rest
                    .split_once('/')
                    .ok_or(TopicError::BadSharedSubscription)?;
                if group.is_empty() || group.contains(['+', '#']) {
                    return Err(TopicError::BadSharedSubscription);
                }
                let filter =
                    TopicFilter::new(filter).map_err(|_| TopicError::BadSharedSubscription)?;
                Ok(Subscription::Shared {
                    group: Arc::from(group),
                    filter,
                })
            }
            None => {
                if s == "$share" {
                    return Err(TopicError::BadSharedSubscription);
                }
                TopicFilter::new(s).map(Subscription::Plain)
            }
        }
    }

    /// The topic filter, without the share group.
    pub fn filter(&self) -> &TopicFilter {
        match self {
            Subscription::Plain(f) | Subscription::Shared { filter: f, .. } => f,
        }
    }

    /// The share group, for a shared subscription.
    pub fn group(&self) -> Option<&str> {
        match self {
            Subscription::Plain(_) => None,
            Subscription::Shared { group, .. } => Some(group),
        }
    }
}

impl fmt::Display for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subscription::Plain(filter) => write!(f, "{filter}"),
            Subscription::Shared { group, filter } => write!(f, "$share/{group}/{filter}"),
        }
    }
}

/// A client identifier: valid UTF-8 without NUL, at most 65535 bytes. May be
/// assigned by the broker when the client sent an empty one.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(Arc<str>);

impl ClientId {
    /// Validates a client-supplied identifier. Empty identifiers are handled
    /// by the CONNECT rules (they are assigned one), so they are refused here.
    pub fn new(s: &str) -> Result<Self, TopicError> {
        check_common(s)?;
        Ok(ClientId(Arc::from(s)))
    }

    /// The identifier as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A non-zero MQTT packet identifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PacketId(NonZeroU16);

impl PacketId {
    /// `None` for 0, which MQTT forbids as a packet identifier.
    pub fn new(id: u16) -> Option<Self> {
        NonZeroU16::new(id).map(PacketId)
    }

    /// The identifier as sent on the wire.
    pub fn get(self) -> u16 {
        self.0.get()
    }

    /// The identifier after this one, wrapping from 65535 to 1.
    pub fn next(self) -> Self {
        PacketId(NonZeroU16::new(self.0.get().wrapping_add(1)).unwrap_or(NonZeroU16::MIN))
    }
}

impl fmt::Display for PacketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> TopicName {
        TopicName::new(s).unwrap()
    }
    fn filter(s: &str) -> TopicFilter {
        TopicFilter::new(s).unwrap()
    }

    #[test]
    fn topic_names() {
        assert!(TopicName::new("a/b/c").is_ok());
        assert!(TopicName::new("/").is_ok());
        assert!(TopicName::new("a//b").is_ok());
        assert_eq!(TopicName::new(""), Err(TopicError::Empty));
        assert_eq!(TopicName::new("a/+"), Err(TopicError::WildcardInName));
        assert_eq!(TopicName::new("a/#"), Err(TopicError::WildcardInName));
        assert_eq!(TopicName::new("a#b"), Err(TopicError::WildcardInName));
        assert_eq!(TopicName::new("a\0b"), Err(TopicError::Nul));
        assert_eq!(TopicName::new(&"x".repeat(65536)), Err(TopicError::TooLong));
    }

    #[test]
    fn topic_filters() {
        for ok in ["#", "+", "a/#", "a/+/b", "+/+", "/+", "a//#", "$SYS/#"] {
            assert!(TopicFilter::new(ok).is_ok(), "{ok}");
        }
        for bad in ["a/#/b", "a#", "#/a", "a/b#", "a+", "a/+b", "", "a\0"] {
            assert!(TopicFilter::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn matching() {
        let cases = [
            ("a/b/c", "a/b/c", true),
            ("a/+/c", "a/b/c", true),
            ("a/+", "a/b/c", false),
            ("a/#", "a/b/c", true),
            ("a/#", "a", true),
            ("#", "a/b", true),
            ("+", "a", true),
            ("+", "a/b", false),
            ("+/+", "/a", true),
            ("/+", "/a", true),
            ("+", "/a", false),
            ("a/+/+", "a/b", false),
            ("#", "$SYS/uptime", false),
            ("+/uptime", "$SYS/uptime", false),
            ("$SYS/#", "$SYS/uptime", true),
            ("$SYS/+", "$SYS/uptime", true),
            ("a/b", "a/b/", false),
            ("a/b/+", "a/b/", true),
        ];
        for (f, t, expected) in cases {
            assert_eq!(filter(f).matches(&name(t)), expected, "{f} vs {t}");
        }
    }

    #[test]
    fn shared_subscriptions() {
        assert_eq!(
            Subscription::parse("$share/g/a/+").unwrap(),
            Subscription::Shared {
                group: Arc::from("g"),
                filter: filter("a/+")
            }
        );
        assert_eq!(
            Subscription::parse("a/b").unwrap(),
            Subscription::Plain(filter("a/b"))
        );
        for bad in [
            "$share/g",
            "$share//a",
            "$share/g+/a",
            "$share/g/a/#/b",
            "$share",
        ] {
            assert!(Subscription::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Subscription::parse("$share/g/#").unwrap().to_string(),
            "$share/g/#"
        );
    }

    #[test]
    fn packet_ids() {
        assert_eq!(PacketId::new(0), None);
        assert_eq!(PacketId::new(65535).unwrap().next().get(), 1);
        assert_eq!(PacketId::new(7).unwrap().next().get(), 8);
    }
}
