//! Encoding of server packets: CONNACK, PUBLISH, the publish
//! acknowledgements, SUBACK, UNSUBACK, DISCONNECT and AUTH.
//!
//! The fixed-size 3.x forms (CONNACK, acks, UNSUBACK) and the empty v5
//! DISCONNECT go through mqttbytes, whose types express them exactly.
//! Everything carrying a raw reason code or MQTT 5 properties is written
//! here, as is PUBLISH: it is written straight from the borrowed
//! [`OutgoingPublish`], with no allocation besides growing the output buffer
//! once.

use bytes::BytesMut;
use mqttbytes::{v4, v5};

use super::properties::*;
use super::writer::*;
use super::{
    Ack, AckKind, Auth, ConnAck, ConnAckProperties, Disconnect, OutgoingPublish, ProtocolVersion,
    QoS, SubAck, UserProperty,
};
use crate::reason::{ReasonCode, V3ConnackCode};
use crate::topic::PacketId;

/// Checks the result of an mqttbytes encoder on a fixed-size packet, which
/// cannot fail (its only error is a Remaining Length above 268,435,455).
fn written(result: Result<usize, mqttbytes::Error>) {
    debug_assert!(result.is_ok(), "mqttbytes encoder failed: {result:?}");
}

/// Writes an MQTT 5 packet: fixed header, the variable header bytes `head`,
/// the property block, then one byte per reason code in `codes`.
fn v5_packet<P: WriteProperties>(
    buf: &mut BytesMut,
    byte1: u8,
    head: &[u8],
    props: &P,
    codes: &[ReasonCode],
) {
    let props_len = props.properties_len();
    let remaining = head.len() + varint_len(props_len) + props_len + codes.len();
    buf.reserve(1 + varint_len(remaining) + remaining);
    put_u8(buf, byte1);
    put_varint(buf, remaining);
    buf.put_all(head);
    put_varint(buf, props_len);
    props.write_properties(buf);
    for code in codes {
        put_u8(buf, code.0);
    }
}

impl WriteProperties for ConnAckProperties {
    fn write_properties<S: Sink>(&self, s: &mut S) {
        prop_u32(s, SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
        prop_u16(s, RECEIVE_MAXIMUM, self.receive_maximum);
        prop_u8(s, MAXIMUM_QOS, self.maximum_qos);
        prop_bool(s, RETAIN_AVAILABLE, self.retain_available);
        prop_u32(s, MAXIMUM_PACKET_SIZE, self.maximum_packet_size);
        let assigned = self.assigned_client_identifier.as_deref();
        prop_string(s, ASSIGNED_CLIENT_IDENTIFIER, assigned);
        prop_u16(s, TOPIC_ALIAS_MAXIMUM, self.topic_alias_maximum);
        prop_string(s, REASON_STRING, self.reason_string.as_deref());
        prop_user_properties(s, &self.user_properties);
        let wildcard = self.wildcard_subscription_available;
        prop_bool(s, WILDCARD_SUBSCRIPTION_AVAILABLE, wildcard);
        let ids = self.subscription_identifiers_available;
        prop_bool(s, SUBSCRIPTION_IDENTIFIERS_AVAILABLE, ids);
        let shared = self.shared_subscription_available;
        prop_bool(s, SHARED_SUBSCRIPTION_AVAILABLE, shared);
        prop_u16(s, SERVER_KEEP_ALIVE, self.server_keep_alive);
        let info = self.response_information.as_deref();
        prop_string(s, RESPONSE_INFORMATION, info);
        prop_string(s, SERVER_REFERENCE, self.server_reference.as_deref());
        let method = self.authentication_method.as_deref();
        prop_string(s, AUTHENTICATION_METHOD, method);
        prop_binary(s, AUTHENTICATION_DATA, self.authentication_data.as_deref());
    }
}

pub(crate) fn connack(buf: &mut BytesMut, version: ProtocolVersion, ack: &ConnAck) {
    if version.is_v5() {
        // Session Present must be 0 with a failure code [MQTT-3.2.2-6].
        let flags = u8::from(ack.session_present && !ack.reason.is_error());
        v5_packet(buf, 0x20, &[flags, ack.reason.0], &ack.properties, &[]);
        return;
    }
    let code = match ack.reason.to_v3_connack() {
        V3ConnackCode::Accepted => v4::ConnectReturnCode::Success,
        V3ConnackCode::UnacceptableProtocolVersion => v4::ConnectReturnCode::RefusedProtocolVersion,
        V3ConnackCode::IdentifierRejected => v4::ConnectReturnCode::BadClientId,
        V3ConnackCode::ServerUnavailable => v4::ConnectReturnCode::ServiceUnavailable,
        V3ConnackCode::BadUsernameOrPassword => v4::ConnectReturnCode::BadUserNamePassword,
        V3ConnackCode::NotAuthorized => v4::ConnectReturnCode::NotAuthorized,
    };
    // MQTT 3.1 has no Session Present flag; 3.1.1 sends 0 with a refusal
    // [MQTT-3.2.2-4].
    let session_present = version == ProtocolVersion::V3_1_1
        && ack.session_present
        && code == v4::ConnectReturnCode::Success;
    written(v4::ConnAck::new(code, session_present).write(buf));
}

impl WriteProperties for OutgoingPublish<'_> {
    fn write_properties<S: Sink>(&self, s: &mut S) {
        let m = self.properties;
        let pfi = m.and_then(|m| m.payload_format_indicator);
        prop_u8(s, PAYLOAD_FORMAT_INDICATOR, pfi);
        prop_u32(s, MESSAGE_EXPIRY_INTERVAL, self.message_expiry_interval);
        let content_type = m.and_then(|m| m.content_type.as_deref());
        prop_string(s, CONTENT_TYPE, content_type);
        let response_topic = m.and_then(|m| m.response_topic.as_deref());
        prop_string(s, RESPONSE_TOPIC, response_topic);
        let correlation = m.and_then(|m| m.correlation_data.as_deref());
        prop_binary(s, CORRELATION_DATA, correlation);
        if let Some(m) = m {
            prop_user_properties(s, &m.user_properties);
        }
        prop_u16(s, TOPIC_ALIAS, self.topic_alias);
        for &id in self.subscription_identifiers {
            prop_varint(s, SUBSCRIPTION_IDENTIFIER, id);
        }
    }
}

