//! Brokers in a cluster over a real `nats-server`: messages cross nodes by
//! interest, once per node and never back to their origin; shared
//! subscriptions take one member cluster-wide; interest follows the
//! subscriptions. Sessions moving between nodes are in [`sessions`].

mod failover;
mod overload;
mod plugins;
mod sessions;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::support::nats::NatsServer;
use crate::support::packets::*;
use crate::support::{Raw, TestBroker, eventually, within};

const PUBLISH: u8 = 3;
const PUBACK: u8 = 4;
const SUBACK: u8 = 9;
const UNSUBACK: u8 = 11;

/// Node `name` on the NATS servers `nats`, with an admin endpoint, its
/// configuration then changed by `tweak`.
fn node_with(
    nats: Vec<String>,
    name: &str,
    tweak: impl FnOnce(&mut sluice_broker::config::Config),
) -> TestBroker {
    TestBroker::with(|c| {
        c.cluster.nats = nats;
        c.cluster.node = Some(name.to_owned());
        c.admin.bind = Some("127.0.0.1:0".parse().expect("address"));
        tweak(c);
    })
}

/// Node `name` on `nats`.
fn node(nats: &NatsServer, name: &str) -> TestBroker {
    node_with(vec![nats.url.clone()], name, |_| {})
}

/// A line of the node's `/metrics`.
async fn metric(broker: &TestBroker, name: &str) -> Option<u64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(broker.admin.expect("admin endpoint"))
        .await
        .expect("admin connects");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("request");
    let mut text = String::new();
    within("metrics", s.read_to_string(&mut text))
        .await
        .expect("response");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// An MQTT 3.1.1 client holding `filters` (QoS 1).
async fn client(broker: &TestBroker, id: &str, filters: &[&str]) -> Raw {
    let mut c = Raw::handshake(broker.addr, &connect_v4(id, true, 60)).await;
    for (i, f) in filters.iter().enumerate() {
        let pkid = u16::try_from(i + 1).expect("few filters");
        c.send(&subscribe_v4(pkid, f, 1)).await;
        let ack = c.recv_kind(SUBACK).await;
        assert_eq!(ack.ack_codes(false), [1], "SUBACK for {f}");
    }
    c
}

/// The next PUBLISH's topic and payload (acknowledged if QoS 1).
async fn next_message(c: &mut Raw) -> (String, String) {
    let f = c.recv_kind(PUBLISH).await;
    let p = f.publish_v4();
    if p.pkid != 0 {
        c.send(&puback(p.pkid)).await;
    }
    (
        p.topic.clone(),
        String::from_utf8_lossy(&p.payload).into_owned(),
    )
}

/// Publishes `topic` from `publisher` at QoS 0 and at QoS 1 until
/// `subscriber` got both: the subscriber's node has told NATS of its
/// interest (core NATS for QoS 0, a JetStream consumer for QoS 1). Later
/// copies of the probe are ignored by the callers (they count other
/// payloads); the probes' PUBACKs are read here.
async fn await_interest(publisher: &mut Raw, subscriber: &mut Raw, topic: &str) {
    const PROBE_ID: u16 = 0xFFFF;
    within("interest to reach NATS", async {
        let (mut qos0, mut qos1) = (false, false);
        while !(qos0 && qos1) {
            publisher
                .send(&publish_v4(topic, 0, 0, b"probe", false))
                .await;
            publisher
                .send(&publish_v4(topic, 1, PROBE_ID, b"probe", false))
                .await;
            assert_eq!(publisher.recv_kind(PUBACK).await.packet_id(), PROBE_ID);
            while let Some(f) = subscriber.recv_within(Duration::from_millis(50)).await {
                if f.kind() != PUBLISH {
                    continue;
                }
                let p = f.publish_v4();
                if p.pkid != 0 {
                    subscriber.send(&puback(p.pkid)).await;
                }
                if p.topic == topic {
                    qos0 |= p.pkid == 0;
                    qos1 |= p.pkid != 0;
                }
            }
        }
    })
    .await;
}

