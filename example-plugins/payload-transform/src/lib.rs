//! Example plugin: stamps JSON payloads as they are delivered.
//!
//! For each message about to be sent to a subscriber whose topic starts
//! with the configured `prefix` and whose payload is a JSON object, the
//! subscriber receives the object with one more field (`field`), whose
//! value (`value`) may name the subscriber (`%c`, `%u`, `%m`) and the topic
//! (`%t`). Everything else is delivered unchanged. It works in the delivery
//! chain (`on-deliver`), not the authorisation chain: see README.md.

wit_bindgen::generate!({
    inline: r#"
        package example:payload-transform;
        world payload-transform {
            include sluice:plugin/imports@0.1.0;
            export sluice:plugin/lifecycle@0.1.0;
            export sluice:plugin/on-deliver@0.1.0;
            export sluice:plugin/on-deliver-m5@0.1.0;
        }
    "#,
    path: "../../wit",
    generate_all,
});

mod stamp;

use std::sync::OnceLock;

use exports::sluice::plugin::{lifecycle, on_deliver, on_deliver_m5};
use sluice::plugin::host;
use sluice::plugin::types::{DeliverModifiers, MessageProperties, Payload, Qos, SubscriberId};
use stamp::{Delivery, Stamp};

/// The configuration, parsed once per instance (by `init`).
static STAMP: OnceLock<Result<Stamp, String>> = OnceLock::new();

fn config() -> Result<&'static Stamp, &'static str> {
    STAMP
        .get_or_init(|| Stamp::parse(&host::config()))
        .as_ref()
        .map_err(String::as_str)
}

/// The new payload for this delivery, or `None` to send it unchanged. The
/// payload is only read (copied into the plugin) when the topic matches.
fn transform(
    username: Option<&str>,
    id: &SubscriberId,
    topic: &str,
    payload: &Payload,
) -> Option<DeliverModifiers> {
    let stamp = config().ok()?;
    if !stamp.applies_to(topic) {
        return None;
    }
    let delivery = Delivery {
        client_id: &id.client_id,
        username,
        mountpoint: &id.mountpoint,
        topic,
    };
    let stamped = stamp.apply(&payload.read(), &delivery)?;
    Some(DeliverModifiers {
        topic: None,
        payload: Some(stamped),
        properties: None,
    })
}

struct PayloadTransform;

impl lifecycle::Guest for PayloadTransform {
    fn init() -> Result<(), String> {
        let stamp =
            config().map_err(|e| format!("invalid payload-transform configuration: {e}"))?;
        host::log(
            host::LogLevel::Debug,
            &format!("payload-transform ready (prefix {:?})", stamp.prefix),
        );
        Ok(())
    }
}

impl on_deliver::Guest for PayloadTransform {
    fn on_deliver(
        username: Option<String>,
        subscriber_id: SubscriberId,
        _qos: Qos,
        topic: String,
        payload: &Payload,
        _retain: bool,
    ) -> on_deliver::DeliverVerdict {
        match transform(username.as_deref(), &subscriber_id, &topic, payload) {
            Some(m) => on_deliver::DeliverVerdict::Ok(Some(m)),
            None => on_deliver::DeliverVerdict::Next,
        }
    }
}

impl on_deliver_m5::Guest for PayloadTransform {
    fn on_deliver_m5(
        username: Option<String>,
        subscriber_id: SubscriberId,
        _qos: Qos,
        topic: String,
        payload: &Payload,
        _retain: bool,
        _properties: MessageProperties,
    ) -> on_deliver_m5::DeliverVerdictM5 {
        match transform(username.as_deref(), &subscriber_id, &topic, payload) {
            Some(m) => on_deliver_m5::DeliverVerdictM5::Ok(Some(m)),
            None => on_deliver_m5::DeliverVerdictM5::Next,
        }
    }
}

export!(PayloadTransform);
