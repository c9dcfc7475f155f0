//! Topic names and filters a client controls: depth (`limits.max_topic_levels`,
//! default 128) and length (`limits.max_topic_length`, default 4096
//! bytes); publishing under `$SYS`; variable byte integers in their
//! shortest form only.

use super::{accepted, closed_without_answer, ping, puback_v5, topic_of, v4, v5};
use crate::support::hostile::*;
use crate::support::packets::*;
use crate::support::{Raw, TestBroker};

/// Default `limits.max_topic_levels`.
const MAX_LEVELS: usize = 128;
/// Default `limits.max_topic_length`, in bytes.
const MAX_LENGTH: usize = 4096;

/// Topics over a default limit: too deep, and too long (in one level).
fn hostile_topics() -> [(&'static str, String); 2] {
    [
        ("200 levels", levels(200)),
        ("4097 bytes", "t".repeat(MAX_LENGTH + 1)),
    ]
}

/// Subscribes `raw` (MQTT 5) to `filter` at QoS 0; returns the SUBACK code.
async fn subscribe_code_v5(raw: &mut Raw, pkid: u16, filter: &str) -> u8 {
    raw.send(&subscribe_v5(pkid, vec![filter_v5(filter, 0)], None))
        .await;
    let ack = raw.recv_kind(9).await;
    assert_eq!(ack.packet_id(), pkid);
    ack.ack_codes(true)[0]
}

/// Subscribes `raw` (MQTT 3.1.1) to `filter` at QoS 0; returns the SUBACK
/// code.
async fn subscribe_code_v4(raw: &mut Raw, pkid: u16, filter: &str) -> u8 {
    raw.send(&subscribe_v4(pkid, filter, 0)).await;
    let ack = raw.recv_kind(9).await;
    assert_eq!(ack.packet_id(), pkid);
    ack.ack_codes(false)[0]
}

#[tokio::test]
async fn deep_and_long_publish_topics_are_refused_on_mqtt5() {
    let broker = TestBroker::start();
    let mut watcher = Raw::handshake(broker.addr, &v5("deep-watcher")).await;
    assert_eq!(subscribe_code_v5(&mut watcher, 1, "#").await, 0);
    let mut raw = Raw::handshake(broker.addr, &v5("deep-pub")).await;
    for (what, topic) in hostile_topics() {
        // QoS 1: PUBACK 0x90 Topic Name invalid.
        assert_eq!(
            puback_v5(&mut raw, 1, &topic, b"x", false).await,
            0x90,
            "{what}"
        );
        // QoS 2: PUBREC 0x90, which ends the flow.
        raw.send(&publish_v5(&topic, 2, 2, b"x", None)).await;
        let rec = raw.recv().await;
        assert_eq!((rec.kind(), rec.packet_id()), (5, 2), "{what}: PUBREC");
        assert_eq!(rec.ack_reason(), 0x90, "{what}");
        // QoS 0: dropped without a word.
        raw.send(&publish_v5(&topic, 0, 0, b"x", None)).await;
        ping(&mut raw).await;
    }
    // None of them reached the `#` subscriber: the next thing it gets
    // from this publisher is the marker sent after them.
    assert!(accepted(
        puback_v5(&mut raw, 3, "marker", b"x", false).await
    ));
    assert_eq!(topic_of(&watcher.recv_kind(3).await), "marker");
}

#[tokio::test]
async fn deep_and_long_publish_topics_close_an_mqtt3_connection() {
    let broker = TestBroker::start();
    for (what, topic) in hostile_topics() {
        let mut raw = Raw::handshake(broker.addr, &v4("deep-pub3")).await;
        // `plugins.publish_refusal_v3` defaults to "disconnect".
        raw.send(&publish_v4(&topic, 1, 1, b"x", false)).await;
        closed_without_answer(&mut raw, what).await;
    }
}

#[tokio::test]
async fn deep_and_long_filters_are_refused_in_suback() {
    let broker = TestBroker::start();
    let mut raw5 = Raw::handshake(broker.addr, &v5("deep-sub5")).await;
    let mut raw4 = Raw::handshake(broker.addr, &v4("deep-sub4")).await;
    for (what, filter) in hostile_topics() {
        // 0x8F Topic Filter invalid; 0x80 Failure for MQTT 3.1.1.
        assert_eq!(
            subscribe_code_v5(&mut raw5, 1, &filter).await,
            0x8F,
            "{what}"
        );
        assert_eq!(
            subscribe_code_v4(&mut raw4, 1, &filter).await,
            0x80,
            "{what}"
        );
        let shared = format!("$share/g/{filter}");
        assert_eq!(
            subscribe_code_v5(&mut raw5, 2, &shared).await,
            0x8F,
            "shared, {what}"
        );
    }
    ping(&mut raw5).await;
    ping(&mut raw4).await;
}

#[tokio::test]
async fn deep_and_long_will_topics_are_refused_at_connect() {
    let broker = TestBroker::start();
    for (what, topic) in hostile_topics() {
        // 0x90 Topic Name invalid; MQTT 3.x has no such code: 0x05.
        let will = connect_v5_full(
            "deep-will",
            true,
            60,
            |_| {},
            Some(will_v5(&topic, b"w", None)),
        );
        let (_, ack) = connect_answer(broker.addr, &will).await;
        assert_eq!(ack.connack().1, 0x90, "{what}");
        let will = connect_v4_will("deep-will3", true, &topic, b"w", 1, false);
        let (_, ack) = connect_answer(broker.addr, &will).await;
        assert_eq!(ack.connack().1, 0x05, "{what}");
    }
    assert!(broker.ctx.registry.is_empty(), "no session was created");
}

#[tokio::test]
async fn default_topic_limits_are_128_levels_and_4096_bytes() {
    let broker = TestBroker::start();
    let mut raw = Raw::handshake(broker.addr, &v5("bounds")).await;
    let at = [levels(MAX_LEVELS), "t".repeat(MAX_LENGTH)];
    let over = [levels(MAX_LEVELS + 1), "t".repeat(MAX_LENGTH + 1)];
    for topic in &at {
        assert!(accepted(puback_v5(&mut raw, 1, topic, b"x", false).await));
        assert_eq!(subscribe_code_v5(&mut raw, 2, topic).await, 0);
    }
    for topic in &over {
        assert_eq!(puback_v5(&mut raw, 3, topic, b"x", false).await, 0x90);
        assert_eq!(subscribe_code_v5(&mut raw, 4, topic).await, 0x8F);
    }
    // `$share/g/` counts towards the length, not the levels.
    let shared = format!("$share/g/{}", levels(MAX_LEVELS));
    assert_eq!(subscribe_code_v5(&mut raw, 5, &shared).await, 0);
    let shared = format!(
        "$share/g/{}",
        "t".repeat(MAX_LENGTH - "$share/g/".len() + 1)
    );
    assert_eq!(subscribe_code_v5(&mut raw, 6, &shared).await, 0x8F);
}

#[tokio::test]
async fn max_topic_levels_is_configurable() {
    let broker = toml_broker("[limits]\nmax_topic_levels = 8\n", |_| {});
    let mut sub = Raw::handshake(broker.addr, &v5("levels-sub")).await;
    let mut publisher = Raw::handshake(broker.addr, &v5("levels-pub")).await;
    assert_eq!(subscribe_code_v5(&mut sub, 1, &levels(8)).await, 0);
    assert_eq!(subscribe_code_v5(&mut sub, 2, &levels(9)).await, 0x8F);
    assert_eq!(
        subscribe_code_v5(&mut sub, 3, &format!("$share/g/{}", levels(8))).await,
        0
    );
    assert_eq!(
        puback_v5(&mut publisher, 1, &levels(9), b"x", false).await,
        0x90
    );
    assert_eq!(
        puback_v5(&mut publisher, 2, &levels(8), b"x", false).await,
        0
    );
    assert_eq!(topic_of(&sub.recv_kind(3).await), levels(8));
}

#[tokio::test]
async fn clients_cannot_publish_to_sys() {
    let broker = TestBroker::start();
    let mut sys = Raw::handshake(broker.addr, &v5("sys-sub")).await;
    assert_eq!(subscribe_code_v5(&mut sys, 1, "$SYS/#").await, 0);
    assert_eq!(subscribe_code_v5(&mut sys, 2, "marker").await, 0);
    let mut raw = Raw::handshake(broker.addr, &v5("sys-pub")).await;
    for topic in ["$SYS/broker/uptime", "$SYS"] {
        // Refused like an unauthorized publish: 0x87 Not authorized.
        assert_eq!(
            puback_v5(&mut raw, 1, topic, b"x", true).await,
            0x87,
            "{topic}"
        );
        let mut qos2 = publish_v5(topic, 2, 2, b"x", None);
        qos2[0] |= 0x01;
        raw.send(&qos2).await;
        let rec = raw.recv_kind(5).await;
        assert_eq!(rec.ack_reason(), 0x87, "{topic}: PUBREC");
        let mut qos0 = publish_v5(topic, 0, 0, b"x", None);
        qos0[0] |= 0x01;
        raw.send(&qos0).await;
    }
    // Nothing reached the `$SYS/#` subscriber before the marker.
    assert!(accepted(puback_v5(&mut raw, 3, "marker", b"x", true).await));
    assert_eq!(topic_of(&sys.recv_kind(3).await), "marker");
    // And nothing was retained: a new subscriber to `$SYS/#` then to the
    // (retained) marker gets the marker first.
    let mut late = Raw::handshake(broker.addr, &v5("sys-late")).await;
    assert_eq!(subscribe_code_v5(&mut late, 1, "$SYS/#").await, 0);
    assert_eq!(subscribe_code_v5(&mut late, 2, "marker").await, 0);
    assert_eq!(topic_of(&late.recv_kind(3).await), "marker");
}

#[tokio::test]
async fn an_mqtt3_publish_to_sys_closes_the_connection() {
    let broker = TestBroker::start();
    let mut raw = Raw::handshake(broker.addr, &v4("sys-pub3")).await;
    raw.send(&publish_v4("$SYS/broker/uptime", 1, 1, b"0 seconds", true))
        .await;
    closed_without_answer(&mut raw, "publish to $SYS").await;
    // Not retained either: a new subscriber to `$SYS/#` then to a retained
    // marker gets the marker first.
    let mut marker = Raw::handshake(broker.addr, &v4("sys-marker3")).await;
    marker.send(&publish_v4("marker", 1, 1, b"m", true)).await;
    marker.recv_kind(4).await;
    let mut late = Raw::handshake(broker.addr, &v4("sys-late3")).await;
    assert_eq!(subscribe_code_v4(&mut late, 1, "$SYS/#").await, 0);
    assert_eq!(subscribe_code_v4(&mut late, 2, "marker").await, 0);
    assert_eq!(topic_of(&late.recv_kind(3).await), "marker");
}

#[tokio::test]
async fn non_minimal_variable_byte_integers_are_malformed() {
    let broker = TestBroker::start();
    // A PUBLISH (remaining length under 128) with its remaining length in
    // two bytes: `len|80 00`.
    let publish = publish_v5("nonmin", 0, 0, b"xxxx", None);
    assert!(publish[1] < 0x80);
    let mut long_publish = vec![publish[0], publish[1] | 0x80, 0x00];
    long_publish.extend_from_slice(&publish[2..]);
    // A PUBLISH with its property length (0) in two bytes: `80 00`.
    let long_props = frame(
        0x30,
        &[&[0, 6][..], b"nonmin", &[0x80, 0x00], b"xxxx"].concat(),
    );
    let cases = [
        ("PINGREQ, remaining length 80 00", vec![0xC0, 0x80, 0x00]),
        ("PUBLISH, remaining length in two bytes", long_publish),
        ("PUBLISH, property length 80 00", long_props),
    ];
    for (what, bytes) in cases {
        // MQTT 5: DISCONNECT 0x81 Malformed Packet.
        let mut raw = Raw::handshake(broker.addr, &v5("nonmin")).await;
        raw.send(&bytes).await;
        let frames = raw.expect_closed().await;
        assert_eq!(
            frames.iter().map(|f| f.kind()).collect::<Vec<_>>(),
            [14],
            "{what}: only a DISCONNECT, got {frames:?}"
        );
        assert_eq!(frames[0].disconnect_reason(), 0x81, "{what}");
    }
    // MQTT 3.1.1: closed.
    let mut raw = Raw::handshake(broker.addr, &v4("nonmin3")).await;
    raw.send(&[0xC0, 0x80, 0x00]).await;
    closed_without_answer(&mut raw, "PINGREQ, remaining length 80 00").await;
}
