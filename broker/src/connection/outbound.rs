//! Deliveries from the session queue to the client: flow control (the send
//! window), message expiry, the client's Maximum Packet Size, outbound topic
//! aliases, and encoding into the output buffer.

use tokio::time::Instant;

use super::{BATCH, Connection, OUT_HIGH_WATER, WRITE_CHUNK};
use crate::codec::{self, OutgoingPublish, QoS};
use crate::message::Delivery;
use std::collections::HashMap;

use crate::session::{Kick, OutState};

impl Connection {
    /// Moves queued deliveries into the output buffer while the send window
    /// and the buffer have room. Returns the registry's kick, if any, or
    /// whether it stopped because the output buffer was full (so more may
    /// be waiting once it drains).
    pub(super) fn fill_outgoing(&mut self) -> Result<bool, Kick> {
        while self.out.len() < OUT_HIGH_WATER {
            let room = self
                .neg
                .send_window
                .saturating_sub(self.inflight.outgoing_len());
            let mut batch = std::mem::take(&mut self.batch);
            if let Some(kick) = self.session.take_batch(&mut batch, BATCH, room) {
                self.batch = batch;
                return Err(kick);
            }
            if batch.is_empty() {
                self.batch = batch;
                return Ok(false);
            }
            if self.out.capacity() == 0 {
                self.out.reserve(WRITE_CHUNK);
            }
            let now = Instant::now();
            for d in batch.drain(..) {
                self.send(d, now);
            }
            self.batch = batch;
        }
        Ok(true)
    }

    /// Encodes one delivery, or drops it (expired, or too large for the
    /// client).
    fn send(&mut self, d: Delivery, now: Instant) {
        let version = self.neg.version;
        let m = &d.message;
        if m.is_expired(now) {
            self.stats.dropped += 1;
            return;
        }
        let v5 = version.is_v5();
        let (alias, alias_is_new) = if v5 {
            self.outbound_alias(&m.topic)
        } else {
            (None, false)
        };
        let packet_id = match d.qos {
            QoS::AtMostOnce => None,
            QoS::AtLeastOnce | QoS::ExactlyOnce => Some(self.inflight.allocate_id()),
        };
        let publish = OutgoingPublish {
            topic: if alias.is_some() && !alias_is_new {
                ""
            } else {
                m.topic.as_str()
            },
            qos: d.qos,
            retain: d.retain,
            dup: false,
            packet_id,
            payload: &m.payload,
            properties: Some(&m.properties),
            message_expiry_interval: if v5 { m.remaining_expiry(now) } else { None },
            topic_alias: alias,
            subscription_identifiers: &d.subscription_ids,
        };
        if v5 && codec::publish_size(version, &publish) > self.neg.client_max_packet as usize {
            tracing::debug!(
                client = %self.session.id(), topic = %m.topic,
                "message dropped: larger than the client's maximum packet size"
            );
            self.stats.dropped += 1;
            return;
        }
        codec::encode_publish(&mut self.out, version, &publish);
        self.stats.messages_out += 1;
        if let (Some(alias), true) = (alias, alias_is_new) {
            self.aliases
                .get_or_insert_with(Box::default)
                .outbound
                .insert(m.topic.clone(), alias);
        }
        if let Some(id) = packet_id {
            let state = if d.qos == QoS::AtLeastOnce {
                OutState::AwaitingPubAck
            } else {
                OutState::AwaitingPubRec
            };
            self.inflight.push(id, d, state);
        }
    }

    /// The alias to send `topic` with: an existing one, a new one while the
    /// client's Topic Alias Maximum allows, or none.
    fn outbound_alias(&self, topic: &crate::topic::TopicName) -> (Option<u16>, bool) {
        let outbound = self.aliases.as_ref().map(|a| &a.outbound);
        if let Some(alias) = outbound.and_then(|o| o.get(topic)) {
            return (Some(*alias), false);
        }
        let used = outbound.map_or(0, HashMap::len);
        if used < usize::from(self.neg.client_alias_max) {
            // Aliases are numbered from 1 in assignment order.
            let next = u16::try_from(used + 1).unwrap_or(u16::MAX);
            return (Some(next), true);
        }
        (None, false)
    }
}