/// Reads messages until both end markers (`end` at QoS 0, `end1` at
/// QoS 1) arrived; counts the others by topic and payload. MQTT keeps a
/// topic's messages from one publisher in order per QoS: each marker comes
/// after the messages of its QoS.
async fn until(c: &mut Raw) -> HashMap<(String, String), usize> {
    let mut seen = HashMap::new();
    let mut ends = 0;
    within("the end markers", async {
        while ends < 2 {
            let (topic, payload) = next_message(c).await;
            if payload == "end" || payload == "end1" {
                ends += 1;
            } else if payload != "probe" {
                *seen.entry((topic, payload)).or_insert(0) += 1;
            }
        }
    })
    .await;
    seen
}

#[tokio::test]
async fn messages_cross_nodes_once_and_never_loop_back() {
    let nats = NatsServer::start();
    let a = node(&nats, "a");
    let b = node(&nats, "b");
    // On B: one session whose two filters overlap, another with an exact
    // filter; on A, beside the publisher, a subscriber of its own.
    let mut exact_b = client(&b, "exact-b", &["t/x"]).await;
    let mut overlap_b = client(&b, "overlap-b", &["t/+", "t/#"]).await;
    let mut local_a = client(&a, "local-a", &["t/#"]).await;
    let mut publisher = Raw::handshake(a.addr, &connect_v4("pub-a", true, 60)).await;
    await_interest(&mut publisher, &mut overlap_b, "t/probe").await;

    for i in 0..10u16 {
        let q = u8::from(i % 2 == 1);
        publisher
            .send(&publish_v4(
                "t/x",
                q,
                i + 1,
                format!("m{i}").as_bytes(),
                false,
            ))
            .await;
        if q == 1 {
            let ack = publisher.recv_kind(PUBACK).await;
            assert_eq!(ack.packet_id(), i + 1);
        }
    }
    // The last messages on the same topic, one per QoS: MQTT keeps a
    // topic's messages of one QoS from one publisher in order, across
    // nodes too (QoS 0 crosses on core NATS, QoS 1 through JetStream).
    publisher
        .send(&publish_v4("t/x", 0, 0, b"end", false))
        .await;
    publisher
        .send(&publish_v4("t/x", 1, 100, b"end1", false))
        .await;
    assert_eq!(publisher.recv_kind(PUBACK).await.packet_id(), 100);

    for (who, c) in [
        ("exact-b", &mut exact_b),
        ("overlap-b", &mut overlap_b),
        ("local-a", &mut local_a),
    ] {
        let seen = until(c).await;
        for i in 0..10 {
            let n = seen.get(&("t/x".into(), format!("m{i}"))).copied();
            assert_eq!(n, Some(1), "{who}: m{i} delivered {n:?} times: {seen:?}");
        }
        assert_eq!(seen.len(), 10, "{who}: {seen:?}");
    }
    let stats = |broker: &TestBroker| {
        let s = broker.ctx.router.cluster().expect("in a cluster").stats();
        (
            s.forwarded.load(Ordering::Relaxed),
            s.received.load(Ordering::Relaxed),
        )
    };
    // A sent every message once (QoS 1 counted once JetStream has it); A
    // received none of its own back.
    eventually("A's messages forwarded", || stats(&a).0 >= 12).await;
    assert_eq!(stats(&a).1, 0, "A got messages back");
    assert!(stats(&b).1 >= 12, "{:?}", stats(&b));
    assert_eq!(metric(&a, "sluice_cluster_received_total").await, Some(0));
    let forwarded = metric(&a, "sluice_cluster_forwarded_total").await;
    assert!(forwarded >= Some(12), "{forwarded:?}");
}

