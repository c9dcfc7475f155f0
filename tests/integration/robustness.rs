//! Hostile and broken clients: garbage, oversized and trickled packets,
//! clients that stop reading, many clients at once. In every case the
//! broker keeps serving everyone else.

use std::time::Duration;

use crate::support::packets::*;
use crate::support::rumqtt::V4;
use crate::support::{Raw, TestBroker, eventually, within};
use sluice_broker::metrics::Metrics;

/// A subscriber/publisher pair that proves the broker still works.
async fn still_serving(broker: &TestBroker, tag: &str) {
    let mut sub = V4::connect(broker.addr, &format!("{tag}-sub")).await;
    sub.subscribe(&format!("alive/{tag}"), 1).await;
    let publisher = V4::connect(broker.addr, &format!("{tag}-pub")).await;
    publisher
        .publish(&format!("alive/{tag}"), 1, false, b"yes")
        .await;
    assert_eq!(&sub.next_publish().await.payload[..], b"yes");
}

#[tokio::test]
async fn garbage_bytes_close_only_that_connection() {
    let broker = TestBroker::start();
    let mut bystander = V4::connect(broker.addr, "bystander").await;
    bystander.subscribe("b", 0).await;

    let mut raw = Raw::connect(broker.addr).await;
    raw.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(raw.expect_closed().await.is_empty());

    let mut raw = Raw::handshake(broker.addr, &connect_v5("garbage", true, 60, |_| {})).await;
    raw.send(&[0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]).await;
    let frames = raw.expect_closed().await;
    assert_eq!(frames.last().map(|f| f.disconnect_reason()), Some(0x81));

    let publisher = V4::connect(broker.addr, "pub").await;
    publisher.publish("b", 0, false, b"fine").await;
    assert_eq!(&bystander.next_publish().await.payload[..], b"fine");
}

#[tokio::test]
async fn malformed_packets_get_the_right_reason_code() {
    let broker = TestBroker::start();
    let cases: Vec<(&str, Vec<u8>, u8)> = vec![
        (
            "wildcard in topic",
            publish_v5("a/+", 0, 0, b"x", None),
            0x81,
        ),
        (
            "reserved flags on SUBSCRIBE",
            frame(0x80, &[0, 1, 0, 0, 1, b'a', 0]),
            0x81,
        ),
        ("SUBSCRIBE without filters", frame(0x82, &[0, 1, 0]), 0x82),
        ("packet id 0", frame(0x82, &[0, 0, 0, 0, 1, b'a', 0]), 0x82),
        (
            "PUBLISH missing its property length",
            frame(0x30, &[0, 1, b'a']),
            0x81,
        ),
        ("QoS 3", frame(0x36, &[0, 1, b'a', 0, 1, 0]), 0x81),
    ];
    for (what, bytes, reason) in cases {
        let mut raw = Raw::handshake(broker.addr, &connect_v5("bad", true, 60, |_| {})).await;
        raw.send(&bytes).await;
        let frames = raw.expect_closed().await;
        assert_eq!(
            frames.last().map(|f| f.disconnect_reason()),
            Some(reason),
            "{what}"
        );
    }
    still_serving(&broker, "malformed").await;
}

#[tokio::test]
async fn oversized_packet_is_refused_from_its_header() {
    let broker = TestBroker::with(|c| c.mqtt.max_packet_size = 4096);
    let mut raw = Raw::handshake(broker.addr, &connect_v4("huge", true, 60)).await;
    // Announce 200 MB and send nothing more: the header alone is enough.
    raw.send(&[0x30, 0x80, 0x80, 0x80, 0x60]).await;
    assert!(raw.expect_closed().await.is_empty());
    still_serving(&broker, "huge").await;
}

#[tokio::test]
async fn a_packet_trickled_one_byte_at_a_time_is_decoded() {
    let broker = TestBroker::start();
    let mut sub = V4::connect(broker.addr, "sub").await;
    sub.subscribe("slowly", 0).await;
    let mut raw = Raw::connect(broker.addr).await;
    let mut bytes = connect_v4("trickle", true, 60);
    bytes.extend(publish_v4("slowly", 0, 0, b"drip", false));
    for (i, b) in bytes.iter().enumerate() {
        raw.send(&[*b]).await;
        if i % 8 == 0 {
            tokio::task::yield_now().await;
        }
    }
    assert_eq!(raw.recv().await.connack(), (false, 0));
    assert_eq!(&sub.next_publish().await.payload[..], b"drip");
}

