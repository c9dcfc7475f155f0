//! Sessions across connections: persistence, the offline queue and its
//! limits, session expiry, Will messages and Will Delay.

use std::time::{Duration, Instant};

use crate::support::packets::*;
use crate::support::rumqtt::{V4, V5};
use crate::support::{Raw, TestBroker, eventually};

#[tokio::test]
async fn persistent_session_queues_while_offline() {
    let broker = TestBroker::start();
    let mut sub = V4::connect_with(broker.addr, "durable", |o| {
        o.set_clean_session(false);
    })
    .await;
    assert!(!sub.session_present);
    sub.subscribe("news", 1).await;
    sub.disconnect().await;

    let publisher = V4::connect(broker.addr, "pub").await;
    for i in 0..3u8 {
        publisher.publish("news", 1, false, &[i]).await;
    }
    publisher
        .publish("news", 0, false, b"qos0 is not queued offline")
        .await;
    publisher.disconnect().await;

    let mut sub = V4::connect_with(broker.addr, "durable", |o| {
        o.set_clean_session(false);
    })
    .await;
    assert!(sub.session_present);
    for i in 0..3u8 {
        assert_eq!(&sub.next_publish().await.payload[..], &[i]);
    }
    sub.no_publish_within(Duration::from_millis(300)).await;

    // Clean session discards it.
    sub.disconnect().await;
    let sub = V4::connect(broker.addr, "durable").await;
    assert!(!sub.session_present);
}

#[tokio::test]
async fn offline_queue_is_bounded_by_policy() {
    for (policy, expected) in [
        (
            sluice_broker::config::OverflowPolicy::DropNewest,
            [0u8, 1, 2],
        ),
        (
            sluice_broker::config::OverflowPolicy::DropOldest,
            [3u8, 4, 5],
        ),
    ] {
        let broker = TestBroker::with(|c| {
            c.session.max_offline_messages = 3;
            c.session.overflow = policy;
        });
        let connect = connect_v4("bounded", false, 60);
        let mut raw = Raw::handshake(broker.addr, &connect).await;
        raw.send(&subscribe_v4(1, "q", 1)).await;
        raw.recv_kind(9).await;
        raw.send(&DISCONNECT).await;
        raw.expect_closed().await;
        eventually("offline", || {
            broker
                .ctx
                .registry
                .get(&id("bounded"))
                .is_some_and(|s| !s.is_online())
        })
        .await;
        let publisher = V4::connect(broker.addr, "pub").await;
        for i in 0..6u8 {
            publisher.publish("q", 1, false, &[i]).await;
        }
        eventually("drops counted", || {
            sluice_broker::metrics::Metrics::get(&broker.ctx.metrics.messages_dropped) == 3
        })
        .await;
        let mut raw = Raw::connect(broker.addr).await;
        raw.send(&connect).await;
        assert_eq!(raw.recv().await.connack(), (true, 0));
        let mut got = Vec::new();
        for _ in 0..3 {
            let p = raw.recv_kind(3).await.publish_v4();
            raw.send(&puback(p.pkid)).await;
            got.push(p.payload[0]);
        }
        assert_eq!(got, expected, "{policy:?}");
        raw.expect_silence(Duration::from_millis(200)).await;
    }
}

fn id(client: &str) -> sluice_broker::session::SubscriberId {
    sluice_broker::session::SubscriberId {
        mountpoint: "".into(),
        client_id: sluice_broker::topic::ClientId::new(client).expect("valid id"),
    }
}

#[tokio::test]
async fn will_is_published_on_abrupt_disconnect_only() {
    let broker = TestBroker::start();
    let mut watcher = V4::connect(broker.addr, "watcher").await;
    watcher.subscribe("wills/#", 1).await;

    let raw = Raw::handshake(
        broker.addr,
        &connect_v4_will("dies", true, "wills/dies", b"gone", 1, false),
    )
    .await;
    drop(raw);
    let p = watcher.next_publish().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..]),
        ("wills/dies", &b"gone"[..])
    );

    let mut raw = Raw::handshake(
        broker.addr,
        &connect_v4_will("polite", true, "wills/polite", b"gone", 1, false),
    )
    .await;
    raw.send(&DISCONNECT).await;
    raw.expect_closed().await;
    watcher.no_publish_within(Duration::from_millis(300)).await;

    // A protocol violation counts as abrupt.
    let mut raw = Raw::handshake(
        broker.addr,
        &connect_v4_will("rude", true, "wills/rude", b"bad", 0, true),
    )
    .await;
    raw.send(&[0x00, 0x00]).await;
    raw.expect_closed().await;
    let p = watcher.next_publish().await;
    assert_eq!(p.topic, "wills/rude");
    // It was retained.
    let mut late = V4::connect(broker.addr, "late").await;
    late.subscribe("wills/rude", 0).await;
    assert_eq!(&late.next_publish().await.payload[..], b"bad");
}

