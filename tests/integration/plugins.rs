//! The plugin host through the real broker: real `.wasm` plugins (built from
//! `tests/plugins/`), real clients.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use sluice_broker::Config;
use sluice_broker::session::SubscriberId;
use sluice_broker::topic::ClientId;

use crate::support::packets::*;
use crate::support::rumqtt::V4;
use crate::support::{PluginDir, Raw, TestBroker, eventually, plugin_config};

fn id(mountpoint: &str, client: &str) -> SubscriberId {
    SubscriberId {
        mountpoint: mountpoint.into(),
        client_id: ClientId::new(client).expect("valid id"),
    }
}

/// A 3.1.1 CONNECT with credentials.
fn connect_v4_login(client: &str, clean: bool, user: &str, pass: &str) -> Vec<u8> {
    let mut c = mqttbytes::v4::Connect::new(client);
    c.clean_session = clean;
    c.keep_alive = 60;
    c.set_login(user, pass);
    let mut b = BytesMut::new();
    c.write(&mut b).expect("encode");
    b.to_vec()
}

/// A 5.0 CONNECT with a username.
fn connect_v5_user(
    client: &str,
    user: &str,
    props: impl FnOnce(&mut mqttbytes::v5::ConnectProperties),
) -> Vec<u8> {
    let mut bytes = connect_v5(client, true, 60, props);
    // Set the username flag and append the username: CONNECT's payload ends
    // with the client id when there is no will, username or password.
    let flags_at = bytes
        .windows(6)
        .position(|w| w == b"\x00\x04MQTT")
        .expect("protocol name")
        + 7;
    bytes[flags_at] |= 0x80;
    bytes.extend_from_slice(&(user.len() as u16).to_be_bytes());
    bytes.extend_from_slice(user.as_bytes());
    // Re-frame with the new remaining length.
    let (n, _) = crate::support::raw::varint(&bytes[1..]);
    frame(0x10, &bytes[1 + n..])
}

/// Sends a CONNECT and returns the CONNACK frame.
async fn connack(broker: &TestBroker, connect: &[u8]) -> (Raw, crate::support::raw::Frame) {
    let mut raw = Raw::connect(broker.addr).await;
    raw.send(connect).await;
    let ack = raw.recv().await;
    (raw, ack)
}

/// The hook calls a `policy` plugin recorded, for one client id.
fn calls(broker: &TestBroker, plugin: &str, client: &str) -> Vec<String> {
    let raw = broker
        .ctx
        .plugins
        .kv_get(plugin, "calls")
        .unwrap_or_default();
    String::from_utf8_lossy(&raw)
        .lines()
        .filter_map(|l| l.strip_suffix(&format!(":{client}")).map(str::to_owned))
        .collect()
}

/// Waits until `plugin` recorded `expected` for `client`, then checks the
/// exact sequence.
async fn expect_calls(broker: &TestBroker, plugin: &str, client: &str, expected: &[&str]) {
    eventually("hook calls recorded", || {
        calls(broker, plugin, client).len() >= expected.len()
    })
    .await;
    assert_eq!(
        calls(broker, plugin, client),
        expected,
        "{plugin} / {client}"
    );
}

fn broker_with(dir: &PluginDir, tweak: impl FnOnce(&mut Config)) -> TestBroker {
    TestBroker::with(|c| {
        dir.configure(c);
        tweak(c);
    })
}

#[tokio::test]
async fn ok_error_and_next() {
    for (verdict, v4_code, v5_code) in [("ok", 0, 0), ("deny", 4, 0x86), ("next", 5, 0x87)] {
        let dir = PluginDir::new();
        dir.add("auth", "policy");
        let broker = broker_with(&dir, |c| plugin_config(c, "auth", &[("verdict", verdict)]));
        let (_, ack) = connack(&broker, &connect_v4_login("c4", true, "u", "p")).await;
        assert_eq!(ack.connack().1, v4_code, "{verdict}");
        let (_, ack) = connack(&broker, &connect_v5("c5", true, 60, |_| {})).await;
        assert_eq!(ack.connack().1, v5_code, "{verdict} (v5)");
    }
}

