//! Plugins in a cluster: a plugin's key-value store is the cluster's when
//! its configuration says `kv_cluster = true`, and each node's own
//! otherwise.

use crate::support::nats::NatsServer;
use crate::support::packets::connect_v4;
use crate::support::{PluginDir, Raw, TestBroker, eventually};

/// A node with the `policy` fixture, which records every CONNECT it
/// authenticates in its key-value store (key `calls`).
fn node(nats: &NatsServer, dir: &PluginDir, name: &str, kv_cluster: bool) -> TestBroker {
    super::node_with(vec![nats.url.clone()], name, |c| {
        dir.configure(c);
        c.plugin.entry("policy".into()).or_default().kv_cluster = Some(kv_cluster);
    })
}

/// Whether `broker`'s `policy` store recorded a CONNECT of `client`.
fn recorded(broker: &TestBroker, client: &str) -> bool {
    let calls = broker
        .ctx
        .plugins
        .kv_get("policy", "calls")
        .unwrap_or_default();
    String::from_utf8_lossy(&calls)
        .lines()
        .any(|l| l == format!("auth-on-register:{client}"))
}

#[tokio::test]
async fn a_plugins_store_is_the_clusters_with_kv_cluster() {
    let nats = NatsServer::start();
    let dir = PluginDir::new();
    dir.add("policy", "policy");
    let a = node(&nats, &dir, "a", true);
    let b = node(&nats, &dir, "b", true);
    // What the plugin writes on A, it reads on B.
    let _on_a = Raw::handshake(a.addr, &connect_v4("via-a", true, 60)).await;
    eventually("A's write in B's store", || recorded(&b, "via-a")).await;
    // A change on B (here through the store's own API, on a key of its
    // own: two nodes appending to one key race, last writer wins) reaches
    // A, and so does its deletion on A back on B.
    let store = |n: &TestBroker| {
        n.ctx
            .plugins
            .get("policy")
            .expect("loaded")
            .shared
            .kv
            .clone()
    };
    store(&b)
        .set("from-b".into(), b"1".to_vec())
        .expect("within quota");
    eventually("B's write in A's store", || {
        store(&a).get("from-b").as_deref() == Some(&b"1"[..])
    })
    .await;
    assert!(store(&a).delete("from-b"));
    eventually("A's deletion in B's store", || {
        store(&b).get("from-b").is_none()
    })
    .await;
    // A node that starts later takes the bucket's entries.
    let c = node(&nats, &dir, "c", true);
    eventually("the entries in a new node's store", || {
        recorded(&c, "via-a")
    })
    .await;
}

#[tokio::test]
async fn without_kv_cluster_each_node_keeps_its_own_store() {
    let nats = NatsServer::start();
    let dir = PluginDir::new();
    dir.add("policy", "policy");
    let a = node(&nats, &dir, "a", false);
    let b = node(&nats, &dir, "b", false);
    let _on_a = Raw::handshake(a.addr, &connect_v4("via-a", true, 60)).await;
    let _on_b = Raw::handshake(b.addr, &connect_v4("via-b", true, 60)).await;
    assert!(recorded(&a, "via-a") && recorded(&b, "via-b"));
    assert!(!recorded(&b, "via-a") && !recorded(&a, "via-b"));
    // No bucket was made for it.
    let client = async_nats::connect(nats.url.as_str()).await.expect("NATS");
    let js = async_nats::jetstream::new(client);
    assert!(js.get_key_value("sluice_kv_policy").await.is_err());
}
