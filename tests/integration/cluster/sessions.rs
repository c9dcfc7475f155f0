//! Sessions between nodes: a persistent session follows its client to
//! another node with its subscriptions and queued messages; the sessions
//! of a node killed with SIGKILL go to the survivors, which send each Will
//! (of persistent and clean sessions) once.

use std::collections::HashMap;

use super::{await_interest, metric, next_message, node, node_with};
use crate::support::nats::NatsServer;
use crate::support::packets::*;
use crate::support::process::Sluice;
use crate::support::{Raw, TempDir, TestBroker, within};

const PUBACK: u8 = 4;
const SUBACK: u8 = 9;

/// MQTT 3.1.1 DISCONNECT.
const DISCONNECT_V4: [u8; 2] = [0xE0, 0];

/// A node that takes another for dead after 2 s without its heartbeat.
fn quick_node(nats: &NatsServer, name: &str) -> TestBroker {
    node_with(vec![nats.url.clone()], name, |c| c.cluster.node_timeout = 2)
}

/// Subscribes `c` to `filter` at QoS 1.
async fn subscribe(c: &mut Raw, pkid: u16, filter: &str) {
    c.send(&subscribe_v4(pkid, filter, 1)).await;
    assert_eq!(c.recv_kind(SUBACK).await.ack_codes(false), [1], "{filter}");
}

/// Publishes at QoS 1 and reads the PUBACK.
async fn publish(c: &mut Raw, topic: &str, pkid: u16, payload: &str) {
    c.send(&publish_v4(topic, 1, pkid, payload.as_bytes(), false))
        .await;
    assert_eq!(c.recv_kind(PUBACK).await.packet_id(), pkid);
}

/// Messages (not probes) until `ends` with payload `end` arrived, by
/// topic and payload, in order of arrival.
async fn until_end(c: &mut Raw, ends: usize) -> Vec<(String, String)> {
    let mut got = Vec::new();
    let mut seen = 0;
    within("the end markers", async {
        loop {
            let (topic, payload) = next_message(c).await;
            match payload.as_str() {
                "end" => {
                    seen += 1;
                    if seen == ends {
                        return;
                    }
                }
                "probe" => {}
                _ => got.push((topic, payload)),
            }
        }
    })
    .await;
    got
}

#[tokio::test]
async fn a_session_follows_its_client_to_another_node_with_its_subscriptions_and_queue() {
    let nats = NatsServer::start();
    let a = node(&nats, "a");
    let b = node(&nats, "b");
    // A persistent session on A, subscribed, then offline.
    let mut roamer = Raw::handshake(a.addr, &connect_v4("roamer", false, 60)).await;
    subscribe(&mut roamer, 1, "r/#").await;
    roamer.send(&DISCONNECT_V4).await;
    roamer.expect_closed().await;
    // Messages queue for it on A.
    let mut publisher = Raw::handshake(a.addr, &connect_v4("pub", true, 60)).await;
    for (i, m) in ["m1", "m2", "m3"].into_iter().enumerate() {
        publish(&mut publisher, "r/t", u16::try_from(i + 1).expect("few"), m).await;
    }
    // Its client comes back on B: the session came along.
    let mut roamer = Raw::connect(b.addr).await;
    roamer.send(&connect_v4("roamer", false, 60)).await;
    assert_eq!(roamer.recv().await.connack(), (true, 0), "session present");
    let mut queued = Vec::new();
    for _ in 0..3 {
        queued.push(next_message(&mut roamer).await.1);
    }
    assert_eq!(queued, ["m1", "m2", "m3"], "the queue, in order");
    // Its subscription lives on B now: A's publisher reaches it there.
    await_interest(&mut publisher, &mut roamer, "r/probe").await;
    publish(&mut publisher, "r/t", 10, "m4").await;
    publish(&mut publisher, "r/t", 11, "end").await;
    let later = until_end(&mut roamer, 1).await;
    assert_eq!(later, [("r/t".to_owned(), "m4".to_owned())]);
    assert_eq!(
        metric(&a, "sluice_cluster_sessions_handed_out_total").await,
        Some(1)
    );
    assert_eq!(
        metric(&b, "sluice_cluster_sessions_handed_in_total").await,
        Some(1)
    );
}

