//! Encoders: byte-exact outputs for 3.x and 5, and round trips through
//! mqttbytes' client-side parsers.

use bytes::Bytes;
use mqttbytes::{v4, v5};

use super::*;
use crate::reason::ReasonCode;

pub(super) fn encoded(f: impl FnOnce(&mut BytesMut)) -> Vec<u8> {
    let mut buf = BytesMut::new();
    f(&mut buf);
    buf.to_vec()
}

/// The fixed header mqttbytes reads from `bytes`, which must be exactly one
/// packet, and the bytes to hand its parsers.
pub(super) fn for_mqttbytes(bytes: &[u8]) -> (mqttbytes::FixedHeader, Bytes) {
    let header = mqttbytes::check(bytes.iter(), usize::MAX).unwrap();
    assert_eq!(header.frame_length(), bytes.len());
    (header, Bytes::copy_from_slice(bytes))
}

fn connack(session_present: bool, reason: ReasonCode) -> ConnAck {
    ConnAck {
        session_present,
        reason,
        properties: ConnAckProperties::default(),
    }
}

#[test]
fn connack_3_x() {
    let cases = [
        (V3_1_1, true, ReasonCode::SUCCESS, [0x20, 0x02, 0x01, 0x00]),
        (V3_1_1, false, ReasonCode::SUCCESS, [0x20, 0x02, 0x00, 0x00]),
        (V3_1, true, ReasonCode::SUCCESS, [0x20, 0x02, 0x00, 0x00]),
        (
            V3_1_1,
            true,
            ReasonCode::NOT_AUTHORIZED,
            [0x20, 0x02, 0x00, 0x05],
        ),
        (
            V3_1_1,
            false,
            ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
            [0x20, 0x02, 0x00, 0x01],
        ),
        (
            V3_1,
            false,
            ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
            [0x20, 0x02, 0x00, 0x02],
        ),
        (
            V3_1_1,
            false,
            ReasonCode::SERVER_BUSY,
            [0x20, 0x02, 0x00, 0x03],
        ),
        (
            V3_1_1,
            false,
            ReasonCode::BAD_USER_NAME_OR_PASSWORD,
            [0x20, 0x02, 0x00, 0x04],
        ),
        (V3_1_1, false, ReasonCode::BANNED, [0x20, 0x02, 0x00, 0x05]),
    ];
    for (v, session_present, reason, expected) in cases {
        let bytes = encoded(|b| encode_connack(b, v, &connack(session_present, reason)));
        assert_eq!(bytes, expected, "{v:?} {reason}");
        let (h, f) = for_mqttbytes(&bytes);
        assert_eq!(
            v4::ConnAck::read(h, f).unwrap().session_present,
            expected[2] == 1
        );
    }
}

#[test]
fn connack_5() {
    let bytes = encoded(|b| encode_connack(b, V5, &connack(false, ReasonCode::SUCCESS)));
    assert_eq!(bytes, [0x20, 0x03, 0x00, 0x00, 0x00]);
    // Refusals never claim a session.
    let bytes = encoded(|b| encode_connack(b, V5, &connack(true, ReasonCode::BANNED)));
    assert_eq!(bytes, [0x20, 0x03, 0x00, 0x8A, 0x00]);

    let ack = ConnAck {
        session_present: true,
        reason: ReasonCode::SUCCESS,
        properties: ConnAckProperties {
            receive_maximum: Some(100),
            maximum_qos: Some(1),
            retain_available: Some(false),
            assigned_client_identifier: Some("abc".into()),
            topic_alias_maximum: Some(10),
            server_keep_alive: Some(30),
            ..ConnAckProperties::default()
        },
    };
    let bytes = encoded(|b| encode_connack(b, V5, &ack));
    #[rustfmt::skip]
    let expected = [
        0x20, 0x16, 0x01, 0x00, 0x13,
        0x21, 0x00, 0x64,
        0x24, 0x01,
        0x25, 0x00,
        0x12, 0x00, 0x03, b'a', b'b', b'c',
        0x22, 0x00, 0x0A,
        0x13, 0x00, 0x1E,
    ];
    assert_eq!(bytes, expected);
    let (h, f) = for_mqttbytes(&bytes);
    let parsed = v5::ConnAck::read(h, f).unwrap();
    assert!(parsed.session_present);
    let p = parsed.properties.unwrap();
    assert_eq!(p.assigned_client_identifier.as_deref(), Some("abc"));
    assert_eq!(
        (p.receive_max, p.max_qos, p.retain_available),
        (Some(100), Some(1), Some(0))
    );
    assert_eq!(
        (p.topic_alias_max, p.server_keep_alive),
        (Some(10), Some(30))
    );
}

