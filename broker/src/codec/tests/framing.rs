//! Framing: incomplete input, sizes, fixed-header checks and packet order.

use super::*;
use crate::reason::ReasonCode;

#[test]
fn every_strict_prefix_is_incomplete_and_leaves_the_buffer_alone() {
    let connects = [
        minimal_connect(V3_1),
        minimal_connect(V3_1_1),
        minimal_connect(V5),
        full_v5_connect(),
    ];
    for packet in &connects {
        check_prefixes(packet, || Decoder::new(MAX));
    }
    for v in [V3_1, V3_1_1, V5] {
        for packet in corpus(v) {
            check_prefixes(&packet, || connected(v));
        }
    }
}

#[track_caller]
fn check_prefixes(packet: &[u8], decoder: impl Fn() -> Decoder) {
    for len in 0..packet.len() {
        let mut d = decoder();
        let mut buf = BytesMut::from(&packet[..len]);
        assert_eq!(
            d.decode(&mut buf),
            Ok(None),
            "prefix {:02x?}",
            &packet[..len]
        );
        assert_eq!(&buf[..], &packet[..len]);
    }
    let mut d = decoder();
    let mut buf = BytesMut::from(packet);
    assert!(matches!(d.decode(&mut buf), Ok(Some(_))), "{packet:02x?}");
    assert!(buf.is_empty());
}

#[test]
fn packets_in_one_buffer_decode_one_after_the_other() {
    let mut d = Decoder::new(MAX);
    let mut bytes = minimal_connect(V5);
    for packet in corpus(V5) {
        bytes.extend(packet);
    }
    let count = 1 + corpus(V5).len();
    let mut buf = BytesMut::from(&bytes[..]);
    let mut names = Vec::new();
    while let Some(p) = d.decode(&mut buf).unwrap() {
        names.push(p.name());
    }
    assert_eq!(names.len(), count);
    assert_eq!(names[0], "CONNECT");
    assert!(buf.is_empty());

    // Two packets and the start of a third.
    let mut d = connected(V3_1_1);
    let mut buf = BytesMut::from(&[0xC0, 0x00, 0x40, 0x02, 0x00, 0x01, 0xE0][..]);
    assert_eq!(d.decode(&mut buf), Ok(Some(Packet::PingReq)));
    assert_eq!(
        d.decode(&mut buf),
        Ok(Some(Packet::PubAck(Ack::new(pid(1)))))
    );
    assert_eq!(d.decode(&mut buf), Ok(None));
    assert_eq!(&buf[..], &[0xE0]);
}

#[test]
fn oversized_packet_is_refused_from_its_header() {
    let mut d = Decoder::new(1024);
    decode_bytes(&mut d, &minimal_connect(V3_1_1)).unwrap();
    // A PUBLISH announcing 65,535 bytes: only its first 5 bytes arrived.
    let mut buf = BytesMut::from(&[0x30, 0xFF, 0xFF, 0x03, 0x00][..]);
    assert_eq!(
        d.decode(&mut buf),
        Err(DecodeError::TooLarge {
            size: 4 + 65_535,
            max: 1024
        })
    );
    assert_eq!(
        DecodeError::TooLarge { size: 0, max: 0 }.reason_code(),
        ReasonCode::PACKET_TOO_LARGE
    );
}

#[test]
fn maximum_packet_size_counts_the_whole_packet() {
    let at_max = frame(0x30, &[s("t"), vec![0; 100 - 2 - 3]].concat());
    assert_eq!(at_max.len(), 100);
    let mut d = Decoder::new(100);
    decode_bytes(&mut d, &minimal_connect(V3_1_1)).unwrap();
    assert!(matches!(
        decode_bytes(&mut d, &at_max),
        Ok(Packet::Publish(_))
    ));
    let over = frame(0x30, &[s("t"), vec![0; 100 - 2 - 3 + 1]].concat());
    assert_eq!(
        decode_bytes(&mut d, &over),
        Err(DecodeError::TooLarge {
            size: 101,
            max: 100
        })
    );
    // CONNECT is limited too.
    let mut d = Decoder::new(10);
    assert!(matches!(
        decode_bytes(&mut d, &minimal_connect(V3_1_1)),
        Err(DecodeError::TooLarge { .. })
    ));
}

#[test]
fn remaining_length_of_5_bytes_is_malformed() {
    let mut d = connected(V3_1_1);
    assert_malformed(d.decode(&mut BytesMut::from(
        &[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01][..],
    )));
    // Known as soon as the fourth length byte has its continuation bit set.
    let mut d = connected(V3_1_1);
    assert_malformed(d.decode(&mut BytesMut::from(&[0x30, 0x80, 0x80, 0x80, 0x80][..])));
    // Before CONNECT as well.
    let mut d = Decoder::new(u32::MAX);
    assert_malformed(d.decode(&mut BytesMut::from(&[0x10, 0xFF, 0xFF, 0xFF, 0xFF][..])));
}

