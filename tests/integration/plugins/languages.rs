//! The example plugins written in other languages than Rust, in a real
//! broker with real clients: the Python password list
//! (`python-allowlist`, componentize-py) and the JavaScript topic rewriter
//! (`js-topic-rewrite`, componentize-js). Both components are large
//! (12–18 MB, an interpreter each): the broker compiles each once into the
//! tests' shared cache (about 5 s of Cranelift), and every later broker
//! loads the compiled form.

use std::sync::Once;

use super::*;
use crate::support::raw::Frame;

/// How long a test watches for something that must not arrive.
const SHORT: Duration = Duration::from_millis(300);

/// A plugin directory holding the built `plugin` as `file.wasm`, whose
/// compiled form is in the shared cache. The first test to ask compiles
/// it, with a broker of its own configured by `config`, while the tests
/// that ask meanwhile wait: brokers started at the same time would each
/// compile the component (5 s of CPU each) before any of them cached it.
fn compiled(warm: &Once, file: &str, plugin: &str, config: &[(&str, &str)]) -> PluginDir {
    warm.call_once(|| {
        let dir = PluginDir::new();
        dir.add(file, plugin);
        drop(broker_with(&dir, |c| plugin_config(c, file, config)));
    });
    let dir = PluginDir::new();
    dir.add(file, plugin);
    dir
}

// python-allowlist. alice's password is "secret" (salt "pepper"), bob's is
// "hunter2" (salt "s2"): sha256(salt + password).

const USERS: &str = "alice:pepper:744a9101f7182a6ae0d978121ff74e33cac8d2832579c0637c1c37e9bbb6c065, \
                     bob:s2:f6d3aad70dc81be193d9e4e4b48abe8719f8dfea1ab7186589495656e050f650";

/// A broker with the Python plugin loaded as `allowlist`, configured with
/// `pairs`, followed in the chain by the `policy` fixture (as `policy`,
/// accepting everyone it is asked about) when `then_policy`.
fn allowlist_broker(pairs: &[(&str, &str)], then_policy: bool) -> (TestBroker, PluginDir) {
    let dir = allowlist_dir();
    if then_policy {
        dir.add("policy", "policy");
    }
    let broker = broker_with(&dir, |c| plugin_config(c, "allowlist", pairs));
    (broker, dir)
}

/// A plugin directory with the Python plugin as `allowlist.wasm`.
fn allowlist_dir() -> PluginDir {
    static WARM: Once = Once::new();
    compiled(&WARM, "allowlist", "python-allowlist", &[("users", USERS)])
}

/// Whether the `policy` plugin was asked to authenticate `client`.
fn policy_asked(broker: &TestBroker, client: &str) -> bool {
    calls(broker, "policy", client)
        .iter()
        .any(|hook| hook.starts_with("auth-on-register"))
}

/// A 5.0 CONNECT with a username and password (none if `pass` is empty).
fn connect_v5_login(client: &str, user: &str, pass: &str) -> Vec<u8> {
    let mut c = mqttbytes::v5::Connect::new(client);
    c.keep_alive = 60;
    c.set_login(user, pass);
    let mut b = BytesMut::new();
    c.write(&mut b).expect("encode");
    b.to_vec()
}

/// The CONNACK code for an MQTT 3.1.1 client (no credentials if `user` is
/// empty).
async fn code_v4(broker: &TestBroker, client: &str, user: &str, pass: &str) -> u8 {
    let connect = if user.is_empty() {
        connect_v4(client, true, 60)
    } else {
        connect_v4_login(client, true, user, pass)
    };
    let (_, ack) = connack(broker, &connect).await;
    ack.connack().1
}

/// The CONNACK reason code for an MQTT 5 client (no credentials if `user`
/// is empty).
async fn code_v5(broker: &TestBroker, client: &str, user: &str, pass: &str) -> u8 {
    let connect = if user.is_empty() {
        connect_v5(client, true, 60, |_| {})
    } else {
        connect_v5_login(client, user, pass)
    };
    let (_, ack) = connack(broker, &connect).await;
    ack.connack().1
}

