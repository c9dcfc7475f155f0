//! Several listeners at once, each with its own settings: mountpoint,
//! accepted protocol versions, maximum packet size, and the admission
//! limits (connections open at once, connection rate).

use std::net::SocketAddr;
use std::time::Instant;

use sluice_broker::config::ListenerConfig;
use sluice_broker::metrics::Metrics;
use sluice_broker::session::SubscriberId;
use sluice_broker::topic::ClientId;
use tokio::io::AsyncWriteExt;

use crate::support::packets::*;
use crate::support::{PATIENCE, Raw, TestBroker, eventually};

/// A plain TCP listener on an ephemeral port of 127.0.0.1.
fn tcp() -> ListenerConfig {
    ListenerConfig::tcp("127.0.0.1:0".parse().expect("address"))
}

/// What a connection that sent `connect` got: the CONNACK's return code
/// or reason, or `None` if it was closed without one.
async fn try_connect(addr: SocketAddr, connect: &[u8]) -> (Option<u8>, Raw) {
    let mut raw = Raw::connect(addr).await;
    // A refused connection may already be closed: the write may fail.
    let _ = raw.stream.write_all(connect).await;
    match raw.recv_within(PATIENCE).await {
        Some(f) if f.kind() == 2 => (Some(f.connack().1), raw),
        Some(f) => panic!("expected CONNACK or close, got {f:?}"),
        None => (None, raw),
    }
}

/// Asserts that a connection is closed without any packet (refused by a
/// limit before CONNECT was read).
async fn refused(addr: SocketAddr, id: &str) {
    let mut raw = Raw::connect(addr).await;
    let _ = raw.stream.write_all(&connect_v4(id, true, 60)).await;
    let frames = raw.expect_closed().await;
    assert!(
        frames.is_empty(),
        "{id}: expected no CONNACK, got {frames:?}"
    );
}

fn id(mountpoint: &str, client: &str) -> SubscriberId {
    SubscriberId {
        mountpoint: mountpoint.into(),
        client_id: ClientId::new(client).expect("valid"),
    }
}

#[tokio::test]
async fn mountpoints_isolate_listeners() {
    let broker = TestBroker::with(|c| {
        c.listener.push(ListenerConfig {
            mountpoint: "tenant-a".into(),
            ..tcp()
        });
        c.listener.push(ListenerConfig {
            mountpoint: "tenant-b".into(),
            ..tcp()
        });
    });
    let (shared, a, b) = (broker.addrs[0], broker.addrs[1], broker.addrs[2]);

    // The same client id on both listeners: two sessions, neither taking
    // the other over.
    let mut dev_a = Raw::handshake(a, &connect_v4("dev", true, 60)).await;
    dev_a.send(&subscribe_v4(1, "t/#", 1)).await;
    assert_eq!(dev_a.recv_kind(9).await.ack_codes(false), vec![1]);
    let mut dev_b = Raw::handshake(b, &connect_v4("dev", true, 60)).await;
    dev_b.send(&subscribe_v4(1, "t/#", 1)).await;
    assert_eq!(dev_b.recv_kind(9).await.ack_codes(false), vec![1]);
    assert!(broker.ctx.registry.get(&id("tenant-a", "dev")).is_some());
    assert!(broker.ctx.registry.get(&id("tenant-b", "dev")).is_some());
    assert!(broker.ctx.registry.get(&id("", "dev")).is_none());

    // Published in tenant-a (acknowledged, so routed) and in the shared
    // tree: only tenant-a's subscriber gets the first.
    let mut pub_a = Raw::handshake(a, &connect_v4("pub", true, 60)).await;
    pub_a.send(&publish_v4("t/1", 1, 7, b"for a", false)).await;
    assert_eq!(pub_a.recv_kind(4).await.packet_id(), 7);
    let mut pub_shared = Raw::handshake(shared, &connect_v4("pub", true, 60)).await;
    pub_shared
        .send(&publish_v4("t/1", 1, 8, b"for nobody", false))
        .await;
    assert_eq!(pub_shared.recv_kind(4).await.packet_id(), 8);
    let got = dev_a.recv_kind(3).await.publish_v4();
    assert_eq!(&got.payload[..], b"for a");

    // tenant-b's subscriber's first message is the one published in
    // tenant-b: nothing published elsewhere was queued before it.
    let mut pub_b = Raw::handshake(b, &connect_v4("pub", true, 60)).await;
    pub_b.send(&publish_v4("t/2", 1, 9, b"for b", false)).await;
    assert_eq!(pub_b.recv_kind(4).await.packet_id(), 9);
    let got = dev_b.recv_kind(3).await.publish_v4();
    assert_eq!((&*got.topic, &got.payload[..]), ("t/2", &b"for b"[..]));
    // Likewise, nothing from the shared tree reached tenant-a.
    pub_a
        .send(&publish_v4("t/3", 1, 10, b"a again", false))
        .await;
    assert_eq!(pub_a.recv_kind(4).await.packet_id(), 10);
    let got = dev_a.recv_kind(3).await.publish_v4();
    assert_eq!((&*got.topic, &got.payload[..]), ("t/3", &b"a again"[..]));

    // Both "dev" connections are still up.
    dev_a.send(&PINGREQ).await;
    assert_eq!(dev_a.recv_kind(13).await.kind(), 13);
    dev_b.send(&PINGREQ).await;
    assert_eq!(dev_b.recv_kind(13).await.kind(), 13);
}

