//! The ACL itself, independent of the plugin interface (so that it is unit
//! tested on the host): the configuration, topic patterns with placeholders,
//! and the three questions an ACL asks of MQTT topic filters: does a
//! pattern match a topic, does it cover a filter, does it intersect one.

use std::borrow::Cow;
use std::collections::HashMap;

use sluice_plugin_sdk::{FromConfig, Settings, config::invalid, reason};

/// The client a decision is about: the values the placeholders stand for.
#[derive(Clone, Copy, Debug)]
pub struct Client<'a> {
    pub username: Option<&'a str>,
    pub client_id: &'a str,
    pub mountpoint: &'a str,
}

/// Part of a pattern level that is not a wildcard.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    /// `%u`
    Username,
    /// `%c`
    ClientId,
    /// `%m`
    Mountpoint,
}

/// One level of a pattern as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Level {
    /// `#`
    Multi,
    /// `+`
    Single,
    /// Text, possibly with placeholders.
    Text(Vec<Piece>),
}

/// One level of a pattern once the placeholders are substituted.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Resolved<'a> {
    Multi,
    Single,
    Text(Cow<'a, str>),
    /// A placeholder's value held `/`, `+` or `#`: values are literal text
    /// within one level, never wildcards, so no topic level equals it.
    Never,
}

impl Resolved<'_> {
    fn is_wildcard(&self) -> bool {
        matches!(self, Resolved::Multi | Resolved::Single)
    }

    fn is_dollar(&self) -> bool {
        matches!(self, Resolved::Text(t) if t.starts_with('$'))
    }
}

/// An MQTT topic filter in which `%u`, `%c` and `%m` stand for the
/// client's username, client id and mountpoint (`%%` is a literal `%`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern {
    levels: Vec<Level>,
}

impl Pattern {
    /// Parses a pattern, explaining what is wrong with an invalid one.
    pub fn parse(source: &str) -> Result<Pattern, String> {
        if source.is_empty() {
            return Err("empty pattern".into());
        }
        let count = source.split('/').count();
        let mut levels = Vec::with_capacity(count);
        for (i, level) in source.split('/').enumerate() {
            levels.push(match level {
                "#" if i + 1 == count => Level::Multi,
                "#" => return Err(format!("{source:?}: '#' must be the last level")),
                "+" => Level::Single,
                _ if level.contains(['+', '#']) => {
                    return Err(format!(
                        "{source:?}: a wildcard ('+' or '#') must be a whole level"
                    ));
                }
                _ => Level::Text(pieces(source, level)?),
            });
        }
        Ok(Pattern { levels })
    }

    /// The pattern for this client, or `None` when it names a value the
    /// client does not have (`%u` without a username, `%m` in the default
    /// tree): such a pattern does not apply to the client at all.
    fn resolve<'p>(&'p self, client: &Client<'_>) -> Option<Vec<Resolved<'p>>> {
        self.levels
            .iter()
            .map(|level| match level {
                Level::Multi => Some(Resolved::Multi),
                Level::Single => Some(Resolved::Single),
                Level::Text(pieces) => resolve_text(pieces, client),
            })
            .collect()
    }

    /// Whether the topic `topic` (no wildcards) matches the pattern.
    pub fn matches(&self, client: &Client<'_>, topic: &str) -> bool {
        self.resolve(client).is_some_and(|p| matches(&p, topic))
    }

    /// Whether every topic that `filter` matches, the pattern matches too.
    pub fn covers(&self, client: &Client<'_>, filter: &str) -> bool {
        self.resolve(client).is_some_and(|p| covers(&p, filter))
    }

    /// Whether some topic matches both the pattern and `filter`.
    pub fn intersects(&self, client: &Client<'_>, filter: &str) -> bool {
        self.resolve(client).is_some_and(|p| intersects(&p, filter))
    }
}

