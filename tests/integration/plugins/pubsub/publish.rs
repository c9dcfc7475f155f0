//! Publish: `auth-on-publish(-m5)`, its modifiers (topic, payload, QoS,
//! retain, mountpoint, throttle, user properties), its refusals for MQTT
//! 3.1.1 and 5 publishers, Wills, and the cache of an acceptance.

use super::*;

use crate::support::within;
use sluice_broker::topic::TopicFilter;

// ---------------------------------------------------------------------------
// Modifiers.

#[tokio::test]
async fn publish_modifiers_topic_payload_and_qos() {
    let f = start(&[
        ("pub_rewrite_topic", "in=>out"),
        ("pub_payload", "pay=>replaced"),
        ("pub_qos", "down=>0,up=>2"),
    ]);
    let mut sub = v4(&f, "sub").await;
    assert_eq!(subscribe3(&mut sub, 1, &[("#", 2)]).await, [2]);
    let mut publisher = v4(&f, "pub").await;

    publisher.send(&publish_v4("in", 0, 0, b"x", false)).await;
    assert_eq!(next3(&mut sub).await, ("out".into(), b"x".to_vec()));

    publisher
        .send(&publish_v4("pay", 0, 0, b"orig", false))
        .await;
    assert_eq!(next3(&mut sub).await, ("pay".into(), b"replaced".to_vec()));

    // Routed at QoS 0; the publisher's PUBACK still follows its QoS 1.
    publish3_acked(&mut publisher, "down", 7, b"d", false).await;
    let p = sub.recv_kind(3).await.publish_v4();
    assert_eq!((&p.topic[..], p.qos as u8), ("down", 0));

    // Routed at QoS 2 although sent at QoS 0.
    publisher.send(&publish_v4("up", 0, 0, b"u", false)).await;
    let p = sub.recv_kind(3).await.publish_v4();
    assert_eq!((&p.topic[..], p.qos as u8), ("up", 2));

    assert_eq!(
        records(&f, "auth-on-publish", "pub"),
        [
            "topic=in qos=0 retain=0 will=0 size=1",
            "topic=pay qos=0 retain=0 will=0 size=4",
            "topic=down qos=1 retain=0 will=0 size=1",
            "topic=up qos=0 retain=0 will=0 size=1",
        ]
    );
}