#[tokio::test]
async fn python_allowlist_checks_passwords_for_v3_and_v5() {
    let (broker, _dir) = allowlist_broker(&[("users", USERS)], false);
    // Right passwords: accepted, and the session works.
    assert_eq!(code_v4(&broker, "a3", "alice", "secret").await, 0);
    assert_eq!(code_v5(&broker, "a5", "alice", "secret").await, 0);
    assert_eq!(code_v4(&broker, "b3", "bob", "hunter2").await, 0);
    assert_eq!(code_v5(&broker, "b5", "bob", "hunter2").await, 0);
    let mut alice = Raw::handshake(
        broker.addr,
        &connect_v4_login("alice-sub", true, "alice", "secret"),
    )
    .await;
    alice.send(&subscribe_v4(1, "t", 0)).await;
    assert_eq!(alice.recv_kind(9).await.ack_codes(false), [0]);

    // Wrong passwords: CONNACK 4 / 0x86 "bad user name or password", and
    // the connection is closed.
    for (user, pass) in [
        ("alice", "hunter2"),
        ("alice", "Secret"),
        ("alice", "secretx"),
        ("bob", "secret"),
        ("alice", ""),
    ] {
        assert_eq!(code_v4(&broker, "w3", user, pass).await, 4, "{user}/{pass}");
        assert_eq!(
            code_v5(&broker, "w5", user, pass).await,
            0x86,
            "{user}/{pass} (v5)"
        );
    }
    let (mut refused, ack) = connack(&broker, &connect_v5_login("w5", "bob", "nope")).await;
    assert_eq!(ack.connack().1, 0x86);
    refused.expect_closed().await;

    // The plugin answered every CONNECT itself; none of its calls failed.
    let plugin = broker.ctx.plugins.get("allowlist").expect("loaded");
    assert_eq!(
        plugin
            .stats
            .failures
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

#[tokio::test]
async fn python_allowlist_refuses_unknown_users_by_default() {
    // The policy plugin after it would accept anyone: it is never asked.
    for pairs in [
        &[("users", USERS)][..],
        &[("users", USERS), ("unknown", "deny")][..],
    ] {
        let (broker, _dir) = allowlist_broker(pairs, true);
        assert_eq!(code_v4(&broker, "u3", "mallory", "secret").await, 4);
        assert_eq!(code_v5(&broker, "u5", "mallory", "secret").await, 0x86);
        // No username at all is an unknown user too.
        assert_eq!(code_v4(&broker, "anon3", "", "").await, 4);
        assert_eq!(code_v5(&broker, "anon5", "", "").await, 0x86);
        assert_eq!(code_v4(&broker, "a3", "alice", "secret").await, 0);
        for client in ["u3", "u5", "anon3", "anon5", "a3"] {
            assert!(!policy_asked(&broker, client), "{client}");
        }
    }
}

#[tokio::test]
async fn python_allowlist_passes_unknown_users_on_with_next() {
    let (broker, _dir) = allowlist_broker(&[("users", USERS), ("unknown", "next")], true);
    // Unknown users reach the next plugin, which accepts them. (It records
    // the call before the CONNACK is sent; notifications follow later.)
    assert_eq!(code_v4(&broker, "u3", "mallory", "x").await, 0);
    assert_eq!(calls(&broker, "policy", "u3")[0], "auth-on-register");
    assert_eq!(code_v5(&broker, "u5", "mallory", "x").await, 0);
    assert_eq!(calls(&broker, "policy", "u5")[0], "auth-on-register-m5");
    assert_eq!(code_v5(&broker, "anon5", "", "").await, 0);
    assert_eq!(calls(&broker, "policy", "anon5")[0], "auth-on-register-m5");
    // Known users are still decided here: a wrong password is refused
    // without asking the next plugin.
    assert_eq!(code_v4(&broker, "w3", "alice", "wrong").await, 4);
    assert_eq!(code_v5(&broker, "w5", "bob", "wrong").await, 0x86);
    assert_eq!(code_v5(&broker, "a5", "alice", "secret").await, 0);
    for client in ["w3", "w5", "a5"] {
        assert!(!policy_asked(&broker, client), "{client}");
    }
    drop(broker);

    // Alone in the chain, `next` refuses: the chain is exhausted (CONNACK
    // 5 / 0x87).
    let (broker, _dir) = allowlist_broker(&[("users", USERS), ("unknown", "next")], false);
    assert_eq!(code_v4(&broker, "u3", "mallory", "x").await, 5);
    assert_eq!(code_v5(&broker, "u5", "mallory", "x").await, 0x87);
}

#[tokio::test]
async fn python_allowlist_invalid_configuration_refuses_the_plugin() {
    for (pairs, why) in [
        (&[("users", "alice:pepper")][..], "not name:salt:hexsha256"),
        (
            &[("users", "alice:pepper:abcd")][..],
            "not 64 hexadecimal digits",
        ),
        (&[("users", USERS), ("unknown", "allow")][..], "neither"),
        (&[("user", USERS)][..], "unknown configuration key 'user'"),
    ] {
        let dir = allowlist_dir();
        let e = TestBroker::try_with(|c| {
            dir.configure(c);
            plugin_config(c, "allowlist", pairs);
        })
        .err()
        .expect("refused");
        assert!(
            e.contains("allowlist.wasm") && e.contains(why),
            "{pairs:?}: {e}"
        );
    }
}

// js-topic-rewrite.

const REWRITE: (&str, &str) = ("rewrite", "legacy/=>v2/, old/sensors/ => sensors/");

/// A plugin directory with the JavaScript plugin as `rewrite.wasm`.
fn rewrite_dir() -> PluginDir {
    static WARM: Once = Once::new();
    compiled(&WARM, "rewrite", "js-topic-rewrite", &[REWRITE])
}

/// A broker with the JavaScript plugin loaded as `rewrite`, an MQTT 3.1.1
/// subscriber `sub3` and an MQTT 5 subscriber `sub5`, both to `#` at QoS 1.
async fn rewrite_broker() -> (TestBroker, PluginDir, Raw, Raw) {
    let dir = rewrite_dir();
    let broker = broker_with(&dir, |c| plugin_config(c, "rewrite", &[REWRITE]));
    let mut sub3 = Raw::handshake(broker.addr, &connect_v4("sub3", true, 60)).await;
    sub3.send(&subscribe_v4(1, "#", 1)).await;
    assert_eq!(sub3.recv_kind(9).await.ack_codes(false), [1]);
    let mut sub5 = Raw::handshake(broker.addr, &connect_v5("sub5", true, 60, |_| {})).await;
    sub5.send(&subscribe_v5(1, vec![filter_v5("#", 1)], None))
        .await;
    assert_eq!(sub5.recv_kind(9).await.ack_codes(true), [1]);
    (broker, dir, sub3, sub5)
}

/// The next message at a subscriber: (topic, payload, QoS), acknowledged
/// if it is QoS 1.
async fn delivered(sub: &mut Raw, v5: bool) -> (String, Vec<u8>, u8) {
    let frame: Frame = sub.recv_kind(3).await;
    let (topic, payload, qos, pkid) = if v5 {
        let p = frame.publish_v5();
        (p.topic, p.payload.to_vec(), p.qos as u8, p.pkid)
    } else {
        let p = frame.publish_v4();
        (p.topic, p.payload.to_vec(), p.qos as u8, p.pkid)
    };
    if qos == 1 {
        sub.send(&puback(pkid)).await;
    }
    (topic, payload, qos)
}

#[tokio::test]
async fn js_rewrite_renames_topics_for_v3_and_v5_subscribers() {
    let (broker, _dir, mut sub3, mut sub5) = rewrite_broker().await;
    let mut publisher = Raw::handshake(broker.addr, &connect_v4("pub", true, 60)).await;
    // (published topic, QoS, topic the subscribers get)
    let cases = [
        ("legacy/room1/temp", 0, "v2/room1/temp"),
        ("legacy/", 1, "v2/"),
        ("old/sensors/a/b", 1, "sensors/a/b"),
        ("other/x", 0, "other/x"),
        ("legacy", 0, "legacy"),
        ("v2/room1/temp", 1, "v2/room1/temp"),
        ("xlegacy/a", 0, "xlegacy/a"),
    ];
    for (n, (topic, q, _)) in cases.iter().enumerate() {
        let pkid = if *q == 0 { 0 } else { n as u16 + 1 };
        publisher
            .send(&publish_v4(topic, *q, pkid, topic.as_bytes(), false))
            .await;
        if *q == 1 {
            assert_eq!(publisher.recv_kind(4).await.packet_id(), pkid);
        }
    }
    for (sub, v5) in [(&mut sub3, false), (&mut sub5, true)] {
        for (topic, q, expected) in cases {
            // Only the topic changes: the payload (the original topic) and
            // QoS are the publisher's.
            assert_eq!(
                delivered(sub, v5).await,
                (expected.to_owned(), topic.as_bytes().to_vec(), q),
                "{topic} (v5: {v5})"
            );
        }
        sub.expect_silence(SHORT).await;
    }
    let plugin = broker.ctx.plugins.get("rewrite").expect("loaded");
    assert_eq!(
        plugin
            .stats
            .failures
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

#[tokio::test]
async fn js_rewrite_keeps_mqtt5_properties() {
    let (broker, _dir, mut sub3, mut sub5) = rewrite_broker().await;
    let mut publisher = Raw::handshake(broker.addr, &connect_v5("pub5", true, 60, |_| {})).await;
    let mut props = publish_props();
    props.content_type = Some("text/plain".into());
    props.user_properties = vec![("k".into(), "v".into())];
    props.correlation_data = Some(bytes::Bytes::from_static(b"corr"));
    publisher
        .send(&publish_v5("legacy/p", 1, 1, b"hello", Some(props)))
        .await;
    assert_eq!(publisher.recv_kind(4).await.packet_id(), 1);

    let p = sub5.recv_kind(3).await.publish_v5();
    assert_eq!((p.topic.as_str(), &p.payload[..]), ("v2/p", &b"hello"[..]));
    let got = p.properties.expect("properties");
    assert_eq!(got.content_type.as_deref(), Some("text/plain"));
    assert_eq!(got.user_properties, [("k".to_owned(), "v".to_owned())]);
    assert_eq!(got.correlation_data.as_deref(), Some(&b"corr"[..]));
    sub5.send(&puback(p.pkid)).await;
    assert_eq!(
        delivered(&mut sub3, false).await,
        ("v2/p".to_owned(), b"hello".to_vec(), 1)
    );
}

#[tokio::test]
async fn js_rewrite_invalid_configuration_refuses_the_plugin() {
    for (pairs, why) in [
        (&[][..], "rewrite is missing"),
        (&[("rewrite", "legacy/")][..], "is not from=>to"),
        (&[("rewrite", "=>v2/")][..], "empty prefix"),
        (&[("rewrite", "a/=>b/#")][..], "cannot contain + or #"),
        (
            &[REWRITE, ("prefix", "x")][..],
            "unknown configuration key 'prefix'",
        ),
    ] {
        let dir = rewrite_dir();
        let e = TestBroker::try_with(|c| {
            dir.configure(c);
            plugin_config(c, "rewrite", pairs);
        })
        .err()
        .expect("refused");
        assert!(
            e.contains("rewrite.wasm") && e.contains(why),
            "{pairs:?}: {e}"
        );
    }
}