#[tokio::test]
async fn chain_runs_in_order_and_stops_at_the_first_answer() {
    let dir = PluginDir::new();
    dir.add("a", "policy").add("b", "policy").add("c", "policy");
    // a and b defer, c accepts: next-next-ok.
    let broker = broker_with(&dir, |c| {
        plugin_config(c, "a", &[("verdict", "next")]);
        plugin_config(c, "b", &[("verdict", "next")]);
    });
    let names: Vec<&str> = broker.ctx.plugins.list().iter().map(|p| &*p.name).collect();
    assert_eq!(names, ["a", "b", "c"], "file-name order");
    let (_, ack) = connack(&broker, &connect_v4_login("x", true, "u", "p")).await;
    assert_eq!(ack.connack().1, 0);
    for p in ["a", "b", "c"] {
        assert_eq!(
            calls(&broker, p, "x")[0],
            "auth-on-register",
            "{p} was asked"
        );
    }
    drop(broker);

    // A priority moves c first: it accepts and a, b are never asked.
    let broker = broker_with(&dir, |c| {
        plugin_config(c, "a", &[("verdict", "deny")]);
        plugin_config(c, "b", &[("verdict", "deny")]);
        c.plugin.entry("c".into()).or_default().priority = Some(1);
    });
    let names: Vec<&str> = broker.ctx.plugins.list().iter().map(|p| &*p.name).collect();
    assert_eq!(names, ["c", "a", "b"]);
    let (_, ack) = connack(&broker, &connect_v4_login("y", true, "u", "p")).await;
    assert_eq!(ack.connack().1, 0);
    assert!(
        calls(&broker, "a", "y")
            .iter()
            .all(|c| !c.starts_with("auth"))
    );
    assert!(
        calls(&broker, "b", "y")
            .iter()
            .all(|c| !c.starts_with("auth"))
    );

    // An error stops the chain too.
    let broker = broker_with(&dir, |c| {
        plugin_config(c, "a", &[("verdict", "deny")]);
    });
    let (_, ack) = connack(&broker, &connect_v4_login("z", true, "u", "p")).await;
    assert_eq!(ack.connack().1, 4);
    assert!(calls(&broker, "b", "z").is_empty());
}

#[tokio::test]
async fn plugin_reason_codes_and_reason_strings_reach_mqtt5_clients() {
    let dir = PluginDir::new();
    dir.add("auth", "policy");
    let broker = broker_with(&dir, |c| {
        plugin_config(
            c,
            "auth",
            &[
                ("verdict", "deny"),
                ("reason_code", "156"),
                ("server_reference", "other.example:1883"),
            ],
        );
    });
    let (_, ack) = connack(&broker, &connect_v5("moved", true, 60, |_| {})).await;
    let ack = ack.connack_v5();
    assert_eq!(ack.code as u8, 0x9C, "use another server");
    let props = ack.properties.expect("properties");
    assert_eq!(
        props.server_reference.as_deref(),
        Some("other.example:1883")
    );
    assert_eq!(
        props.reason_string.as_deref(),
        Some("denied by configuration")
    );

    // A code that cannot refuse a CONNECT is itself an error.
    let broker = broker_with(&dir, |c| {
        plugin_config(c, "auth", &[("verdict", "deny"), ("reason_code", "16")]);
    });
    let (_, ack) = connack(&broker, &connect_v5("bad-code", true, 60, |_| {})).await;
    assert_eq!(ack.connack().1, 0x80);
}

#[tokio::test]
async fn allow_anonymous_does_not_bypass_authentication_plugins() {
    let dir = PluginDir::new();
    dir.add("auth", "policy");
    let broker = broker_with(&dir, |c| {
        c.server.allow_anonymous = true;
        plugin_config(c, "auth", &[("verdict", "deny")]);
    });
    let (_, ack) = connack(&broker, &connect_v4("anon", true, 60)).await;
    assert_eq!(ack.connack().1, 4);
}

#[tokio::test]
async fn a_plugin_with_only_the_v3_hook_serves_mqtt5_clients() {
    let dir = PluginDir::new();
    dir.add("v3", "policy-v3");
    let broker = broker_with(&dir, |c| plugin_config(c, "v3", &[("only_user", "alice")]));
    let (_, ack) = connack(&broker, &connect_v5_user("m5", "alice", |_| {})).await;
    assert_eq!(ack.connack().1, 0);
    assert_eq!(calls(&broker, "v3", "m5"), ["auth-on-register"]);
    let (_, ack) = connack(&broker, &connect_v5_user("m5b", "mallory", |_| {})).await;
    assert_eq!(
        ack.connack().1,
        0x87,
        "only plugin said next: not authorized"
    );

    for (deny_as, code) in [("invalid-credentials", 0x86), ("not-authorized", 0x87)] {
        let broker = broker_with(&dir, |c| {
            plugin_config(c, "v3", &[("verdict", "deny"), ("deny_as", deny_as)]);
        });
        let (_, ack) = connack(&broker, &connect_v5("m5c", true, 60, |_| {})).await;
        assert_eq!(ack.connack().1, code, "{deny_as}");
    }
}

