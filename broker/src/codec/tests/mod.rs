//! Unit tests of the codec, one file per area, with the byte-building
//! helpers they share: framing, CONNECT, the other client packets, the
//! encoders, and property-based tests feeding the decoder arbitrary bytes.

use bytes::BytesMut;

use super::ProtocolVersion::{V3_1, V3_1_1, V5};
use super::*;

mod connect;
mod decode;
mod encode;
mod encode_publish;
mod framing;
mod fuzz;

/// The maximum packet size of the decoders under test.
const MAX: u32 = 1024 * 1024;

/// A Variable Byte Integer.
fn varint(mut v: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let mut b = (v % 128) as u8;
        v /= 128;
        if v > 0 {
            b |= 0x80;
        }
        out.push(b);
        if v == 0 {
            return out;
        }
    }
}

/// A whole packet: first byte, Remaining Length, body.
fn frame(byte1: u8, body: &[u8]) -> Vec<u8> {
    [vec![byte1], varint(body.len()), body.to_vec()].concat()
}

/// A length-prefixed UTF-8 string.
fn s(v: &str) -> Vec<u8> {
    bin(v.as_bytes())
}

/// Length-prefixed binary data.
fn bin(v: &[u8]) -> Vec<u8> {
    let len = u16::try_from(v.len()).unwrap();
    [len.to_be_bytes().to_vec(), v.to_vec()].concat()
}

/// A property block: length, then the properties.
fn props(parts: &[Vec<u8>]) -> Vec<u8> {
    let body = parts.concat();
    [varint(body.len()), body].concat()
}

fn p_u8(id: u8, v: u8) -> Vec<u8> {
    vec![id, v]
}

fn p_u16(id: u8, v: u16) -> Vec<u8> {
    [vec![id], v.to_be_bytes().to_vec()].concat()
}

fn p_u32(id: u8, v: u32) -> Vec<u8> {
    [vec![id], v.to_be_bytes().to_vec()].concat()
}

fn p_str(id: u8, v: &str) -> Vec<u8> {
    [vec![id], s(v)].concat()
}

fn p_bin(id: u8, v: &[u8]) -> Vec<u8> {
    [vec![id], bin(v)].concat()
}

fn p_user(k: &str, v: &str) -> Vec<u8> {
    [vec![0x26], s(k), s(v)].concat()
}

fn p_varint(id: u8, v: usize) -> Vec<u8> {
    [vec![id], varint(v)].concat()
}

/// A CONNECT: protocol name and level, connect flags, keep alive 60, the
/// property block (MQTT 5; `None` for 3.x), then `payload`.
fn connect_packet(
    name: &str,
    level: u8,
    flags: u8,
    props: Option<Vec<u8>>,
    payload: &[u8],
) -> Vec<u8> {
    let mut body = s(name);
    body.push(level);
    body.push(flags);
    body.extend(60u16.to_be_bytes());
    body.extend(props.unwrap_or_default());
    body.extend(payload);
    frame(0x10, &body)
}

/// The smallest CONNECT of a version: clean start, client id "c".
fn minimal_connect(v: ProtocolVersion) -> Vec<u8> {
    match v {
        V3_1 => connect_packet("MQIsdp", 3, 0x02, None, &s("c")),
        V3_1_1 => connect_packet("MQTT", 4, 0x02, None, &s("c")),
        V5 => connect_packet("MQTT", 5, 0x02, Some(props(&[])), &s("c")),
    }
}

/// A decoder that has decoded a CONNECT of version `v`.
fn connected(v: ProtocolVersion) -> Decoder {
    let mut d = Decoder::new(MAX);
    let p = decode_bytes(&mut d, &minimal_connect(v)).unwrap();
    assert!(matches!(p, Packet::Connect(_)));
    assert_eq!(d.version(), Some(v));
    d
}

/// Decodes `bytes`, which must hold exactly one whole packet (or an error).
#[track_caller]
fn decode_bytes(d: &mut Decoder, bytes: &[u8]) -> Result<Packet, DecodeError> {
    let mut buf = BytesMut::from(bytes);
    match d.decode(&mut buf) {
        Ok(Some(p)) => {
            assert!(
                buf.is_empty(),
                "{} bytes left after {}",
                buf.len(),
                p.name()
            );
            Ok(p)
        }
        Ok(None) => panic!("complete packet {bytes:02x?} taken for an incomplete one"),
        Err(e) => Err(e),
    }
}

/// Decodes `bytes` on a connection that has sent a CONNECT of version `v`.
#[track_caller]
fn decode_after(v: ProtocolVersion, bytes: &[u8]) -> Result<Packet, DecodeError> {
    decode_bytes(&mut connected(v), bytes)
}

