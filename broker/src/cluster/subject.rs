//! MQTT topics and filters as NATS subjects, reversibly.
//!
//! A topic `a/b` in mountpoint `m` travels as `sluice.t.m.a.b`: one NATS
//! token per MQTT level, the mountpoint first. NATS gives `.`, `*`, `>`
//! and whitespace a meaning, and a token cannot be empty, while an MQTT
//! level may hold any of them (and any UTF-8), so each token is escaped:
//! those bytes and `%` become `%XX` (two upper-case hex digits), and an
//! empty level becomes `%00` (U+0000 is not allowed in MQTT strings, so
//! it cannot be confused with a level). Filters map `+` to `*` and `#` to
//! `>`; since `a/#` also matches `a` (its parent) and NATS's `>` needs at
//! least one more token, a filter ending in `#` needs the parent subject
//! as well ([`filter_subjects`]).
//!
//! Architecture invariant: `decode_topic(topic_subject(m, t)) == (m, t)`
//! for every mountpoint and every valid topic name, and a topic's subject
//! matches a filter's subjects exactly when the MQTT topic matches the MQTT
//! filter (the `$` rule aside: it is applied by the receiving node's own
//! match).

use std::fmt::Write as _;

/// The first tokens of every topic subject.
pub(crate) const PREFIX: &str = "sluice.t";
/// An empty level or mountpoint.
const EMPTY: &str = "%00";

/// Whether NATS reserves `b` inside a token (or `%` is our escape).
fn reserved(b: u8) -> bool {
    matches!(b, b'.' | b'*' | b'>' | b'%') || b.is_ascii_whitespace() || b.is_ascii_control()
}

/// Appends `level` as one token.
fn push_token(out: &mut String, level: &str) {
    if level.is_empty() {
        out.push_str(EMPTY);
        return;
    }
    for c in level.chars() {
        match u8::try_from(c) {
            Ok(b) if reserved(b) => {
                let _ = write!(out, "%{b:02X}");
            }
            _ => out.push(c),
        }
    }
}

/// One token back to its level; `None` if it is not one we wrote.
fn decode_token(token: &str) -> Option<String> {
    if token == EMPTY {
        return Some(String::new());
    }
    let bytes = token.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = token.get(i + 1..i + 3)?;
            let b = u8::from_str_radix(hex, 16).ok()?;
            if !reserved(b) || b == 0 {
                return None;
            }
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The subject of `topic` (a valid MQTT topic name) in `mountpoint`.
pub(crate) fn topic_subject(mountpoint: &str, topic: &str) -> String {
    let mut s = String::with_capacity(PREFIX.len() + mountpoint.len() + topic.len() + 8);
    s.push_str(PREFIX);
    s.push('.');
    push_token(&mut s, mountpoint);
    for level in topic.split('/') {
        s.push('.');
        push_token(&mut s, level);
    }
    s
}

/// The mountpoint and topic of a subject written by [`topic_subject`].
pub(crate) fn decode_topic(subject: &str) -> Option<(String, String)> {
    let rest = subject.strip_prefix(PREFIX)?.strip_prefix('.')?;
    let mut tokens = rest.split('.');
    let mountpoint = decode_token(tokens.next()?)?;
    let mut topic = String::new();
    let mut any = false;
    for t in tokens {
        if any {
            topic.push('/');
        }
        topic.push_str(&decode_token(t)?);
        any = true;
    }
    any.then_some((mountpoint, topic))
}

/// The subjects a node subscribes to for the MQTT filter `filter` (valid,
/// not shared) in `mountpoint`: one, and the parent's as well when the
/// filter ends in `#` after other levels.
pub(crate) fn filter_subjects(mountpoint: &str, filter: &str) -> Vec<String> {
    let mut s = String::with_capacity(PREFIX.len() + mountpoint.len() + filter.len() + 8);
    s.push_str(PREFIX);
    s.push('.');
    push_token(&mut s, mountpoint);
    let mut parent = None;
    for (i, level) in filter.split('/').enumerate() {
        match level {
            "#" => {
                // `a/#` matches `a` too; a lone `#` has no parent.
                if i > 0 {
                    parent = Some(s.clone());
                }
                s.push_str(".>");
            }
            "+" => s.push_str(".*"),
            _ => {
                s.push('.');
                push_token(&mut s, level);
            }
        }
    }
    let mut out = vec![s];
    out.extend(parent);
    out
}

/// Appends `s` to a key-value key: NATS keys allow only
/// `[-/_=.A-Za-z0-9]`, so every other byte (and `/` in a mountpoint)
/// becomes `=XX`, and an empty string `=00`.
fn push_key_part(out: &mut String, s: &str, keep_slash: bool) {
    if s.is_empty() {
        out.push_str("=00");
        return;
    }
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || (keep_slash && b == b'/') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "={b:02X}");
        }
    }
}

