//! Example plugin: stamps JSON payloads as they are delivered.
//!
//! For each message about to be sent to a subscriber whose topic starts
//! with the configured `prefix` and whose payload is a JSON object, the
//! subscriber receives the object with one more field (`field`), whose
//! value (`value`) may name the subscriber (`%c`, `%u`, `%m`) and the topic
//! (`%t`). Everything else is delivered unchanged. It works in the delivery
//! chain (`on-deliver`, both forms), not the authorisation chain: see
//! README.md. The logic is in `stamp`.

mod stamp;

use sluice_plugin_sdk::{DeliverModifiers, DeliverRequest, DeliverVerdictM5, Plugin, debug};
use stamp::{Delivery, Stamp};

struct PayloadTransform;

#[sluice_plugin_sdk::plugin]
impl Plugin for PayloadTransform {
    type Config = Stamp;

    fn init(stamp: &Stamp) -> Result<(), String> {
        debug!("payload-transform ready (prefix {:?})", stamp.prefix);
        Ok(())
    }

    /// The payload is only read (copied into the plugin) when the topic
    /// matches.
    fn on_deliver_any(stamp: &Stamp, req: DeliverRequest<'_>) -> DeliverVerdictM5 {
        if !stamp.applies_to(&req.topic) {
            return DeliverVerdictM5::Next;
        }
        let delivery = Delivery {
            client_id: &req.subscriber_id.client_id,
            username: req.username.as_deref(),
            mountpoint: &req.subscriber_id.mountpoint,
            topic: &req.topic,
        };
        match stamp.apply(&req.payload.read(), &delivery) {
            Some(stamped) => DeliverVerdictM5::Ok(Some(DeliverModifiers::new().payload(stamped))),
            None => DeliverVerdictM5::Next,
        }
    }
}