#[tokio::test]
async fn failures_fail_closed_or_open_by_policy() {
    let dir = PluginDir::new();
    dir.add("10-hostile", "hostile").add("20-auth", "policy");
    let broker = broker_with(&dir, |_| {});
    let (_, ack) = connack(&broker, &connect_v4_login("p1", true, "panic", "")).await;
    assert_eq!(
        ack.connack().1,
        5,
        "a trap refuses the client (fail closed)"
    );
    assert!(
        calls(&broker, "20-auth", "p1").is_empty(),
        "the chain stopped"
    );

    let broker = broker_with(&dir, |c| {
        c.plugin.entry("10-hostile".into()).or_default().on_failure =
            Some(sluice_broker::config::FailurePolicy::Next);
    });
    let (_, ack) = connack(&broker, &connect_v4_login("p2", true, "panic", "")).await;
    assert_eq!(ack.connack().1, 0, "fail open: the next plugin decided");
    // (Notifications may follow the authentication call.)
    assert_eq!(calls(&broker, "20-auth", "p2")[0], "auth-on-register");
}

#[tokio::test]
async fn notifications_arrive_in_order() {
    let dir = PluginDir::new();
    dir.add("rec", "policy");
    let broker = broker_with(&dir, |_| {});

    // Clean session: connect, DISCONNECT.
    let mut raw = Raw::handshake(broker.addr, &connect_v4_login("clean", true, "u1", "")).await;
    raw.send(&DISCONNECT).await;
    raw.expect_closed().await;
    expect_calls(
        &broker,
        "rec",
        "clean",
        &[
            "auth-on-register",
            "on-client-wakeup",
            "on-register[u1]",
            "on-client-gone",
        ],
    )
    .await;

    // Persistent session: connection lost, session lives on.
    let raw = Raw::handshake(broker.addr, &connect_v4_login("durable", false, "u2", "")).await;
    drop(raw);
    expect_calls(
        &broker,
        "rec",
        "durable",
        &[
            "auth-on-register",
            "on-client-wakeup",
            "on-register[u2]",
            "on-client-offline",
        ],
    )
    .await;

    // Takeover: the old connection goes offline before the new one wakes.
    let mut first = Raw::handshake(broker.addr, &connect_v4_login("taken", false, "u3", "")).await;
    expect_calls(
        &broker,
        "rec",
        "taken",
        &["auth-on-register", "on-client-wakeup", "on-register[u3]"],
    )
    .await;
    let _second = Raw::handshake(broker.addr, &connect_v4_login("taken", false, "u3", "")).await;
    first.expect_closed().await;
    expect_calls(
        &broker,
        "rec",
        "taken",
        &[
            "auth-on-register",
            "on-client-wakeup",
            "on-register[u3]",
            "auth-on-register",
            "on-client-offline",
            "on-client-wakeup",
            "on-register[u3]",
        ],
    )
    .await;

    // MQTT 5 with a short session expiry: offline, then expired.
    let raw = Raw::handshake(
        broker.addr,
        &connect_v5("expiring", false, 60, |p| {
            p.session_expiry_interval = Some(1)
        }),
    )
    .await;
    drop(raw);
    expect_calls(
        &broker,
        "rec",
        "expiring",
        &[
            "auth-on-register-m5",
            "on-client-wakeup",
            "on-register-m5[]",
            "on-client-offline",
            "on-session-expired",
        ],
    )
    .await;
}

#[tokio::test]
async fn client_id_is_rewritten() {
    let dir = PluginDir::new();
    dir.add("auth", "policy");
    let broker = broker_with(&dir, |c| {
        plugin_config(c, "auth", &[("client_id_prefix", "tenant-")])
    });
    let mut raw = Raw::handshake(broker.addr, &connect_v4("c1", true, 60)).await;
    eventually("session under the new id", || {
        broker.ctx.registry.get(&id("", "tenant-c1")).is_some()
    })
    .await;
    assert!(broker.ctx.registry.get(&id("", "c1")).is_none());
    raw.send(&subscribe_v4(1, "t", 0)).await;
    raw.recv_kind(9).await;
    let publisher = V4::connect(broker.addr, "pub").await;
    publisher.publish("t", 0, false, b"x").await;
    assert_eq!(&raw.recv_kind(3).await.publish_v4().payload[..], b"x");
}

