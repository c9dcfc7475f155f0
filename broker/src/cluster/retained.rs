//! Retained messages cluster-wide: a JetStream key-value bucket
//! (`sluice_retained`, one key per mountpoint and topic, see
//! [`super::subject::kv_key`]) that every node writes its clients'
//! retained messages to and watches into its own retained store.
//!
//! The bucket orders every write to a key, and every node applies the
//! bucket's entries in that order, so all nodes end with the same message
//! for a topic. A node sets its own retained store at once (a subscriber
//! on the publisher's node sees the message without waiting for NATS) and
//! keeps, per key, its writes in flight and the revision JetStream gave
//! the last ([`super::order`]): while one is in flight no entry of the key
//! is applied (the newest is held, and applied at the acknowledgement if
//! it is newer than the write), and afterwards only entries above that
//! revision are. Revisions decide, not the node's own entries coming back:
//! the bucket keeps one value per key, so a write the next one replaced
//! may never be delivered. A cleared topic is written as a message with an
//! empty payload (it carries its origin like any other).
//!
//! At start, after the node's own store is read, the bucket's current
//! entries replace the local retained messages: the bucket is the
//! authority, so a topic cleared while the node was down is cleared here
//! too.
//!
//! Architecture invariant: a node applies entries of the bucket in the
//! bucket's order, never one while its own write of the key is in flight
//! and never one older than its own last write (decided under the retained
//! store's lock, which also orders its own writes).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use tokio::sync::mpsc;

use super::order::Pending;
use super::{Cluster, ClusterError, lock, subject};
use crate::message::Message;
use crate::router::Router;
use crate::store::records;
use crate::topic::TopicName;

/// The bucket's name.
pub(crate) const BUCKET: &str = "sluice_retained";
/// Writes to the bucket queued before new ones are refused (and counted).
const OUT_QUEUE: usize = 16 * 1024;
/// Writes sent to the bucket and not yet acknowledged by JetStream.
const IN_FLIGHT: usize = 256;
/// How long a starting node waits for the bucket's current entries.
const SYNC_LIMIT: Duration = Duration::from_secs(30);

/// A write for the bucket: key and value.
type Write = (String, Vec<u8>);

/// The node's side of the bucket.
pub(crate) struct Replicated {
    js: jetstream::Context,
    kv: kv::Store,
    /// This node's writes on their way, per key (see [`order`]).
    pending: std::sync::Mutex<Pending<kv::Entry>>,
    out: mpsc::Sender<Write>,
    /// Taken by [`Replicated::start`].
    out_rx: std::sync::Mutex<Option<mpsc::Receiver<Write>>>,
}

impl Replicated {
    /// Opens the bucket, creating it with `replicas` copies if no node did.
    pub(crate) async fn open(
        client: &async_nats::Client,
        replicas: usize,
    ) -> Result<Self, ClusterError> {
        let js = jetstream::new(client.clone());
        let config = super::kv_stream(
            BUCKET,
            "Sluice: retained messages by mountpoint and topic",
            replicas,
        );
        let kv = super::get_or_create(&js, BUCKET, config, async || js.get_key_value(BUCKET).await)
            .await?;
        let (out, out_rx) = mpsc::channel(OUT_QUEUE);
        Ok(Replicated {
            js,
            kv,
            pending: std::sync::Mutex::default(),
            out,
            out_rx: std::sync::Mutex::new(Some(out_rx)),
        })
    }

    /// The task writing to the bucket (applying to `router` what the
    /// bucket delivered while this node's writes were on their way).
    pub(crate) fn start(
        &self,
        cluster: &Arc<Cluster>,
        router: &Arc<Router>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let rx = lock(&self.out_rx).take()?;
        Some(tokio::spawn(send(
            cluster.clone(),
            router.clone(),
            self.js.clone(),
            rx,
        )))
    }
}

