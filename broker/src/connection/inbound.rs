//! Packets from an established client: PUBLISH and its QoS flows,
//! acknowledgements of what the broker sent, SUBSCRIBE, UNSUBSCRIBE,
//! PINGREQ, DISCONNECT and AUTH.

use std::sync::Arc;

use bytes::Bytes;
use tokio::time::Instant;

use super::{Close, Connection};
use crate::codec::{
    self, Ack, AckKind, Auth, Packet, Publish, QoS, RetainHandling, SubAck, Subscribe, Unsubscribe,
};
use crate::message::{Delivery, Message};
use crate::plugins::{AuthOutcome, AuthRequest, AuthStep, ConnectionInfo};
use crate::reason::ReasonCode;
use crate::session::{HeldSubscription, OutState};
use crate::topic::{Subscription, TopicName};

impl Connection {
    /// Handles one decoded packet.
    pub(super) async fn handle(&mut self, packet: Packet) -> Result<(), Close> {
        match packet {
            Packet::Publish(p) => {
                self.on_publish(p)?;
                if let Some(rate) = &mut self.rate {
                    let now = Instant::now();
                    if let Some(wait) = rate.take(now) {
                        self.pause = Some(Box::pin(tokio::time::sleep_until(now + wait)));
                    }
                }
                Ok(())
            }
            Packet::PubAck(a) => {
                self.on_completed(&a, OutState::AwaitingPubAck);
                Ok(())
            }
            Packet::PubRec(a) => {
                self.on_pubrec(&a);
                Ok(())
            }
            Packet::PubRel(a) => {
                self.on_pubrel(&a);
                Ok(())
            }
            Packet::PubComp(a) => {
                self.on_completed(&a, OutState::AwaitingPubComp);
                Ok(())
            }
            Packet::Subscribe(s) => self.on_subscribe(s),
            Packet::Unsubscribe(u) => self.on_unsubscribe(u),
            Packet::PingReq => {
                codec::encode_pingresp(&mut self.out);
                Ok(())
            }
            Packet::Disconnect(d) => {
                if let Some(expiry) = d.session_expiry_interval {
                    if self.neg.session_expiry == 0 && expiry != 0 {
                        return Err(Close::server(
                            ReasonCode::PROTOCOL_ERROR,
                            "DISCONNECT sets a session expiry after CONNECT set none",
                        ));
                    }
                    self.neg.session_expiry =
                        expiry.min(self.ctx.config.session.max_session_expiry_secs);
                }
                Err(Close::ClientDisconnect {
                    publish_will: d.reason == ReasonCode::DISCONNECT_WITH_WILL,
                })
            }
            Packet::Connect(_) => Err(Close::server(
                ReasonCode::PROTOCOL_ERROR,
                "second CONNECT on a connection",
            )),
            // Rare and large: its state lives on the heap while it runs.
            Packet::Auth(a) => Box::pin(self.on_auth(a)).await,
        }
    }

    /// Re-authentication (MQTT 5 AUTH 0x19, then 0x18 exchanges).
    async fn on_auth(&mut self, auth: Auth) -> Result<(), Close> {
        let Some(method) = self.neg.auth_method.clone() else {
            return Err(Close::server(
                ReasonCode::PROTOCOL_ERROR,
                "AUTH on a connection that did not use enhanced authentication",
            ));
        };
        if auth.method.as_deref() != Some(method.as_str()) {
            return Err(Close::server(
                ReasonCode::PROTOCOL_ERROR,
                "the authentication method cannot change",
            ));
        }
        let step = match (auth.reason, self.reauthenticating) {
            (ReasonCode::REAUTHENTICATE, false) => AuthStep::Reauthenticate,
            (ReasonCode::CONTINUE_AUTHENTICATION, true) => AuthStep::Continue,
            (reason, _) => {
                return Err(Close::server(
                    ReasonCode::PROTOCOL_ERROR,
                    format!("unexpected AUTH {reason}"),
                ));
            }
        };
        let conn_info = ConnectionInfo::new(self.peer, self.listener.addr, self.listener.kind);
        let request = AuthRequest {
            conn: &conn_info,
            id: self.session.id(),
            username: self.neg.username.as_deref(),
            step,
            method: &method,
            data: auth.data.as_deref(),
        };
        let (reason, data) = match self.ctx.plugins.enhanced_auth(&request, true).await {
            AuthOutcome::Continue(d) => {
                self.reauthenticating = true;
                (ReasonCode::CONTINUE_AUTHENTICATION, d)
            }
            AuthOutcome::Success(d) => {
                self.reauthenticating = false;
                (ReasonCode::SUCCESS, d)
            }
            AuthOutcome::Refused(r) => {
                return Err(Close::Server {
                    reason: r.code,
                    detail: format!("re-authentication refused: {}", r.cause),
                    reason_string: r.reason_string,
                });
            }
            AuthOutcome::Unhandled => {
                return Err(Close::server(
                    ReasonCode::NOT_AUTHORIZED,
                    format!("no plugin handles authentication method {method:?}"),
                ));
            }
        };
        codec::encode_auth(
            &mut self.out,
            &Auth {
                reason,
                method: Some(method),
                data: data.map(Bytes::from),
                ..Auth::default()
            },
        );
        Ok(())
    }

