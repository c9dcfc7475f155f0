//! Publish: what the configuration answers for a message (`will_deny`,
//! `pub_*` keys), and the MQTT 3 forms of the hooks (`auth-on-publish`,
//! `on-publish`); the MQTT 5 forms are in `m5`.

use crate::Pubsub;
use crate::config::{listed, mapped, mapped_bool, mapped_property, mapped_qos, mapped_u32};
use crate::exports::sluice::plugin::{auth_on_publish, on_publish};
use crate::record::{bit, message_fields};
use crate::sluice::plugin::types::{
    MessageProperties, Payload, PublishModifiers, Qos, SubscriberId,
};

pub(crate) enum PublishAnswer {
    Ok(Option<PublishModifiers>),
    Next,
    Deny,
}

pub(crate) fn no_properties() -> MessageProperties {
    MessageProperties {
        payload_format_indicator: None,
        message_expiry_interval: None,
        content_type: None,
        response_topic: None,
        correlation_data: None,
        user_properties: Vec::new(),
    }
}

pub(crate) fn decide_publish(
    topic: &str,
    is_will: bool,
    properties: Option<&MessageProperties>,
) -> PublishAnswer {
    if is_will {
        return if listed("will_deny", topic) {
            PublishAnswer::Deny
        } else {
            PublishAnswer::Ok(None)
        };
    }
    if listed("pub_panic", topic) {
        panic!("pubsub: pub_panic on {topic}, as configured");
    }
    if listed("pub_deny", topic) {
        return PublishAnswer::Deny;
    }
    if listed("pub_next", topic) {
        return PublishAnswer::Next;
    }
    let properties = mapped_property("pub_user_property", topic).map(|p| {
        let mut props = properties.cloned().unwrap_or_else(no_properties);
        props.user_properties.push(p);
        props
    });
    let m = PublishModifiers {
        topic: mapped("pub_rewrite_topic", topic).map(str::to_owned),
        payload: mapped("pub_payload", topic).map(|p| p.as_bytes().to_vec()),
        qos: mapped_qos("pub_qos", topic),
        retain: mapped_bool("pub_retain", topic),
        mountpoint: mapped("pub_mountpoint", topic).map(str::to_owned),
        throttle_ms: mapped_u32("pub_throttle_ms", topic),
        properties,
        cache_secs: mapped_u32("pub_cache_secs", topic),
    };
    let unchanged = m.topic.is_none()
        && m.payload.is_none()
        && m.qos.is_none()
        && m.retain.is_none()
        && m.mountpoint.is_none()
        && m.throttle_ms.is_none()
        && m.properties.is_none()
        && m.cache_secs.is_none();
    PublishAnswer::Ok((!unchanged).then_some(m))
}

impl auth_on_publish::Guest for Pubsub {
    fn auth_on_publish(
        username: Option<String>,
        subscriber_id: SubscriberId,
        qos: Qos,
        topic: String,
        payload: &Payload,
        retain: bool,
        is_will: bool,
    ) -> auth_on_publish::PublishVerdict {
        use auth_on_publish::PublishVerdict;
        message_fields(&topic, qos, retain)
            .add("will", bit(is_will))
            .payload(payload)
            .who(username.as_deref(), &subscriber_id)
            .record("auth-on-publish", &subscriber_id);
        match decide_publish(&topic, is_will, None) {
            PublishAnswer::Ok(m) => PublishVerdict::Ok(m),
            PublishAnswer::Next => PublishVerdict::Next,
            PublishAnswer::Deny => PublishVerdict::Error(format!("refused publish to {topic}")),
        }
    }
}

impl on_publish::Guest for Pubsub {
    fn on_publish(
        username: Option<String>,
        subscriber_id: SubscriberId,
        qos: Qos,
        topic: String,
        payload: &Payload,
        retain: bool,
    ) {
        message_fields(&topic, qos, retain)
            .payload(payload)
            .who(username.as_deref(), &subscriber_id)
            .record("on-publish", &subscriber_id);
    }
}
