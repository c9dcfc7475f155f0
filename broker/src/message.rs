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

    /// Payload bytes counted against queue byte limits.
    pub fn size(&self) -> usize {
        self.payload.len() + self.topic.as_str().len()
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
}
