//! Framing: the fixed header (packet type, flags, Remaining Length) and the
//! checks that can be made from it alone, before the body has arrived.
//!
//! The first byte is checked as soon as it is in the buffer (packet types a
//! client may not send, reserved flags, CONNECT first), and the size limit as
//! soon as the Remaining Length is complete, so that a peer cannot make the
//! broker buffer a packet it will refuse anyway.

use super::reader::{malformed, protocol};
use super::{DecodeError, ProtocolVersion};

pub(crate) const CONNECT: u8 = 1;
pub(crate) const CONNACK: u8 = 2;
pub(crate) const PUBLISH: u8 = 3;
pub(crate) const PUBACK: u8 = 4;
pub(crate) const PUBREC: u8 = 5;
pub(crate) const PUBREL: u8 = 6;
pub(crate) const PUBCOMP: u8 = 7;
pub(crate) const SUBSCRIBE: u8 = 8;
pub(crate) const SUBACK: u8 = 9;
pub(crate) const UNSUBSCRIBE: u8 = 10;
pub(crate) const UNSUBACK: u8 = 11;
pub(crate) const PINGREQ: u8 = 12;
pub(crate) const PINGRESP: u8 = 13;
pub(crate) const DISCONNECT: u8 = 14;
pub(crate) const AUTH: u8 = 15;

/// The name of a packet type, for error messages.
pub(crate) fn type_name(packet_type: u8) -> &'static str {
    match packet_type {
        CONNECT => "CONNECT",
        CONNACK => "CONNACK",
        PUBLISH => "PUBLISH",
        PUBACK => "PUBACK",
        PUBREC => "PUBREC",
        PUBREL => "PUBREL",
        PUBCOMP => "PUBCOMP",
        SUBSCRIBE => "SUBSCRIBE",
        SUBACK => "SUBACK",
        UNSUBSCRIBE => "UNSUBSCRIBE",
        UNSUBACK => "UNSUBACK",
        PINGREQ => "PINGREQ",
        PINGRESP => "PINGRESP",
        DISCONNECT => "DISCONNECT",
        AUTH => "AUTH",
        _ => "reserved packet type",
    }
}

/// A complete fixed header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FixedHeader {
    /// Packet type (high nibble) and flags (low nibble).
    pub(crate) byte1: u8,
    /// The first byte plus the 1 to 4 bytes of the Remaining Length.
    pub(crate) header_len: usize,
    /// Bytes after the fixed header.
    pub(crate) remaining_len: usize,
}

impl FixedHeader {
    pub(crate) fn packet_type(self) -> u8 {
        self.byte1 >> 4
    }

    /// The whole packet, fixed header included.
    pub(crate) fn frame_len(self) -> usize {
        self.header_len + self.remaining_len
    }

    /// The same header as mqttbytes describes it, to hand it the frame.
    pub(crate) fn to_mqttbytes(self) -> mqttbytes::FixedHeader {
        mqttbytes::FixedHeader::new(self.byte1, self.header_len - 1, self.remaining_len)
    }
}

/// Reads the fixed header at the front of `buf`. `Ok(None)` when the
/// Remaining Length is not complete yet; Malformed when its fourth byte still
/// has the continuation bit set.
pub(crate) fn parse_fixed_header(buf: &[u8]) -> Result<Option<FixedHeader>, DecodeError> {
    let Some((&byte1, rest)) = buf.split_first() else {
        return Ok(None);
    };
    let mut remaining_len = 0usize;
    for i in 0..4 {
        let Some(&b) = rest.get(i) else {
            return Ok(None);
        };
        remaining_len |= usize::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            // MQTT 5 §1.5.5 (and 3.1.1 §2.2.3): the shortest encoding only.
            if i > 0 && b == 0 {
                return Err(malformed("remaining length not in its shortest form"));
            }
            return Ok(Some(FixedHeader {
                byte1,
                header_len: 2 + i,
                remaining_len,
            }));
        }
    }
    Err(malformed("remaining length longer than 4 bytes"))
}

/// Checks the first byte of a packet from a client: its type given the
/// connection state, and its fixed-header flags.
pub(crate) fn check_first_byte(
    byte1: u8,
    version: Option<ProtocolVersion>,
) -> Result<(), DecodeError> {
    let packet_type = byte1 >> 4;
    let flags = byte1 & 0x0F;
    let name = type_name(packet_type);
    match packet_type {
        0 => return Err(malformed("reserved packet type 0")),
        CONNECT => {}
        _ if version.is_none() => return Err(protocol("first packet must be CONNECT")),
        CONNACK | SUBACK | UNSUBACK | PINGRESP => {
            return Err(protocol(format!("{name} is only sent by servers")));
        }
        AUTH if version != Some(ProtocolVersion::V5) => {
            return Err(malformed(
                "AUTH (packet type 15) does not exist before MQTT 5",
            ));
        }
        _ => {}
    }
    match packet_type {
        PUBLISH => {
            let qos = (flags >> 1) & 0b11;
            if qos == 3 {
                return Err(malformed("PUBLISH with QoS 3"));
            }
            if flags & 0b1000 != 0 && qos == 0 {
                return Err(malformed("PUBLISH with DUP set at QoS 0"));
            }
        }
        PUBREL | SUBSCRIBE | UNSUBSCRIBE => {
            if flags != 0b0010 {
                return Err(malformed(format!(
                    "{name} fixed-header flags must be 0010, not {flags:04b}"
                )));
            }
        }
        _ => {
            if flags != 0 {
                return Err(malformed(format!(
                    "{name} fixed-header flags must be 0000, not {flags:04b}"
                )));
            }
        }
    }
    Ok(())
}

/// The fixed header of the next packet if all of it is in `buf`; `Ok(None)`
/// if more bytes are needed. Errors as soon as the bytes seen so far are
/// enough to refuse the packet.
pub(crate) fn frame(
    buf: &[u8],
    version: Option<ProtocolVersion>,
    max_packet_size: u32,
) -> Result<Option<FixedHeader>, DecodeError> {
    let Some(&byte1) = buf.first() else {
        return Ok(None);
    };
    check_first_byte(byte1, version)?;
    let Some(header) = parse_fixed_header(buf)? else {
        return Ok(None);
    };
    let size = header.frame_len();
    if size > usize::try_from(max_packet_size).unwrap_or(usize::MAX) {
        return Err(DecodeError::TooLarge {
            size,
            max: max_packet_size,
        });
    }
    if buf.len() < size {
        return Ok(None);
    }
    Ok(Some(header))
}
