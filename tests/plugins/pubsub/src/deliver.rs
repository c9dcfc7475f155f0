//! Deliver: what the configuration changes in a message for one subscriber
//! (`deliver_*` keys), and the MQTT 3 form of the hook (`on-deliver`); the
//! MQTT 5 form is in `m5`.

use crate::Pubsub;
use crate::config::{listed, mapped, mapped_property, setting};
use crate::exports::sluice::plugin::on_deliver;
use crate::publish::no_properties;
use crate::record::message_fields;
use crate::sluice::plugin::types::{
    DeliverModifiers, MessageProperties, Payload, Qos, SubscriberId,
};

pub(crate) enum DeliverAnswer {
    Ok(Option<DeliverModifiers>),
    Next,
    Error(String),
}

pub(crate) fn decide_deliver(
    subscriber_id: &SubscriberId,
    topic: &str,
    payload: &Payload,
    properties: Option<&MessageProperties>,
) -> DeliverAnswer {
    if setting("deliver_clients").is_some() && !listed("deliver_clients", &subscriber_id.client_id)
    {
        return DeliverAnswer::Ok(None);
    }
    if listed("deliver_panic", topic) {
        panic!("pubsub: deliver_panic on {topic}, as configured");
    }
    if listed("deliver_error", topic) {
        return DeliverAnswer::Error(format!("deliver_error on {topic}"));
    }
    if listed("deliver_next", topic) {
        return DeliverAnswer::Next;
    }
    let new_payload = match (
        mapped("deliver_payload", topic),
        mapped("deliver_prefix", topic),
    ) {
        (Some(p), _) => Some(p.as_bytes().to_vec()),
        (None, Some(prefix)) => {
            let mut p = prefix.as_bytes().to_vec();
            p.extend_from_slice(&payload.read());
            Some(p)
        }
        (None, None) => None,
    };
    let properties = mapped_property("deliver_user_property", topic).map(|p| {
        let mut props = properties.cloned().unwrap_or_else(no_properties);
        props.user_properties.push(p);
        props
    });
    let m = DeliverModifiers {
        topic: mapped("deliver_topic", topic).map(str::to_owned),
        payload: new_payload,
        properties,
    };
    if m.topic.is_none() && m.payload.is_none() && m.properties.is_none() {
        DeliverAnswer::Ok(None)
    } else {
        DeliverAnswer::Ok(Some(m))
    }
}

impl on_deliver::Guest for Pubsub {
    fn on_deliver(
        username: Option<String>,
        subscriber_id: SubscriberId,
        qos: Qos,
        topic: String,
        payload: &Payload,
        retain: bool,
    ) -> on_deliver::DeliverVerdict {
        use on_deliver::DeliverVerdict;
        message_fields(&topic, qos, retain)
            .payload(payload)
            .who(username.as_deref(), &subscriber_id)
            .record("on-deliver", &subscriber_id);
        match decide_deliver(&subscriber_id, &topic, payload, None) {
            DeliverAnswer::Ok(m) => DeliverVerdict::Ok(m),
            DeliverAnswer::Next => DeliverVerdict::Next,
            DeliverAnswer::Error(why) => DeliverVerdict::Error(why),
        }
    }
}