/// A `sluice` process in the cluster, to be killed with SIGKILL.
fn node_process(nats: &NatsServer, dir: &TempDir, name: &str) -> Sluice {
    let config = dir.path.join(format!("{name}.toml"));
    let text = format!(
        "[cluster]\nnats = [{:?}]\nnode = {name:?}\nnode_timeout = 2\n",
        nats.url
    );
    std::fs::write(&config, text).expect("write config");
    Sluice::start(&[
        "--config",
        config.to_str().expect("utf-8 temp path"),
        "--bind",
        "127.0.0.1:0",
        "--allow-anonymous",
    ])
}

/// A watcher of `wills/#` on `broker`, reached by publishes on `from`.
async fn watcher(broker: &TestBroker, id: &str, from: &mut Raw) -> Raw {
    let mut w = Raw::handshake(broker.addr, &connect_v4(id, true, 60)).await;
    subscribe(&mut w, 1, "wills/#").await;
    await_interest(from, &mut w, "wills/probe").await;
    w
}

#[tokio::test]
async fn a_killed_nodes_sessions_go_to_the_survivors_and_each_will_is_sent_once() {
    let nats = NatsServer::start();
    let dir = TempDir::new("cluster-kill");
    let mut a = node_process(&nats, &dir, "a");
    let b = quick_node(&nats, "b");
    let c = quick_node(&nats, "c");
    // Two persistent sessions on A with Wills; one subscribed.
    let mut back = Raw::handshake(
        a.addr,
        &connect_v4_will("back", false, "wills/back", b"gone", 1, false),
    )
    .await;
    subscribe(&mut back, 1, "w/#").await;
    let _away = Raw::handshake(
        a.addr,
        &connect_v4_will("away", false, "wills/away", b"gone", 1, false),
    )
    .await;
    // And a clean session with a Will.
    let _clean = Raw::handshake(
        a.addr,
        &connect_v4_will("clean", true, "wills/clean", b"gone", 1, false),
    )
    .await;
    // Watchers on B and C that A's messages reach.
    let mut on_a = Raw::handshake(a.addr, &connect_v4("probe-a", true, 60)).await;
    let mut watch_b = watcher(&b, "watch-b", &mut on_a).await;
    let mut watch_c = watcher(&c, "watch-c", &mut on_a).await;

    a.kill();
    // `back` reconnects to B at once: its session (and subscription)
    // comes from the card A left in the cluster; its Will goes out.
    let mut back = Raw::connect(b.addr).await;
    back.send(&connect_v4("back", false, 60)).await;
    assert_eq!(back.recv().await.connack(), (true, 0), "session present");
    // `away` does not come back: a survivor takes A for dead and sends
    // its Will. Both survivors look for A's sessions; one wins each.
    within("both survivors handled A's death", async {
        for n in [&b, &c] {
            while metric(n, "sluice_cluster_dead_nodes_handled_total").await < Some(1) {
                // Polling the node's /metrics: there is no event to await.
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    })
    .await;
    // A marker from each survivor, behind the Wills it sent.
    for (n, id) in [(&b, "marker-b"), (&c, "marker-c")] {
        let mut from = Raw::handshake(n.addr, &connect_v4(id, true, 60)).await;
        publish(&mut from, "wills/x", 1, "end").await;
    }
    for w in [&mut watch_b, &mut watch_c] {
        let mut count: HashMap<String, usize> = HashMap::new();
        for (topic, _) in until_end(w, 2).await {
            *count.entry(topic).or_default() += 1;
        }
        let expected =
            HashMap::from(["wills/back", "wills/away", "wills/clean"].map(|t| (t.to_owned(), 1)));
        assert_eq!(count, expected, "each Will once");
    }
    let inherited = metric(&b, "sluice_cluster_sessions_inherited_total")
        .await
        .unwrap_or(0)
        + metric(&c, "sluice_cluster_sessions_inherited_total")
            .await
            .unwrap_or(0);
    // `away` and `clean`, and `back` if A was found dead before it came.
    assert!(
        (2..=3).contains(&inherited),
        "{inherited} sessions inherited"
    );
    // `back`'s subscription came along: C's publisher reaches it on B.
    let mut on_c = Raw::handshake(c.addr, &connect_v4("pub-c", true, 60)).await;
    await_interest(&mut on_c, &mut back, "w/probe").await;
    publish(&mut on_c, "w/t", 2, "hello").await;
    publish(&mut on_c, "w/t", 3, "end").await;
    assert_eq!(
        until_end(&mut back, 1).await,
        [("w/t".to_owned(), "hello".to_owned())]
    );
    // `away`'s session lives on a survivor: it resumes there.
    let mut away = Raw::connect(c.addr).await;
    away.send(&connect_v4("away", false, 60)).await;
    assert_eq!(away.recv().await.connack(), (true, 0), "session present");
}
