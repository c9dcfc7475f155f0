//! The topic ACL by delivery (`topic-acl` with the rules of the shipped
//! `config/sluice.toml`): a filter that only overlaps a denied space (`#`
//! with `private/#` denied) is granted, and each message it brings is
//! checked in `auth-on-deliver`; a filter entirely inside the denied space
//! is still refused at SUBSCRIBE. Real plugin, real clients.
//!
//! The barrier in each test: messages from one publisher connection reach
//! a subscriber in order, so a marker published after the private message
//! on the same connection arrives after it would have. Receiving the
//! marker as the next message proves the private one was withheld.

use sluice_broker::config::PluginConfig;

use super::*;
use crate::support::raw::Frame;

/// How long a test watches for something that must not arrive.
const SHORT: Duration = Duration::from_millis(300);

/// The `[plugin.acl]` section of the shipped configuration.
fn shipped_acl() -> PluginConfig {
    let shipped = Config::parse(include_str!("../../../config/sluice.toml"))
        .expect("the shipped configuration parses");
    let acl = shipped.plugin.get("acl").expect("[plugin.acl]").clone();
    for key in ["deny_subscribe", "deny_publish"] {
        assert_eq!(
            acl.config.get(key).map(|v| format!("{v:?}")),
            Some(format!(
                "{:?}",
                sluice_broker::config::ConfigValue::Text("private/#".into())
            )),
            "the shipped ACL has {key} = \"private/#\""
        );
    }
    acl
}

/// A broker with `topic-acl` as `acl`, configured with `section`.
fn broker(section: PluginConfig) -> (TestBroker, PluginDir) {
    let dir = PluginDir::new();
    dir.add("acl", "topic-acl");
    let broker = broker_with(&dir, |c| {
        c.plugin.insert("acl".into(), section);
    });
    (broker, dir)
}

/// The SUBACK codes for one filter.
async fn suback(raw: &mut Raw, subscribe: &[u8], v5: bool) -> Vec<u8> {
    raw.send(subscribe).await;
    raw.recv_kind(9).await.ack_codes(v5)
}

/// Topic of an MQTT 3.1.1 or 5 PUBLISH.
fn topic(frame: &Frame, v5: bool) -> String {
    if v5 {
        frame.publish_v5().topic
    } else {
        frame.publish_v4().topic
    }
}

/// An MQTT 3.1.1 client and an MQTT 5 client (QoS 1), both subscribed to
/// `#` and granted.
async fn hash_subscribers(broker: &TestBroker) -> (Raw, Raw) {
    let mut v3 = Raw::handshake(broker.addr, &connect_v4("all-v3", true, 60)).await;
    assert_eq!(suback(&mut v3, &subscribe_v4(1, "#", 0), false).await, [0]);
    let mut v5 = Raw::handshake(broker.addr, &connect_v5("all-v5", true, 60, |_| {})).await;
    let sub = subscribe_v5(1, vec![filter_v5("#", 1)], None);
    assert_eq!(suback(&mut v5, &sub, true).await, [1]);
    (v3, v5)
}

/// Publishes at QoS 1 from an MQTT 5 client; returns the PUBACK code.
async fn publish(raw: &mut Raw, pkid: u16, topic: &str, retain: bool) -> u8 {
    let mut p = publish_v5(topic, 1, pkid, topic.as_bytes(), None);
    if retain {
        p[0] |= 0x01;
    }
    raw.send(&p).await;
    let ack = raw.recv_kind(4).await;
    assert_eq!(ack.packet_id(), pkid, "PUBACK for {topic}");
    ack.ack_reason()
}

/// The topics `raw` receives up to and including `marker`.
async fn topics_until(raw: &mut Raw, marker: &str, v5: bool) -> Vec<String> {
    let mut seen = Vec::new();
    while seen.last().map(String::as_str) != Some(marker) {
        let frame = raw.recv_kind(3).await;
        seen.push(topic(&frame, v5));
        assert!(seen.len() < 100, "no {marker} in {seen:?}");
    }
    seen
}

