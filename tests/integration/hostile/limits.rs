//! The `[limits]` counts a client could otherwise grow without end, each set
//! low from TOML and hit: filters per SUBSCRIBE, subscriptions per client,
//! sessions, retained messages and bytes, AUTH rounds.

use bytes::BytesMut;

use super::{accepted, puback_v5, topic_of, v4, v5};
use crate::support::hostile::*;
use crate::support::packets::*;
use sluice_broker::Config;
use sluice_broker::limits::Limit;

use crate::support::raw::Frame;
use crate::support::{PluginDir, Raw, TestBroker, eventually, plugin_config};

/// SUBACK codes for `filters` (QoS 0 each) from an MQTT 5 client.
async fn suback_v5(raw: &mut Raw, pkid: u16, filters: &[(&str, u8)]) -> Vec<u8> {
    let filters = filters.iter().map(|(f, q)| filter_v5(f, *q)).collect();
    raw.send(&subscribe_v5(pkid, filters, None)).await;
    let ack = raw.recv_kind(9).await;
    assert_eq!(ack.packet_id(), pkid);
    ack.ack_codes(true)
}

#[tokio::test]
async fn filters_past_max_filters_per_subscribe_are_refused() {
    let broker = toml_broker("[limits]\nmax_filters_per_subscribe = 4\n", |_| {});
    let filters = ["f/0", "f/1", "f/2", "f/3", "f/4", "f/5"];
    let mut raw5 = Raw::handshake(broker.addr, &v5("filters5")).await;
    let codes = suback_v5(&mut raw5, 1, &filters.map(|f| (f, 0))).await;
    // The first four are handled; 0x97 Quota exceeded for the others.
    assert_eq!(codes, [0, 0, 0, 0, 0x97, 0x97]);
    let mut raw4 = Raw::handshake(broker.addr, &v4("filters4")).await;
    raw4.send(&subscribe_v4_many(1, &filters.map(|f| (f, 0))))
        .await;
    assert_eq!(
        raw4.recv_kind(9).await.ack_codes(false),
        [0, 0, 0, 0, 0x80, 0x80]
    );
    // A refused filter is not subscribed: `f/4` is published first, `f/3`
    // is what arrives.
    let mut publisher = Raw::handshake(broker.addr, &v5("filters-pub")).await;
    puback_v5(&mut publisher, 1, "f/4", b"no", false).await;
    puback_v5(&mut publisher, 2, "f/3", b"yes", false).await;
    assert_eq!(topic_of(&raw5.recv_kind(3).await), "f/3");
    assert_eq!(topic_of(&raw4.recv_kind(3).await), "f/3");
}

#[tokio::test]
async fn subscriptions_past_max_subscriptions_per_client_are_refused() {
    let broker = toml_broker("[limits]\nmax_subscriptions_per_client = 3\n", |_| {});
    let mut raw = Raw::handshake(broker.addr, &v5("subs")).await;
    assert_eq!(
        suback_v5(&mut raw, 1, &[("a", 0), ("b", 0), ("c", 0)]).await,
        [0, 0, 0]
    );
    assert_eq!(suback_v5(&mut raw, 2, &[("d", 0)]).await, [0x97]);
    // Replacing a subscription (new QoS) is not a new one.
    assert_eq!(
        suback_v5(&mut raw, 3, &[("a", 1), ("e", 0)]).await,
        [0x01, 0x97]
    );
    // Room made by UNSUBSCRIBE can be used.
    raw.send(&unsubscribe(4, "b", true)).await;
    assert_eq!(raw.recv_kind(11).await.ack_codes(true), [0x00]);
    assert_eq!(suback_v5(&mut raw, 5, &[("d", 0)]).await, [0]);
    // MQTT 3.1.1: 0x80 for the excess, in the same packet.
    let mut raw4 = Raw::handshake(broker.addr, &v4("subs4")).await;
    raw4.send(&subscribe_v4_many(
        1,
        &[("a", 0), ("b", 0), ("c", 0), ("d", 0)],
    ))
    .await;
    assert_eq!(raw4.recv_kind(9).await.ack_codes(false), [0, 0, 0, 0x80]);
}

#[tokio::test]
async fn sessions_past_max_sessions_are_refused() {
    let broker = toml_broker("[limits]\nmax_sessions = 2\n", |_| {});
    let persistent = || {
        connect_v5("keep", false, 60, |p| {
            p.session_expiry_interval = Some(3600);
        })
    };
    // One offline persistent session and one online session: the limit.
    let mut keep = Raw::handshake(broker.addr, &persistent()).await;
    keep.send(&disconnect_v5(0, None)).await;
    keep.expect_closed().await;
    let _online = Raw::handshake(broker.addr, &v5("online")).await;
    eventually("two sessions", || broker.ctx.registry.len() == 2).await;

    // A third session: 0x97 Quota exceeded (MQTT 5), 0x03 Server
    // unavailable (3.1.1).
    let (_, ack) = connect_answer(broker.addr, &v5("third")).await;
    assert_eq!(ack.connack().1, 0x97);
    let (_, ack) = connect_answer(broker.addr, &v4("third3")).await;
    assert_eq!(ack.connack().1, 0x03);

    // Existing sessions still connect: a resume, and a clean-start
    // takeover that replaces its session.
    let (_, ack) = connect_answer(broker.addr, &persistent()).await;
    assert_eq!(ack.connack(), (true, 0), "the persistent session resumes");
    let (online, ack) = connect_answer(broker.addr, &v5("online")).await;
    assert_eq!(
        ack.connack().1,
        0,
        "a clean-start reconnect replaces its session"
    );
    // A session that ends makes room.
    drop(online);
    eventually("the online session ended", || {
        broker.ctx.registry.len() == 1
    })
    .await;
    let (_, ack) = connect_answer(broker.addr, &v5("fourth")).await;
    assert_eq!(ack.connack().1, 0);
}

