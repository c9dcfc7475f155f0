//! Between the broker's messages and subscriptions and the WIT types the
//! publish- and subscribe-flow hooks see, and back: what a plugin returns is
//! validated here into broker values, or refused with the field named.

use std::sync::Arc;

use bytes::Bytes;
use tokio::time::Instant;

use super::bindings::sluice::plugin::types as wit;
use super::convert::{ModifierError, bad};
use crate::codec::{MessageProperties, QoS, RetainHandling, SubscriptionOptions, UserProperty};
use crate::limits::MessageLimits;
use crate::message::Message;
use crate::topic::TopicName;

/// Longest mountpoint name.
pub const MAX_MOUNTPOINT_LEN: usize = 256;
/// Longest string property a plugin may set (the MQTT limit).
const MAX_STRING: usize = u16::MAX as usize;

pub fn qos(q: QoS) -> wit::Qos {
    match q {
        QoS::AtMostOnce => wit::Qos::AtMostOnce,
        QoS::AtLeastOnce => wit::Qos::AtLeastOnce,
        QoS::ExactlyOnce => wit::Qos::ExactlyOnce,
    }
}

pub fn qos_from(q: wit::Qos) -> QoS {
    match q {
        wit::Qos::AtMostOnce => QoS::AtMostOnce,
        wit::Qos::AtLeastOnce => QoS::AtLeastOnce,
        wit::Qos::ExactlyOnce => QoS::ExactlyOnce,
    }
}

/// A message's properties as hooks see them, with the expiry interval left
/// at `now`.
pub fn message_properties(m: &Message, now: Instant) -> wit::MessageProperties {
    properties(&m.properties, m.remaining_expiry(now))
}

pub fn properties(p: &MessageProperties, expiry: Option<u32>) -> wit::MessageProperties {
    wit::MessageProperties {
        payload_format_indicator: p.payload_format_indicator.map(|v| v == 1),
        message_expiry_interval: expiry,
        content_type: p.content_type.clone(),
        response_topic: p.response_topic.clone(),
        correlation_data: p.correlation_data.as_ref().map(|d| d.to_vec()),
        user_properties: p.user_properties.clone(),
    }
}

fn string(field: &'static str, s: &str) -> Result<(), ModifierError> {
    if s.len() > MAX_STRING || s.contains('\0') {
        return Err(bad(field, "must be at most 65535 bytes without NUL"));
    }
    Ok(())
}

/// Checks message properties a plugin set: (properties, expiry interval).
pub fn properties_from(
    p: wit::MessageProperties,
) -> Result<(MessageProperties, Option<u32>), ModifierError> {
    if let Some(t) = &p.content_type {
        string("properties.content-type", t)?;
    }
    if let Some(t) = &p.response_topic {
        TopicName::new(t).map_err(|e| {
            bad(
                "properties.response-topic",
                format!("is not a valid topic name: {e}"),
            )
        })?;
    }
    if p.correlation_data
        .as_ref()
        .is_some_and(|d| d.len() > MAX_STRING)
    {
        return Err(bad(
            "properties.correlation-data",
            "must be at most 65535 bytes",
        ));
    }
    for (k, v) in &p.user_properties {
        string("properties.user-properties", k)?;
        string("properties.user-properties", v)?;
    }
    Ok((
        MessageProperties {
            payload_format_indicator: p.payload_format_indicator.map(u8::from),
            content_type: p.content_type,
            response_topic: p.response_topic,
            correlation_data: p.correlation_data.map(Bytes::from),
            user_properties: p.user_properties,
        },
        p.message_expiry_interval,
    ))
}

/// Checks a mountpoint name a plugin chose.
pub fn mountpoint(field: &'static str, m: &str) -> Result<Arc<str>, ModifierError> {
    if m.len() > MAX_MOUNTPOINT_LEN || m.contains(['\0', '+', '#']) {
        return Err(bad(
            field,
            format!(
                "has an invalid mountpoint (at most {MAX_MOUNTPOINT_LEN} bytes, no NUL, '+' or '#')"
            ),
        ));
    }
    Ok(m.into())
}

/// Checks a topic name a plugin chose.
pub fn topic(field: &'static str, t: &str) -> Result<TopicName, ModifierError> {
    TopicName::new(t).map_err(|e| bad(field, format!("is not a valid topic name: {e}")))
}

/// A topic a plugin routes or sends a message to: a valid name within the
/// operator's topic limits.
pub fn limited_topic(
    field: &'static str,
    t: &str,
    limits: &MessageLimits,
) -> Result<TopicName, ModifierError> {
    let name = topic(field, t)?;
    limits
        .topics
        .check_topic(t)
        .map_err(|limit| bad(field, format!("exceeds {limit}")))?;
    Ok(name)
}

