//! Fuzz target `decode`: the client-side codec, `codec::Decoder`, fed the
//! input as the byte stream of one client connection.
//!
//! Input layout: `[mode, chunking, stream...]`.
//! - `mode % 4` picks what precedes the stream: nothing (the stream must
//!   start with its own CONNECT), or a minimal CONNECT of MQTT 3.1, 3.1.1 or
//!   5, so that the rest is decoded in that version. `mode & 4` lowers the
//!   decoder's maximum packet size to 128 bytes.
//! - `chunking` seeds the sizes of the pieces the stream arrives in (0: all
//!   at once), as a socket would split it.
//!
//! Checked, besides "never panics":
//! - the stream decodes to the same packets and the same final error (or
//!   the same incomplete tail) whole and in pieces;
//! - after every call the buffer holds exactly the bytes not yet consumed:
//!   `Ok(None)` consumes nothing, a packet consumes exactly its frame;
//! - only the first packet may set the version, and it is a CONNECT;
//! - every packet the broker also encodes (PUBLISH, the four acks, and MQTT
//!   5 DISCONNECT and AUTH) decodes back to itself once re-encoded.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use sluice_broker::codec::{
    self, AckKind, DecodeError, Decoder, OutgoingPublish, Packet, ProtocolVersion,
};

/// The decoder limit, unless the input asks for the small one.
const MAX_PACKET_SIZE: u32 = 1024 * 1024;
const SMALL_MAX_PACKET_SIZE: u32 = 128;

/// Minimal CONNECTs (clean start, keep alive 60, client id "c").
const CONNECT_V3_1: &[u8] = b"\x10\x0f\x00\x06MQIsdp\x03\x02\x00\x3c\x00\x01c";
const CONNECT_V3_1_1: &[u8] = b"\x10\x0d\x00\x04MQTT\x04\x02\x00\x3c\x00\x01c";
const CONNECT_V5: &[u8] = b"\x10\x0e\x00\x04MQTT\x05\x02\x00\x3c\x00\x00\x01c";

fuzz_target!(|data: &[u8]| run(data));

fn run(data: &[u8]) {
    let [mode, chunking, stream @ ..] = data else {
        return;
    };
    let prefix: &[u8] = match mode % 4 {
        0 => &[],
        1 => CONNECT_V3_1,
        2 => CONNECT_V3_1_1,
        _ => CONNECT_V5,
    };
    let max = if mode & 4 != 0 {
        SMALL_MAX_PACKET_SIZE
    } else {
        MAX_PACKET_SIZE
    };
    let input = [prefix, stream].concat();
    let whole = decode_stream(&input, max, &mut std::iter::repeat(input.len()));
    if *chunking != 0 {
        let pieces = decode_stream(&input, max, &mut Chunks::new(*chunking));
        assert_eq!(whole, pieces, "decoding depends on how the bytes arrive");
    }
}

/// What a stream decodes to: its packets, then an error or the bytes of an
/// incomplete packet.
#[derive(Debug, PartialEq)]
struct Decoded {
    packets: Vec<Packet>,
    end: End,
}

#[derive(Debug, PartialEq)]
enum End {
    Error(DecodeError),
    Incomplete(usize),
}

/// Feeds `input` to a new decoder in pieces of the sizes `chunks` yields,
/// decoding after each piece until the decoder asks for more.
fn decode_stream(input: &[u8], max: u32, chunks: &mut dyn Iterator<Item = usize>) -> Decoded {
    let mut decoder = Decoder::new(max);
    let mut buf = BytesMut::new();
    let mut packets = Vec::new();
    // input[consumed..fed] is what the buffer must hold.
    let (mut consumed, mut fed) = (0, 0);
    loop {
        loop {
            let before = decoder.version();
            match decoder.decode(&mut buf) {
                Ok(Some(packet)) => {
                    let frame = frame_len(&input[consumed..fed]);
                    assert_eq!(Some(fed - consumed - buf.len()), frame, "{}", packet.name());
                    consumed = fed - buf.len();
                    check_packet(&packet, before, decoder.version(), packets.is_empty());
                    packets.push(packet);
                }
                Ok(None) => {
                    assert_eq!(decoder.version(), before, "version set without a packet");
                    break;
                }
                Err(e) => {
                    return Decoded {
                        packets,
                        end: End::Error(e),
                    };
                }
            }
            assert_eq!(
                &buf[..],
                &input[consumed..fed],
                "buffer lost or gained bytes"
            );
        }
        assert_eq!(&buf[..], &input[consumed..fed], "Ok(None) consumed bytes");
        if fed == input.len() {
            return Decoded {
                packets,
                end: End::Incomplete(buf.len()),
            };
        }
        let n = chunks.next().unwrap_or(1).clamp(1, input.len() - fed);
        buf.extend_from_slice(&input[fed..fed + n]);
        fed += n;
    }
}

/// Piece sizes from 1 to 32 bytes, from a small LCG seeded by the input.
struct Chunks {
    state: u32,
    max: u32,
}

