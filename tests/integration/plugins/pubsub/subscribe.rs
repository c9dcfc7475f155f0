//! Subscribe and unsubscribe: `auth-on-subscribe(-m5)` (codes, QoS,
//! rewrites, refusals, SUBACK properties), `on-subscribe(-m5)`,
//! `on-unsubscribe(-m5)` and `on-topic-unsubscribed`.

use super::*;

// ---------------------------------------------------------------------------
// Subscribe.

#[tokio::test]
async fn subscriptions_accepted_as_requested_reach_both_hooks() {
    let f = start(&[]);
    let mut s3 = Raw::handshake(f.addr, &connect_v4_login("s3", true, "alice", "")).await;
    assert_eq!(
        subscribe3(&mut s3, 1, &[("a", 1), ("b/+", 2)]).await,
        [1, 2]
    );
    // The authorisation ran before the SUBACK; the notification follows it.
    assert_eq!(
        records(&f, "auth-on-subscribe", "s3"),
        ["topics=a:1,b/+:2 user=alice"]
    );
    expect_records(&f, "on-subscribe", "s3", &["topics=a:1,b/+:2 user=alice"]).await;

    // MQTT 5: options, identifier and user properties reach the m5 hooks,
    // and only them.
    let mut s5 = v5(&f, "s5").await;
    let mut nl = filter_v5("b/+", 2);
    nl.nolocal = true;
    s5.send(&subscribe_v5_props(
        1,
        vec![filter_v5("a", 1), nl],
        Some(7),
        &[("k", "v")],
    ))
    .await;
    assert_eq!(s5.recv_kind(9).await.ack_codes(true), [1, 2]);
    assert_eq!(
        records(&f, "auth-on-subscribe-m5", "s5"),
        ["topics=a:1,b/+:2+nl id=7 up=k=v"]
    );
    expect_records(
        &f,
        "on-subscribe-m5",
        "s5",
        &["topics=a:1,b/+:2+nl id=7 up=k=v"],
    )
    .await;
    assert!(records(&f, "auth-on-subscribe", "s5").is_empty());
    assert!(records(&f, "on-subscribe", "s5").is_empty());

    let mut publisher = v4(&f, "pub").await;
    publish3_acked(&mut publisher, "a", 1, b"x", false).await;
    assert_eq!(next3(&mut s3).await, ("a".into(), b"x".to_vec()));
    assert_eq!(&s5.recv_kind(3).await.publish_v5().payload[..], b"x");
}

#[tokio::test]
async fn rejected_topics_get_their_suback_codes() {
    let f = start(&[
        ("sub_reject", "secret,quota,bogus,plain"),
        ("sub_code", "quota=>0x97,bogus=>0x10,plain=>0x80"),
    ]);
    // MQTT 3.1.1: 0x80 for the rejected topic, the others granted.
    let mut s3 = v4(&f, "s3").await;
    assert_eq!(
        subscribe3(&mut s3, 1, &[("open", 0), ("secret", 1)]).await,
        [0, 0x80]
    );
    expect_records(&f, "on-subscribe", "s3", &["topics=open:0"]).await;

    // MQTT 5 (the m5 hook): the plugin's code when SUBACK can carry it, 0x80
    // otherwise.
    let mut s5 = v5(&f, "s5").await;
    let ack = subscribe5(
        &mut s5,
        1,
        &[
            ("open", 0),
            ("secret", 1),
            ("quota", 1),
            ("bogus", 1),
            ("plain", 1),
        ],
    )
    .await;
    assert_eq!(ack.ack_codes(true), [0, 0x87, 0x97, 0x80, 0x80]);
    expect_records(&f, "on-subscribe-m5", "s5", &["topics=open:0"]).await;
    assert_eq!(f.ctx.router.subscription_count(), 2);

    // Only the accepted topic delivers.
    let mut publisher = v4(&f, "pub").await;
    publish3_acked(&mut publisher, "secret", 1, b"no", false).await;
    publish3_acked(&mut publisher, "open", 2, b"yes", false).await;
    assert_eq!(next3(&mut s3).await, ("open".into(), b"yes".to_vec()));
    assert_eq!(&s5.recv_kind(3).await.publish_v5().payload[..], b"yes");
}

