//! The start of a connection: read CONNECT within the connect timeout, apply
//! the CONNECT rules (protocol, client id, keep alive), run enhanced
//! authentication and the authentication chain, apply the plugins'
//! modifiers, attach the session and answer CONNACK.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::time::Instant;

use super::stopped::Stopped;
use super::throttle::RateLimit;
use super::{
    ClientCertificate, Connection, Listener, Negotiated, Reauth, Stats, Transport,
    close_gracefully, write_all,
};
use crate::codec::{
    self, AckKind, Auth, ConnAck, ConnAckProperties, Connect, DecodeError, Decoder,
    OutgoingPublish, Packet, ProtocolVersion,
};
use crate::context::Context;
use crate::limits::Limit;
use crate::memory::Pressure;
use crate::message::{Message, Will};
use crate::plugins::{
    AuthOutcome, AuthRequest, AuthStep, ConnectionInfo, Event, Modifiers, PublishOutcome,
    PublishRequest, RegisterOutcome, RegisterRequest,
};
use crate::reason::ReasonCode;
use crate::registry::{AttachError, Departure, Profile};
use crate::session::{OutState, SubscriberId};
use crate::store::SessionRecord;
use crate::topic::{ClientId, TopicName};

/// MQTT 3.1 limits client ids to 23 characters.
const V3_1_MAX_CLIENT_ID: usize = 23;

/// The next packet during the handshake.
enum Incoming {
    Packet(Packet),
    Refused(DecodeError),
    Gone,
}

async fn read_packet<T: Transport>(
    ctx: &Context,
    stream: &T,
    buf: &mut BytesMut,
    decoder: &mut Decoder,
) -> Incoming {
    loop {
        match decoder.decode(buf) {
            Ok(Some(p)) => return Incoming::Packet(p),
            Ok(None) => {}
            Err(e) => return Incoming::Refused(e),
        }
        if ctx.over_budget_for_partial(buf.len()) {
            ctx.metrics.limits.hit(
                Limit::Memory,
                &"a new connection",
                &"large CONNECT or AUTH refused",
            );
            return Incoming::Gone;
        }
        if stream.readable().await.is_err() {
            return Incoming::Gone;
        }
        buf.reserve(512);
        match stream.try_read_buf(buf) {
            Ok(0) => return Incoming::Gone,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return Incoming::Gone,
        }
    }
}

/// A CONNECT the broker refuses, and why.
#[derive(Debug)]
pub(super) struct Refusal {
    reason: ReasonCode,
    /// Logged, and sent as the MQTT 5 reason string unless `reason_string`
    /// says otherwise.
    why: String,
    reason_string: Option<String>,
    server_reference: Option<String>,
}

impl Refusal {
    fn new(reason: ReasonCode, why: impl Into<String>) -> Self {
        let why = why.into();
        Refusal {
            reason,
            reason_string: Some(why.clone()),
            why,
            server_reference: None,
        }
    }
}

impl From<crate::plugins::Refusal> for Refusal {
    fn from(r: crate::plugins::Refusal) -> Self {
        Refusal {
            reason: r.code,
            why: r.cause,
            reason_string: r.reason_string,
            server_reference: r.server_reference,
        }
    }
}

/// Answers a refused CONNECT (CONNACK in the client's version's format, if
/// it can be answered) and closes.
async fn refuse<T: Transport>(
    stream: &mut T,
    version: Option<ProtocolVersion>,
    refusal: Refusal,
    peer: SocketAddr,
    // The client's Maximum Packet Size, once its CONNECT is known.
    client_max: Option<u32>,
) {
    tracing::info!(peer = %peer, reason = %refusal.reason, "connection refused: {}", refusal.why);
    let Some(version) = version else {
        return;
    };
    let mut buf = BytesMut::new();
    super::encode_within(
        &mut buf,
        client_max.unwrap_or(u32::MAX),
        &mut ConnAck {
            session_present: false,
            reason: refusal.reason,
            properties: ConnAckProperties {
                reason_string: refusal.reason_string,
                server_reference: refusal.server_reference,
                ..ConnAckProperties::default()
            },
        },
        |out, ack| codec::encode_connack(out, version, ack),
        |ack| ack.properties.reason_string = None,
    );
    let _ = tokio::time::timeout(super::FLUSH_TIMEOUT, write_all(&*stream, &buf)).await;
    close_gracefully(stream).await;
}

