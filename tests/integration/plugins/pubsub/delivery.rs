//! Notifications and delivery: `on-publish(-m5)` sees the routed message,
//! `on-deliver(-m5)` changes it per subscriber, `on-offline-message` and
//! `on-message-drop` (queue full, too large, expired), and the order of a
//! client's hooks.

use super::*;

#[tokio::test]
async fn on_publish_sees_the_routed_message() {
    let f = start(&[
        ("pub_rewrite_topic", "orig=>routed"),
        ("pub_payload", "orig=>new!"),
        ("pub_qos", "orig=>0"),
        ("pub_user_property", "orig=>via=plugin"),
        ("record_payload", "true"),
    ]);
    let mut sub = v4(&f, "sub").await;
    assert_eq!(subscribe3(&mut sub, 1, &[("#", 1)]).await, [1]);

    let mut p3 = v4(&f, "p3").await;
    publish3_acked(&mut p3, "orig", 1, b"old", false).await;
    assert_eq!(next3(&mut sub).await, ("routed".into(), b"new!".to_vec()));
    expect_records(
        &f,
        "log",
        "p3",
        &[
            "auth-on-publish topic=orig qos=1 retain=0 will=0 size=3 payload=old",
            "on-publish topic=routed qos=0 retain=0 size=4 payload=new!",
        ],
    )
    .await;

    let mut p5 = v5(&f, "p5").await;
    let mut props = publish_props();
    props.user_properties = vec![pair("a", "b")];
    p5.send(&publish_v5("orig", 1, 1, b"old", Some(props)))
        .await;
    assert_eq!(p5.recv_kind(4).await.ack_reason(), 0);
    assert_eq!(next3(&mut sub).await, ("routed".into(), b"new!".to_vec()));
    expect_records(
        &f,
        "log",
        "p5",
        &[
            "auth-on-publish-m5 topic=orig qos=1 retain=0 will=0 size=3 payload=old up=a=b",
            "on-publish-m5 topic=routed qos=0 retain=0 size=4 payload=new! up=a=b;via=plugin",
        ],
    )
    .await;
}

#[tokio::test]
async fn on_deliver_changes_the_message_for_one_subscriber() {
    let f = start(&[
        ("deliver_clients", "d3,d5"),
        ("deliver_payload", "d/pay=>rewritten"),
        ("deliver_prefix", "d/prefix=>pre-"),
        ("deliver_topic", "d/topic=>d/renamed"),
        ("deliver_user_property", "d/prop=>via=deliver"),
    ]);
    let mut d3 = v4(&f, "d3").await;
    let mut other = v4(&f, "other").await;
    let mut d5 = v5(&f, "d5").await;
    for raw in [&mut d3, &mut other] {
        assert_eq!(subscribe3(raw, 1, &[("d/#", 0)]).await, [0]);
    }
    assert_eq!(
        subscribe5(&mut d5, 1, &[("d/#", 0)]).await.ack_codes(true),
        [0]
    );
    let mut publisher = v4(&f, "pub").await;
    for (i, (topic, payload)) in [
        ("d/pay", "a"),
        ("d/prefix", "b"),
        ("d/topic", "c"),
        ("d/prop", "d"),
    ]
    .into_iter()
    .enumerate()
    {
        publish3_acked(
            &mut publisher,
            topic,
            i as u16 + 1,
            payload.as_bytes(),
            false,
        )
        .await;
    }

    let changed = [
        ("d/pay", "rewritten"),
        ("d/prefix", "pre-b"),
        ("d/renamed", "c"),
        // Properties are invalid for an MQTT 3.1.1 subscriber: unchanged.
        ("d/prop", "d"),
    ];
    for (topic, payload) in changed {
        assert_eq!(
            next3(&mut d3).await,
            (topic.into(), payload.as_bytes().to_vec())
        );
    }
    for (topic, payload) in [
        ("d/pay", "a"),
        ("d/prefix", "b"),
        ("d/topic", "c"),
        ("d/prop", "d"),
    ] {
        assert_eq!(
            next3(&mut other).await,
            (topic.into(), payload.as_bytes().to_vec())
        );
    }
    for (topic, payload) in changed {
        let p = d5.recv_kind(3).await.publish_v5();
        assert_eq!((&p.topic[..], &p.payload[..]), (topic, payload.as_bytes()));
        let user = p.properties.map(|p| p.user_properties).unwrap_or_default();
        if topic == "d/prop" {
            assert_eq!(user, [pair("via", "deliver")]);
        } else {
            assert!(user.is_empty(), "{topic}: {user:?}");
        }
    }

    let seen = [
        "topic=d/pay qos=0 retain=0 size=1",
        "topic=d/prefix qos=0 retain=0 size=1",
        "topic=d/topic qos=0 retain=0 size=1",
        "topic=d/prop qos=0 retain=0 size=1",
    ];
    assert_eq!(records(&f, "on-deliver", "d3"), seen);
    assert_eq!(records(&f, "on-deliver", "other"), seen);
    assert_eq!(records(&f, "on-deliver-m5", "d5"), seen);
    assert!(records(&f, "on-deliver", "d5").is_empty());
}