impl Chunks {
    fn new(seed: u8) -> Self {
        Chunks {
            state: u32::from(seed),
            max: u32::from(seed % 32) + 1,
        }
    }
}

impl Iterator for Chunks {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        self.state = self.state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        Some(((self.state >> 16) % self.max) as usize + 1)
    }
}

/// The length of the frame at the front of `bytes` (fixed header included),
/// read independently of the codec.
fn frame_len(bytes: &[u8]) -> Option<usize> {
    let mut remaining = 0usize;
    for (i, b) in bytes.iter().skip(1).take(4).enumerate() {
        remaining |= usize::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            return Some(2 + i + remaining);
        }
    }
    None
}

/// Checks a decoded packet against the model's rules, and that the packets
/// the broker also encodes survive a round trip.
fn check_packet(
    packet: &Packet,
    before: Option<ProtocolVersion>,
    after: Option<ProtocolVersion>,
    first: bool,
) {
    if first {
        assert!(
            matches!(packet, Packet::Connect(_)),
            "first packet {}",
            packet.name()
        );
    }
    if let Some(v) = before {
        assert_eq!(after, Some(v), "the protocol version changed");
    }
    let Some(v) = after else {
        panic!("{} decoded without a protocol version", packet.name());
    };
    let mut buf = BytesMut::new();
    match packet {
        Packet::Connect(c) => {
            assert_eq!(c.version, v);
            if let Some(will) = &c.will {
                assert!(!will.topic.is_empty() && !will.topic.contains(['+', '#', '\0']));
            }
            return;
        }
        Packet::Publish(p) => {
            assert_eq!(p.packet_id.is_some(), p.qos != codec::QoS::AtMostOnce);
            assert!(!p.topic.contains(['+', '#', '\0']), "{:?}", p.topic);
            assert!(!p.topic.is_empty() || p.topic_alias.is_some());
            if !v.is_v5() {
                assert!(p.topic_alias.is_none() && p.properties.is_empty());
            }
            let out = OutgoingPublish {
                topic: &p.topic,
                qos: p.qos,
                retain: p.retain,
                dup: p.dup,
                packet_id: p.packet_id,
                payload: &p.payload,
                properties: Some(&p.properties),
                message_expiry_interval: p.message_expiry_interval,
                topic_alias: p.topic_alias,
                subscription_identifiers: &[],
            };
            codec::encode_publish(&mut buf, v, &out);
            assert_eq!(codec::publish_size(v, &out), buf.len(), "publish_size");
        }
        Packet::PubAck(a) => codec::encode_ack(&mut buf, v, AckKind::PubAck, a),
        Packet::PubRec(a) => codec::encode_ack(&mut buf, v, AckKind::PubRec, a),
        Packet::PubRel(a) => codec::encode_ack(&mut buf, v, AckKind::PubRel, a),
        Packet::PubComp(a) => codec::encode_ack(&mut buf, v, AckKind::PubComp, a),
        Packet::Subscribe(s) => {
            assert!(!s.filters.is_empty());
            for (filter, _) in &s.filters {
                assert!(!filter.is_empty() && !filter.contains('\0'), "{filter:?}");
            }
            if let Some(id) = s.subscription_identifier {
                assert!(
                    (1..=268_435_455).contains(&id),
                    "subscription identifier {id}"
                );
            }
            return;
        }
        Packet::Unsubscribe(u) => {
            assert!(!u.filters.is_empty());
            return;
        }
        Packet::PingReq => return,
        Packet::Disconnect(d) if v.is_v5() => codec::encode_disconnect(&mut buf, d),
        Packet::Disconnect(d) => {
            assert_eq!(d, &Default::default());
            return;
        }
        Packet::Auth(a) => {
            assert!(v.is_v5(), "AUTH before MQTT 5");
            codec::encode_auth(&mut buf, a);
        }
    }
    let bytes = buf.to_vec();
    let mut decoder = connected(v);
    match decoder.decode(&mut buf) {
        Ok(Some(again)) => {
            assert_eq!(&again, packet, "re-encoded as {bytes:02x?}");
            assert!(buf.is_empty(), "{} bytes left after re-encoding", buf.len());
        }
        other => panic!(
            "{} re-encoded as {bytes:02x?} decodes to {other:?}",
            packet.name()
        ),
    }
}

/// A decoder past a CONNECT of version `v`, without a size limit.
fn connected(v: ProtocolVersion) -> Decoder {
    let connect = match v {
        ProtocolVersion::V3_1 => CONNECT_V3_1,
        ProtocolVersion::V3_1_1 => CONNECT_V3_1_1,
        ProtocolVersion::V5 => CONNECT_V5,
    };
    let mut decoder = Decoder::new(u32::MAX);
    let mut buf = BytesMut::from(connect);
    assert!(matches!(
        decoder.decode(&mut buf),
        Ok(Some(Packet::Connect(_)))
    ));
    decoder
}
