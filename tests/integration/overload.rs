//! Overload (`[session] overload`, issue 19): with backpressure a burst
//! to a subscriber that pauses is delivered in full, its publishers held
//! meanwhile; with `drop` the same burst loses messages (the test can
//! fail); a subscriber that stops reading holds publishers only for its
//! stall time, and one that reads too slowly only for its wait.

use std::net::SocketAddr;

use sluice_broker::config::OverloadPolicy;
use sluice_broker::limits::Limit;
use sluice_broker::metrics::Metrics;
use tokio::net::TcpSocket;

use crate::support::packets::*;
use crate::support::{Raw, TestBroker, eventually, within};

const PUBLISHERS: usize = 2;
const PER_PUBLISHER: usize = 4_000;
const PAYLOAD: usize = 1024;

/// A connected MQTT 3.1.1 client with a small receive buffer, subscribed
/// to `filter` at QoS 0, that reads nothing more until told to.
async fn subscriber(broker: &TestBroker, id: &str, filter: &str) -> Raw {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("rcvbuf");
    let stream = socket.connect(broker.addr).await.expect("connect");
    let mut raw = Raw::from_stream(stream);
    raw.send(&connect_v4(id, true, 0)).await;
    assert_eq!(raw.recv().await.connack(), (false, 0));
    raw.send(&subscribe_v4(1, filter, 0)).await;
    raw.recv_kind(9).await;
    raw
}

/// Message `seq` of publisher `p`: its numbers, then padding.
fn payload(p: usize, seq: usize) -> Vec<u8> {
    let mut v = vec![b'.'; PAYLOAD];
    v[0] = p as u8;
    v[1..5].copy_from_slice(&(seq as u32).to_be_bytes());
    v
}

/// Publishes `PER_PUBLISHER` QoS 0 messages to `topic` as fast as the
/// broker reads them, then a PINGREQ; returns once the PINGRESP came
/// (everything before it was read and routed).
async fn publish_burst(addr: SocketAddr, p: usize, topic: &str) {
    let mut raw = Raw::handshake(addr, &connect_v4(&format!("pub{p}"), true, 0)).await;
    for chunk in (0..PER_PUBLISHER).collect::<Vec<_>>().chunks(50) {
        let bytes: Vec<u8> = chunk
            .iter()
            .flat_map(|&seq| publish_v4(topic, 0, 0, &payload(p, seq), false))
            .collect();
        raw.send(&bytes).await;
    }
    raw.send(&[0xC0, 0x00]).await;
    raw.recv_kind(13).await;
}

/// Reads publishes until `done(received)`, checking each publisher's
/// messages come in order; returns how many came.
async fn read_in_order(sub: &mut Raw, mut done: impl FnMut(usize) -> bool) -> usize {
    let mut next = [0u32; PUBLISHERS];
    let mut received = 0;
    while !done(received) {
        let p = sub.recv_kind(3).await.publish_v4();
        let (who, seq) = (
            p.payload[0] as usize,
            u32::from_be_bytes(p.payload[1..5].try_into().expect("4 bytes")),
        );
        assert!(
            seq >= next[who],
            "publisher {who}: {seq} after {}",
            next[who]
        );
        next[who] = seq + 1;
        received += 1;
    }
    received
}