#[tokio::test]
async fn max_connections_refuses_the_excess_until_one_leaves() {
    let broker = TestBroker::with(|c| {
        c.listener.push(ListenerConfig {
            max_connections: 2,
            ..tcp()
        });
    });
    let (shared, limited) = (broker.addrs[0], broker.addrs[1]);
    let mut first = Raw::handshake(limited, &connect_v4("c1", true, 60)).await;
    let _second = Raw::handshake(limited, &connect_v4("c2", true, 60)).await;
    refused(limited, "c3").await;
    let m = &broker.ctx.metrics;
    eventually("refusal counted", || {
        Metrics::get(&m.connections_refused_limit) == 1
    })
    .await;
    // Another listener is not affected.
    let _elsewhere = Raw::handshake(shared, &connect_v4("c4", true, 60)).await;

    // As soon as one leaves, a new one gets in (and no more).
    first.send(&DISCONNECT).await;
    assert!(first.expect_closed().await.is_empty());
    let _third = Raw::handshake(limited, &connect_v4("c5", true, 60)).await;
    refused(limited, "c6").await;
    eventually("second refusal counted", || {
        Metrics::get(&m.connections_refused_limit) == 2
    })
    .await;
    assert_eq!(Metrics::get(&m.connections_refused_rate), 0);
}

