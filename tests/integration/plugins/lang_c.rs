//! The C example plugin (`example-plugins/c-client-prefix`, built by
//! `cargo xtask build-plugins` with clang, wit-bindgen's C bindings and the
//! WASI preview 1 reactor adapter) in a real broker: a client-id prefix
//! policy.

use std::sync::atomic::Ordering::Relaxed;

use super::*;

/// The built component's name in `target/plugins/`.
const PLUGIN: &str = "c-client-prefix";

/// A broker with the C plugin loaded as `prefix`, configured with `pairs`.
fn prefix_broker(pairs: &[(&str, &str)]) -> (TestBroker, PluginDir) {
    let dir = PluginDir::new();
    dir.add("prefix", PLUGIN);
    let broker = broker_with(&dir, |c| plugin_config(c, "prefix", pairs));
    (broker, dir)
}

/// The authentication hooks a `policy` plugin recorded for `client` (its
/// notifications come after CONNACK, so they are left out). Complete once
/// the CONNACK is in: authentication runs before it.
fn auth_calls(broker: &TestBroker, plugin: &str, client: &str) -> Vec<String> {
    calls(broker, plugin, client)
        .into_iter()
        .filter(|c| c.starts_with("auth"))
        .collect()
}

/// The CONNACK code for an MQTT 3.1.1 client.
async fn v3_code(broker: &TestBroker, client: &str) -> u8 {
    connack(broker, &connect_v4(client, true, 60))
        .await
        .1
        .connack()
        .1
}

/// The CONNACK for an MQTT 5 client.
async fn v5_ack(broker: &TestBroker, client: &str) -> mqttbytes::v5::ConnAck {
    connack(broker, &connect_v5(client, true, 60, |_| {}))
        .await
        .1
        .connack_v5()
}

/// The CONNACK for an MQTT 5 client with a username and user properties.
async fn v5_ack_user(broker: &TestBroker, client: &str, user: &str) -> mqttbytes::v5::ConnAck {
    let connect = connect_v5_user(client, user, |p| {
        p.user_properties = vec![("k".into(), user.into())];
    });
    connack(broker, &connect).await.1.connack_v5()
}

#[tokio::test]
async fn c_plugin_accepts_allowed_prefixes_and_refuses_the_rest() {
    let (broker, _dir) = prefix_broker(&[("prefixes", "sensor-, gw-")]);

    // MQTT 3.1.1: accepted, the session exists; refused with CONNACK 5.
    let (_sensor, ack) = connack(&broker, &connect_v4("sensor-1", true, 60)).await;
    assert_eq!(ack.connack().1, 0, "sensor-1");
    eventually("sensor-1 registered", || {
        broker.ctx.registry.get(&id("", "sensor-1")).is_some()
    })
    .await;
    assert_eq!(v3_code(&broker, "gw-7").await, 0, "second prefix");
    assert_eq!(v3_code(&broker, "intruder").await, 5, "not authorized");
    assert_eq!(
        v3_code(&broker, "sensor").await,
        5,
        "shorter than the prefix"
    );
    assert_eq!(v3_code(&broker, "Sensor-1").await, 5, "case-sensitive");
    assert!(broker.ctx.registry.get(&id("", "intruder")).is_none());

    // MQTT 5: accepted; refused with 0x85 "client identifier not valid" and
    // the plugin's reason string.
    let (_gw, ack) = connack(&broker, &connect_v5("gw-5", true, 60, |_| {})).await;
    assert_eq!(ack.connack_v5().code as u8, 0, "gw-5 (v5)");
    eventually("gw-5 registered", || {
        broker.ctx.registry.get(&id("", "gw-5")).is_some()
    })
    .await;
    let ack = v5_ack(&broker, "intruder5").await;
    assert_eq!(ack.code as u8, 0x85, "client identifier not valid");
    let reason = ack
        .properties
        .and_then(|p| p.reason_string)
        .expect("reason string");
    assert_eq!(reason, "client id `intruder5` has no allowed prefix");
}

#[tokio::test]
async fn c_plugin_frees_what_it_owns() {
    // One instance with 1 MiB of linear memory, and 16 KiB client ids:
    // leaking the arguments (client id, username, password, properties) or
    // the answers would exhaust it within a few dozen connections, and the
    // failed calls would refuse clients; a double free would corrupt the
    // allocator. Accepted clients get a mountpoint: the answer carries
    // strings too.
    let dir = PluginDir::new();
    dir.add("prefix", PLUGIN);
    let broker = broker_with(&dir, |c| {
        plugin_config(c, "prefix", &[("prefixes", "ok-"), ("mountpoint", "m")]);
        let own = c.plugin.entry("prefix".into()).or_default();
        own.instances = Some(1);
        own.memory_mb = Some(1);
    });
    let filler = "x".repeat(16 * 1024);
    for i in 0..100 {
        let good = format!("ok-{i}-{filler}");
        let bad = format!("no-{i}-{filler}");
        let ack = connack(&broker, &connect_v4_login(&good, true, &filler, &filler)).await;
        assert_eq!(ack.1.connack().1, 0, "v3 accepted, round {i}");
        let ack = connack(&broker, &connect_v4_login(&bad, true, &filler, &filler)).await;
        assert_eq!(ack.1.connack().1, 5, "v3 refused, round {i}");
        let ack = v5_ack_user(&broker, &good, &filler).await;
        assert_eq!(ack.code as u8, 0, "v5 accepted, round {i}");
        let ack = v5_ack_user(&broker, &bad, &filler).await;
        assert_eq!(ack.code as u8, 0x85, "v5 refused, round {i}");
    }
    let stats = &broker.ctx.plugins.get("prefix").expect("loaded").stats;
    assert_eq!(stats.failures.load(Relaxed), 0, "no failed calls");
    assert_eq!(stats.instances_created.load(Relaxed), 1, "never replaced");
}