#[tokio::test]
async fn a_shared_subscription_takes_one_member_across_nodes() {
    let nats = NatsServer::start();
    let a = node(&nats, "a");
    let b = node(&nats, "b");
    let mut member_a = client(&a, "member-a", &["$share/g/s/#"]).await;
    let mut member_b = client(&b, "member-b", &["$share/g/s/#"]).await;
    let mut publisher = Raw::handshake(a.addr, &connect_v4("pub-a", true, 60)).await;
    // Both nodes' queue subscriptions are in NATS once each member has had
    // a probe.
    within("both members to get a probe", async {
        let (mut got_a, mut got_b) = (false, false);
        while !(got_a && got_b) {
            publisher
                .send(&publish_v4("s/probe", 0, 0, b"probe", false))
                .await;
            got_a |= member_a
                .recv_within(Duration::from_millis(50))
                .await
                .is_some();
            got_b |= member_b
                .recv_within(Duration::from_millis(50))
                .await
                .is_some();
        }
    })
    .await;
    // Drain probes still on their way.
    while member_a
        .recv_within(Duration::from_millis(200))
        .await
        .is_some()
    {}
    while member_b
        .recv_within(Duration::from_millis(200))
        .await
        .is_some()
    {}

    const N: usize = 60;
    for i in 0..N {
        publisher
            .send(&publish_v4("s/m", 0, 0, format!("m{i}").as_bytes(), false))
            .await;
    }
    let mut by_member = [Vec::new(), Vec::new()];
    within("every message at one member", async {
        while by_member[0].len() + by_member[1].len() < N {
            for (k, c) in [&mut member_a, &mut member_b].into_iter().enumerate() {
                if let Some(f) = c.recv_within(Duration::from_millis(20)).await {
                    if f.kind() == PUBLISH {
                        let p = f.publish_v4();
                        by_member[k].push(String::from_utf8_lossy(&p.payload).into_owned());
                    }
                }
            }
        }
    })
    .await;
    // No message twice, at one member or across both.
    member_a.expect_silence(Duration::from_millis(300)).await;
    member_b.expect_silence(Duration::from_millis(300)).await;
    let mut all: Vec<_> = by_member.concat();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), N, "{by_member:?}");
    assert!(
        !by_member[0].is_empty() && !by_member[1].is_empty(),
        "one node's member got everything: {} on A, {} on B",
        by_member[0].len(),
        by_member[1].len()
    );
}

#[tokio::test]
async fn interest_follows_the_subscriptions() {
    let nats = NatsServer::start();
    let b = node(&nats, "b");
    let held = || {
        b.ctx
            .router
            .cluster()
            .expect("in a cluster")
            .stats()
            .subscriptions
            .load(Ordering::Relaxed)
    };
    // `u/#` needs two subjects (`u.>` and the parent `u`), however many
    // sessions hold it.
    let mut one = client(&b, "one", &["u/#"]).await;
    let mut two = client(&b, "two", &["u/#"]).await;
    eventually("two NATS subscriptions", || held() == 2).await;
    one.send(&unsubscribe(9, "u/#", false)).await;
    one.recv_kind(UNSUBACK).await;
    // Still held by `two`.
    assert_eq!(held(), 2);
    two.send(&unsubscribe(10, "u/#", false)).await;
    two.recv_kind(UNSUBACK).await;
    eventually("no NATS subscription", || held() == 0).await;
    // A session that ends takes its interest along.
    let three = client(&b, "three", &["v/+"]).await;
    eventually("one NATS subscription", || held() == 1).await;
    drop(three);
    eventually("none again", || held() == 0).await;
}

