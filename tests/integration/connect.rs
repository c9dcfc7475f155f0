//! CONNECT: protocol versions, refusals, client-id rules, keep alive,
//! takeover, anonymous access.

use std::time::{Duration, Instant};

use crate::support::packets::*;
use crate::support::rumqtt::{V4, V5};
use crate::support::{Raw, TestBroker, eventually};

#[tokio::test]
async fn all_three_protocol_levels_connect() {
    let broker = TestBroker::start();
    // 3.1 by hand: no client library here speaks it.
    let mut raw = Raw::connect(broker.addr).await;
    raw.send(&connect_v31("old-client", true)).await;
    let ack = raw.recv().await;
    assert_eq!(ack.byte1, 0x20);
    assert_eq!(ack.connack(), (false, 0));
    raw.send(&PINGREQ).await;
    assert_eq!(raw.recv().await.kind(), 13, "PINGRESP");

    let v4 = V4::connect(broker.addr, "c311").await;
    assert!(!v4.session_present);
    let v5 = V5::connect(broker.addr, "c5").await;
    assert!(!v5.connack.session_present);
    eventually("three clients connected", || broker.ctx.registry.len() == 3).await;
}

#[tokio::test]
async fn unsupported_protocols_are_refused_with_connack() {
    let broker = TestBroker::start();
    for (name, level, expect) in [
        ("MQTT", 6, (0x20, 0x01)),
        ("MQTT", 3, (0x20, 0x01)),
        ("MQIsdp", 4, (0x20, 0x01)),
        ("HTTP", 4, (0x20, 0x01)),
        // Asked for level 5 with a wrong name: a v5-format refusal.
        ("MQTX", 5, (0x20, 0x84)),
    ] {
        let mut raw = Raw::connect(broker.addr).await;
        raw.send(&connect_raw(name, level, "x")).await;
        let frames = raw.expect_closed().await;
        assert_eq!(frames.len(), 1, "{name}/{level}: {frames:?}");
        assert_eq!(
            (frames[0].byte1, frames[0].connack().1),
            expect,
            "{name}/{level}"
        );
    }
}

#[tokio::test]
async fn second_connect_is_a_protocol_violation() {
    let broker = TestBroker::start();
    let mut v5 = Raw::handshake(broker.addr, &connect_v5("twice5", true, 60, |_| {})).await;
    v5.send(&connect_v5("twice5", true, 60, |_| {})).await;
    let frames = v5.expect_closed().await;
    assert_eq!(frames.last().map(|f| f.disconnect_reason()), Some(0x82));

    let mut v4 = Raw::handshake(broker.addr, &connect_v4("twice4", true, 60)).await;
    v4.send(&connect_v4("twice4", true, 60)).await;
    assert!(v4.expect_closed().await.is_empty(), "3.1.1 just closes");
}

#[tokio::test]
async fn client_id_rules_per_version() {
    let broker = TestBroker::start();
    // 3.1: at most 23 characters.
    let mut raw = Raw::connect(broker.addr).await;
    raw.send(&connect_v31(&"x".repeat(24), true)).await;
    assert_eq!(raw.expect_closed().await[0].connack(), (false, 0x02));
    let mut raw = Raw::connect(broker.addr).await;
    raw.send(&connect_v31(&"x".repeat(23), true)).await;
    assert_eq!(raw.recv().await.connack(), (false, 0));

    // 3.1.1: empty only with clean session.
    let mut raw = Raw::connect(broker.addr).await;
    raw.send(&connect_v4("", false, 60)).await;
    assert_eq!(raw.expect_closed().await[0].connack(), (false, 0x02));
    let mut raw = Raw::connect(broker.addr).await;
    raw.send(&connect_v4("", true, 60)).await;
    assert_eq!(raw.recv().await.connack(), (false, 0));

    // 5: an empty id is assigned and returned.
    let mut raw = Raw::connect(broker.addr).await;
    raw.send(&connect_v5("", true, 60, |_| {})).await;
    let ack = raw.recv().await.connack_v5();
    let assigned = ack
        .properties
        .and_then(|p| p.assigned_client_identifier)
        .expect("assigned client id");
    assert!(!assigned.is_empty());
    eventually("assigned session registered", || {
        broker
            .ctx
            .registry
            .get(&sluice_broker::session::SubscriberId {
                mountpoint: "".into(),
                client_id: sluice_broker::topic::ClientId::new(&assigned).expect("valid"),
            })
            .is_some()
    })
    .await;
}

#[tokio::test]
async fn keep_alive_is_enforced_at_one_and_a_half_times() {
    let broker = TestBroker::start();
    let mut raw = Raw::handshake(broker.addr, &connect_v5("sleepy", true, 1, |_| {})).await;
    let started = Instant::now();
    let frames = raw.expect_closed().await;
    let waited = started.elapsed();
    assert_eq!(frames.last().map(|f| f.disconnect_reason()), Some(0x8D));
    assert!(
        waited >= Duration::from_millis(1400),
        "closed after {waited:?}"
    );

    // Traffic keeps the connection alive past 1.5 s.
    let mut raw = Raw::handshake(broker.addr, &connect_v4("chatty", true, 1)).await;
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        raw.send(&PINGREQ).await;
        assert_eq!(raw.recv().await.kind(), 13);
    }
}

