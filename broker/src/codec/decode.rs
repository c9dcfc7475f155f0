//! Decoding of one framed client packet: dispatch on the packet type, then
//! PUBLISH, the four publish acknowledgements, PINGREQ, DISCONNECT and AUTH.
//! CONNECT lives in `connect.rs`, SUBSCRIBE and UNSUBSCRIBE in
//! `subscribe.rs`.
//!
//! Where mqttbytes 0.6 decodes a packet correctly (PUBLISH, the acks, long
//! v5 DISCONNECT) the frame is first validated here, strictly, and then
//! handed to mqttbytes, whose result is converted into the packet model.
//! mqttbytes sees exactly one frame, so any error it still returns means the
//! packet is malformed, never that more bytes are needed.

use bytes::Bytes;
use mqttbytes::{v4, v5};

use super::framing::{self, FixedHeader, type_name};
use super::properties::{self, Allowed, read_properties};
use super::reader::{Reader, malformed, protocol};
use super::{
    Ack, Auth, DecodeError, Disconnect, MessageProperties, Packet, ProtocolVersion, Publish, QoS,
    connect, subscribe,
};
use crate::reason::ReasonCode;
use crate::topic::PacketId;

/// Decodes the packet in `frame` (fixed header included), whose header is
/// `header`. `version` is the decoder's protocol version.
pub(crate) fn packet(
    version: &mut Option<ProtocolVersion>,
    header: FixedHeader,
    frame: &Bytes,
) -> Result<Packet, DecodeError> {
    let body = frame.get(header.header_len..).unwrap_or_default();
    let packet_type = header.packet_type();
    if packet_type == framing::CONNECT {
        return connect::decode(version, frame, body);
    }
    let Some(v) = *version else {
        return Err(protocol("first packet must be CONNECT"));
    };
    match packet_type {
        framing::PUBLISH => publish(v, header, frame, body).map(Packet::Publish),
        framing::PUBACK => ack(v, header, frame, body).map(Packet::PubAck),
        framing::PUBREC => ack(v, header, frame, body).map(Packet::PubRec),
        framing::PUBREL => ack(v, header, frame, body).map(Packet::PubRel),
        framing::PUBCOMP => ack(v, header, frame, body).map(Packet::PubComp),
        framing::SUBSCRIBE => subscribe::subscribe(v, header, frame, body).map(Packet::Subscribe),
        framing::UNSUBSCRIBE => {
            subscribe::unsubscribe(v, header, frame, body).map(Packet::Unsubscribe)
        }
        framing::PINGREQ => {
            if header.remaining_len != 0 {
                return Err(malformed("PINGREQ with a non-empty body"));
            }
            Ok(Packet::PingReq)
        }
        framing::DISCONNECT => disconnect(v, header, frame, body).map(Packet::Disconnect),
        framing::AUTH => auth(frame, body).map(Packet::Auth),
        // Refused by `framing::check_first_byte` already.
        other => Err(protocol(format!(
            "{} is not sent by clients",
            type_name(other)
        ))),
    }
}

/// Reads a packet identifier, which must not be 0.
pub(crate) fn packet_id(r: &mut Reader<'_>, packet: &str) -> Result<PacketId, DecodeError> {
    non_zero_packet_id(r.u16("packet identifier")?, packet)
}

/// A packet identifier, which must not be 0.
pub(crate) fn non_zero_packet_id(id: u16, packet: &str) -> Result<PacketId, DecodeError> {
    PacketId::new(id).ok_or_else(|| protocol(format!("{packet} with packet identifier 0")))
}

/// An error mqttbytes returned for a complete, pre-validated frame.
pub(crate) fn from_mqttbytes(packet: &str, e: mqttbytes::Error) -> DecodeError {
    match e {
        mqttbytes::Error::PacketIdZero | mqttbytes::Error::SubscriptionIdZero => {
            protocol(format!("{packet}: {e:?}"))
        }
        _ => malformed(format!("{packet}: {e:?}")),
    }
}

pub(crate) fn qos_from_mqttbytes(qos: mqttbytes::QoS) -> QoS {
    match qos {
        mqttbytes::QoS::AtMostOnce => QoS::AtMostOnce,
        mqttbytes::QoS::AtLeastOnce => QoS::AtLeastOnce,
        mqttbytes::QoS::ExactlyOnce => QoS::ExactlyOnce,
    }
}

/// Fails if bytes are left after the last field of a packet.
pub(crate) fn expect_end(r: &Reader<'_>, packet: &str) -> Result<(), DecodeError> {
    if r.is_empty() {
        Ok(())
    } else {
        Err(malformed(format!(
            "{} unexpected bytes at the end of {packet}",
            r.remaining()
        )))
    }
}