#[tokio::test]
async fn what_no_node_sent_is_dropped_and_the_node_keeps_serving() {
    let nats = NatsServer::start();
    let a = node(&nats, "a");
    let b = node(&nats, "b");
    let mut sub = client(&b, "sub-b", &["h/#"]).await;
    let mut publisher = Raw::handshake(a.addr, &connect_v4("pub-a", true, 60)).await;
    await_interest(&mut publisher, &mut sub, "h/probe").await;
    while sub.recv_within(Duration::from_millis(200)).await.is_some() {}

    // A genuine message from A, as NATS carries it.
    let nc = async_nats::connect(nats.url.as_str()).await.expect("NATS");
    let mut spy = nc.subscribe("sluice.t.>").await.expect("subscribe");
    nc.flush().await.expect("flush");
    publisher
        .send(&publish_v4("h/real", 0, 0, b"real", false))
        .await;
    let real = within("A's message on NATS", async {
        loop {
            let m = futures_util::StreamExt::next(&mut spy).await.expect("spy");
            if m.subject.as_str().ends_with(".h.real") {
                return m;
            }
        }
    })
    .await;
    assert_eq!(next_message(&mut sub).await.1, "real");

    let dropped = || {
        b.ctx
            .router
            .cluster()
            .expect("in a cluster")
            .stats()
            .dropped
            .load(Ordering::Relaxed)
    };
    // A's envelope (version, name length, "a", number), then the record;
    // the intruder's own (docs/cluster.md, "The message on the wire").
    let record = &real.payload[1 + 2 + 1 + 8..];
    let envelope = |id: u64, record: &[u8]| {
        let mut v = vec![1u8, 0, 8];
        v.extend_from_slice(b"intruder");
        v.extend_from_slice(&id.to_be_bytes());
        v.extend_from_slice(record);
        bytes::Bytes::from(v)
    };
    // Not a message record; a record whose topic is not its subject's; no
    // number (the envelope cut short).
    nc.publish("sluice.t.%00.h.x", envelope(1, b"garbage"))
        .await
        .expect("publish");
    nc.publish("sluice.t.%00.h.other", envelope(2, record))
        .await
        .expect("publish");
    nc.publish("sluice.t.%00.h.x", envelope(3, record).slice(..12))
        .await
        .expect("publish");
    nc.flush().await.expect("flush");
    eventually("three messages dropped", || dropped() == 3).await;

    // Nothing of them reached the subscriber, and the node still serves.
    publisher
        .send(&publish_v4("h/after", 0, 0, b"after", false))
        .await;
    assert_eq!(
        next_message(&mut sub).await,
        ("h/after".to_owned(), "after".to_owned())
    );
}

/// The retained messages a new client on `broker` gets for `filters`
/// (one SUBSCRIBE, so they come filter by filter), up to and including
/// the one with payload `last`.
async fn retained_until(
    broker: &TestBroker,
    id: &str,
    filters: &[&str],
    last: &str,
) -> Vec<(String, String)> {
    let mut c = Raw::handshake(broker.addr, &connect_v4(id, true, 60)).await;
    let filters: Vec<(&str, u8)> = filters.iter().map(|f| (*f, 1)).collect();
    c.send(&subscribe_v4_many(1, &filters)).await;
    let mut got = Vec::new();
    within("the retained messages", async {
        loop {
            let f = c.recv().await;
            if f.kind() != PUBLISH {
                continue;
            }
            let p = f.publish_v4();
            assert!(p.retain, "a retained message has the retain flag");
            if p.pkid != 0 {
                c.send(&puback(p.pkid)).await;
            }
            let payload = String::from_utf8_lossy(&p.payload).into_owned();
            let done = payload == last;
            got.push((p.topic.clone(), payload));
            if done {
                return;
            }
        }
    })
    .await;
    got
}

/// Publishes a retained message (QoS 1, acknowledged) on `broker`.
async fn retain(broker: &TestBroker, topic: &str, payload: &str) {
    let mut c = Raw::handshake(broker.addr, &connect_v4("retainer", true, 60)).await;
    c.send(&publish_v4(topic, 1, 1, payload.as_bytes(), true))
        .await;
    assert_eq!(c.recv_kind(PUBACK).await.packet_id(), 1);
}

/// Awaits `broker` holding `n` retained messages applied from the bucket
/// (its own included after a restart).
async fn applied(broker: &TestBroker, n: u64) {
    let cluster = broker.ctx.router.cluster().expect("in a cluster").clone();
    eventually("retained messages applied from the bucket", || {
        cluster.stats().retained_applied.load(Ordering::Relaxed) >= n
    })
    .await;
}