#[tokio::test]
async fn retained_messages_past_max_retained_messages_are_refused() {
    let broker = toml_broker("[limits]\nmax_retained_messages = 2\n", |_| {});
    let mut sub = Raw::handshake(broker.addr, &v5("retained-sub")).await;
    assert_eq!(suback_v5(&mut sub, 1, &[("r/#", 0)]).await, [0]);
    let mut publisher = Raw::handshake(broker.addr, &v5("retained-pub")).await;
    assert!(accepted(
        puback_v5(&mut publisher, 1, "r/1", b"one", true).await
    ));
    assert!(accepted(
        puback_v5(&mut publisher, 2, "r/2", b"two", true).await
    ));
    // A third retained topic: 0x97, and the message is not routed either.
    assert_eq!(
        puback_v5(&mut publisher, 3, "r/3", b"three", true).await,
        0x97
    );
    assert!(accepted(
        puback_v5(&mut publisher, 4, "r/marker", b"m", false).await
    ));
    let topics: Vec<String> = [
        sub.recv_kind(3).await,
        sub.recv_kind(3).await,
        sub.recv_kind(3).await,
    ]
    .iter()
    .map(topic_of)
    .collect();
    assert_eq!(topics, ["r/1", "r/2", "r/marker"]);

    // Replacing and clearing are always allowed; clearing makes room.
    assert!(accepted(
        puback_v5(&mut publisher, 5, "r/1", b"uno", true).await
    ));
    assert!(accepted(
        puback_v5(&mut publisher, 6, "r/2", b"", true).await
    ));
    assert!(accepted(
        puback_v5(&mut publisher, 7, "r/3", b"three", true).await
    ));
    let mut late = Raw::handshake(broker.addr, &v5("retained-late")).await;
    assert_eq!(suback_v5(&mut late, 1, &[("r/#", 0)]).await, [0]);
    let mut retained = [
        late.recv_kind(3).await.publish_v5(),
        late.recv_kind(3).await.publish_v5(),
    ];
    retained.sort_by(|a, b| a.topic.cmp(&b.topic));
    let got: Vec<(&str, &[u8])> = retained
        .iter()
        .map(|p| (p.topic.as_str(), &p.payload[..]))
        .collect();
    assert_eq!(got, [("r/1", &b"uno"[..]), ("r/3", &b"three"[..])]);
}

#[tokio::test]
async fn retained_bytes_past_max_retained_bytes_are_refused() {
    // Counted as topic + payload + properties: one 6,000-byte message fits
    // under 10,000, two do not.
    let broker = toml_broker("[limits]\nmax_retained_bytes = 10000\n", |_| {});
    let big = vec![b'x'; 6_000];
    let mut sub = Raw::handshake(broker.addr, &v5("bytes-sub")).await;
    assert_eq!(suback_v5(&mut sub, 1, &[("rb/#", 0)]).await, [0]);
    let mut publisher = Raw::handshake(broker.addr, &v5("bytes-pub")).await;
    assert!(accepted(
        puback_v5(&mut publisher, 1, "rb/1", &big, true).await
    ));
    assert_eq!(puback_v5(&mut publisher, 2, "rb/2", &big, true).await, 0x97);
    assert!(accepted(
        puback_v5(&mut publisher, 3, "rb/marker", b"m", false).await
    ));
    assert_eq!(topic_of(&sub.recv_kind(3).await), "rb/1");
    assert_eq!(
        topic_of(&sub.recv_kind(3).await),
        "rb/marker",
        "rb/2 was not routed"
    );
    // Replacing with the same size, then clearing, are allowed; then the
    // second message fits.
    assert!(accepted(
        puback_v5(&mut publisher, 4, "rb/1", &big, true).await
    ));
    assert!(accepted(
        puback_v5(&mut publisher, 5, "rb/1", b"", true).await
    ));
    assert!(accepted(
        puback_v5(&mut publisher, 6, "rb/2", &big, true).await
    ));
}

/// The `challenge` fixture's method (see tests/plugins/challenge).
const METHOD: &str = "SLUICE-HMAC-SHA256";

