//! PUBLISH encoding: byte-exact outputs, `publish_size` against the encoded
//! length, round trips through mqttbytes' parsers, and no reallocation.

use bytes::Bytes;
use mqttbytes::{v4, v5};

use super::encode::{encoded, for_mqttbytes};
use super::*;

fn outgoing<'a>(topic: &'a str, qos: QoS, payload: &'a [u8]) -> OutgoingPublish<'a> {
    OutgoingPublish {
        topic,
        qos,
        retain: false,
        dup: false,
        packet_id: (qos != QoS::AtMostOnce).then(|| pid(10)),
        payload,
        properties: None,
        message_expiry_interval: None,
        topic_alias: None,
        subscription_identifiers: &[],
    }
}

fn full_properties() -> MessageProperties {
    MessageProperties {
        payload_format_indicator: Some(1),
        content_type: Some("t".into()),
        response_topic: Some("r".into()),
        correlation_data: Some(Bytes::from_static(&[7])),
        user_properties: vec![("k".into(), "v".into())],
    }
}

#[test]
fn publish_3_x() {
    let p = outgoing("a/b", QoS::AtMostOnce, b"hello");
    let bytes = encoded(|b| encode_publish(b, V3_1_1, &p));
    assert_eq!(
        bytes,
        [
            0x30, 0x0A, 0x00, 0x03, b'a', b'/', b'b', b'h', b'e', b'l', b'l', b'o'
        ]
    );
    let props = full_properties();
    let p = OutgoingPublish {
        dup: true,
        retain: true,
        packet_id: Some(pid(0x1234)),
        // MQTT 5 fields are not sent to 3.x clients.
        properties: Some(&props),
        message_expiry_interval: Some(5),
        topic_alias: Some(1),
        subscription_identifiers: &[1],
        ..outgoing("a/b", QoS::ExactlyOnce, b"")
    };
    let bytes = encoded(|b| encode_publish(b, V3_1, &p));
    assert_eq!(
        bytes,
        [0x3D, 0x07, 0x00, 0x03, b'a', b'/', b'b', 0x12, 0x34]
    );
    let (h, f) = for_mqttbytes(&bytes);
    let parsed = v4::Publish::read(h, f).unwrap();
    assert!(parsed.dup && parsed.retain);
    assert_eq!((parsed.topic.as_str(), parsed.pkid), ("a/b", 0x1234));
    assert_eq!(parsed.qos, mqttbytes::QoS::ExactlyOnce);
    // DUP is never set at QoS 0.
    let p = OutgoingPublish {
        dup: true,
        ..outgoing("a", QoS::AtMostOnce, b"")
    };
    assert_eq!(
        encoded(|b| encode_publish(b, V3_1_1, &p)),
        [0x30, 0x03, 0x00, 0x01, b'a']
    );
}

#[test]
fn publish_5() {
    let p = outgoing("a/b", QoS::AtMostOnce, b"hello");
    let bytes = encoded(|b| encode_publish(b, V5, &p));
    assert_eq!(
        bytes,
        [
            0x30, 0x0B, 0x00, 0x03, b'a', b'/', b'b', 0x00, b'h', b'e', b'l', b'l', b'o'
        ]
    );

    let props = full_properties();
    let p = OutgoingPublish {
        retain: true,
        properties: Some(&props),
        message_expiry_interval: Some(30),
        topic_alias: Some(3),
        subscription_identifiers: &[1, 200],
        ..outgoing("a/b", QoS::AtLeastOnce, b"hi")
    };
    let bytes = encoded(|b| encode_publish(b, V5, &p));
    #[rustfmt::skip]
    let expected = [
        0x33, 0x2C, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x0A, 0x22,
        0x01, 0x01,
        0x02, 0x00, 0x00, 0x00, 0x1E,
        0x03, 0x00, 0x01, b't',
        0x08, 0x00, 0x01, b'r',
        0x09, 0x00, 0x01, 0x07,
        0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v',
        0x23, 0x00, 0x03,
        0x0B, 0x01,
        0x0B, 0xC8, 0x01,
        b'h', b'i',
    ];
    assert_eq!(bytes, expected);
    assert_eq!(publish_size(V5, &p), expected.len());
    let (h, f) = for_mqttbytes(&bytes);
    let parsed = v5::Publish::read(h, f).unwrap();
    assert_eq!(
        (parsed.topic.as_str(), parsed.pkid, &parsed.payload[..]),
        ("a/b", 10, &b"hi"[..])
    );
    let pp = parsed.properties.unwrap();
    assert_eq!(pp.payload_format_indicator, Some(1));
    assert_eq!(pp.message_expiry_interval, Some(30));
    assert_eq!(pp.topic_alias, Some(3));
    assert_eq!(pp.content_type.as_deref(), Some("t"));
    assert_eq!(pp.response_topic.as_deref(), Some("r"));
    assert_eq!(pp.correlation_data.as_deref(), Some(&[7][..]));
    assert_eq!(pp.user_properties, vec![("k".to_string(), "v".to_string())]);
    assert_eq!(pp.subscription_identifiers, vec![1, 200]);
}

