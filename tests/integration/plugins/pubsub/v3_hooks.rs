//! The `pubsub-v3` fixture (`tests/plugins/pubsub-v3`: `pubsub` with only
//! the MQTT 3 forms of the hooks) serving MQTT 5 clients: the broker calls a
//! plugin's v3 hook for them when it has no m5 one, and maps its answer to
//! MQTT 5 (a refusal is 0x87, Not authorized). The records show which form
//! was called; the settings of the MQTT 5 answers (`sub_code`, `pub_code`,
//! `pub_reason`, `unsuback_reason`) cannot reach the client through it.

use super::*;

/// A broker with the `pubsub-v3` fixture configured with `pairs`, under the
/// name of `pubsub` (so that [`records`] reads its store).
fn start_v3(pairs: &[(&str, &str)]) -> Fixture {
    let dir = PluginDir::new();
    dir.add(PLUGIN, "pubsub-v3");
    let broker = broker_with(&dir, |c| plugin_config(c, PLUGIN, pairs));
    Fixture { broker, _dir: dir }
}

#[tokio::test]
async fn a_topic_rejected_by_the_v3_hook_gets_0x87_for_mqtt5_and_0x80_for_mqtt311() {
    let f = start_v3(&[("sub_reject", "secret"), ("sub_code", "secret=>0x97")]);
    let mut s5 = v5(&f, "s5").await;
    let ack = subscribe5(&mut s5, 1, &[("open", 1), ("secret", 1)]).await;
    assert_eq!(ack.ack_codes(true), [1, 0x87], "not the m5-only sub_code");
    assert_eq!(ack_properties(&ack, 2), (None, vec![]));
    // The v3 hook answered for the MQTT 5 client (the fixture has no other),
    // and its notification followed for the topic granted.
    assert_eq!(
        records(&f, "auth-on-subscribe", "s5"),
        ["topics=open:1,secret:1"]
    );
    expect_records(&f, "on-subscribe", "s5", &["topics=open:1"]).await;

    let mut s3 = v4(&f, "s3").await;
    assert_eq!(
        subscribe3(&mut s3, 1, &[("open", 1), ("secret", 1)]).await,
        [1, 0x80]
    );
    assert_eq!(
        records(&f, "auth-on-subscribe", "s3"),
        ["topics=open:1,secret:1"]
    );
    assert_eq!(f.ctx.router.subscription_count(), 2);

    // Only the granted topic delivers.
    let mut publisher = v4(&f, "pub").await;
    publish3_acked(&mut publisher, "secret", 1, b"no", false).await;
    publish3_acked(&mut publisher, "open", 2, b"yes", false).await;
    let p = s5.recv_kind(3).await.publish_v5();
    assert_eq!((&p.topic[..], &p.payload[..]), ("open", &b"yes"[..]));
    assert_eq!(next3(&mut s3).await, ("open".into(), b"yes".to_vec()));
}

#[tokio::test]
async fn an_error_from_the_v3_hook_gives_mqtt5_0x87_for_every_topic() {
    let f = start_v3(&[
        ("sub_error", "forbidden"),
        ("sub_error_code", "forbidden=>0x97"),
    ]);
    let mut s5 = v5(&f, "s5").await;
    let ack = subscribe5(&mut s5, 1, &[("ok", 0), ("forbidden", 1), ("also", 2)]).await;
    assert_eq!(ack.ack_codes(true), [0x87, 0x87, 0x87]);
    assert_eq!(
        records(&f, "auth-on-subscribe", "s5"),
        ["topics=ok:0,forbidden:1,also:2"]
    );
    let mut s3 = v4(&f, "s3").await;
    assert_eq!(
        subscribe3(&mut s3, 1, &[("ok", 0), ("forbidden", 0)]).await,
        [0x80, 0x80]
    );
    assert_eq!(f.ctx.router.subscription_count(), 0);

    // Without the refused filter, the same client is granted.
    assert_eq!(
        subscribe5(&mut s5, 2, &[("ok", 1)]).await.ack_codes(true),
        [1]
    );
    expect_records(&f, "on-subscribe", "s5", &["topics=ok:1"]).await;
    assert_eq!(
        records(&f, "auth-on-subscribe", "s5"),
        ["topics=ok:0,forbidden:1,also:2", "topics=ok:1"]
    );
}

