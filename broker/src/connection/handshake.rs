//! The start of a connection: read CONNECT within the connect timeout, apply
//! the CONNECT rules (protocol, client id, keep alive), run enhanced
//! authentication (`enhanced_auth`) and the authentication chain, check
//! the Will, then hand over to `establish` (session, CONNACK).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::time::Instant;

use super::{ClientCertificate, Connection, Listener, Transport, close_gracefully, write_all};
use crate::codec::{
    self, ConnAck, ConnAckProperties, Connect, DecodeError, Decoder, Packet, ProtocolVersion,
};
use crate::context::Context;
use crate::limits::Limit;
use crate::memory::Pressure;
use crate::message::{Message, Will};
use crate::plugins::{
    ConnectionInfo, Modifiers, PublishOutcome, PublishRequest, RegisterOutcome, RegisterRequest,
};
use crate::reason::ReasonCode;
use crate::session::SubscriberId;
use crate::topic::{ClientId, TopicName};

/// MQTT 3.1 limits client ids to 23 characters.
const V3_1_MAX_CLIENT_ID: usize = 23;

/// The next packet during the handshake.
pub(super) enum Incoming {
    Packet(Packet),
    Refused(DecodeError),
    Gone,
}

pub(super) async fn read_packet<T: Transport>(
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
    pub(super) fn new(reason: ReasonCode, why: impl Into<String>) -> Self {
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
pub(super) async fn refuse<T: Transport>(
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
    super::establish::establish(
        ctx, stream, connect, conn_info, &listener, admitted, decoder, rbuf,
    )
    .await
}

/// The state of the CONNECT exchange before the session is attached.
pub(super) struct Handshake<'a> {
    pub(super) ctx: &'a Arc<Context>,
    pub(super) listener: &'a Listener,
    pub(super) connect: &'a Connect,
    pub(super) conn_info: &'a ConnectionInfo,
    pub(super) decoder: &'a mut Decoder,
    pub(super) rbuf: &'a mut BytesMut,
}

/// What a CONNECT gets once every rule and plugin has had its say.
pub(super) struct Admitted {
    pub(super) id: SubscriberId,
    /// CONNACK properties decided so far (MQTT 5).
    pub(super) props: ConnAckProperties,
    pub(super) keep_alive: u16,
    pub(super) clean_start: bool,
    pub(super) session_expiry: u32,
    pub(super) will: Option<Will>,
    /// A throttle `auth-on-publish` set while checking the Will: reading
    /// starts after it.
    pub(super) throttle: Option<Duration>,
    pub(super) modifiers: Modifiers,
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
