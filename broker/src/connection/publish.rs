//! PUBLISH from the client: topic aliases, the publish permission, QoS 2
//! duplicates, `auth-on-publish` (with its modifiers and its per-connection
//! acceptance cache), routing, retained messages and the acknowledgement.
//!
//! With no plugin implementing `auth-on-publish(-m5)` the path stays
//! synchronous and does nothing more than it did before the hook existed.

use std::sync::Arc;

use tokio::time::Instant;

use super::{Close, Connection};
use crate::cluster::Cluster;
use crate::codec::{self, Ack, AckKind, Publish, QoS};
use crate::config::PublishRefusal;
use crate::limits::Limit;
use crate::memory::Pressure;
use crate::message::Draft;
use crate::plugins::{Event, Hook, PublishChanges, PublishOutcome, PublishRequest};
use crate::reason::ReasonCode;
use crate::router::Router;
use crate::store::Store;
use crate::topic::{PacketId, TopicName};

/// A PUBLISH admitted past the broker's own checks.
pub(super) struct Incoming {
    message: Draft,
    packet_id: Option<PacketId>,
}

impl Connection {
    /// A PUBLISH. `Some`: it must pass `auth-on-publish(-m5)` first, with
    /// [`Connection::authorize_publish`]; everything else (the broker's own
    /// checks, acceptances the plugins let the broker reuse, routing when no
    /// plugin checks publishes) happens here, synchronously.
    pub(super) fn on_publish(&mut self, p: Publish) -> Result<Option<Incoming>, Close> {
        let Some(incoming) = self.admit(p)? else {
            return Ok(None);
        };
        if self.ctx.plugins.checks_publish() {
            let generation = self.ctx.plugins.generation();
            let cached = self.acceptances.as_ref().is_some_and(|cache| {
                let m = &incoming.message;
                cache
                    .publish
                    .allows(generation, &m.topic, m.qos, m.retain, Instant::now())
            });
            if !cached {
                return Ok(Some(incoming));
            }
        }
        self.route(incoming, None)?;
        Ok(None)
    }

    /// Routes a PUBLISH that `auth-on-publish(-m5)` accepts, or refuses it.
    pub(super) async fn authorize_publish(&mut self, incoming: Incoming) -> Result<(), Close> {
        let now = Instant::now();
        // The set that answers: a reload during the call must not make its
        // acceptance reusable under the new set.
        let generation = self.ctx.plugins.generation();
        let m = &incoming.message;
        let request = PublishRequest {
            id: self.session.id(),
            username: self.neg.username.as_deref(),
            version: self.neg.version,
            topic: &m.topic,
            payload: &m.payload,
            qos: m.qos,
            retain: m.retain,
            properties: &m.properties,
            expiry: m.expiry,
            is_will: false,
            from_plugin: None,
            limits: &self.ctx.limits,
        };
        match self.ctx.plugins.authorize_publish(&request).await {
            PublishOutcome::Accepted { changes, cache } => {
                if self.overruns > 0 {
                    self.plugin_overrun(false);
                }
                if let Some(ttl) = cache {
                    self.acceptances
                        .get_or_insert_with(Box::default)
                        .publish
                        .insert(generation, m.topic.clone(), m.qos, m.retain, now + ttl);
                }
                self.route(incoming, changes.as_deref())
            }
            PublishOutcome::Refused {
                code,
                reason_string,
                cause,
                overrun,
            } => {
                self.plugin_overrun(overrun);
                let cause = format!("{cause} (topic {})", m.topic);
                self.refuse_with(m.qos, incoming.packet_id, code, reason_string, &cause)
            }
        }
    }

    /// Forgets cached acceptances (the client re-authenticated).
    pub(super) fn clear_acceptances(&mut self) {
        self.acceptances = None;
    }

