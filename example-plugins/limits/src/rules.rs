//! The plugin's logic, independent of the WIT bindings: default and
//! per-user limits from the configuration, and the limits for one client.

use std::collections::HashMap;

use serde::Deserialize;
use sluice_plugin_sdk::config::AtLeast;
use sluice_plugin_sdk::{FromConfig, RegisterModifiers, Settings};

/// One set of limits, from the keys of the fields' names; `None` leaves
/// the broker's value.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct Limits {
    pub max_message_rate: Option<AtLeast<1, u32>>,
    pub max_inflight: Option<AtLeast<1, u16>>,
    pub max_packet_size: Option<AtLeast<64, u32>>,
    pub session_expiry_cap: Option<u32>,
    /// MQTT 5 only.
    pub receive_maximum: Option<AtLeast<1, u16>>,
    /// MQTT 5 only.
    pub topic_alias_maximum: Option<u16>,
}

impl Limits {
    /// `self`, with what `over` sets replacing it.
    fn overridden_by(self, over: &Limits) -> Limits {
        Limits {
            max_message_rate: over.max_message_rate.or(self.max_message_rate),
            max_inflight: over.max_inflight.or(self.max_inflight),
            max_packet_size: over.max_packet_size.or(self.max_packet_size),
            session_expiry_cap: over.session_expiry_cap.or(self.session_expiry_cap),
            receive_maximum: over.receive_maximum.or(self.receive_maximum),
            topic_alias_maximum: over.topic_alias_maximum.or(self.topic_alias_maximum),
        }
    }
}

/// The parsed configuration.
#[derive(Debug, Default)]
pub struct Config {
    pub defaults: Limits,
    users: HashMap<String, Limits>,
}

/// What the client asked for at CONNECT.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub username: Option<&'a str>,
    /// MQTT 5 (m5-only limits apply) or 3.x.
    pub v5: bool,
    /// Clean Session (3.x) / Clean Start (5).
    pub clean_start: bool,
    /// MQTT 5 CONNECT's Session Expiry Interval (absent: 0).
    pub session_expiry: Option<u32>,
}

impl FromConfig for Config {
    /// The defaults at the top, a user's limits under `user.NAME.`.
    fn from_config(s: &Settings) -> Result<Self, String> {
        let config = Config {
            users: s.value("user")?.unwrap_or_default(),
            defaults: s.deserialize()?,
        };
        s.finish()?;
        Ok(config)
    }
}

impl Config {
    /// The limits of a client with this username.
    pub fn limits(&self, username: Option<&str>) -> Limits {
        match username.and_then(|u| self.users.get(u)) {
            Some(over) => self.defaults.overridden_by(over),
            None => self.defaults,
        }
    }

    /// The modifiers for a client. An MQTT 3.x client never gets MQTT 5
    /// limits: the broker would refuse it for them.
    pub fn modifiers(&self, req: &Request<'_>) -> Option<RegisterModifiers> {
        let l = self.limits(req.username);
        let session_expiry_interval = l.session_expiry_cap.and_then(|cap| {
            // 3.x: a persistent session never expires by itself.
            let requested = match (req.v5, req.clean_start) {
                (true, _) => req.session_expiry.unwrap_or(0),
                (false, true) => 0,
                (false, false) => u32::MAX,
            };
            (requested > cap).then_some(cap)
        });
        let m = RegisterModifiers {
            max_message_rate: l.max_message_rate.map(AtLeast::get),
            max_inflight_messages: l.max_inflight.map(AtLeast::get),
            max_packet_size: l.max_packet_size.map(AtLeast::get),
            session_expiry_interval,
            receive_maximum: l.receive_maximum.map(AtLeast::get).filter(|_| req.v5),
            topic_alias_maximum: l.topic_alias_maximum.filter(|_| req.v5),
            ..RegisterModifiers::new()
        };
        (m != RegisterModifiers::new()).then_some(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> Result<Config, String> {
        Config::from_config(&Settings::new(pairs.iter().copied()))
    }

    fn req(username: Option<&str>, v5: bool, clean: bool, expiry: Option<u32>) -> Request<'_> {
        Request {
            username,
            v5,
            clean_start: clean,
            session_expiry: expiry,
        }
    }

    fn mods(c: &Config, req: &Request<'_>) -> RegisterModifiers {
        c.modifiers(req).unwrap_or_default()
    }

    #[test]
    fn defaults_and_per_user_overrides() {
        let c = cfg(&[
            ("max_message_rate", "100"),
            ("max_inflight", "10"),
            ("user.bulk.loader.max_message_rate", "1000"),
            ("user.slow.max_inflight", "1"),
            ("user.slow.receive_maximum", "2"),
        ])
        .expect("valid");
        let m = mods(&c, &req(Some("bulk.loader"), false, true, None));
        assert_eq!(
            (m.max_message_rate, m.max_inflight_messages),
            (Some(1000), Some(10))
        );
        let m = mods(&c, &req(Some("slow"), true, true, None));
        assert_eq!(
            (
                m.max_message_rate,
                m.max_inflight_messages,
                m.receive_maximum
            ),
            (Some(100), Some(1), Some(2))
        );
        let m = mods(&c, &req(None, false, true, None));
        assert_eq!(m.max_message_rate, Some(100));
        assert_eq!(
            mods(&cfg(&[]).expect("valid"), &req(None, true, true, None)),
            RegisterModifiers::new()
        );
    }

    #[test]
    fn mqtt5_limits_only_for_mqtt5_clients() {
        let c = cfg(&[("receive_maximum", "5"), ("topic_alias_maximum", "3")]).expect("valid");
        assert_eq!(
            mods(&c, &req(Some("u"), false, true, None)),
            RegisterModifiers::new()
        );
        let m = mods(&c, &req(Some("u"), true, true, None));
        assert_eq!(
            (m.receive_maximum, m.topic_alias_maximum),
            (Some(5), Some(3))
        );
    }

    #[test]
    fn session_expiry_is_capped() {
        let c = cfg(&[("session_expiry_cap", "60")]).expect("valid");
        let e = |v5, clean, expiry| mods(&c, &req(None, v5, clean, expiry)).session_expiry_interval;
        assert_eq!(e(true, false, Some(3600)), Some(60));
        assert_eq!(e(true, false, Some(u32::MAX)), Some(60));
        assert_eq!(e(true, false, Some(30)), None, "below the cap: unchanged");
        assert_eq!(e(true, true, None), None);
        assert_eq!(e(false, false, None), Some(60), "3.x persistent session");
        assert_eq!(e(false, true, None), None, "3.x clean session");
    }

    #[test]
    fn configuration_errors() {
        for (pairs, needle) in [
            (vec![("max_inflight", "0")], "max_inflight"),
            (vec![("max_inflight", "70000")], "max_inflight"),
            (vec![("max_message_rate", "fast")], "max_message_rate"),
            (vec![("max_packet_size", "10")], "max_packet_size"),
            (vec![("user.a.colour", "red")], "colour"),
            (
                vec![("user..max_inflight", "1")],
                "unknown configuration key",
            ),
            (vec![("verdict", "next")], "verdict"),
        ] {
            let e = cfg(&pairs).expect_err(needle);
            assert!(e.contains(needle), "{e} should mention {needle}");
        }
    }
}