#[tokio::test]
async fn publish_retain_modifier_decides_what_is_retained() {
    let f = start(&[("pub_retain", "keep=>true,skip=>false")]);
    let mut publisher = v4(&f, "pub").await;
    publish3_acked(&mut publisher, "keep", 1, b"kept", false).await;
    publish3_acked(&mut publisher, "skip", 2, b"skipped", true).await;
    let filter = |s: &str| TopicFilter::new(s).expect("valid filter");
    eventually("keep retained", || {
        f.ctx.router.retained_matching("", &filter("keep")).len() == 1
    })
    .await;
    assert!(
        f.ctx
            .router
            .retained_matching("", &filter("skip"))
            .is_empty()
    );

    let mut late = v4(&f, "late").await;
    assert_eq!(
        subscribe3(&mut late, 1, &[("keep", 0), ("skip", 0)]).await,
        [0, 0]
    );
    let p = late.recv_kind(3).await.publish_v4();
    assert_eq!(
        (&p.topic[..], &p.payload[..], p.retain),
        ("keep", &b"kept"[..], true)
    );
    late.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn publish_mountpoint_modifier_moves_the_message_to_another_tree() {
    let dir = PluginDir::new();
    dir.add("auth", "policy").add(PLUGIN, "pubsub");
    let broker = broker_with(&dir, |c| {
        plugin_config(c, "auth", &[("mountpoint_from_username", "yes")]);
        plugin_config(c, PLUGIN, &[("pub_mountpoint", "news=>tenant")]);
    });
    let mut tenant = Raw::handshake(broker.addr, &connect_v4_login("t", true, "tenant", "")).await;
    assert_eq!(subscribe3(&mut tenant, 1, &[("news", 0)]).await, [0]);
    expect_records(
        &broker,
        "on-subscribe",
        "t",
        &["topics=news:0 user=tenant mp=tenant"],
    )
    .await;
    let mut plain = v4(&broker, "plain").await;
    assert_eq!(subscribe3(&mut plain, 1, &[("news", 0)]).await, [0]);

    // Published by a client of the default tree, into the tenant's.
    let mut publisher = v4(&broker, "pub").await;
    publish3_acked(&mut publisher, "news", 1, b"for the tenant", false).await;
    assert_eq!(
        next3(&mut tenant).await,
        ("news".into(), b"for the tenant".to_vec())
    );
    plain.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn publish_throttle_delays_the_publishers_next_message() {
    let f = start(&[("pub_throttle_ms", "slow=>300")]);
    let mut sub = v4(&f, "sub").await;
    assert_eq!(subscribe3(&mut sub, 1, &[("#", 0)]).await, [0]);
    let mut publisher = v4(&f, "pub").await;
    let started = Instant::now();
    publisher.send(&publish_v4("slow", 0, 0, b"1", false)).await;
    assert_eq!(next3(&mut sub).await.0, "slow");
    publisher
        .send(&publish_v4("after", 0, 0, b"2", false))
        .await;
    assert_eq!(next3(&mut sub).await.0, "after");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(240),
        "the next message waited for the throttle: {took:?}"
    );
}

#[tokio::test]
async fn publish_user_property_reaches_mqtt5_subscribers() {
    let f = start(&[("pub_user_property", "props=>origin=plugin")]);
    let mut s5 = v5(&f, "s5").await;
    assert_eq!(
        subscribe5(&mut s5, 1, &[("props", 0)])
            .await
            .ack_codes(true),
        [0]
    );
    let mut s3 = v4(&f, "s3").await;
    assert_eq!(subscribe3(&mut s3, 1, &[("props", 0)]).await, [0]);

    // From an MQTT 3.1.1 publisher.
    let mut p3 = v4(&f, "p3").await;
    publish3_acked(&mut p3, "props", 1, b"from 3", false).await;
    let p = s5.recv_kind(3).await.publish_v5();
    assert_eq!(&p.payload[..], b"from 3");
    assert_eq!(
        p.properties.map(|p| p.user_properties),
        Some(vec![pair("origin", "plugin")])
    );
    assert_eq!(next3(&mut s3).await.1, b"from 3");

    // From an MQTT 5 publisher: appended to its own.
    let mut p5 = v5(&f, "p5").await;
    let mut props = publish_props();
    props.user_properties = vec![pair("a", "b")];
    p5.send(&publish_v5("props", 1, 1, b"from 5", Some(props)))
        .await;
    assert_eq!(p5.recv_kind(4).await.ack_reason(), 0);
    let p = s5.recv_kind(3).await.publish_v5();
    assert_eq!(&p.payload[..], b"from 5");
    assert_eq!(
        p.properties.map(|p| p.user_properties),
        Some(vec![pair("a", "b"), pair("origin", "plugin")])
    );
    assert_eq!(
        records(&f, "auth-on-publish-m5", "p5"),
        ["topic=props qos=1 retain=0 will=0 size=6 up=a=b"]
    );
}

// ---------------------------------------------------------------------------
// Refusals.

#[tokio::test]
async fn mqtt311_refusal_closes_the_connection() {
    let f = start(&[("pub_deny", "deny")]);
    let mut sub = v4(&f, "sub").await;
    assert_eq!(subscribe3(&mut sub, 1, &[("#", 1)]).await, [1]);
    let mut publisher = v4(&f, "pub").await;
    publisher.send(&publish_v4("deny", 1, 1, b"x", false)).await;
    let frames = publisher.expect_closed().await;
    assert!(
        frames.iter().all(|frame| frame.kind() != 4),
        "no PUBACK: {frames:?}"
    );
    assert_eq!(
        records(&f, "auth-on-publish", "pub"),
        ["topic=deny qos=1 retain=0 will=0 size=1"]
    );
    // Others are still served; the refused message went nowhere.
    let mut other = v4(&f, "other").await;
    publish3_acked(&mut other, "allowed", 1, b"y", false).await;
    assert_eq!(next3(&mut sub).await, ("allowed".into(), b"y".to_vec()));
}

#[tokio::test]
async fn mqtt311_refusal_with_the_drop_policy_acknowledges_and_drops() {
    let f = start_with(&[("pub_deny", "deny")], |c| {
        c.plugins.publish_refusal_v3 = sluice_broker::config::PublishRefusal::Drop;
    });
    let mut sub = v4(&f, "sub").await;
    assert_eq!(subscribe3(&mut sub, 1, &[("#", 1)]).await, [1]);
    let mut publisher = v4(&f, "pub").await;
    publisher
        .send(&publish_v4("deny", 0, 0, b"q0", false))
        .await;
    publish3_acked(&mut publisher, "deny", 7, b"q1", false).await;
    publisher
        .send(&publish_v4("deny", 2, 8, b"q2", false))
        .await;
    let rec = publisher.recv_kind(5).await;
    assert_eq!(rec.packet_id(), 8, "PUBREC");
    publisher.send(&pubrel(8)).await;
    assert_eq!(publisher.recv_kind(7).await.packet_id(), 8, "PUBCOMP");
    // Still connected; the first message the subscriber sees is this one.
    publish3_acked(&mut publisher, "allowed", 9, b"ok", false).await;
    assert_eq!(next3(&mut sub).await, ("allowed".into(), b"ok".to_vec()));
    assert_eq!(records(&f, "auth-on-publish", "pub").len(), 4);
}

#[tokio::test]
async fn mqtt5_refusal_codes_and_silent_qos0_drop() {
    let f = start(&[
        ("pub_deny", "deny,quota"),
        ("pub_code", "quota=>0x97"),
        ("pub_reason", "refused by pubsub"),
    ]);
    let mut sub = v4(&f, "sub").await;
    assert_eq!(subscribe3(&mut sub, 1, &[("#", 1)]).await, [1]);
    let mut publisher = v5(&f, "pub").await;

    publisher.send(&publish_v5("deny", 1, 1, b"x", None)).await;
    let ack = publisher.recv_kind(4).await;
    assert_eq!((ack.packet_id(), ack.ack_reason()), (1, 0x87));
    assert_eq!(
        ack_properties(&ack, 3).0.as_deref(),
        Some("refused by pubsub")
    );

    publisher.send(&publish_v5("quota", 1, 2, b"x", None)).await;
    let ack = publisher.recv_kind(4).await;
    assert_eq!((ack.packet_id(), ack.ack_reason()), (2, 0x97));

    publisher.send(&publish_v5("deny", 2, 3, b"x", None)).await;
    let rec = publisher.recv_kind(5).await;
    assert_eq!((rec.packet_id(), rec.ack_reason()), (3, 0x87), "PUBREC");

    // QoS 0: dropped without a word, the connection stays.
    publisher.send(&publish_v5("deny", 0, 0, b"x", None)).await;
    publisher.send(&PINGREQ).await;
    assert_eq!(publisher.recv().await.kind(), 13, "PINGRESP, nothing else");

    publisher
        .send(&publish_v5("allowed", 1, 4, b"ok", None))
        .await;
    let ack = publisher.recv_kind(4).await;
    assert_eq!((ack.packet_id(), ack.ack_reason()), (4, 0));
    assert_eq!(next3(&mut sub).await, ("allowed".into(), b"ok".to_vec()));
    assert_eq!(records(&f, "auth-on-publish-m5", "pub").len(), 5);
    assert!(records(&f, "auth-on-publish", "pub").is_empty());
}

#[tokio::test]
async fn a_trap_in_auth_on_publish_refuses_the_message() {
    let f = start(&[("pub_panic", "boom")]);
    let mut sub = v4(&f, "sub").await;
    assert_eq!(subscribe3(&mut sub, 1, &[("#", 1)]).await, [1]);

    let mut p5 = v5(&f, "p5").await;
    p5.send(&publish_v5("boom", 1, 1, b"x", None)).await;
    let ack = p5.recv_kind(4).await;
    assert_eq!(
        (ack.packet_id(), ack.ack_reason()),
        (1, 0x87),
        "fail closed"
    );
    p5.send(&publish_v5("fine", 1, 2, b"5", None)).await;
    let ack = p5.recv_kind(4).await;
    assert_eq!((ack.packet_id(), ack.ack_reason()), (2, 0));
    assert_eq!(next3(&mut sub).await, ("fine".into(), b"5".to_vec()));

    let mut p3 = v4(&f, "p3").await;
    p3.send(&publish_v4("boom", 0, 0, b"x", false)).await;
    p3.expect_closed().await;
    let mut p3b = v4(&f, "p3b").await;
    publish3_acked(&mut p3b, "fine", 1, b"3", false).await;
    assert_eq!(next3(&mut sub).await, ("fine".into(), b"3".to_vec()));
}

#[tokio::test]
async fn wills_are_authorised_at_connect() {
    let f = start(&[("will_deny", "will/bad")]);
    let mut sub = v4(&f, "sub").await;
    assert_eq!(subscribe3(&mut sub, 1, &[("will/#", 1)]).await, [1]);

    let (_, ack) = connack(
        &f,
        &connect_v4_will("w3", true, "will/bad", b"no", 1, false),
    )
    .await;
    assert_eq!(ack.connack().1, 5);
    assert_eq!(
        records(&f, "auth-on-publish", "w3"),
        ["topic=will/bad qos=1 retain=0 will=1 size=2"]
    );
    let (_, ack) = connack(
        &f,
        &connect_v5_full(
            "w5",
            true,
            60,
            |_| {},
            Some(will_v5("will/bad", b"no", None)),
        ),
    )
    .await;
    assert_eq!(ack.connack().1, 0x87);
    assert_eq!(
        records(&f, "auth-on-publish-m5", "w5"),
        ["topic=will/bad qos=1 retain=0 will=1 size=2"]
    );
    assert!(f.ctx.registry.get(&id("", "w3")).is_none());
    assert!(f.ctx.registry.get(&id("", "w5")).is_none());

    // An accepted Will is published when the connection is lost.
    let w = Raw::handshake(
        f.addr,
        &connect_v4_will("w-ok", true, "will/ok", b"bye", 0, false),
    )
    .await;
    assert_eq!(
        records(&f, "auth-on-publish", "w-ok"),
        ["topic=will/ok qos=0 retain=0 will=1 size=3"]
    );
    drop(w);
    assert_eq!(next3(&mut sub).await, ("will/ok".into(), b"bye".to_vec()));
}

#[tokio::test]
async fn cached_acceptance_skips_the_hook() {
    let f = start(&[("pub_cache_secs", "60"), ("pub_payload", "changed=>x")]);
    let mut sub = v4(&f, "sub").await;
    assert_eq!(subscribe3(&mut sub, 1, &[("#", 1)]).await, [1]);
    let mut publisher = v4(&f, "cacher").await;
    for _ in 0..3 {
        publisher.send(&publish_v4("c/a", 0, 0, b"1", false)).await;
    }
    // Another topic, another QoS, another RETAIN flag: asked again.
    publisher.send(&publish_v4("c/b", 0, 0, b"2", false)).await;
    publish3_acked(&mut publisher, "c/a", 1, b"3", false).await;
    publish3_acked(&mut publisher, "c/a", 2, b"4", false).await;
    for _ in 0..2 {
        publisher.send(&publish_v4("c/a", 0, 0, b"5", true)).await;
    }
    // With another modifier the cache is not honoured.
    for _ in 0..2 {
        publisher
            .send(&publish_v4("changed", 0, 0, b"6", false))
            .await;
    }
    for _ in 0..10 {
        within("every message delivered", next3(&mut sub)).await;
    }
    assert_eq!(
        records(&f, "auth-on-publish", "cacher"),
        [
            "topic=c/a qos=0 retain=0 will=0 size=1",
            "topic=c/b qos=0 retain=0 will=0 size=1",
            "topic=c/a qos=1 retain=0 will=0 size=1",
            "topic=c/a qos=0 retain=1 will=0 size=1",
            "topic=changed qos=0 retain=0 will=0 size=1",
            "topic=changed qos=0 retain=0 will=0 size=1",
        ]
    );
}