#[tokio::test]
async fn mountpoints_isolate_topic_trees() {
    let dir = PluginDir::new();
    dir.add("auth", "policy");
    let broker = broker_with(&dir, |c| {
        plugin_config(c, "auth", &[("mountpoint_from_username", "yes")]);
    });
    let mut alice = Raw::handshake(broker.addr, &connect_v4_login("same", true, "alice", "")).await;
    let mut bob = Raw::handshake(broker.addr, &connect_v4_login("same", true, "bob", "")).await;
    // The same client id on two mountpoints is two sessions.
    assert!(broker.ctx.registry.get(&id("alice", "same")).is_some());
    assert!(broker.ctx.registry.get(&id("bob", "same")).is_some());
    for raw in [&mut alice, &mut bob] {
        raw.send(&subscribe_v4(1, "#", 0)).await;
        raw.recv_kind(9).await;
    }
    alice
        .send(&publish_v4("news", 0, 0, b"for alice's tree", true))
        .await;
    assert_eq!(
        &alice.recv_kind(3).await.publish_v4().payload[..],
        b"for alice's tree"
    );
    bob.expect_silence(Duration::from_millis(300)).await;
    // Retained messages stay in their tree too.
    let mut bob2 = Raw::handshake(broker.addr, &connect_v4_login("late", true, "bob", "")).await;
    bob2.send(&subscribe_v4(1, "news", 0)).await;
    bob2.recv_kind(9).await;
    bob2.expect_silence(Duration::from_millis(300)).await;
    let mut alice2 =
        Raw::handshake(broker.addr, &connect_v4_login("late", true, "alice", "")).await;
    alice2.send(&subscribe_v4(1, "news", 0)).await;
    alice2.recv_kind(9).await;
    assert_eq!(
        &alice2.recv_kind(3).await.publish_v4().payload[..],
        b"for alice's tree"
    );
}

#[tokio::test]
async fn flow_control_modifiers_are_enforced() {
    let dir = PluginDir::new();
    dir.add("auth", "policy");
    let broker = broker_with(&dir, |c| {
        plugin_config(
            c,
            "auth",
            &[
                ("max_inflight", "1"),
                ("receive_maximum", "2"),
                ("topic_alias_maximum", "2"),
                ("max_packet_size", "512"),
            ],
        );
    });
    let (mut raw, ack) = connack(
        &broker,
        &connect_v5("limited", true, 60, |p| p.receive_maximum = Some(10)),
    )
    .await;
    let props = ack.connack_v5().properties.expect("properties");
    assert_eq!(props.receive_max, Some(2));
    assert_eq!(props.topic_alias_max, Some(2));
    assert_eq!(props.max_packet_size, Some(512));

    // max-inflight 1: one unacknowledged message at a time.
    raw.send(&subscribe_v5(1, vec![filter_v5("w", 1)], None))
        .await;
    raw.recv_kind(9).await;
    let publisher = crate::support::rumqtt::V5::connect(broker.addr, "pub").await;
    publisher.publish("w", 1, false, b"1").await;
    publisher.publish("w", 1, false, b"2").await;
    let first = raw.recv_kind(3).await.publish_v5();
    raw.expect_silence(Duration::from_millis(300)).await;
    raw.send(&puback(first.pkid)).await;
    assert_eq!(&raw.recv_kind(3).await.publish_v5().payload[..], b"2");

    // topic alias 3 is over this client's maximum of 2.
    let mut props = publish_props();
    props.topic_alias = Some(3);
    raw.send(&publish_v5("w", 0, 0, b"x", Some(props))).await;
    assert_eq!(
        raw.expect_closed()
            .await
            .last()
            .map(|f| f.disconnect_reason()),
        Some(0x94)
    );

    // receive maximum 2: the third unreleased QoS 2 message is too many.
    let (mut raw, _) = connack(&broker, &connect_v5("limited2", true, 60, |_| {})).await;
    for pkid in 1..=3 {
        raw.send(&publish_v5("q", 2, pkid, b"x", None)).await;
    }
    assert_eq!(
        raw.expect_closed()
            .await
            .last()
            .map(|f| f.disconnect_reason()),
        Some(0x93)
    );

    // max packet size 512.
    let (mut raw, _) = connack(&broker, &connect_v5("limited3", true, 60, |_| {})).await;
    raw.send(&publish_v5("big", 0, 0, &[0u8; 600], None)).await;
    assert_eq!(
        raw.expect_closed()
            .await
            .last()
            .map(|f| f.disconnect_reason()),
        Some(0x95)
    );
}

#[tokio::test]
async fn max_message_rate_throttles_reading() {
    let dir = PluginDir::new();
    dir.add("auth", "policy");
    let broker = broker_with(&dir, |c| {
        plugin_config(c, "auth", &[("max_message_rate", "10")])
    });
    let mut sub = V4::connect(broker.addr, "sub").await;
    sub.subscribe("rate", 0).await;
    let mut raw = Raw::handshake(broker.addr, &connect_v4("fast", true, 60)).await;
    let started = Instant::now();
    for i in 0..25u8 {
        raw.send(&publish_v4("rate", 0, 0, &[i], false)).await;
    }
    for i in 0..25u8 {
        assert_eq!(&sub.next_publish().await.payload[..], &[i]);
    }
    // A burst of 10, then 10 per second: the last arrives after ~1.5 s.
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(1300), "throttled: {took:?}");
}

