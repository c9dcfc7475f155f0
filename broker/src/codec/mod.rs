//! The MQTT codec: turns client bytes into [`Packet`]s and server packets into
//! bytes. It does no IO: the connection task owns the socket and hands the
//! codec a buffer.
//!
//! mqttbytes 0.6 is the codec of record for the packets it gets right; this
//! module frames packets itself, validates strictly, and has its own code for
//! what mqttbytes lacks or gets wrong (MQTT 3.1, AUTH, the short v5
//! DISCONNECT, malformed-vs-incomplete, v5 UNSUBSCRIBE, binary passwords).
//!
//! # Layout
//!
//! - `packet.rs`: the packet model shared by decoder and encoders.
//! - `framing.rs`: fixed header, size limit, which packet types and flags a
//!   client may send, and when.
//! - `reader.rs`: bounds-checked reads of MQTT data types from one frame.
//! - `properties.rs`: MQTT 5 property identifiers and the one property
//!   reader every packet uses.
//! - `connect.rs`: CONNECT (all versions); `subscribe.rs`: SUBSCRIBE and
//!   UNSUBSCRIBE; `decode.rs`: dispatch and the other client packets.
//! - `writer.rs`: writing data types to a counter or a buffer, so sizes
//!   always match; `encode.rs`: the server packets.
//!
//! **Invariant:** a decoder error never means "need more bytes": `decode`
//! returns `Ok(None)` only before a whole frame is buffered, and parses a
//! frame only once it is whole.

mod connect;
mod decode;
mod encode;
mod framing;
mod packet;
mod properties;
mod reader;
mod subscribe;
mod writer;

#[cfg(test)]
mod tests;

pub use packet::*;

use bytes::BytesMut;

use crate::reason::ReasonCode;

/// Why bytes from a client are not an acceptable packet. Every variant ends
/// the connection; MQTT 5 clients are told why (CONNACK or DISCONNECT with
/// [`DecodeError::reason_code`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes do not form a packet (MQTT 5: 0x81 Malformed Packet).
    #[error("malformed packet: {0}")]
    Malformed(String),
    /// A well-formed packet that breaks a protocol rule (0x82 Protocol Error).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// Larger than the server's Maximum Packet Size (0x95 Packet Too Large).
    #[error("packet of {size} bytes exceeds the maximum packet size of {max} bytes")]
    TooLarge { size: usize, max: u32 },
    /// CONNECT with a protocol name or level the broker does not speak
    /// (CONNACK 0x01 for 3.x, 0x84 Unsupported Protocol Version for 5).
    #[error("unsupported protocol {name:?} level {level}")]
    UnsupportedProtocol { name: String, level: u8 },
}

impl DecodeError {
    /// The MQTT 5 reason code for this error.
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            DecodeError::Malformed(_) => ReasonCode::MALFORMED_PACKET,
            DecodeError::Protocol(_) => ReasonCode::PROTOCOL_ERROR,
            DecodeError::TooLarge { .. } => ReasonCode::PACKET_TOO_LARGE,
            DecodeError::UnsupportedProtocol { .. } => ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
        }
    }
}

/// Decodes the packets of one connection. Before CONNECT it accepts only
/// CONNECT; the CONNECT fixes the protocol version for the rest.
#[derive(Debug)]
pub struct Decoder {
    version: Option<ProtocolVersion>,
    max_packet_size: u32,
}

impl Decoder {
    /// A decoder that refuses packets larger than `max_packet_size` bytes
    /// (whole packet, fixed header included, as MQTT 5 counts it).
    pub fn new(max_packet_size: u32) -> Self {
        Decoder {
            version: None,
            max_packet_size,
        }
    }

    /// Changes the largest packet accepted from now on (a plugin's
    /// `max-packet-size`).
    pub fn set_max_packet_size(&mut self, max_packet_size: u32) {
        self.max_packet_size = max_packet_size;
    }

    /// The version fixed by CONNECT (set as soon as CONNECT's protocol name
    /// and level have been read, even if the rest of it is then refused).
    pub fn version(&self) -> Option<ProtocolVersion> {
        self.version
    }

    /// Decodes the next packet at the front of `buf` and removes its bytes.
    /// `Ok(None)` means `buf` does not yet hold a whole packet (nothing is
    /// removed). An oversized packet is refused as soon as its fixed header
    /// is complete, before its body arrives.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Packet>, DecodeError> {
        let Some(header) = framing::frame(buf, self.version, self.max_packet_size)? else {
            return Ok(None);
        };
        let frame = buf.split_to(header.frame_len()).freeze();
        decode::packet(&mut self.version, header, &frame).map(Some)
    }
}

/// Appends CONNACK.
pub fn encode_connack(buf: &mut BytesMut, version: ProtocolVersion, ack: &ConnAck) {
    encode::connack(buf, version, ack);
}

/// The size in bytes of the encoded PUBLISH, fixed header included, to check
/// a client's Maximum Packet Size before encoding.
pub fn publish_size(version: ProtocolVersion, publish: &OutgoingPublish<'_>) -> usize {
    encode::publish_size(version, publish)
}

/// Appends PUBLISH.
pub fn encode_publish(buf: &mut BytesMut, version: ProtocolVersion, publish: &OutgoingPublish<'_>) {
    encode::publish(buf, version, publish);
}

/// Which acknowledgement [`encode_ack`] writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckKind {
    PubAck,
    PubRec,
    PubRel,
    PubComp,
}

impl AckKind {
    /// The packet's name.
    pub fn name(self) -> &'static str {
        match self {
            AckKind::PubAck => "PUBACK",
            AckKind::PubRec => "PUBREC",
            AckKind::PubRel => "PUBREL",
            AckKind::PubComp => "PUBCOMP",
        }
    }
}

/// Appends PUBACK, PUBREC, PUBREL or PUBCOMP.
pub fn encode_ack(buf: &mut BytesMut, version: ProtocolVersion, kind: AckKind, ack: &Ack) {
    encode::ack(buf, version, kind, ack);
}

/// Appends SUBACK.
pub fn encode_suback(buf: &mut BytesMut, version: ProtocolVersion, ack: &SubAck) {
    encode::suback(buf, version, ack);
}

/// Appends UNSUBACK.
pub fn encode_unsuback(buf: &mut BytesMut, version: ProtocolVersion, ack: &SubAck) {
    encode::unsuback(buf, version, ack);
}

/// Appends PINGRESP.
pub fn encode_pingresp(buf: &mut BytesMut) {
    buf.extend_from_slice(&[0xD0, 0x00]);
}

/// Appends an MQTT 5 DISCONNECT (3.x has no server DISCONNECT).
pub fn encode_disconnect(buf: &mut BytesMut, disconnect: &Disconnect) {
    encode::disconnect(buf, disconnect);
}

/// Appends an MQTT 5 AUTH.
pub fn encode_auth(buf: &mut BytesMut, auth: &Auth) {
    encode::auth(buf, auth);
}
