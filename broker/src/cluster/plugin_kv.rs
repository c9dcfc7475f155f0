//! Plugin key-value stores cluster-wide: a plugin with `kv_cluster = true`
//! gets one JetStream key-value bucket (`sluice_kv_<plugin>`), which every
//! node's store of that plugin writes its changes to and follows, in the
//! bucket's order by revision ([`super::order`]). Reads stay local and cost no round trip: a change made on one
//! node reaches the others within a NATS round trip, last writer wins per
//! key (the bucket's order), and a node that starts takes the bucket's
//! entries first.
//!
//! Architecture invariant: every node applies a plugin bucket's entries in
//! the bucket's order and never one older than its own last write of the
//! key, so all nodes end with the bucket's last value of each key.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv;
use futures_util::StreamExt as _;
use tokio::sync::mpsc;

use super::{Cluster, lock, reliable, subject};
use crate::plugins::KvReplicas;
use crate::plugins::kv::{Change, KvStore};
use crate::store::records::{Malformed, Reader, Writer};

/// Changes queued for a plugin's bucket before new ones stay local (and
/// are logged).
const OUT_QUEUE: usize = 4096;
/// Pause before opening or watching a bucket again after a failure.
const RETRY: Duration = Duration::from_secs(2);

/// The cluster's side of the plugins' stores.
#[derive(Debug)]
pub(crate) struct PluginKvs(pub Arc<Cluster>);

/// The bucket of `plugin`: its name with every character a bucket name
/// cannot hold replaced, and then a hash of the name so that two plugins
/// never share one.
fn bucket(plugin: &str) -> String {
    let clean: String = plugin
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean == plugin {
        format!("sluice_kv_{clean}")
    } else {
        format!("sluice_kv_{clean}_{:08x}", reliable::fnv(&[plugin]) as u32)
    }
}

/// A bucket value: the origin node, then the value (or a deletion).
fn encode(node: &str, value: Option<&[u8]>) -> Vec<u8> {
    let mut w = Writer::new();
    w.bytes(node.as_bytes()).opt_bytes(value);
    w.finish()
}

fn decode(v: &[u8]) -> Result<(String, Option<Vec<u8>>), Malformed> {
    let mut r = Reader::new(v)?;
    let origin = r.string()?;
    let value = r.opt_bytes()?.map(<[u8]>::to_vec);
    r.end()?;
    Ok((origin, value))
}

impl KvReplicas for PluginKvs {
    fn replicate(&self, plugin: &Arc<str>, kv: &Arc<KvStore>) {
        let (tx, rx) = mpsc::channel(OUT_QUEUE);
        if !kv.replicate(tx) {
            return;
        }
        let task = tokio::spawn(replicate(self.0.clone(), plugin.clone(), kv.clone(), rx));
        lock(&self.0.tasks).push(task);
    }
}

/// Opens the plugin's bucket, then follows it into `store` while writing
/// `store`'s changes to it, for as long as the node runs.
async fn replicate(
    cluster: Arc<Cluster>,
    plugin: Arc<str>,
    store: Arc<KvStore>,
    changes: mpsc::Receiver<Change>,
) {
    let name = bucket(&plugin);
    let kv = loop {
        match open(&cluster, &name).await {
            Ok(kv) => break kv,
            Err(e) => {
                tracing::warn!(%plugin, "its key-value store cannot be the cluster's yet: {e}");
                tokio::time::sleep(RETRY).await;
            }
        }
    };
    tracing::info!(%plugin, bucket = %name, "the plugin's key-value store is the cluster's");
    let writer = tokio::spawn(write(cluster.clone(), kv.clone(), store.clone(), changes));
    follow(&plugin, &store, &kv).await;
    writer.abort();
}

/// The bucket `name`, created if no node did.
async fn open(cluster: &Cluster, name: &str) -> Result<kv::Store, String> {
    let js = &cluster.js;
    if let Ok(kv) = js.get_key_value(name).await {
        return Ok(kv);
    }
    let config = super::kv_stream(name, "Sluice: a plugin's key-value store", cluster.replicas);
    let created = js.create_stream(config).await;
    js.get_key_value(name).await.map_err(|got| match created {
        Err(e) => e.to_string(),
        Ok(_) => got.to_string(),
    })
}

/// Writes the store's changes to the bucket, in order, telling the store
/// the revision of each (a write that fails is tried again until it goes).
async fn write(
    cluster: Arc<Cluster>,
    kv: kv::Store,
    store: Arc<KvStore>,
    mut changes: mpsc::Receiver<Change>,
) {
    while let Some((key, value)) = changes.recv().await {
        let v = encode(&cluster.node, value.as_deref());
        let bucket_key = subject::kv_key("", &key);
        loop {
            match kv.put(&bucket_key, v.clone().into()).await {
                Ok(revision) => {
                    store.replica_acked(&key, revision);
                    break;
                }
                Err(e) => {
                    tracing::debug!("writing a plugin's key-value change to the cluster: {e}");
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    }
}

/// Applies the bucket's entries to `store`, its current ones first,
/// watching again from the last revision when the watch breaks.
async fn follow(plugin: &str, store: &KvStore, kv: &kv::Store) {
    let mut last = 0;
    loop {
        let watch = if last == 0 {
            kv.watch_with_history(">").await
        } else {
            kv.watch_all_from_revision(last + 1).await
        };
        match watch {
            Ok(mut watch) => {
                while let Some(entry) = watch.next().await {
                    let Ok(entry) = entry else { break };
                    last = entry.revision;
                    apply(plugin, store, &entry);
                }
            }
            Err(e) => tracing::debug!(%plugin, "watching its key-value bucket: {e}"),
        }
        tokio::time::sleep(RETRY).await;
    }
}

fn apply(plugin: &str, store: &KvStore, entry: &kv::Entry) {
    let Some((_, key)) = subject::decode_kv_key(&entry.key) else {
        return;
    };
    if entry.operation != kv::Operation::Put {
        store.apply_replica(&key, None, entry.revision);
        return;
    }
    match decode(&entry.value) {
        Ok((_, value)) => store.apply_replica(&key, value, entry.revision),
        Err(e) => {
            tracing::warn!(%plugin, key, "an entry of its cluster bucket does not decode: {e}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_valid_and_distinct() {
        assert_eq!(bucket("acl"), "sluice_kv_acl");
        let odd = bucket("my.acl");
        assert!(odd.starts_with("sluice_kv_my_acl_"), "{odd}");
        assert_ne!(odd, bucket("my acl"));
        assert!(
            odd.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        );
    }

    #[test]
    fn values_round_trip() {
        let v = encode("n1", Some(b"x"));
        assert_eq!(decode(&v).unwrap(), ("n1".to_owned(), Some(b"x".to_vec())));
        assert_eq!(decode(&encode("n1", None)).unwrap().1, None);
        assert!(decode(&v[..v.len() - 1]).is_err());
    }
}