/// Runs the CONNECT exchange. `None` when the connection was refused or
/// lost (already answered and logged).
pub(super) async fn accept<T: Transport>(
    ctx: &Arc<Context>,
    stream: &mut T,
    peer: SocketAddr,
    listener: Arc<Listener>,
    certificate: Option<Box<ClientCertificate>>,
    // What is left of the connect timeout.
    left_ms: u32,
) -> Option<Box<Connection>> {
    let deadline = Instant::now() + Duration::from_millis(u64::from(left_ms));
    let mut decoder = Decoder::new(listener.max_packet_size);
    let mut rbuf = BytesMut::with_capacity(512);
    let first = tokio::time::timeout_at(
        deadline,
        read_packet(ctx, &*stream, &mut rbuf, &mut decoder),
    )
    .await;
    let connect = match first {
        Err(_) => {
            tracing::info!(peer = %peer, "no CONNECT within the connect timeout; closing");
            return None;
        }
        Ok(Incoming::Gone) => return None,
        Ok(Incoming::Packet(Packet::Connect(c))) => c,
        Ok(Incoming::Packet(other)) => {
            let why = format!("first packet must be CONNECT, got {}", other.name());
            tracing::info!(peer = %peer, "connection refused: {why}");
            return None;
        }
        Ok(Incoming::Refused(DecodeError::UnsupportedProtocol { name, level })) => {
            // A client asking for MQTT 5 understands a v5 CONNACK; anything
            // else gets the 3.x "unacceptable protocol version".
            let version = if level == 5 {
                ProtocolVersion::V5
            } else {
                ProtocolVersion::V3_1_1
            };
            let why = format!("unsupported protocol {name:?} level {level}");
            let refusal = Refusal::new(ReasonCode::UNSUPPORTED_PROTOCOL_VERSION, why);
            refuse(stream, Some(version), refusal, peer, None).await;
            return None;
        }
        Ok(Incoming::Refused(e)) => {
            // MQTT 3.x says to just close on a bad CONNECT; MQTT 5 clients
            // are told why.
            let version = decoder.version().filter(|v| v.is_v5());
            refuse(
                stream,
                version,
                Refusal::new(e.reason_code(), e.to_string()),
                peer,
                None,
            )
            .await;
            return None;
        }
    };
    let version = connect.version;
    if !listener.accepts(version.level()) {
        let why = format!(
            "protocol level {} is not accepted on {} ({})",
            version.level(),
            listener.name,
            listener.addr
        );
        let refusal = Refusal::new(ReasonCode::UNSUPPORTED_PROTOCOL_VERSION, why);
        let client_max = connect.properties.maximum_packet_size;
        refuse(stream, Some(version), refusal, peer, client_max).await;
        return None;
    }
    // The TLS client certificate, if any, goes to the plugins with the
    // connection's facts.
    let conn_info = ConnectionInfo::new(peer, listener.addr, listener.plugin_kind())
        .with_certificate(certificate.map(|c| *c));
    let mut handshake = Handshake {
        ctx,
        listener: &listener,
        connect: &connect,
        conn_info: &conn_info,
        decoder: &mut decoder,
        rbuf: &mut rbuf,
    };
    let admitted = match handshake.admit(&*stream).await {
        Ok(a) => a,
        Err(r) => {
            let client_max = connect.properties.maximum_packet_size;
            refuse(stream, Some(version), r, peer, client_max).await;
            return None;
        }
    };
    establish(
        ctx, stream, connect, conn_info, &listener, admitted, decoder, rbuf,
    )
    .await
}

/// The state of the CONNECT exchange before the session is attached.
struct Handshake<'a> {
    ctx: &'a Arc<Context>,
    listener: &'a Listener,
    connect: &'a Connect,
    conn_info: &'a ConnectionInfo,
    decoder: &'a mut Decoder,
    rbuf: &'a mut BytesMut,
}

/// What a CONNECT gets once every rule and plugin has had its say.
struct Admitted {
    id: SubscriberId,
    /// CONNACK properties decided so far (MQTT 5).
    props: ConnAckProperties,
    keep_alive: u16,
    clean_start: bool,
    session_expiry: u32,
    will: Option<Will>,
    /// A throttle `auth-on-publish` set while checking the Will: reading
    /// starts after it.
    throttle: Option<Duration>,
    modifiers: Modifiers,
}