#[test]
fn connack_5_every_property_round_trips() {
    let properties = ConnAckProperties {
        session_expiry_interval: Some(7),
        receive_maximum: Some(8),
        maximum_qos: Some(0),
        retain_available: Some(true),
        maximum_packet_size: Some(9),
        assigned_client_identifier: Some("id".into()),
        topic_alias_maximum: Some(11),
        reason_string: Some("why".into()),
        user_properties: vec![("k".into(), "v".into()), ("k".into(), "w".into())],
        wildcard_subscription_available: Some(false),
        subscription_identifiers_available: Some(true),
        shared_subscription_available: Some(false),
        server_keep_alive: Some(12),
        response_information: Some("ri".into()),
        server_reference: Some("sr".into()),
        authentication_method: Some("am".into()),
        authentication_data: Some(Bytes::from_static(&[1, 2])),
    };
    let ack = ConnAck {
        session_present: false,
        reason: ReasonCode::SUCCESS,
        properties,
    };
    let bytes = encoded(|b| encode_connack(b, V5, &ack));
    let (h, f) = for_mqttbytes(&bytes);
    let p = v5::ConnAck::read(h, f).unwrap().properties.unwrap();
    assert_eq!(p.session_expiry_interval, Some(7));
    assert_eq!(p.max_packet_size, Some(9));
    assert_eq!(p.reason_string.as_deref(), Some("why"));
    assert_eq!(p.user_properties.len(), 2);
    assert_eq!(p.wildcard_subscription_available, Some(0));
    assert_eq!(p.subscription_identifiers_available, Some(1));
    assert_eq!(p.shared_subscription_available, Some(0));
    assert_eq!(p.response_information.as_deref(), Some("ri"));
    assert_eq!(p.server_reference.as_deref(), Some("sr"));
    assert_eq!(p.authentication_method.as_deref(), Some("am"));
    assert_eq!(p.authentication_data.as_deref(), Some(&[1, 2][..]));
}

