//! The example plugins of `example-plugins/` in a real broker, with real
//! clients: the topic ACL (`topic-acl`) and the JSON stamper
//! (`payload-transform`).

use std::sync::atomic::Ordering::Relaxed;

use super::*;
use crate::support::raw::Frame;

/// How long a test watches for something that must not arrive.
const SHORT: Duration = Duration::from_millis(300);

/// A broker with the topic ACL loaded as `acl`, configured with `pairs`.
fn acl_broker(pairs: &[(&str, &str)]) -> (TestBroker, PluginDir) {
    let dir = PluginDir::new();
    dir.add("acl", "topic-acl");
    let broker = broker_with(&dir, |c| plugin_config(c, "acl", pairs));
    (broker, dir)
}

/// An MQTT 3.1.1 client subscribed to `filter` at QoS 0.
async fn watcher(broker: &TestBroker, client: &str, filter: &str) -> Raw {
    let mut raw = Raw::handshake(broker.addr, &connect_v4(client, true, 60)).await;
    raw.send(&subscribe_v4(1, filter, 0)).await;
    assert_eq!(raw.recv_kind(9).await.ack_codes(false), [0], "{filter}");
    raw
}

/// An MQTT 5 client, with a username if `user` is not empty.
async fn client_v5(broker: &TestBroker, client: &str, user: &str) -> Raw {
    let connect = if user.is_empty() {
        connect_v5(client, true, 60, |_| {})
    } else {
        connect_v5_user(client, user, |_| {})
    };
    Raw::handshake(broker.addr, &connect).await
}

/// Publishes at QoS 1 from an MQTT 5 client (payload: the topic); returns
/// the PUBACK reason code.
async fn publish_m5(raw: &mut Raw, pkid: u16, topic: &str) -> u8 {
    raw.send(&publish_v5(topic, 1, pkid, topic.as_bytes(), None))
        .await;
    let ack = raw.recv_kind(4).await;
    assert_eq!(ack.packet_id(), pkid, "PUBACK for {topic}");
    ack.ack_reason()
}

/// The topic of the next message an MQTT 3.1.1 client receives.
async fn next_topic(raw: &mut Raw) -> String {
    raw.recv_kind(3).await.publish_v4().topic
}

/// The SUBACK codes for one SUBSCRIBE.
async fn suback(raw: &mut Raw, subscribe: &[u8], v5: bool) -> Vec<u8> {
    raw.send(subscribe).await;
    raw.recv_kind(9).await.ack_codes(v5)
}

#[tokio::test]
async fn acl_routes_allowed_publishes_and_refuses_denied_ones() {
    let (broker, _dir) = acl_broker(&[
        ("publish", "sensors/#"),
        ("deny_publish", "sensors/secret/#"),
        ("subscribe", "#"),
    ]);
    let mut watch = watcher(&broker, "watcher", "#").await;

    // MQTT 3.1.1: routed; refused: the connection is closed.
    let mut v3 = Raw::handshake(broker.addr, &connect_v4("pub3", true, 60)).await;
    v3.send(&publish_v4("sensors/a", 0, 0, b"a", false)).await;
    assert_eq!(next_topic(&mut watch).await, "sensors/a");
    v3.send(&publish_v4("sensors/secret/x", 0, 0, b"x", false))
        .await;
    v3.expect_closed().await;
    let mut v3 = Raw::handshake(broker.addr, &connect_v4("pub3b", true, 60)).await;
    v3.send(&publish_v4("admin/x", 1, 1, b"x", false)).await;
    v3.expect_closed().await;
    watch.expect_silence(SHORT).await;

    // MQTT 5: PUBACK 0x87 (deny beats allow; no rule means deny), nothing
    // delivered; the allowed message after them is the next to arrive.
    let mut v5 = client_v5(&broker, "pub5", "").await;
    assert_eq!(publish_m5(&mut v5, 1, "admin/x").await, 0x87);
    assert_eq!(publish_m5(&mut v5, 2, "sensors/secret/y").await, 0x87);
    assert_eq!(publish_m5(&mut v5, 3, "sensors/b").await, 0);
    assert_eq!(next_topic(&mut watch).await, "sensors/b");
    watch.expect_silence(SHORT).await;

    // Wills are checked at CONNECT: a will on a denied topic refuses it.
    let (_, ack) = connack(
        &broker,
        &connect_v4_will("willful", true, "admin/will", b"bye", 0, false),
    )
    .await;
    assert_eq!(ack.connack().1, 5);
    let (_, ack) = connack(
        &broker,
        &connect_v4_will("dutiful", true, "sensors/will", b"bye", 0, false),
    )
    .await;
    assert_eq!(ack.connack().1, 0);
}

