//! Node liveness: every node writes a heartbeat into the JetStream
//! key-value bucket `sluice_nodes` (its key, value `up`) several times per
//! `[cluster] node_timeout`, and reads the others'.
//!
//! A node whose heartbeat has not changed for `node_timeout`, while the
//! observer wrote its own heartbeats ([`OWN_BEATS`] of them: NATS was
//! taking heartbeats), is declared dead by whichever node first swaps its
//! value to `dead` (compare and swap at the revision seen). Every survivor that sees a `dead` node then
//! scans the session bucket and claims, key by key and again by compare
//! and swap, the sessions the dead node held: one node wins each, takes
//! the session in from its card (subscriptions, expiry, the connection's
//! Will) as a session whose connection was lost now, so its Will is sent
//! once, after its delay, unless its client comes back first.
//!
//! A node that stops cleanly writes `stopped`: nobody takes its sessions
//! (it is expected back, with its store); its clients that connect
//! elsewhere meanwhile take theirs over one by one. A node that finds
//! itself declared dead (it was cut off, not dead) drops the sessions that
//! other nodes took meanwhile.
//!
//! Architecture invariant: a dead node's session is taken over, and its
//! Will sent, by exactly one node: the winner of the compare-and-swap on
//! its key.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use futures_util::StreamExt as _;
use tokio::time::Instant;

use super::{Cluster, ClusterError, lock, sessions, subject};

/// The bucket's name.
const BUCKET: &str = "sluice_nodes";
const UP: &[u8] = b"up";
const DEAD: &[u8] = b"dead";
const STOPPED: &[u8] = b"stopped";

/// Opens the bucket, creating it with `replicas` copies if no node did.
pub(crate) async fn open(
    js: &jetstream::Context,
    replicas: usize,
) -> Result<kv::Store, ClusterError> {
    let config = super::kv_stream(BUCKET, "Sluice: each node's heartbeat", replicas);
    super::get_or_create(js, BUCKET, config, async || js.get_key_value(BUCKET).await).await
}

fn key(node: &str) -> String {
    subject::kv_key("", node)
}

/// How many of its own heartbeats a node must have written while
/// another's did not change before it takes that one for dead (with
/// `node_timeout` passed): when NATS cannot take heartbeats (a server
/// lost, JetStream electing a leader), nobody's change and nobody is
/// declared dead.
const OWN_BEATS: u32 = 4;

/// What a node knows of another's heartbeat.
struct Seen {
    revision: u64,
    since: Instant,
    /// This node's own heartbeats written since `revision` was seen.
    beats: u32,
    /// The revision of a `dead` value whose sessions this node claimed.
    handled: Option<u64>,
}

impl Cluster {
    /// Starts the heartbeat (and the watch on the others').
    pub(crate) fn start_liveness(self: &Arc<Self>) {
        let task = tokio::spawn(self.clone().heartbeat());
        lock(&self.tasks).push(task);
    }

    /// Writes `stopped`, at a clean shutdown.
    pub(crate) async fn leave(&self) {
        let _ = self.nodes.put(key(&self.node), STOPPED.into()).await;
    }

    async fn heartbeat(self: Arc<Self>) {
        let beat = (self.node_timeout / 4).max(Duration::from_millis(250));
        let mut seen: HashMap<String, Seen> = HashMap::new();
        let mut ticks = tokio::time::interval(beat);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if !self.beat().await {
                continue;
            }
            for s in seen.values_mut() {
                s.beats += 1;
            }
            let Ok(mut keys) = self.nodes.keys().await else {
                continue;
            };
            let mut names = Vec::new();
            while let Some(Ok(k)) = keys.next().await {
                names.push(k);
            }
            for k in names {
                let Some((_, node)) = subject::decode_kv_key(&k) else {
                    continue;
                };
                if node == *self.node {
                    continue;
                }
                let Ok(Some(entry)) = self.nodes.entry(k.clone()).await else {
                    continue;
                };
                self.look_at(&node, &k, &entry, &mut seen).await;
            }
        }
    }

    /// Writes this node's heartbeat (returns whether it did); first, if
    /// another node declared this one dead, drops what the others took
    /// meanwhile.
    async fn beat(self: &Arc<Self>) -> bool {
        let k = key(&self.node);
        if let Ok(Some(e)) = self.nodes.entry(k.clone()).await {
            if e.operation == kv::Operation::Put && *e.value == *DEAD {
                tracing::warn!(
                    "the other nodes took this node for dead (cut off from NATS for over {} s); \
                     dropping the sessions they took over",
                    self.node_timeout.as_secs()
                );
                let (taken, dropped) = self.adopt().await;
                tracing::info!("{dropped} sessions dropped, {taken} taken back");
            }
        }
        match self.nodes.put(k, UP.into()).await {
            Ok(_) => true,
            Err(e) => {
                tracing::debug!("cannot write this node's heartbeat: {e}");
                false
            }
        }
    }

    async fn look_at(
        &self,
        node: &str,
        k: &str,
        entry: &kv::Entry,
        seen: &mut HashMap<String, Seen>,
    ) {
        let s = seen.entry(node.to_owned()).or_insert(Seen {
            revision: entry.revision,
            since: Instant::now(),
            beats: 0,
            handled: None,
        });
        if s.revision != entry.revision {
            s.revision = entry.revision;
            s.since = Instant::now();
            s.beats = 0;
        }
        if entry.operation != kv::Operation::Put {
            return;
        }
        let value = &*entry.value;
        if value == UP && s.since.elapsed() > self.node_timeout && s.beats >= OWN_BEATS {
            // Exactly one survivor swaps it; all then see `dead`.
            if let Ok(revision) = self.nodes.update(k, DEAD.into(), entry.revision).await {
                tracing::warn!(%node, "no heartbeat for {} s: the node is taken for dead", self.node_timeout.as_secs());
                self.stats.dead_nodes.fetch_add(1, Ordering::Relaxed);
                s.revision = revision;
                s.since = Instant::now();
                s.beats = 0;
                s.handled = Some(revision);
                self.inherit_from(node).await;
            }
        } else if value == DEAD && s.handled != Some(entry.revision) {
            s.handled = Some(entry.revision);
            self.inherit_from(node).await;
        }
    }

    /// Claims the sessions dead node `node` held.
    async fn inherit_from(&self, node: &str) {
        let mut won = 0;
        for (key, entry) in self.all_sessions().await {
            let Some(o) = sessions::owned(&entry) else {
                continue;
            };
            if o.owner != node {
                continue;
            }
            if self.inherit(&key, &entry, o.card).await {
                won += 1;
            }
        }
        if won > 0 {
            self.stats.inherited.fetch_add(won, Ordering::Relaxed);
            tracing::info!(%node, "took over {won} sessions of a dead node");
        }
        self.stats.dead_handled.fetch_add(1, Ordering::Relaxed);
    }
}