/// Splits a text level into literal text and placeholders.
fn pieces(source: &str, level: &str) -> Result<Vec<Piece>, String> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut chars = level.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            text.push(c);
            continue;
        }
        let placeholder = match chars.next() {
            Some('%') => {
                text.push('%');
                continue;
            }
            Some('u') => Piece::Username,
            Some('c') => Piece::ClientId,
            Some('m') => Piece::Mountpoint,
            Some(other) => {
                return Err(format!(
                    "{source:?}: unknown placeholder %{other} (use %u, %c, %m or %%)"
                ));
            }
            None => return Err(format!("{source:?}: '%' at the end (use %% for a '%')")),
        };
        if !text.is_empty() {
            out.push(Piece::Text(std::mem::take(&mut text)));
        }
        out.push(placeholder);
    }
    if !text.is_empty() || out.is_empty() {
        out.push(Piece::Text(text));
    }
    Ok(out)
}

fn resolve_text<'p>(pieces: &'p [Piece], client: &Client<'_>) -> Option<Resolved<'p>> {
    if let [Piece::Text(t)] = pieces {
        return Some(Resolved::Text(Cow::Borrowed(t)));
    }
    let mut out = String::new();
    for piece in pieces {
        let value = match piece {
            Piece::Text(t) => {
                out.push_str(t);
                continue;
            }
            Piece::Username => client.username.unwrap_or_default(),
            Piece::ClientId => client.client_id,
            Piece::Mountpoint => client.mountpoint,
        };
        if value.is_empty() {
            return None;
        }
        if value.contains(['/', '+', '#']) {
            return Some(Resolved::Never);
        }
        out.push_str(value);
    }
    Some(Resolved::Text(Cow::Owned(out)))
}

/// Topic matching (MQTT 5 §4.7): `+` is one level, a trailing `#` any
/// number of levels including none (`a/#` matches `a`), and a wildcard in
/// the first level never matches a topic starting with `$`.
fn matches(p: &[Resolved<'_>], topic: &str) -> bool {
    if topic.starts_with('$') && p.first().is_some_and(Resolved::is_wildcard) {
        return false;
    }
    let mut t = topic.split('/');
    for level in p {
        match level {
            Resolved::Multi => return true,
            Resolved::Single => {
                if t.next().is_none() {
                    return false;
                }
            }
            Resolved::Text(s) => {
                if t.next() != Some(s.as_ref()) {
                    return false;
                }
            }
            Resolved::Never => return false,
        }
    }
    t.next().is_none()
}

/// Whether the pattern matches every topic `filter` matches.
fn covers(p: &[Resolved<'_>], filter: &str) -> bool {
    let f: Vec<&str> = filter.split('/').collect();
    if f[0].starts_with('$') && p.first().is_some_and(Resolved::is_wildcard) {
        return false;
    }
    for (i, level) in p.iter().enumerate() {
        if *level == Resolved::Multi {
            return true;
        }
        let Some(&fl) = f.get(i) else {
            // The filter matches topics with fewer levels than the
            // pattern requires.
            return false;
        };
        let covered = match level {
            // Only `#` covers the filter's `#` (handled above).
            _ if fl == "#" => false,
            Resolved::Single => true,
            Resolved::Text(s) => fl != "+" && fl == s.as_ref(),
            Resolved::Multi | Resolved::Never => false,
        };
        if !covered {
            return false;
        }
    }
    f.len() == p.len()
}

/// Whether some topic matches both the pattern and `filter`.
fn intersects(p: &[Resolved<'_>], filter: &str) -> bool {
    let f: Vec<&str> = filter.split('/').collect();
    // First-level wildcards never match `$` topics.
    let f_wild = f[0] == "+" || f[0] == "#";
    if (f[0].starts_with('$') && p.first().is_some_and(Resolved::is_wildcard))
        || (f_wild && p.first().is_some_and(Resolved::is_dollar))
    {
        return false;
    }
    let mut i = 0;
    loop {
        match (p.get(i), f.get(i).copied()) {
            (Some(Resolved::Never), _) => return false,
            (None, None) | (Some(Resolved::Multi), _) => return true,
            // The rest of the pattern is plain levels: some topic has them.
            (_, Some("#")) => return !p[i..].contains(&Resolved::Never),
            (None, Some(_)) | (Some(_), None) => return false,
            (Some(Resolved::Single), Some(_)) => {}
            (Some(Resolved::Text(s)), Some(fl)) => {
                if fl != "+" && fl != s.as_ref() {
                    return false;
                }
            }
        }
        i += 1;
    }
}

/// The topic filter proper of a subscription: a shared subscription's
/// `$share/GROUP/` prefix removed.
pub fn real_filter(filter: &str) -> &str {
    filter
        .strip_prefix("$share/")
        .and_then(|rest| rest.split_once('/'))
        .map_or(filter, |(_group, f)| f)
}

/// The patterns of one scope (everyone, a user, a client).
#[derive(Debug, Default)]
pub struct Rules {
    publish: Vec<Pattern>,
    deny_publish: Vec<Pattern>,
    subscribe: Vec<Pattern>,
    deny_subscribe: Vec<Pattern>,
}

impl Rules {
    /// The patterns of one scope's settings.
    fn parse(s: &Settings) -> Result<Rules, String> {
        let patterns = |key: &str| -> Result<Vec<Pattern>, String> {
            s.list(key)
                .map(|p| Pattern::parse(p).map_err(|e| format!("{key}: {e}")))
                .collect()
        };
        Ok(Rules {
            publish: patterns("publish")?,
            deny_publish: patterns("deny_publish")?,
            subscribe: patterns("subscribe")?,
            deny_subscribe: patterns("deny_subscribe")?,
        })
    }

    /// The rules of each scope under `prefix` (`user.NAME.KIND`...).
    fn scoped(s: &Settings, prefix: &str) -> Result<HashMap<String, Rules>, String> {
        let mut scopes = HashMap::new();
        for (name, settings) in s.scoped(prefix) {
            let rules = Rules::parse(&settings)?;
            settings
                .finish()
                .map_err(|e| format!("{e} in {prefix}.{name}"))?;
            scopes.insert(name, rules);
        }
        Ok(scopes)
    }
}

/// What to do with what no rule mentions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unmatched {
    Deny,
    Next,
}

/// One decision of the ACL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny,
    /// No rule says anything.
    Unmatched,
}

/// The decision on a whole SUBSCRIBE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubscribeDecision {
    /// Per requested filter, in order: granted (true) or refused.
    PerTopic(Vec<bool>),
    /// Let the next plugin decide the whole SUBSCRIBE.
    Next,
}

