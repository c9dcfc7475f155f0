//! Decoding of the client packets after CONNECT.

use bytes::Bytes;

use super::*;
use crate::reason::ReasonCode;

#[track_caller]
fn unwrap_publish(r: Result<Packet, DecodeError>) -> Publish {
    match r {
        Ok(Packet::Publish(p)) => p,
        other => panic!("expected PUBLISH, got {other:?}"),
    }
}

#[test]
fn publish_3_1_1() {
    let p = unwrap_publish(decode_after(
        V3_1_1,
        &frame(0x30, &[s("a/b"), b"hello".to_vec()].concat()),
    ));
    assert_eq!(
        p,
        Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: "a/b".into(),
            packet_id: None,
            payload: Bytes::from_static(b"hello"),
            message_expiry_interval: None,
            topic_alias: None,
            properties: MessageProperties::default(),
        }
    );
    let p = unwrap_publish(decode_after(
        V3_1,
        &frame(0x3D, &[s("t"), vec![0x12, 0x34]].concat()),
    ));
    assert!(p.dup && p.retain);
    assert_eq!(p.qos, QoS::ExactlyOnce);
    assert_eq!(p.packet_id, Some(pid(0x1234)));
    assert!(p.payload.is_empty());
}

#[test]
fn publish_payload_is_a_slice_of_the_frame() {
    let mut d = connected(V3_1_1);
    let mut buf = BytesMut::from(&frame(0x30, &[s("t"), vec![7; 1000]].concat())[..]);
    let start = buf.as_ptr() as usize;
    let Ok(Some(Packet::Publish(p))) = d.decode(&mut buf) else {
        panic!("no PUBLISH")
    };
    // First byte, 2-byte Remaining Length, topic "t": the payload follows.
    assert_eq!(p.payload.as_ptr() as usize, start + 1 + 2 + 3);
}

#[test]
fn publish_5_with_properties() {
    let p = unwrap_publish(decode_after(V5, &corpus(V5)[7]));
    assert_eq!(
        p,
        Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: true,
            topic: "a/b".into(),
            packet_id: Some(pid(10)),
            payload: Bytes::from_static(b"hi"),
            message_expiry_interval: Some(30),
            topic_alias: Some(3),
            properties: MessageProperties {
                payload_format_indicator: Some(1),
                content_type: Some("t".into()),
                response_topic: Some("r/t".into()),
                correlation_data: Some(Bytes::from_static(&[7])),
                user_properties: vec![("k".into(), "v".into())],
            },
        }
    );
}

#[test]
fn publish_empty_topic() {
    // MQTT 5 with a Topic Alias: the connection resolves it.
    let p = unwrap_publish(decode_after(
        V5,
        &frame(
            0x30,
            &[s(""), props(&[p_u16(0x23, 1)]), b"x".to_vec()].concat(),
        ),
    ));
    assert_eq!((p.topic.as_str(), p.topic_alias), ("", Some(1)));
    assert_protocol(decode_after(
        V5,
        &frame(0x30, &[s(""), props(&[]), b"x".to_vec()].concat()),
    ));
    assert_malformed(decode_after(
        V3_1_1,
        &frame(0x30, &[s(""), b"x".to_vec()].concat()),
    ));
}

#[test]
fn wildcard_or_nul_in_publish_topic_is_malformed() {
    for topic in ["a/+", "#", "a/#", "a+b", "a\0b"] {
        assert_malformed(decode_after(
            V3_1_1,
            &frame(0x30, &[s(topic), b"x".to_vec()].concat()),
        ));
        assert_malformed(decode_after(
            V5,
            &frame(0x30, &[s(topic), props(&[])].concat()),
        ));
    }
    assert_malformed(decode_after(V3_1_1, &frame(0x30, &bin(&[0xC3, 0x28]))));
}

#[test]
fn publish_packet_id_0_is_a_protocol_error() {
    assert_protocol(decode_after(
        V3_1_1,
        &frame(0x32, &[s("t"), vec![0, 0]].concat()),
    ));
    assert_protocol(decode_after(
        V5,
        &frame(0x34, &[s("t"), vec![0, 0], props(&[])].concat()),
    ));
}