#[tokio::test]
async fn acl_username_placeholder_and_per_user_rules() {
    let (broker, _dir) = acl_broker(&[
        ("publish", "users/%u/#"),
        ("user.bob.publish", "shared/bob"),
        ("subscribe", "#"),
    ]);
    let mut watch = watcher(&broker, "watcher", "#").await;

    let mut alice = client_v5(&broker, "alice-phone", "alice").await;
    assert_eq!(publish_m5(&mut alice, 1, "users/alice/x").await, 0);
    assert_eq!(next_topic(&mut watch).await, "users/alice/x");
    assert_eq!(publish_m5(&mut alice, 2, "users/bob/x").await, 0x87);
    assert_eq!(publish_m5(&mut alice, 3, "shared/bob").await, 0x87);

    let mut bob = client_v5(&broker, "bob-phone", "bob").await;
    assert_eq!(publish_m5(&mut bob, 1, "shared/bob").await, 0);
    assert_eq!(next_topic(&mut watch).await, "shared/bob");
    assert_eq!(publish_m5(&mut bob, 2, "users/bob/y").await, 0);
    assert_eq!(next_topic(&mut watch).await, "users/bob/y");

    // A pattern with %u never matches a client without username.
    let mut anon = client_v5(&broker, "anon", "").await;
    assert_eq!(publish_m5(&mut anon, 1, "users/anon/x").await, 0x87);
    assert_eq!(publish_m5(&mut anon, 2, "users//x").await, 0x87);

    // The same rules for MQTT 3.1.1.
    let mut alice3 = Raw::handshake(
        broker.addr,
        &connect_v4_login("alice-v3", true, "alice", ""),
    )
    .await;
    alice3
        .send(&publish_v4("users/alice/v3", 0, 0, b"x", false))
        .await;
    assert_eq!(next_topic(&mut watch).await, "users/alice/v3");
    alice3
        .send(&publish_v4("users/bob/v3", 0, 0, b"x", false))
        .await;
    alice3.expect_closed().await;
    watch.expect_silence(SHORT).await;
}

#[tokio::test]
async fn acl_client_id_placeholder_and_per_client_rules() {
    let (broker, _dir) = acl_broker(&[
        ("publish", "devices/%c/#"),
        ("client.gateway.publish", "devices/+/up"),
        ("client.dev-2.deny_publish", "devices/dev-2/config"),
        ("subscribe", "#"),
    ]);
    let mut watch = watcher(&broker, "watcher", "#").await;

    let mut dev1 = client_v5(&broker, "dev-1", "").await;
    assert_eq!(publish_m5(&mut dev1, 1, "devices/dev-1/up").await, 0);
    assert_eq!(next_topic(&mut watch).await, "devices/dev-1/up");
    assert_eq!(publish_m5(&mut dev1, 2, "devices/dev-2/up").await, 0x87);

    let mut gateway = client_v5(&broker, "gateway", "").await;
    assert_eq!(publish_m5(&mut gateway, 1, "devices/dev-2/up").await, 0);
    assert_eq!(next_topic(&mut watch).await, "devices/dev-2/up");
    assert_eq!(
        publish_m5(&mut gateway, 2, "devices/dev-2/config").await,
        0x87
    );

    // A per-client deny wins over the rule for everyone.
    let mut dev2 = client_v5(&broker, "dev-2", "").await;
    assert_eq!(publish_m5(&mut dev2, 1, "devices/dev-2/up").await, 0);
    assert_eq!(next_topic(&mut watch).await, "devices/dev-2/up");
    assert_eq!(publish_m5(&mut dev2, 2, "devices/dev-2/config").await, 0x87);
    watch.expect_silence(SHORT).await;
}