    fn on_publish(&mut self, p: Publish) -> Result<(), Close> {
        self.stats.messages_in += 1;
        let topic = self.resolve_topic(&p)?;
        let packet_id = p.packet_id;
        if !self.neg.allow_publish {
            return self.refuse_publish(&p, &topic);
        }
        if p.qos == QoS::ExactlyOnce {
            let Some(id) = packet_id else {
                return Err(Close::server(
                    ReasonCode::PROTOCOL_ERROR,
                    "QoS 2 without packet id",
                ));
            };
            if self.inflight.incoming_qos2_len() >= usize::from(self.neg.receive_maximum)
                && !self.inflight.incoming_qos2_contains(id)
            {
                return Err(Close::server(
                    ReasonCode::RECEIVE_MAXIMUM_EXCEEDED,
                    "more unacknowledged QoS 2 messages than the receive maximum",
                ));
            }
            if !self.inflight.incoming_qos2_arrived(id) {
                // A resend of a message already routed: acknowledge again.
                codec::encode_ack(
                    &mut self.out,
                    self.neg.version,
                    AckKind::PubRec,
                    &Ack::new(id),
                );
                return Ok(());
            }
        }
        let message = Arc::new(Message {
            topic,
            payload: p.payload,
            qos: p.qos,
            retain: p.retain,
            properties: p.properties,
            expires_at: Message::expiry_from_interval(p.message_expiry_interval),
        });
        if message.retain {
            // A retained message outlives the read buffer its payload
            // points into: give it its own allocation.
            let stored = Arc::new(Message {
                topic: message.topic.clone(),
                payload: Bytes::copy_from_slice(&message.payload),
                qos: message.qos,
                retain: true,
                properties: message.properties.clone(),
                expires_at: message.expires_at,
            });
            self.ctx
                .router
                .retain(&self.session.id().mountpoint, &stored);
        }
        let matched = self.ctx.router.publish(
            &self.session.id().mountpoint,
            Some(self.session.key()),
            &message,
        );
        let reason = if matched == 0 && self.neg.version.is_v5() {
            ReasonCode::NO_MATCHING_SUBSCRIBERS
        } else {
            ReasonCode::SUCCESS
        };
        let kind = match p.qos {
            QoS::AtMostOnce => return Ok(()),
            QoS::AtLeastOnce => AckKind::PubAck,
            QoS::ExactlyOnce => AckKind::PubRec,
        };
        if let Some(id) = packet_id {
            let ack = Ack {
                reason,
                ..Ack::new(id)
            };
            codec::encode_ack(&mut self.out, self.neg.version, kind, &ack);
        }
        Ok(())
    }

