//! Fail-closed reloads: a required plugin (by default, one with an
//! authentication or authorisation hook) that disappears leaves its hooks
//! refusing every client until it is back, so no deploy (not even `rm`
//! then `cp`) lets clients in or publishes through; acceptances cached by
//! a plugin never outlive the plugin set that gave them.

use super::*;

/// The PUBACK reason for a QoS 1 publish of `topic` (MQTT 5).
async fn puback_code(raw: &mut Raw, pkid: u16, topic: &str) -> u8 {
    raw.send(&publish_v5(topic, 1, pkid, b"x", None)).await;
    let ack = raw.recv_kind(4).await;
    assert_eq!(ack.packet_id(), pkid);
    ack.ack_reason()
}

fn required_missing(broker: &TestBroker) -> Vec<String> {
    broker.ctx.plugins.status().required_missing
}

#[tokio::test]
async fn removing_the_only_authentication_plugin_refuses_clients() {
    let dir = PluginDir::new();
    dir.add("auth", ALLOW);
    // The test configuration allows anonymous clients: that must not be
    // where a removed authentication plugin leads.
    let broker = broker_with(&dir, |_| {});
    assert!(broker.ctx.config.server.allow_anonymous);
    assert_eq!(code(&broker, "before").await, 0);
    remove(&dir, "auth");
    eventually("auth left", || names(&broker).is_empty()).await;
    assert_eq!(required_missing(&broker), ["auth"]);
    assert_eq!(code(&broker, "while-gone").await, V4_NOT_AUTHORIZED);
    let (_, ack) = connack(&broker, &connect_v5("while-gone-5", true, 60, |_| {})).await;
    assert_eq!(ack.connack().1, 0x87);
    install(&dir, "auth", ALLOW);
    eventually("auth back", || names(&broker) == ["auth"]).await;
    assert!(required_missing(&broker).is_empty());
    assert_eq!(code(&broker, "after").await, 0);
}

#[tokio::test]
async fn removing_an_acl_refuses_every_publish_until_it_is_back() {
    let dir = PluginDir::new();
    dir.add("acl", "pubsub");
    let broker = broker_with(&dir, |c| plugin_config(c, "acl", &[("pub_deny", "secret")]));
    let mut raw = Raw::handshake(broker.addr, &connect_v5("publisher", true, 60, |_| {})).await;
    assert_eq!(puback_code(&mut raw, 1, "secret").await, 0x87);
    assert_eq!(puback_code(&mut raw, 2, "public").await, 0x10);
    remove(&dir, "acl");
    eventually("acl left", || names(&broker).is_empty()).await;
    assert_eq!(puback_code(&mut raw, 3, "secret").await, 0x87);
    assert_eq!(
        puback_code(&mut raw, 4, "public").await,
        0x87,
        "fail closed"
    );
    install(&dir, "acl", "pubsub");
    eventually("acl back", || names(&broker) == ["acl"]).await;
    assert_eq!(puback_code(&mut raw, 5, "secret").await, 0x87);
    assert_eq!(puback_code(&mut raw, 6, "public").await, 0x10);
}

/// Deploys that remove the file before copying the new one, under load:
/// while publishers hammer a topic the ACL denies, not one publish gets
/// through, in the gap or out of it.
#[tokio::test]
async fn rm_then_cp_deploys_under_load_let_nothing_through() {
    const DEPLOYS: usize = 6;
    let dir = PluginDir::new();
    dir.add("acl", "pubsub");
    let broker = broker_with(&dir, |c| plugin_config(c, "acl", &[("pub_deny", "secret")]));
    let stop = Arc::new(AtomicBool::new(false));
    let mut publishers = tokio::task::JoinSet::new();
    for i in 0..2 {
        let (addr, stop) = (broker.addr, stop.clone());
        publishers.spawn(async move {
            let mut raw =
                Raw::handshake(addr, &connect_v5(&format!("p{i}"), true, 60, |_| {})).await;
            let mut codes = Vec::new();
            let mut pkid: u16 = 0;
            while !stop.load(Relaxed) {
                pkid = pkid % 60_000 + 1;
                codes.push(puback_code(&mut raw, pkid, "secret").await);
            }
            codes
        });
    }
    for _ in 0..DEPLOYS {
        remove(&dir, "acl");
        eventually("acl left", || names(&broker).is_empty()).await;
        // Publishes land in the gap.
        let seen = broker.ctx.metrics.messages_received.load(Relaxed);
        eventually("publishes while it is gone", || {
            broker.ctx.metrics.messages_received.load(Relaxed) > seen + 10
        })
        .await;
        install(&dir, "acl", "pubsub");
        eventually("acl back", || names(&broker) == ["acl"]).await;
    }
    stop.store(true, Relaxed);
    let codes: Vec<u8> = publishers.join_all().await.into_iter().flatten().collect();
    assert!(codes.len() > DEPLOYS * 10, "{} publishes", codes.len());
    let through = codes.iter().filter(|c| **c < 0x80).count();
    assert_eq!(
        through,
        0,
        "{through} of {} publishes got through",
        codes.len()
    );
}

/// An acceptance the plugin let the broker reuse (`cache-secs`) is
/// forgotten when the plugin set changes: a reload that starts denying
/// the topic takes effect on the next publish.
#[tokio::test]
async fn cached_acceptances_do_not_survive_a_reload() {
    let dir = PluginDir::new();
    dir.add("acl", "pubsub");
    let broker = broker_with(&dir, |c| {
        plugin_config(c, "acl", &[("pub_cache_secs", "3600")])
    });
    let mut raw = Raw::handshake(broker.addr, &connect_v5("cached", true, 60, |_| {})).await;
    assert_eq!(puback_code(&mut raw, 1, "topic").await, 0x10);
    assert_eq!(
        puback_code(&mut raw, 2, "topic").await,
        0x10,
        "from the cache"
    );
    let mut config = broker.ctx.config.clone();
    plugin_config(&mut config, "acl", &[("pub_deny", "topic")]);
    assert!(broker.ctx.reload(&config).await);
    assert_eq!(puback_code(&mut raw, 3, "topic").await, 0x87);
}

#[test]
fn a_required_plugin_missing_at_start_stops_the_broker() {
    let dir = PluginDir::new();
    let e = TestBroker::try_with(|c| {
        dir.configure(c);
        c.plugin.entry("auth".into()).or_default().required = Some(true);
    })
    .err()
    .expect("refused to start");
    assert!(e.contains("auth") && e.contains("required"), "{e}");
}
