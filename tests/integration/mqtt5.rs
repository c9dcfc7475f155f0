//! MQTT 5 features: properties passed through, message expiry, topic
//! aliases, subscription identifiers, subscription options, shared
//! subscriptions, flow control, packet size limits.

use std::time::Duration;

use bytes::Bytes;

use crate::support::packets::*;
use crate::support::rumqtt::V5;
use crate::support::{Raw, TestBroker, eventually};

async fn subscriber(
    broker: &TestBroker,
    id: &str,
    filters: Vec<mqttbytes::v5::SubscribeFilter>,
    sub_id: Option<usize>,
) -> Raw {
    let mut raw = Raw::handshake(broker.addr, &connect_v5(id, true, 60, |_| {})).await;
    let n = filters.len();
    raw.send(&subscribe_v5(1, filters, sub_id)).await;
    let ack = raw.recv_kind(9).await;
    assert_eq!(ack.ack_codes(true).len(), n);
    raw
}

#[tokio::test]
async fn message_properties_pass_through() {
    let broker = TestBroker::start();
    let mut sub = subscriber(&broker, "sub", vec![filter_v5("props", 1)], None).await;
    let mut publisher = Raw::handshake(broker.addr, &connect_v5("pub", true, 60, |_| {})).await;
    let mut props = publish_props();
    props.payload_format_indicator = Some(1);
    props.content_type = Some("application/json".into());
    props.response_topic = Some("replies/pub".into());
    props.correlation_data = Some(Bytes::from_static(b"\x00\x01corr"));
    props.user_properties = vec![("k".into(), "v".into()), ("k".into(), "w".into())];
    publisher
        .send(&publish_v5("props", 1, 1, b"{}", Some(props.clone())))
        .await;
    let p = sub.recv_kind(3).await.publish_v5();
    let got = p.properties.expect("properties");
    assert_eq!(got.payload_format_indicator, Some(1));
    assert_eq!(got.content_type, props.content_type);
    assert_eq!(got.response_topic, props.response_topic);
    assert_eq!(got.correlation_data, props.correlation_data);
    assert_eq!(got.user_properties, props.user_properties, "order kept");
}

#[tokio::test]
async fn message_expiry_counts_down_and_expired_messages_are_not_delivered() {
    let broker = TestBroker::start();
    let connect = connect_v5("offline", false, 60, |p| {
        p.session_expiry_interval = Some(60)
    });
    let mut sub = Raw::handshake(broker.addr, &connect).await;
    sub.send(&subscribe_v5(1, vec![filter_v5("exp", 1)], None))
        .await;
    sub.recv_kind(9).await;
    sub.send(&disconnect_v5(0, None)).await;
    sub.expect_closed().await;

    let mut publisher = Raw::handshake(broker.addr, &connect_v5("pub", true, 60, |_| {})).await;
    let mut short = publish_props();
    short.message_expiry_interval = Some(1);
    publisher
        .send(&publish_v5("exp", 1, 1, b"short", Some(short)))
        .await;
    let mut long = publish_props();
    long.message_expiry_interval = Some(100);
    publisher
        .send(&publish_v5("exp", 1, 2, b"long", Some(long)))
        .await;
    publisher.recv_kind(4).await;
    publisher.recv_kind(4).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;

    let mut sub = Raw::connect(broker.addr).await;
    sub.send(&connect).await;
    assert_eq!(sub.recv().await.connack(), (true, 0));
    let p = sub.recv_kind(3).await.publish_v5();
    assert_eq!(&p.payload[..], b"long", "the expired one was dropped");
    let left = p
        .properties
        .and_then(|p| p.message_expiry_interval)
        .expect("expiry sent");
    assert!((90..100).contains(&left), "counted down: {left}");
}

