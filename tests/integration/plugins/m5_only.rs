//! A plugin with only the MQTT 5 forms of its hooks (the `m5-only` fixture)
//! checks MQTT 3.x clients too: once a plugin implements a check, no
//! protocol version goes unchecked.

use super::*;

/// A broker with `m5-only` denying `private/x` and the filter `private/#`,
/// and stamping deliveries on `stamped`.
fn m5_only_broker(dir: &PluginDir) -> TestBroker {
    dir.add("acl", "m5-only");
    broker_with(dir, |c| {
        plugin_config(
            c,
            "acl",
            &[("deny", "private/x,private/#"), ("stamp", "stamped")],
        );
    })
}

fn calls(broker: &TestBroker) -> String {
    let raw = broker
        .ctx
        .plugins
        .kv_get("acl", "calls")
        .unwrap_or_default();
    String::from_utf8_lossy(&raw).into_owned()
}

#[tokio::test]
async fn an_m5_only_plugin_authenticates_mqtt3_clients() {
    let dir = PluginDir::new();
    let broker = m5_only_broker(&dir);
    let (_, ack) = connack(&broker, &connect_v4_login("v3-denied", true, "denied", "")).await;
    assert_eq!(
        ack.connack().1,
        5,
        "CONNACK 5 (not authorized) for MQTT 3.1.1"
    );
    let (_, ack) = connack(&broker, &connect_v4_login("v3-ok", true, "alice", "")).await;
    assert_eq!(ack.connack().1, 0);
    let (_, ack) = connack(&broker, &connect_v5_user("v5-denied", "denied", |_| {})).await;
    assert_eq!(ack.connack().1, 0x87);
    let recorded = calls(&broker);
    assert!(
        recorded.contains("auth-on-register-m5 denied\n"),
        "{recorded}"
    );
    assert!(
        recorded.contains("auth-on-register-m5 alice\n"),
        "{recorded}"
    );
}

#[tokio::test]
async fn an_m5_only_acl_checks_mqtt3_subscribes_and_publishes() {
    let dir = PluginDir::new();
    let broker = m5_only_broker(&dir);
    let mut v3 = Raw::handshake(broker.addr, &connect_v4_login("v3", true, "bob", "")).await;
    v3.send(&subscribe_v4_many(1, &[("private/#", 0), ("public/#", 1)]))
        .await;
    assert_eq!(v3.recv_kind(9).await.ack_codes(false), [0x80, 1]);
    v3.send(&publish_v4("public/a", 1, 2, b"ok", false)).await;
    assert_eq!(v3.recv_kind(4).await.packet_id(), 2, "PUBACK");
    // The same ACL for MQTT 5: 0x87 in PUBACK.
    let mut v5 = Raw::handshake(broker.addr, &connect_v5_user("v5", "carol", |_| {})).await;
    v5.send(&publish_v5("private/x", 1, 1, b"no", None)).await;
    assert_eq!(v5.recv_kind(4).await.ack_reason(), 0x87);
    // MQTT 3.1.1 cannot be told: the connection is closed
    // (`publish_refusal_v3 = "disconnect"`), and nothing was routed.
    v3.send(&publish_v4("private/x", 1, 3, b"no", false)).await;
    let frames = v3.expect_closed().await;
    assert!(
        frames.iter().all(|f| f.kind() != 4),
        "no PUBACK: {frames:?}"
    );
    let recorded = calls(&broker);
    for line in [
        "auth-on-subscribe-m5 private/#",
        "auth-on-subscribe-m5 public/#",
        "auth-on-publish-m5 public/a",
        "auth-on-publish-m5 private/x",
    ] {
        assert!(recorded.contains(line), "{line} in {recorded}");
    }
}

#[tokio::test]
async fn an_m5_only_on_deliver_rewrites_for_mqtt3_subscribers() {
    let dir = PluginDir::new();
    let broker = m5_only_broker(&dir);
    let mut v3 = Raw::handshake(broker.addr, &connect_v4_login("v3-sub", true, "dave", "")).await;
    v3.send(&subscribe_v4(1, "stamped", 0)).await;
    assert_eq!(v3.recv_kind(9).await.ack_codes(false), [0]);
    let mut v5 = Raw::handshake(broker.addr, &connect_v5_user("v5-sub", "erin", |_| {})).await;
    v5.send(&subscribe_v5(1, vec![filter_v5("stamped", 0)], None))
        .await;
    assert_eq!(v5.recv_kind(9).await.ack_codes(true), [0]);
    let mut publisher =
        Raw::handshake(broker.addr, &connect_v4_login("pub", true, "frank", "")).await;
    publisher
        .send(&publish_v4("stamped", 0, 0, b"hello", false))
        .await;
    assert_eq!(&v3.recv_kind(3).await.publish_v4().payload[..], b"m5:hello");
    assert_eq!(&v5.recv_kind(3).await.publish_v5().payload[..], b"m5:hello");
}
