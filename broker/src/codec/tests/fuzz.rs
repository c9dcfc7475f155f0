//! Property-based tests: whatever the bytes, the decoder does not panic, and
//! it either consumes bytes with each packet, or asks for more without
//! consuming any, or fails.

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use super::*;

/// Decodes packets from `bytes` until more bytes are needed or an error.
fn drain(d: &mut Decoder, bytes: &[u8]) -> Result<(), TestCaseError> {
    let mut buf = BytesMut::from(bytes);
    loop {
        let before = buf.len();
        match d.decode(&mut buf) {
            Ok(Some(_)) => prop_assert!(buf.len() < before, "packet decoded from no bytes"),
            Ok(None) => {
                prop_assert_eq!(buf.len(), before, "bytes consumed by an incomplete packet");
                return Ok(());
            }
            Err(_) => return Ok(()),
        }
    }
}

/// First bytes of the packets a client sends, with valid flags.
const CLIENT_FIRST_BYTES: &[u8] = &[
    0x10, 0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x3A, 0x3B, 0x3C, 0x3D, 0x40, 0x50, 0x62, 0x70, 0x82,
    0xA2, 0xC0, 0xE0, 0xF0,
];

fn version(i: u8) -> ProtocolVersion {
    [V3_1, V3_1_1, V5][usize::from(i % 3)]
}

proptest! {
    #[test]
    fn arbitrary_bytes_after_a_3_1_1_connect(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        drain(&mut connected(V3_1_1), &data)?;
    }

    #[test]
    fn arbitrary_bytes_after_a_5_connect(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        drain(&mut connected(V5), &data)?;
    }

    #[test]
    fn arbitrary_bytes_before_connect(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        drain(&mut Decoder::new(MAX), &data)?;
    }

    #[test]
    fn arbitrary_bodies_of_well_framed_packets(
        v in any::<u8>(),
        byte1 in proptest::sample::select(CLIENT_FIRST_BYTES),
        body in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        drain(&mut connected(version(v)), &frame(byte1, &body))?;
    }

    #[test]
    fn arbitrary_connect_bodies(
        header in proptest::sample::select(vec![
            [s("MQTT"), vec![5]].concat(),
            [s("MQTT"), vec![4]].concat(),
            [s("MQIsdp"), vec![3]].concat(),
        ]),
        rest in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        drain(&mut Decoder::new(MAX), &frame(0x10, &[header, rest].concat()))?;
    }

    #[test]
    fn mutated_valid_packets(
        v in any::<u8>(),
        pick in any::<usize>(),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
    ) {
        let v = version(v);
        let mut packets = corpus(v);
        packets.push(minimal_connect(v));
        if v == V5 {
            packets.push(full_v5_connect());
        }
        let mut packet = packets[pick % packets.len()].clone();
        for (at, xor) in edits {
            let at = at % packet.len();
            packet[at] ^= xor;
        }
        drain(&mut connected(v), &packet)?;
        drain(&mut Decoder::new(MAX), &packet)?;
    }

    #[test]
    fn publish_size_matches_encoding(
        v in any::<u8>(),
        qos in 0u8..3,
        topic in "[a-z/é]{0,40}",
        payload in proptest::collection::vec(any::<u8>(), 0..300),
        with_properties in any::<bool>(),
        users in proptest::collection::vec(("[a-z]{0,5}", "[a-z]{0,200}"), 0..5),
        ids in proptest::collection::vec(1u32..268_435_455, 0..3),
        expiry in proptest::option::of(any::<u32>()),
        alias in proptest::option::of(1u16..),
    ) {
        let props = MessageProperties {
            payload_format_indicator: Some(0),
            content_type: Some("ct".into()),
            response_topic: None,
            correlation_data: Some(bytes::Bytes::from(payload.clone())),
            user_properties: users,
        };
        let qos = QoS::from_u8(qos).unwrap_or(QoS::AtMostOnce);
        let p = OutgoingPublish {
            topic: &topic,
            qos,
            retain: false,
            dup: false,
            packet_id: (qos != QoS::AtMostOnce).then(|| pid(1)),
            payload: &payload,
            properties: with_properties.then_some(&props),
            message_expiry_interval: expiry,
            topic_alias: alias,
            subscription_identifiers: &ids,
        };
        let v = version(v);
        let mut buf = BytesMut::new();
        encode_publish(&mut buf, v, &p);
        prop_assert_eq!(publish_size(v, &p), buf.len());
        // And the decoder reads back what a client would have sent.
        if !topic.is_empty() && ids.is_empty() {
            let packet = decode_after(v, &buf).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let Packet::Publish(decoded) = packet else {
                return Err(TestCaseError::fail("not a PUBLISH"));
            };
            prop_assert_eq!(&decoded.topic, &topic);
            prop_assert_eq!(&decoded.payload[..], &payload[..]);
            if v.is_v5() {
                prop_assert_eq!(decoded.message_expiry_interval, expiry);
                prop_assert_eq!(decoded.topic_alias, alias);
                if with_properties {
                    prop_assert_eq!(&decoded.properties, &props);
                }
            }
        }
    }
}