#[test]
fn publish_5_missing_property_length_is_malformed() {
    // Topic "a", then nothing: fully framed, so not "need more bytes".
    assert_malformed(decode_after(V5, &[0x30, 0x03, 0x00, 0x01, 0x61]));
    // QoS 1 with the packet id cut short.
    assert_malformed(decode_after(V5, &[0x32, 0x04, 0x00, 0x01, 0x61, 0x00]));
}

#[test]
fn publish_5_property_rules() {
    let cases: [(Vec<u8>, bool); 9] = [
        (p_varint(0x0B, 1), true), // Subscription Identifier from a client
        ([p_u32(0x02, 1), p_u32(0x02, 2)].concat(), true), // duplicate
        (p_u16(0x23, 0), true),    // Topic Alias 0
        (p_u8(0x01, 2), true),     // Payload Format Indicator 2
        (p_str(0x08, "a/+"), true), // Response Topic with a wildcard
        (p_str(0x08, ""), true),   // empty Response Topic
        (p_u32(0x11, 1), true),    // Session Expiry: not in PUBLISH
        (vec![0x00, 0x01], false), // 0 is not a property
        (vec![0x02, 0x00], false), // value past the property length
    ];
    for (prop, protocol_error) in cases {
        let block = [varint(prop.len()), prop.clone()].concat();
        let r = decode_after(V5, &frame(0x30, &[s("t"), block, b"x".to_vec()].concat()));
        if protocol_error {
            assert_protocol(r);
        } else {
            assert_malformed(r);
        }
    }
    // Repeated user properties are fine.
    let block = props(&[p_user("a", "1"), p_user("a", "2")]);
    let p = unwrap_publish(decode_after(V5, &frame(0x30, &[s("t"), block].concat())));
    assert_eq!(p.properties.user_properties.len(), 2);
}

#[test]
fn acks_3_1_1() {
    assert_eq!(
        decode_after(V3_1_1, &[0x40, 0x02, 0x00, 0x05]),
        Ok(Packet::PubAck(Ack::new(pid(5))))
    );
    assert_eq!(
        decode_after(V3_1_1, &[0x50, 0x02, 0x00, 0x06]),
        Ok(Packet::PubRec(Ack::new(pid(6))))
    );
    assert_eq!(
        decode_after(V3_1, &[0x62, 0x02, 0x00, 0x07]),
        Ok(Packet::PubRel(Ack::new(pid(7))))
    );
    assert_eq!(
        decode_after(V3_1_1, &[0x70, 0x02, 0x01, 0x00]),
        Ok(Packet::PubComp(Ack::new(pid(256))))
    );
    // Remaining length other than 2.
    assert_malformed(decode_after(V3_1_1, &[0x40, 0x03, 0x00, 0x05, 0x00]));
    assert_malformed(decode_after(V3_1_1, &[0x40, 0x01, 0x05]));
    assert_malformed(decode_after(V3_1_1, &[0x40, 0x00]));
}

#[test]
fn ack_packet_id_0_is_a_protocol_error() {
    for v in [V3_1_1, V5] {
        for byte1 in [0x40, 0x50, 0x62, 0x70] {
            assert_protocol(decode_after(v, &[byte1, 0x02, 0x00, 0x00]));
        }
    }
}

#[test]
fn acks_5() {
    assert_eq!(
        decode_after(V5, &[0x40, 0x02, 0x00, 0x05]),
        Ok(Packet::PubAck(Ack::new(pid(5))))
    );
    let r = decode_after(V5, &[0x40, 0x03, 0x00, 0x05, 0x10]);
    assert_eq!(
        r,
        Ok(Packet::PubAck(Ack {
            reason: ReasonCode::NO_MATCHING_SUBSCRIBERS,
            ..Ack::new(pid(5))
        }))
    );
    let body = [
        vec![0x00, 0x05, 0x87],
        props(&[p_str(0x1F, "no"), p_user("k", "v")]),
    ]
    .concat();
    assert_eq!(
        decode_after(V5, &frame(0x50, &body)),
        Ok(Packet::PubRec(Ack {
            packet_id: pid(5),
            reason: ReasonCode::NOT_AUTHORIZED,
            reason_string: Some("no".into()),
            user_properties: vec![("k".into(), "v".into())],
        }))
    );
    let r = decode_after(V5, &[0x62, 0x04, 0x00, 0x05, 0x92, 0x00]);
    assert_eq!(
        r,
        Ok(Packet::PubRel(Ack {
            reason: ReasonCode::PACKET_IDENTIFIER_NOT_FOUND,
            ..Ack::new(pid(5))
        }))
    );
}

