//! Client ids cluster-wide: a JetStream key-value bucket
//! (`sluice_sessions`, one key per mountpoint and client id, the value the
//! node holding the session) that a CONNECT claims before its session is
//! attached.
//!
//! A claim takes the key with compare-and-swap (create if absent, update
//! at the revision read). When another node held it, that node is asked
//! (`sluice.n.<node>.kick`) to disconnect its client with 0x8E (Session
//! taken over), and answers once it did; a node that does not answer in
//! [`KICK_LIMIT`] is taken to be gone. A node that no longer holds a
//! session (it ended, or its client went elsewhere) deletes its key if it
//! is still the owner.
//!
//! Not yet: the session itself (subscriptions, queued messages) stays on
//! the node that had it until it expires; the new node starts a new one.
//!
//! Architecture invariant: a CONNECT is attached only after its node owns
//! the client id in the bucket (or, when JetStream cannot be reached, for
//! a session that does not outlive its connection).

use std::sync::{Arc, Weak};
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use futures_util::StreamExt as _;

use super::{Cluster, ClusterError, lock, subject};
use crate::registry::Registry;
use crate::session::{Kick, SubscriberId};

/// The bucket's name.
const BUCKET: &str = "sluice_sessions";
/// How long a claim waits for the former owner to disconnect its client.
const KICK_LIMIT: Duration = Duration::from_secs(2);
/// Attempts at a claim racing other nodes' for the same client id.
const ATTEMPTS: usize = 5;
/// How long a claim may take before JetStream is taken to be out of
/// reach.
const CLAIM_LIMIT: Duration = Duration::from_secs(2);

/// Why a claim failed.
#[derive(Debug, thiserror::Error)]
#[error("the cluster's session registry cannot be reached: {0}")]
pub(crate) struct ClaimError(String);

/// Opens the bucket, creating it with `replicas` copies if no node did.
pub(crate) async fn open(
    js: &jetstream::Context,
    replicas: usize,
) -> Result<kv::Store, ClusterError> {
    let config = super::kv_stream(BUCKET, "Sluice: the node holding each client id", replicas);
    super::get_or_create(js, BUCKET, config, async || js.get_key_value(BUCKET).await).await
}

fn key(id: &SubscriberId) -> String {
    subject::kv_key(&id.mountpoint, id.client_id.as_str())
}

/// The subject a node listens on for kicks.
fn kick_subject(node: &str) -> String {
    format!("sluice.n.{node}.kick")
}

impl Cluster {
    /// Makes this node the owner of `id`, disconnecting the client of the
    /// node that owned it (if it is there to answer).
    pub(crate) async fn claim(&self, id: &SubscriberId) -> Result<(), ClaimError> {
        let Ok(outcome) = tokio::time::timeout(CLAIM_LIMIT, self.try_claim(id)).await else {
            return Err(ClaimError(format!(
                "no answer within {} s",
                CLAIM_LIMIT.as_secs()
            )));
        };
        outcome
    }

    async fn try_claim(&self, id: &SubscriberId) -> Result<(), ClaimError> {
        let kv = &self.sessions;
        let key = key(id);
        let fail = |e: &dyn std::fmt::Display| ClaimError(e.to_string());
        let mut former = None;
        for _ in 0..ATTEMPTS {
            let entry = kv.entry(key.clone()).await.map_err(|e| fail(&e))?;
            let taken = match entry {
                Some(e) if e.operation == kv::Operation::Put => {
                    let owner = String::from_utf8_lossy(&e.value).into_owned();
                    if owner == *self.node {
                        return Ok(());
                    }
                    former = Some(owner);
                    kv.update(&key, self.node.as_bytes().to_vec().into(), e.revision)
                        .await
                        .is_ok()
                }
                Some(e) => kv
                    .update(&key, self.node.as_bytes().to_vec().into(), e.revision)
                    .await
                    .is_ok(),
                None => kv
                    .create(&key, self.node.as_bytes().to_vec().into())
                    .await
                    .is_ok(),
            };
            if taken {
                if let Some(owner) = former {
                    self.kick_at(&owner, &key).await;
                }
                return Ok(());
            }
        }
        Err(ClaimError(format!(
            "the client id {id} is claimed by other nodes at the same time"
        )))
    }

    /// Asks `owner` to disconnect its client of `key`, waiting at most
    /// [`KICK_LIMIT`] for it to answer.
    async fn kick_at(&self, owner: &str, key: &str) {
        let request = self
            .client
            .request(kick_subject(owner), key.to_owned().into());
        match tokio::time::timeout(KICK_LIMIT, request).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::debug!(%owner, "no answer to a takeover (the node is gone?): {e}");
            }
            Err(_) => tracing::warn!(
                %owner,
                "node did not answer a takeover within {} s; going on",
                KICK_LIMIT.as_secs()
            ),
        }
    }

    /// This node no longer holds a session for `id`: deletes the key if it
    /// is still this node's and no local session took the id meanwhile.
    pub(crate) fn release_id(self: &Arc<Self>, id: &SubscriberId) {
        let this = self.clone();
        let id = id.clone();
        tokio::spawn(async move {
            let key = key(&id);
            let Ok(Some(entry)) = this.sessions.entry(key.clone()).await else {
                return;
            };
            if entry.operation != kv::Operation::Put || *entry.value != *this.node.as_bytes() {
                return;
            }
            let held_here = lock(&this.registry)
                .upgrade()
                .is_some_and(|r| r.get(&id).is_some());
            if !held_here {
                let _ = this
                    .sessions
                    .delete_expect_revision(&key, Some(entry.revision))
                    .await;
            }
        });
    }

    /// Answers other nodes' takeovers of this node's clients, for as long
    /// as the node runs.
    pub(crate) async fn serve_kicks(self: &Arc<Self>, registry: &Arc<Registry>) {
        *lock(&self.registry) = Arc::downgrade(registry);
        let mut requests = match self.client.subscribe(kick_subject(&self.node)).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("cannot take takeover requests from other nodes: {e}");
                return;
            }
        };
        let this = self.clone();
        let task = tokio::spawn(async move {
            while let Some(request) = requests.next().await {
                let Some(id) = std::str::from_utf8(&request.payload)
                    .ok()
                    .and_then(subject::decode_kv_key)
                    .and_then(|(mp, client)| {
                        Some(SubscriberId {
                            mountpoint: Arc::from(mp.as_str()),
                            client_id: crate::topic::ClientId::new(&client).ok()?,
                        })
                    })
                else {
                    continue;
                };
                let registry: Weak<Registry> = lock(&this.registry).clone();
                if let Some(session) = registry.upgrade().and_then(|r| r.get(&id)) {
                    if session.is_online() {
                        session.kick(Kick::TakenOver);
                        tracing::debug!(session = %id, "taken over by another node");
                    }
                }
                if let Some(reply) = request.reply {
                    let _ = this.client.publish(reply, "ok".into()).await;
                }
            }
        });
        lock(&self.tasks).push(task);
    }
}