#[tokio::test]
async fn upgrade_qos_delivers_at_the_subscription_qos() {
    let dir = PluginDir::new();
    dir.add("auth", "policy");
    let broker = broker_with(&dir, |c| {
        plugin_config(c, "auth", &[("upgrade_qos", "true")])
    });
    let mut raw = Raw::handshake(broker.addr, &connect_v4("upgraded", true, 60)).await;
    raw.send(&subscribe_v4(1, "up", 2)).await;
    raw.recv_kind(9).await;
    let publisher = V4::connect(broker.addr, "pub").await;
    publisher.publish("up", 0, false, b"x").await;
    let p = raw.recv_kind(3).await.publish_v4();
    assert_eq!(p.qos as u8, 2);
}

#[tokio::test]
async fn allow_publish_subscribe_unsubscribe() {
    let dir = PluginDir::new();
    dir.add("auth", "policy");
    let broker = broker_with(&dir, |c| {
        plugin_config(
            c,
            "auth",
            &[
                ("allow_publish", "false"),
                ("allow_subscribe", "false"),
                ("allow_unsubscribe", "false"),
            ],
        );
    });
    // MQTT 5: refused per packet.
    let (mut raw, _) = connack(&broker, &connect_v5("ro", true, 60, |_| {})).await;
    raw.send(&subscribe_v5(
        1,
        vec![filter_v5("a", 0), filter_v5("b", 1)],
        None,
    ))
    .await;
    assert_eq!(raw.recv_kind(9).await.ack_codes(true), [0x87, 0x87]);
    raw.send(&publish_v5("a", 1, 5, b"x", None)).await;
    let ack = raw.recv_kind(4).await;
    assert_eq!((ack.packet_id(), ack.ack_reason()), (5, 0x87));
    raw.send(&unsubscribe(2, "a", true)).await;
    assert_eq!(raw.recv_kind(11).await.ack_codes(true), [0x87]);
    assert_eq!(broker.ctx.router.subscription_count(), 0);

    // MQTT 3.1.1: SUBACK 0x80; a refused PUBLISH or UNSUBSCRIBE closes.
    let mut raw = Raw::handshake(broker.addr, &connect_v4("ro3", true, 60)).await;
    raw.send(&subscribe_v4(1, "a", 1)).await;
    assert_eq!(raw.recv_kind(9).await.ack_codes(false), [0x80]);
    raw.send(&publish_v4("a", 0, 0, b"x", false)).await;
    raw.expect_closed().await;
    let mut raw = Raw::handshake(broker.addr, &connect_v4("ro4", true, 60)).await;
    raw.send(&unsubscribe(2, "a", false)).await;
    raw.expect_closed().await;
}