#[tokio::test]
async fn inbound_topic_aliases() {
    let broker = TestBroker::with(|c| c.mqtt.topic_alias_maximum = 4);
    let mut sub = subscriber(&broker, "sub", vec![filter_v5("alias/#", 0)], None).await;
    let mut publisher = Raw::handshake(broker.addr, &connect_v5("pub", true, 60, |_| {})).await;
    let mut set = publish_props();
    set.topic_alias = Some(2);
    publisher
        .send(&publish_v5("alias/one", 0, 0, b"a", Some(set.clone())))
        .await;
    publisher
        .send(&publish_v5("", 0, 0, b"b", Some(set.clone())))
        .await;
    for payload in [b"a", b"b"] {
        let p = sub.recv_kind(3).await.publish_v5();
        assert_eq!((&p.topic[..], &p.payload[..]), ("alias/one", &payload[..]));
    }
    // Over the maximum, or 0: DISCONNECT 0x94.
    for bad in [5u16, 0] {
        let mut raw = Raw::handshake(broker.addr, &connect_v5("bad", true, 60, |_| {})).await;
        let mut props = publish_props();
        props.topic_alias = Some(bad);
        raw.send(&publish_v5("alias/x", 0, 0, b"x", Some(props)))
            .await;
        let frames = raw.expect_closed().await;
        let reason = frames.last().map(|f| f.disconnect_reason());
        // Alias 0 is rejected by the codec already (protocol error) or by
        // the range check (0x94); both are disconnects with a reason.
        if bad == 0 {
            assert!(matches!(reason, Some(0x94) | Some(0x82)), "{reason:?}");
        } else {
            assert_eq!(reason, Some(0x94));
            let text = String::from_utf8_lossy(&frames.last().expect("DISCONNECT").body);
            assert!(text.contains("topic alias 5"), "reason string: {text}");
        }
    }
}

#[tokio::test]
async fn outbound_topic_aliases_when_the_client_allows_them() {
    let broker = TestBroker::start();
    let mut sub = Raw::handshake(
        broker.addr,
        &connect_v5("aliased", true, 60, |p| p.topic_alias_max = Some(1)),
    )
    .await;
    sub.send(&subscribe_v5(1, vec![filter_v5("t/#", 0)], None))
        .await;
    sub.recv_kind(9).await;
    let publisher = V5::connect(broker.addr, "pub").await;
    for topic in ["t/long/topic/name", "t/long/topic/name", "t/other"] {
        publisher.publish(topic, 0, false, b"x").await;
    }
    let first = sub.recv_kind(3).await.publish_v5();
    assert_eq!(first.topic, "t/long/topic/name");
    assert_eq!(first.properties.and_then(|p| p.topic_alias), Some(1));
    let second = sub.recv_kind(3).await.publish_v5();
    assert!(second.topic.is_empty(), "sent by alias only");
    assert_eq!(second.properties.and_then(|p| p.topic_alias), Some(1));
    let third = sub.recv_kind(3).await.publish_v5();
    assert_eq!(third.topic, "t/other");
    assert_eq!(
        third.properties.and_then(|p| p.topic_alias),
        None,
        "only one alias allowed"
    );
}