fn auth_packet(reason: u8, data: &[u8]) -> Vec<u8> {
    let mut buf = BytesMut::new();
    sluice_broker::codec::encode_auth(
        &mut buf,
        &sluice_broker::codec::Auth {
            reason: sluice_broker::reason::ReasonCode(reason),
            method: Some(METHOD.into()),
            data: Some(bytes::Bytes::copy_from_slice(data)),
            ..Default::default()
        },
    );
    buf.to_vec()
}

/// The authentication data of an AUTH frame.
fn auth_data(f: &Frame) -> Vec<u8> {
    assert_eq!(f.kind(), 15, "expected AUTH, got {f:?}");
    let (n, len) = crate::support::raw::varint(&f.body[1..]);
    let mut props = &f.body[1 + n..1 + n + len];
    while let Some((&id, rest)) = props.split_first() {
        let l = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        if id == 0x16 {
            return rest[2..2 + l].to_vec();
        }
        props = &rest[2 + l..];
    }
    panic!("no authentication data in {f:?}")
}

/// The answer to a `challenge` nonce.
fn response(nonce: &[u8]) -> Vec<u8> {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"s3cret").expect("any key size");
    mac.update(nonce);
    mac.finalize().into_bytes().to_vec()
}

/// A broker with `limits.max_auth_rounds = max` and the `challenge`
/// fixture asking for `rounds` answers; also its configuration.
fn challenge_broker(max: u32, rounds: u32, dir: &PluginDir) -> (TestBroker, Config) {
    let mut config = toml_config(&format!("[limits]\nmax_auth_rounds = {max}\n"));
    dir.add("challenge", "challenge");
    dir.configure(&mut config);
    plugin_config(
        &mut config,
        "challenge",
        &[("secret", "s3cret"), ("rounds", &rounds.to_string())],
    );
    let c = config.clone();
    (TestBroker::with(|b| *b = c), config)
}

/// Answers the broker's nonces until it sends something else, which is
/// returned with the number of AUTH packets sent.
async fn answer_challenges(raw: &mut Raw, first: Frame) -> (usize, Frame) {
    let mut sent = 0;
    let mut frame = first;
    while frame.kind() == 15 && frame.body.first() == Some(&0x18) {
        raw.send(&auth_packet(0x18, &response(&auth_data(&frame))))
            .await;
        sent += 1;
        frame = raw.recv().await;
    }
    (sent, frame)
}

/// An exchange of exactly `max_auth_rounds` AUTH packets from the client
/// succeeds; one more is refused with CONNACK 0x97 and counted.
#[tokio::test]
async fn auth_rounds_past_max_auth_rounds_are_refused_at_connect() {
    for (rounds, code) in [(3, 0x00), (4, 0x97)] {
        let dir = PluginDir::new();
        let (broker, _) = challenge_broker(3, rounds, &dir);
        let mut raw = Raw::connect(broker.addr).await;
        raw.send(&connect_v5("rounds", true, 60, |p| {
            p.authentication_method = Some(METHOD.into())
        }))
        .await;
        let first = raw.recv().await;
        let (answered, last) = answer_challenges(&mut raw, first).await;
        assert_eq!(answered, rounds as usize, "every nonce was answered");
        assert_eq!(last.connack().1, code, "{rounds} rounds asked, 3 allowed");
        let hits = broker.ctx.metrics.limits.count(Limit::AuthRounds);
        assert_eq!(hits, u64::from(code != 0));
    }
}

/// A re-authentication counts its rounds too (the AUTH 0x19 that starts it
/// is not one, as CONNECT is not): past the limit it is DISCONNECT 0x97.
#[tokio::test]
async fn auth_rounds_past_max_auth_rounds_end_a_reauthentication() {
    let dir = PluginDir::new();
    let (broker, mut config) = challenge_broker(2, 2, &dir);
    let mut raw = Raw::connect(broker.addr).await;
    raw.send(&connect_v5("reauth", true, 60, |p| {
        p.authentication_method = Some(METHOD.into())
    }))
    .await;
    let first = raw.recv().await;
    let (answered, connack) = answer_challenges(&mut raw, first).await;
    assert_eq!((answered, connack.connack().1), (2, 0));
    // Within the limit: AUTH 0x19, two answers, AUTH 0x00.
    raw.send(&auth_packet(0x19, b"")).await;
    let first = raw.recv().await;
    let (answered, done) = answer_challenges(&mut raw, first).await;
    assert_eq!(answered, 2);
    assert_eq!((done.kind(), done.body[0]), (15, 0x00), "AUTH success");
    // The plugin now asks for three answers: the third is one too many.
    plugin_config(
        &mut config,
        "challenge",
        &[("secret", "s3cret"), ("rounds", "3")],
    );
    assert!(
        broker.ctx.reload(&config).await,
        "the plugin's settings changed"
    );
    raw.send(&auth_packet(0x19, b"")).await;
    let first = raw.recv().await;
    let (answered, last) = answer_challenges(&mut raw, first).await;
    assert_eq!(answered, 3);
    assert_eq!(last.disconnect_reason(), 0x97);
    assert_eq!(broker.ctx.metrics.limits.count(Limit::AuthRounds), 1);
}