#[tokio::test]
async fn granted_qos_is_downgraded_in_suback_and_delivery() {
    let f = start(&[("sub_max_qos", "down=>0,mid=>1")]);
    let mut s3 = v4(&f, "s3").await;
    assert_eq!(subscribe3(&mut s3, 1, &[("down", 2)]).await, [0]);
    expect_records(&f, "on-subscribe", "s3", &["topics=down:0"]).await;
    let mut s5 = v5(&f, "s5").await;
    assert_eq!(
        subscribe5(&mut s5, 1, &[("mid", 2)]).await.ack_codes(true),
        [1]
    );
    expect_records(&f, "on-subscribe-m5", "s5", &["topics=mid:1"]).await;

    let publisher = V4::connect(f.addr, "pub").await;
    publisher.publish("down", 1, false, b"d").await;
    publisher.publish("mid", 2, false, b"m").await;
    let p = s3.recv_kind(3).await.publish_v4();
    assert_eq!((&p.payload[..], p.qos as u8), (&b"d"[..], 0));
    let p = s5.recv_kind(3).await.publish_v5();
    assert_eq!((&p.payload[..], p.qos as u8), (&b"m"[..], 1));
}

#[tokio::test]
async fn rewritten_filters_are_the_ones_subscribed() {
    let f = start(&[("sub_rewrite", "alias=>real/topic")]);
    let mut s3 = v4(&f, "s3").await;
    assert_eq!(subscribe3(&mut s3, 1, &[("alias", 1)]).await, [1]);
    assert_eq!(records(&f, "auth-on-subscribe", "s3"), ["topics=alias:1"]);
    expect_records(&f, "on-subscribe", "s3", &["topics=real/topic:1"]).await;
    let mut s5 = v5(&f, "s5").await;
    assert_eq!(
        subscribe5(&mut s5, 1, &[("alias", 1)])
            .await
            .ack_codes(true),
        [1]
    );
    expect_records(&f, "on-subscribe-m5", "s5", &["topics=real/topic:1"]).await;
    assert_eq!(f.ctx.router.subscription_count(), 2);

    let mut publisher = v4(&f, "pub").await;
    publish3_acked(&mut publisher, "alias", 1, b"to the alias", false).await;
    publish3_acked(&mut publisher, "real/topic", 2, b"to the rewrite", false).await;
    assert_eq!(
        next3(&mut s3).await,
        ("real/topic".into(), b"to the rewrite".to_vec())
    );
    let p = s5.recv_kind(3).await.publish_v5();
    assert_eq!(
        (&p.topic[..], &p.payload[..]),
        ("real/topic", &b"to the rewrite"[..])
    );
    s3.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn an_error_refuses_every_topic() {
    let f = start(&[
        ("sub_error", "forbidden,quota"),
        ("sub_error_code", "quota=>0x97"),
    ]);
    let mut s3 = v4(&f, "s3").await;
    assert_eq!(
        subscribe3(&mut s3, 1, &[("ok", 0), ("forbidden", 0)]).await,
        [0x80, 0x80]
    );
    let mut s5 = v5(&f, "s5").await;
    let ack = subscribe5(&mut s5, 1, &[("ok", 0), ("forbidden", 0)]).await;
    assert_eq!(ack.ack_codes(true), [0x87, 0x87]);
    let ack = subscribe5(&mut s5, 2, &[("ok", 0), ("quota", 0)]).await;
    assert_eq!(ack.ack_codes(true), [0x97, 0x97], "the error's own code");
    assert_eq!(f.ctx.router.subscription_count(), 0);

    let mut publisher = v4(&f, "pub").await;
    publish3_acked(&mut publisher, "ok", 1, b"x", false).await;
    s3.expect_silence(Duration::from_millis(300)).await;
    s5.expect_silence(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn an_exhausted_chain_a_trap_or_a_wrong_list_refuses_every_topic() {
    let f = start(&[
        ("sub_next", "nobody"),
        ("sub_panic", "boom"),
        ("sub_bad_list", "odd"),
    ]);
    let mut s3 = v4(&f, "s3").await;
    let mut s5 = v5(&f, "s5").await;
    // The only plugin answers next: nobody allowed it.
    assert_eq!(
        subscribe3(&mut s3, 1, &[("ok", 0), ("nobody", 0)]).await,
        [0x80, 0x80]
    );
    let ack = subscribe5(&mut s5, 1, &[("ok", 0), ("nobody", 0)]).await;
    assert_eq!(ack.ack_codes(true), [0x87, 0x87]);
    // A trap fails closed.
    assert_eq!(
        subscribe3(&mut s3, 2, &[("ok", 0), ("boom", 0)]).await,
        [0x80, 0x80]
    );
    let ack = subscribe5(&mut s5, 2, &[("ok", 0), ("boom", 0)]).await;
    assert_eq!(ack.ack_codes(true), [0x87, 0x87]);
    // One result too many.
    assert_eq!(
        subscribe3(&mut s3, 3, &[("ok", 0), ("odd", 0)]).await,
        [0x80, 0x80]
    );
    let codes = subscribe5(&mut s5, 3, &[("ok", 0), ("odd", 0)])
        .await
        .ack_codes(true);
    assert!(
        codes.len() == 2 && codes.iter().all(|c| *c >= 0x80),
        "every topic refused: {codes:?}"
    );
    assert_eq!(f.ctx.router.subscription_count(), 0);
    // The broker (and the replaced instance) keeps serving.
    assert_eq!(subscribe3(&mut s3, 4, &[("ok", 1)]).await, [1]);
    assert_eq!(
        subscribe5(&mut s5, 4, &[("ok", 1)]).await.ack_codes(true),
        [1]
    );
    expect_records(&f, "on-subscribe", "s3", &["topics=ok:1"]).await;
}

#[tokio::test]
async fn suback_carries_the_plugins_reason_string_and_user_property() {
    let f = start(&[
        ("suback_reason", "granted by pubsub"),
        ("suback_user_property", "origin=pubsub"),
    ]);
    let mut s5 = v5(&f, "s5").await;
    let ack = subscribe5(&mut s5, 1, &[("x", 1)]).await;
    assert_eq!(ack.ack_codes(true), [1]);
    assert_eq!(
        ack_properties(&ack, 2),
        (
            Some("granted by pubsub".to_owned()),
            vec![pair("origin", "pubsub")]
        )
    );
    // Request Problem Information 0: no Reason String.
    let mut quiet = Raw::handshake(
        f.addr,
        &connect_v5("quiet", true, 60, |p| p.request_problem_info = Some(0)),
    )
    .await;
    let ack = subscribe5(&mut quiet, 1, &[("x", 1)]).await;
    assert_eq!(ack.ack_codes(true), [1]);
    assert_eq!(ack_properties(&ack, 2).0, None);
    // MQTT 3.1.1 is unaffected.
    let mut s3 = v4(&f, "s3").await;
    assert_eq!(subscribe3(&mut s3, 1, &[("x", 1)]).await, [1]);
}

// ---------------------------------------------------------------------------
// Unsubscribe.

#[tokio::test]
async fn unsubscribe_rewrite_removes_the_rewritten_filter() {
    let f = start(&[
        ("unsub_rewrite", "alias=>real"),
        ("unsub_error", "stuck"),
        ("unsuback_reason", "rewritten by pubsub"),
    ]);
    let mut u3 = v4(&f, "u3").await;
    assert_eq!(
        subscribe3(&mut u3, 1, &[("real", 0), ("stuck", 0)]).await,
        [0, 0]
    );
    u3.send(&unsubscribe(2, "alias", false)).await;
    assert_eq!(u3.recv_kind(11).await.packet_id(), 2);
    assert_eq!(records(&f, "on-unsubscribe", "u3"), ["topics=alias"]);
    expect_records(&f, "on-topic-unsubscribed", "u3", &["topics=real"]).await;
    // An error keeps the request as it was.
    u3.send(&unsubscribe(3, "stuck", false)).await;
    assert_eq!(u3.recv_kind(11).await.packet_id(), 3);
    expect_records(
        &f,
        "on-topic-unsubscribed",
        "u3",
        &["topics=real", "topics=stuck"],
    )
    .await;

    let mut u5 = v5(&f, "u5").await;
    assert_eq!(
        subscribe5(&mut u5, 1, &[("real", 0)]).await.ack_codes(true),
        [0]
    );
    u5.send(&unsubscribe(2, "alias", true)).await;
    let ack = u5.recv_kind(11).await;
    assert_eq!(ack.ack_codes(true), [0], "the rewritten filter existed");
    assert_eq!(
        ack_properties(&ack, 2).0.as_deref(),
        Some("rewritten by pubsub")
    );
    assert_eq!(records(&f, "on-unsubscribe-m5", "u5"), ["topics=alias"]);
    assert!(records(&f, "on-unsubscribe", "u5").is_empty());
    expect_records(&f, "on-topic-unsubscribed", "u5", &["topics=real"]).await;
    assert_eq!(f.ctx.router.subscription_count(), 0);

    let mut publisher = v4(&f, "pub").await;
    publish3_acked(&mut publisher, "real", 1, b"x", false).await;
    u3.expect_silence(Duration::from_millis(300)).await;
    u5.expect_silence(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn topic_unsubscribed_lists_the_filters_removed() {
    let f = start(&[]);
    let mut u = v5(&f, "u").await;
    assert_eq!(
        subscribe5(&mut u, 1, &[("a", 0), ("b", 1)])
            .await
            .ack_codes(true),
        [0, 1]
    );
    u.send(&unsubscribe_many(2, &["a", "b", "never"], true))
        .await;
    assert_eq!(u.recv_kind(11).await.ack_codes(true), [0, 0, 0x11]);
    assert_eq!(records(&f, "on-unsubscribe-m5", "u"), ["topics=a,b,never"]);
    expect_records(&f, "on-topic-unsubscribed", "u", &["topics=a,b"]).await;
}

#[tokio::test]
async fn all_topics_when_a_session_with_subscriptions_ends() {
    let f = start(&[]);
    // No subscriptions: nothing to report.
    let mut bare = v4(&f, "bare").await;
    bare.send(&DISCONNECT).await;
    bare.expect_closed().await;
    // A persistent session going offline keeps its subscriptions.
    let mut durable = Raw::handshake(f.addr, &connect_v4("durable", false, 60)).await;
    assert_eq!(subscribe3(&mut durable, 1, &[("d", 1)]).await, [1]);
    durable.send(&DISCONNECT).await;
    durable.expect_closed().await;
    offline(&f, "durable").await;
    // A clean session with subscriptions ends with its connection.
    let mut subbed = v4(&f, "subbed").await;
    assert_eq!(
        subscribe3(&mut subbed, 1, &[("x", 0), ("y", 1)]).await,
        [0, 1]
    );
    subbed.send(&DISCONNECT).await;
    subbed.expect_closed().await;
    expect_records(&f, "on-topic-unsubscribed", "subbed", &["all"]).await;
    // Notifications are delivered in order: had the others been notified,
    // it would have been before.
    assert!(records(&f, "on-topic-unsubscribed", "bare").is_empty());
    assert!(records(&f, "on-topic-unsubscribed", "durable").is_empty());

    // An MQTT 5 session that expires.
    let mut expiring = Raw::handshake(
        f.addr,
        &connect_v5("expiring", false, 60, |p| {
            p.session_expiry_interval = Some(1)
        }),
    )
    .await;
    assert_eq!(
        subscribe5(&mut expiring, 1, &[("z", 0)])
            .await
            .ack_codes(true),
        [0]
    );
    drop(expiring);
    expect_records(&f, "on-topic-unsubscribed", "expiring", &["all"]).await;
}