#[tokio::test]
async fn acl_mountpoint_placeholder() {
    // The `policy` fixture puts each client in the mountpoint named after
    // its username.
    let dir = PluginDir::new();
    dir.add("acl", "topic-acl").add("auth", "policy");
    let broker = broker_with(&dir, |c| {
        plugin_config(c, "acl", &[("publish", "%m/#"), ("subscribe", "#")]);
        plugin_config(c, "auth", &[("mountpoint_from_username", "yes")]);
    });
    let mut watch = client_v5(&broker, "alice-watch", "alice").await;
    assert_eq!(
        suback(
            &mut watch,
            &subscribe_v5(1, vec![filter_v5("#", 0)], None),
            true
        )
        .await,
        [0]
    );

    let mut alice = client_v5(&broker, "alice-phone", "alice").await;
    assert_eq!(publish_m5(&mut alice, 1, "alice/x").await, 0);
    assert_eq!(watch.recv_kind(3).await.publish_v5().topic, "alice/x");
    assert_eq!(publish_m5(&mut alice, 2, "bob/x").await, 0x87);

    // The default tree has no mountpoint: a %m pattern never matches.
    let mut anon = client_v5(&broker, "anon", "").await;
    assert_eq!(publish_m5(&mut anon, 1, "alice/x").await, 0x87);
    watch.expect_silence(SHORT).await;
}

#[tokio::test]
async fn acl_subscription_refusal_codes() {
    let config = [
        ("subscribe", "sensors/#"),
        ("deny_subscribe", "sensors/secret/#"),
    ];
    let (broker, _dir) = acl_broker(&config);
    let mut v3 = Raw::handshake(broker.addr, &connect_v4("sub3", true, 60)).await;
    assert_eq!(
        suback(&mut v3, &subscribe_v4(1, "admin/#", 0), false).await,
        [0x80]
    );
    // Entirely inside the denied space.
    assert_eq!(
        suback(&mut v3, &subscribe_v4(2, "sensors/secret/#", 0), false).await,
        [0x80]
    );
    // Covered by the allow pattern and only partly denied: granted (what it
    // receives is checked per message; see `acl_delivery`).
    assert_eq!(
        suback(&mut v3, &subscribe_v4(4, "sensors/#", 0), false).await,
        [0]
    );
    assert_eq!(
        suback(&mut v3, &subscribe_v4(3, "sensors/a", 1), false).await,
        [1]
    );
    let mut v5 = client_v5(&broker, "sub5", "").await;
    let refused = subscribe_v5(1, vec![filter_v5("admin/#", 0)], None);
    assert_eq!(suback(&mut v5, &refused, true).await, [0x87]);
    drop(broker);

    // The operator's code for MQTT 5 clients.
    let (broker, _dir) = acl_broker(&[config[0], config[1], ("subscribe_refusal_code", "0x80")]);
    let mut v5 = client_v5(&broker, "sub5", "").await;
    assert_eq!(suback(&mut v5, &refused, true).await, [0x80]);
    let mut v3 = Raw::handshake(broker.addr, &connect_v4("sub3", true, 60)).await;
    assert_eq!(
        suback(&mut v3, &subscribe_v4(1, "admin/#", 0), false).await,
        [0x80]
    );
}

#[tokio::test]
async fn acl_mixed_subscribe_gets_mixed_codes() {
    let (broker, _dir) = acl_broker(&[
        ("subscribe", "sensors/#"),
        ("deny_subscribe", "sensors/secret/#"),
        ("publish", "#"),
    ]);
    let mut v5 = client_v5(&broker, "mixed5", "").await;
    let codes = suback(
        &mut v5,
        &subscribe_v5(
            1,
            vec![
                filter_v5("sensors/room1/+", 1),
                filter_v5("admin/#", 0),
                filter_v5("sensors/secret/+", 0),
                filter_v5("$share/g/sensors/room2/+", 0),
                filter_v5("$share/g/sensors/secret/#", 0),
            ],
            None,
        ),
        true,
    )
    .await;
    assert_eq!(codes, [1, 0x87, 0x87, 0, 0x87]);

    let mut v3 = Raw::handshake(broker.addr, &connect_v4("mixed3", true, 60)).await;
    let codes = suback(
        &mut v3,
        &subscribe_v4_many(1, &[("admin/#", 1), ("sensors/room3/+", 0)]),
        false,
    )
    .await;
    assert_eq!(codes, [0x80, 0]);

    // The granted subscriptions work; the refused ones do not exist (PUBACK
    // 0x10: no matching subscribers).
    let mut publisher = client_v5(&broker, "pub", "").await;
    for (pkid, (topic, code)) in [
        ("sensors/secret/temp", 0x10),
        ("admin/x", 0x10),
        ("sensors/room1/temp", 0),
        ("sensors/room2/temp", 0),
        ("sensors/room3/temp", 0),
    ]
    .into_iter()
    .enumerate()
    {
        assert_eq!(
            publish_m5(&mut publisher, pkid as u16 + 1, topic).await,
            code,
            "{topic}"
        );
    }
    assert_eq!(
        v5.recv_kind(3).await.publish_v5().topic,
        "sensors/room1/temp"
    );
    assert_eq!(
        v5.recv_kind(3).await.publish_v5().topic,
        "sensors/room2/temp"
    );
    assert_eq!(next_topic(&mut v3).await, "sensors/room3/temp");
    v5.expect_silence(SHORT).await;
    v3.expect_silence(SHORT).await;
}

