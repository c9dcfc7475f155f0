//! The start of a connection: read CONNECT within the connect timeout, apply
//! the CONNECT rules (protocol, client id, keep alive, authentication),
//! attach the session and answer CONNACK.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use super::{Connection, Negotiated, Stats};
use crate::codec::{
    self, AckKind, ConnAck, ConnAckProperties, Connect, DecodeError, Decoder, OutgoingPublish,
    Packet, ProtocolVersion,
};
use crate::context::Context;
use crate::message::{Message, Will};
use crate::reason::ReasonCode;
use crate::session::{ConnectionControl, OutState, SubscriberId};
use crate::topic::{ClientId, TopicName};

/// MQTT 3.1 limits client ids to 23 characters.
const V3_1_MAX_CLIENT_ID: usize = 23;

/// Why the first packet could not be read.
enum FirstPacket {
    Connect(Box<Connect>),
    Refused(DecodeError),
    Gone,
}

async fn read_first<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
    decoder: &mut Decoder,
) -> FirstPacket {
    loop {
        match decoder.decode(buf) {
            Ok(Some(Packet::Connect(c))) => return FirstPacket::Connect(c),
            Ok(Some(other)) => {
                return FirstPacket::Refused(DecodeError::Protocol(format!(
                    "first packet must be CONNECT, got {}",
                    other.name()
                )));
            }
            Ok(None) => {}
            Err(e) => return FirstPacket::Refused(e),
        }
        buf.reserve(512);
        match reader.read_buf(buf).await {
            Ok(0) | Err(_) => return FirstPacket::Gone,
            Ok(_) => {}
        }
    }
}

/// A refusal: the CONNACK code to send (in the client's version's format),
/// or nothing when the client cannot be answered.
async fn refuse<W: AsyncWrite + Unpin>(
    writer: &mut W,
    version: Option<ProtocolVersion>,
    reason: ReasonCode,
    peer: SocketAddr,
    why: &str,
) {
    tracing::info!(peer = %peer, reason = %reason, "connection refused: {why}");
    let Some(version) = version else {
        return;
    };
    let mut buf = BytesMut::new();
    codec::encode_connack(
        &mut buf,
        version,
        &ConnAck {
            session_present: false,
            reason,
            properties: ConnAckProperties {
                reason_string: Some(why.to_owned()),
                ..ConnAckProperties::default()
            },
        },
    );
    let _ = tokio::time::timeout(super::FLUSH_TIMEOUT, async {
        writer.write_all(&buf).await?;
        writer.shutdown().await
    })
    .await;
}

/// Runs the CONNECT exchange. `None` when the connection was refused or
/// lost (already answered and logged).
pub(super) async fn accept<R, W>(
    ctx: &Arc<Context>,
    reader: &mut R,
    writer: &mut W,
    peer: SocketAddr,
    control: ConnectionControl,
) -> Option<Connection>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let config = &ctx.config;
    let mut decoder = Decoder::new(config.mqtt.max_packet_size);
    let mut rbuf = BytesMut::with_capacity(512);
    let connect_timeout = Duration::from_secs(u64::from(config.server.connect_timeout_secs));
    let first =
        tokio::time::timeout(connect_timeout, read_first(reader, &mut rbuf, &mut decoder)).await;
    let connect = match first {
        Err(_) => {
            tracing::info!(peer = %peer, "no CONNECT within {connect_timeout:?}; closing");
            return None;
        }
        Ok(FirstPacket::Gone) => return None,
        Ok(FirstPacket::Refused(DecodeError::UnsupportedProtocol { name, level })) => {
            // A client asking for MQTT 5 understands a v5 CONNACK; anything
            // else gets the 3.x "unacceptable protocol version".
            let version = if level == 5 {
                ProtocolVersion::V5
            } else {
                ProtocolVersion::V3_1_1
            };
            let why = format!("unsupported protocol {name:?} level {level}");
            refuse(
                writer,
                Some(version),
                ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
                peer,
                &why,
            )
            .await;
            return None;
        }
        Ok(FirstPacket::Refused(e)) => {
            // MQTT 3.x says to just close on a bad CONNECT; MQTT 5 clients
            // are told why.
            let version = decoder.version().filter(|v| v.is_v5());
            refuse(writer, version, e.reason_code(), peer, &e.to_string()).await;
            return None;
        }
        Ok(FirstPacket::Connect(c)) => c,
    };
    let version = connect.version;
    let admitted = match admit(ctx, &connect) {
        Ok(a) => a,
        Err(r) => {
            refuse(writer, Some(version), r.reason, peer, &r.why).await;
            return None;
        }
    };
    let Admitted {
        client_id,
        mut props,
        keep_alive,
        session_expiry,
        will,
    } = admitted;

    let id = SubscriberId {
        mountpoint: Arc::from(""),
        client_id,
    };
    let attached = match ctx.registry.attach(id, connect.clean_start, control).await {
        Ok(a) => a,
        Err(e) => {
            refuse(
                writer,
                Some(version),
                ReasonCode::SERVER_BUSY,
                peer,
                &e.to_string(),
            )
            .await;
            return None;
        }
    };

    if version.is_v5() {
        props.receive_maximum = Some(config.mqtt.receive_maximum);
        props.maximum_packet_size = Some(config.mqtt.max_packet_size);
        if config.mqtt.topic_alias_maximum > 0 {
            props.topic_alias_maximum = Some(config.mqtt.topic_alias_maximum);
        }
    }
    let cp = &connect.properties;
    let neg = Negotiated {
        version,
        keep_alive: Duration::from_secs(u64::from(keep_alive)),
        send_window: usize::from(cp.receive_maximum.unwrap_or(u16::MAX))
            .min(usize::from(config.mqtt.max_inflight)),
        client_max_packet: cp.maximum_packet_size.unwrap_or(u32::MAX),
        client_alias_max: cp.topic_alias_maximum.unwrap_or(0),
        session_expiry,
        will,
    };
    let mountpoint = attached.session.id().mountpoint.clone();
    let mut conn = Connection {
        ctx: ctx.clone(),
        peer,
        session: attached.session,
        mountpoint,
        decoder,
        neg,
        inflight: attached.inflight,
        rbuf,
        out: BytesMut::with_capacity(256),
        batch: Vec::new(),
        inbound_aliases: HashMap::new(),
        outbound_aliases: HashMap::new(),
        last_packet: Instant::now(),
        stats: Stats::default(),
    };
    codec::encode_connack(
        &mut conn.out,
        version,
        &ConnAck {
            session_present: attached.session_present,
            reason: ReasonCode::SUCCESS,
            properties: props,
        },
    );
    if attached.session_present {
        conn.resend_inflight();
    }
    // Packets that arrived right behind CONNECT wait in the read buffer for
    // the main loop; process them now so nothing waits for more input.
    if let Err(close) = conn.process_input() {
        conn.finish(writer, close).await;
        return None;
    }
    Some(conn)
}

