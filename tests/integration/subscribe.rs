//! Subscriptions: wildcards, `$` topics, overlapping subscriptions,
//! retained messages, bad filters, unsubscribe.

use std::time::Duration;

use crate::support::packets::*;
use crate::support::rumqtt::{V4, V5};
use crate::support::{Raw, TestBroker};

#[tokio::test]
async fn wildcards_match_by_level() {
    let broker = TestBroker::start();
    let mut plus = V4::connect(broker.addr, "plus").await;
    plus.subscribe("home/+/temp", 0).await;
    let mut hash = V4::connect(broker.addr, "hash").await;
    hash.subscribe("home/#", 0).await;
    let publisher = V4::connect(broker.addr, "pub").await;

    publisher.publish("home/kitchen/temp", 0, false, b"1").await;
    publisher
        .publish("home/kitchen/light", 0, false, b"2")
        .await;
    publisher.publish("home", 0, false, b"3").await;
    publisher
        .publish("office/kitchen/temp", 0, false, b"4")
        .await;
    publisher.publish("home/a/b/temp", 0, false, b"5").await;
    publisher
        .publish("home/kitchen/temp", 0, false, b"end")
        .await;

    let mut got_plus = Vec::new();
    loop {
        let p = plus.next_publish().await;
        got_plus.push(p.payload.to_vec());
        if &p.payload[..] == b"end" {
            break;
        }
    }
    assert_eq!(got_plus, [b"1".to_vec(), b"end".to_vec()]);
    let mut got_hash = Vec::new();
    loop {
        let p = hash.next_publish().await;
        got_hash.push(String::from_utf8(p.payload.to_vec()).expect("utf8"));
        if &p.payload[..] == b"end" {
            break;
        }
    }
    assert_eq!(got_hash, ["1", "2", "3", "5", "end"]);
}

#[tokio::test]
async fn dollar_topics_are_not_matched_by_leading_wildcards() {
    let broker = TestBroker::start();
    let mut all = V4::connect(broker.addr, "all").await;
    all.subscribe("#", 0).await;
    let mut plus = V4::connect(broker.addr, "plus").await;
    plus.subscribe("+/info", 0).await;
    let mut dollar = V4::connect(broker.addr, "dollar").await;
    dollar.subscribe("$app/#", 0).await;
    let publisher = V4::connect(broker.addr, "pub").await;
    publisher.publish("$app/info", 0, false, b"d").await;
    publisher.publish("x/info", 0, false, b"x").await;
    assert_eq!(&dollar.next_publish().await.payload[..], b"d");
    assert_eq!(&all.next_publish().await.payload[..], b"x");
    assert_eq!(&plus.next_publish().await.payload[..], b"x");
}

#[tokio::test]
async fn overlapping_subscriptions_deliver_one_copy_at_the_highest_qos() {
    let broker = TestBroker::start();
    let mut sub = V4::connect(broker.addr, "overlap").await;
    sub.subscribe("o/#", 0).await;
    sub.subscribe("o/+", 2).await;
    sub.subscribe("o/x", 1).await;
    let publisher = V4::connect(broker.addr, "pub").await;
    publisher.publish("o/x", 2, false, b"once").await;
    let p = sub.next_publish().await;
    assert_eq!(p.qos as u8, 2);
    sub.no_publish_within(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn retained_messages_set_replace_clear() {
    let broker = TestBroker::start();
    let publisher = V4::connect(broker.addr, "pub").await;
    publisher.publish("r/a", 1, true, b"first").await;
    publisher.publish("r/a", 1, true, b"second").await;
    publisher.publish("r/b", 0, true, b"b").await;
    publisher.publish("r/c", 0, false, b"not retained").await;
    // All four routed (the counter is updated after routing), two retained.
    crate::support::eventually("publishes routed", || {
        sluice_broker::metrics::Metrics::get(&broker.ctx.metrics.messages_received) == 4
    })
    .await;
    assert_eq!(broker.ctx.router.retained_count(), 2);

    let mut sub = V4::connect(broker.addr, "sub").await;
    sub.subscribe("r/+", 1).await;
    let mut got = [sub.next_publish().await, sub.next_publish().await];
    got.sort_by(|a, b| a.topic.cmp(&b.topic));
    assert_eq!(got[0].topic, "r/a");
    assert_eq!(&got[0].payload[..], b"second");
    assert!(got[0].retain, "retained flag set on subscribe");
    assert_eq!(got[1].topic, "r/b");
    sub.no_publish_within(Duration::from_millis(200)).await;

    // Live messages arrive with RETAIN 0 (3.1.1 rule), even if retained.
    publisher.publish("r/a", 0, true, b"third").await;
    let live = sub.next_publish().await;
    assert!(!live.retain);
    // Clear with an empty payload.
    publisher.publish("r/a", 0, true, b"").await;
    assert!(sub.next_publish().await.payload.is_empty());
    crate::support::eventually("one retained", || broker.ctx.router.retained_count() == 1).await;
    let mut late = V4::connect(broker.addr, "late").await;
    late.subscribe("r/#", 0).await;
    assert_eq!(late.next_publish().await.topic, "r/b");
    late.no_publish_within(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn bad_filters_fail_alone() {
    let broker = TestBroker::start();
    let mut raw = Raw::handshake(broker.addr, &connect_v5("filters", true, 60, |_| {})).await;
    raw.send(&subscribe_v5(
        5,
        vec![
            filter_v5("ok/+", 1),
            filter_v5("bad/#/x", 1),
            filter_v5("a+", 0),
        ],
        None,
    ))
    .await;
    let ack = raw.recv().await;
    assert_eq!((ack.kind(), ack.packet_id()), (9, 5));
    assert_eq!(ack.ack_codes(true), [1, 0x8F, 0x8F]);

    let mut raw = Raw::handshake(broker.addr, &connect_v4("filters4", true, 60)).await;
    raw.send(&subscribe_v4(6, "bad/#/x", 1)).await;
    assert_eq!(raw.recv().await.ack_codes(false), [0x80]);
    // The connection carries on.
    raw.send(&PINGREQ).await;
    assert_eq!(raw.recv().await.kind(), 13);
}

#[tokio::test]
async fn unsubscribe_stops_delivery_and_reports_in_v5() {
    let broker = TestBroker::start();
    let mut raw = Raw::handshake(broker.addr, &connect_v5("unsub", true, 60, |_| {})).await;
    raw.send(&subscribe_v5(1, vec![filter_v5("u", 0)], None))
        .await;
    raw.recv_kind(9).await;
    raw.send(&unsubscribe(2, "u", true)).await;
    let ack = raw.recv().await;
    assert_eq!((ack.kind(), ack.packet_id()), (11, 2));
    assert_eq!(ack.ack_codes(true), [0x00]);
    raw.send(&unsubscribe(3, "u", true)).await;
    assert_eq!(
        raw.recv().await.ack_codes(true),
        [0x11],
        "no subscription existed"
    );
    let publisher = V5::connect(broker.addr, "pub").await;
    publisher.publish("u", 0, false, b"x").await;
    raw.expect_silence(Duration::from_millis(300)).await;
    assert_eq!(broker.ctx.router.subscription_count(), 0);
}