#[tokio::test]
async fn queue_limits_apply_per_session() {
    let dir = PluginDir::new();
    dir.add("auth", "policy");
    let broker = broker_with(&dir, |c| {
        plugin_config(c, "auth", &[("max_offline", "2"), ("max_online", "1")]);
    });
    // Offline: two messages kept.
    let connect = connect_v4("queued", false, 60);
    let mut raw = Raw::handshake(broker.addr, &connect).await;
    raw.send(&subscribe_v4(1, "q", 1)).await;
    raw.recv_kind(9).await;
    raw.send(&DISCONNECT).await;
    raw.expect_closed().await;
    let publisher = V4::connect(broker.addr, "pub").await;
    eventually("offline", || {
        broker
            .ctx
            .registry
            .get(&id("", "queued"))
            .is_some_and(|s| !s.is_online())
    })
    .await;
    for i in 0..4u8 {
        publisher.publish("q", 1, false, &[i]).await;
    }
    eventually("two dropped", || {
        broker
            .ctx
            .registry
            .get(&id("", "queued"))
            .is_some_and(|s| s.lock().queue.len() == 2)
    })
    .await;
    let mut raw = Raw::connect(broker.addr).await;
    raw.send(&connect).await;
    assert_eq!(raw.recv().await.connack(), (true, 0));
    let a = raw.recv_kind(3).await.publish_v4();
    let b = raw.recv_kind(3).await.publish_v4();
    assert_eq!((a.payload[0], b.payload[0]), (0, 1));
    drop(raw);

    // Online: with one message in flight (receive maximum 1, never
    // acknowledged), one more waits in the queue and the rest is dropped.
    let (mut raw, _) = connack(
        &broker,
        &connect_v5("online", true, 60, |p| p.receive_maximum = Some(1)),
    )
    .await;
    raw.send(&subscribe_v5(1, vec![filter_v5("o", 1)], None))
        .await;
    raw.recv_kind(9).await;
    let dropped_before = sluice_broker::metrics::Metrics::get(&broker.ctx.metrics.messages_dropped);
    for i in 0..4u8 {
        publisher.publish("o", 1, false, &[i]).await;
    }
    let first = raw.recv_kind(3).await.publish_v5();
    assert_eq!(first.payload[0], 0);
    eventually("online queue capped at one", || {
        sluice_broker::metrics::Metrics::get(&broker.ctx.metrics.messages_dropped)
            == dropped_before + 2
    })
    .await;
    assert_eq!(
        broker
            .ctx
            .registry
            .get(&id("", "online"))
            .map(|s| s.lock().queue.len()),
        Some(1)
    );
    raw.send(&puback(first.pkid)).await;
    assert_eq!(raw.recv_kind(3).await.publish_v5().payload[0], 1);
    raw.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn connection_lifetime_and_session_modifiers() {
    let dir = PluginDir::new();
    dir.add("auth", "policy");
    let broker = broker_with(&dir, |c| plugin_config(c, "auth", &[("lifetime", "1")]));
    let (mut raw, _) = connack(&broker, &connect_v5("mortal", true, 60, |_| {})).await;
    let started = Instant::now();
    let frames = raw.expect_closed().await;
    assert_eq!(frames.last().map(|f| f.disconnect_reason()), Some(0xA0));
    assert!(started.elapsed() >= Duration::from_millis(800));

    // Session expiry and clean start set by the plugin, username replaced.
    let broker = broker_with(&dir, |c| {
        plugin_config(
            c,
            "auth",
            &[("session_expiry", "1"), ("set_username", "renamed")],
        );
    });
    let raw = Raw::handshake(broker.addr, &connect_v4_login("brief", false, "orig", "")).await;
    expect_calls(
        &broker,
        "auth",
        "brief",
        &[
            "auth-on-register",
            "on-client-wakeup",
            "on-register[renamed]",
        ],
    )
    .await;
    drop(raw);
    eventually("the 3.1.1 persistent session expired after 1 s", || {
        broker.ctx.registry.get(&id("", "brief")).is_none()
    })
    .await;
    let broker = broker_with(&dir, |c| {
        plugin_config(c, "auth", &[("clean_start", "true")])
    });
    let mut raw = Raw::handshake(broker.addr, &connect_v4("forced", false, 60)).await;
    raw.send(&DISCONNECT).await;
    raw.expect_closed().await;
    eventually("clean start forced: session ended", || {
        broker.ctx.registry.get(&id("", "forced")).is_none()
    })
    .await;
}

#[tokio::test]
async fn invalid_modifiers_refuse_the_client() {
    let dir = PluginDir::new();
    dir.add("auth", "policy");
    let broker = broker_with(&dir, |c| plugin_config(c, "auth", &[("max_inflight", "0")]));
    let (_, ack) = connack(&broker, &connect_v5("zero", true, 60, |_| {})).await;
    assert_eq!(ack.connack().1, 0x80);
    assert!(broker.ctx.registry.get(&id("", "zero")).is_none());

    // An MQTT 5 limit for an MQTT 3.1.1 client cannot be honoured.
    let broker = broker_with(&dir, |c| {
        plugin_config(c, "auth", &[("receive_maximum", "5")])
    });
    let (_, ack) = connack(&broker, &connect_v4("old", true, 60)).await;
    assert_eq!(ack.connack().1, 5);
    let (_, ack) = connack(&broker, &connect_v5("new", true, 60, |_| {})).await;
    assert_eq!(ack.connack().1, 0);
}

/// AUTH packets for the enhanced-authentication tests.
fn auth_packet(reason: u8, method: &str, data: Option<&[u8]>) -> Vec<u8> {
    let mut buf = BytesMut::new();
    sluice_broker::codec::encode_auth(
        &mut buf,
        &sluice_broker::codec::Auth {
            reason: sluice_broker::reason::ReasonCode(reason),
            method: Some(method.into()),
            data: data.map(bytes::Bytes::copy_from_slice),
            ..Default::default()
        },
    );
    buf.to_vec()
}

/// (reason, method, data) of an AUTH frame.
fn parse_auth(f: &crate::support::raw::Frame) -> (u8, Option<String>, Option<Vec<u8>>) {
    assert_eq!(f.kind(), 15, "expected AUTH, got {f:?}");
    let reason = f.body[0];
    let (n, len) = crate::support::raw::varint(&f.body[1..]);
    let mut props = &f.body[1 + n..1 + n + len];
    let (mut method, mut data) = (None, None);
    while let Some((&id, rest)) = props.split_first() {
        let l = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        let value = &rest[2..2 + l];
        match id {
            0x15 => method = Some(String::from_utf8_lossy(value).into_owned()),
            0x16 => data = Some(value.to_vec()),
            _ => {}
        }
        props = &rest[2 + l..];
    }
    (reason, method, data)
}

fn hmac(secret: &[u8], nonce: &[u8]) -> Vec<u8> {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).expect("any key size");
    mac.update(nonce);
    mac.finalize().into_bytes().to_vec()
}

const METHOD: &str = "SLUICE-HMAC-SHA256";