#[tokio::test]
async fn retained_messages_are_cluster_wide_and_the_bucket_wins_after_a_restart() {
    let nats = NatsServer::start();
    let store = crate::support::TempDir::new("cluster-store");
    let with_store = |name: &str| {
        node_with(vec![nats.url.clone()], name, |c| {
            c.persistence.dir = Some(store.path.clone());
        })
    };
    let a = node(&nats, "a");
    let b = node(&nats, "b");
    let mut c = with_store("c");

    // Set on A: a new subscriber on B gets it (once B has applied it), and
    // so does one on A at once.
    retain(&a, "r/1", "one").await;
    assert_eq!(
        retained_until(&a, "sub-a", &["r/1"], "one").await,
        [("r/1".to_owned(), "one".to_owned())]
    );
    applied(&b, 1).await;
    assert_eq!(
        retained_until(&b, "sub-b", &["r/#"], "one").await,
        [("r/1".to_owned(), "one".to_owned())]
    );

    // Set on C; then C stops, and while it is away B clears r/1 and C's
    // topic and sets r/2.
    retain(&c, "r/3", "three").await;
    // A's own r/1 came back from the bucket and was not applied again.
    applied(&a, 1).await;
    assert_eq!(
        metric(&a, "sluice_cluster_retained_applied_total").await,
        Some(1)
    );
    c.shutdown();
    drop(c);
    retain(&b, "r/1", "").await;
    retain(&b, "r/3", "").await;
    retain(&b, "r/2", "two").await;
    // On A the clears come before r/2, in the bucket's order: once r/2 is
    // there, r/1 and r/3 are gone (asked first in one SUBSCRIBE, they
    // would come first).
    applied(&a, 4).await;
    assert_eq!(
        retained_until(&a, "sub-a2", &["r/1", "r/3", "r/2"], "two").await,
        [("r/2".to_owned(), "two".to_owned())]
    );

    // C starts again from its store, which still holds r/3: the bucket
    // wins before C's listener opens.
    let c = with_store("c");
    assert_eq!(
        retained_until(&c, "sub-c", &["r/3", "r/1", "r/2"], "two").await,
        [("r/2".to_owned(), "two".to_owned())]
    );
    assert_eq!(c.ctx.router.retained_count(), 1);
}

#[tokio::test]
async fn qos1_messages_wait_in_jetstream_for_a_node_that_was_away() {
    let nats = NatsServer::start();
    let store = crate::support::TempDir::new("cluster-away");
    let node_b = || {
        node_with(vec![nats.url.clone()], "b", |c| {
            c.persistence.dir = Some(store.path.clone());
        })
    };
    let a = node(&nats, "a");
    let mut b = node_b();
    // A persistent session on B.
    let mut keeper = Raw::handshake(b.addr, &connect_v4("keeper", false, 60)).await;
    keeper.send(&subscribe_v4(1, "q/#", 1)).await;
    assert_eq!(keeper.recv_kind(SUBACK).await.ack_codes(false), [1]);
    let mut publisher = Raw::handshake(a.addr, &connect_v4("pub-a", true, 60)).await;
    await_interest(&mut publisher, &mut keeper, "q/probe").await;
    drop(keeper);

    // B stops; A's publisher goes on, every message acknowledged.
    b.shutdown();
    drop(b);
    const N: u16 = 20;
    for i in 1..=N {
        publisher
            .send(&publish_v4("q/x", 1, i, format!("m{i}").as_bytes(), false))
            .await;
        assert_eq!(publisher.recv_kind(PUBACK).await.packet_id(), i);
    }

    // B comes back from its store: its consumer kept what came meanwhile.
    let b = node_b();
    let mut keeper = Raw::handshake(b.addr, &connect_v4("keeper", false, 60)).await;
    let mut got = Vec::new();
    within("the messages published while B was away", async {
        while got.len() < usize::from(N) {
            let (topic, payload) = next_message(&mut keeper).await;
            if topic == "q/x" {
                got.push(payload);
            }
        }
    })
    .await;
    let expected: Vec<String> = (1..=N).map(|i| format!("m{i}")).collect();
    assert_eq!(got, expected, "every message once, in order");
}

