//! Registration modifiers, each honoured: identity, mountpoints, limits,
//! permissions, queues, lifetimes; and invalid ones refused.

use super::*;

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
    // The first message goes in flight (and stays there: never acked)...
    publisher.publish("o", 1, false, &[0]).await;
    let first = raw.recv_kind(3).await.publish_v5();
    assert_eq!(first.payload[0], 0);
    // ...then one of the next three waits in the queue; two are dropped.
    let dropped_before = sluice_broker::metrics::Metrics::get(&broker.ctx.metrics.messages_dropped);
    for i in 1..4u8 {
        publisher.publish("o", 1, false, &[i]).await;
    }
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

/// A plugin may lower the operator's limits for a client, never raise
/// them: a register modifier past them refuses the client (0x80), logged
/// with the plugin and the field and counted.
#[tokio::test]
async fn register_modifiers_past_the_operators_limits_are_refused() {
    for (key, value) in [
        ("receive_maximum", "33"),
        ("topic_alias_maximum", "17"),
        ("max_offline", "1001"),
    ] {
        let dir = PluginDir::new();
        dir.add("auth", "policy");
        let broker = broker_with(&dir, |c| plugin_config(c, "auth", &[(key, value)]));
        let (_, ack) = connack(&broker, &connect_v5("greedy", true, 60, |_| {})).await;
        assert_eq!(ack.connack().1, 0x80, "{key} = {value}");
        let plugin = broker.ctx.plugins.get("auth").expect("loaded");
        assert_eq!(
            plugin
                .stats
                .invalid
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
    }
    // At the limits themselves: accepted.
    let dir = PluginDir::new();
    dir.add("auth", "policy");
    let broker = broker_with(&dir, |c| {
        plugin_config(
            c,
            "auth",
            &[("receive_maximum", "32"), ("max_offline", "1000")],
        );
    });
    let (_, ack) = connack(&broker, &connect_v5("fair", true, 60, |_| {})).await;
    assert_eq!(ack.connack().1, 0);
}

/// A plugin cannot make a small message larger than any client could have
/// sent (`mqtt.max_packet_size`): `auth-on-publish` growing the payload
/// past it refuses the message, which reaches no subscriber.
#[tokio::test]
async fn a_payload_grown_past_max_packet_size_is_refused() {
    let dir = PluginDir::new();
    dir.add("pubsub", "pubsub");
    let big = "b".repeat(2048);
    let broker = broker_with(&dir, |c| {
        c.mqtt.max_packet_size = 1024;
        plugin_config(c, "pubsub", &[("pub_payload", &format!("grow=>{big}"))]);
    });
    let mut sub = Raw::handshake(broker.addr, &connect_v4("watcher", true, 60)).await;
    sub.send(&subscribe_v4(1, "#", 0)).await;
    sub.recv_kind(9).await;
    let mut raw = Raw::handshake(broker.addr, &connect_v5("grower", true, 60, |_| {})).await;
    raw.send(&publish_v5("grow", 1, 1, b"small", None)).await;
    assert_eq!(raw.recv_kind(4).await.ack_reason(), 0x80);
    raw.send(&publish_v5("marker", 1, 2, b"m", None)).await;
    raw.recv_kind(4).await;
    let first = sub.recv_kind(3).await.publish_v4();
    assert_eq!(
        &first.topic[..],
        "marker",
        "the grown message was not routed"
    );
    let plugin = broker.ctx.plugins.get("pubsub").expect("loaded");
    assert_eq!(
        plugin
            .stats
            .invalid
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

/// A plugin's reason string is left out of an acknowledgement that would
/// otherwise exceed the client's Maximum Packet Size (MQTT 5 forbids
/// sending it), and the hit is counted.
#[tokio::test]
async fn plugin_properties_stay_within_the_clients_maximum_packet_size() {
    let dir = PluginDir::new();
    dir.add("pubsub", "pubsub");
    let long = "r".repeat(500);
    let broker = broker_with(&dir, |c| {
        plugin_config(c, "pubsub", &[("suback_reason", &long)]);
    });
    let (mut raw, _) = connack(
        &broker,
        &connect_v5("small", true, 60, |p| p.max_packet_size = Some(128)),
    )
    .await;
    raw.send(&subscribe_v5(1, vec![filter_v5("t", 0)], None))
        .await;
    let suback = raw.recv_kind(9).await;
    assert!(
        suback.to_bytes().len() <= 128,
        "{} bytes",
        suback.to_bytes().len()
    );
    assert_eq!(suback.ack_codes(true), [0]);
    let hits = broker
        .ctx
        .metrics
        .limits
        .count(sluice_broker::limits::Limit::ClientMaxPacket);
    assert_eq!(hits, 1);
    // A client without the limit gets the reason string.
    let (mut raw, _) = connack(&broker, &connect_v5("large", true, 60, |_| {})).await;
    raw.send(&subscribe_v5(1, vec![filter_v5("t", 0)], None))
        .await;
    assert!(raw.recv_kind(9).await.to_bytes().len() > 500);
}