#[tokio::test]
async fn subscription_identifiers_one_copy_with_every_id() {
    let broker = TestBroker::start();
    let mut raw = Raw::handshake(broker.addr, &connect_v5("ids", true, 60, |_| {})).await;
    raw.send(&subscribe_v5(1, vec![filter_v5("s/+", 1)], Some(7)))
        .await;
    raw.recv_kind(9).await;
    raw.send(&subscribe_v5(2, vec![filter_v5("s/#", 0)], Some(300)))
        .await;
    raw.recv_kind(9).await;
    raw.send(&subscribe_v5(3, vec![filter_v5("s/x", 0)], None))
        .await;
    raw.recv_kind(9).await;
    let publisher = V5::connect(broker.addr, "pub").await;
    publisher.publish("s/x", 1, false, b"x").await;
    let p = raw.recv_kind(3).await.publish_v5();
    assert_eq!(p.qos as u8, 1);
    let mut ids = p.properties.expect("properties").subscription_identifiers;
    ids.sort_unstable();
    assert_eq!(ids, [7, 300]);
    raw.send(&puback(p.pkid)).await;
    raw.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn no_local_and_retain_as_published() {
    let broker = TestBroker::start();
    let mut me = Raw::handshake(broker.addr, &connect_v5("me", true, 60, |_| {})).await;
    let mut no_local = filter_v5("nl", 0);
    no_local.nolocal = true;
    let mut rap = filter_v5("rap", 0);
    rap.preserve_retain = true;
    me.send(&subscribe_v5(
        1,
        vec![no_local, rap, filter_v5("plain", 0)],
        None,
    ))
    .await;
    me.recv_kind(9).await;
    me.send(&publish_v5("nl", 0, 0, b"mine", None)).await;
    me.expect_silence(Duration::from_millis(300)).await;
    let other = V5::connect(broker.addr, "other").await;
    other.publish("nl", 0, false, b"theirs").await;
    assert_eq!(&me.recv_kind(3).await.publish_v5().payload[..], b"theirs");

    other.publish("rap", 0, true, b"kept").await;
    let f = me.recv_kind(3).await;
    assert_eq!(f.byte1 & 1, 1, "retain as published");
    other.publish("plain", 0, true, b"cleared").await;
    let f = me.recv_kind(3).await;
    assert_eq!(f.byte1 & 1, 0, "retain cleared without RAP");
}

#[tokio::test]
async fn retain_handling_options() {
    let broker = TestBroker::start();
    let publisher = V5::connect(broker.addr, "pub").await;
    publisher.publish("rh", 0, true, b"retained").await;
    eventually("retained stored", || {
        broker.ctx.router.retained_count() == 1
    })
    .await;

    let mut raw = Raw::handshake(broker.addr, &connect_v5("rh", true, 60, |_| {})).await;
    let mut f = filter_v5("rh", 0);
    f.retain_forward_rule = mqttbytes::v5::RetainForwardRule::OnNewSubscribe;
    raw.send(&subscribe_v5(1, vec![f.clone()], None)).await;
    raw.recv_kind(9).await;
    assert!(
        raw.recv_kind(3).await.byte1 & 1 == 1,
        "1: sent on a new subscription"
    );
    raw.send(&subscribe_v5(2, vec![f], None)).await;
    raw.recv_kind(9).await;
    raw.expect_silence(Duration::from_millis(300)).await;

    let mut never = filter_v5("rh", 0);
    never.retain_forward_rule = mqttbytes::v5::RetainForwardRule::Never;
    let mut raw = Raw::handshake(broker.addr, &connect_v5("rh2", true, 60, |_| {})).await;
    raw.send(&subscribe_v5(1, vec![never], None)).await;
    raw.recv_kind(9).await;
    raw.expect_silence(Duration::from_millis(300)).await;

    // 0: sent on every subscribe, even a repeated one.
    let mut raw = Raw::handshake(broker.addr, &connect_v5("rh0", true, 60, |_| {})).await;
    for pkid in 1..=2 {
        raw.send(&subscribe_v5(pkid, vec![filter_v5("rh", 0)], None))
            .await;
        raw.recv_kind(9).await;
        assert_eq!(
            &raw.recv_kind(3).await.publish_v5().payload[..],
            b"retained"
        );
    }
}

#[tokio::test]
async fn shared_subscriptions_deliver_each_message_to_one_member() {
    let broker = TestBroker::start();
    let mut a = subscriber(&broker, "a", vec![filter_v5("$share/g/jobs/#", 1)], None).await;
    let mut b = subscriber(&broker, "b", vec![filter_v5("$share/g/jobs/#", 1)], None).await;
    let mut plain = subscriber(&broker, "plain", vec![filter_v5("jobs/#", 0)], None).await;
    let publisher = V5::connect(broker.addr, "pub").await;
    for i in 0..10u8 {
        publisher.publish("jobs/x", 1, false, &[i]).await;
    }
    let mut seen = Vec::new();
    for _ in 0..10 {
        plain.recv_kind(3).await;
    }
    let mut from_a = 0;
    while let Some(f) = a.recv_within(Duration::from_millis(300)).await {
        if f.kind() == 3 {
            let p = f.publish_v5();
            a.send(&puback(p.pkid)).await;
            seen.push(p.payload[0]);
            from_a += 1;
        }
    }
    while let Some(f) = b.recv_within(Duration::from_millis(300)).await {
        if f.kind() == 3 {
            let p = f.publish_v5();
            b.send(&puback(p.pkid)).await;
            seen.push(p.payload[0]);
        }
    }
    seen.sort_unstable();
    assert_eq!(
        seen,
        (0..10).collect::<Vec<u8>>(),
        "each message exactly once"
    );
    assert!(
        from_a > 0 && from_a < 10,
        "spread over members: a got {from_a}"
    );
}

#[tokio::test]
async fn a_shared_member_leaving_loses_no_messages() {
    let broker = TestBroker::start();
    // `slow` never acknowledges: its window (1) fills, the rest queues.
    let mut slow = Raw::handshake(
        broker.addr,
        &connect_v5("slow", true, 60, |p| p.receive_maximum = Some(1)),
    )
    .await;
    slow.send(&subscribe_v5(1, vec![filter_v5("$share/g/work", 1)], None))
        .await;
    slow.recv_kind(9).await;
    let mut steady = subscriber(&broker, "steady", vec![filter_v5("$share/g/work", 1)], None).await;
    let publisher = V5::connect(broker.addr, "pub").await;
    for i in 0..10u8 {
        publisher.publish("work", 1, false, &[i]).await;
    }
    let mut seen = Vec::new();
    while let Some(f) = steady.recv_within(Duration::from_millis(300)).await {
        if f.kind() == 3 {
            let p = f.publish_v5();
            steady.send(&puback(p.pkid)).await;
            seen.push(p.payload[0]);
        }
    }
    assert!(seen.len() < 10, "slow got some: {seen:?}");
    // `slow` leaves (clean session ends): its unacknowledged and queued
    // messages go to `steady`.
    drop(slow);
    while seen.len() < 10 {
        let p = steady.recv_kind(3).await.publish_v5();
        steady.send(&puback(p.pkid)).await;
        seen.push(p.payload[0]);
    }
    seen.sort_unstable();
    assert_eq!(seen, (0..10).collect::<Vec<u8>>());
}

#[tokio::test]
async fn client_exceeding_receive_maximum_is_disconnected() {
    let broker = TestBroker::with(|c| c.mqtt.receive_maximum = 2);
    let mut raw = Raw::connect(broker.addr).await;
    raw.send(&connect_v5("greedy", true, 60, |_| {})).await;
    let ack = raw.recv().await.connack_v5();
    assert_eq!(ack.properties.and_then(|p| p.receive_max), Some(2));
    // QoS 2 without PUBREL keeps them unacknowledged.
    for id in 1..=3 {
        raw.send(&publish_v5("rm", 2, id, b"x", None)).await;
    }
    let frames = raw.expect_closed().await;
    assert_eq!(
        frames.iter().filter(|f| f.kind() == 5).count(),
        2,
        "two PUBRECs"
    );
    assert_eq!(frames.last().map(|f| f.disconnect_reason()), Some(0x93));
}

#[tokio::test]
async fn client_maximum_packet_size_is_respected() {
    let broker = TestBroker::start();
    let mut small = Raw::handshake(
        broker.addr,
        &connect_v5("small", true, 60, |p| p.max_packet_size = Some(100)),
    )
    .await;
    small
        .send(&subscribe_v5(1, vec![filter_v5("big/#", 0)], None))
        .await;
    small.recv_kind(9).await;
    let publisher = V5::connect(broker.addr, "pub").await;
    publisher.publish("big/one", 0, false, &[0u8; 200]).await;
    publisher.publish("big/two", 0, false, b"fits").await;
    let p = small.recv_kind(3).await.publish_v5();
    assert_eq!(&p.payload[..], b"fits", "the oversized one was dropped");
}

#[tokio::test]
async fn server_maximum_packet_size_is_enforced() {
    let broker = TestBroker::with(|c| c.mqtt.max_packet_size = 1024);
    let mut raw = Raw::connect(broker.addr).await;
    raw.send(&connect_v5("big", true, 60, |_| {})).await;
    let ack = raw.recv().await.connack_v5();
    assert_eq!(ack.properties.and_then(|p| p.max_packet_size), Some(1024));
    raw.send(&publish_v5("t", 0, 0, &[7u8; 2000], None)).await;
    let frames = raw.expect_closed().await;
    assert_eq!(frames.last().map(|f| f.disconnect_reason()), Some(0x95));
}

#[tokio::test]
async fn shutdown_sends_server_disconnect() {
    let mut broker = TestBroker::start();
    let mut raw = Raw::handshake(broker.addr, &connect_v5("bye", true, 60, |_| {})).await;
    let mut v5 = V5::connect(broker.addr, "bye-lib").await;
    broker.shutdown();
    let frames = raw.expect_closed().await;
    assert_eq!(frames.last().map(|f| f.disconnect_reason()), Some(0x8B));
    let err = v5.next_error().await;
    assert!(!err.is_empty());
}