impl Handshake<'_> {
    /// Applies the CONNECT rules, enhanced authentication and the
    /// authentication chain.
    async fn admit<T: Transport>(&mut self, stream: &T) -> Result<Admitted, Refusal> {
        let ctx = self.ctx;
        let connect = self.connect;
        let config = &ctx.config;
        let v5 = connect.version.is_v5();
        let mut props = ConnAckProperties::default();

        let (client_id, assigned) = client_id(ctx, connect)
            .map_err(|why| Refusal::new(ReasonCode::CLIENT_IDENTIFIER_NOT_VALID, why))?;
        if assigned && v5 {
            props.assigned_client_identifier = Some(client_id.as_str().to_owned());
        }
        // The listener's mountpoint; an authentication plugin may still
        // move the client elsewhere.
        let id = SubscriberId {
            mountpoint: self.listener.mountpoint.clone(),
            client_id,
        };

        let mut keep_alive = connect.keep_alive;
        let cap = config.mqtt.max_keepalive;
        if cap > 0 && (keep_alive == 0 || keep_alive > cap) {
            if !v5 {
                // MQTT 3.x has no way to tell the client; refuse as
                // mosquitto does.
                return Err(Refusal::new(
                    ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
                    format!(
                        "keep alive {} exceeds the server's maximum of {cap} s",
                        connect.keep_alive
                    ),
                ));
            }
            keep_alive = cap;
            props.server_keep_alive = Some(cap);
        }

        if ctx.memory.pressure() == Pressure::Over {
            ctx.metrics
                .limits
                .hit(Limit::Memory, &id, &"CONNECT refused");
            return Err(Refusal::new(
                ReasonCode::SERVER_BUSY,
                "the broker is over its memory budget (limits.max_memory_mb)",
            ));
        }

        let will = match &connect.will {
            None => None,
            Some(w) => {
                if let Err(limit) = ctx.limits.topics.check_topic(&w.topic) {
                    ctx.metrics.limits.hit(
                        limit,
                        &id,
                        &format_args!("Will topic of {} bytes", w.topic.len()),
                    );
                    return Err(Refusal::new(
                        ReasonCode::TOPIC_NAME_INVALID,
                        format!("will topic: {limit} exceeded"),
                    ));
                }
                let topic = TopicName::new(&w.topic).map_err(|e| {
                    Refusal::new(ReasonCode::TOPIC_NAME_INVALID, format!("will topic: {e}"))
                })?;
                if topic.is_sys() {
                    ctx.metrics.limits.hit(Limit::SysPublish, &id, &topic);
                    return Err(Refusal::new(
                        ReasonCode::NOT_AUTHORIZED,
                        "will topic: $SYS topics are the broker's own",
                    ));
                }
                Some(Will {
                    message: Message {
                        topic,
                        payload: Bytes::copy_from_slice(&w.payload),
                        qos: w.qos,
                        retain: w.retain,
                        properties: w.properties.clone(),
                        expires_at: None,
                    },
                    delay_interval: w.delay_interval.unwrap_or(0),
                    expiry_interval: w.message_expiry_interval,
                    mountpoint: None,
                })
            }
        };

        if let Some(method) = &connect.properties.authentication_method {
            let data = self.enhanced_auth(stream, &id, method).await?;
            props.authentication_method = Some(method.clone());
            props.authentication_data = data.map(Bytes::from);
        }

        let request = RegisterRequest {
            conn: self.conn_info,
            id: &id,
            version: connect.version,
            username: connect.username.as_deref(),
            password: connect.password.as_deref(),
            clean_start: connect.clean_start,
            properties: &connect.properties,
        };
        let modifiers = match ctx.plugins.authenticate(&request, config).await {
            RegisterOutcome::NoPlugins if config.server.allow_anonymous => Modifiers::default(),
            RegisterOutcome::NoPlugins => {
                return Err(Refusal::new(
                    ReasonCode::NOT_AUTHORIZED,
                    "no authentication plugin is loaded and allow_anonymous is false",
                ));
            }
            RegisterOutcome::Accepted { plugin, modifiers } => {
                tracing::debug!(client = %id, plugin = %plugin, "authenticated");
                modifiers
            }
            RegisterOutcome::Refused(r) => {
                return Err(r.into());
            }
        };

        let max_expiry = config.session.max_session_expiry_secs;
        let clean_start = modifiers.clean_start.unwrap_or(connect.clean_start);
        let session_expiry = if v5 {
            let asked = connect.properties.session_expiry_interval.unwrap_or(0);
            let granted = modifiers
                .session_expiry_interval
                .unwrap_or(asked.min(max_expiry));
            if granted != asked {
                props.session_expiry_interval = Some(granted);
            }
            granted
        } else {
            match modifiers.session_expiry_interval {
                Some(e) => e,
                None if clean_start => 0,
                None => max_expiry,
            }
        };
        let id = modifiers.subscriber_id.clone().unwrap_or(id);
        let (will, throttle) = match will {
            Some(w) if ctx.plugins.checks_publish() => {
                let username = modifiers
                    .username
                    .as_deref()
                    .or(connect.username.as_deref());
                let (w, throttle) = self.check_will(w, &id, username).await?;
                (Some(w), throttle)
            }
            w => (w, None),
        };
        Ok(Admitted {
            id,
            props,
            keep_alive,
            clean_start,
            session_expiry,
            will,
            throttle,
            modifiers,
        })
    }

    /// Passes the Will through `auth-on-publish(-m5)`: a refused Will
    /// refuses the CONNECT (as in VerneMQ); changes apply to the Will.
    async fn check_will(
        &self,
        mut will: Will,
        id: &SubscriberId,
        username: Option<&str>,
    ) -> Result<(Will, Option<Duration>), Refusal> {
        let m = &will.message;
        let request = PublishRequest {
            id,
            username,
            version: self.connect.version,
            topic: &m.topic,
            payload: &m.payload,
            qos: m.qos,
            retain: m.retain,
            properties: &m.properties,
            expiry: will.expiry_interval,
            is_will: true,
            from_plugin: None,
            limits: &self.ctx.limits,
        };
        match self.ctx.plugins.authorize_publish(&request).await {
            PublishOutcome::Accepted { changes, .. } => {
                let Some(c) = changes else {
                    return Ok((will, None));
                };
                let c = *c;
                let m = &mut will.message;
                if let Some(topic) = c.topic {
                    m.topic = topic;
                }
                if let Some(payload) = c.payload {
                    m.payload = payload;
                }
                if let Some(qos) = c.qos {
                    m.qos = qos;
                }
                if let Some(retain) = c.retain {
                    m.retain = retain;
                }
                if let Some((properties, expiry)) = c.properties {
                    m.properties = properties;
                    will.expiry_interval = expiry;
                }
                if c.mountpoint.is_some() {
                    will.mountpoint = c.mountpoint;
                }
                Ok((will, c.throttle))
            }
            PublishOutcome::Refused {
                code,
                reason_string,
                cause,
                overrun: _,
            } => {
                let reason = if crate::plugins::is_connack_refusal(code) {
                    code
                } else {
                    ReasonCode::NOT_AUTHORIZED
                };
                Err(Refusal {
                    reason,
                    why: format!("will refused: {cause}"),
                    reason_string,
                    server_reference: None,
                })
            }
        }
    }

    /// Runs an enhanced-authentication exchange (AUTH packets) to its end;
    /// returns the data for CONNACK.
    async fn enhanced_auth<T: Transport>(
        &mut self,
        stream: &T,
        id: &SubscriberId,
        method: &str,
    ) -> Result<Option<Vec<u8>>, Refusal> {
        let timeout = Duration::from_secs(u64::from(self.ctx.config.server.connect_timeout_secs));
        let mut step = AuthStep::Connect;
        let mut data = self.connect.properties.authentication_data.clone();
        let max_rounds = self.ctx.config.limits.max_auth_rounds;
        let mut rounds = 0;
        loop {
            let request = AuthRequest {
                conn: self.conn_info,
                id,
                username: self.connect.username.as_deref(),
                step,
                method,
                data: data.as_deref(),
            };
            match self.ctx.plugins.enhanced_auth(&request, false).await {
                AuthOutcome::Success(d) => return Ok(d),
                AuthOutcome::Continue(d) => {
                    let mut buf = BytesMut::new();
                    codec::encode_auth(
                        &mut buf,
                        &Auth {
                            reason: ReasonCode::CONTINUE_AUTHENTICATION,
                            method: Some(method.to_owned()),
                            data: d.map(Bytes::from),
                            ..Auth::default()
                        },
                    );
                    write_all(stream, &buf)
                        .await
                        .map_err(|e| Refusal::new(ReasonCode::UNSPECIFIED_ERROR, e.to_string()))?;
                    let next = tokio::time::timeout(
                        timeout,
                        read_packet(self.ctx, stream, self.rbuf, self.decoder),
                    )
                    .await;
                    let auth = match next {
                        Ok(Incoming::Packet(Packet::Auth(a))) => a,
                        Ok(Incoming::Packet(Packet::Disconnect(_))) | Ok(Incoming::Gone) => {
                            return Err(Refusal::new(
                                ReasonCode::UNSPECIFIED_ERROR,
                                "client left during enhanced authentication",
                            ));
                        }
                        Ok(Incoming::Packet(other)) => {
                            return Err(Refusal::new(
                                ReasonCode::PROTOCOL_ERROR,
                                format!("{} during enhanced authentication", other.name()),
                            ));
                        }
                        Ok(Incoming::Refused(e)) => {
                            return Err(Refusal::new(e.reason_code(), e.to_string()));
                        }
                        Err(_) => {
                            return Err(Refusal::new(
                                ReasonCode::NOT_AUTHORIZED,
                                "enhanced authentication timed out",
                            ));
                        }
                    };
                    if auth.reason != ReasonCode::CONTINUE_AUTHENTICATION
                        || auth.method.as_deref() != Some(method)
                    {
                        return Err(Refusal::new(
                            ReasonCode::PROTOCOL_ERROR,
                            "AUTH must continue authentication with the same method",
                        ));
                    }
                    rounds += 1;
                    if rounds > max_rounds {
                        self.ctx.metrics.limits.hit(
                            Limit::AuthRounds,
                            id,
                            &format_args!("{rounds} AUTH packets at CONNECT"),
                        );
                        return Err(Refusal::new(
                            ReasonCode::QUOTA_EXCEEDED,
                            format!("more than {max_rounds} AUTH rounds (limits.max_auth_rounds)"),
                        ));
                    }
                    step = AuthStep::Continue;
                    data = auth.data;
                }
                AuthOutcome::Refused(r) => {
                    return Err(r.into());
                }
                AuthOutcome::Unhandled => {
                    return Err(Refusal::new(
                        ReasonCode::BAD_AUTHENTICATION_METHOD,
                        format!("no plugin handles authentication method {method:?}"),
                    ));
                }
            }
        }
    }
}