#[tokio::test]
async fn on_deliver_error_next_or_trap_sends_the_message_unchanged() {
    let f = start(&[
        ("deliver_payload", "*=>changed"),
        ("deliver_error", "e/err"),
        ("deliver_next", "e/next"),
        ("deliver_panic", "e/trap"),
    ]);
    let mut e3 = v4(&f, "e3").await;
    assert_eq!(subscribe3(&mut e3, 1, &[("e/#", 0)]).await, [0]);
    let mut e5 = v5(&f, "e5").await;
    assert_eq!(
        subscribe5(&mut e5, 1, &[("e/#", 0)]).await.ack_codes(true),
        [0]
    );
    let mut publisher = v4(&f, "pub").await;
    let sent = [
        ("e/err", "1"),
        ("e/next", "2"),
        ("e/trap", "3"),
        ("e/ok", "4"),
    ];
    for (i, (topic, payload)) in sent.into_iter().enumerate() {
        publish3_acked(
            &mut publisher,
            topic,
            i as u16 + 1,
            payload.as_bytes(),
            false,
        )
        .await;
    }
    let expected = [
        ("e/err", "1"),
        ("e/next", "2"),
        ("e/trap", "3"),
        ("e/ok", "changed"),
    ];
    for (topic, payload) in expected {
        assert_eq!(
            next3(&mut e3).await,
            (topic.into(), payload.as_bytes().to_vec())
        );
        let p = e5.recv_kind(3).await.publish_v5();
        assert_eq!((&p.topic[..], &p.payload[..]), (topic, payload.as_bytes()));
    }
}

#[tokio::test]
async fn on_offline_message_for_a_disconnected_persistent_session() {
    let f = start(&[]);
    let connect = connect_v4("off", false, 60);
    let mut sub = Raw::handshake(f.addr, &connect).await;
    assert_eq!(subscribe3(&mut sub, 1, &[("off", 1)]).await, [1]);
    // Online: delivered, not queued offline.
    let mut publisher = v4(&f, "pub").await;
    publish3_acked(&mut publisher, "off", 1, b"online", false).await;
    let p = sub.recv_kind(3).await.publish_v4();
    assert_eq!(&p.payload[..], b"online");
    sub.send(&puback(p.pkid)).await;
    sub.send(&DISCONNECT).await;
    sub.expect_closed().await;
    offline(&f, "off").await;

    // QoS 0 is not queued for offline sessions (queue_qos0_offline off).
    publisher
        .send(&publish_v4("off", 0, 0, b"zero", false))
        .await;
    publish3_acked(&mut publisher, "off", 2, b"queued", false).await;
    expect_records(
        &f,
        "on-offline-message",
        "off",
        &["topic=off qos=1 retain=0 size=6"],
    )
    .await;

    let mut sub = Raw::connect(f.addr).await;
    sub.send(&connect).await;
    assert_eq!(sub.recv().await.connack(), (true, 0));
    assert_eq!(next3(&mut sub).await, ("off".into(), b"queued".to_vec()));
}

#[tokio::test]
async fn on_message_drop_when_the_offline_queue_is_full() {
    let f = start_with(&[("record_payload", "true")], |c| {
        c.session.max_offline_messages = 2;
    });
    let connect = connect_v4("queued", false, 60);
    let mut sub = Raw::handshake(f.addr, &connect).await;
    assert_eq!(subscribe3(&mut sub, 1, &[("q", 1)]).await, [1]);
    sub.send(&DISCONNECT).await;
    sub.expect_closed().await;
    offline(&f, "queued").await;

    let mut publisher = v4(&f, "pub").await;
    for i in 0..4u8 {
        publish3_acked(&mut publisher, "q", u16::from(i) + 1, &[b'0' + i], false).await;
    }
    // drop_newest: the third and fourth found the queue full.
    expect_records(
        &f,
        "on-message-drop",
        "queued",
        &[
            "topic=q qos=1 reason=queue-full size=1 payload=2",
            "topic=q qos=1 reason=queue-full size=1 payload=3",
        ],
    )
    .await;

    let mut sub = Raw::connect(f.addr).await;
    sub.send(&connect).await;
    assert_eq!(sub.recv().await.connack(), (true, 0));
    assert_eq!(next3(&mut sub).await.1, b"0");
    assert_eq!(next3(&mut sub).await.1, b"1");
}