#[test]
fn ack_5_errors() {
    // Reason codes not defined for the packet.
    assert_protocol(decode_after(V5, &[0x40, 0x03, 0x00, 0x05, 0x92]));
    assert_protocol(decode_after(V5, &[0x50, 0x03, 0x00, 0x05, 0x01]));
    assert_protocol(decode_after(V5, &[0x62, 0x03, 0x00, 0x05, 0x10]));
    assert_protocol(decode_after(V5, &[0x70, 0x03, 0x00, 0x05, 0x80]));
    // A property acks may not carry; a duplicate Reason String.
    assert_protocol(decode_after(
        V5,
        &frame(0x40, &[vec![0, 5, 0], props(&[p_u32(0x02, 1)])].concat()),
    ));
    let dup = props(&[p_str(0x1F, "a"), p_str(0x1F, "b")]);
    assert_protocol(decode_after(
        V5,
        &frame(0x40, &[vec![0, 5, 0], dup].concat()),
    ));
    // Property length past the end; bytes after the properties.
    assert_malformed(decode_after(V5, &[0x40, 0x04, 0x00, 0x05, 0x00, 0x05]));
    assert_malformed(decode_after(
        V5,
        &[0x40, 0x05, 0x00, 0x05, 0x00, 0x00, 0xFF],
    ));
    assert_malformed(decode_after(V5, &[0x40, 0x01, 0x05]));
}

#[test]
fn subscribe_3_1_1() {
    let r = decode_after(V3_1_1, &corpus(V3_1_1)[8]);
    assert_eq!(
        r,
        Ok(Packet::Subscribe(Subscribe {
            packet_id: pid(1),
            filters: vec![
                ("a/+".into(), SubscriptionOptions::v3(QoS::AtLeastOnce)),
                ("#".into(), SubscriptionOptions::v3(QoS::ExactlyOnce)),
            ],
            subscription_identifier: None,
            user_properties: vec![],
        }))
    );
    // Wildcard syntax is the broker's business.
    let r = decode_after(
        V3_1_1,
        &frame(0x82, &[vec![0, 1], s("a/#/b"), vec![0]].concat()),
    );
    assert!(matches!(r, Ok(Packet::Subscribe(s)) if s.filters[0].0 == "a/#/b"));
}

#[test]
fn subscribe_3_1_1_errors() {
    let sub =
        |filter: &str, options: u8| frame(0x82, &[vec![0, 1], s(filter), vec![options]].concat());
    assert_malformed(decode_after(V3_1_1, &sub("a", 0b0000_0100))); // reserved bits
    assert_malformed(decode_after(V3_1_1, &sub("a", 0b1000_0000)));
    assert_malformed(decode_after(V3_1_1, &sub("a", 3))); // QoS 3
    assert_malformed(decode_after(V3_1_1, &sub("", 0))); // empty filter
    assert_malformed(decode_after(V3_1_1, &sub("a\0", 0)));
    assert_malformed(decode_after(
        V3_1_1,
        &frame(0x82, &[vec![0, 1], s("a")].concat()),
    )); // no options
    assert_protocol(decode_after(V3_1_1, &[0x82, 0x02, 0x00, 0x01])); // no filters
    assert_protocol(decode_after(
        V3_1_1,
        &frame(0x82, &[vec![0, 0], s("a"), vec![0]].concat()),
    ));
    // Truncated packet id.
    assert_malformed(decode_after(V3_1_1, &[0x82, 0x01, 0x00]));
}

#[test]
fn subscribe_5() {
    let r = decode_after(V5, &corpus(V5)[12]);
    assert_eq!(
        r,
        Ok(Packet::Subscribe(Subscribe {
            packet_id: pid(1),
            filters: vec![(
                "a/+".into(),
                SubscriptionOptions {
                    qos: QoS::ExactlyOnce,
                    no_local: true,
                    retain_as_published: true,
                    retain_handling: RetainHandling::OnNewSubscribe,
                }
            )],
            subscription_identifier: Some(300),
            user_properties: vec![("a".into(), "b".into())],
        }))
    );
}