fn publish(
    v: ProtocolVersion,
    header: FixedHeader,
    frame: &Bytes,
    body: &[u8],
) -> Result<Publish, DecodeError> {
    let qos =
        QoS::from_u8((header.byte1 >> 1) & 0b11).ok_or_else(|| malformed("PUBLISH with QoS 3"))?;
    let mut r = Reader::new(body);
    let topic = r.string("topic name")?;
    // The TopicName rules, without allocating on this hot path.
    if topic.contains(['+', '#']) {
        return Err(malformed(format!(
            "PUBLISH topic {topic:?} contains a wildcard"
        )));
    }
    if qos != QoS::AtMostOnce {
        packet_id(&mut r, "PUBLISH")?;
    }
    let props = if v.is_v5() {
        read_properties(&mut r, properties::PUBLISH)?
    } else {
        properties::Properties::default()
    };
    if topic.is_empty() {
        if !v.is_v5() {
            return Err(malformed("PUBLISH with an empty topic name"));
        }
        if props.topic_alias.is_none() {
            return Err(protocol(
                "PUBLISH with an empty topic name and no Topic Alias",
            ));
        }
    }

    let err = |e| from_mqttbytes("PUBLISH", e);
    if !v.is_v5() {
        let p = v4::Publish::read(header.to_mqttbytes(), frame.clone()).map_err(err)?;
        return Ok(Publish {
            dup: p.dup,
            qos: qos_from_mqttbytes(p.qos),
            retain: p.retain,
            topic: p.topic,
            packet_id: publish_packet_id(p.qos, p.pkid)?,
            payload: p.payload,
            message_expiry_interval: None,
            topic_alias: None,
            properties: MessageProperties::default(),
        });
    }
    let p = v5::Publish::read(header.to_mqttbytes(), frame.clone()).map_err(err)?;
    let mut publish = Publish {
        dup: p.dup,
        qos: qos_from_mqttbytes(p.qos),
        retain: p.retain,
        topic: p.topic,
        packet_id: publish_packet_id(p.qos, p.pkid)?,
        payload: p.payload,
        message_expiry_interval: None,
        topic_alias: None,
        properties: MessageProperties::default(),
    };
    if let Some(x) = p.properties {
        // Subscription Identifiers were refused by the property reader.
        publish.message_expiry_interval = x.message_expiry_interval;
        publish.topic_alias = x.topic_alias;
        publish.properties = MessageProperties {
            payload_format_indicator: x.payload_format_indicator,
            content_type: x.content_type,
            response_topic: x.response_topic,
            correlation_data: x.correlation_data,
            user_properties: x.user_properties,
        };
    }
    Ok(publish)
}

/// The packet identifier of a PUBLISH as mqttbytes decoded it: present
/// exactly when QoS > 0.
fn publish_packet_id(qos: mqttbytes::QoS, pkid: u16) -> Result<Option<PacketId>, DecodeError> {
    match qos {
        mqttbytes::QoS::AtMostOnce => Ok(None),
        _ => non_zero_packet_id(pkid, "PUBLISH").map(Some),
    }
}

/// Reason codes a client may put in PUBACK and PUBREC.
const PUBACK_REASONS: &[u8] = &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99];
/// Reason codes a client may put in PUBREL and PUBCOMP.
const PUBREL_REASONS: &[u8] = &[0x00, 0x92];

/// Converts a v5 ack as mqttbytes decodes it: `(pkid, reason, properties)`.
macro_rules! v5_ack {
    ($ty:ty, $header:expr, $frame:expr, $err:expr) => {{
        let a = <$ty>::read($header, $frame).map_err($err)?;
        let props = a.properties.map(|p| (p.reason_string, p.user_properties));
        (a.pkid, a.reason as u8, props)
    }};
}

