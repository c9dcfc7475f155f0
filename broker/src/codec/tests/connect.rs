//! CONNECT decoding in MQTT 3.1, 3.1.1 and 5.

use super::*;
use crate::reason::ReasonCode;

fn decode_connect(bytes: &[u8]) -> (Decoder, Result<Packet, DecodeError>) {
    let mut d = Decoder::new(MAX);
    let r = decode_bytes(&mut d, bytes);
    (d, r)
}

#[track_caller]
fn unwrap_connect(r: Result<Packet, DecodeError>) -> Connect {
    match r {
        Ok(Packet::Connect(c)) => *c,
        other => panic!("expected CONNECT, got {other:?}"),
    }
}

#[test]
fn mqtt_3_1_connect_decodes_as_v3_1() {
    let (d, r) = decode_connect(&connect_packet("MQIsdp", 3, 0x02, None, &s("client")));
    let c = unwrap_connect(r);
    assert_eq!(d.version(), Some(V3_1));
    assert_eq!(
        c,
        Connect {
            version: V3_1,
            clean_start: true,
            keep_alive: 60,
            client_id: "client".into(),
            will: None,
            username: None,
            password: None,
            properties: ConnectProperties::default(),
        }
    );
}

#[test]
fn mqtt_3_1_1_connect_with_will_username_and_binary_password() {
    let payload = [
        s("id"),
        s("will/t"),
        bin(&[0, 1, 2]),
        s("user"),
        bin(&[0xFF, 0xFE, 0x00]),
    ]
    .concat();
    // user name, password, will retain, will QoS 1, will (clean start off)
    let flags = 0x80 | 0x40 | 0x20 | 0x08 | 0x04;
    let (d, r) = decode_connect(&connect_packet("MQTT", 4, flags, None, &payload));
    let c = unwrap_connect(r);
    assert_eq!(d.version(), Some(V3_1_1));
    assert_eq!(c.version, V3_1_1);
    assert!(!c.clean_start);
    assert_eq!(c.client_id, "id");
    assert_eq!(c.username.as_deref(), Some("user"));
    assert_eq!(c.password.as_deref(), Some(&[0xFF, 0xFE, 0x00][..]));
    assert_eq!(
        c.will,
        Some(Will {
            topic: "will/t".into(),
            payload: bytes::Bytes::from_static(&[0, 1, 2]),
            qos: QoS::AtLeastOnce,
            retain: true,
            delay_interval: None,
            message_expiry_interval: None,
            properties: MessageProperties::default(),
        })
    );
}

#[test]
fn mqtt_5_connect_with_properties_will_and_binary_password() {
    let (d, r) = decode_connect(&full_v5_connect());
    let c = unwrap_connect(r);
    assert_eq!(d.version(), Some(V5));
    assert_eq!(
        c,
        Connect {
            version: V5,
            clean_start: true,
            keep_alive: 60,
            client_id: "client".into(),
            will: Some(Will {
                topic: "will/t".into(),
                payload: bytes::Bytes::from_static(b"bye"),
                qos: QoS::ExactlyOnce,
                retain: true,
                delay_interval: Some(5),
                message_expiry_interval: Some(60),
                properties: MessageProperties {
                    payload_format_indicator: Some(1),
                    content_type: Some("text/plain".into()),
                    response_topic: Some("resp/t".into()),
                    correlation_data: Some(bytes::Bytes::from_static(&[9])),
                    user_properties: vec![("k".into(), "v".into())],
                },
            }),
            username: Some("u".into()),
            password: Some(bytes::Bytes::from_static(&[0xC3, 0x28])),
            properties: ConnectProperties {
                session_expiry_interval: Some(120),
                receive_maximum: Some(10),
                maximum_packet_size: Some(1000),
                topic_alias_maximum: Some(5),
                request_response_information: Some(true),
                request_problem_information: Some(false),
                user_properties: vec![("a".into(), "b".into()), ("a".into(), "c".into())],
                authentication_method: Some("SCRAM".into()),
                authentication_data: Some(bytes::Bytes::from_static(&[1, 2])),
            },
        }
    );
}

#[test]
fn empty_client_id_is_accepted() {
    let (_, r) = decode_connect(&connect_packet("MQTT", 4, 0x02, None, &s("")));
    assert_eq!(unwrap_connect(r).client_id, "");
}