#[tokio::test]
async fn enhanced_authentication_challenge_response_and_reauth() {
    let dir = PluginDir::new();
    dir.add("challenge", "challenge");
    let broker = broker_with(&dir, |c| {
        plugin_config(c, "challenge", &[("secret", "s3cret")])
    });
    let connect = connect_v5("hmac", true, 60, |p| {
        p.authentication_method = Some(METHOD.into())
    });

    // Right answer.
    let mut raw = Raw::connect(broker.addr).await;
    raw.send(&connect).await;
    let (reason, method, nonce) = parse_auth(&raw.recv().await);
    assert_eq!((reason, method.as_deref()), (0x18, Some(METHOD)));
    let nonce = nonce.expect("nonce");
    assert_eq!(nonce.len(), 16);
    raw.send(&auth_packet(0x18, METHOD, Some(&hmac(b"s3cret", &nonce))))
        .await;
    let ack = raw.recv().await.connack_v5();
    assert_eq!(ack.code as u8, 0);
    let props = ack.properties.expect("properties");
    assert_eq!(props.authentication_method.as_deref(), Some(METHOD));
    assert_eq!(props.authentication_data.as_deref(), Some(&b"welcome"[..]));
    assert_eq!(
        broker
            .ctx
            .plugins
            .kv_get("challenge", "registered/hmac")
            .as_deref(),
        Some(&b"yes"[..]),
        "auth-on-register-m5 ran after the exchange"
    );

    // Re-authentication on the live connection.
    raw.send(&auth_packet(0x19, METHOD, None)).await;
    let (reason, _, nonce) = parse_auth(&raw.recv().await);
    assert_eq!(reason, 0x18);
    raw.send(&auth_packet(
        0x18,
        METHOD,
        Some(&hmac(b"s3cret", &nonce.expect("nonce"))),
    ))
    .await;
    let (reason, _, data) = parse_auth(&raw.recv().await);
    assert_eq!((reason, data.as_deref()), (0x00, Some(&b"welcome"[..])));
    // A failed re-authentication ends the connection.
    raw.send(&auth_packet(0x19, METHOD, None)).await;
    parse_auth(&raw.recv().await);
    raw.send(&auth_packet(0x18, METHOD, Some(b"wrong"))).await;
    // The plugin's 0x86 cannot end a connection (it is a CONNACK code):
    // DISCONNECT says 0x87 "not authorized".
    assert_eq!(
        raw.expect_closed()
            .await
            .last()
            .map(|f| f.disconnect_reason()),
        Some(0x87)
    );

    // Wrong answer at CONNECT.
    let mut raw = Raw::connect(broker.addr).await;
    raw.send(&connect).await;
    parse_auth(&raw.recv().await);
    raw.send(&auth_packet(0x18, METHOD, Some(b"guess"))).await;
    assert_eq!(raw.expect_closed().await[0].connack().1, 0x86);

    // The method must not change.
    let mut raw = Raw::connect(broker.addr).await;
    raw.send(&connect).await;
    parse_auth(&raw.recv().await);
    raw.send(&auth_packet(0x18, "OTHER", Some(b"x"))).await;
    assert_eq!(raw.expect_closed().await[0].connack().1, 0x82);

    // A method no plugin handles.
    let (_, ack) = connack(
        &broker,
        &connect_v5("nomethod", true, 60, |p| {
            p.authentication_method = Some("KERBEROS".into())
        }),
    )
    .await;
    assert_eq!(ack.connack().1, 0x8C);
}

