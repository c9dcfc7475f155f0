//! The records: every call appends its fields to the key-value store, under
//! `HOOK/CLIENT-ID` and `log/CLIENT-ID` (the format is in the crate
//! documentation).

use std::fmt::Write as _;

use crate::config::record_payload;
use crate::sluice::plugin::host;
use crate::sluice::plugin::types::{
    MessageProperties, Payload, Qos, RetainHandling, SubscriberId, TopicSubscription,
};

fn append(key: &str, line: &str) {
    let mut value = host::kv_get(key).unwrap_or_default();
    value.extend_from_slice(line.as_bytes());
    value.push(b'\n');
    if let Err(e) = host::kv_set(key, &value) {
        host::log(
            host::LogLevel::Error,
            &format!("pubsub: cannot record under {key}: {e:?}"),
        );
    }
}

/// A record's fields, `name=value` separated by spaces.
#[derive(Default)]
pub(crate) struct Fields(String);

impl Fields {
    pub(crate) fn add(mut self, name: &str, value: impl std::fmt::Display) -> Self {
        if !self.0.is_empty() {
            self.0.push(' ');
        }
        let _ = write!(self.0, "{name}={value}");
        self
    }

    pub(crate) fn flag(mut self, word: &str) -> Self {
        if !self.0.is_empty() {
            self.0.push(' ');
        }
        self.0.push_str(word);
        self
    }

    pub(crate) fn add_if<T: std::fmt::Display>(self, name: &str, value: Option<T>) -> Self {
        match value {
            Some(v) => self.add(name, v),
            None => self,
        }
    }

    pub(crate) fn payload(self, payload: &Payload) -> Self {
        let fields = self.add("size", payload.size());
        if record_payload() {
            let bytes = payload.read();
            fields.add("payload", String::from_utf8_lossy(&bytes))
        } else {
            fields
        }
    }

    pub(crate) fn properties(self, properties: &MessageProperties) -> Self {
        self.add_if("up", user_properties(&properties.user_properties))
            .add_if("expiry", properties.message_expiry_interval)
    }

    pub(crate) fn who(self, username: Option<&str>, id: &SubscriberId) -> Self {
        let mountpoint = (!id.mountpoint.is_empty()).then_some(id.mountpoint.as_str());
        self.add_if("user", username).add_if("mp", mountpoint)
    }

    pub(crate) fn record(self, hook: &str, id: &SubscriberId) {
        append(&format!("{hook}/{}", id.client_id), &self.0);
        append(
            &format!("log/{}", id.client_id),
            &format!("{hook} {}", self.0),
        );
    }
}

pub(crate) fn user_properties(props: &[(String, String)]) -> Option<String> {
    if props.is_empty() {
        return None;
    }
    let all: Vec<String> = props.iter().map(|(n, v)| format!("{n}={v}")).collect();
    Some(all.join(";"))
}

pub(crate) fn qos_number(q: Qos) -> u8 {
    match q {
        Qos::AtMostOnce => 0,
        Qos::AtLeastOnce => 1,
        Qos::ExactlyOnce => 2,
    }
}

pub(crate) fn bit(b: bool) -> u8 {
    u8::from(b)
}

fn subscription_text(t: &TopicSubscription) -> String {
    let mut s = format!("{}:{}", t.filter, qos_number(t.options.qos));
    if t.options.no_local {
        s.push_str("+nl");
    }
    if t.options.retain_as_published {
        s.push_str("+rap");
    }
    match t.options.retain_handling {
        RetainHandling::SendOnSubscribe => {}
        RetainHandling::SendOnNewSubscribe => s.push_str("+rh1"),
        RetainHandling::Never => s.push_str("+rh2"),
    }
    s
}

pub(crate) fn subscriptions_text(topics: &[TopicSubscription]) -> String {
    let all: Vec<String> = topics.iter().map(subscription_text).collect();
    all.join(",")
}

pub(crate) fn message_fields(topic: &str, qos: Qos, retain: bool) -> Fields {
    Fields::default()
        .add("topic", topic)
        .add("qos", qos_number(qos))
        .add("retain", bit(retain))
}