#[tokio::test]
async fn a_node_without_jetstream_refuses_to_start_and_says_why() {
    let nats = NatsServer::start_with(false, &[]);
    let url = nats.url.clone();
    let Err(e) = TestBroker::try_with(move |c| c.cluster.nats = vec![url]) else {
        panic!("a node started without JetStream");
    };
    assert!(
        e.contains("JetStream") && e.contains("nats-server -js"),
        "{e}"
    );
}

/// Two nodes with `tweak` reach each other through `nats` (a message
/// published on A reaches a subscriber on B).
async fn route_with(
    nats_url: &str,
    tweak: impl Fn(&mut sluice_broker::config::Config) + Clone + Send + 'static,
) {
    let start = |name: &str| node_with(vec![nats_url.to_owned()], name, tweak.clone());
    let (a, b) = (start("a"), start("b"));
    let mut sub = client(&b, "sub-b", &["s/#"]).await;
    let mut publisher = Raw::handshake(a.addr, &connect_v4("pub-a", true, 60)).await;
    await_interest(&mut publisher, &mut sub, "s/probe").await;
}

#[tokio::test]
async fn nodes_authenticate_to_nats_with_a_password_from_a_file() {
    let nats = NatsServer::start_with(true, &["--user", "sluice", "--pass", "s3cret"]);
    let dir = crate::support::TempDir::new("nats-secret");
    let (good, bad) = (dir.path.join("good"), dir.path.join("bad"));
    std::fs::write(&good, "s3cret\n").expect("write");
    std::fs::write(&bad, "guess\n").expect("write");
    let with = |file: Option<std::path::PathBuf>| {
        let url = nats.url.clone();
        move |c: &mut sluice_broker::config::Config| {
            c.cluster.nats = vec![url];
            if let Some(file) = file {
                c.cluster.user = Some("sluice".into());
                c.cluster.password_file = Some(file);
            }
        }
    };
    for (what, file) in [("no password", None), ("a wrong password", Some(bad))] {
        let Err(e) = TestBroker::try_with(with(file)) else {
            panic!("a node with {what} started");
        };
        assert!(e.contains("cannot connect to NATS"), "{what}: {e}");
    }
    let missing = dir.path.join("missing");
    let Err(e) = TestBroker::try_with(with(Some(missing))) else {
        panic!("a node with a missing password file started");
    };
    assert!(e.contains("missing"), "{e}");
    route_with(&nats.url, move |c| {
        c.cluster.user = Some("sluice".into());
        c.cluster.password_file = Some(good.clone());
    })
    .await;
}

#[tokio::test]
async fn nodes_reach_nats_over_tls_with_its_ca() {
    let pki = crate::tls::Pki::new("nats-ca");
    let cert = pki.server("nats");
    let (c, k) = (
        cert.cert.display().to_string(),
        cert.key.display().to_string(),
    );
    let nats = NatsServer::start_with(true, &["--tls", "--tlscert", &c, "--tlskey", &k]);
    let url = nats.url.replace("nats://", "tls://");
    // The server's certificate chains to no CA the node trusts.
    let plain = url.clone();
    let Err(e) = TestBroker::try_with(move |c| c.cluster.nats = vec![plain]) else {
        panic!("a node trusted an unknown CA");
    };
    assert!(e.contains("cannot connect to NATS"), "{e}");
    let ca = pki.ca_file.clone();
    route_with(&url, move |c| c.cluster.tls_ca = Some(ca.clone())).await;
}