    /// A PUBLISH the client may not send: MQTT 3.x clients are
    /// disconnected (3.1.1 has no way to refuse one message); MQTT 5 clients
    /// get PUBACK/PUBREC 0x87, and QoS 0 is dropped silently.
    fn refuse_publish(&mut self, p: &Publish, topic: &TopicName) -> Result<(), Close> {
        if !self.neg.version.is_v5() {
            return Err(Close::server(
                ReasonCode::NOT_AUTHORIZED,
                format!("publish to {topic} not allowed"),
            ));
        }
        tracing::debug!(client = %self.session.id(), topic = %topic, "publish refused");
        let kind = match p.qos {
            QoS::AtMostOnce => return Ok(()),
            QoS::AtLeastOnce => AckKind::PubAck,
            QoS::ExactlyOnce => AckKind::PubRec,
        };
        if let Some(id) = p.packet_id {
            let ack = Ack {
                reason: ReasonCode::NOT_AUTHORIZED,
                ..Ack::new(id)
            };
            codec::encode_ack(&mut self.out, self.neg.version, kind, &ack);
        }
        Ok(())
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

    /// PUBACK, or PUBCOMP: the message is done.
    fn on_completed(&mut self, ack: &Ack, state: OutState) {
        if self.inflight.complete(ack.packet_id, state).is_none() {
            tracing::debug!(
                client = %self.session.id(), packet_id = %ack.packet_id,
                "acknowledgement for an unknown packet id ignored"
            );
        }
    }

    fn on_pubrec(&mut self, ack: &Ack) {
        let version = self.neg.version;
        if ack.reason.is_error() {
            // The client refused the message: QoS 2 flow ends here.
            self.inflight
                .complete(ack.packet_id, OutState::AwaitingPubRec);
            return;
        }
        let reason = if self.inflight.received(ack.packet_id) {
            ReasonCode::SUCCESS
        } else {
            ReasonCode::PACKET_IDENTIFIER_NOT_FOUND
        };
        let rel = Ack {
            reason,
            ..Ack::new(ack.packet_id)
        };
        codec::encode_ack(&mut self.out, version, AckKind::PubRel, &rel);
    }

    fn on_pubrel(&mut self, ack: &Ack) {
        let reason = if self.inflight.incoming_qos2_released(ack.packet_id) {
            ReasonCode::SUCCESS
        } else {
            ReasonCode::PACKET_IDENTIFIER_NOT_FOUND
        };
        let comp = Ack {
            reason,
            ..Ack::new(ack.packet_id)
        };
        codec::encode_ack(&mut self.out, self.neg.version, AckKind::PubComp, &comp);
    }

    fn on_subscribe(&mut self, s: Subscribe) -> Result<(), Close> {
        let v5 = self.neg.version.is_v5();
        let mut reasons = Vec::with_capacity(s.filters.len());
        let mut retained = Vec::new();
        if !self.neg.allow_subscribe {
            tracing::debug!(client = %self.session.id(), "subscribe refused");
            let refused = if v5 {
                ReasonCode::NOT_AUTHORIZED
            } else {
                ReasonCode::UNSPECIFIED_ERROR
            };
            reasons.resize(s.filters.len(), refused);
        }
        for (raw, options) in s.filters.iter().filter(|_| self.neg.allow_subscribe) {
            let subscription = match Subscription::parse(raw) {
                Ok(sub) => sub,
                Err(e) => {
                    tracing::debug!(client = %self.session.id(), filter = %raw, "subscription refused: {e}");
                    reasons.push(if v5 {
                        ReasonCode::TOPIC_FILTER_INVALID
                    } else {
                        ReasonCode::UNSPECIFIED_ERROR
                    });
                    continue;
                }
            };
            if subscription.group().is_some() && options.no_local {
                return Err(Close::server(
                    ReasonCode::PROTOCOL_ERROR,
                    "No Local set on a shared subscription",
                ));
            }
            let existed = self.ctx.router.subscribe(
                &self.session,
                &subscription,
                *options,
                s.subscription_identifier,
            );
            self.session.lock().subscriptions.insert(
                subscription.clone(),
                HeldSubscription {
                    options: *options,
                    identifier: s.subscription_identifier,
                },
            );
            reasons.push(ReasonCode(options.qos as u8));
            let send_retained = match options.retain_handling {
                RetainHandling::OnSubscribe => true,
                RetainHandling::OnNewSubscribe => !existed,
                RetainHandling::Never => false,
            };
            if let (true, Subscription::Plain(filter)) = (send_retained, &subscription) {
                for message in self
                    .ctx
                    .router
                    .retained_matching(&self.session.id().mountpoint, filter)
                {
                    retained.push(Delivery {
                        qos: message.qos.min(options.qos),
                        message,
                        retain: true,
                        subscription_ids: s.subscription_identifier.into_iter().collect(),
                        shared: None,
                    });
                }
            }
        }
        codec::encode_suback(
            &mut self.out,
            self.neg.version,
            &SubAck {
                packet_id: s.packet_id,
                reasons,
                reason_string: None,
                user_properties: Vec::new(),
            },
        );
        // Queued behind the SUBACK already in the output buffer.
        for d in retained {
            let dropped = self.session.enqueue(d);
            self.stats.dropped += dropped.len() as u64;
        }
        Ok(())
    }

    fn on_unsubscribe(&mut self, u: Unsubscribe) -> Result<(), Close> {
        let v5 = self.neg.version.is_v5();
        let mut reasons = Vec::with_capacity(u.filters.len());
        if !self.neg.allow_unsubscribe {
            if !v5 {
                // MQTT 3.x UNSUBACK cannot carry a refusal.
                return Err(Close::server(
                    ReasonCode::NOT_AUTHORIZED,
                    "unsubscribe not allowed",
                ));
            }
            reasons.resize(u.filters.len(), ReasonCode::NOT_AUTHORIZED);
        }
        for raw in u.filters.iter().filter(|_| self.neg.allow_unsubscribe) {
            let reason = match Subscription::parse(raw) {
                Ok(subscription) => {
                    let existed = self.ctx.router.unsubscribe(&self.session, &subscription);
                    self.session.lock().subscriptions.remove(&subscription);
                    if existed {
                        ReasonCode::SUCCESS
                    } else {
                        ReasonCode::NO_SUBSCRIPTION_EXISTED
                    }
                }
                Err(_) if v5 => ReasonCode::TOPIC_FILTER_INVALID,
                Err(_) => ReasonCode::SUCCESS,
            };
            reasons.push(reason);
        }
        codec::encode_unsuback(
            &mut self.out,
            self.neg.version,
            &SubAck {
                packet_id: u.packet_id,
                reasons,
                reason_string: None,
                user_properties: Vec::new(),
            },
        );
        Ok(())
    }
}