#[tokio::test]
async fn connections_beyond_the_rate_are_closed() {
    const RATE: u32 = 2;
    const BURST: usize = 12;
    let broker = TestBroker::with(|c| {
        c.listener.push(ListenerConfig {
            max_connection_rate: RATE,
            ..tcp()
        });
    });
    let addr = broker.addrs[1];
    let started = Instant::now();
    let mut accepted = Vec::new();
    let mut refusals = 0u64;
    for i in 0..BURST {
        match try_connect(addr, &connect_v4(&format!("r{i}"), true, 60)).await {
            (Some(0), raw) => accepted.push(raw),
            (None, _) => refusals += 1,
            (Some(code), _) => panic!("r{i}: CONNACK {code}"),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    // The bucket holds one second's worth and refills continuously.
    assert!(
        accepted.len() >= RATE as usize,
        "{} accepted",
        accepted.len()
    );
    let most = f64::from(RATE) * (1.0 + elapsed) + 1.0;
    assert!(
        (accepted.len() as f64) <= most,
        "{} accepted in {elapsed:.2}s at {RATE}/s",
        accepted.len()
    );
    assert!(refusals > 0);
    let m = &broker.ctx.metrics;
    eventually("refusals counted", || {
        Metrics::get(&m.connections_refused_rate) == refusals
    })
    .await;
    assert_eq!(Metrics::get(&m.connections_refused_limit), 0);

    // The bucket refills: a new connection gets in again before long.
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let (Some(0), _) = try_connect(addr, &connect_v4("later", true, 60)).await {
            break;
        }
        assert!(Instant::now() < deadline, "no token came back");
        // Waiting for the refill is the point here: one token every
        // 1/RATE s.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn protocol_versions_are_enforced_per_listener() {
    let broker = TestBroker::with(|c| {
        c.listener.push(ListenerConfig {
            protocol_versions: vec![3, 4],
            ..tcp()
        });
        c.listener.push(ListenerConfig {
            protocol_versions: vec![5],
            ..tcp()
        });
    });
    let (v3_only, v5_only) = (broker.addrs[1], broker.addrs[2]);

    // MQTT 5 on a 3.x listener: a v5 CONNACK 0x84, then closed.
    let mut raw = Raw::connect(v3_only).await;
    raw.send(&connect_v5("five", true, 60, |_| {})).await;
    let frames = raw.expect_closed().await;
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!((frames[0].byte1, frames[0].connack().1), (0x20, 0x84));
    // 3.1.1 and 3.1 are welcome there.
    let _four = Raw::handshake(v3_only, &connect_v4("four", true, 60)).await;
    let _three = Raw::handshake(v3_only, &connect_v31("three", true)).await;

    // MQTT 3.1.1 and 3.1 on a 5-only listener: return code 1, then closed.
    for connect in [
        connect_v4("no-four", true, 60),
        connect_v31("no-three", true),
    ] {
        let mut raw = Raw::connect(v5_only).await;
        raw.send(&connect).await;
        let frames = raw.expect_closed().await;
        assert_eq!(frames.len(), 1, "{frames:?}");
        assert_eq!((frames[0].byte1, frames[0].connack()), (0x20, (false, 1)));
    }
    let _five = Raw::handshake(v5_only, &connect_v5("five", true, 60, |_| {})).await;
    // Nobody refused got a session.
    assert!(broker.ctx.registry.get(&id("", "five")).is_some());
    assert!(broker.ctx.registry.get(&id("", "no-four")).is_none());
    assert_eq!(broker.ctx.registry.len(), 3);
}

#[tokio::test]
async fn max_packet_size_is_per_listener() {
    let broker = TestBroker::with(|c| {
        c.mqtt.max_packet_size = 4096;
        c.listener.push(ListenerConfig {
            max_packet_size: Some(1024),
            ..tcp()
        });
    });
    let (default, small) = (broker.addrs[0], broker.addrs[1]);

    let mut raw = Raw::connect(small).await;
    raw.send(&connect_v5("small", true, 60, |_| {})).await;
    let ack = raw.recv().await.connack_v5();
    assert_eq!(ack.properties.and_then(|p| p.max_packet_size), Some(1024));
    raw.send(&publish_v5("t", 0, 0, &[7u8; 2000], None)).await;
    let frames = raw.expect_closed().await;
    assert_eq!(frames.last().map(|f| f.disconnect_reason()), Some(0x95));

    // MQTT 3.1.1 on the same listener: closed too.
    let mut raw = Raw::handshake(small, &connect_v4("small4", true, 60)).await;
    raw.send(&publish_v4("t", 0, 0, &[7u8; 2000], false)).await;
    assert!(raw.expect_closed().await.is_empty());

    // The same packet on the other listener is fine.
    let mut raw = Raw::connect(default).await;
    raw.send(&connect_v5("big", true, 60, |_| {})).await;
    let ack = raw.recv().await.connack_v5();
    assert_eq!(ack.properties.and_then(|p| p.max_packet_size), Some(4096));
    raw.send(&publish_v5("t", 0, 0, &[7u8; 2000], None)).await;
    raw.send(&PINGREQ).await;
    assert_eq!(raw.recv_kind(13).await.kind(), 13);
}