#[tokio::test]
async fn on_message_drop_when_a_message_exceeds_the_maximum_packet_size() {
    let f = start(&[]);
    let mut small = Raw::handshake(
        f.addr,
        &connect_v5("small", true, 60, |p| p.max_packet_size = Some(100)),
    )
    .await;
    assert_eq!(
        subscribe5(&mut small, 1, &[("big/#", 0)])
            .await
            .ack_codes(true),
        [0]
    );
    let mut publisher = v4(&f, "pub").await;
    publish3_acked(&mut publisher, "big/one", 1, &[0u8; 200], false).await;
    publish3_acked(&mut publisher, "big/two", 2, b"fits", false).await;
    let p = small.recv_kind(3).await.publish_v5();
    assert_eq!(&p.payload[..], b"fits", "the oversized one was dropped");
    expect_records(
        &f,
        "on-message-drop",
        "small",
        &["topic=big/one qos=0 reason=max-packet-size-exceeded size=200"],
    )
    .await;
}

#[tokio::test]
async fn on_message_drop_when_a_queued_message_expires() {
    let f = start(&[]);
    let connect = connect_v5("exp", false, 60, |p| p.session_expiry_interval = Some(60));
    let mut sub = Raw::handshake(f.addr, &connect).await;
    assert_eq!(
        subscribe5(&mut sub, 1, &[("exp", 1)]).await.ack_codes(true),
        [1]
    );
    sub.send(&disconnect_v5(0, None)).await;
    sub.expect_closed().await;
    offline(&f, "exp").await;

    let mut publisher = v5(&f, "pub").await;
    let mut short = publish_props();
    short.message_expiry_interval = Some(1);
    publisher
        .send(&publish_v5("exp", 1, 1, b"short", Some(short)))
        .await;
    publisher
        .send(&publish_v5("exp", 1, 2, b"long", None))
        .await;
    publisher.recv_kind(4).await;
    publisher.recv_kind(4).await;
    expect_records(
        &f,
        "on-offline-message",
        "exp",
        &[
            "topic=exp qos=1 retain=0 size=5",
            "topic=exp qos=1 retain=0 size=4",
        ],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(2100)).await;

    let mut sub = Raw::connect(f.addr).await;
    sub.send(&connect).await;
    assert_eq!(sub.recv().await.connack(), (true, 0));
    let p = sub.recv_kind(3).await.publish_v5();
    assert_eq!(&p.payload[..], b"long", "the expired one was dropped");
    expect_records(
        &f,
        "on-message-drop",
        "exp",
        &["topic=exp qos=1 reason=expired size=5"],
    )
    .await;
}

#[tokio::test]
async fn a_clients_hooks_run_in_order() {
    let f = start(&[]);
    let mut me = v4(&f, "me").await;
    assert_eq!(subscribe3(&mut me, 1, &[("t", 0)]).await, [0]);
    expect_records(&f, "on-subscribe", "me", &["topics=t:0"]).await;

    let mut publisher = v4(&f, "pub").await;
    publisher.send(&publish_v4("t", 0, 0, b"x", false)).await;
    assert_eq!(next3(&mut me).await, ("t".into(), b"x".to_vec()));
    expect_records(
        &f,
        "log",
        "pub",
        &[
            "auth-on-publish topic=t qos=0 retain=0 will=0 size=1",
            "on-publish topic=t qos=0 retain=0 size=1",
        ],
    )
    .await;

    me.send(&unsubscribe(2, "t", false)).await;
    me.recv_kind(11).await;
    expect_records(
        &f,
        "log",
        "me",
        &[
            "auth-on-subscribe topics=t:0",
            "on-subscribe topics=t:0",
            "on-deliver topic=t qos=0 retain=0 size=1",
            "on-unsubscribe topics=t",
            "on-topic-unsubscribed topics=t",
        ],
    )
    .await;
}