/// What `cargo xtask run` ships: `#` is granted (it was refused when any
/// overlap with `private/#` refused a filter), filters entirely inside
/// `private/` are still refused, and `#` receives everything else.
#[tokio::test]
async fn shipped_acl_grants_hash_and_refuses_filters_inside_private() {
    let (broker, _dir) = broker(shipped_acl());
    let (mut v3, mut v5) = hash_subscribers(&broker).await;
    for (pkid, filter) in [(2, "private/#"), (3, "private/+/x"), (4, "private")] {
        assert_eq!(
            suback(&mut v3, &subscribe_v4(pkid, filter, 0), false).await,
            [0x80],
            "{filter}"
        );
        let sub = subscribe_v5(pkid, vec![filter_v5(filter, 0)], None);
        assert_eq!(suback(&mut v5, &sub, true).await, [0x87], "{filter}");
    }
    // Shared subscriptions are checked on their filter.
    let shared = subscribe_v5(5, vec![filter_v5("$share/g/private/#", 0)], None);
    assert_eq!(suback(&mut v5, &shared, true).await, [0x87]);

    let mut publisher =
        Raw::handshake(broker.addr, &connect_v5("publisher", true, 60, |_| {})).await;
    assert_eq!(publish(&mut publisher, 1, "public/a", false).await, 0);
    // The shipped rules also refuse publishing under private/.
    assert_eq!(publish(&mut publisher, 2, "private/x", false).await, 0x87);
    assert_eq!(publish(&mut publisher, 3, "public/marker", false).await, 0);
    for (raw, v5) in [(&mut v3, false), (&mut v5, true)] {
        assert_eq!(
            topics_until(raw, "public/marker", v5).await,
            ["public/a", "public/marker"]
        );
        raw.expect_silence(SHORT).await;
    }
}

/// Messages that do reach `private/` (here the shipped read rules with
/// publishing there allowed, as for devices that report into it) are
/// withheld from `#` and from every other filter that only overlaps the
/// denied space, live and retained, at QoS 0 and 1, for MQTT 3.1.1 and 5
/// subscribers; other subscribers still get them.
#[tokio::test]
async fn private_messages_are_withheld_from_overlapping_filters() {
    let mut section = shipped_acl();
    section.config.remove("deny_publish");
    let (broker, _dir) = broker(section);
    let plugin = broker.ctx.plugins.get("acl").expect("loaded").clone();
    let (mut v3, mut v5) = hash_subscribers(&broker).await;
    let mut plus = Raw::handshake(broker.addr, &connect_v4("plus", true, 60)).await;
    assert_eq!(
        suback(&mut plus, &subscribe_v4(1, "+/x", 1), false).await,
        [1]
    );

    let mut publisher =
        Raw::handshake(broker.addr, &connect_v5("publisher", true, 60, |_| {})).await;
    // Success, not 0x10: the message matched subscriptions, and was
    // withheld from each at delivery.
    assert_eq!(publish(&mut publisher, 1, "private/x", false).await, 0);
    assert_eq!(publish(&mut publisher, 2, "public/x", false).await, 0);
    assert_eq!(
        publish(&mut publisher, 3, "private/deep/er/x", false).await,
        0
    );
    assert_eq!(publish(&mut publisher, 4, "public/marker", false).await, 0);
    let expected = ["public/x", "public/marker"];
    assert_eq!(
        topics_until(&mut v3, "public/marker", false).await,
        expected
    );
    assert_eq!(topics_until(&mut v5, "public/marker", true).await, expected);
    assert_eq!(
        topics_until(&mut plus, "public/x", false).await,
        ["public/x"]
    );
    // Withheld: private/x from three subscribers, the deeper one from two.
    let errors = plugin
        .stats
        .errors
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(errors, 5, "withheld deliveries are the plugin's errors");

    // Retained messages reach a new `#` subscriber, except the private one.
    assert_eq!(publish(&mut publisher, 5, "private/kept", true).await, 0);
    assert_eq!(publish(&mut publisher, 6, "public/kept", true).await, 0);
    let mut late = Raw::handshake(broker.addr, &connect_v4("late", true, 60)).await;
    assert_eq!(
        suback(&mut late, &subscribe_v4(1, "#", 1), false).await,
        [1]
    );
    assert_eq!(publish(&mut publisher, 7, "public/marker", false).await, 0);
    let seen = topics_until(&mut late, "public/marker", false).await;
    assert_eq!(seen, ["public/kept", "public/marker"]);

    // A withheld QoS 1 message takes no room in the send window: the
    // MQTT 5 subscriber (which acknowledges nothing here) keeps receiving.
    for pkid in 10..60 {
        assert_eq!(
            publish(&mut publisher, pkid, "private/flood", false).await,
            0
        );
    }
    assert_eq!(publish(&mut publisher, 60, "public/after", false).await, 0);
    let after = ["public/kept", "public/marker", "public/after"];
    assert_eq!(topics_until(&mut v5, "public/after", true).await, after);
    assert_eq!(topics_until(&mut v3, "public/after", false).await, after);
    assert_eq!(
        topics_until(&mut late, "public/after", false).await,
        ["public/after"]
    );
    for raw in [&mut v3, &mut v5, &mut plus, &mut late] {
        raw.expect_silence(SHORT).await;
    }
}
