//! The end of a handshake: attach the session (new, resumed or taken
//! over), settle what was negotiated, answer CONNACK, resend what was in
//! flight, and build the [`Connection`] the serve loop runs on.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::time::Instant;

use super::handshake::{Admitted, Refusal, refuse};
use super::stopped::Stopped;
use super::throttle::RateLimit;
use super::{Connection, Listener, Negotiated, Reauth, Stats, Transport};
use crate::codec::{self, AckKind, ConnAck, Connect, Decoder, OutgoingPublish};
use crate::context::Context;
use crate::plugins::{ConnectionInfo, Event};
use crate::reason::ReasonCode;
use crate::registry::{AttachError, Departure, Profile};
use crate::session::OutState;
use crate::store::SessionRecord;

/// Attaches the session, answers CONNACK and builds the connection.
#[allow(clippy::too_many_arguments, reason = "the pieces of one handshake")]
pub(super) async fn establish<T: Transport>(
    ctx: &Arc<Context>,
    stream: &mut T,
    connect: Box<Connect>,
    conn_info: ConnectionInfo,
    listener: &Listener,
    admitted: Admitted,
    mut decoder: Decoder,
    rbuf: BytesMut,
) -> Option<Box<Connection>> {
    let config = &ctx.config;
    let version = connect.version;
    let v5 = version.is_v5();
    let peer = conn_info.peer;
    let Admitted {
        id,
        mut props,
        keep_alive,
        clean_start,
        session_expiry,
        will,
        throttle,
        modifiers: m,
    } = admitted;

    let limits = if m.max_online_messages.is_none() && m.max_offline_messages.is_none() {
        ctx.default_limits.clone()
    } else {
        let mut limits = *ctx.default_limits;
        if let Some(n) = m.max_online_messages {
            limits.max_online = n.get() as usize;
        }
        if let Some(n) = m.max_offline_messages {
            limits.max_offline = n as usize;
        }
        Arc::new(limits)
    };
    let profile = Profile {
        limits,
        upgrade_qos: m.upgrade_qos.unwrap_or(false),
        persistent: session_expiry > 0,
    };
    if let Some(cluster) = ctx.router.cluster() {
        // The client id is the cluster's, not this node's: take it (and
        // the other node's client off it) first.
        match cluster.claim(&id).await {
            // The session another node had comes along (a clean start
            // ends it here, as on one node).
            Ok(Some(image)) => cluster.take_in(image).await,
            Ok(None) => {}
            Err(e) if profile.persistent || !clean_start => {
                // A session that outlives its connection needs the
                // registry: on a node cut off from it (a minority
                // partition), persistent sessions are refused.
                refuse_connect(
                    stream,
                    &connect,
                    peer,
                    ReasonCode::SERVER_UNAVAILABLE,
                    e.to_string(),
                )
                .await;
                return None;
            }
            Err(e) => {
                tracing::warn!(client = %id, "{e}; a clean session is served on this node alone");
            }
        }
    }
    let attached = match ctx.registry.attach(id.clone(), clean_start, profile).await {
        Ok(a) => a,
        Err(e) => {
            let reason = match e {
                AttachError::TooManySessions(_) => ReasonCode::QUOTA_EXCEEDED,
                AttachError::TakeoverTimedOut(_) => ReasonCode::SERVER_BUSY,
            };
            refuse_connect(stream, &connect, peer, reason, e.to_string()).await;
            return None;
        }
    };

    {
        let mut state = attached.session.lock();
        state.level = version.level();
        state.expiry_interval = session_expiry;
    }
    if let Some(cluster) = ctx
        .router
        .cluster()
        .filter(|_| session_expiry > 0 || will.is_some())
    {
        // The cluster keeps the session's card (with the Will, sent by
        // another node if this one dies) before CONNACK.
        cluster.set_will(&id, will.as_ref());
        cluster.save(&id).await;
    }
    if let Some(p) = attached.session.persisted() {
        // The session (and the Will, published at restart if the broker
        // stops without this connection ending) is on disk before CONNACK.
        let ticket = {
            p.put_session(&SessionRecord {
                level: version.level(),
                expiry_interval: session_expiry,
                disconnected_at: 0,
                will: will.clone(),
                will_due: 0,
            })
        };
        if let Some(t) = p.store().must_wait(ticket) {
            if let Err(e) = p.store().wait(t).await {
                refuse_connect(
                    stream,
                    &connect,
                    peer,
                    ReasonCode::SERVER_UNAVAILABLE,
                    e.to_string(),
                )
                .await;
                ctx.registry.detach(
                    &attached.session,
                    Departure {
                        inflight: attached.inflight,
                        will: None,
                        expiry_interval: session_expiry,
                    },
                );
                ctx.registry.release(&attached.session);
                return None;
            }
        }
    }
    let max_packet_size = m.max_packet_size.unwrap_or(listener.max_packet_size);
    decoder.set_max_packet_size(max_packet_size);
    let receive_maximum = m
        .receive_maximum
        .map_or(config.mqtt.receive_maximum, |n| n.get());
    let topic_alias_maximum = m
        .topic_alias_maximum
        .unwrap_or(config.mqtt.topic_alias_maximum);
    if v5 {
        props.receive_maximum = Some(receive_maximum);
        props.maximum_packet_size = Some(max_packet_size);
        if topic_alias_maximum > 0 {
            props.topic_alias_maximum = Some(topic_alias_maximum);
        }
    }
    let cp = &connect.properties;
    let mut send_window = usize::from(cp.receive_maximum.unwrap_or(u16::MAX))
        .min(usize::from(config.mqtt.max_inflight));
    if let Some(n) = m.max_inflight_messages {
        send_window = send_window.min(usize::from(n.get()));
    }
    let neg = Negotiated {
        version,
        send_window,
        client_max_packet: cp.maximum_packet_size.unwrap_or(u32::MAX),
        client_alias_max: cp.topic_alias_maximum.unwrap_or(0),
        receive_maximum,
        topic_alias_maximum,
        session_expiry,
        generation: attached.generation,
        will: will.map(Box::new),
        allow_publish: m.allow_publish.unwrap_or(true),
        allow_subscribe: m.allow_subscribe.unwrap_or(true),
        allow_unsubscribe: m.allow_unsubscribe.unwrap_or(true),
        username: m
            .username
            .clone()
            .or_else(|| connect.username.clone())
            .map(String::into_boxed_str),
        reauth: cp.authentication_method.clone().map(|method| {
            Arc::new(Reauth {
                method,
                conn: conn_info,
            })
        }),
        problem_info: cp.request_problem_information.unwrap_or(true),
    };
    let mut conn = Box::new(Connection {
        ctx: ctx.clone(),
        peer,
        session: attached.session,
        decoder,
        neg,
        inflight: attached.inflight,
        rbuf,
        out: BytesMut::new(),
        batch: Vec::new(),
        aliases: None,
        rate: m.max_message_rate.map(|r| Box::new(RateLimit::new(r))),
        acceptances: None,
        stopped: throttle.map(Stopped::paused_for),
        reauth_rounds: 0,
        finished: false,
        overruns: 0,
        stats: Stats::default(),
        ticket: 0,
        forwarded: 0,
        held: None,
    });
    // Counted until the connection drops.
    crate::metrics::Metrics::add(&ctx.metrics.clients_connected, 1);
    codec::encode_connack(
        &mut conn.out,
        version,
        &ConnAck {
            session_present: attached.session_present,
            reason: ReasonCode::SUCCESS,
            properties: props,
        },
    );
    ctx.sweeper.watch(
        &conn.session,
        attached.generation,
        Duration::from_secs(u64::from(keep_alive)),
        m.max_connection_lifetime
            .map(|s| Instant::now() + Duration::from_secs(u64::from(s.get()))),
    );
    let sid = conn.session.id().clone();
    ctx.plugins.notify(Event::Wakeup(sid.clone()));
    ctx.plugins.notify(Event::Register {
        peer,
        id: sid,
        username: conn.neg.username.as_deref().map(String::from),
        properties: v5.then(|| connect.properties.clone()),
    });
    if attached.session_present {
        conn.resend_inflight();
    }
    // Packets that arrived right behind CONNECT wait in the read buffer for
    // the main loop; process them now so nothing waits for more input.
    if let Err(close) = conn.process_input().await {
        conn.finish(stream, close).await;
        return None;
    }
    Some(conn)
}