/// The Remaining Length of a PUBLISH and the length of its properties.
fn publish_lengths(version: ProtocolVersion, p: &OutgoingPublish<'_>) -> (usize, usize) {
    let mut remaining = 2 + clamp_str(p.topic).len() + p.payload.len();
    if p.qos != QoS::AtMostOnce {
        remaining += 2;
    }
    let mut props_len = 0;
    if version.is_v5() {
        props_len = p.properties_len();
        remaining += varint_len(props_len) + props_len;
    }
    (remaining, props_len)
}

pub(crate) fn publish_size(version: ProtocolVersion, p: &OutgoingPublish<'_>) -> usize {
    let (remaining, _) = publish_lengths(version, p);
    1 + varint_len(remaining) + remaining
}

pub(crate) fn publish(buf: &mut BytesMut, version: ProtocolVersion, p: &OutgoingPublish<'_>) {
    let (remaining, props_len) = publish_lengths(version, p);
    buf.reserve(1 + varint_len(remaining) + remaining);
    let qos = p.qos as u8;
    // DUP must be 0 at QoS 0 [MQTT-3.3.1-2].
    let dup = p.dup && qos > 0;
    put_u8(
        buf,
        0x30 | u8::from(dup) << 3 | qos << 1 | u8::from(p.retain),
    );
    put_varint(buf, remaining);
    put_string(buf, p.topic);
    if qos > 0 {
        debug_assert!(p.packet_id.is_some(), "QoS > 0 PUBLISH without packet id");
        put_u16(buf, p.packet_id.map_or(0, PacketId::get));
    }
    if version.is_v5() {
        put_varint(buf, props_len);
        p.write_properties(buf);
    }
    buf.put_all(p.payload);
}

/// Reason String and User Properties: the properties of acknowledgements.
struct ReasonProperties<'a> {
    reason_string: Option<&'a str>,
    user_properties: &'a [UserProperty],
}

impl WriteProperties for ReasonProperties<'_> {
    fn write_properties<S: Sink>(&self, s: &mut S) {
        prop_string(s, REASON_STRING, self.reason_string);
        prop_user_properties(s, self.user_properties);
    }
}