#[test]
fn bad_protocol_name_is_unsupported() {
    for (name, level) in [("MQTX", 4), ("MQIsdp", 4), ("mqtt", 5), ("", 4)] {
        let (d, r) = decode_connect(&connect_packet(name, level, 0x02, None, &s("c")));
        assert_eq!(
            r,
            Err(DecodeError::UnsupportedProtocol {
                name: name.into(),
                level
            })
        );
        assert_eq!(d.version(), None);
    }
}

#[test]
fn bad_protocol_level_is_unsupported() {
    for (name, level) in [("MQTT", 3), ("MQTT", 6), ("MQTT", 0), ("MQIsdp", 5)] {
        let (d, r) = decode_connect(&connect_packet(name, level, 0x02, None, &s("c")));
        let err = r.unwrap_err();
        assert_eq!(
            err,
            DecodeError::UnsupportedProtocol {
                name: name.into(),
                level
            }
        );
        assert_eq!(err.reason_code(), ReasonCode::UNSUPPORTED_PROTOCOL_VERSION);
        assert_eq!(d.version(), None);
    }
}

#[test]
fn version_is_known_when_the_rest_of_connect_is_refused() {
    // Reserved flag set, after a valid name and level.
    for (name, level, v) in [("MQIsdp", 3, V3_1), ("MQTT", 4, V3_1_1), ("MQTT", 5, V5)] {
        let props = v.is_v5().then(|| props(&[]));
        let (d, r) = decode_connect(&connect_packet(name, level, 0x03, props, &s("c")));
        assert_malformed(r);
        assert_eq!(d.version(), Some(v));
    }
    // A v5 CONNECT whose properties are refused.
    let (d, r) = decode_connect(&connect_packet(
        "MQTT",
        5,
        0x02,
        Some(props(&[p_u16(0x21, 0)])),
        &s("c"),
    ));
    assert_protocol(r);
    assert_eq!(d.version(), Some(V5));
    // Cut short right after the level.
    let (d, r) = decode_connect(&frame(0x10, &[s("MQTT"), vec![5]].concat()));
    assert_malformed(r);
    assert_eq!(d.version(), Some(V5));
}

#[test]
fn reserved_connect_flag_is_malformed() {
    assert_malformed(decode_connect(&connect_packet("MQTT", 4, 0x01, None, &s("c"))).1);
}

#[test]
fn will_qos_or_retain_without_will_is_malformed() {
    for flags in [0x08, 0x10, 0x18, 0x20, 0x28] {
        assert_malformed(decode_connect(&connect_packet("MQTT", 4, flags, None, &s("c"))).1);
        let props = Some(props(&[]));
        assert_malformed(decode_connect(&connect_packet("MQTT", 5, flags, props, &s("c"))).1);
    }
}

#[test]
fn will_qos_3_is_malformed() {
    let payload = [s("c"), s("w"), bin(b"x")].concat();
    assert_malformed(decode_connect(&connect_packet("MQTT", 4, 0x04 | 0x18, None, &payload)).1);
}

#[test]
fn password_without_username() {
    let payload = [s("c"), bin(b"secret")].concat();
    assert_malformed(decode_connect(&connect_packet("MQIsdp", 3, 0x40, None, &payload)).1);
    assert_malformed(decode_connect(&connect_packet("MQTT", 4, 0x40, None, &payload)).1);
    let (_, r) = decode_connect(&connect_packet("MQTT", 5, 0x40, Some(props(&[])), &payload));
    let c = unwrap_connect(r);
    assert_eq!(c.username, None);
    assert_eq!(c.password.as_deref(), Some(&b"secret"[..]));
}

#[test]
fn bad_will_topics() {
    for topic in ["a/+", "#", ""] {
        let payload = [s("c"), s(topic), bin(b"x")].concat();
        assert_malformed(decode_connect(&connect_packet("MQTT", 4, 0x04, None, &payload)).1);
    }
    // Will properties with a response topic that is not a topic name.
    let payload = [s("c"), props(&[p_str(0x08, "a/#")]), s("w"), bin(b"x")].concat();
    assert_protocol(decode_connect(&connect_packet("MQTT", 5, 0x04, Some(props(&[])), &payload)).1);
    // Payload Format Indicator 2.
    let payload = [s("c"), props(&[p_u8(0x01, 2)]), s("w"), bin(b"x")].concat();
    assert_protocol(decode_connect(&connect_packet("MQTT", 5, 0x04, Some(props(&[])), &payload)).1);
    // A CONNECT property among the will properties.
    let payload = [s("c"), props(&[p_u32(0x11, 2)]), s("w"), bin(b"x")].concat();
    assert_protocol(decode_connect(&connect_packet("MQTT", 5, 0x04, Some(props(&[])), &payload)).1);
}

