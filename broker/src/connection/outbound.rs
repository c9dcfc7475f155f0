//! Deliveries from the session queue to the client: flow control (the send
//! window), `auth-on-deliver` read checks and `on-deliver(-m5)` rewrites
//! when a plugin implements them, message expiry, the client's Maximum
//! Packet Size, outbound topic aliases, and encoding into the output
//! buffer.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::time::Instant;

use super::{BATCH, Connection, OUT_HIGH_WATER, WRITE_CHUNK};
use crate::codec::{self, OutgoingPublish, QoS};
use crate::message::{Delivery, Message};
use crate::plugins::{DeliverRequest, Delivered, DropReason, Event, Hook, Withheld};

use crate::session::{Kick, OutState};

impl Connection {
    /// Moves queued deliveries into the output buffer while the send window
    /// and the buffer have room. Returns the registry's kick, if any, or
    /// whether it stopped because the output buffer was full (so more may
    /// be waiting once it drains).
    pub(super) fn fill_outgoing(&mut self) -> Result<bool, Kick> {
        while self.output_len() < OUT_HIGH_WATER {
            let mut batch = self.next_batch()?;
            if batch.is_empty() {
                self.batch = batch;
                return Ok(false);
            }
            let now = Instant::now();
            let mark = self.out.len();
            for d in batch.drain(..) {
                self.send(d, now);
            }
            self.hold_responses(mark);
            self.batch = batch;
        }
        Ok(true)
    }

    /// [`Connection::fill_outgoing`] through `on-deliver(-m5)`: each
    /// message may be rewritten for this subscriber before it is encoded.
    pub(super) async fn fill_outgoing_rewritten(&mut self) -> Result<bool, Kick> {
        while self.output_len() < OUT_HIGH_WATER {
            let mut batch = self.next_batch()?;
            if batch.is_empty() {
                self.batch = batch;
                return Ok(false);
            }
            let mark = self.out.len();
            for d in batch.drain(..) {
                if let Some(d) = self.rewrite(d).await {
                    self.send(d, Instant::now());
                }
            }
            self.hold_responses(mark);
            self.batch = batch;
        }
        Ok(true)
    }

    /// Takes the next deliveries the send window allows from the session
    /// queue (empty: nothing to send now).
    fn next_batch(&mut self) -> Result<Vec<Delivery>, Kick> {
        let room = self
            .neg
            .send_window
            .saturating_sub(self.inflight.outgoing_len());
        let mut batch = std::mem::take(&mut self.batch);
        let bytes = OUT_HIGH_WATER.saturating_sub(self.output_len());
        if let Some(kick) = self.session.take_batch(&mut batch, BATCH, room, bytes) {
            self.batch = batch;
            return Err(kick);
        }
        if !batch.is_empty() && self.out.capacity() == 0 {
            self.out.reserve(WRITE_CHUNK);
        }
        Ok(batch)
    }

    /// One delivery as `on-deliver(-m5)` leaves it, or `None` when
    /// `auth-on-deliver` withholds it from this subscriber (it is then done
    /// with, as if it had never matched: not counted as dropped).
    async fn rewrite(&mut self, d: Delivery) -> Option<Delivery> {
        let request = DeliverRequest {
            id: self.session.id(),
            username: self.neg.username.as_deref(),
            version: self.neg.version,
            message: &d.message,
            qos: d.qos,
            retain: d.retain,
            limits: &self.ctx.limits,
        };
        let now = Instant::now();
        // The set that answers: a reload during the call must not make its
        // acceptance reusable under the new set.
        let generation = self.ctx.plugins.generation();
        let topic = &d.message.topic;
        let accepted = self
            .acceptances
            .as_ref()
            .is_some_and(|c| c.read.allows(generation, topic, d.qos, d.retain, now));
        let c = match self.ctx.plugins.rewrite_delivery(&request, accepted).await {
            Ok(Delivered { changes, reuse }) => {
                if let Some(ttl) = reuse {
                    let cache = self.acceptances.get_or_insert_with(Box::default);
                    cache
                        .read
                        .insert(generation, topic.clone(), d.qos, d.retain, now + ttl);
                }
                match changes {
                    Some(c) => c,
                    None => return Some(d),
                }
            }
            Err(Withheld) => {
                if let Some(p) = self.session.persisted() {
                    p.done(&d);
                }
                return None;
            }
        };
        let m = &d.message;
        let (properties, expires_at) = match c.properties {
            Some((p, expiry)) => (p, Message::expiry_from_interval(expiry)),
            None => (m.properties.clone(), m.expires_at),
        };
        let message = Message {
            topic: c.topic.unwrap_or_else(|| m.topic.clone()),
            payload: c.payload.unwrap_or_else(|| m.payload.clone()),
            qos: m.qos,
            retain: m.retain,
            properties,
            expires_at,
        };
        Some(Delivery {
            message: Arc::new(message),
            ..d
        })
    }

    /// Tells the plugins that `d` was dropped (and the store, if it holds
    /// it).
    fn dropped(&mut self, d: &Delivery, reason: DropReason) {
        self.stats.dropped += 1;
        if let Some(p) = self.session.persisted() {
            p.done(d);
        }
        if self.ctx.plugins.implements(Hook::OnMessageDrop) {
            self.ctx.plugins.notify(Event::MessageDropped {
                id: self.session.id().clone(),
                message: d.message.clone(),
                qos: d.qos,
                reason,
            });
        }
    }

    /// Encodes one delivery, or drops it (expired, or too large for the
    /// client).
    fn send(&mut self, d: Delivery, now: Instant) {
        let version = self.neg.version;
        let m = &d.message;
        if m.is_expired(now) {
            self.dropped(&d, DropReason::Expired);
            return;
        }
        let persisted = self.session.persisted().filter(|_| d.stored.is_some());
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
            self.dropped(&d, DropReason::MaxPacketSizeExceeded);
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
            if let Some(p) = persisted {
                // Its packet id, so a resend after a restart uses it; a
                // QoS 2 PUBLISH waits for it (see `durable`).
                let t = p.sent(&d, id, state);
                if d.qos == QoS::ExactlyOnce {
                    self.ticket = self.ticket.max(t);
                }
            }
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