/// The whole configuration.
#[derive(Debug)]
pub struct Acl {
    everyone: Rules,
    users: HashMap<String, Rules>,
    clients: HashMap<String, Rules>,
    pub unmatched: Unmatched,
    /// 0: acceptances are not cached.
    pub cache_secs: u32,
    pub subscribe_refusal_code: u8,
}

/// SUBACK codes that refuse a subscription (MQTT 5 §3.9.3).
const SUBACK_REFUSALS: [u8; 9] = [
    reason::UNSPECIFIED_ERROR,
    reason::IMPLEMENTATION_SPECIFIC_ERROR,
    reason::NOT_AUTHORIZED,
    reason::TOPIC_FILTER_INVALID,
    reason::PACKET_IDENTIFIER_IN_USE,
    reason::QUOTA_EXCEEDED,
    reason::SHARED_SUBSCRIPTIONS_NOT_SUPPORTED,
    reason::SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED,
    reason::WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED,
];

/// A number written in decimal or as `0x` hex.
fn number<T: TryFrom<u64>>(s: &Settings, key: &str) -> Result<Option<T>, String> {
    let Some(value) = s.get(key) else {
        return Ok(None);
    };
    let v = value.trim();
    let parsed = match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => v.parse(),
    };
    let n = parsed.ok().and_then(|n| T::try_from(n).ok());
    n.map(Some)
        .ok_or_else(|| invalid(key, value, "not a number in range"))
}