#[tokio::test]
async fn v5_disconnect_with_will_publishes_it() {
    let broker = TestBroker::start();
    let mut watcher = V5::connect(broker.addr, "watcher").await;
    watcher.subscribe("w5", 1).await;
    let mut raw = Raw::handshake(
        broker.addr,
        &connect_v5_full(
            "leaver",
            true,
            60,
            |_| {},
            Some(will_v5("w5", b"asked", None)),
        ),
    )
    .await;
    raw.send(&disconnect_v5(0x04, None)).await;
    raw.expect_closed().await;
    assert_eq!(&watcher.next_publish().await.payload[..], b"asked");
}

#[tokio::test]
async fn will_delay_is_cancelled_by_a_timely_reconnect() {
    let broker = TestBroker::start();
    let mut watcher = V5::connect(broker.addr, "watcher").await;
    watcher.subscribe("delayed/#", 1).await;
    let connect = |id: &str| {
        connect_v5_full(
            id,
            false,
            60,
            |p| p.session_expiry_interval = Some(60),
            Some(will_v5(&format!("delayed/{id}"), b"late", Some(1))),
        )
    };

    // Reconnects within the delay: no will.
    let raw = Raw::handshake(broker.addr, &connect("back")).await;
    drop(raw);
    let _again = Raw::handshake(broker.addr, &connect("back")).await;

    // Does not come back: will after the delay.
    let started = Instant::now();
    let raw = Raw::handshake(broker.addr, &connect("away")).await;
    drop(raw);
    let p = watcher.next_publish().await;
    assert_eq!(&p.topic[..], b"delayed/away");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "waited the delay"
    );
    watcher.no_publish_within(Duration::from_millis(1500)).await;
}

#[tokio::test]
async fn session_expiry_ends_offline_sessions() {
    let broker = TestBroker::start();
    let mut raw = Raw::handshake(
        broker.addr,
        &connect_v5("short", false, 60, |p| p.session_expiry_interval = Some(1)),
    )
    .await;
    raw.send(&subscribe_v5(1, vec![filter_v5("e", 1)], None))
        .await;
    raw.recv_kind(9).await;
    drop(raw);
    eventually("session expired", || {
        broker.ctx.registry.get(&id("short")).is_none()
    })
    .await;
    assert_eq!(broker.ctx.router.subscription_count(), 0);
    let mut raw = Raw::connect(broker.addr).await;
    raw.send(&connect_v5("short", false, 60, |p| {
        p.session_expiry_interval = Some(1)
    }))
    .await;
    assert_eq!(raw.recv().await.connack(), (false, 0));
}

#[tokio::test]
async fn disconnect_can_change_session_expiry() {
    let broker = TestBroker::start();
    // Connected with a long expiry, leaves with 0: the session ends now.
    let mut raw = Raw::handshake(
        broker.addr,
        &connect_v5("changer", false, 60, |p| {
            p.session_expiry_interval = Some(3600)
        }),
    )
    .await;
    raw.send(&disconnect_v5(0, Some(0))).await;
    raw.expect_closed().await;
    eventually("session ended", || {
        broker.ctx.registry.get(&id("changer")).is_none()
    })
    .await;

    // Connected with 0, asks for more at DISCONNECT: a protocol error.
    let mut raw = Raw::handshake(broker.addr, &connect_v5("zero", true, 60, |_| {})).await;
    raw.send(&disconnect_v5(0, Some(60))).await;
    let frames = raw.expect_closed().await;
    assert_eq!(frames.last().map(|f| f.disconnect_reason()), Some(0x82));
}

#[tokio::test]
async fn clean_start_discards_the_old_session() {
    let broker = TestBroker::start();
    let mut a = V5::connect_with(broker.addr, "cs", |o| {
        o.set_clean_start(false);
        o.set_session_expiry_interval(Some(60));
    })
    .await;
    a.subscribe("cs/t", 1).await;
    a.disconnect().await;
    let b = V5::connect_with(broker.addr, "cs", |o| {
        o.set_clean_start(true);
        o.set_session_expiry_interval(Some(60));
    })
    .await;
    assert!(!b.connack.session_present);
    eventually("old subscriptions removed", || {
        broker.ctx.router.subscription_count() == 0
    })
    .await;
}

#[tokio::test]
async fn will_message_expiry_counts_from_publication() {
    let broker = TestBroker::start();
    let mut will = will_v5("wexp", b"late", Some(1));
    if let Some(p) = will.properties.as_mut() {
        p.message_expiry_interval = Some(30);
    }
    let raw = Raw::handshake(
        broker.addr,
        &connect_v5_full(
            "wexp",
            false,
            60,
            |p| p.session_expiry_interval = Some(60),
            Some(will),
        ),
    )
    .await;
    let mut watcher = Raw::handshake(broker.addr, &connect_v5("watch", true, 60, |_| {})).await;
    watcher
        .send(&subscribe_v5(1, vec![filter_v5("wexp", 1)], None))
        .await;
    watcher.recv_kind(9).await;
    drop(raw);
    let p = watcher.recv_kind(3).await.publish_v5();
    let left = p.properties.and_then(|p| p.message_expiry_interval);
    // Published after the 1 s delay, with its full 30 s ahead of it.
    assert!(matches!(left, Some(29..=30)), "{left:?}");
}
