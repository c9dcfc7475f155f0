//! The queue to NATS under overload (`[session] overload`): with
//! backpressure, a publisher whose messages pile up for NATS (here: the
//! NATS server stopped) is no longer read, and nothing is dropped; with
//! `drop`, the queue fills and drops (the test can fail).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use sluice_broker::config::OverloadPolicy;
use sluice_broker::metrics::Metrics;

use super::node_with;
use crate::support::nats::NatsServer;
use crate::support::packets::*;
use crate::support::{Raw, TestBroker, eventually, within};

/// More QoS 0 messages than the queue to NATS and the NATS client's
/// buffers hold together.
const MESSAGES: usize = 200_000;

/// Publishes `MESSAGES` QoS 0 messages to `t`, then a PINGREQ, and returns
/// once the PINGRESP came (everything before it was read and routed).
async fn publish_all(addr: SocketAddr) {
    let mut raw = Raw::handshake(addr, &connect_v4("pub", true, 0)).await;
    let one = publish_v4("t", 0, 0, b"0123456789abcdef", false);
    let chunk: Vec<u8> = one.repeat(500);
    for _ in 0..MESSAGES / 500 {
        raw.send(&chunk).await;
    }
    raw.send(&[0xC0, 0x00]).await;
    raw.recv_kind(13).await;
}

fn cluster_dropped(node: &TestBroker) -> u64 {
    let cluster = node.ctx.router.cluster().expect("in a cluster");
    cluster.stats().dropped.load(Ordering::Relaxed)
}

fn forwarded(node: &TestBroker) -> u64 {
    let cluster = node.ctx.router.cluster().expect("in a cluster");
    cluster.stats().forwarded.load(Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_is_held_while_nats_does_not_take_its_messages() {
    let nats = NatsServer::start();
    let node = node_with(vec![nats.url.clone()], "a", |c| {
        c.session.overload_wait_ms = 60_000;
    });
    nats.set_running(false);
    let publisher = tokio::spawn(publish_all(node.addr));
    let m = &node.ctx.metrics;
    eventually("the publisher is held", || {
        Metrics::get(&m.publishers_held) > 0
    })
    .await;
    assert!(!publisher.is_finished(), "held, not done");
    assert_eq!(cluster_dropped(&node), 0, "nothing dropped while held");
    nats.set_running(true);
    within("the publisher is read again", publisher)
        .await
        .expect("publisher");
    eventually("every message reached NATS", || {
        forwarded(&node) >= MESSAGES as u64
    })
    .await;
    assert_eq!(cluster_dropped(&node), 0, "nothing dropped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_overload_drop_the_queue_to_nats_drops() {
    let nats = NatsServer::start();
    let node = node_with(vec![nats.url.clone()], "a", |c| {
        c.session.overload = OverloadPolicy::Drop;
    });
    nats.set_running(false);
    within("the publisher is read throughout", publish_all(node.addr)).await;
    assert!(cluster_dropped(&node) > 0, "the full queue dropped");
    assert_eq!(Metrics::get(&node.ctx.metrics.publishers_held), 0);
    nats.set_running(true);
}