#[tokio::test]
async fn hostile_plugins_are_contained() {
    let dir = PluginDir::new();
    dir.add("hostile", "hostile");
    // Something the sandbox could connect to, were it allowed to.
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("probe listener");
    let probe_port = probe.local_addr().expect("address").port().to_string();
    let broker = broker_with(&dir, |c| {
        let p = c.plugin.entry("hostile".into()).or_default();
        p.memory_mb = Some(16);
        p.deadline_ms = Some(200);
        p.breaker_failures = Some(0);
        plugin_config(c, "hostile", &[("probe_port", &probe_port)]);
    });
    let plugin = broker.ctx.plugins.get("hostile").expect("loaded").clone();
    for (user, code, reason_contains) in [
        ("loop", 0x87, None),
        ("alloc", 0x87, None),
        ("recurse", 0x87, None),
        ("panic", 0x87, None),
        ("huge-id", 0x80, None),
        ("huge-reason", 0x87, Some("yyyy")),
        ("file", 0x87, Some("file access failed")),
        ("net", 0x87, Some("network access failed")),
        ("env", 0x87, Some("no environment visible")),
    ] {
        let created = plugin
            .stats
            .instances_created
            .load(std::sync::atomic::Ordering::Relaxed);
        let started = Instant::now();
        let (_, ack) = connack(
            &broker,
            &connect_v5_user(&format!("victim-{user}"), user, |_| {}),
        )
        .await;
        let took = started.elapsed();
        let ack = ack.connack_v5();
        assert_eq!(ack.code as u8, code, "{user}");
        assert!(
            took < Duration::from_secs(3),
            "{user} refused within the deadline, took {took:?}"
        );
        if let Some(text) = reason_contains {
            let reason = ack
                .properties
                .and_then(|p| p.reason_string)
                .unwrap_or_default();
            assert!(reason.contains(text), "{user}: {reason}");
            assert!(reason.len() <= 1024, "{user}: reason strings are bounded");
        }
        // Everyone else carries on, and a trapped instance was replaced.
        let (_, ok) = connack(
            &broker,
            &connect_v5_user(&format!("fine-after-{user}"), "ok", |_| {}),
        )
        .await;
        assert_eq!(ok.connack().1, 0, "after {user}");
        if code == 0x87 && reason_contains.is_none() {
            assert!(
                plugin
                    .stats
                    .instances_created
                    .load(std::sync::atomic::Ordering::Relaxed)
                    > created,
                "{user}: the instance was replaced"
            );
        }
    }
    assert!(
        plugin
            .stats
            .failures
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 4
    );
    // The broker itself is fine.
    let mut sub = V4::connect_with(broker.addr, "sub", |o| {
        o.set_credentials("ok", "");
    })
    .await;
    sub.subscribe("still/up", 0).await;
}

#[tokio::test]
async fn a_plugin_that_keeps_crashing_is_disabled_for_a_while() {
    let dir = PluginDir::new();
    dir.add("hostile", "hostile");
    let broker = broker_with(&dir, |c| {
        let p = c.plugin.entry("hostile".into()).or_default();
        p.breaker_failures = Some(3);
        p.breaker_backoff_secs = Some(1);
    });
    for i in 0..3 {
        let (_, ack) = connack(
            &broker,
            &connect_v4_login(&format!("crash{i}"), true, "panic", ""),
        )
        .await;
        assert_eq!(ack.connack().1, 5);
    }
    let calls_before = broker
        .ctx
        .plugins
        .get("hostile")
        .expect("loaded")
        .stats
        .instances_created
        .load(std::sync::atomic::Ordering::Relaxed);
    // Disabled: even a client it would accept is refused (fail closed),
    // without running the plugin.
    let (_, ack) = connack(&broker, &connect_v4_login("meanwhile", true, "ok", "")).await;
    assert_eq!(ack.connack().1, 5);
    assert_eq!(
        broker
            .ctx
            .plugins
            .get("hostile")
            .expect("loaded")
            .stats
            .instances_created
            .load(std::sync::atomic::Ordering::Relaxed),
        calls_before
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (_, ack) = connack(&broker, &connect_v4_login("later", true, "ok", "")).await;
    assert_eq!(ack.connack().1, 0, "back after the back-off");
}

#[tokio::test]
async fn broken_plugins_are_refused_at_startup_with_a_clear_error() {
    let dir = PluginDir::new();
    dir.add("good", "policy")
        .write("corrupt", b"\0asm\x01\0\0\0garbage");
    let e = TestBroker::try_with(|c| dir.configure(c))
        .err()
        .expect("refused");
    assert!(
        e.contains("corrupt.wasm") && e.contains("not a valid WebAssembly component"),
        "{e}"
    );

    let dir = PluginDir::new();
    dir.add("good", "policy").add("bad", "bad-import");
    let e = TestBroker::try_with(|c| dir.configure(c))
        .err()
        .expect("refused");
    assert!(
        e.contains("bad.wasm") && e.contains("fixtures:bogus/teleport"),
        "{e}"
    );

    let dir = PluginDir::new();
    dir.add("picky", "policy");
    let e = TestBroker::try_with(|c| {
        dir.configure(c);
        plugin_config(c, "picky", &[("fail_init", "yes")]);
    })
    .err()
    .expect("refused");
    assert!(
        e.contains("picky.wasm") && e.contains("init refused by configuration"),
        "{e}"
    );

    // Hidden files and disabled plugins are skipped.
    let dir = PluginDir::new();
    dir.add("good", "policy")
        .write(".partial", b"not yet")
        .write("off", b"junk");
    let broker = TestBroker::with(|c| {
        dir.configure(c);
        c.plugin.entry("off".into()).or_default().enabled = Some(false);
    });
    assert_eq!(broker.ctx.plugins.list().len(), 1);
}

#[tokio::test]
async fn compiled_plugins_come_from_the_cache_on_restart() {
    let dir = PluginDir::new();
    dir.add("auth", "policy");
    let first = broker_with(&dir, |_| {});
    drop(first);
    let second = broker_with(&dir, |_| {});
    assert!(second.ctx.plugins.get("auth").expect("loaded").cached);
}