    /// The broker's own checks. `None`: handled already (refused, or a
    /// resent QoS 2 message).
    fn admit(&mut self, p: Publish) -> Result<Option<Incoming>, Close> {
        self.stats.messages_in += 1;
        // A topic sent with an alias was checked when the alias was set.
        if !p.topic.is_empty() {
            if let Err(limit) = self.ctx.limits.topics.check_topic(&p.topic) {
                let cause = format!("topic of {} bytes", p.topic.len());
                self.ctx
                    .metrics
                    .limits
                    .hit(limit, self.session.id(), &cause);
                let cause = format!("{limit} exceeded ({cause})");
                self.refuse(&p, ReasonCode::TOPIC_NAME_INVALID, &cause)?;
                return Ok(None);
            }
        }
        let topic = self.resolve_topic(&p)?;
        if p.qos == QoS::ExactlyOnce {
            let Some(id) = p.packet_id else {
                return Err(Close::server(
                    ReasonCode::PROTOCOL_ERROR,
                    "QoS 2 without packet id",
                ));
            };
            if self.inflight.incoming_qos2_contains(id) {
                // A resend of a message already taken: acknowledge again
                // (whatever the broker's state now).
                codec::encode_ack(
                    &mut self.out,
                    self.neg.version,
                    AckKind::PubRec,
                    &Ack::new(id),
                );
                return Ok(None);
            }
        }
        let refusal = if !self.neg.allow_publish {
            Some((
                ReasonCode::NOT_AUTHORIZED,
                "publishing is not allowed for this client",
            ))
        } else if topic.is_sys() {
            self.ctx
                .metrics
                .limits
                .hit(Limit::SysPublish, self.session.id(), &topic);
            Some((
                ReasonCode::NOT_AUTHORIZED,
                "$SYS topics are the broker's own",
            ))
        } else {
            match (p.qos, self.ctx.memory.pressure()) {
                (QoS::AtMostOnce, Pressure::High | Pressure::Over) => {
                    self.ctx.metrics.limits.hit(
                        Limit::Memory,
                        self.session.id(),
                        &"QoS 0 PUBLISH dropped",
                    );
                    self.stats.dropped += 1;
                    return Ok(None);
                }
                (QoS::AtLeastOnce | QoS::ExactlyOnce, Pressure::Over) => {
                    self.ctx.metrics.limits.hit(
                        Limit::Memory,
                        self.session.id(),
                        &"PUBLISH refused",
                    );
                    Some((
                        ReasonCode::QUOTA_EXCEEDED,
                        "the broker is over its memory budget",
                    ))
                }
                _ => None,
            }
        };
        if let Some((code, cause)) = refusal {
            let cause = format!("{cause} (topic {topic})");
            self.refuse(&p, code, &cause)?;
            return Ok(None);
        }
        if p.qos == QoS::ExactlyOnce
            && self.inflight.incoming_qos2_len() >= usize::from(self.neg.receive_maximum)
        {
            return Err(Close::server(
                ReasonCode::RECEIVE_MAXIMUM_EXCEEDED,
                "more unacknowledged QoS 2 messages than the receive maximum",
            ));
        }
        Ok(Some(Incoming::new(topic, p)))
    }

    /// Routes an accepted message (with a plugin's changes) and
    /// acknowledges it.
    fn route(&mut self, incoming: Incoming, changes: Option<&PublishChanges>) -> Result<(), Close> {
        let Incoming {
            mut message,
            packet_id,
        } = incoming;
        let sent_qos = message.qos;
        let mut elsewhere = None;
        if let Some(c) = changes {
            c.apply(&mut message);
            elsewhere = c.mountpoint.clone();
            if let Some(d) = c.throttle {
                self.pause_reading(d);
            }
        }
        let mut message = Arc::new(message.into_message());
        let mountpoint = elsewhere.as_ref().unwrap_or(&self.session.id().mountpoint);
        // What routing stores (retained, queued for persistent sessions)
        // is collected as this packet's ticket.
        Store::begin();
        Cluster::begin();
        Router::collect_congestion();
        if message.retain {
            // A retained message outlives the read buffer its payload may
            // point into: route and store a copy that owns it.
            message = message.detached();
            let stored = &message;
            if let Err(limit) = self.ctx.router.retain(mountpoint, stored) {
                let cause = format!("{limit} reached (retained message to {})", message.topic);
                self.ctx
                    .metrics
                    .limits
                    .hit(limit, self.session.id(), &"retained message refused");
                return self.refuse_with(
                    sent_qos,
                    packet_id,
                    ReasonCode::QUOTA_EXCEEDED,
                    None,
                    &cause,
                );
            }
        }
        let matched =
            self.ctx
                .router
                .publish_everywhere(mountpoint, Some(self.session.key()), &message);
        self.ticket = self.ticket.max(Store::touched());
        if let Some(message) = Store::settles() {
            self.settle_on(message);
        }
        self.forwarded = self.forwarded.max(Cluster::touched());
        self.hold_for(Router::congested());
        if let (QoS::ExactlyOnce, Some(id)) = (sent_qos, packet_id) {
            self.qos2_arrived(id);
        }
        let plugins = &self.ctx.plugins;
        if plugins.implements(Hook::OnPublish) || plugins.implements(Hook::OnPublishM5) {
            plugins.notify(Event::Published {
                username: self.neg.username.as_deref().map(String::from),
                id: self.session.id().clone(),
                message,
                v5: self.neg.version.is_v5(),
                from_plugin: None,
            });
        }
        // In a cluster other nodes' subscribers are not known here.
        let reason =
            if matched == 0 && self.neg.version.is_v5() && self.ctx.router.cluster().is_none() {
                ReasonCode::NO_MATCHING_SUBSCRIBERS
            } else {
                ReasonCode::SUCCESS
            };
        self.acknowledge(sent_qos, packet_id, reason, None);
        Ok(())
    }