fn ack_with(reason: ReasonCode, reason_string: Option<&str>, users: &[(&str, &str)]) -> Ack {
    Ack {
        packet_id: pid(7),
        reason,
        reason_string: reason_string.map(str::to_owned),
        user_properties: users
            .iter()
            .map(|&(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
    }
}

#[test]
fn acks_3_x() {
    let kinds = [
        (AckKind::PubAck, 0x40),
        (AckKind::PubRec, 0x50),
        (AckKind::PubRel, 0x62),
        (AckKind::PubComp, 0x70),
    ];
    for (kind, byte1) in kinds {
        for v in [V3_1, V3_1_1] {
            // Reasons and properties do not exist in 3.x.
            let ack = ack_with(ReasonCode::NOT_AUTHORIZED, Some("x"), &[("k", "v")]);
            assert_eq!(
                encoded(|b| encode_ack(b, v, kind, &ack)),
                [byte1, 0x02, 0x00, 0x07]
            );
        }
        // The success form is the same in MQTT 5.
        let ack = Ack::new(pid(7));
        assert_eq!(
            encoded(|b| encode_ack(b, V5, kind, &ack)),
            [byte1, 0x02, 0x00, 0x07]
        );
    }
}

#[test]
fn acks_5() {
    let ack = ack_with(ReasonCode::NO_MATCHING_SUBSCRIBERS, None, &[]);
    let bytes = encoded(|b| encode_ack(b, V5, AckKind::PubAck, &ack));
    assert_eq!(bytes, [0x40, 0x03, 0x00, 0x07, 0x10]);
    let (h, f) = for_mqttbytes(&bytes);
    assert_eq!(
        v5::PubAck::read(h, f).unwrap().reason,
        v5::PubAckReason::NoMatchingSubscribers
    );

    let ack = ack_with(ReasonCode::NOT_AUTHORIZED, Some("no"), &[]);
    let bytes = encoded(|b| encode_ack(b, V5, AckKind::PubAck, &ack));
    assert_eq!(
        bytes,
        [
            0x40, 0x09, 0x00, 0x07, 0x87, 0x05, 0x1F, 0x00, 0x02, b'n', b'o'
        ]
    );
    let (h, f) = for_mqttbytes(&bytes);
    let parsed = v5::PubAck::read(h, f).unwrap();
    assert_eq!(
        parsed.properties.unwrap().reason_string.as_deref(),
        Some("no")
    );

    // Success with properties keeps the reason byte.
    let ack = ack_with(ReasonCode::SUCCESS, None, &[("k", "v")]);
    let bytes = encoded(|b| encode_ack(b, V5, AckKind::PubRel, &ack));
    assert_eq!(
        bytes,
        [
            0x62, 0x0B, 0x00, 0x07, 0x00, 0x07, 0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v'
        ]
    );
    let (h, f) = for_mqttbytes(&bytes);
    let parsed = v5::PubRel::read(h, f).unwrap();
    assert_eq!(
        parsed.properties.unwrap().user_properties,
        vec![("k".to_string(), "v".to_string())]
    );

    let ack = ack_with(ReasonCode::PACKET_IDENTIFIER_NOT_FOUND, None, &[]);
    assert_eq!(
        encoded(|b| encode_ack(b, V5, AckKind::PubComp, &ack)),
        [0x70, 0x03, 0x00, 0x07, 0x92]
    );
    let ack = ack_with(ReasonCode::QUOTA_EXCEEDED, None, &[]);
    assert_eq!(
        encoded(|b| encode_ack(b, V5, AckKind::PubRec, &ack)),
        [0x50, 0x03, 0x00, 0x07, 0x97]
    );
}

fn suback(reasons: &[u8], reason_string: Option<&str>) -> SubAck {
    SubAck {
        packet_id: pid(5),
        reasons: reasons.iter().map(|&r| ReasonCode(r)).collect(),
        reason_string: reason_string.map(str::to_owned),
        user_properties: vec![],
    }
}

#[test]
fn suback_3_x() {
    let ack = suback(
        &[0x00, 0x01, 0x02, 0x80, 0x87, 0x8F, 0xA2],
        Some("dropped in 3.x"),
    );
    for v in [V3_1, V3_1_1] {
        let bytes = encoded(|b| encode_suback(b, v, &ack));
        assert_eq!(
            bytes,
            [
                0x90, 0x09, 0x00, 0x05, 0x00, 0x01, 0x02, 0x80, 0x80, 0x80, 0x80
            ]
        );
        let (h, f) = for_mqttbytes(&bytes);
        assert_eq!(v4::SubAck::read(h, f).unwrap().return_codes.len(), 7);
    }
}

#[test]
fn suback_5() {
    let bytes = encoded(|b| encode_suback(b, V5, &suback(&[0x01, 0x8F], None)));
    assert_eq!(bytes, [0x90, 0x05, 0x00, 0x05, 0x00, 0x01, 0x8F]);
    let bytes = encoded(|b| encode_suback(b, V5, &suback(&[0x01, 0x9E], Some("x"))));
    assert_eq!(
        bytes,
        [
            0x90, 0x09, 0x00, 0x05, 0x04, 0x1F, 0x00, 0x01, b'x', 0x01, 0x9E
        ]
    );
    let (h, f) = for_mqttbytes(&bytes);
    let parsed = v5::SubAck::read(h, f).unwrap();
    assert_eq!(
        parsed.return_codes,
        [
            v5::SubscribeReasonCode::QoS1,
            v5::SubscribeReasonCode::SharedSubscriptionsNotSupported
        ]
    );
    // Any code is sent as given, even one mqttbytes has no name for.
    let bytes = encoded(|b| encode_suback(b, V5, &suback(&[0x9B], None)));
    assert_eq!(bytes, [0x90, 0x04, 0x00, 0x05, 0x00, 0x9B]);
}

#[test]
fn unsuback() {
    let ack = suback(&[0x00, 0x11], None);
    assert_eq!(
        encoded(|b| encode_unsuback(b, V3_1_1, &ack)),
        [0xB0, 0x02, 0x00, 0x05]
    );
    assert_eq!(
        encoded(|b| encode_unsuback(b, V3_1, &ack)),
        [0xB0, 0x02, 0x00, 0x05]
    );
    let bytes = encoded(|b| encode_unsuback(b, V5, &ack));
    assert_eq!(bytes, [0xB0, 0x05, 0x00, 0x05, 0x00, 0x00, 0x11]);
    let (h, f) = for_mqttbytes(&bytes);
    assert_eq!(v5::UnsubAck::read(h, f).unwrap().reasons.len(), 2);
    let ack = SubAck {
        user_properties: vec![("a".into(), "b".into())],
        ..suback(&[0x87], None)
    };
    let bytes = encoded(|b| encode_unsuback(b, V5, &ack));
    assert_eq!(
        bytes,
        [
            0xB0, 0x0B, 0x00, 0x05, 0x07, 0x26, 0x00, 0x01, b'a', 0x00, 0x01, b'b', 0x87
        ]
    );
}

#[test]
fn pingresp() {
    assert_eq!(encoded(encode_pingresp), [0xD0, 0x00]);
}

#[test]
fn disconnect() {
    assert_eq!(
        encoded(|b| encode_disconnect(b, &Disconnect::default())),
        [0xE0, 0x00]
    );
    let d = Disconnect {
        reason: ReasonCode::SESSION_TAKEN_OVER,
        ..Disconnect::default()
    };
    let bytes = encoded(|b| encode_disconnect(b, &d));
    assert_eq!(bytes, [0xE0, 0x02, 0x8E, 0x00]);
    let (h, f) = for_mqttbytes(&bytes);
    assert_eq!(
        v5::Disconnect::read(h, f).unwrap().reason_code,
        v5::DisconnectReasonCode::SessionTakenOver
    );

    let d = Disconnect {
        reason: ReasonCode::USE_ANOTHER_SERVER,
        session_expiry_interval: Some(0),
        reason_string: Some("bye".into()),
        user_properties: vec![],
        server_reference: Some("s2".into()),
    };
    let bytes = encoded(|b| encode_disconnect(b, &d));
    #[rustfmt::skip]
    let expected = [
        0xE0, 0x12, 0x9C, 0x10,
        0x11, 0x00, 0x00, 0x00, 0x00,
        0x1F, 0x00, 0x03, b'b', b'y', b'e',
        0x1C, 0x00, 0x02, b's', b'2',
    ];
    assert_eq!(bytes, expected);
    let (h, f) = for_mqttbytes(&bytes);
    let parsed = v5::Disconnect::read(h, f).unwrap();
    let p = parsed.properties.unwrap();
    assert_eq!(
        (p.session_expiry_interval, p.server_reference.as_deref()),
        (Some(0), Some("s2"))
    );
    // A success with properties keeps them.
    let d = Disconnect {
        reason_string: Some("x".into()),
        ..Disconnect::default()
    };
    assert_eq!(
        encoded(|b| encode_disconnect(b, &d)),
        [0xE0, 0x06, 0x00, 0x04, 0x1F, 0x00, 0x01, b'x']
    );
}

#[test]
fn auth() {
    assert_eq!(encoded(|b| encode_auth(b, &Auth::default())), [0xF0, 0x00]);
    let a = Auth {
        reason: ReasonCode::CONTINUE_AUTHENTICATION,
        method: Some("SCRAM".into()),
        data: Some(Bytes::from_static(&[1, 2, 3])),
        ..Auth::default()
    };
    #[rustfmt::skip]
    let expected = [
        0xF0, 0x10, 0x18, 0x0E,
        0x15, 0x00, 0x05, b'S', b'C', b'R', b'A', b'M',
        0x16, 0x00, 0x03, 0x01, 0x02, 0x03,
    ];
    assert_eq!(encoded(|b| encode_auth(b, &a)), expected);
    let a = Auth {
        reason: ReasonCode::REAUTHENTICATE,
        ..Auth::default()
    };
    assert_eq!(encoded(|b| encode_auth(b, &a)), [0xF0, 0x02, 0x19, 0x00]);
}

#[test]
fn overlong_strings_are_cut_and_the_lengths_stay_consistent() {
    let d = Disconnect {
        reason: ReasonCode::UNSPECIFIED_ERROR,
        reason_string: Some("x".repeat(70_000)),
        ..Disconnect::default()
    };
    let bytes = encoded(|b| encode_disconnect(b, &d));
    let (h, f) = for_mqttbytes(&bytes);
    let parsed = v5::Disconnect::read(h, f).unwrap();
    assert_eq!(
        parsed.properties.unwrap().reason_string.unwrap().len(),
        65_535
    );
}