/// Checks that a message with `payload` and `properties` (as a plugin
/// changed them) fits `mqtt.max_packet_size`.
pub fn within_size(
    payload: usize,
    properties: Option<&MessageProperties>,
    limits: &MessageLimits,
) -> Result<(), ModifierError> {
    let size = payload + properties.map_or(0, MessageProperties::size);
    if size > limits.max_payload {
        return Err(bad(
            "payload",
            format!(
                "and properties make {size} bytes, more than mqtt.max_packet_size ({})",
                limits.max_payload
            ),
        ));
    }
    Ok(())
}

pub fn subscription_options(o: SubscriptionOptions) -> wit::SubscriptionOptions {
    wit::SubscriptionOptions {
        qos: qos(o.qos),
        no_local: o.no_local,
        retain_as_published: o.retain_as_published,
        retain_handling: match o.retain_handling {
            RetainHandling::OnSubscribe => wit::RetainHandling::SendOnSubscribe,
            RetainHandling::OnNewSubscribe => wit::RetainHandling::SendOnNewSubscribe,
            RetainHandling::Never => wit::RetainHandling::Never,
        },
    }
}

pub fn subscription_options_from(o: wit::SubscriptionOptions) -> SubscriptionOptions {
    SubscriptionOptions {
        qos: qos_from(o.qos),
        no_local: o.no_local,
        retain_as_published: o.retain_as_published,
        retain_handling: match o.retain_handling {
            wit::RetainHandling::SendOnSubscribe => RetainHandling::OnSubscribe,
            wit::RetainHandling::SendOnNewSubscribe => RetainHandling::OnNewSubscribe,
            wit::RetainHandling::Never => RetainHandling::Never,
        },
    }
}

pub fn topic_subscriptions(
    topics: &[(String, SubscriptionOptions)],
) -> Vec<wit::TopicSubscription> {
    topics
        .iter()
        .map(|(filter, o)| wit::TopicSubscription {
            filter: filter.clone(),
            options: subscription_options(*o),
        })
        .collect()
}

pub fn subscribe_properties(
    identifier: Option<u32>,
    user: &[UserProperty],
) -> wit::SubscribeProperties {
    wit::SubscribeProperties {
        subscription_identifier: identifier,
        user_properties: user.to_vec(),
    }
}

/// Checks user properties a plugin wants sent in an acknowledgement.
pub fn user_properties(
    field: &'static str,
    user: Vec<UserProperty>,
) -> Result<Vec<UserProperty>, ModifierError> {
    for (k, v) in &user {
        string(field, k)?;
        string(field, v)?;
    }
    Ok(user)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props() -> wit::MessageProperties {
        wit::MessageProperties {
            payload_format_indicator: Some(true),
            message_expiry_interval: Some(30),
            content_type: Some("application/json".into()),
            response_topic: Some("replies/1".into()),
            correlation_data: Some(vec![1, 2]),
            user_properties: vec![("k".into(), "v".into())],
        }
    }

    #[test]
    fn properties_round_trip() {
        let (p, expiry) = properties_from(props()).unwrap();
        assert_eq!(expiry, Some(30));
        assert_eq!(p.payload_format_indicator, Some(1));
        let back = properties(&p, expiry);
        assert_eq!(format!("{back:?}"), format!("{:?}", props()));
    }

    #[test]
    fn invalid_values_name_the_field() {
        let wild = wit::MessageProperties {
            response_topic: Some("a/#".into()),
            ..props()
        };
        assert_eq!(
            properties_from(wild).unwrap_err().field,
            "properties.response-topic"
        );
        let nul = wit::MessageProperties {
            user_properties: vec![("a\0".into(), "v".into())],
            ..props()
        };
        assert_eq!(
            properties_from(nul).unwrap_err().field,
            "properties.user-properties"
        );
        assert!(mountpoint("mountpoint", "tenant/a").is_ok());
        assert!(mountpoint("mountpoint", "a/+").is_err());
        assert!(topic("topic", "a/+").is_err());
        assert!(topic("topic", "a/b").is_ok());
    }

    #[test]
    fn subscription_options_round_trip() {
        let o = SubscriptionOptions {
            qos: QoS::ExactlyOnce,
            no_local: true,
            retain_as_published: true,
            retain_handling: RetainHandling::Never,
        };
        assert_eq!(subscription_options_from(subscription_options(o)), o);
    }
}