#[track_caller]
fn assert_malformed<T: std::fmt::Debug>(r: Result<T, DecodeError>) {
    match r {
        Err(DecodeError::Malformed(_)) => {}
        other => panic!("expected Malformed, got {other:?}"),
    }
}

#[track_caller]
fn assert_protocol<T: std::fmt::Debug>(r: Result<T, DecodeError>) {
    match r {
        Err(DecodeError::Protocol(_)) => {}
        other => panic!("expected Protocol, got {other:?}"),
    }
}

fn pid(id: u16) -> crate::topic::PacketId {
    crate::topic::PacketId::new(id).unwrap()
}

/// A v5 CONNECT using every CONNECT and will property, a will, a user name
/// and a password that is not UTF-8.
fn full_v5_connect() -> Vec<u8> {
    let connect_props = props(&[
        p_u32(0x11, 120),
        p_u16(0x21, 10),
        p_u32(0x27, 1000),
        p_u16(0x22, 5),
        p_u8(0x19, 1),
        p_u8(0x17, 0),
        p_user("a", "b"),
        p_user("a", "c"),
        p_str(0x15, "SCRAM"),
        p_bin(0x16, &[1, 2]),
    ]);
    let will_props = props(&[
        p_u32(0x18, 5),
        p_u8(0x01, 1),
        p_u32(0x02, 60),
        p_str(0x03, "text/plain"),
        p_str(0x08, "resp/t"),
        p_bin(0x09, &[9]),
        p_user("k", "v"),
    ]);
    let payload = [
        s("client"),
        will_props,
        s("will/t"),
        bin(b"bye"),
        s("u"),
        bin(&[0xC3, 0x28]),
    ]
    .concat();
    // user name, password, will retain, will QoS 2, will, clean start
    connect_packet(
        "MQTT",
        5,
        0x80 | 0x40 | 0x20 | 0x10 | 0x04 | 0x02,
        Some(connect_props),
        &payload,
    )
}

/// Valid packets a client of version `v` may send after CONNECT.
fn corpus(v: ProtocolVersion) -> Vec<Vec<u8>> {
    let mut packets = vec![
        frame(0x40, &[0x00, 0x05]),
        frame(0x50, &[0x00, 0x05]),
        frame(0x62, &[0x00, 0x05]),
        frame(0x70, &[0x00, 0x05]),
        frame(0xC0, &[]),
        frame(0xE0, &[]),
    ];
    if v == V5 {
        let publish_props = props(&[
            p_u8(0x01, 1),
            p_u32(0x02, 30),
            p_str(0x03, "t"),
            p_str(0x08, "r/t"),
            p_bin(0x09, &[7]),
            p_user("k", "v"),
            p_u16(0x23, 3),
        ]);
        packets.extend([
            frame(0x30, &[s("a/b"), props(&[]), b"hello".to_vec()].concat()),
            frame(
                0x33,
                &[s("a/b"), vec![0, 10], publish_props, b"hi".to_vec()].concat(),
            ),
            frame(
                0x30,
                &[s(""), props(&[p_u16(0x23, 1)]), b"x".to_vec()].concat(),
            ),
            frame(0x40, &[0x00, 0x05, 0x10]),
            frame(
                0x50,
                &[[0x00, 0x05, 0x87].to_vec(), props(&[p_str(0x1F, "no")])].concat(),
            ),
            frame(0x62, &[0x00, 0x05, 0x92, 0x00]),
            frame(
                0x82,
                &[
                    vec![0, 1],
                    props(&[p_varint(0x0B, 300), p_user("a", "b")]),
                    s("a/+"),
                    vec![0b0001_1110],
                ]
                .concat(),
            ),
            frame(
                0xA2,
                &[vec![0, 2], props(&[p_user("a", "b")]), s("a/+"), s("#")].concat(),
            ),
            frame(0xE0, &[0x04]),
            frame(
                0xE0,
                &[vec![0x00], props(&[p_u32(0x11, 0), p_str(0x1F, "bye")])].concat(),
            ),
            frame(0xF0, &[]),
            frame(
                0xF0,
                &[
                    vec![0x18],
                    props(&[p_str(0x15, "SCRAM"), p_bin(0x16, &[1])]),
                ]
                .concat(),
            ),
        ]);
    } else {
        packets.extend([
            frame(0x30, &[s("a/b"), b"hello".to_vec()].concat()),
            frame(0x3B, &[s("a/b"), vec![0, 10], b"hi".to_vec()].concat()),
            frame(
                0x82,
                &[vec![0, 1], s("a/+"), vec![1], s("#"), vec![2]].concat(),
            ),
            frame(0xA2, &[vec![0, 2], s("a/+"), s("#")].concat()),
        ]);
    }
    packets
}