#[tokio::test]
async fn c_plugin_moves_accepted_clients_into_its_mountpoint() {
    let (broker, _dir) = prefix_broker(&[("prefixes", "tenant-a-"), ("mountpoint", "a")]);
    let (_v3, ack) = connack(&broker, &connect_v4("tenant-a-1", true, 60)).await;
    assert_eq!(ack.connack().1, 0);
    let (_v5, ack) = connack(&broker, &connect_v5("tenant-a-2", true, 60, |_| {})).await;
    assert_eq!(ack.connack().1, 0);
    for client in ["tenant-a-1", "tenant-a-2"] {
        eventually("session in the mountpoint", || {
            broker.ctx.registry.get(&id("a", client)).is_some()
        })
        .await;
        assert!(
            broker.ctx.registry.get(&id("", client)).is_none(),
            "{client}"
        );
    }
}

#[tokio::test]
async fn c_plugin_with_unmatched_next_leaves_other_clients_to_the_next_plugin() {
    // File-name order: `a-prefix` (C) first, then `b-policy`.
    let dir = PluginDir::new();
    dir.add("a-prefix", PLUGIN).add("b-policy", "policy");
    let chain = |unmatched: &'static str, verdict: &'static str| {
        broker_with(&dir, move |c| {
            plugin_config(
                c,
                "a-prefix",
                &[("prefixes", "dev-"), ("unmatched", unmatched)],
            );
            plugin_config(c, "b-policy", &[("verdict", verdict)]);
        })
    };

    // The next plugin accepts what the C plugin passes on, and is never
    // asked about clients the C plugin accepted itself.
    let broker = chain("next", "ok");
    assert_eq!(v3_code(&broker, "other").await, 0);
    assert_eq!(
        auth_calls(&broker, "b-policy", "other"),
        ["auth-on-register"]
    );
    assert_eq!(v5_ack(&broker, "other5").await.code as u8, 0);
    assert_eq!(
        auth_calls(&broker, "b-policy", "other5"),
        ["auth-on-register-m5"]
    );
    let (_dev, ack) = connack(&broker, &connect_v4("dev-1", true, 60)).await;
    assert_eq!(ack.connack().1, 0);
    eventually("dev-1 registered", || {
        broker.ctx.registry.get(&id("", "dev-1")).is_some()
    })
    .await;
    assert!(
        auth_calls(&broker, "b-policy", "dev-1").is_empty(),
        "b-policy was not asked about dev-1"
    );
    drop(broker);

    // The next plugin's refusal is the answer: its codes (CONNACK 4, 0x86),
    // not the C plugin's (5, 0x85).
    let broker = chain("next", "deny");
    assert_eq!(v3_code(&broker, "other").await, 4);
    assert_eq!(v5_ack(&broker, "other5").await.code as u8, 0x86);
    assert_eq!(v3_code(&broker, "dev-2").await, 0, "still accepted by C");
    drop(broker);

    // unmatched = "deny": the C plugin refuses and the chain stops there.
    let broker = chain("deny", "ok");
    assert_eq!(v3_code(&broker, "other").await, 5);
    assert_eq!(v5_ack(&broker, "other5").await.code as u8, 0x85);
    assert_eq!(auth_calls(&broker, "b-policy", "other"), [""; 0]);
    assert_eq!(auth_calls(&broker, "b-policy", "other5"), [""; 0]);
}

#[tokio::test]
async fn c_plugin_invalid_configuration_refuses_the_plugin() {
    for (pairs, why) in [
        (&[][..], "`prefixes` is missing"),
        (&[("prefixes", "a-,,b-")][..], "empty entry"),
        (
            &[("prefixes", "a-"), ("unmatched", "maybe")][..],
            "`unmatched` must be",
        ),
        (
            &[("prefixes", "a-"), ("prefix", "b-")][..],
            "unknown setting `prefix`",
        ),
    ] {
        let dir = PluginDir::new();
        dir.add("prefix", PLUGIN);
        let e = TestBroker::try_with(|c| {
            dir.configure(c);
            plugin_config(c, "prefix", pairs);
        })
        .err()
        .expect("refused");
        assert!(
            e.contains("prefix.wasm") && e.contains(why),
            "{pairs:?}: {e}"
        );
    }
}