/// A CONNECT the broker refuses, and why.
struct Refusal {
    reason: ReasonCode,
    why: String,
}

impl Refusal {
    fn new(reason: ReasonCode, why: impl Into<String>) -> Self {
        Refusal {
            reason,
            why: why.into(),
        }
    }
}

/// What a CONNECT gets once the CONNECT rules have been applied.
struct Admitted {
    client_id: ClientId,
    /// CONNACK properties decided so far (MQTT 5).
    props: ConnAckProperties,
    keep_alive: u16,
    session_expiry: u32,
    will: Option<Will>,
}

/// Applies the CONNECT rules: client id, keep alive, authentication,
/// session expiry, Will. No IO.
fn admit(ctx: &Context, connect: &Connect) -> Result<Admitted, Refusal> {
    let config = &ctx.config;
    let v5 = connect.version.is_v5();
    let mut props = ConnAckProperties::default();

    let (client_id, assigned) = client_id(ctx, connect)
        .map_err(|why| Refusal::new(ReasonCode::CLIENT_IDENTIFIER_NOT_VALID, why))?;
    if assigned && v5 {
        props.assigned_client_identifier = Some(client_id.as_str().to_owned());
    }

    let mut keep_alive = connect.keep_alive;
    let cap = config.mqtt.max_keepalive;
    if cap > 0 && (keep_alive == 0 || keep_alive > cap) {
        if !v5 {
            // MQTT 3.x has no way to tell the client; refuse as mosquitto
            // does.
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

    // Authentication. Until plugins exist, `allow_anonymous` decides.
    if connect.properties.authentication_method.is_some() {
        return Err(Refusal::new(
            ReasonCode::BAD_AUTHENTICATION_METHOD,
            "enhanced authentication requested but no plugin provides it",
        ));
    }
    if !config.server.allow_anonymous {
        return Err(Refusal::new(
            ReasonCode::NOT_AUTHORIZED,
            "no authentication plugin is loaded and allow_anonymous is false",
        ));
    }

    let max_expiry = config.session.max_session_expiry_secs;
    let session_expiry = if v5 {
        let asked = connect.properties.session_expiry_interval.unwrap_or(0);
        if asked > max_expiry {
            props.session_expiry_interval = Some(max_expiry);
        }
        asked.min(max_expiry)
    } else if connect.clean_start {
        0
    } else {
        max_expiry
    };

    let will = match &connect.will {
        None => None,
        Some(w) => {
            let topic = TopicName::new(&w.topic).map_err(|e| {
                Refusal::new(ReasonCode::TOPIC_NAME_INVALID, format!("will topic: {e}"))
            })?;
            Some(Will {
                message: Message {
                    topic,
                    payload: bytes::Bytes::copy_from_slice(&w.payload),
                    qos: w.qos,
                    retain: w.retain,
                    properties: w.properties.clone(),
                    expires_at: None,
                },
                delay_interval: w.delay_interval.unwrap_or(0),
                expiry_interval: w.message_expiry_interval,
            })
        }
    };
    Ok(Admitted {
        client_id,
        props,
        keep_alive,
        session_expiry,
        will,
    })
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
