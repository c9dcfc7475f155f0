//! The configuration: the keys the crate documentation lists, checked by
//! `init` (the `lifecycle` hook), and the look-ups the hooks answer from.

use std::sync::OnceLock;

use crate::Pubsub;
use crate::exports::sluice::plugin::lifecycle;
use crate::sluice::plugin::host;
use crate::sluice::plugin::types::Qos;

/// Keys and the kind of value each takes (checked in `init`).
const KEYS: &[(&str, Kind)] = &[
    ("record_payload", Kind::Bool),
    ("sub_panic", Kind::List),
    ("sub_error", Kind::List),
    ("sub_error_code", Kind::NumberMap),
    ("sub_next", Kind::List),
    ("sub_reject", Kind::List),
    ("sub_code", Kind::NumberMap),
    ("sub_rewrite", Kind::TextMap),
    ("sub_max_qos", Kind::QosMap),
    ("sub_bad_list", Kind::List),
    ("suback_reason", Kind::Text),
    ("suback_user_property", Kind::Property),
    ("unsub_error", Kind::List),
    ("unsub_rewrite", Kind::TextMap),
    ("unsuback_reason", Kind::Text),
    ("unsuback_user_property", Kind::Property),
    ("will_deny", Kind::List),
    ("pub_panic", Kind::List),
    ("pub_deny", Kind::List),
    ("pub_code", Kind::NumberMap),
    ("pub_reason", Kind::Text),
    ("pub_next", Kind::List),
    ("pub_rewrite_topic", Kind::TextMap),
    ("pub_payload", Kind::TextMap),
    ("pub_qos", Kind::QosMap),
    ("pub_retain", Kind::BoolMap),
    ("pub_mountpoint", Kind::TextMap),
    ("pub_throttle_ms", Kind::NumberMap),
    ("pub_user_property", Kind::PropertyMap),
    ("pub_cache_secs", Kind::NumberMap),
    ("deliver_clients", Kind::List),
    ("deliver_panic", Kind::List),
    ("deliver_error", Kind::List),
    ("deliver_next", Kind::List),
    ("deliver_topic", Kind::TextMap),
    ("deliver_payload", Kind::TextMap),
    ("deliver_prefix", Kind::TextMap),
    ("deliver_user_property", Kind::PropertyMap),
];

#[derive(Clone, Copy)]
enum Kind {
    Bool,
    Text,
    List,
    Property,
    TextMap,
    NumberMap,
    QosMap,
    BoolMap,
    PropertyMap,
}

/// The configuration, read once per instance.
fn config() -> &'static [(String, String)] {
    static CONFIG: OnceLock<Vec<(String, String)>> = OnceLock::new();
    CONFIG.get_or_init(host::config)
}

pub(crate) fn setting(name: &str) -> Option<&'static str> {
    config()
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn entries(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|e| !e.is_empty())
}

/// Whether `topic` is in the list `name`.
pub(crate) fn listed(name: &str, topic: &str) -> bool {
    setting(name).is_some_and(|v| entries(v).any(|e| e == topic || e == "*"))
}

/// Whether any of `topics` is in the list `name`; the first one that is.
pub(crate) fn first_listed<'a>(
    name: &str,
    mut topics: impl Iterator<Item = &'a str>,
) -> Option<&'a str> {
    topics.find(|t| listed(name, t))
}

/// The value for `topic` in the map `name`.
pub(crate) fn mapped(name: &str, topic: &str) -> Option<&'static str> {
    let value = setting(name)?;
    let mut fallback = None;
    for entry in entries(value) {
        match entry.split_once("=>") {
            Some((key, v)) if key.trim() == topic => return Some(v.trim()),
            Some((key, v)) if key.trim() == "*" => fallback = fallback.or(Some(v.trim())),
            Some(_) => {}
            None => fallback = fallback.or(Some(entry)),
        }
    }
    fallback
}

fn parse_number(text: &str) -> Result<u64, String> {
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.map_err(|e| format!("{text:?} is not a number: {e}"))
}

fn parse_qos(text: &str) -> Result<Qos, String> {
    match text {
        "0" => Ok(Qos::AtMostOnce),
        "1" => Ok(Qos::AtLeastOnce),
        "2" => Ok(Qos::ExactlyOnce),
        _ => Err(format!("{text:?} is not a QoS (0, 1 or 2)")),
    }
}

fn parse_bool(text: &str) -> Result<bool, String> {
    match text {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("{text:?} is not true or false")),
    }
}

fn parse_property(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{text:?} is not a user property NAME=VALUE"))
}

/// Checks one configured value against its kind.
fn check(kind: Kind, value: &str) -> Result<(), String> {
    let map_values = || {
        entries(value).map(|e| match e.split_once("=>") {
            Some((_, v)) => v.trim(),
            None => e,
        })
    };
    match kind {
        Kind::Bool => parse_bool(value).map(drop),
        Kind::Text | Kind::List | Kind::TextMap => Ok(()),
        Kind::Property => parse_property(value).map(drop),
        Kind::NumberMap => map_values().try_for_each(|v| parse_number(v).map(drop)),
        Kind::QosMap => map_values().try_for_each(|v| parse_qos(v).map(drop)),
        Kind::BoolMap => map_values().try_for_each(|v| parse_bool(v).map(drop)),
        Kind::PropertyMap => map_values().try_for_each(|v| parse_property(v).map(drop)),
    }
}

/// A configuration error found after `init` accepted it: cannot happen.
fn invalid(name: &str, e: String) -> ! {
    panic!("pubsub: setting {name} is invalid (init should have refused it): {e}")
}

fn mapped_number(name: &str, topic: &str) -> Option<u64> {
    mapped(name, topic).map(|v| parse_number(v).unwrap_or_else(|e| invalid(name, e)))
}

pub(crate) fn mapped_u32(name: &str, topic: &str) -> Option<u32> {
    mapped_number(name, topic)
        .map(|n| u32::try_from(n).unwrap_or_else(|_| invalid(name, format!("{n} is over u32"))))
}

pub(crate) fn mapped_code(name: &str, topic: &str, default: u8) -> u8 {
    mapped_number(name, topic).map_or(default, |n| {
        u8::try_from(n).unwrap_or_else(|_| invalid(name, format!("{n} is not a reason code")))
    })
}

pub(crate) fn mapped_qos(name: &str, topic: &str) -> Option<Qos> {
    mapped(name, topic).map(|v| parse_qos(v).unwrap_or_else(|e| invalid(name, e)))
}

pub(crate) fn mapped_bool(name: &str, topic: &str) -> Option<bool> {
    mapped(name, topic).map(|v| parse_bool(v).unwrap_or_else(|e| invalid(name, e)))
}

pub(crate) fn mapped_property(name: &str, topic: &str) -> Option<(String, String)> {
    mapped(name, topic).map(|v| parse_property(v).unwrap_or_else(|e| invalid(name, e)))
}

pub(crate) fn property(name: &str) -> Option<(String, String)> {
    setting(name).map(|v| parse_property(v).unwrap_or_else(|e| invalid(name, e)))
}

pub(crate) fn record_payload() -> bool {
    setting("record_payload") == Some("true")
}

impl lifecycle::Guest for Pubsub {
    fn init() -> Result<(), String> {
        for (name, value) in config() {
            let Some((_, kind)) = KEYS.iter().find(|(k, _)| k == name) else {
                return Err(format!("pubsub: unknown setting {name:?}"));
            };
            check(*kind, value).map_err(|e| format!("pubsub: setting {name}: {e}"))?;
        }
        host::log(host::LogLevel::Debug, "pubsub fixture ready");
        Ok(())
    }
}