#[test]
fn reserved_fixed_header_flags_are_malformed() {
    let cases: &[&[u8]] = &[
        &[0x41, 0x02, 0x00, 0x01], // PUBACK
        &[0x51, 0x02, 0x00, 0x01], // PUBREC
        &[0x60, 0x02, 0x00, 0x01], // PUBREL needs 0010
        &[0x63, 0x02, 0x00, 0x01],
        &[0x72, 0x02, 0x00, 0x01],                         // PUBCOMP
        &[0x80, 0x06, 0x00, 0x01, 0x00, 0x01, 0x61, 0x00], // SUBSCRIBE needs 0010
        &[0xA0, 0x05, 0x00, 0x01, 0x00, 0x01, 0x61],       // UNSUBSCRIBE needs 0010
        &[0xC8, 0x00],                                     // PINGREQ
        &[0xE2, 0x00],                                     // DISCONNECT
    ];
    for v in [V3_1_1, V5] {
        for &packet in cases {
            assert_malformed(decode_after(v, packet));
        }
        // CONNECT, as a further packet.
        let mut connect = minimal_connect(v);
        connect[0] = 0x12;
        assert_malformed(decode_after(v, &connect));
    }
    let mut connect = minimal_connect(V3_1_1);
    connect[0] = 0x11;
    assert_malformed(decode_bytes(&mut Decoder::new(MAX), &connect));
    assert_malformed(decode_after(V5, &[0xF1, 0x00])); // AUTH
}

#[test]
fn publish_qos_3_and_dup_at_qos_0_are_malformed() {
    for v in [V3_1_1, V5] {
        assert_malformed(decode_after(
            v,
            &frame(0x36, &[s("t"), vec![0, 1]].concat()),
        ));
        assert_malformed(decode_after(v, &frame(0x38, &s("t"))));
        // Refused from the first byte alone.
        assert_malformed(connected(v).decode(&mut BytesMut::from(&[0x37][..])));
    }
}

#[test]
fn packet_type_0_is_malformed() {
    assert_malformed(decode_after(V3_1_1, &[0x00, 0x00]));
    assert_malformed(decode_bytes(&mut Decoder::new(MAX), &[0x00, 0x00]));
}

#[test]
fn server_packets_are_refused() {
    for v in [V3_1, V3_1_1, V5] {
        assert_protocol(decode_after(v, &[0x20, 0x02, 0x00, 0x00])); // CONNACK
        assert_protocol(decode_after(v, &[0x90, 0x03, 0x00, 0x01, 0x00])); // SUBACK
        assert_protocol(decode_after(v, &[0xB0, 0x02, 0x00, 0x01])); // UNSUBACK
        assert_protocol(decode_after(v, &[0xD0, 0x00])); // PINGRESP
    }
}

#[test]
fn first_packet_must_be_connect() {
    for packet in [
        &[0xC0, 0x00][..],
        &[0x30, 0x03, 0x00, 0x01, 0x61],
        &[0xE0, 0x00],
        &[0xF0, 0x00],
        &[0x20, 0x02, 0, 0],
    ] {
        let mut d = Decoder::new(MAX);
        assert_eq!(
            decode_bytes(&mut d, packet),
            Err(DecodeError::Protocol("first packet must be CONNECT".into()))
        );
        assert_eq!(d.version(), None);
    }
    // Refused from the first byte.
    assert_protocol(Decoder::new(MAX).decode(&mut BytesMut::from(&[0x82][..])));
}

#[test]
fn auth_from_a_3_x_client_is_malformed() {
    assert_malformed(decode_after(V3_1_1, &[0xF0, 0x00]));
    assert_malformed(connected(V3_1).decode(&mut BytesMut::from(&[0xF0][..])));
}

#[test]
fn variable_byte_integers_must_use_their_shortest_form() {
    // Remaining length 0 in two bytes: PINGREQ `C0 80 00`.
    assert_malformed(decode_after(V5, &[0xC0, 0x80, 0x00]));
    assert_malformed(decode_after(V3_1_1, &[0xC0, 0x80, 0x80, 0x00]));
    let sub = |block: Vec<u8>| frame(0x82, &[vec![0, 1], block, s("a"), vec![0]].concat());
    // A Subscription Identifier of 1 in two bytes.
    assert_malformed(decode_after(V5, &sub(vec![0x03, 0x0B, 0x81, 0x00])));
    // The shortest forms still decode; 128 needs two bytes.
    assert!(decode_after(V5, &[0xC0, 0x00]).is_ok());
    assert!(decode_after(V5, &sub(props(&[p_varint(0x0B, 128)]))).is_ok());
}
