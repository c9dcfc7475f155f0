//! Three Sluice nodes over three clustered NATS servers (JetStream with
//! three replicas): a NATS server killed in the middle of a QoS 2 stream
//! across nodes loses and doubles nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::support::nats::NatsCluster;
use crate::support::rumqtt::V4;
use crate::support::{TestBroker, within};

/// Node `name` connected to the cluster's server `first` first.
fn node_on(nats: &NatsCluster, first: usize, name: &str) -> TestBroker {
    super::node_with(nats.urls_from(first), name, |c| c.cluster.replicas = 3)
}

/// Publishes probes from `publisher` until `subscriber` gets one: its
/// node's interest (and JetStream consumer) is in place. Returns how many
/// were published.
async fn await_interest(publisher: &V4, subscriber: &mut V4, topic: &str) -> usize {
    let mut probes = 0;
    within("interest across nodes", async {
        loop {
            publisher.publish(topic, 2, false, b"probe").await;
            probes += 1;
            let got = tokio::time::timeout(Duration::from_millis(300), subscriber.next_publish());
            if got.await.is_ok() {
                return probes;
            }
        }
    })
    .await
}

#[tokio::test]
async fn a_nats_server_dies_and_qos2_across_nodes_loses_and_doubles_nothing() {
    const N: usize = 600;
    const BOUND: Duration = Duration::from_secs(60);
    let mut nats = NatsCluster::start(3).await;
    let a = node_on(&nats, 0, "a");
    let _b = node_on(&nats, 1, "b");
    let c = node_on(&nats, 2, "c");
    let mut subscriber = V4::connect(c.addr, "sub").await;
    subscriber.subscribe("k/#", 2).await;
    // Within the broker's receive maximum (32): MQTT 3.1.1 cannot tell
    // the client.
    let mut publisher = V4::connect_with(a.addr, "pub", |o| {
        o.set_inflight(32);
    })
    .await;
    let probes = await_interest(&publisher, &mut subscriber, "k/probe").await;

    // The publisher's completions (the probes' too), counted as they come.
    let mut completed = 0;
    let mut received: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..N {
        publisher
            .publish("k/t", 2, false, i.to_string().as_bytes())
            .await;
        if i == N / 3 {
            // A's NATS server: A's client moves to another, JetStream
            // keeps its quorum.
            nats.kill(0);
        }
    }
    publisher.publish("k/t", 2, false, b"end").await;
    // Bounded: JetStream moves its stream leaders off the dead server and
    // the node's client reconnects to another, in a few seconds.
    let mut done = false;
    let all = async {
        while completed < probes + N + 1 || !done || received.len() < N {
            // Silences of several seconds are expected while JetStream
            // fails over; the whole wait is bounded below.
            tokio::select! {
                p = publisher.next_within(BOUND) => {
                    if matches!(p, Some(rumqttc::Packet::PubComp(_))) {
                        completed += 1;
                    }
                }
                m = subscriber.next_within(BOUND) => {
                    if let Some(rumqttc::Packet::Publish(m)) = m {
                        let payload = String::from_utf8_lossy(&m.payload).into_owned();
                        match payload.as_str() {
                            "probe" => {}
                            "end" => done = true,
                            _ => *received.entry(payload).or_default() += 1,
                        }
                    }
                }
            }
        }
    };
    let _ = tokio::time::timeout(BOUND, all).await;
    assert_eq!(completed, probes + N + 1, "PUBCOMPs");
    assert!(done, "the end marker");
    let missing: Vec<usize> = (0..N)
        .filter(|i| !received.contains_key(&i.to_string()))
        .collect();
    let doubled: Vec<_> = received.iter().filter(|(_, n)| **n > 1).collect();
    assert!(missing.is_empty(), "lost: {missing:?}");
    assert!(doubled.is_empty(), "delivered twice: {doubled:?}");
    assert_eq!(received.len(), N);
}
