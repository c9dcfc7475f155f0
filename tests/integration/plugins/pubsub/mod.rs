//! The publish/subscribe hooks through the real broker, with the `pubsub`
//! fixture (`tests/plugins/pubsub`, whose doc lists its settings and the
//! records it writes): each hook called at the right moment with the right
//! data, and its answer honoured, for MQTT 3.1.1 and 5 clients.
//!
//! - `subscribe`: `auth-on-subscribe(-m5)`, `on-subscribe(-m5)`,
//!   `on-unsubscribe(-m5)`, `on-topic-unsubscribed`;
//! - `publish`: `auth-on-publish(-m5)`: modifiers, refusals, Wills, cache;
//! - `delivery`: `on-publish(-m5)`, `on-deliver(-m5)`, `on-offline-message`,
//!   `on-message-drop`, and the order of a client's hooks;
//! - `v3_hooks`: the `pubsub-v3` fixture (MQTT 3 forms only) serving MQTT 5
//!   clients.

mod delivery;
mod publish;
mod subscribe;
mod v3_hooks;

use super::*;

use crate::support::raw::{Frame, varint};

/// The fixture's name in the broker (its file name).
const PLUGIN: &str = "pubsub";

/// A broker with the `pubsub` fixture; the plugin directory lives as long as
/// the broker (fields drop in order: the broker first).
struct Fixture {
    broker: TestBroker,
    _dir: PluginDir,
}

impl std::ops::Deref for Fixture {
    type Target = TestBroker;
    fn deref(&self) -> &TestBroker {
        &self.broker
    }
}

/// A broker with the fixture configured with `pairs`.
fn start(pairs: &[(&str, &str)]) -> Fixture {
    start_with(pairs, |_| {})
}

/// Like [`start`], with the broker configuration changed by `tweak`.
fn start_with(pairs: &[(&str, &str)], tweak: impl FnOnce(&mut Config)) -> Fixture {
    let dir = PluginDir::new();
    dir.add(PLUGIN, "pubsub");
    let broker = broker_with(&dir, |c| {
        plugin_config(c, PLUGIN, pairs);
        tweak(c);
    });
    Fixture { broker, _dir: dir }
}

/// The records of one hook for one client (`log` for all of its hooks, in
/// order).
fn records(broker: &TestBroker, hook: &str, client: &str) -> Vec<String> {
    let raw = broker
        .ctx
        .plugins
        .kv_get(PLUGIN, &format!("{hook}/{client}"))
        .unwrap_or_default();
    String::from_utf8_lossy(&raw)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Waits until `hook` recorded as many calls for `client` as expected
/// (notifications arrive asynchronously), then checks them exactly.
async fn expect_records(broker: &TestBroker, hook: &str, client: &str, expected: &[&str]) {
    eventually(&format!("{hook} recorded for {client}"), || {
        records(broker, hook, client).len() >= expected.len()
    })
    .await;
    assert_eq!(records(broker, hook, client), expected, "{hook} / {client}");
}

/// Connects a raw MQTT 3.1.1 client with a clean session.
async fn v4(broker: &TestBroker, client: &str) -> Raw {
    Raw::handshake(broker.addr, &connect_v4(client, true, 60)).await
}

/// Connects a raw MQTT 5 client with a clean start.
async fn v5(broker: &TestBroker, client: &str) -> Raw {
    Raw::handshake(broker.addr, &connect_v5(client, true, 60, |_| {})).await
}

/// Subscribes a 3.1.1 client; returns the SUBACK codes.
async fn subscribe3(raw: &mut Raw, pkid: u16, filters: &[(&str, u8)]) -> Vec<u8> {
    raw.send(&subscribe_v4_many(pkid, filters)).await;
    let ack = raw.recv_kind(9).await;
    assert_eq!(ack.packet_id(), pkid);
    ack.ack_codes(false)
}

/// Subscribes an MQTT 5 client; returns the SUBACK.
async fn subscribe5(raw: &mut Raw, pkid: u16, filters: &[(&str, u8)]) -> Frame {
    let filters = filters.iter().map(|(f, q)| filter_v5(f, *q)).collect();
    raw.send(&subscribe_v5(pkid, filters, None)).await;
    let ack = raw.recv_kind(9).await;
    assert_eq!(ack.packet_id(), pkid);
    ack
}

/// A 3.1.1 QoS 1 publish, waiting for its PUBACK (so the message has been
/// routed when it returns).
async fn publish3_acked(raw: &mut Raw, topic: &str, pkid: u16, payload: &[u8], retain: bool) {
    raw.send(&publish_v4(topic, 1, pkid, payload, retain)).await;
    let ack = raw.recv_kind(4).await;
    assert_eq!(ack.packet_id(), pkid, "PUBACK for {topic}");
}

/// The next PUBLISH of a 3.1.1 subscriber: (topic, payload).
async fn next3(raw: &mut Raw) -> (String, Vec<u8>) {
    let p = raw.recv_kind(3).await.publish_v4();
    (p.topic, p.payload.to_vec())
}

/// Waits until `client`'s persistent session is offline.
async fn offline(broker: &TestBroker, client: &str) {
    eventually(&format!("{client} offline"), || {
        broker
            .ctx
            .registry
            .get(&id("", client))
            .is_some_and(|s| !s.is_online())
    })
    .await;
}

/// Reason String and user properties of an MQTT 5 ack whose properties
/// start at `at` in the body (2 for SUBACK/UNSUBACK, 3 for PUBACK/PUBREC).
fn ack_properties(frame: &Frame, at: usize) -> (Option<String>, Vec<(String, String)>) {
    let body = &frame.body[..];
    let mut reason = None;
    let mut user = Vec::new();
    if body.len() <= at {
        return (reason, user);
    }
    let (n, len) = varint(&body[at..]);
    let mut props = &body[at + n..at + n + len];
    fn string(b: &mut &[u8]) -> String {
        let len = usize::from(u16::from_be_bytes([b[0], b[1]]));
        let s = String::from_utf8(b[2..2 + len].to_vec()).expect("UTF-8 property");
        *b = &b[2 + len..];
        s
    }
    while let Some((&id, rest)) = props.split_first() {
        props = rest;
        match id {
            0x1F => reason = Some(string(&mut props)),
            0x26 => {
                let name = string(&mut props);
                user.push((name, string(&mut props)));
            }
            other => panic!("unexpected ack property {other:#x} in {frame:?}"),
        }
    }
    (reason, user)
}

fn pair(n: &str, v: &str) -> (String, String) {
    (n.to_owned(), v.to_owned())
}
