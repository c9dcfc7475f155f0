//! Plugins that publish (the host function `publish`): the `audit-log`
//! example's connection events, the other plugins' `auth-on-publish`
//! applied to a plugin's messages, the publishing plugin's own hooks left
//! out (no loops), and its rate limit.

use serde_json::Value;
use sluice_broker::plugins::PluginStatus;

use super::*;

/// How long a test watches for something that must not arrive.
const SHORT: Duration = Duration::from_millis(300);

/// The status of loaded plugin `name`.
fn status(broker: &TestBroker, name: &str) -> PluginStatus {
    let all = broker.ctx.plugins.status();
    all.plugins
        .iter()
        .find(|p| p.name == name)
        .cloned()
        .unwrap_or_else(|| panic!("{name} is not loaded: {all:#?}"))
}

/// The next message on the watcher, as (topic, JSON body), skipping the
/// events of `skip` (the watcher's own connection, whose event may come
/// after its SUBSCRIBE).
async fn next_event(watch: &mut V4, skip: &str) -> (String, Value) {
    loop {
        let p = watch.next_publish().await;
        let body: Value = serde_json::from_slice(&p.payload).expect("a JSON event");
        if body["client_id"] != skip {
            return (p.topic, body);
        }
    }
}

#[tokio::test]
async fn audit_log_publishes_connections_and_disconnections() {
    let dir = PluginDir::new();
    dir.add("audit-log", "audit-log");
    let broker = broker_with(&dir, |c| {
        plugin_config(c, "audit-log", &[("prefix", "ops/audit")])
    });
    let mut watch = V4::connect(broker.addr, "watcher").await;
    watch.subscribe("ops/audit/#", 1).await;

    let dev = V4::connect_with(broker.addr, "dev-1", |o| {
        o.set_credentials("ann", "pw");
    })
    .await;
    let (topic, e) = next_event(&mut watch, "watcher").await;
    assert_eq!(topic, "ops/audit/connected");
    assert_eq!(
        (e["client_id"].as_str(), e["username"].as_str()),
        (Some("dev-1"), Some("ann"))
    );
    assert!(
        e["peer"]
            .as_str()
            .is_some_and(|p| p.starts_with("127.0.0.1:")),
        "{e}"
    );
    dev.disconnect().await;
    let (topic, e) = next_event(&mut watch, "watcher").await;
    assert_eq!(topic, "ops/audit/disconnected");
    assert_eq!(
        (e["client_id"].as_str(), e["session_kept"].as_bool()),
        (Some("dev-1"), Some(false))
    );

    // A persistent session stays when its client goes.
    let keeper = V4::connect_with(broker.addr, "keeper", |o| {
        o.set_clean_session(false);
    })
    .await;
    assert_eq!(
        next_event(&mut watch, "watcher").await.0,
        "ops/audit/connected"
    );
    keeper.disconnect().await;
    let (topic, e) = next_event(&mut watch, "watcher").await;
    assert_eq!(topic, "ops/audit/disconnected");
    assert_eq!(
        (e["client_id"].as_str(), e["session_kept"].as_bool()),
        (Some("keeper"), Some(true))
    );
    let s = status(&broker, "audit-log");
    assert!(s.published >= 4, "{s:?}");
    assert_eq!((s.publish_refused, s.publications_denied), (0, 0));
}

#[tokio::test]
async fn other_plugins_authorize_a_plugins_publications() {
    let dir = PluginDir::new();
    dir.add("acl", "topic-acl").add("audit-log", "audit-log");
    let broker = broker_with(&dir, |c| {
        plugin_config(
            c,
            "acl",
            &[("publish", "audit/connected"), ("subscribe", "#")],
        );
    });
    let mut watch = V4::connect(broker.addr, "watcher").await;
    watch.subscribe("audit/#", 1).await;
    let dev = V4::connect(broker.addr, "dev-2").await;
    let (topic, e) = next_event(&mut watch, "watcher").await;
    assert_eq!(
        (topic.as_str(), e["client_id"].as_str()),
        ("audit/connected", Some("dev-2"))
    );
    // topic-acl does not allow audit/disconnected: refused, counted, never
    // delivered.
    dev.disconnect().await;
    eventually("audit-log's disconnection event refused", || {
        status(&broker, "audit-log").publications_denied >= 1
    })
    .await;
    watch.no_publish_within(SHORT).await;
}

#[tokio::test]
async fn a_plugins_own_hooks_never_see_its_publications() {
    let dir = PluginDir::new();
    dir.add("echo", "echo");
    let broker = broker_with(&dir, |_| {});
    let mut watch = V4::connect(broker.addr, "watcher").await;
    watch.subscribe("#", 1).await;
    let publisher = V4::connect(broker.addr, "pub").await;

    publisher.publish("in/x", 1, false, b"hello").await;
    let first = watch.next_publish().await;
    assert_eq!(first.topic, "in/x");
    // The echo passes although the plugin's own auth-on-publish refuses
    // echo/ topics, and is not echoed again (its on-publish is not told).
    let echo = watch.next_publish().await;
    assert_eq!(
        (echo.topic.as_str(), &echo.payload[..]),
        ("echo/in/x", &b"hello"[..])
    );
    watch.no_publish_within(SHORT).await;
    // A client is refused echo/ (MQTT 3.1.1: disconnected), so the refusal
    // above was the plugin's to make.
    let mut raw = Raw::handshake(broker.addr, &connect_v4("intruder", true, 60)).await;
    raw.send(&publish_v4("echo/fake", 1, 1, b"x", false)).await;
    raw.expect_closed().await;
    watch.no_publish_within(SHORT).await;
}

#[tokio::test]
async fn a_plugins_publications_are_rate_limited_and_can_be_turned_off() {
    let dir = PluginDir::new();
    dir.add("echo", "echo");
    let broker = broker_with(&dir, |c| {
        c.plugin.entry("echo".into()).or_default().publish_per_sec = Some(1);
    });
    let mut watch = V4::connect(broker.addr, "watcher").await;
    watch.subscribe("echo/#", 0).await;
    let publisher = V4::connect(broker.addr, "pub").await;
    for i in 0..6 {
        publisher.publish(&format!("t/{i}"), 0, false, b"x").await;
    }
    eventually("every echo attempt counted", || {
        let s = status(&broker, "echo");
        s.published + s.publish_refused == 6
    })
    .await;
    let s = status(&broker, "echo");
    // One a second, in bursts of one: most of six back-to-back echoes are
    // refused.
    assert!(s.publish_refused >= 3, "{s:?}");
    for _ in 0..s.published {
        assert!(watch.next_publish().await.topic.starts_with("echo/t/"));
    }
    watch.no_publish_within(SHORT).await;
    drop(broker);

    // publish_per_sec = 0: none at all.
    let broker = broker_with(&dir, |c| {
        c.plugin.entry("echo".into()).or_default().publish_per_sec = Some(0);
    });
    let mut watch = V4::connect(broker.addr, "watcher").await;
    watch.subscribe("#", 0).await;
    let publisher = V4::connect(broker.addr, "pub").await;
    publisher.publish("t/x", 0, false, b"x").await;
    assert_eq!(watch.next_publish().await.topic, "t/x");
    eventually("the echo refused", || {
        status(&broker, "echo").publish_refused == 1
    })
    .await;
    watch.no_publish_within(SHORT).await;
    assert_eq!(status(&broker, "echo").published, 0);
}