/// Attaches the session, answers CONNACK and builds the connection.
#[allow(clippy::too_many_arguments, reason = "the pieces of one handshake")]
async fn establish<T: Transport>(
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
                refuse(
                    stream,
                    Some(version),
                    Refusal::new(ReasonCode::SERVER_UNAVAILABLE, e.to_string()),
                    peer,
                    connect.properties.maximum_packet_size,
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
            refuse(
                stream,
                Some(version),
                Refusal::new(reason, e.to_string()),
                peer,
                connect.properties.maximum_packet_size,
            )
            .await;
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
                refuse(
                    stream,
                    Some(version),
                    Refusal::new(ReasonCode::SERVER_UNAVAILABLE, e.to_string()),
                    peer,
                    connect.properties.maximum_packet_size,
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

/// Applies the client-id rules of the client's version. Returns the id and
/// whether the broker assigned it.
fn client_id(ctx: &Context, connect: &Connect) -> Result<(ClientId, bool), String> {
    let raw = connect.client_id.as_str();
    let max = usize::from(ctx.config.mqtt.max_client_id_len);
    match connect.version {
        ProtocolVersion::V3_1 if raw.is_empty() || raw.chars().count() > V3_1_MAX_CLIENT_ID => {
            return Err(format!(
                "MQTT 3.1 client ids must have 1 to {V3_1_MAX_CLIENT_ID} characters, got {}",
                raw.chars().count()
            ));
        }
        ProtocolVersion::V3_1_1 if raw.is_empty() && !connect.clean_start => {
            return Err("an empty client id requires clean session".to_owned());
        }
        _ => {}
    }
    if raw.is_empty() {
        return Ok((ctx.assign_client_id(), true));
    }
    if raw.len() > max {
        return Err(format!("client id longer than {max} bytes"));
    }
    ClientId::new(raw)
        .map(|id| (id, false))
        .map_err(|e| format!("invalid client id: {e}"))
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
