//! Application messages as the broker routes them, and the per-subscriber
//! deliveries made of them.
//!
//! A [`Message`] is built once per PUBLISH and shared (`Arc`) by every
//! subscriber's queue; the payload is a `Bytes` slice of the read buffer, so
//! fan-out copies nothing.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use crate::codec::{MessageProperties, QoS};
use crate::topic::TopicName;

/// What a message costs beyond its bytes: the shared allocation holding
/// it (the `Message` and the `Arc` counts) and its topic's.
const MESSAGE_OVERHEAD: usize = size_of::<Message>() + 2 * 16;

/// Payloads shorter than this are copied out of the read buffer (see
/// [`Message::own_payload`]); longer ones come from buffers sized for
/// their packet, so sharing them wastes little.
const OWN_PAYLOAD_BELOW: usize = 4 * 1024;

/// A published message.
#[derive(Clone, Debug)]
pub struct Message {
    pub topic: TopicName,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// MQTT 5 properties passed through to subscribers.
    pub properties: MessageProperties,
    /// When the Message Expiry Interval runs out.
    pub expires_at: Option<Instant>,
}

impl Message {
    /// Computes the expiry instant from a Message Expiry Interval.
    pub fn expiry_from_interval(interval: Option<u32>) -> Option<Instant> {
        interval.map(|secs| Instant::now() + Duration::from_secs(u64::from(secs)))
    }

    /// Whether the message has expired at `now`.
    pub fn is_expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// The remaining expiry interval to send on, in whole seconds (rounded
    /// up, so a message with time left never reads 0).
    pub fn remaining_expiry(&self, now: Instant) -> Option<u32> {
        self.expires_at.map(|at| {
            let left = at.saturating_duration_since(now);
            let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
            u32::try_from(secs).unwrap_or(u32::MAX)
        })
    }

    /// Bytes the message holds, as queue and retained-store byte limits
    /// count them: topic, payload and properties, plus the message's own
    /// shared allocation.
    pub fn size(&self) -> usize {
        MESSAGE_OVERHEAD + self.topic.as_str().len() + self.payload.len() + self.properties.size()
    }

    /// The message, owning its payload (see [`Message::own_payload`]):
    /// for a message kept beyond its publication (retained).
    pub fn detached(self: &Arc<Self>) -> Arc<Message> {
        if self.payload.len() < OWN_PAYLOAD_BELOW {
            return self.clone();
        }
        Arc::new(Message {
            payload: Bytes::copy_from_slice(&self.payload),
            ..(**self).clone()
        })
    }

    /// `payload` as a message should hold it: a small payload is copied
    /// out of the buffer it was read into, so that a message kept in a
    /// queue holds its own bytes rather than the whole read buffer (which
    /// [`Message::size`] could not see).
    pub fn own_payload(payload: Bytes) -> Bytes {
        if payload.len() < OWN_PAYLOAD_BELOW {
            Bytes::copy_from_slice(&payload)
        } else {
            payload
        }
    }
}

/// A message as a client or a plugin published it, before routing: the
/// fields a publish hook sees and may change
/// ([`PublishChanges::apply`](crate::plugins::PublishChanges::apply)).
#[derive(Clone, Debug)]
pub(crate) struct Draft {
    pub topic: TopicName,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    pub properties: MessageProperties,
    /// Message Expiry Interval, seconds.
    pub expiry: Option<u32>,
}

impl Draft {
    /// The message to route: owning its payload if small (see
    /// [`Message::own_payload`]), its expiry counted from now.
    pub(crate) fn into_message(self) -> Message {
        Message {
            topic: self.topic,
            payload: Message::own_payload(self.payload),
            qos: self.qos,
            retain: self.retain,
            properties: self.properties,
            expires_at: Message::expiry_from_interval(self.expiry),
        }
    }
}

/// A Will message, held until its connection ends abnormally.
#[derive(Clone, Debug)]
pub struct Will {
    /// The message; its `expires_at` is unset until publication.
    pub message: Message,
    /// Will Delay Interval, seconds.
    pub delay_interval: u32,
    /// Message Expiry Interval, counted from publication.
    pub expiry_interval: Option<u32>,
    /// Published into this mountpoint instead of the session's (set by
    /// `auth-on-publish`).
    pub mountpoint: Option<Arc<str>>,
}

impl Will {
    /// The message to route now.
    pub fn publication(&self) -> Arc<Message> {
        Arc::new(Message {
            expires_at: Message::expiry_from_interval(self.expiry_interval),
            ..self.message.clone()
        })
    }
}

/// Where a delivery came from when it was routed through a shared
/// subscription: if the chosen session ends before delivering it, the
/// message goes to another member of the group.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SharedOrigin {
    pub mountpoint: Arc<str>,
    pub group: Arc<str>,
    pub filter: crate::topic::TopicFilter,
}

/// One message on its way to one session.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub message: Arc<Message>,
    /// The QoS it is delivered with: the lower of the message's and the
    /// subscription's.
    pub qos: QoS,
    /// The RETAIN flag to send.
    pub retain: bool,
    /// Subscription identifiers of every matching subscription (MQTT 5).
    pub subscription_ids: Vec<u32>,
    /// Set when routed through a shared subscription.
    pub shared: Option<Arc<SharedOrigin>>,
    /// Its entry in the store, for a persistent session's QoS 1/2
    /// delivery.
    pub stored: Option<crate::store::Stored>,
}
