//! Packets from an established client: dispatch to PUBLISH ([`super::publish`])
//! and SUBSCRIBE/UNSUBSCRIBE ([`super::subscribe`]) handling; here the QoS
//! flows' acknowledgements, PINGREQ, DISCONNECT and AUTH.

use bytes::Bytes;
use tokio::time::Instant;

use super::{Close, Connection};
use crate::codec::{self, Ack, AckKind, Auth, Packet};
use crate::limits::Limit;
use crate::plugins::{AuthOutcome, AuthRequest, AuthStep};
use crate::reason::ReasonCode;
use crate::session::OutState;

impl Connection {
    /// Handles one decoded packet.
    pub(super) async fn handle(&mut self, packet: Packet) -> Result<(), Close> {
        match packet {
            Packet::Publish(p) => {
                if let Some(incoming) = self.on_publish(p)? {
                    // On the heap: the plugin call's state is large.
                    Box::pin(self.authorize_publish(incoming)).await?;
                }
                if let Some(rate) = &mut self.rate {
                    if let Some(wait) = rate.take(Instant::now()) {
                        self.pause_reading(wait);
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
            Packet::Subscribe(s) => {
                let done = if self.ctx.plugins.checks_subscribe() {
                    Box::pin(self.on_subscribe_checked(s)).await
                } else {
                    self.on_subscribe(s)
                };
                self.save_card().await;
                done
            }
            Packet::Unsubscribe(u) => {
                let done = if self.ctx.plugins.checks_unsubscribe() {
                    Box::pin(self.on_unsubscribe_checked(u)).await
                } else {
                    self.on_unsubscribe(u, None)
                };
                self.save_card().await;
                done
            }
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
        let Some(reauth) = self.neg.reauth.clone() else {
            return Err(Close::server(
                ReasonCode::PROTOCOL_ERROR,
                "AUTH on a connection that did not use enhanced authentication",
            ));
        };
        let method = reauth.method.as_str();
        if auth.method.as_deref() != Some(method) {
            return Err(Close::server(
                ReasonCode::PROTOCOL_ERROR,
                "the authentication method cannot change",
            ));
        }
        let step = match (auth.reason, self.reauth_rounds > 0) {
            (ReasonCode::REAUTHENTICATE, false) => AuthStep::Reauthenticate,
            (ReasonCode::CONTINUE_AUTHENTICATION, true) => AuthStep::Continue,
            (reason, _) => {
                return Err(Close::server(
                    ReasonCode::PROTOCOL_ERROR,
                    format!("unexpected AUTH {reason}"),
                ));
            }
        };
        // AUTH 0x19 starts the exchange, as CONNECT does at first: the
        // rounds counted are the continuations after it.
        self.reauth_rounds += 1;
        let rounds = self.reauth_rounds - 1;
        let max = self.ctx.config.limits.max_auth_rounds;
        if rounds > max {
            self.ctx.metrics.limits.hit(
                Limit::AuthRounds,
                self.session.id(),
                &format_args!("{rounds} AUTH rounds in one re-authentication"),
            );
            return Err(Close::server(
                ReasonCode::QUOTA_EXCEEDED,
                format!("more than {max} AUTH rounds (limits.max_auth_rounds)"),
            ));
        }
        // The connection facts of CONNECT (the client certificate of a TLS
        // connection included).
        let request = AuthRequest {
            conn: &reauth.conn,
            id: self.session.id(),
            username: self.neg.username.as_deref(),
            step,
            method,
            data: auth.data.as_deref(),
        };
        let (reason, data) = match self.ctx.plugins.enhanced_auth(&request, true).await {
            AuthOutcome::Continue(d) => (ReasonCode::CONTINUE_AUTHENTICATION, d),
            AuthOutcome::Success(d) => {
                self.reauth_rounds = 0;
                // Authorisation answers were given to the old credentials.
                self.clear_acceptances();
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
                method: Some(method.to_owned()),
                data: data.map(Bytes::from),
                ..Auth::default()
            },
        );
        Ok(())
    }

    /// PUBACK, or PUBCOMP: the message is done.
    fn on_completed(&mut self, ack: &Ack, state: OutState) {
        match self.inflight.complete(ack.packet_id, state) {
            Some(entry) => {
                if let Some(p) = self.session.persisted() {
                    p.done(&entry.delivery);
                }
            }
            None => tracing::debug!(
                client = %self.session.id(), packet_id = %ack.packet_id,
                "acknowledgement for an unknown packet id ignored"
            ),
        }
    }

    fn on_pubrec(&mut self, ack: &Ack) {
        let version = self.neg.version;
        if ack.reason.is_error() {
            // The client refused the message: QoS 2 flow ends here.
            let entry = self
                .inflight
                .complete(ack.packet_id, OutState::AwaitingPubRec);
            if let (Some(p), Some(entry)) = (self.session.persisted(), entry) {
                p.done(&entry.delivery);
            }
            return;
        }
        let reason = if self.inflight.received(ack.packet_id) {
            // PUBREL goes once the new state is stored: after a restart the
            // message is not sent again (the client may have released it).
            if let (Some(p), Some(entry)) =
                (self.session.persisted(), self.inflight.get(ack.packet_id))
            {
                let t = p.sent(&entry.delivery, ack.packet_id, OutState::AwaitingPubComp);
                self.ticket = self.ticket.max(t);
            }
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
            if let Some(p) = self.session.persisted() {
                p.released_qos2(ack.packet_id);
            }
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
}