#[tokio::test]
async fn keep_alive_zero_means_no_timeout() {
    let broker = TestBroker::start();
    let mut raw = Raw::handshake(broker.addr, &connect_v4("forever", true, 0)).await;
    // Longer than any keep alive the broker could have defaulted to in
    // this test's time budget; the connection must still answer.
    raw.expect_silence(Duration::from_secs(2)).await;
    raw.send(&PINGREQ).await;
    assert_eq!(raw.recv().await.kind(), 13);
}

#[tokio::test]
async fn server_keep_alive_cap() {
    let broker = TestBroker::with(|c| c.mqtt.max_keepalive = 1);
    // MQTT 5: told the server's value, then held to it.
    let mut raw = Raw::connect(broker.addr).await;
    raw.send(&connect_v5("capped", true, 0, |_| {})).await;
    let ack = raw.recv().await.connack_v5();
    assert_eq!(ack.properties.and_then(|p| p.server_keep_alive), Some(1));
    let frames = raw.expect_closed().await;
    assert_eq!(frames.last().map(|f| f.disconnect_reason()), Some(0x8D));
    // MQTT 3.1.1 cannot be told: refused, as mosquitto does.
    let mut raw = Raw::connect(broker.addr).await;
    raw.send(&connect_v4("capped3", true, 60)).await;
    assert_eq!(raw.expect_closed().await[0].connack(), (false, 0x02));
}

#[tokio::test]
async fn takeover_disconnects_the_older_connection() {
    let broker = TestBroker::start();
    let mut first = Raw::handshake(
        broker.addr,
        &connect_v5("same-id", false, 60, |p| {
            p.session_expiry_interval = Some(60);
        }),
    )
    .await;
    first
        .send(&subscribe_v5(1, vec![filter_v5("take/over", 1)], None))
        .await;
    assert_eq!(first.recv().await.kind(), 9);

    let mut second = Raw::connect(broker.addr).await;
    second
        .send(&connect_v5("same-id", false, 60, |p| {
            p.session_expiry_interval = Some(60);
        }))
        .await;
    let frames = first.expect_closed().await;
    assert_eq!(frames.last().map(|f| f.disconnect_reason()), Some(0x8E));
    let (present, code) = second.recv().await.connack();
    assert_eq!((present, code), (true, 0), "the session moved over");

    // The subscription came with it.
    let publisher = V4::connect(broker.addr, "pub").await;
    publisher.publish("take/over", 1, false, b"hi").await;
    let p = second.recv_kind(3).await.publish_v5();
    assert_eq!(&p.payload[..], b"hi");
}

#[tokio::test]
async fn anonymous_clients_need_allow_anonymous() {
    let broker = TestBroker::with(|c| c.server.allow_anonymous = false);
    let mut raw = Raw::connect(broker.addr).await;
    raw.send(&connect_v4("anon", true, 60)).await;
    assert_eq!(raw.expect_closed().await[0].connack(), (false, 0x05));
    let mut raw = Raw::connect(broker.addr).await;
    raw.send(&connect_v5("anon5", true, 60, |_| {})).await;
    let refusal = &raw.expect_closed().await[0];
    assert_eq!(refusal.connack(), (false, 0x87));
    let why = refusal
        .connack_v5()
        .properties
        .and_then(|p| p.reason_string)
        .expect("reason string");
    assert!(why.contains("allow_anonymous"), "{why}");
    // With no authentication plugin nothing can check credentials, so
    // clients presenting them are refused too (as mosquitto 2 does).
    let mut with_credentials = mqttbytes::v4::Connect::new("creds");
    with_credentials.set_login("user", "secret");
    let mut bytes = bytes::BytesMut::new();
    with_credentials.write(&mut bytes).expect("encode");
    let mut raw = Raw::connect(broker.addr).await;
    raw.send(&bytes).await;
    assert_eq!(raw.expect_closed().await[0].connack(), (false, 0x05));
    assert!(broker.ctx.registry.is_empty());
}

#[tokio::test]
async fn enhanced_auth_without_a_plugin_is_refused() {
    let broker = TestBroker::start();
    let mut raw = Raw::connect(broker.addr).await;
    raw.send(&connect_v5("scram", true, 60, |p| {
        p.authentication_method = Some("SCRAM-SHA-1".into());
    }))
    .await;
    assert_eq!(raw.expect_closed().await[0].connack(), (false, 0x8C));
}

#[tokio::test]
async fn connect_timeout_closes_silent_connections() {
    let broker = TestBroker::with(|c| c.server.connect_timeout_secs = 1);
    let mut raw = Raw::connect(broker.addr).await;
    let started = Instant::now();
    assert!(raw.expect_closed().await.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(900));
    // The broker still serves others.
    V4::connect(broker.addr, "after").await;
}