    /// A new QoS 2 message `id` was taken: its id is kept (and stored,
    /// for a persistent session) until PUBREL.
    fn qos2_arrived(&mut self, id: PacketId) {
        self.inflight.incoming_qos2_arrived(id);
        if let Some(p) = self.session.persisted() {
            self.ticket = self.ticket.max(p.incoming_qos2(id));
        }
    }

    /// Refuses `p` (see [`Connection::refuse_with`]).
    fn refuse(&mut self, p: &Publish, code: ReasonCode, cause: &str) -> Result<(), Close> {
        self.refuse_with(p.qos, p.packet_id, code, None, cause)
    }

    /// A PUBLISH the broker does not take. MQTT 3.x clients are
    /// disconnected (3.x cannot refuse one message), or, with
    /// `publish_refusal_v3 = "drop"`, acknowledged as if delivered; MQTT 5
    /// clients get PUBACK/PUBREC with `code`, and QoS 0 is dropped
    /// silently.
    fn refuse_with(
        &mut self,
        qos: QoS,
        packet_id: Option<PacketId>,
        code: ReasonCode,
        reason_string: Option<String>,
        cause: &str,
    ) -> Result<(), Close> {
        if !self.neg.version.is_v5() {
            if self.ctx.config.plugins.publish_refusal_v3 == PublishRefusal::Disconnect {
                return Err(Close::server(
                    ReasonCode::NOT_AUTHORIZED,
                    format!("publish refused: {cause}"),
                ));
            }
            tracing::debug!(client = %self.session.id(), "publish refused and dropped: {cause}");
            if let (QoS::ExactlyOnce, Some(id)) = (qos, packet_id) {
                // The QoS 2 flow completes as for a delivered message.
                self.qos2_arrived(id);
            }
            self.acknowledge(qos, packet_id, ReasonCode::SUCCESS, None);
            return Ok(());
        }
        tracing::debug!(client = %self.session.id(), "publish refused: {cause}");
        self.acknowledge(qos, packet_id, code, reason_string);
        Ok(())
    }

    /// PUBACK or PUBREC for a message of `qos` (nothing for QoS 0).
    fn acknowledge(
        &mut self,
        qos: QoS,
        packet_id: Option<PacketId>,
        reason: ReasonCode,
        reason_string: Option<String>,
    ) {
        let kind = match qos {
            QoS::AtMostOnce => return,
            QoS::AtLeastOnce => AckKind::PubAck,
            QoS::ExactlyOnce => AckKind::PubRec,
        };
        if let Some(id) = packet_id {
            let version = self.neg.version;
            let stripped = super::encode_within(
                &mut self.out,
                self.neg.client_max_packet,
                &mut Ack {
                    reason,
                    reason_string: reason_string.filter(|_| self.neg.problem_info),
                    ..Ack::new(id)
                },
                |out, ack| codec::encode_ack(out, version, kind, ack),
                |ack| ack.reason_string = None,
            );
            if stripped {
                self.over_client_max(kind.name());
            }
        }
    }

    /// The topic of an incoming PUBLISH, resolving MQTT 5 topic aliases.
    fn resolve_topic(&mut self, p: &Publish) -> Result<TopicName, Close> {
        let Some(alias) = p.topic_alias else {
            return TopicName::new(&p.topic)
                .map_err(|e| Close::server(ReasonCode::TOPIC_NAME_INVALID, e.to_string()));
        };
        if alias == 0 || alias > self.neg.topic_alias_maximum {
            return Err(Close::server(
                ReasonCode::TOPIC_ALIAS_INVALID,
                format!(
                    "topic alias {alias} outside 1..={}",
                    self.neg.topic_alias_maximum
                ),
            ));
        }
        let aliases = &mut self.aliases.get_or_insert_with(Box::default).inbound;
        if p.topic.is_empty() {
            return aliases.get(&alias).cloned().ok_or_else(|| {
                Close::server(
                    ReasonCode::PROTOCOL_ERROR,
                    format!("topic alias {alias} used before it was set"),
                )
            });
        }
        let topic = TopicName::new(&p.topic)
            .map_err(|e| Close::server(ReasonCode::TOPIC_NAME_INVALID, e.to_string()))?;
        aliases.insert(alias, topic.clone());
        Ok(topic)
    }
}

impl Incoming {
    fn new(topic: TopicName, p: Publish) -> Self {
        Incoming {
            message: Draft {
                topic,
                payload: p.payload,
                qos: p.qos,
                retain: p.retain,
                properties: p.properties,
                expiry: p.message_expiry_interval,
            },
            packet_id: p.packet_id,
        }
    }
}