impl FromConfig for Acl {
    /// An error names the key and what is wrong with it.
    fn from_config(s: &Settings) -> Result<Acl, String> {
        let code = number(s, "subscribe_refusal_code")?.unwrap_or(reason::NOT_AUTHORIZED);
        if !SUBACK_REFUSALS.contains(&code) {
            let why = "not a SUBACK refusal code (0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1 or 0xA2)";
            return Err(invalid(
                "subscribe_refusal_code",
                s.get("subscribe_refusal_code").unwrap_or_default(),
                why,
            ));
        }
        let unmatched = [("deny", Unmatched::Deny), ("next", Unmatched::Next)];
        let acl = Acl {
            everyone: Rules::parse(s)?,
            users: Rules::scoped(s, "user")?,
            clients: Rules::scoped(s, "client")?,
            unmatched: s.choice("unmatched", Unmatched::Deny, &unmatched)?,
            cache_secs: number(s, "cache_secs")?.unwrap_or(60),
            subscribe_refusal_code: code,
        };
        s.finish().map_err(|e| {
            format!("{e} (per-user and per-client keys are user.NAME.KIND and client.ID.KIND)")
        })?;
        Ok(acl)
    }
}

impl Acl {
    /// The rule scopes that apply to this client.
    fn scopes<'s>(&'s self, client: &Client<'_>) -> impl Iterator<Item = &'s Rules> {
        let user = client
            .username
            .filter(|u| !u.is_empty())
            .and_then(|u| self.users.get(u));
        std::iter::once(&self.everyone)
            .chain(user)
            .chain(self.clients.get(client.client_id))
    }

    /// Deny patterns win over allow patterns: `deny` and `allow` pick a
    /// rule set's two lists, `test` says whether a pattern applies.
    fn decide(
        &self,
        client: &Client<'_>,
        deny: fn(&Rules) -> &[Pattern],
        allow: fn(&Rules) -> &[Pattern],
        test: impl Fn(&Pattern) -> bool,
    ) -> Decision {
        if self.scopes(client).flat_map(deny).any(&test) {
            Decision::Deny
        } else if self.scopes(client).flat_map(allow).any(&test) {
            Decision::Allow
        } else {
            Decision::Unmatched
        }
    }

    /// May this client publish to `topic`? Deny rules win over allow rules.
    pub fn publish(&self, client: &Client<'_>, topic: &str) -> Decision {
        self.decide(
            client,
            |r| &r.deny_publish,
            |r| &r.publish,
            |p| p.matches(client, topic),
        )
    }

    /// May this client subscribe to `filter`? Refused if a deny pattern
    /// covers it (every topic it can receive is denied), else allowed if
    /// an allow pattern covers it. A filter that a deny pattern only
    /// intersects (`#` with `private/#` denied) is allowed: what it
    /// receives is checked per message by [`Acl::read`].
    pub fn subscribe(&self, client: &Client<'_>, filter: &str) -> Decision {
        let filter = real_filter(filter);
        self.decide(
            client,
            |r| &r.deny_subscribe,
            |r| &r.subscribe,
            |p| p.covers(client, filter),
        )
    }

    /// May this client read a message on `topic` (delivered through a
    /// subscription it was granted)? Deny patterns win over allow
    /// patterns, as for [`Acl::subscribe`], but on the topic itself.
    pub fn read(&self, client: &Client<'_>, topic: &str) -> Decision {
        self.decide(
            client,
            |r| &r.deny_subscribe,
            |r| &r.subscribe,
            |p| p.matches(client, topic),
        )
    }

    /// Whether `filter` is granted only partly: some topics it can receive
    /// are denied (a deny pattern intersects it without covering it), so
    /// what it receives is checked per message.
    pub fn partly_denied(&self, client: &Client<'_>, filter: &str) -> bool {
        let filter = real_filter(filter);
        self.scopes(client)
            .flat_map(|r| &r.deny_subscribe)
            .any(|p| p.intersects(client, filter))
    }

    /// Whether a deny pattern applies to this client at all: without one,
    /// [`Acl::read`] never denies anything and deliveries need no check
    /// beyond the allow patterns.
    pub fn denies_reads(&self, client: &Client<'_>) -> bool {
        self.scopes(client).any(|r| !r.deny_subscribe.is_empty())
    }