fn decode_key_part(part: &str) -> Option<String> {
    if part == "=00" {
        return Some(String::new());
    }
    let bytes = part.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' {
            let hex = part.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The key of `name` (a topic, or a client id) in `mountpoint`, in the
/// cluster's key-value buckets: `<mountpoint>.<name>`, escaped (a topic
/// `a/b` in no mountpoint is `=00.a/b`).
pub(crate) fn kv_key(mountpoint: &str, topic: &str) -> String {
    let mut k = String::with_capacity(mountpoint.len() + topic.len() + 4);
    push_key_part(&mut k, mountpoint, false);
    k.push('.');
    push_key_part(&mut k, topic, true);
    k
}

/// The mountpoint and name of a key written by [`kv_key`]; `None` for
/// any other key.
pub(crate) fn decode_kv_key(key: &str) -> Option<(String, String)> {
    let (mountpoint, topic) = key.split_once('.')?;
    let decoded = (decode_key_part(mountpoint)?, decode_key_part(topic)?);
    // Only the one spelling we write (no needless escapes).
    (kv_key(&decoded.0, &decoded.1) == key && !decoded.1.is_empty()).then_some(decoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// NATS's own matching of a subject against a subscription subject.
    fn nats_matches(pattern: &str, subject: &str) -> bool {
        let p: Vec<&str> = pattern.split('.').collect();
        let s: Vec<&str> = subject.split('.').collect();
        for (i, t) in p.iter().enumerate() {
            match *t {
                ">" => return s.len() > i,
                "*" => {
                    if i >= s.len() {
                        return false;
                    }
                }
                _ => {
                    if s.get(i) != Some(t) {
                        return false;
                    }
                }
            }
        }
        p.len() == s.len()
    }

    fn valid_token(t: &str) -> bool {
        !t.is_empty() && !t.bytes().any(|b| b == b'.' || b.is_ascii_whitespace())
    }

    #[test]
    fn topics_round_trip_through_valid_subjects() {
        let topics = [
            "a",
            "a/b/c",
            "/",
            "//",
            "a//b/",
            "with.dot/and space/star*/gt>/per%cent",
            "tab\tnew\nline",
            "ünïcödé/日本/🦀",
            "$SYS/broker/uptime",
            "%00/%",
        ];
        for mountpoint in ["", "tenant.a", "m%"] {
            for topic in topics {
                let subject = topic_subject(mountpoint, topic);
                for t in subject.split('.') {
                    assert!(valid_token(t), "{subject:?} has token {t:?}");
                }
                assert_eq!(
                    decode_topic(&subject),
                    Some((mountpoint.to_owned(), topic.to_owned())),
                    "{subject}"
                );
            }
        }
    }

    #[test]
    fn foreign_subjects_are_not_decoded() {
        for s in [
            "other.t.x.a",
            "sluice.t",
            "sluice.t.%00",
            "sluice.t.%00.%4",
            "sluice.t.%00.%41",
            "sluice.t.%00.%zz",
            "sluice.t.%00.%FF",
        ] {
            assert_eq!(decode_topic(s), None, "{s}");
        }
    }

    #[test]
    fn filters_match_as_mqtt_does() {
        let cases: &[(&str, &str, bool)] = &[
            ("a/b", "a/b", true),
            ("a/b", "a/c", false),
            ("a/+", "a/b", true),
            ("a/+", "a", false),
            ("a/+", "a/b/c", false),
            ("a/#", "a", true),
            ("a/#", "a/b/c", true),
            ("a/#", "ab", false),
            ("#", "a", true),
            ("#", "/", true),
            ("+/+", "/", true),
            ("+", "/", false),
            ("a.b/#", "a.b/x", true),
            ("a.b/#", "a/b/x", false),
            ("+/x", "/x", true),
            ("/#", "/", true),
            ("/#", "a", false),
        ];
        for (filter, topic, expected) in cases {
            let subject = topic_subject("", topic);
            let got = filter_subjects("", filter)
                .iter()
                .any(|p| nats_matches(p, &subject));
            assert_eq!(got, *expected, "{filter} vs {topic}");
            let mqtt = crate::topic::TopicFilter::new(filter)
                .unwrap()
                .matches(&crate::topic::TopicName::new(topic).unwrap());
            assert_eq!(mqtt, *expected, "MQTT: {filter} vs {topic}");
        }
        // Mountpoints stay apart.
        let other = topic_subject("m", "a");
        assert!(
            !filter_subjects("", "#")
                .iter()
                .any(|p| nats_matches(p, &other))
        );
    }

    #[test]
    fn kv_keys_round_trip_and_stay_valid_nats_keys() {
        let valid = |k: &str| {
            !k.starts_with('.')
                && !k.ends_with('.')
                && k.split('.').all(|t| !t.is_empty())
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-/_=.".contains(&b))
        };
        for mountpoint in ["", "tenant.a", "m/x", "="] {
            for topic in [
                "a",
                "a/b/c",
                "/",
                "a//b/",
                "dot.ted",
                "ünï/🦀",
                "$SYS/x",
                "=41",
            ] {
                let key = kv_key(mountpoint, topic);
                assert!(valid(&key), "{key:?}");
                assert_eq!(
                    decode_kv_key(&key),
                    Some((mountpoint.to_owned(), topic.to_owned())),
                    "{key}"
                );
            }
        }
        assert_eq!(kv_key("", "a/b"), "=00.a/b");
        for k in ["a", "=00.", "=00.=4", "=00.=41", "=00.=FF", "x.y=2"] {
            assert_eq!(decode_kv_key(k), None, "{k}");
        }
    }
}