/// PUBACK, PUBREC, PUBREL or PUBCOMP.
fn ack(
    v: ProtocolVersion,
    header: FixedHeader,
    frame: &Bytes,
    body: &[u8],
) -> Result<Ack, DecodeError> {
    let packet_type = header.packet_type();
    let name = type_name(packet_type);
    if !v.is_v5() && header.remaining_len != 2 {
        return Err(malformed(format!(
            "{name} remaining length must be 2, not {}",
            header.remaining_len
        )));
    }
    let mut r = Reader::new(body);
    packet_id(&mut r, name)?;
    if v.is_v5() && !r.is_empty() {
        let reason = r.u8("reason code")?;
        let valid = match packet_type {
            framing::PUBACK | framing::PUBREC => PUBACK_REASONS,
            _ => PUBREL_REASONS,
        };
        if !valid.contains(&reason) {
            return Err(protocol(format!(
                "reason code 0x{reason:02X} is not valid in {name}"
            )));
        }
        if !r.is_empty() {
            let allowed = Allowed {
                packet: name,
                ids: properties::ACK_IDS,
            };
            read_properties(&mut r, allowed)?;
            expect_end(&r, name)?;
        }
    }

    let h = header.to_mqttbytes();
    let f = frame.clone();
    let err = |e| from_mqttbytes(name, e);
    let (pkid, reason, props) = match (v.is_v5(), packet_type) {
        (false, framing::PUBACK) => (v4::PubAck::read(h, f).map_err(err)?.pkid, 0, None),
        (false, framing::PUBREC) => (v4::PubRec::read(h, f).map_err(err)?.pkid, 0, None),
        (false, framing::PUBREL) => (v4::PubRel::read(h, f).map_err(err)?.pkid, 0, None),
        (false, _) => (v4::PubComp::read(h, f).map_err(err)?.pkid, 0, None),
        (true, framing::PUBACK) => v5_ack!(v5::PubAck, h, f, err),
        (true, framing::PUBREC) => v5_ack!(v5::PubRec, h, f, err),
        (true, framing::PUBREL) => v5_ack!(v5::PubRel, h, f, err),
        (true, _) => v5_ack!(v5::PubComp, h, f, err),
    };
    let (reason_string, user_properties) = props.unwrap_or_default();
    Ok(Ack {
        packet_id: non_zero_packet_id(pkid, name)?,
        reason: ReasonCode(reason),
        reason_string,
        user_properties,
    })
}

/// Whether a client may send `reason` in DISCONNECT (MQTT 5 §3.14.2.1).
fn is_disconnect_reason(reason: u8) -> bool {
    matches!(
        reason,
        0x00 | 0x04 | 0x80..=0x83 | 0x87 | 0x89 | 0x8B | 0x8D..=0x90 | 0x93..=0xA2
    )
}

fn disconnect(
    v: ProtocolVersion,
    header: FixedHeader,
    frame: &Bytes,
    body: &[u8],
) -> Result<Disconnect, DecodeError> {
    if !v.is_v5() {
        if header.remaining_len != 0 {
            return Err(malformed("MQTT 3 DISCONNECT with a non-empty body"));
        }
        return Ok(Disconnect::default());
    }
    let mut r = Reader::new(body);
    if r.is_empty() {
        // `e0 00`, which mqttbytes 0.6 refuses.
        return Ok(Disconnect::default());
    }
    let reason = r.u8("reason code")?;
    if !is_disconnect_reason(reason) {
        return Err(protocol(format!(
            "reason code 0x{reason:02X} is not valid in DISCONNECT"
        )));
    }
    if r.is_empty() {
        // `e0 01 rc`, which mqttbytes 0.6 takes for an incomplete packet.
        return Ok(Disconnect {
            reason: ReasonCode(reason),
            ..Disconnect::default()
        });
    }
    read_properties(&mut r, properties::DISCONNECT)?;
    expect_end(&r, "DISCONNECT")?;

    let d = v5::Disconnect::read(header.to_mqttbytes(), frame.clone())
        .map_err(|e| from_mqttbytes("DISCONNECT", e))?;
    let mut disconnect = Disconnect {
        reason: ReasonCode(d.reason_code as u8),
        ..Disconnect::default()
    };
    if let Some(p) = d.properties {
        disconnect.session_expiry_interval = p.session_expiry_interval;
        disconnect.reason_string = p.reason_string;
        disconnect.user_properties = p.user_properties;
        disconnect.server_reference = p.server_reference;
    }
    Ok(disconnect)
}

/// AUTH (MQTT 5 only; the framing refuses it from 3.x clients). mqttbytes
/// 0.6 has no AUTH packet.
fn auth(frame: &Bytes, body: &[u8]) -> Result<Auth, DecodeError> {
    let mut r = Reader::new(body);
    if r.is_empty() {
        return Ok(Auth::default());
    }
    let reason = r.u8("reason code")?;
    if !matches!(reason, 0x00 | 0x18 | 0x19) {
        return Err(protocol(format!(
            "reason code 0x{reason:02X} is not valid in AUTH"
        )));
    }
    let p = read_properties(&mut r, properties::AUTH)?;
    expect_end(&r, "AUTH")?;
    Ok(Auth {
        reason: ReasonCode(reason),
        method: p.authentication_method.map(str::to_owned),
        data: p.authentication_data.map(|d| frame.slice_ref(d)),
        reason_string: p.reason_string.map(str::to_owned),
        user_properties: p.owned_user_properties(),
    })
}
