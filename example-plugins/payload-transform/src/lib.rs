//! Example plugin: stamps JSON payloads as they are delivered.
//!
//! For each message about to be sent to a subscriber whose topic starts
//! with the configured `prefix` and whose payload is a JSON object, the
//! subscriber receives the object with one more field (`field`), whose
//! value (`value`) may name the subscriber (`%c`, `%u`, `%m`) and the topic
//! (`%t`). Everything else is delivered unchanged. It works in the delivery
//! chain (`on-deliver`), not the authorisation chain: see README.md.
//!
//! Written with the Rust plugin SDK (`plugin-sdk/`): the component exports
//! `lifecycle`, `on-deliver` and `on-deliver-m5`, the hooks implemented
//! below, and nothing else.

mod stamp;

use std::sync::OnceLock;

use sluice_plugin_sdk::{
    DeliverModifiers, DeliverVerdict, DeliverVerdictM5, MessageProperties, Payload, Plugin, Qos,
    SubscriberId, config, log,
};
use stamp::{Delivery, Stamp};

/// The configuration, parsed once per instance (by `init`).
static STAMP: OnceLock<Result<Stamp, String>> = OnceLock::new();

fn settings() -> Result<&'static Stamp, &'static str> {
    STAMP
        .get_or_init(|| Stamp::parse(&config::all()))
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
    let stamp = settings().ok()?;
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
    Some(DeliverModifiers::new().payload(stamped))
}

struct PayloadTransform;

#[sluice_plugin_sdk::plugin]
impl Plugin for PayloadTransform {
    fn init() -> Result<(), String> {
        let stamp =
            settings().map_err(|e| format!("invalid payload-transform configuration: {e}"))?;
        log::debug(&format!(
            "payload-transform ready (prefix {:?})",
            stamp.prefix
        ));
        Ok(())
    }

    fn on_deliver(
        username: Option<String>,
        subscriber_id: SubscriberId,
        _qos: Qos,
        topic: String,
        payload: &Payload,
        _retain: bool,
    ) -> DeliverVerdict {
        match transform(username.as_deref(), &subscriber_id, &topic, payload) {
            Some(m) => DeliverVerdict::Ok(Some(m)),
            None => DeliverVerdict::Next,
        }
    }

    fn on_deliver_m5(
        username: Option<String>,
        subscriber_id: SubscriberId,
        _qos: Qos,
        topic: String,
        payload: &Payload,
        _retain: bool,
        _properties: MessageProperties,
    ) -> DeliverVerdictM5 {
        match transform(username.as_deref(), &subscriber_id, &topic, payload) {
            Some(m) => DeliverVerdictM5::Ok(Some(m)),
            None => DeliverVerdictM5::Next,
        }
    }
}
