//! A subscriber that stops reading while others publish megabytes to it:
//! its client id must not be locked (takeover), its keep alive and a
//! shutdown must still reach it, and what the broker queues for it stays
//! bounded by bytes as well as by count.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::v4;
use crate::support::hostile::*;
use crate::support::packets::*;
use crate::support::{Raw, TestBroker, eventually};
use sluice_broker::session::SubscriberId;
use sluice_broker::topic::ClientId;

/// The scenario: 24 MB published to the stuck subscriber's topic,
/// as 24 QoS 0 messages of 1 MB.
const FLOOD_MESSAGES: usize = 24;
const FLOOD_SIZE: usize = 1_000_000;

/// The bound: a takeover answers in under a second even when the
/// old connection has megabytes pending.
const TAKEOVER_BOUND: Duration = Duration::from_secs(1);

fn id(client: &str) -> SubscriberId {
    SubscriberId {
        mountpoint: "".into(),
        client_id: ClientId::new(client).expect("valid id"),
    }
}

/// A 3.1.1 client with a small receive buffer, subscribed to `flood/#`,
/// that reads nothing after its SUBACK.
async fn stuck_subscriber(addr: SocketAddr, client: &str, keep_alive: u16) -> Raw {
    let mut raw = stalled_client(addr, &connect_v4(client, true, keep_alive)).await;
    raw.send(&subscribe_v4(1, "flood/#", 0)).await;
    assert_eq!(raw.recv_kind(9).await.ack_codes(false), [0]);
    raw
}

/// Publishes `count` QoS 0 messages of `FLOOD_SIZE` bytes to `flood/a`,
/// then a QoS 1 message elsewhere whose PUBACK says they were all routed.
async fn flood(addr: SocketAddr, count: usize) {
    let mut raw = Raw::handshake(addr, &v4("flooder")).await;
    let message = publish_v4("flood/a", 0, 0, &vec![b'f'; FLOOD_SIZE], false);
    for _ in 0..count {
        raw.send(&message).await;
    }
    raw.send(&publish_v4("sync", 1, 1, b"", false)).await;
    assert_eq!(raw.recv_kind(4).await.packet_id(), 1);
}

/// Waits until `client`'s connection has taken a flood message from its
/// queue: it then has a megabyte of output its client does not read. (A
/// connection task that has not run since the flood began is not stuck
/// yet, and sees a kick as an idle one does.)
async fn until_output_pending(broker: &TestBroker, client: &str) {
    let id = id(client);
    eventually("the stuck connection took a message from its queue", || {
        broker
            .ctx
            .registry
            .get(&id)
            .is_some_and(|s| s.lock().queue.len() < FLOOD_MESSAGES)
    })
    .await;
}

#[tokio::test]
async fn takeover_of_a_stuck_subscriber_answers_within_a_second() {
    let broker = TestBroker::start();
    let _stuck = stuck_subscriber(broker.addr, "stuck-1", 0).await;
    flood(broker.addr, FLOOD_MESSAGES).await;
    until_output_pending(&broker, "stuck-1").await;

    let started = Instant::now();
    let (_taker, ack) = connect_answer(broker.addr, &connect_v4("stuck-1", true, 0)).await;
    let took = started.elapsed();
    assert_eq!(ack.connack().1, 0, "takeover refused after {took:?}");
    assert!(took < TAKEOVER_BOUND, "takeover answered after {took:?}");
}