pub(crate) fn ack(buf: &mut BytesMut, version: ProtocolVersion, kind: AckKind, ack: &Ack) {
    let pkid = ack.packet_id.get();
    let props = ReasonProperties {
        reason_string: ack.reason_string.as_deref(),
        user_properties: &ack.user_properties,
    };
    if !version.is_v5() || (ack.reason == ReasonCode::SUCCESS && props.has_no_properties()) {
        // The 4-byte form, the same in every version.
        written(match kind {
            AckKind::PubAck => v4::PubAck::new(pkid).write(buf),
            AckKind::PubRec => v4::PubRec::new(pkid).write(buf),
            AckKind::PubRel => v4::PubRel::new(pkid).write(buf),
            AckKind::PubComp => v4::PubComp::new(pkid).write(buf),
        });
        return;
    }
    let byte1 = match kind {
        AckKind::PubAck => 0x40,
        AckKind::PubRec => 0x50,
        AckKind::PubRel => 0x62,
        AckKind::PubComp => 0x70,
    };
    let [hi, lo] = pkid.to_be_bytes();
    if props.has_no_properties() {
        buf.put_all(&[byte1, 0x03, hi, lo, ack.reason.0]);
    } else {
        v5_packet(buf, byte1, &[hi, lo, ack.reason.0], &props, &[]);
    }
}

pub(crate) fn suback(buf: &mut BytesMut, version: ProtocolVersion, ack: &SubAck) {
    let pkid = ack.packet_id.get().to_be_bytes();
    if version.is_v5() {
        let props = ReasonProperties {
            reason_string: ack.reason_string.as_deref(),
            user_properties: &ack.user_properties,
        };
        v5_packet(buf, 0x90, &pkid, &props, &ack.reasons);
        return;
    }
    let remaining = 2 + ack.reasons.len();
    buf.reserve(1 + varint_len(remaining) + remaining);
    put_u8(buf, 0x90);
    put_varint(buf, remaining);
    buf.put_all(&pkid);
    for code in &ack.reasons {
        // 3.x knows only the granted QoS and 0x80 Failure.
        put_u8(buf, if code.0 <= 2 { code.0 } else { 0x80 });
    }
}

pub(crate) fn unsuback(buf: &mut BytesMut, version: ProtocolVersion, ack: &SubAck) {
    if !version.is_v5() {
        written(v4::UnsubAck::new(ack.packet_id.get()).write(buf));
        return;
    }
    let props = ReasonProperties {
        reason_string: ack.reason_string.as_deref(),
        user_properties: &ack.user_properties,
    };
    let pkid = ack.packet_id.get().to_be_bytes();
    v5_packet(buf, 0xB0, &pkid, &props, &ack.reasons);
}

impl WriteProperties for Disconnect {
    fn write_properties<S: Sink>(&self, s: &mut S) {
        prop_u32(s, SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
        prop_string(s, REASON_STRING, self.reason_string.as_deref());
        prop_user_properties(s, &self.user_properties);
        prop_string(s, SERVER_REFERENCE, self.server_reference.as_deref());
    }
}

pub(crate) fn disconnect(buf: &mut BytesMut, d: &Disconnect) {
    if d.reason == ReasonCode::SUCCESS && d.has_no_properties() {
        written(v5::Disconnect::new().write(buf));
        return;
    }
    v5_packet(buf, 0xE0, &[d.reason.0], d, &[]);
}

impl WriteProperties for Auth {
    fn write_properties<S: Sink>(&self, s: &mut S) {
        prop_string(s, AUTHENTICATION_METHOD, self.method.as_deref());
        prop_binary(s, AUTHENTICATION_DATA, self.data.as_deref());
        prop_string(s, REASON_STRING, self.reason_string.as_deref());
        prop_user_properties(s, &self.user_properties);
    }
}

pub(crate) fn auth(buf: &mut BytesMut, a: &Auth) {
    if a.reason == ReasonCode::SUCCESS && a.has_no_properties() {
        buf.put_all(&[0xF0, 0x00]);
        return;
    }
    v5_packet(buf, 0xF0, &[a.reason.0], a, &[]);
}