#[tokio::test]
async fn a_v3_publish_refusal_gives_an_mqtt5_publisher_0x87() {
    let f = start_v3(&[
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
    assert_eq!(ack_properties(&ack, 3), (None, vec![]), "no Reason String");
    publisher.send(&publish_v5("quota", 1, 2, b"x", None)).await;
    let ack = publisher.recv_kind(4).await;
    assert_eq!((ack.packet_id(), ack.ack_reason()), (2, 0x87));

    // Still connected; the refused messages went nowhere.
    publisher
        .send(&publish_v5("allowed", 1, 3, b"ok", None))
        .await;
    let ack = publisher.recv_kind(4).await;
    assert_eq!((ack.packet_id(), ack.ack_reason()), (3, 0));
    assert_eq!(next3(&mut sub).await, ("allowed".into(), b"ok".to_vec()));
    assert_eq!(
        records(&f, "auth-on-publish", "pub"),
        [
            "topic=deny qos=1 retain=0 will=0 size=1",
            "topic=quota qos=1 retain=0 will=0 size=1",
            "topic=allowed qos=1 retain=0 will=0 size=2",
        ]
    );
    expect_records(
        &f,
        "on-publish",
        "pub",
        &["topic=allowed qos=1 retain=0 size=2"],
    )
    .await;
}

#[tokio::test]
async fn a_v3_on_deliver_rewrite_applies_to_an_mqtt5_subscriber() {
    let f = start_v3(&[
        ("deliver_clients", "d5"),
        ("deliver_payload", "d/pay=>rewritten"),
        ("deliver_prefix", "d/prefix=>pre-"),
        ("deliver_topic", "d/topic=>d/renamed"),
    ]);
    let mut d5 = v5(&f, "d5").await;
    assert_eq!(
        subscribe5(&mut d5, 1, &[("d/#", 0)]).await.ack_codes(true),
        [0]
    );
    let mut other = v5(&f, "other").await;
    assert_eq!(
        subscribe5(&mut other, 1, &[("d/#", 0)])
            .await
            .ack_codes(true),
        [0]
    );
    // From an MQTT 5 publisher, with a user property.
    let mut publisher = v5(&f, "pub").await;
    for (i, (topic, payload)) in [("d/pay", "a"), ("d/prefix", "b"), ("d/topic", "c")]
        .into_iter()
        .enumerate()
    {
        let mut props = publish_props();
        props.user_properties = vec![pair("k", "v")];
        let pkid = i as u16 + 1;
        publisher
            .send(&publish_v5(topic, 1, pkid, payload.as_bytes(), Some(props)))
            .await;
        let ack = publisher.recv_kind(4).await;
        assert_eq!((ack.packet_id(), ack.ack_reason()), (pkid, 0));
    }

    // The message's own properties are kept.
    for (topic, payload) in [
        ("d/pay", "rewritten"),
        ("d/prefix", "pre-b"),
        ("d/renamed", "c"),
    ] {
        let p = d5.recv_kind(3).await.publish_v5();
        assert_eq!((&p.topic[..], &p.payload[..]), (topic, payload.as_bytes()));
        assert_eq!(
            p.properties.map(|p| p.user_properties),
            Some(vec![pair("k", "v")])
        );
    }
    for (topic, payload) in [("d/pay", "a"), ("d/prefix", "b"), ("d/topic", "c")] {
        let p = other.recv_kind(3).await.publish_v5();
        assert_eq!((&p.topic[..], &p.payload[..]), (topic, payload.as_bytes()));
    }

    // The v3 forms were called for the MQTT 5 clients: no properties in
    // their records, which the m5 forms would have shown (`up=k=v`).
    let seen = [
        "topic=d/pay qos=0 retain=0 size=1",
        "topic=d/prefix qos=0 retain=0 size=1",
        "topic=d/topic qos=0 retain=0 size=1",
    ];
    assert_eq!(records(&f, "on-deliver", "d5"), seen);
    assert_eq!(records(&f, "on-deliver", "other"), seen);
    assert_eq!(
        records(&f, "auth-on-publish", "pub"),
        [
            "topic=d/pay qos=1 retain=0 will=0 size=1",
            "topic=d/prefix qos=1 retain=0 will=0 size=1",
            "topic=d/topic qos=1 retain=0 will=0 size=1",
        ]
    );
}

#[tokio::test]
async fn a_v3_unsubscribe_rewrite_applies_to_an_mqtt5_client() {
    let f = start_v3(&[
        ("unsub_rewrite", "alias=>real"),
        ("unsuback_reason", "rewritten by pubsub"),
    ]);
    let mut u5 = v5(&f, "u5").await;
    assert_eq!(
        subscribe5(&mut u5, 1, &[("real", 0)]).await.ack_codes(true),
        [0]
    );
    u5.send(&unsubscribe(2, "alias", true)).await;
    let ack = u5.recv_kind(11).await;
    assert_eq!(ack.ack_codes(true), [0], "the rewritten filter existed");
    assert_eq!(ack_properties(&ack, 2), (None, vec![]));
    assert_eq!(records(&f, "on-unsubscribe", "u5"), ["topics=alias"]);
    assert_eq!(f.ctx.router.subscription_count(), 0);

    let mut publisher = v4(&f, "pub").await;
    publish3_acked(&mut publisher, "real", 1, b"x", false).await;
    u5.expect_silence(Duration::from_millis(300)).await;
}