#[tokio::test]
async fn a_client_id_is_cluster_wide_and_a_connect_elsewhere_takes_it_over() {
    const DISCONNECT: u8 = 14;
    let nats = NatsServer::start();
    let a = node(&nats, "a");
    let b = node(&nats, "b");
    let connect = || connect_v5("dev-1", true, 60, |_| {});
    let mut on_a = Raw::handshake(a.addr, &connect()).await;
    // The same client id on B: A's connection is told 0x8E (Session taken
    // over) and closed, B's goes on.
    let mut on_b = Raw::handshake(b.addr, &connect()).await;
    let frames = on_a.expect_closed().await;
    let reason = frames
        .iter()
        .find(|f| f.kind() == DISCONNECT)
        .map(|f| f.disconnect_reason());
    assert_eq!(reason, Some(0x8E), "A's client: {frames:?}");
    // And back to A: B's connection goes.
    let mut again = Raw::handshake(a.addr, &connect()).await;
    let frames = on_b.expect_closed().await;
    assert!(
        frames
            .iter()
            .any(|f| f.kind() == DISCONNECT && f.disconnect_reason() == 0x8E),
        "B's client: {frames:?}"
    );
    // The session ends with its (clean) connection: the id is let go.
    let nc = async_nats::connect(nats.url.as_str()).await.expect("NATS");
    let kv = async_nats::jetstream::new(nc)
        .get_key_value("sluice_sessions")
        .await
        .expect("the sessions bucket");
    let owner = kv.get("=00.dev-1").await.expect("read");
    let owner = owner.and_then(|v| sluice_broker::cluster::session_owner(&v));
    assert_eq!(owner.as_deref(), Some("a"), "A holds dev-1");
    let mut changes = kv.watch("=00.dev-1").await.expect("watch");
    again.send(&disconnect_v5(0, None)).await;
    again.expect_closed().await;
    within("the id let go", async {
        loop {
            let change = futures_util::StreamExt::next(&mut changes)
                .await
                .expect("the watch goes on")
                .expect("an entry");
            if change.operation != async_nats::jetstream::kv::Operation::Put {
                return;
            }
        }
    })
    .await;
    assert_eq!(kv.get("=00.dev-1").await.expect("read"), None);
}

#[tokio::test]
async fn cut_off_from_nats_a_node_refuses_persistent_sessions_and_serves_clean_ones() {
    let nats = NatsServer::start();
    let a = node(&nats, "a");
    drop(nats);
    // A persistent session could live on another node as well.
    let mut persistent = Raw::connect(a.addr).await;
    persistent.send(&connect_v4("keeps", false, 60)).await;
    let ack = persistent.recv().await;
    assert_eq!(ack.connack(), (false, 3), "CONNACK Server unavailable");
    let mut v5 = Raw::connect(a.addr).await;
    v5.send(&connect_v5("keeps-5", true, 60, |p| {
        p.session_expiry_interval = Some(60);
    }))
    .await;
    assert_eq!(v5.recv().await.connack(), (false, 0x88));
    // A clean session is served by the node alone.
    let mut clean = Raw::handshake(a.addr, &connect_v4("passing", true, 60)).await;
    clean.send(&subscribe_v4(1, "t", 0)).await;
    assert_eq!(clean.recv_kind(SUBACK).await.ack_codes(false), [0]);
}

#[tokio::test]
async fn a_burst_of_retained_writes_on_one_node_does_not_hide_the_others_later_ones() {
    let nats = NatsServer::start();
    let a = node(&nats, "a");
    let b = node(&nats, "b");
    // A burst on A: the bucket keeps one value per topic, so most of A's
    // own writes never come back to A.
    let mut c = Raw::handshake(a.addr, &connect_v4("burst", true, 60)).await;
    for i in 0..200 {
        c.send(&publish_v4("r/t", 0, 0, format!("a{i}").as_bytes(), true))
            .await;
    }
    c.send(&publish_v4("r/t", 1, 1, b"a-last", true)).await;
    assert_eq!(c.recv_kind(PUBACK).await.packet_id(), 1);
    // Once the bucket holds A's last write, B's next one is later.
    let client = async_nats::connect(nats.url.as_str()).await.expect("NATS");
    let kv = async_nats::jetstream::new(client)
        .get_key_value("sluice_retained")
        .await
        .expect("the retained bucket");
    let mut changes = kv.watch_with_history("=00.r/t").await.expect("watch");
    within("A's last write in the bucket", async {
        loop {
            let e = futures_util::StreamExt::next(&mut changes)
                .await
                .expect("the watch goes on")
                .expect("an entry");
            if e.value.windows(6).any(|w| w == b"a-last") {
                return;
            }
        }
    })
    .await;
    let before = a
        .ctx
        .router
        .cluster()
        .expect("in a cluster")
        .stats()
        .retained_applied
        .load(Ordering::Relaxed);
    // A later message from B wins on A too.
    retain(&b, "r/t", "from-b").await;
    applied(&a, before + 1).await;
    let got = retained_until(&a, "late", &["r/t"], "from-b").await;
    assert_eq!(got, [("r/t".to_owned(), "from-b".to_owned())]);
}