#[tokio::test]
async fn acl_publish_acceptance_is_cached() {
    let (broker, _dir) = acl_broker(&[("publish", "sensors/#"), ("subscribe", "#")]);
    let plugin = broker.ctx.plugins.get("acl").expect("loaded").clone();
    let mut watch = watcher(&broker, "watcher", "#").await;
    let mut steady = Raw::handshake(broker.addr, &connect_v4("steady", true, 60)).await;

    // The read check (`auth-on-deliver`) of the watcher's deliveries is
    // cached too: one call per topic.
    let before = plugin.stats.calls.load(Relaxed);
    for i in 0..50u8 {
        steady
            .send(&publish_v4("sensors/steady", 0, 0, &[i], false))
            .await;
    }
    for i in 0..50u8 {
        assert_eq!(&watch.recv_kind(3).await.publish_v4().payload[..], &[i]);
    }
    assert_eq!(
        plugin.stats.calls.load(Relaxed) - before,
        2,
        "50 messages on one topic: one auth-on-publish and one auth-on-deliver call"
    );
    // Another topic is another decision, both ways.
    steady
        .send(&publish_v4("sensors/other", 0, 0, b"x", false))
        .await;
    assert_eq!(next_topic(&mut watch).await, "sensors/other");
    assert_eq!(plugin.stats.calls.load(Relaxed) - before, 4);
    drop(broker);

    // cache_secs = 0: every publish and every delivery is checked.
    let (broker, _dir) = acl_broker(&[
        ("publish", "sensors/#"),
        ("subscribe", "#"),
        ("cache_secs", "0"),
    ]);
    let plugin = broker.ctx.plugins.get("acl").expect("loaded").clone();
    let mut watch = watcher(&broker, "watcher", "#").await;
    let mut steady = Raw::handshake(broker.addr, &connect_v4("steady", true, 60)).await;
    let before = plugin.stats.calls.load(Relaxed);
    for i in 0..10u8 {
        steady
            .send(&publish_v4("sensors/steady", 0, 0, &[i], false))
            .await;
    }
    for _ in 0..10 {
        next_topic(&mut watch).await;
    }
    assert_eq!(
        plugin.stats.calls.load(Relaxed) - before,
        20,
        "cache_secs = 0: every publish and every delivery asked"
    );
}

/// Each call gets the payload as a borrowed handle that is taken back when
/// the call returns: one instance serves far more calls than the 100,000
/// handles a wasmtime store allows (a leak would trap it, and fail the
/// messages, once there).
#[tokio::test]
async fn payload_handles_do_not_accumulate() {
    use sluice_broker::codec::{MessageProperties, ProtocolVersion, QoS};
    use sluice_broker::plugins::{PublishOutcome, PublishRequest};
    use sluice_broker::topic::TopicName;

    let dir = PluginDir::new();
    dir.add("acl", "topic-acl");
    let broker = broker_with(&dir, |c| {
        plugin_config(c, "acl", &[("publish", "sensors/#"), ("cache_secs", "0")]);
        c.plugin.entry("acl".into()).or_default().instances = Some(1);
    });
    let plugins = &broker.ctx.plugins;
    let plugin = plugins.get("acl").expect("loaded");
    let client = id("", "many");
    let topic = TopicName::new("sensors/1").expect("topic");
    let payload = bytes::Bytes::from_static(b"reading");
    let properties = MessageProperties::default();
    let request = PublishRequest {
        id: &client,
        username: None,
        version: ProtocolVersion::V3_1_1,
        topic: &topic,
        payload: &payload,
        qos: QoS::AtMostOnce,
        retain: false,
        properties: &properties,
        expiry: None,
        is_will: false,
        from_plugin: None,
        limits: &broker.ctx.limits,
    };
    for n in 0..120_000 {
        let outcome = plugins.authorize_publish(&request).await;
        assert!(
            matches!(outcome, PublishOutcome::Accepted { .. }),
            "call {n}: {outcome:?}"
        );
    }
    assert_eq!(plugin.stats.failures.load(Relaxed), 0);
    assert_eq!(plugin.stats.instances_created.load(Relaxed), 1);
}