#[test]
fn subscribe_5_errors() {
    // Packet id, empty properties, no filters: an error, not "need more".
    assert_protocol(decode_after(V5, &[0x82, 0x03, 0x00, 0x01, 0x00]));
    // No property length.
    assert_malformed(decode_after(V5, &[0x82, 0x02, 0x00, 0x01]));
    let sub = |block: Vec<u8>, options: u8| {
        frame(0x82, &[vec![0, 1], block, s("a"), vec![options]].concat())
    };
    assert_malformed(decode_after(V5, &sub(props(&[]), 0b0100_0000))); // reserved bits
    assert_protocol(decode_after(V5, &sub(props(&[]), 0b0011_0000))); // Retain Handling 3
    assert_malformed(decode_after(V5, &sub(props(&[]), 0b0000_0011))); // QoS 3
    assert_protocol(decode_after(V5, &sub(props(&[p_varint(0x0B, 0)]), 0))); // id 0
    assert_protocol(decode_after(
        V5,
        &sub(props(&[p_varint(0x0B, 1), p_varint(0x0B, 2)]), 0),
    ));
    assert_protocol(decode_after(V5, &sub(props(&[p_str(0x1F, "x")]), 0)));
    assert_malformed(decode_after(V5, &sub(vec![0x02, 0x0B, 0x80], 0))); // varint cut short
    assert_protocol(decode_after(
        V5,
        &frame(0x82, &[vec![0, 0], props(&[]), s("a"), vec![0]].concat()),
    ));
}

#[test]
fn unsubscribe_3_1_1() {
    assert_eq!(
        decode_after(V3_1_1, &corpus(V3_1_1)[9]),
        Ok(Packet::Unsubscribe(Unsubscribe {
            packet_id: pid(2),
            filters: vec!["a/+".into(), "#".into()],
            user_properties: vec![],
        }))
    );
    assert_protocol(decode_after(V3_1_1, &[0xA2, 0x02, 0x00, 0x01]));
    assert_protocol(decode_after(
        V3_1_1,
        &frame(0xA2, &[vec![0, 0], s("a")].concat()),
    ));
    assert_malformed(decode_after(
        V3_1_1,
        &frame(0xA2, &[vec![0, 1], s("")].concat()),
    ));
    assert_malformed(decode_after(
        V3_1_1,
        &frame(0xA2, &[vec![0, 1], s("a"), vec![0]].concat()),
    ));
}

#[test]
fn unsubscribe_5() {
    assert_eq!(
        decode_after(V5, &corpus(V5)[13]),
        Ok(Packet::Unsubscribe(Unsubscribe {
            packet_id: pid(2),
            filters: vec!["a/+".into(), "#".into()],
            user_properties: vec![("a".into(), "b".into())],
        }))
    );
    assert_protocol(decode_after(V5, &[0xA2, 0x03, 0x00, 0x01, 0x00]));
    assert_protocol(decode_after(
        V5,
        &frame(0xA2, &[vec![0, 0], props(&[]), s("a")].concat()),
    ));
    assert_protocol(decode_after(
        V5,
        &frame(
            0xA2,
            &[vec![0, 1], props(&[p_varint(0x0B, 1)]), s("a")].concat(),
        ),
    ));
    assert_malformed(decode_after(V5, &[0xA2, 0x02, 0x00, 0x01]));
}

#[test]
fn pingreq() {
    assert_eq!(decode_after(V3_1_1, &[0xC0, 0x00]), Ok(Packet::PingReq));
    assert_eq!(decode_after(V5, &[0xC0, 0x00]), Ok(Packet::PingReq));
    assert_malformed(decode_after(V5, &[0xC0, 0x01, 0x00]));
}

#[test]
fn disconnect_3_1_1() {
    assert_eq!(
        decode_after(V3_1_1, &[0xE0, 0x00]),
        Ok(Packet::Disconnect(Disconnect::default()))
    );
    assert_malformed(decode_after(V3_1_1, &[0xE0, 0x01, 0x00]));
}