#[tokio::test]
async fn keep_alive_closes_a_stuck_subscriber() {
    /// Two seconds rather than one, so the flood surely ends before the
    /// keep alive runs out (the kick must reach a connection whose output
    /// is already stuck).
    const KEEP_ALIVE: u16 = 2;
    /// 1.5 × the keep alive, one sweeper tick (250 ms) late at most, and
    /// two seconds of margin for a loaded machine; counted from the
    /// subscriber's last packet.
    const KICK_BOUND: Duration = Duration::from_millis(1500 * KEEP_ALIVE as u64 + 250 + 2000);
    let broker = TestBroker::start();
    let _stuck = stuck_subscriber(broker.addr, "stuck-ka", KEEP_ALIVE).await;
    let silent_since = Instant::now();
    flood(broker.addr, FLOOD_MESSAGES).await;
    until_output_pending(&broker, "stuck-ka").await;
    let flooded = silent_since.elapsed();
    assert!(
        flooded < Duration::from_secs(u64::from(KEEP_ALIVE)),
        "the flood took {flooded:?}: the keep alive may have run out before the output was stuck"
    );
    let id = id("stuck-ka");
    let online = || {
        broker
            .ctx
            .registry
            .get(&id)
            .is_some_and(|session| session.is_online())
    };
    while online() {
        assert!(
            silent_since.elapsed() < KICK_BOUND,
            "a stuck client with keep alive {KEEP_ALIVE} s is still connected after {:?}",
            silent_since.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn shutdown_is_not_held_up_by_a_stuck_subscriber() {
    /// `test_config`'s `shutdown_timeout_secs` (3) and a margin.
    const SHUTDOWN_BOUND: Duration = Duration::from_secs(3 + 2);
    let mut broker = TestBroker::start();
    let _stuck = stuck_subscriber(broker.addr, "stuck-down", 0).await;
    flood(broker.addr, FLOOD_MESSAGES).await;
    until_output_pending(&broker, "stuck-down").await;
    let started = Instant::now();
    broker.shutdown();
    let took = started.elapsed();
    assert!(took < SHUTDOWN_BOUND, "shutdown took {took:?}");
}

/// What a subscriber that does not read can hold beyond its session
/// queue: the kernel's buffers (the broker's send buffer grows up to
/// `tcp_wmem`'s maximum; the client's receive buffer is small) and a
/// message or two in its connection's output.
fn held_beyond_the_queue() -> usize {
    let wmem_max = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|t| t.split_whitespace().nth(2).and_then(|v| v.parse().ok()))
        .unwrap_or(4 * 1024 * 1024);
    wmem_max + 2 * SMALL_RCVBUF as usize + 2 * FLOOD_SIZE
}

/// Floods a subscriber that does not read with 64 MB, then lets it read
/// all the broker kept for it, up to a QoS 1 marker published last (a
/// full queue makes room for it by dropping QoS 0 messages): returns the
/// flood bytes it got.
async fn kept_for_a_stuck_subscriber(broker: &TestBroker) -> usize {
    const MESSAGES: usize = 64;
    let mut stuck = stalled_client(broker.addr, &connect_v4("stuck-q", true, 0)).await;
    stuck.send(&subscribe_v4(1, "flood/#", 1)).await;
    assert_eq!(stuck.recv_kind(9).await.ack_codes(false), [1]);
    let mut flooder = Raw::handshake(broker.addr, &v4("flooder")).await;
    let message = publish_v4("flood/a", 0, 0, &vec![b'f'; FLOOD_SIZE], false);
    for _ in 0..MESSAGES {
        flooder.send(&message).await;
    }
    flooder
        .send(&publish_v4("flood/end", 1, 1, b"", false))
        .await;
    assert_eq!(flooder.recv_kind(4).await.packet_id(), 1);
    let mut kept = 0;
    loop {
        let p = stuck.recv_kind(3).await.publish_v4();
        if p.topic == "flood/end" {
            return kept;
        }
        kept += p.payload.len();
    }
}

#[tokio::test]
async fn a_stuck_subscriber_queues_at_most_16_mib_by_default() {
    /// `session.max_queued_bytes`'s new default.
    const DEFAULT_QUEUED_BYTES: usize = 16 * 1024 * 1024;
    // The message limit raised so that bytes are what binds.
    let broker = TestBroker::with(|c| c.session.max_queued_messages = 100_000);
    let kept = kept_for_a_stuck_subscriber(&broker).await;
    let bound = DEFAULT_QUEUED_BYTES + held_beyond_the_queue();
    assert!(
        kept <= bound,
        "{kept} bytes kept for a subscriber that does not read (at most {bound})"
    );
}

#[tokio::test]
async fn a_stuck_subscriber_queues_at_most_max_queued_bytes() {
    const QUEUED_BYTES: usize = 4 * 1024 * 1024;
    let broker = toml_broker(
        &format!("[session]\nmax_queued_bytes = {QUEUED_BYTES}\nmax_queued_messages = 100000\n"),
        |_| {},
    );
    let kept = kept_for_a_stuck_subscriber(&broker).await;
    let bound = QUEUED_BYTES + held_beyond_the_queue();
    assert!(
        kept <= bound,
        "{kept} bytes kept for a subscriber that does not read (at most {bound})"
    );
}