fn spawn_publishers(broker: &TestBroker, topic: &'static str) -> tokio::task::JoinSet<()> {
    let mut publishers = tokio::task::JoinSet::new();
    for p in 0..PUBLISHERS {
        let addr = broker.addr;
        publishers.spawn(publish_burst(addr, p, topic));
    }
    publishers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_to_a_subscriber_that_pauses_is_delivered_in_full() {
    // Waits long enough for a paused reader (the defaults give up on a
    // client that takes nothing for 100 ms).
    let broker = TestBroker::with(|c| {
        c.session.overload_wait_ms = 60_000;
        c.session.overload_stall_ms = 60_000;
    });
    let m = &broker.ctx.metrics;
    let mut sub = subscriber(&broker, "behind", "burst").await;
    let publishers = spawn_publishers(&broker, "burst");
    // The subscriber reads nothing until the broker holds a publisher:
    // by then its queue is past half of its 1,000 messages.
    eventually("a publisher is held", || {
        Metrics::get(&m.publishers_held) > 0
    })
    .await;
    let total = PUBLISHERS * PER_PUBLISHER;
    let received = within(
        "the burst delivered",
        read_in_order(&mut sub, |n| n == total),
    )
    .await;
    assert_eq!(received, total);
    within("publishers done", publishers.join_all()).await;
    assert_eq!(Metrics::get(&m.messages_dropped), 0, "nothing dropped");
    assert_eq!(broker.ctx.metrics.limits.count(Limit::OverloadWait), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_overload_drop_the_same_burst_loses_messages() {
    let broker = TestBroker::with(|c| c.session.overload = OverloadPolicy::Drop);
    let m = &broker.ctx.metrics;
    let mut sub = subscriber(&broker, "behind", "burst").await;
    let publishers = spawn_publishers(&broker, "burst");
    within("publishers done", publishers.join_all()).await;
    assert_eq!(Metrics::get(&m.publishers_held), 0, "nobody held");
    // Every message is either delivered or counted as dropped.
    let total = PUBLISHERS * PER_PUBLISHER;
    let dropped = Metrics::get(&m.messages_dropped) as usize;
    assert!(dropped > 0, "the subscriber's queue overflowed");
    let received = within(
        "what was not dropped delivered",
        read_in_order(&mut sub, |n| n + dropped == total),
    )
    .await;
    assert!(received < total);
}

/// A publisher to "fan" with a lagging and a healthy subscriber: the
/// healthy one gets the whole burst, and the broker gives up on the
/// lagging one (an `overload_wait` hit) and drops for it. The lagging one
/// reads nothing, or (`trickle`) one message every 2 ms.
async fn lagging_and_healthy(broker: &TestBroker, trickle: bool) {
    let m = &broker.ctx.metrics;
    let mut lagging = subscriber(broker, "lagging", "fan").await;
    // The trickling reader owns the connection; a stuck one stays here.
    let (trickling, _stuck) = if trickle {
        let reader = tokio::spawn(async move {
            loop {
                lagging.recv_kind(3).await;
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
        });
        (Some(reader), None)
    } else {
        (None, Some(lagging))
    };
    let mut healthy = Raw::handshake(broker.addr, &connect_v4("healthy", true, 0)).await;
    healthy.send(&subscribe_v4(1, "fan", 0)).await;
    healthy.recv_kind(9).await;
    let publisher = async {
        publish_burst(broker.addr, 0, "fan").await;
    };
    let total = PER_PUBLISHER;
    let (_, received) = within("the burst delivered to the healthy subscriber", async {
        tokio::join!(publisher, read_in_order(&mut healthy, |n| n == total))
    })
    .await;
    assert_eq!(received, total, "the healthy subscriber lost nothing");
    if trickle {
        // (One that stopped reading may be given up on before a hold:
        // when its queue passes half, its last take can be older than
        // its stall time already.)
        assert!(
            Metrics::get(&m.publishers_held) > 0,
            "the lagging one held it"
        );
    }
    assert!(
        m.limits.count(Limit::OverloadWait) > 0,
        "then the broker gave up on it (held {}, dropped {})",
        Metrics::get(&m.publishers_held),
        Metrics::get(&m.messages_dropped)
    );
    assert!(Metrics::get(&m.messages_dropped) > 0, "and dropped for it");
    if let Some(t) = trickling {
        t.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_reads_too_slowly_holds_publishers_only_for_its_wait() {
    // It keeps taking from its queue, so only the wait lets go of it.
    let broker = TestBroker::with(|c| {
        c.session.overload_wait_ms = 300;
        c.session.overload_stall_ms = 300;
    });
    lagging_and_healthy(&broker, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_stopped_reading_is_given_up_on_after_its_stall_time() {
    // A wait longer than `within` allows: only the stall (100 ms by
    // default) lets the burst through in time.
    let broker = TestBroker::with(|c| c.session.overload_wait_ms = 60_000);
    lagging_and_healthy(&broker, false).await;
}