#[test]
fn publish_size_is_the_encoded_length() {
    let props = full_properties();
    let many_users = MessageProperties {
        user_properties: (0..50)
            .map(|i| (format!("key{i}"), "v".repeat(i * 10)))
            .collect(),
        ..MessageProperties::default()
    };
    let topics = [
        "",
        "t",
        &"a".repeat(127),
        &"b".repeat(300),
        &"c".repeat(20_000),
        &"é".repeat(40_000),
    ];
    let payload = vec![0x5A; 2_097_152 + 10];
    let payload_lens = [0, 1, 100, 115, 116, 117, 16_370, 16_384, 2_097_152];
    let sub_ids: &[u32] = &[1, 127, 128, 16_384, 268_435_455];
    let mut cases = 0;
    for v in [V3_1, V3_1_1, V5] {
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            for topic in topics {
                for len in payload_lens {
                    for (properties, ids) in [
                        (None, &[][..]),
                        (Some(&props), sub_ids),
                        (Some(&many_users), &[][..]),
                    ] {
                        let p = OutgoingPublish {
                            properties,
                            subscription_identifiers: ids,
                            message_expiry_interval: properties.map(|_| 9),
                            topic_alias: properties.map(|_| 2),
                            ..outgoing(topic, qos, &payload[..len])
                        };
                        let mut buf = BytesMut::from(&b"prefix"[..]);
                        encode_publish(&mut buf, v, &p);
                        assert_eq!(
                            publish_size(v, &p),
                            buf.len() - 6,
                            "{v:?} {qos:?} {} {len}",
                            topic.len()
                        );
                        cases += 1;
                    }
                }
            }
        }
    }
    assert_eq!(cases, 3 * 3 * 6 * 9 * 3);
}

#[test]
fn publish_long_topic_is_cut_at_a_character_boundary() {
    let topic = "é".repeat(40_000); // 80,000 bytes
    let p = outgoing(&topic, QoS::AtMostOnce, b"x");
    let bytes = encoded(|b| encode_publish(b, V3_1_1, &p));
    let (h, f) = for_mqttbytes(&bytes);
    let parsed = v4::Publish::read(h, f).unwrap();
    assert_eq!(parsed.topic.len(), 65_534);
    assert_eq!(&parsed.payload[..], b"x");
}

#[test]
fn publish_encoding_does_not_reallocate_a_large_enough_buffer() {
    let props = full_properties();
    let ids = [3, 4];
    let p = OutgoingPublish {
        properties: Some(&props),
        subscription_identifiers: &ids,
        ..outgoing("a/b/c", QoS::AtLeastOnce, &[1; 500])
    };
    let size = publish_size(V5, &p);
    let mut buf = BytesMut::with_capacity(size);
    let start = buf.as_ptr();
    encode_publish(&mut buf, V5, &p);
    assert_eq!(buf.len(), size);
    assert_eq!(buf.as_ptr(), start);
}