#[tokio::test]
async fn acl_unmatched_next_lets_later_plugins_decide() {
    let dir = PluginDir::new();
    dir.add("10-acl", "topic-acl").add("20-acl", "topic-acl");
    let broker = broker_with(&dir, |c| {
        plugin_config(
            c,
            "10-acl",
            &[
                ("publish", "sensors/#"),
                ("deny_publish", "admin/#"),
                ("subscribe", "sensors/#"),
                ("deny_subscribe", "admin/#"),
                ("unmatched", "next"),
            ],
        );
        plugin_config(c, "20-acl", &[("publish", "other/#"), ("subscribe", "#")]);
    });
    let second = broker.ctx.plugins.get("20-acl").expect("loaded").clone();

    // PUBACK 0x10 (no matching subscribers) is an acceptance.
    let mut v5 = client_v5(&broker, "c5", "").await;
    let asked = second.stats.calls.load(Relaxed);
    assert_eq!(publish_m5(&mut v5, 1, "sensors/a").await, 0x10);
    assert_eq!(
        publish_m5(&mut v5, 2, "admin/x").await,
        0x87,
        "deny is final"
    );
    assert_eq!(
        second.stats.calls.load(Relaxed),
        asked,
        "the first plugin decided"
    );
    assert_eq!(
        publish_m5(&mut v5, 3, "other/x").await,
        0x10,
        "the second plugin allows"
    );
    assert_eq!(
        publish_m5(&mut v5, 4, "misc/x").await,
        0x87,
        "the second plugin denies"
    );
    assert_eq!(second.stats.calls.load(Relaxed), asked + 2);

    // A SUBSCRIBE is passed on whole when something in it is unmatched,
    // unless something in it is denied.
    let both = subscribe_v5(
        1,
        vec![filter_v5("sensors/a", 0), filter_v5("other/#", 0)],
        None,
    );
    assert_eq!(suback(&mut v5, &both, true).await, [0, 0]);
    assert_eq!(second.stats.calls.load(Relaxed), asked + 3);
    let denied = subscribe_v5(
        2,
        vec![filter_v5("admin/#", 0), filter_v5("other/#", 0)],
        None,
    );
    assert_eq!(suback(&mut v5, &denied, true).await, [0x87, 0x87]);
    assert_eq!(second.stats.calls.load(Relaxed), asked + 3);
}

#[tokio::test]
async fn acl_invalid_configuration_refuses_the_plugin() {
    for (pairs, why) in [
        (&[("publish", "a/#/b")][..], "'#' must be the last level"),
        (&[("publsh", "a")][..], "unknown configuration key"),
        (&[("subscribe", "users/%x")][..], "unknown placeholder %x"),
        (&[("unmatched", "allow")][..], "unmatched"),
        (
            &[("subscribe_refusal_code", "0x10")][..],
            "not a SUBACK refusal code",
        ),
    ] {
        let dir = PluginDir::new();
        dir.add("acl", "topic-acl");
        let e = TestBroker::try_with(|c| {
            dir.configure(c);
            plugin_config(c, "acl", pairs);
        })
        .err()
        .expect("refused");
        assert!(e.contains("acl.wasm") && e.contains(why), "{pairs:?}: {e}");
    }
}

// payload-transform. The plugin keeps the publisher's field order and adds
// its field last, so stamped payloads are compared as exact JSON text.

const STAMP: [(&str, &str); 3] = [
    ("prefix", "telemetry/"),
    ("field", "seen_by"),
    ("value", "%c/%u@%t"),
];

/// A broker with the transform loaded as `stamp`, an MQTT 3.1.1 subscriber
/// `sub-a` and an MQTT 5 subscriber `sub-b` (username `bob`) to `#`.
async fn stamp_broker() -> (TestBroker, PluginDir, Raw, Raw) {
    let dir = PluginDir::new();
    dir.add("stamp", "payload-transform");
    let broker = broker_with(&dir, |c| plugin_config(c, "stamp", &STAMP));
    let sub_a = watcher(&broker, "sub-a", "#").await;
    let mut sub_b = client_v5(&broker, "sub-b", "bob").await;
    let sub = subscribe_v5(1, vec![filter_v5("#", 0)], None);
    assert_eq!(suback(&mut sub_b, &sub, true).await, [0]);
    (broker, dir, sub_a, sub_b)
}

