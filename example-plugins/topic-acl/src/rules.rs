//! The ACL itself, independent of the plugin interface (so that it is unit
//! tested on the host): the configuration, and topic patterns with
//! placeholders, of which an ACL asks three questions about MQTT topic
//! filters (the SDK's `topic` functions answer them): does a pattern match
//! a topic, does it cover a filter, does it intersect one.

use std::borrow::Cow;
use std::collections::HashMap;

use serde::Deserialize;
use sluice_plugin_sdk::template::Template;
use sluice_plugin_sdk::{FromConfig, Settings, config::invalid, reason, topic};

/// The client a decision is about: the values the placeholders stand for.
#[derive(Clone, Copy, Debug)]
pub struct Client<'a> {
    pub username: Option<&'a str>,
    pub client_id: &'a str,
    pub mountpoint: &'a str,
}

/// An MQTT topic filter in which `%u`, `%c` and `%m` stand for the
/// client's username, client id and mountpoint (`%%` is a literal `%`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Pattern(Template);

impl TryFrom<String> for Pattern {
    type Error = String;

    fn try_from(source: String) -> Result<Pattern, String> {
        Pattern::parse(&source)
    }
}

impl Pattern {
    /// Parses a pattern, explaining what is wrong with an invalid one.
    pub fn parse(source: &str) -> Result<Pattern, String> {
        topic::check_filter(source)?;
        Template::parse(source, &['u', 'c', 'm']).map(Pattern)
    }

    /// The filter for this client, or `None` when the pattern does not
    /// apply to the client at all: it names a value the client does not
    /// have (`%u` without a username, `%m` in the default tree), or one
    /// holding `/`, `+` or `#` (values are literal text within one level,
    /// never wildcards, so no topic level equals such a value).
    fn resolve(&self, client: &Client<'_>) -> Option<Cow<'_, str>> {
        self.0.render(|letter| {
            let value = match letter {
                'u' => client.username.unwrap_or_default(),
                'c' => client.client_id,
                _ => client.mountpoint,
            };
            (!value.is_empty() && !value.contains(['/', '+', '#'])).then_some(value)
        })
    }

    /// Whether the topic `topic` (no wildcards) matches the pattern.
    pub fn matches(&self, client: &Client<'_>, topic: &str) -> bool {
        self.resolve(client)
            .is_some_and(|p| topic::matches(&p, topic))
    }

    /// Whether every topic that `filter` matches, the pattern matches too.
    pub fn covers(&self, client: &Client<'_>, filter: &str) -> bool {
        self.resolve(client)
            .is_some_and(|p| topic::covers(&p, filter))
    }

    /// Whether some topic matches both the pattern and `filter`.
    pub fn intersects(&self, client: &Client<'_>, filter: &str) -> bool {
        self.resolve(client)
            .is_some_and(|p| topic::intersects(&p, filter))
    }
}

/// The patterns of one scope (everyone, a user, a client): the keys
/// `publish`, `deny_publish`, `subscribe` and `deny_subscribe`, each a
/// list of patterns.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Rules {
    publish: Vec<Pattern>,
    deny_publish: Vec<Pattern>,
    subscribe: Vec<Pattern>,
    deny_subscribe: Vec<Pattern>,
}

/// What to do with what no rule mentions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
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

impl FromConfig for Acl {
    /// An error names the key and what is wrong with it.
    fn from_config(s: &Settings) -> Result<Acl, String> {
        let acl = Acl {
            everyone: s.deserialize()?,
            users: s.value("user")?.unwrap_or_default(),
            clients: s.value("client")?.unwrap_or_default(),
            unmatched: s.value("unmatched")?.unwrap_or(Unmatched::Deny),
            cache_secs: s.value("cache_secs")?.unwrap_or(60),
            subscribe_refusal_code: s
                .value("subscribe_refusal_code")?
                .unwrap_or(reason::NOT_AUTHORIZED),
        };
        if !SUBACK_REFUSALS.contains(&acl.subscribe_refusal_code) {
            let why = "not a SUBACK refusal code (0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1 or 0xA2)";
            return Err(invalid(
                "subscribe_refusal_code",
                s.get("subscribe_refusal_code").unwrap_or_default(),
                why,
            ));
        }
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
        let filter = topic::strip_shared(filter);
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
        let filter = topic::strip_shared(filter);
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
            (
                "subscribe_refusal_code",
                "0x187",
                "expected a whole number from 0 to 255",
            ),
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