impl Cluster {
    /// Writes a retained message set (or cleared, with an empty payload)
    /// on this node to the bucket. Called under the retained store's lock.
    pub(crate) fn retain(&self, mountpoint: &str, message: &Message) {
        if message.topic.is_sys() {
            return;
        }
        let key = subject::kv_key(mountpoint, message.topic.as_str());
        let mut w = records::Writer::new();
        w.bytes(self.node.as_bytes());
        records::put_message(&mut w, message);
        let r = &self.retained;
        let mut pending = lock(&r.pending);
        if r.out.try_send((key.clone(), w.finish())).is_ok() {
            pending.sent(&key);
        } else {
            self.stats.retained_failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                topic = %message.topic,
                "the cluster's retained bucket is behind; this retained message stays on this node"
            );
        }
    }

    /// Reads the bucket's current entries into `router`'s retained store,
    /// replacing what the node had, then follows the bucket's changes.
    /// Returns how many retained messages the bucket holds.
    pub(crate) async fn sync_retained(
        self: &Arc<Self>,
        router: &Arc<Router>,
    ) -> Result<usize, ClusterError> {
        let failed = |reason: String| ClusterError::Bucket {
            bucket: BUCKET,
            reason,
        };
        let kv = &self.retained.kv;
        let values = kv
            .status()
            .await
            .map_err(|e| failed(e.to_string()))?
            .values();
        let mut watch = kv
            .watch_with_history(">")
            .await
            .map_err(|e| failed(e.to_string()))?;
        let mut held: HashSet<(String, String)> = HashSet::new();
        let mut last = 0;
        let mut complete = values == 0;
        let deadline = tokio::time::Instant::now() + SYNC_LIMIT;
        while !complete {
            let entry = match tokio::time::timeout_at(deadline, watch.next()).await {
                Ok(Some(Ok(entry))) => entry,
                Ok(Some(Err(e))) => return Err(failed(e.to_string())),
                Ok(None) => return Err(failed("the watch ended".into())),
                Err(_) => {
                    tracing::error!(
                        "the cluster's retained messages did not arrive within {} s; \
                         the node goes on with what it has and follows the bucket",
                        SYNC_LIMIT.as_secs()
                    );
                    break;
                }
            };
            last = entry.revision;
            complete = entry.delta == 0;
            if let Some((key, present)) = self.apply(router, &entry) {
                if present {
                    held.insert(key);
                } else {
                    held.remove(&key);
                }
            }
        }
        if complete {
            let removed = router.retained_keep_only(|mountpoint, topic| {
                held.contains(&(mountpoint.to_owned(), topic.to_owned()))
                    || lock(&self.retained.pending).contains(&subject::kv_key(mountpoint, topic))
            });
            if removed > 0 {
                tracing::info!(
                    "{removed} retained messages of this node's store are not in the cluster's \
                     bucket any more (cleared while the node was away); removed"
                );
            }
        }
        let task = tokio::spawn(follow(self.clone(), router.clone(), watch, last));
        lock(&self.tasks).push(task);
        Ok(held.len())
    }

    /// Applies one entry of the bucket: the entry's mountpoint and topic,
    /// and whether the topic now has a message (`None`: not understood).
    fn apply(&self, router: &Router, entry: &kv::Entry) -> Option<((String, String), bool)> {
        let dropped = || {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(key = %entry.key, "a retained entry not understood; ignored");
        };
        let Some((mountpoint, topic)) = subject::decode_kv_key(&entry.key) else {
            dropped();
            return None;
        };
        let Ok(name) = TopicName::new(&topic) else {
            dropped();
            return None;
        };
        let message = match entry.operation {
            kv::Operation::Put => match decode(&entry.value) {
                Some((_, m)) if m.topic == name => Some(m),
                _ => {
                    dropped();
                    return None;
                }
            },
            kv::Operation::Delete | kv::Operation::Purge => None,
        };
        let message = message
            .filter(|m| !m.payload.is_empty() && !records::expired(m))
            .map(Arc::new);
        let present = message.is_some();
        let mountpoint_arc: Arc<str> = Arc::from(mountpoint.as_str());
        let applied = router.retained_from_cluster(&mountpoint_arc, &name, message, || {
            // Decided under the retained store's lock, which also orders
            // this node's own writes.
            lock(&self.retained.pending).admit(&entry.key, entry.revision, || Some(entry.clone()))
        });
        match applied {
            Ok(true) => {
                self.stats.retained_applied.fetch_add(1, Ordering::Relaxed);
            }
            Ok(false) => {}
            Err(limit) => {
                self.stats.retained_failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    topic = %name,
                    "a retained message from the cluster is refused here: {limit}"
                );
            }
        }
        Some(((mountpoint, topic), present))
    }
}

/// A bucket value: the origin node and the message.
fn decode(value: &[u8]) -> Option<(String, Message)> {
    let mut r = records::Reader::new(value).ok()?;
    let origin = r.string().ok()?;
    let message = records::get_message(&mut r).ok()?;
    r.end().ok()?;
    Some((origin, message))
}

/// Writes what [`Cluster::retain`] queued, in order, with up to
/// [`IN_FLIGHT`] writes awaiting JetStream's acknowledgement; an entry of
/// another node held while a write was on its way is applied once the
/// write's revision shows it is newer.
async fn send(
    cluster: Arc<Cluster>,
    router: Arc<Router>,
    js: jetstream::Context,
    mut rx: mpsc::Receiver<Write>,
) {
    let mut acks = FuturesUnordered::new();
    let settle = |key: &str, outcome: Result<u64, String>| {
        let revision = match outcome {
            Ok(r) => Some(r),
            Err(reason) => {
                cluster
                    .stats
                    .retained_failed
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    key,
                    "a retained message could not be written to the cluster's bucket ({reason}); \
                     it stays on this node"
                );
                None
            }
        };
        let newer = lock(&cluster.retained.pending).acked(key, revision);
        if let Some(entry) = newer {
            cluster.apply(&router, &entry);
        }
    };
    loop {
        tokio::select! {
            write = rx.recv(), if acks.len() < IN_FLIGHT => {
                let Some((key, value)) = write else { break };
                let subject = format!("$KV.{BUCKET}.{key}");
                match js.publish(subject, value.into()).await {
                    Ok(ack) => acks.push(async move { (key, ack.await) }),
                    Err(e) => settle(&key, Err(e.to_string())),
                }
            }
            Some((key, outcome)) = acks.next(), if !acks.is_empty() => {
                settle(&key, outcome.map(|a| a.sequence).map_err(|e| e.to_string()));
            }
        }
    }
}

/// Follows the bucket's changes from revision `last`, watching again (from
/// where it was) when the watch breaks.
async fn follow(cluster: Arc<Cluster>, router: Arc<Router>, mut watch: kv::Watch, mut last: u64) {
    loop {
        while let Some(entry) = watch.next().await {
            match entry {
                Ok(entry) => {
                    last = entry.revision;
                    cluster.apply(&router, &entry);
                }
                Err(e) => {
                    tracing::warn!("watching the cluster's retained bucket: {e}");
                    break;
                }
            }
        }
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            match cluster.retained.kv.watch_all_from_revision(last + 1).await {
                Ok(w) => {
                    watch = w;
                    break;
                }
                Err(e) => tracing::warn!("watching the cluster's retained bucket again: {e}"),
            }
        }
    }
}