#[test]
fn connect_property_rules() {
    let cases: [(Vec<u8>, bool); 12] = [
        (p_u16(0x21, 0), true),                            // Receive Maximum 0
        (p_u32(0x27, 0), true),                            // Maximum Packet Size 0
        (p_u8(0x19, 2), true),                             // Request Response Information 2
        (p_u8(0x17, 7), true),                             // Request Problem Information 7
        (p_bin(0x16, &[1]), true),                         // data without method
        ([p_u32(0x11, 1), p_u32(0x11, 2)].concat(), true), // duplicate
        (p_u16(0x23, 1), true),                            // Topic Alias: not in CONNECT
        (p_str(0x1F, "x"), true),                          // Reason String: not in CONNECT
        (p_u8(0x24, 1), true),                             // Maximum QoS: server only
        (vec![0x7F, 0x00], false),                         // not a property
        (vec![0x11, 0x00, 0x00], false),                   // value runs past the block
        ([vec![0x26], s("k"), vec![0x00, 0x01, 0x00]].concat(), false), // NUL in a value
    ];
    for (prop, protocol_error) in cases {
        let block = [varint(prop.len()), prop.clone()].concat();
        let r = decode_connect(&connect_packet("MQTT", 5, 0x02, Some(block), &s("c"))).1;
        if protocol_error {
            assert_protocol(r);
        } else {
            assert_malformed(r);
        }
    }
    // The property length runs past the packet.
    let r = decode_connect(&connect_packet("MQTT", 5, 0x02, Some(vec![0x20]), &s("c"))).1;
    assert_malformed(r);
    // No property length at all.
    let r = decode_connect(&connect_packet("MQTT", 5, 0x02, None, &[])).1;
    assert_malformed(r);
}

#[test]
fn bad_strings_are_malformed() {
    assert_malformed(decode_connect(&connect_packet("MQTT", 4, 0x02, None, &bin(&[0xC3, 0x28]))).1);
    assert_malformed(decode_connect(&connect_packet("MQTT", 4, 0x02, None, &s("a\0b"))).1);
    let payload = [s("c"), bin(&[0xFF])].concat();
    assert_malformed(decode_connect(&connect_packet("MQTT", 4, 0x80, None, &payload)).1);
}

#[test]
fn bytes_after_the_payload_are_malformed() {
    let payload = [s("c"), vec![0]].concat();
    assert_malformed(decode_connect(&connect_packet("MQTT", 4, 0x02, None, &payload)).1);
    // A flag-less password is just trailing bytes.
    let payload = [s("c"), bin(b"pw")].concat();
    assert_malformed(decode_connect(&connect_packet("MQTT", 4, 0x02, None, &payload)).1);
}

#[test]
fn connect_cut_short_is_malformed_not_incomplete() {
    // Fully framed, but the body ends in the middle of the protocol name.
    assert_malformed(decode_connect(&[0x10, 0x02, 0x00, 0x04]).1);
    // Ends before keep alive.
    assert_malformed(decode_connect(&frame(0x10, &[s("MQTT"), vec![4, 2]].concat())).1);
}

#[test]
fn further_connect_decodes_with_the_established_version() {
    let mut d = connected(V5);
    let p = decode_bytes(&mut d, &full_v5_connect()).unwrap();
    assert!(matches!(p, Packet::Connect(c) if c.version == V5));
    assert_eq!(d.version(), Some(V5));

    let mut d = connected(V3_1_1);
    assert!(matches!(
        decode_bytes(&mut d, &minimal_connect(V3_1_1)),
        Ok(Packet::Connect(_))
    ));
    // Another version, or an unknown one, is a protocol error now.
    assert_protocol(decode_bytes(&mut d, &minimal_connect(V5)));
    assert_protocol(decode_bytes(
        &mut d,
        &connect_packet("MQTT", 9, 0, None, &s("c")),
    ));
    assert_eq!(d.version(), Some(V3_1_1));
}