#[tokio::test]
async fn a_client_that_stops_reading_cannot_hurt_others() {
    const FLOOD: usize = 8_000;
    let broker = TestBroker::with(|c| c.session.max_queued_messages = 100);
    // Subscribes, then never reads again; a small receive buffer makes the
    // backlog reach the broker sooner.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("rcvbuf");
    let stream = socket.connect(broker.addr).await.expect("connect");
    let mut stuck = Raw::from_stream(stream);
    stuck.send(&connect_v4("stuck", true, 0)).await;
    assert_eq!(stuck.recv().await.connack(), (false, 0));
    stuck.send(&subscribe_v4(1, "flood", 0)).await;
    stuck.recv_kind(9).await;
    // The healthy subscriber reads everything; the final QoS 1 message
    // always gets through even if its queue overflowed, since QoS 0
    // messages are dropped first.
    let mut healthy = Raw::handshake(broker.addr, &connect_v4("healthy", true, 0)).await;
    healthy.send(&subscribe_v4(1, "flood", 1)).await;
    healthy.recv_kind(9).await;

    let mut flooder = Raw::handshake(broker.addr, &connect_v4("flooder", true, 0)).await;
    let message = publish_v4("flood", 0, 0, &[b'x'; 1024], false);
    let burst: Vec<u8> = message
        .iter()
        .copied()
        .cycle()
        .take(message.len() * 100)
        .collect();
    let flood = async {
        for _ in 0..FLOOD / 100 {
            flooder.send(&burst).await;
        }
        flooder
            .send(&publish_v4("flood", 1, 1, b"last", false))
            .await;
    };
    let mut received = 0usize;
    let drain = async {
        loop {
            let f = healthy.recv_kind(3).await;
            received += 1;
            if f.byte1 & 0x06 != 0 {
                let p = f.publish_v4();
                assert_eq!(&p.payload[..], b"last");
                healthy.send(&puback(p.pkid)).await;
                break;
            }
        }
    };
    within("flood delivered to the healthy subscriber", async {
        tokio::join!(flood, drain)
    })
    .await;
    assert!(received <= FLOOD + 1);
    eventually("drops are counted", || {
        Metrics::get(&broker.ctx.metrics.messages_dropped) > 0
    })
    .await;
    let session = broker
        .ctx
        .registry
        .get(&sluice_broker::session::SubscriberId {
            mountpoint: "".into(),
            client_id: sluice_broker::topic::ClientId::new("stuck").expect("id"),
        })
        .expect("stuck session");
    assert!(
        session.lock().queue.len() <= 100,
        "the stuck client's queue stays within its limit"
    );
    drop(stuck);
    still_serving(&broker, "after-flood").await;
}

#[tokio::test]
async fn a_thousand_clients_at_once() {
    const N: usize = 1000;
    let broker = TestBroker::start();
    let mut tasks = tokio::task::JoinSet::new();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(N);
    let go = std::sync::Arc::new(tokio::sync::Notify::new());
    for i in 0..N {
        let addr = broker.addr;
        let ready = ready_tx.clone();
        let go = go.clone();
        tasks.spawn(async move {
            let id = format!("c{i}");
            let mut raw = Raw::handshake(addr, &connect_v4(&id, true, 60)).await;
            raw.send(&subscribe_v4(1, &format!("fleet/{i}"), 1)).await;
            raw.recv_kind(9).await;
            let notified = go.notified();
            ready.send(()).await.expect("test alive");
            notified.await;
            // Each client publishes to its neighbour and receives from
            // the other side.
            let to = (i + 1) % N;
            raw.send(&publish_v4(
                &format!("fleet/{to}"),
                1,
                2,
                id.as_bytes(),
                false,
            ))
            .await;
            let mut got_ack = false;
            let mut got_msg = None;
            while !got_ack || got_msg.is_none() {
                let f = raw.recv().await;
                match f.kind() {
                    4 => got_ack = true,
                    3 => {
                        let p = f.publish_v4();
                        raw.send(&puback(p.pkid)).await;
                        got_msg = Some(p.payload);
                    }
                    k => panic!("unexpected packet type {k}"),
                }
            }
            let from = (i + N - 1) % N;
            assert_eq!(got_msg.as_deref(), Some(format!("c{from}").as_bytes()));
        });
    }
    drop(ready_tx);
    within("all clients connected and subscribed", async {
        for _ in 0..N {
            ready_rx
                .recv()
                .await
                .expect("a client failed before subscribing");
        }
    })
    .await;
    assert_eq!(broker.ctx.registry.len(), N);
    go.notify_waiters();
    within("all clients exchanged a message", async {
        while let Some(r) = tasks.join_next().await {
            r.expect("client task");
        }
    })
    .await;
    eventually("all gone", || broker.ctx.registry.is_empty()).await;
}

#[tokio::test]
async fn sys_topics_are_published() {
    let broker = TestBroker::with(|c| c.server.sys_interval_secs = 1);
    let mut sub = V4::connect(broker.addr, "sys").await;
    sub.subscribe("$SYS/broker/#", 0).await;
    // Retained values from before this client connected arrive first;
    // read until a round reflects it.
    let mut topics = std::collections::BTreeMap::new();
    while topics.len() < 11
        || topics
            .get("$SYS/broker/clients/connected")
            .map(String::as_str)
            != Some("1")
        || topics
            .get("$SYS/broker/subscriptions/count")
            .map(String::as_str)
            != Some("1")
    {
        let p = sub.next_publish().await;
        topics.insert(
            p.topic.clone(),
            String::from_utf8_lossy(&p.payload).into_owned(),
        );
    }
    assert!(topics["$SYS/broker/version"].starts_with("sluice "));
    assert!(topics["$SYS/broker/uptime"].ends_with(" seconds"));
    for key in [
        "$SYS/broker/messages/received",
        "$SYS/broker/messages/sent",
        "$SYS/broker/bytes/received",
        "$SYS/broker/bytes/sent",
        "$SYS/broker/retained messages/count",
    ] {
        assert!(topics[key].parse::<u64>().is_ok(), "{key}: {}", topics[key]);
    }
    // A `#` subscriber does not see them.
    let mut all = V4::connect(broker.addr, "all").await;
    all.subscribe("#", 0).await;
    all.no_publish_within(Duration::from_millis(1500)).await;
}