impl Connection {
    /// After resuming a session: resend every unacknowledged PUBLISH (DUP
    /// set) and PUBREL, in their original order and with their original
    /// packet ids.
    fn resend_inflight(&mut self) {
        let version = self.neg.version;
        let now = Instant::now();
        for entry in self.inflight.outgoing() {
            match entry.state {
                OutState::AwaitingPubComp => codec::encode_ack(
                    &mut self.out,
                    version,
                    AckKind::PubRel,
                    &codec::Ack::new(entry.packet_id),
                ),
                OutState::AwaitingPubAck | OutState::AwaitingPubRec => {
                    let d = &entry.delivery;
                    let m = &d.message;
                    codec::encode_publish(
                        &mut self.out,
                        version,
                        &OutgoingPublish {
                            topic: m.topic.as_str(),
                            qos: d.qos,
                            retain: d.retain,
                            dup: true,
                            packet_id: Some(entry.packet_id),
                            payload: &m.payload,
                            properties: Some(&m.properties),
                            message_expiry_interval: m.remaining_expiry(now),
                            topic_alias: None,
                            subscription_identifiers: &d.subscription_ids,
                        },
                    );
                    self.stats.messages_out += 1;
                }
            }
        }
    }
}

/// Refuses `connect` while its session is being set up: CONNACK with
/// `reason` in the client's version (within its Maximum Packet Size), then
/// close.
async fn refuse_connect<T: Transport>(
    stream: &mut T,
    connect: &Connect,
    peer: SocketAddr,
    reason: ReasonCode,
    why: String,
) {
    let refusal = Refusal::new(reason, why);
    let client_max = connect.properties.maximum_packet_size;
    refuse(stream, Some(connect.version), refusal, peer, client_max).await;
}