/// The next message's (topic, payload as text) at an MQTT 3.1.1 / 5
/// subscriber.
fn received(frame: Frame, v5: bool) -> (String, String) {
    let (topic, payload) = if v5 {
        let p = frame.publish_v5();
        (p.topic, p.payload)
    } else {
        let p = frame.publish_v4();
        (p.topic, p.payload)
    };
    (topic, String::from_utf8_lossy(&payload).into_owned())
}

#[tokio::test]
async fn transform_stamps_json_objects_for_each_subscriber() {
    let (broker, _dir, mut sub_a, mut sub_b) = stamp_broker().await;
    let publisher = V4::connect(broker.addr, "pub").await;
    publisher
        .publish("telemetry/t1", 0, false, br#"{"temp":21,"ok":true}"#)
        .await;
    // %c and %u are the subscriber's: each gets its own stamp.
    assert_eq!(
        received(sub_a.recv_kind(3).await, false),
        (
            "telemetry/t1".to_owned(),
            r#"{"temp":21,"ok":true,"seen_by":"sub-a/@telemetry/t1"}"#.to_owned()
        )
    );
    assert_eq!(
        received(sub_b.recv_kind(3).await, true),
        (
            "telemetry/t1".to_owned(),
            r#"{"temp":21,"ok":true,"seen_by":"sub-b/bob@telemetry/t1"}"#.to_owned()
        )
    );
    // A publisher cannot forge the stamp: the field is replaced.
    publisher
        .publish(
            "telemetry/t2",
            1,
            false,
            br#"{"seen_by":"forged","n":[1,2]}"#,
        )
        .await;
    assert_eq!(
        received(sub_a.recv_kind(3).await, false).1,
        r#"{"seen_by":"sub-a/@telemetry/t2","n":[1,2]}"#
    );
    assert_eq!(
        received(sub_b.recv_kind(3).await, true).1,
        r#"{"seen_by":"sub-b/bob@telemetry/t2","n":[1,2]}"#
    );
}

#[tokio::test]
async fn transform_leaves_other_messages_unchanged() {
    let (broker, _dir, mut sub_a, mut sub_b) = stamp_broker().await;
    let publisher = crate::support::rumqtt::V5::connect(broker.addr, "pub5").await;
    let unchanged: [(&str, &[u8]); 5] = [
        ("telemetry/t1", b"21.5 degrees"),
        ("telemetry/t1", b"[1,2,3]"),
        ("telemetry/t1", b"\"text\""),
        ("telemetry/t1", b"\xff\x00binary"),
        ("other/t1", br#"{"temp":21}"#),
    ];
    for (topic, payload) in unchanged {
        publisher.publish(topic, 0, false, payload).await;
    }
    // Then one that is stamped: the plugin is still at work.
    publisher
        .publish("telemetry/t9", 0, false, br#"{"a":1}"#)
        .await;
    for (sub, v5, me) in [
        (&mut sub_a, false, "sub-a/"),
        (&mut sub_b, true, "sub-b/bob"),
    ] {
        for (topic, payload) in unchanged {
            let frame = sub.recv_kind(3).await;
            let got = if v5 {
                let p = frame.publish_v5();
                (p.topic, p.payload.to_vec())
            } else {
                let p = frame.publish_v4();
                (p.topic, p.payload.to_vec())
            };
            assert_eq!(got, (topic.to_owned(), payload.to_vec()), "{me}");
        }
        assert_eq!(
            received(sub.recv_kind(3).await, v5),
            (
                "telemetry/t9".to_owned(),
                format!(r#"{{"a":1,"seen_by":"{me}@telemetry/t9"}}"#)
            )
        );
        sub.expect_silence(SHORT).await;
    }
}

#[tokio::test]
async fn transform_invalid_configuration_refuses_the_plugin() {
    let dir = PluginDir::new();
    dir.add("stamp", "payload-transform");
    let e = TestBroker::try_with(|c| {
        dir.configure(c);
        plugin_config(c, "stamp", &[("prefix", "telemetry/"), ("value", "%c")]);
    })
    .err()
    .expect("refused");
    assert!(
        e.contains("stamp.wasm") && e.contains("field is missing"),
        "{e}"
    );
}