    /// The decision on a whole SUBSCRIBE. A SUBSCRIBE can only be passed
    /// on as a whole: with `unmatched = "next"` it is passed on when some
    /// filter is unmatched and none is denied (a denial must not be lost);
    /// otherwise unmatched filters are refused.
    pub fn subscribe_all<'f>(
        &self,
        client: &Client<'_>,
        filters: impl IntoIterator<Item = &'f str>,
    ) -> SubscribeDecision {
        let decisions: Vec<Decision> = filters
            .into_iter()
            .map(|f| self.subscribe(client, f))
            .collect();
        if self.unmatched == Unmatched::Next
            && decisions.contains(&Decision::Unmatched)
            && !decisions.contains(&Decision::Deny)
        {
            return SubscribeDecision::Next;
        }
        SubscribeDecision::PerTopic(decisions.iter().map(|d| *d == Decision::Allow).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANON: Client<'static> = Client {
        username: None,
        client_id: "dev-1",
        mountpoint: "",
    };
    const ALICE: Client<'static> = Client {
        username: Some("alice"),
        client_id: "phone",
        mountpoint: "tenant-a",
    };

    fn p(s: &str) -> Pattern {
        match Pattern::parse(s) {
            Ok(p) => p,
            Err(e) => panic!("{s}: {e}"),
        }
    }

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
        for (pattern, topic) in yes {
            assert!(p(pattern).matches(&ANON, topic), "{pattern} ~ {topic}");
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
        for (pattern, topic) in no {
            assert!(!p(pattern).matches(&ANON, topic), "{pattern} !~ {topic}");
        }
    }

    #[test]
    fn pattern_covers_filter() {
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
        for (pattern, filter) in yes {
            assert!(
                p(pattern).covers(&ANON, filter),
                "{pattern} covers {filter}"
            );
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
        ];
        for (pattern, filter) in no {
            assert!(
                !p(pattern).covers(&ANON, filter),
                "{pattern} does not cover {filter}"
            );
        }
    }

    #[test]
    fn pattern_intersects_filter() {
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
        for (pattern, filter) in yes {
            assert!(p(pattern).intersects(&ANON, filter), "{pattern} & {filter}");
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
        for (pattern, filter) in no {
            assert!(
                !p(pattern).intersects(&ANON, filter),
                "{pattern} and {filter} are disjoint"
            );
        }
    }

    #[test]
    fn placeholders_are_substituted() {
        assert!(p("users/%u/#").matches(&ALICE, "users/alice/x"));
        assert!(!p("users/%u/#").matches(&ALICE, "users/bob/x"));
        assert!(p("dev/%c/up").matches(&ALICE, "dev/phone/up"));
        assert!(p("%m/%u-%c").matches(&ALICE, "tenant-a/alice-phone"));
        assert!(p("100%%/%u").matches(&ALICE, "100%/alice"));
        assert!(p("users/%u/#").covers(&ALICE, "users/alice/+"));
        assert!(p("users/%u/#").intersects(&ALICE, "users/+/x"));
        // No username, no mountpoint: the pattern does not apply.
        assert!(!p("users/%u/#").matches(&ANON, "users//x"));
        assert!(!p("users/%u/#").intersects(&ANON, "#"));
        assert!(!p("%m/#").matches(&ANON, "/x"));
        let empty = Client {
            username: Some(""),
            ..ANON
        };
        assert!(!p("users/%u/#").matches(&empty, "users//x"));
    }

    #[test]
    fn placeholder_values_are_never_wildcards() {
        for name in ["+", "#", "a/b"] {
            let c = Client {
                username: Some(name),
                ..ANON
            };
            assert!(!p("users/%u/x").matches(&c, "users/bob/x"), "{name}");
            assert!(!p("users/%u/x").covers(&c, "users/+/x"), "{name}");
            assert!(!p("users/%u/x").intersects(&c, "users/+/x"), "{name}");
            assert!(!p("users/%u/#").matches(&c, "users/a/b/x"), "{name}");
        }
    }

    #[test]
    fn invalid_patterns_are_explained() {
        for (bad, why) in [
            ("", "empty"),
            ("a/#/b", "last level"),
            ("a/b#", "whole level"),
            ("a+/b", "whole level"),
            ("a/%x", "unknown placeholder %x"),
            ("a/%", "at the end"),
        ] {
            match Pattern::parse(bad) {
                Ok(_) => panic!("{bad:?} accepted"),
                Err(e) => assert!(e.contains(why), "{bad:?}: {e}"),
            }
        }
    }

    #[test]
    fn shared_subscriptions_are_checked_on_their_filter() {
        assert_eq!(real_filter("$share/g/sensors/#"), "sensors/#");
        assert_eq!(real_filter("sensors/#"), "sensors/#");
        assert_eq!(real_filter("$share/g"), "$share/g");
    }

    fn parse(pairs: &[(&str, &str)]) -> Result<Acl, String> {
        Acl::from_config(&Settings::new(pairs.iter().copied()))
    }

    fn acl(pairs: &[(&str, &str)]) -> Acl {
        match parse(pairs) {
            Ok(a) => a,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn configuration_is_parsed() {
        let a = acl(&[
            ("publish", "sensors/#, users/%u/#,"),
            ("deny_publish", "sensors/secret/#"),
            ("subscribe", "sensors/#"),
            ("user.alice.publish", "shared/alice"),
            ("user.first.last.publish", "dotted"),
            ("client.gw.deny_subscribe", "sensors/x"),
            ("unmatched", "next"),
            ("cache_secs", "5"),
            ("subscribe_refusal_code", "0x80"),
        ]);
        assert_eq!(a.everyone.publish.len(), 2);
        assert_eq!(a.users["alice"].publish.len(), 1);
        assert_eq!(a.users["first.last"].publish.len(), 1);
        assert_eq!(a.clients["gw"].deny_subscribe.len(), 1);
        assert_eq!(a.unmatched, Unmatched::Next);
        assert_eq!(a.cache_secs, 5);
        assert_eq!(a.subscribe_refusal_code, 0x80);

        let d = acl(&[]);
        assert_eq!(
            (d.unmatched, d.cache_secs, d.subscribe_refusal_code),
            (Unmatched::Deny, 60, 0x87)
        );
        assert_eq!(
            acl(&[("subscribe_refusal_code", "128")]).subscribe_refusal_code,
            0x80
        );
    }

    #[test]
    fn invalid_configuration_is_refused() {
        for (key, value, why) in [
            ("publsh", "a", "unknown configuration key \"publsh\""),
            ("user.alice.pub", "a", "unknown configuration key"),
            ("user..publish", "a", "unknown configuration key"),
            ("group.x.publish", "a", "unknown configuration key"),
            (
                "publish",
                "a/#/b",
                "publish: \"a/#/b\": '#' must be the last level",
            ),
            ("unmatched", "allow", "expected \"deny\" or \"next\""),
            ("cache_secs", "-1", "cache_secs"),
            (
                "subscribe_refusal_code",
                "0x10",
                "not a SUBACK refusal code",
            ),
            ("subscribe_refusal_code", "0x187", "not a number in range"),
        ] {
            match parse(&[(key, value)]) {
                Ok(_) => panic!("{key} = {value:?} accepted"),
                Err(e) => assert!(e.contains(why), "{key} = {value:?}: {e}"),
            }
        }
    }

    #[test]
    fn publish_decisions() {
        let a = acl(&[
            ("publish", "sensors/#, users/%u/#"),
            ("deny_publish", "sensors/secret/#"),
            ("user.bob.publish", "shared/bob"),
            ("client.dev-1.publish", "devices/%c/up"),
            ("client.dev-1.deny_publish", "sensors/noisy"),
        ]);
        let bob = Client {
            username: Some("bob"),
            client_id: "b",
            mountpoint: "",
        };
        assert_eq!(a.publish(&ANON, "sensors/a"), Decision::Allow);
        assert_eq!(a.publish(&ANON, "sensors/secret/a"), Decision::Deny);
        assert_eq!(a.publish(&ANON, "admin"), Decision::Unmatched);
        assert_eq!(a.publish(&ANON, "users//x"), Decision::Unmatched);
        assert_eq!(a.publish(&ALICE, "users/alice/x"), Decision::Allow);
        assert_eq!(a.publish(&ALICE, "users/bob/x"), Decision::Unmatched);
        assert_eq!(a.publish(&bob, "shared/bob"), Decision::Allow);
        assert_eq!(a.publish(&ALICE, "shared/bob"), Decision::Unmatched);
        assert_eq!(a.publish(&ANON, "devices/dev-1/up"), Decision::Allow);
        assert_eq!(a.publish(&bob, "devices/dev-1/up"), Decision::Unmatched);
        // A per-client deny wins over the everyone allow.
        assert_eq!(a.publish(&ANON, "sensors/noisy"), Decision::Deny);
        assert_eq!(a.publish(&bob, "sensors/noisy"), Decision::Allow);
    }

    #[test]
    fn subscribe_decisions() {
        let a = acl(&[
            ("subscribe", "sensors/#"),
            ("deny_subscribe", "sensors/secret/#"),
        ]);
        assert_eq!(a.subscribe(&ANON, "sensors/a/temp"), Decision::Allow);
        assert_eq!(a.subscribe(&ANON, "sensors/public/#"), Decision::Allow);
        assert_eq!(a.subscribe(&ANON, "$share/g/sensors/a/+"), Decision::Allow);
        // Covered by the allow pattern and only partly denied: granted,
        // and what could be secret is checked per message (`read`).
        assert_eq!(a.subscribe(&ANON, "sensors/#"), Decision::Allow);
        assert_eq!(a.subscribe(&ANON, "sensors/+/temp"), Decision::Allow);
        assert_eq!(a.subscribe(&ANON, "$share/g/sensors/#"), Decision::Allow);
        assert_eq!(a.subscribe(&ANON, "sensors/+/x"), Decision::Allow);
        assert!(a.partly_denied(&ANON, "sensors/#"));
        assert!(a.partly_denied(&ANON, "$share/g/sensors/+/x"));
        assert!(!a.partly_denied(&ANON, "sensors/public/#"));
        // Entirely inside the denied space: refused at SUBSCRIBE.
        assert_eq!(a.subscribe(&ANON, "sensors/secret/#"), Decision::Deny);
        assert_eq!(a.subscribe(&ANON, "sensors/secret/+/x"), Decision::Deny);
        assert_eq!(
            a.subscribe(&ANON, "$share/g/sensors/secret/#"),
            Decision::Deny
        );
        // Not covered by an allow pattern.
        assert_eq!(a.subscribe(&ANON, "#"), Decision::Unmatched);
        assert_eq!(a.subscribe(&ANON, "admin/#"), Decision::Unmatched);
        assert_eq!(
            a.subscribe_all(&ANON, ["sensors/a", "admin/#", "sensors/secret/x"]),
            SubscribeDecision::PerTopic(vec![true, false, false])
        );
    }

    /// The configuration `cargo xtask run` ships (config/sluice.toml).
    fn shipped() -> Acl {
        acl(&[
            ("publish", "#"),
            ("subscribe", "#, $SYS/#"),
            ("deny_publish", "private/#"),
            ("deny_subscribe", "private/#"),
        ])
    }

    #[test]
    fn filters_entirely_inside_a_denied_space_are_refused() {
        let a = shipped();
        for filter in [
            "private/#",
            "private",
            "private/+",
            "private/a/#",
            "private/+/b",
            "private/+/+/#",
            "$share/g/private/#",
        ] {
            assert_eq!(a.subscribe(&ANON, filter), Decision::Deny, "{filter}");
        }
    }

    #[test]
    fn filters_partly_overlapping_a_denied_space_are_granted_and_checked() {
        let a = shipped();
        // Each can receive some private topics and some others.
        for filter in ["#", "+/#", "+", "+/a", "+/+/c", "$share/g/#"] {
            assert_eq!(a.subscribe(&ANON, filter), Decision::Allow, "{filter}");
            assert!(a.partly_denied(&ANON, filter), "{filter}");
        }
        assert_eq!(a.read(&ANON, "private/a"), Decision::Deny);
        assert_eq!(a.read(&ANON, "private"), Decision::Deny);
        assert_eq!(a.read(&ANON, "private/a/b/c"), Decision::Deny);
        assert_eq!(a.read(&ANON, "public/a"), Decision::Allow);
        assert_eq!(a.read(&ANON, "privateer"), Decision::Allow);
        assert_eq!(a.read(&ANON, "x/private"), Decision::Allow);
        assert_eq!(a.read(&ANON, "/private"), Decision::Allow);
    }

    #[test]
    fn filters_disjoint_from_denied_spaces_need_no_check() {
        let a = shipped();
        for filter in ["public/#", "public/+/x", "a", "/private", "x/private/#"] {
            assert_eq!(a.subscribe(&ANON, filter), Decision::Allow, "{filter}");
            assert!(!a.partly_denied(&ANON, filter), "{filter}");
        }
    }

    #[test]
    fn dollar_topics_are_not_reached_by_leading_wildcards() {
        let a = shipped();
        // `#` cannot receive `$SYS/...`, so `$SYS/#` is granted by its own
        // allow pattern and no deny pattern touches it.
        assert_eq!(a.subscribe(&ANON, "$SYS/#"), Decision::Allow);
        assert!(!a.partly_denied(&ANON, "$SYS/#"));
        assert_eq!(a.read(&ANON, "$SYS/broker/uptime"), Decision::Allow);
        // A `$` deny space: refused inside, checked per message from a
        // filter that only overlaps it, and out of reach of `#`.
        let b = acl(&[
            ("subscribe", "#, $SYS/#"),
            ("deny_subscribe", "$SYS/broker/clients/#"),
        ]);
        assert_eq!(b.subscribe(&ANON, "$SYS/broker/clients/+"), Decision::Deny);
        assert_eq!(b.subscribe(&ANON, "$SYS/#"), Decision::Allow);
        assert!(b.partly_denied(&ANON, "$SYS/#"));
        assert!(!b.partly_denied(&ANON, "#"));
        assert_eq!(b.read(&ANON, "$SYS/broker/clients/total"), Decision::Deny);
        assert_eq!(b.read(&ANON, "$SYS/broker/uptime"), Decision::Allow);
        // A leading-wildcard deny pattern never denies `$` topics.
        let c = acl(&[("subscribe", "#, $SYS/#"), ("deny_subscribe", "+/secret")]);
        assert_eq!(c.read(&ANON, "$SYS/secret"), Decision::Allow);
        assert_eq!(c.read(&ANON, "a/secret"), Decision::Deny);
        assert_eq!(c.subscribe(&ANON, "$SYS/+"), Decision::Allow);
        assert!(!c.partly_denied(&ANON, "$SYS/+"));
    }

    #[test]
    fn reads_follow_placeholders_and_scopes() {
        let a = acl(&[
            ("subscribe", "#"),
            ("deny_subscribe", "users/+/#"),
            ("user.alice.subscribe", "users/%u/#"),
            ("client.dev-1.deny_subscribe", "alerts/#"),
        ]);
        // The everyone deny wins over alice's own allow, as at SUBSCRIBE.
        assert_eq!(a.read(&ALICE, "users/alice/x"), Decision::Deny);
        assert_eq!(a.read(&ANON, "alerts/fire"), Decision::Deny);
        let bob = Client {
            username: Some("bob"),
            client_id: "b",
            mountpoint: "",
        };
        assert_eq!(a.read(&bob, "alerts/fire"), Decision::Allow);
        assert!(a.denies_reads(&bob));
        let open = acl(&[("subscribe", "#"), ("client.dev-1.deny_subscribe", "x")]);
        assert!(!open.denies_reads(&bob));
        assert!(open.denies_reads(&ANON));
        assert_eq!(open.read(&bob, "$SYS/x"), Decision::Unmatched);
    }

    #[test]
    fn unmatched_next_passes_whole_subscribes_on() {
        let a = acl(&[
            ("subscribe", "sensors/#"),
            ("deny_subscribe", "admin/#"),
            ("unmatched", "next"),
        ]);
        assert_eq!(
            a.subscribe_all(&ANON, ["sensors/a"]),
            SubscribeDecision::PerTopic(vec![true])
        );
        assert_eq!(
            a.subscribe_all(&ANON, ["sensors/a", "other"]),
            SubscribeDecision::Next
        );
        // A denial is never passed on.
        assert_eq!(
            a.subscribe_all(&ANON, ["other", "admin/x"]),
            SubscribeDecision::PerTopic(vec![false, false])
        );
    }
}