#[test]
fn disconnect_5_short_forms() {
    assert_eq!(
        decode_after(V5, &[0xE0, 0x00]),
        Ok(Packet::Disconnect(Disconnect::default()))
    );
    assert_eq!(
        decode_after(V5, &[0xE0, 0x01, 0x04]),
        Ok(Packet::Disconnect(Disconnect {
            reason: ReasonCode::DISCONNECT_WITH_WILL,
            ..Disconnect::default()
        }))
    );
    assert_eq!(
        decode_after(V5, &[0xE0, 0x01, 0x00]),
        Ok(Packet::Disconnect(Disconnect::default()))
    );
}

#[test]
fn disconnect_5_with_properties() {
    let block = props(&[
        p_u32(0x11, 30),
        p_str(0x1F, "bye"),
        p_user("k", "v"),
        p_str(0x1C, "other"),
    ]);
    assert_eq!(
        decode_after(V5, &frame(0xE0, &[vec![0x8B], block].concat())),
        Ok(Packet::Disconnect(Disconnect {
            reason: ReasonCode::SERVER_SHUTTING_DOWN,
            session_expiry_interval: Some(30),
            reason_string: Some("bye".into()),
            user_properties: vec![("k".into(), "v".into())],
            server_reference: Some("other".into()),
        }))
    );
    assert_eq!(
        decode_after(V5, &[0xE0, 0x02, 0x00, 0x00]),
        Ok(Packet::Disconnect(Disconnect::default()))
    );
}

#[test]
fn disconnect_5_errors() {
    for reason in [0x01, 0x05, 0x84, 0x88, 0x8A, 0x8C, 0x91, 0x92, 0xA3, 0xFF] {
        assert_protocol(decode_after(V5, &[0xE0, 0x01, reason]));
    }
    for reason in [
        0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x90, 0x93, 0xA2,
    ] {
        assert!(
            decode_after(V5, &[0xE0, 0x01, reason]).is_ok(),
            "{reason:02x}"
        );
    }
    assert_malformed(decode_after(V5, &[0xE0, 0x02, 0x04, 0x05]));
    assert_malformed(decode_after(V5, &[0xE0, 0x03, 0x04, 0x00, 0x00]));
    assert_protocol(decode_after(
        V5,
        &frame(0xE0, &[vec![0], props(&[p_u16(0x21, 1)])].concat()),
    ));
}

#[test]
fn auth_decodes() {
    assert_eq!(
        decode_after(V5, &[0xF0, 0x00]),
        Ok(Packet::Auth(Auth::default()))
    );
    let block = props(&[
        p_str(0x15, "SCRAM"),
        p_bin(0x16, &[1, 2]),
        p_str(0x1F, "go"),
        p_user("k", "v"),
    ]);
    assert_eq!(
        decode_after(V5, &frame(0xF0, &[vec![0x18], block].concat())),
        Ok(Packet::Auth(Auth {
            reason: ReasonCode::CONTINUE_AUTHENTICATION,
            method: Some("SCRAM".into()),
            data: Some(Bytes::from_static(&[1, 2])),
            reason_string: Some("go".into()),
            user_properties: vec![("k".into(), "v".into())],
        }))
    );
}

#[test]
fn auth_errors() {
    assert_protocol(decode_after(V5, &[0xF0, 0x02, 0x01, 0x00]));
    assert_malformed(decode_after(V5, &[0xF0, 0x01, 0x18]));
    assert_protocol(decode_after(
        V5,
        &frame(0xF0, &[vec![0x19], props(&[p_u32(0x11, 1)])].concat()),
    ));
    assert_malformed(decode_after(V3_1_1, &[0xF0, 0x00]));
    assert_malformed(decode_after(V3_1, &[0xF0, 0x00]));
}

#[test]
fn auth_round_trip() {
    let auths = [
        Auth::default(),
        Auth {
            reason: ReasonCode::REAUTHENTICATE,
            method: Some("SCRAM-SHA-1".into()),
            data: Some(Bytes::from_static(&[0, 0xFF, 0x80])),
            reason_string: Some("again".into()),
            user_properties: vec![("a".into(), "b".into()), ("a".into(), "b".into())],
        },
        Auth {
            reason: ReasonCode::SUCCESS,
            method: Some("m".into()),
            ..Auth::default()
        },
    ];
    for auth in auths {
        let mut buf = BytesMut::new();
        encode_auth(&mut buf, &auth);
        assert_eq!(decode_after(V5, &buf), Ok(Packet::Auth(auth)));
    }
}