#[tokio::test]
async fn after_suback_messages_from_other_nodes_arrive_without_probing() {
    let nats = NatsServer::start();
    let a = node(&nats, "a");
    let b = node(&nats, "b");
    let mut publisher = Raw::handshake(a.addr, &connect_v4("pub", true, 60)).await;
    // SUBACK comes once B's NATS subscription and JetStream consumer are
    // in place: what A publishes right after reaches B, at QoS 0 and 1.
    for (i, topic) in ["fresh/1", "fresh/2", "fresh/3"].into_iter().enumerate() {
        let mut sub = client(&b, &format!("sub-{i}"), &[topic]).await;
        publisher
            .send(&publish_v4(topic, 0, 0, b"end", false))
            .await;
        publisher
            .send(&publish_v4(topic, 1, 7, b"end1", false))
            .await;
        assert_eq!(publisher.recv_kind(PUBACK).await.packet_id(), 7);
        let got = until(&mut sub).await;
        assert!(got.is_empty(), "{got:?}");
    }
}

#[tokio::test]
async fn messages_from_other_nodes_queued_for_a_persistent_session_survive_its_nodes_restart() {
    let nats = NatsServer::start();
    let store = crate::support::TempDir::new("cluster-queue-store");
    let with_store = || {
        node_with(vec![nats.url.clone()], "b", |c| {
            c.persistence.dir = Some(store.path.clone());
            c.persistence.durability = sluice_broker::config::Durability::Always;
        })
    };
    let a = node(&nats, "a");
    let mut b = with_store();
    // A persistent session on B, subscribed, then offline.
    let mut sub = Raw::handshake(b.addr, &connect_v4("keeper", false, 60)).await;
    sub.send(&subscribe_v4(1, "q/#", 1)).await;
    assert_eq!(sub.recv_kind(SUBACK).await.ack_codes(false), [1]);
    sub.send(&[0xE0, 0]).await;
    sub.expect_closed().await;
    // A's messages reach B's queue (acknowledged to JetStream once B's
    // store has them), then B restarts from its store.
    let mut publisher = Raw::handshake(a.addr, &connect_v4("pub", true, 60)).await;
    for (i, m) in ["q1", "q2", "q3"].into_iter().enumerate() {
        let pkid = u16::try_from(i + 1).expect("few");
        publisher
            .send(&publish_v4("q/t", 1, pkid, m.as_bytes(), false))
            .await;
        assert_eq!(publisher.recv_kind(PUBACK).await.packet_id(), pkid);
    }
    let cluster = b.ctx.router.cluster().expect("in a cluster").clone();
    eventually("B took A's messages", || {
        cluster.stats().received.load(Ordering::Relaxed) >= 3
    })
    .await;
    b.shutdown();
    drop(b);
    let b = with_store();
    let mut sub = Raw::connect(b.addr).await;
    sub.send(&connect_v4("keeper", false, 60)).await;
    assert_eq!(sub.recv().await.connack(), (true, 0));
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(next_message(&mut sub).await.1);
    }
    assert_eq!(got, ["q1", "q2", "q3"]);
}
