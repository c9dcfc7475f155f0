//! Client ids and sessions cluster-wide: a JetStream key-value bucket
//! (`sluice_sessions`, one key per mountpoint and client id) holding the
//! node that has the session and, for a persistent session, its card
//! (record, Will and subscriptions; [`image`](super::image)).
//!
//! - **Claim.** A CONNECT takes the key with compare-and-swap (create if
//!   absent, update at the revision read) before its session is attached.
//!   When another node held it, that node is asked
//!   (`sluice.n.<node>.kick`) to disconnect its client with 0x8E (Session
//!   taken over) and answers with the session's full image (queue and QoS
//!   state included), which the claiming node takes in; a node that does
//!   not answer within [`KICK_LIMIT`] is taken to be gone, and the card in
//!   the bucket stands in for the session (without the queue it held).
//! - **Cards.** A node writes the card of each of its persistent sessions
//!   as it changes (connect, SUBSCRIBE, UNSUBSCRIBE, disconnect, a Will
//!   sent), by compare-and-swap at the revision it last wrote, so a node
//!   that lost a client id never overwrites the new owner's card.
//! - **Release.** A node that no longer holds a session (it ended) deletes
//!   its key if it is still the owner.
//! - **Adoption.** At start a node takes back the sessions the bucket says
//!   it holds but its store lacks, and drops the ones another node took
//!   meanwhile; the sessions of a dead node go to whichever survivor wins
//!   each key ([`liveness`](super::liveness)).
//!
//! Architecture invariant: a CONNECT is attached only after its node owns
//! the client id in the bucket (or, when JetStream cannot be reached, for
//! a session that does not outlive its connection), and a session lives on
//! at most one node: the one the bucket names.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use futures_util::StreamExt as _;
use tokio::sync::{mpsc, oneshot};

use super::image::{self, Owned};
use super::{Cluster, ClusterError, lock, subject};
use crate::message::Will;
use crate::registry::{Card, Registry};
use crate::session::{QueueLimits, SubscriberId};

/// The bucket's name.
const BUCKET: &str = "sluice_sessions";
/// How long a claim waits for the former owner to hand its session over.
const KICK_LIMIT: Duration = Duration::from_secs(2);
/// How long the former owner waits for its connection to close.
const HAND_OVER_LIMIT: Duration = Duration::from_millis(1500);
/// Attempts at a claim (or a card write) racing other nodes.
const ATTEMPTS: usize = 5;
/// How long a claim may take before JetStream is taken to be out of
/// reach.
const CLAIM_LIMIT: Duration = Duration::from_secs(4);
/// How long a CONNACK or SUBACK waits for the card to be written.
const SAVE_LIMIT: Duration = Duration::from_secs(2);
/// Card writes taken together.
const SAVE_BATCH: usize = 256;

/// Why a claim failed.
#[derive(Debug, thiserror::Error)]
#[error("the cluster's session registry cannot be reached: {0}")]
pub(crate) struct ClaimError(String);

/// A card to write (`None`: none, only a wait for those before), and who
/// waits for it.
pub(crate) struct Save {
    id: Option<SubscriberId>,
    done: Option<oneshot::Sender<()>>,
}

/// Per-node state of the session bucket.
pub(crate) struct Sessions {
    pub(super) kv: kv::Store,
    /// Revision of the last value this node wrote, per key it owns.
    owned: std::sync::Mutex<HashMap<String, u64>>,
    /// The Wills of the connections holding this node's persistent
    /// sessions (part of their cards).
    wills: std::sync::Mutex<HashMap<SubscriberId, Will>>,
    saves: mpsc::UnboundedSender<Save>,
    pub(super) pending: std::sync::Mutex<Option<mpsc::UnboundedReceiver<Save>>>,
    /// The node's sessions, and the queue limits of a session taken in.
    registry: std::sync::Mutex<(Weak<Registry>, Option<Arc<QueueLimits>>)>,
}

/// Opens the bucket, creating it with `replicas` copies if no node did.
pub(crate) async fn open(
    js: &jetstream::Context,
    replicas: usize,
) -> Result<Sessions, ClusterError> {
    let config = super::kv_stream(BUCKET, "Sluice: the node holding each client id", replicas);
    let kv =
        super::get_or_create(js, BUCKET, config, async || js.get_key_value(BUCKET).await).await?;
    let (saves, rx) = mpsc::unbounded_channel();
    Ok(Sessions {
        kv,
        owned: std::sync::Mutex::default(),
        wills: std::sync::Mutex::default(),
        saves,
        pending: std::sync::Mutex::new(Some(rx)),
        registry: std::sync::Mutex::new((Weak::new(), None)),
    })
}

pub(super) fn key(id: &SubscriberId) -> String {
    subject::kv_key(&id.mountpoint, id.client_id.as_str())
}

pub(super) fn id_of(key: &str) -> Option<SubscriberId> {
    let (mp, client) = subject::decode_kv_key(key)?;
    Some(SubscriberId {
        mountpoint: Arc::from(mp.as_str()),
        client_id: crate::topic::ClientId::new(&client).ok()?,
    })
}

/// The subject a node listens on for kicks.
fn kick_subject(node: &str) -> String {
    format!("sluice.n.{node}.kick")
}

/// What an entry says, if it is a value (not a deletion).
pub(super) fn owned(entry: &kv::Entry) -> Option<Owned> {
    if entry.operation != kv::Operation::Put {
        return None;
    }
    match image::decode_owned(&entry.value) {
        Ok(o) => Some(o),
        Err(e) => {
            tracing::warn!(key = %entry.key, "a session record in the cluster does not decode: {e}");
            None
        }
    }
}

impl Cluster {
    fn registry(&self) -> Option<(Arc<Registry>, Arc<QueueLimits>)> {
        let r = lock(&self.sessions.registry);
        Some((r.0.upgrade()?, r.1.clone()?))
    }

    /// Makes this node the owner of `id`, disconnecting the client of the
    /// node that owned it (if it is there to answer). Returns the session
    /// that node had (or, if it did not answer, the card it left).
    pub(crate) async fn claim(&self, id: &SubscriberId) -> Result<Option<Card>, ClaimError> {
        let Ok(outcome) = tokio::time::timeout(CLAIM_LIMIT, self.try_claim(id)).await else {
            return Err(ClaimError(format!(
                "no answer within {} s",
                CLAIM_LIMIT.as_secs()
            )));
        };
        outcome
    }

    async fn try_claim(&self, id: &SubscriberId) -> Result<Option<Card>, ClaimError> {
        let kv = &self.sessions.kv;
        let key = key(id);
        let fail = |e: &dyn std::fmt::Display| ClaimError(e.to_string());
        for _ in 0..ATTEMPTS {
            let entry = kv.entry(key.clone()).await.map_err(|e| fail(&e))?;
            let former = entry.as_ref().and_then(owned);
            if let Some(f) = &former {
                if f.owner == *self.node {
                    if let Some(e) = &entry {
                        lock(&self.sessions.owned).insert(key, e.revision);
                    }
                    return Ok(None);
                }
            }
            // The former owner's card stays until this node writes its own.
            let value =
                image::encode_owned(&self.node, former.as_ref().and_then(|f| f.card.as_ref()));
            let written = match &entry {
                Some(e) => kv.update(&key, value.into(), e.revision).await.ok(),
                None => kv.create(&key, value.into()).await.ok(),
            };
            let Some(revision) = written else { continue };
            lock(&self.sessions.owned).insert(key.clone(), revision);
            let Some(Owned { owner, card }) = former else {
                return Ok(None);
            };
            return Ok(match self.kick_at(&owner, &key).await {
                Answer::Image(image) => {
                    self.stats
                        .handed_in
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    Some(*image)
                }
                Answer::NoSession => None,
                Answer::Gone => card,
            });
        }
        Err(ClaimError(format!(
            "the client id {id} is claimed by other nodes at the same time"
        )))
    }

    /// Asks `owner` to disconnect its client of `key` and hand the session
    /// over, waiting at most [`KICK_LIMIT`] for it to answer.
    async fn kick_at(&self, owner: &str, key: &str) -> Answer {
        let request = self
            .client
            .request(kick_subject(owner), key.to_owned().into());
        match tokio::time::timeout(KICK_LIMIT, request).await {
            Ok(Ok(reply)) if reply.payload.is_empty() => Answer::NoSession,
            Ok(Ok(reply)) => match image::decode_image(&reply.payload) {
                Ok(image) => Answer::Image(Box::new(image)),
                Err(e) => {
                    tracing::warn!(%owner, "a handed-over session does not decode: {e}");
                    Answer::Gone
                }
            },
            Ok(Err(e)) => {
                tracing::debug!(%owner, "no answer to a takeover (the node is gone?): {e}");
                Answer::Gone
            }
            Err(_) => {
                tracing::warn!(
                    %owner,
                    "node did not answer a takeover within {} s; going on",
                    KICK_LIMIT.as_secs()
                );
                Answer::Gone
            }
        }
    }

    /// Takes in a session another node had, before its client attaches.
    pub(crate) async fn take_in(&self, image: Card) {
        if let Some((registry, limits)) = self.registry() {
            registry.take_in(image, &limits).await;
        }
    }

    /// The Will of the connection now holding persistent session `id`
    /// (part of its card; `None`: no Will).
    pub(crate) fn set_will(&self, id: &SubscriberId, will: Option<&Will>) {
        let mut wills = lock(&self.sessions.wills);
        match will {
            Some(w) => {
                wills.insert(id.clone(), w.clone());
            }
            None => {
                wills.remove(id);
            }
        }
    }

    /// Writes the card of persistent session `id` soon.
    pub(crate) fn note(&self, id: &SubscriberId) {
        let _ = self.sessions.saves.send(Save {
            id: Some(id.clone()),
            done: None,
        });
    }

    /// Writes the card of persistent session `id`, waiting (at most
    /// [`SAVE_LIMIT`]) until it is in the bucket.
    pub(crate) async fn save(&self, id: &SubscriberId) {
        if !self.saved(Some(id.clone())).await {
            tracing::warn!(session = %id, "its card was not written to the cluster in time");
        }
    }

    /// Waits (at most [`SAVE_LIMIT`]) until the cards noted so far are
    /// written (at shutdown).
    pub(crate) async fn flush_cards(&self) {
        if !self.saved(None).await {
            tracing::warn!("the sessions' cards were not all written to the cluster at shutdown");
        }
    }

    async fn saved(&self, id: Option<SubscriberId>) -> bool {
        let (tx, rx) = oneshot::channel();
        let save = Save { id, done: Some(tx) };
        self.sessions.saves.send(save).is_err()
            || tokio::time::timeout(SAVE_LIMIT, rx).await.is_ok()
    }

    /// Writes cards as [`Cluster::note`] and [`Cluster::save`] ask, a batch
    /// at a time (a card noted twice is written once, as it is then).
    async fn write_cards(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<Save>) {
        while let Some(first) = rx.recv().await {
            let mut batch: HashMap<Option<SubscriberId>, Vec<oneshot::Sender<()>>> = HashMap::new();
            let mut next = Some(first);
            while let Some(Save { id, done }) = next {
                batch.entry(id).or_default().extend(done);
                next = if batch.len() < SAVE_BATCH {
                    rx.try_recv().ok()
                } else {
                    None
                };
            }
            let writes = batch.keys().flatten().map(|id| self.write_card(id));
            futures_util::future::join_all(writes).await;
            // The waiters' senders drop here: they are done.
        }
    }

    async fn write_card(&self, id: &SubscriberId) {
        let Some((registry, _)) = self.registry() else {
            return;
        };
        let will = lock(&self.sessions.wills).get(id).cloned();
        let Some(card) = registry.card(id, will.as_ref()) else {
            return;
        };
        // A session ending with its connection has a card only for its
        // Will.
        if card.record.expiry_interval == 0 && card.record.will.is_none() {
            return;
        }
        let key = key(id);
        let value: bytes::Bytes = image::encode_owned(&self.node, Some(&card)).into();
        let kv = &self.sessions.kv;
        for _ in 0..ATTEMPTS {
            let known = lock(&self.sessions.owned).get(&key).copied();
            let revision = match known {
                Some(r) => r,
                None => match kv.entry(key.clone()).await {
                    Ok(Some(e)) if owned(&e).is_some_and(|o| o.owner == *self.node) => e.revision,
                    Ok(_) => return,
                    Err(e) => {
                        tracing::debug!(session = %id, "cannot read its record in the cluster: {e}");
                        return;
                    }
                },
            };
            match kv.update(&key, value.clone(), revision).await {
                Ok(r) => {
                    lock(&self.sessions.owned).insert(key, r);
                    return;
                }
                Err(_) => {
                    lock(&self.sessions.owned).remove(&key);
                }
            }
        }
    }

    /// This node no longer holds a session for `id`: deletes the key if it
    /// is still this node's and no local session took the id meanwhile.
    pub(crate) fn release_id(self: &Arc<Self>, id: &SubscriberId) {
        let this = self.clone();
        let id = id.clone();
        lock(&self.sessions.wills).remove(&id);
        tokio::spawn(async move {
            let key = key(&id);
            let Ok(Some(entry)) = this.sessions.kv.entry(key.clone()).await else {
                return;
            };
            if owned(&entry).is_none_or(|o| o.owner != *this.node) {
                return;
            }
            let held_here = this.registry().is_some_and(|(r, _)| r.get(&id).is_some());
            if !held_here {
                lock(&this.sessions.owned).remove(&key);
                let _ = this
                    .sessions
                    .kv
                    .delete_expect_revision(&key, Some(entry.revision))
                    .await;
            }
        });
    }

    /// Answers other nodes' takeovers of this node's clients, and writes
    /// cards, for as long as the node runs. Sessions taken in get `limits`.
    pub(crate) async fn serve(
        self: &Arc<Self>,
        registry: &Arc<Registry>,
        limits: Arc<QueueLimits>,
    ) {
        *lock(&self.sessions.registry) = (Arc::downgrade(registry), Some(limits));
        if let Some(rx) = lock(&self.sessions.pending).take() {
            let task = tokio::spawn(self.clone().write_cards(rx));
            lock(&self.tasks).push(task);
        }
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
                let this = this.clone();
                // Each in its own task: a handover waits for a connection.
                tokio::spawn(async move { this.hand_over(request).await });
            }
        });
        lock(&self.tasks).push(task);
    }

    /// Another node took a client id: hands the session over.
    async fn hand_over(&self, request: async_nats::Message) {
        let Some(reply) = request.reply else { return };
        let Some(id) = std::str::from_utf8(&request.payload).ok().and_then(id_of) else {
            return;
        };
        lock(&self.sessions.owned).remove(&key(&id));
        lock(&self.sessions.wills).remove(&id);
        let image = match self.registry() {
            Some((registry, _)) => registry.hand_over(&id, HAND_OVER_LIMIT).await,
            None => None,
        };
        let payload = match image {
            Some(mut image) => {
                tracing::debug!(session = %id, "taken over by another node");
                self.stats
                    .handed_out
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let limit = self.client.server_info().max_payload.max(1024);
                let mut v = image::encode_image(&image);
                // NATS carries at most `max_payload` bytes: the oldest
                // queued messages go first, the rest is dropped (logged).
                let mut dropped = 0;
                while v.len() > limit && !image.queued.is_empty() {
                    let keep = image.queued.len() / 2;
                    dropped += image.queued.len() - keep;
                    image.queued.truncate(keep);
                    v = image::encode_image(&image);
                }
                if dropped > 0 {
                    tracing::warn!(session = %id, "{dropped} queued messages did not fit in the handover to another node; dropped");
                }
                v
            }
            None => Vec::new(),
        };
        let _ = self.client.publish(reply, payload.into()).await;
    }

    /// Every key of the session bucket with what it holds, for a scan.
    pub(super) async fn all_sessions(&self) -> Vec<(String, kv::Entry)> {
        let kv = &self.sessions.kv;
        let mut out = Vec::new();
        let Ok(mut keys) = kv.keys().await else {
            return out;
        };
        while let Some(Ok(key)) = keys.next().await {
            if let Ok(Some(entry)) = kv.entry(key.clone()).await {
                out.push((key, entry));
            }
        }
        out
    }

    /// Takes over the session of `key` from `entry`'s owner (a dead node):
    /// exactly one node wins it. Returns whether this one did.
    pub(super) async fn inherit(&self, key: &str, entry: &kv::Entry, card: Option<Card>) -> bool {
        if card.is_none() {
            // Nothing to take over: the id is free.
            let kv = &self.sessions.kv;
            return kv
                .delete_expect_revision(key, Some(entry.revision))
                .await
                .is_ok();
        }
        let value = image::encode_owned(&self.node, card.as_ref());
        let Ok(revision) = self
            .sessions
            .kv
            .update(key, value.into(), entry.revision)
            .await
        else {
            return false;
        };
        lock(&self.sessions.owned).insert(key.to_owned(), revision);
        if let Some(card) = card {
            let id = card.id.clone();
            self.take_in(card).await;
            self.note(&id);
        }
        true
    }

    /// At start: takes back the sessions the bucket says this node holds
    /// but it lacks (its store lost them, or it took them from a dead
    /// node), drops the ones another node holds now, and claims the ones
    /// no node holds. Returns how many were taken back and dropped.
    pub(super) async fn adopt(&self) -> (usize, usize) {
        let Some((registry, _)) = self.registry() else {
            return (0, 0);
        };
        let (mut taken, mut dropped) = (0, 0);
        let mut mine = std::collections::HashSet::new();
        for (key, entry) in self.all_sessions().await {
            let Some(o) = owned(&entry) else { continue };
            if o.owner != *self.node {
                continue;
            }
            lock(&self.sessions.owned).insert(key.clone(), entry.revision);
            if let Some(id) = id_of(&key) {
                if registry.get(&id).is_none() {
                    if let Some(card) = o.card {
                        self.take_in(card).await;
                        taken += 1;
                    }
                }
                mine.insert(id);
            }
        }
        for id in registry.persistent_ids() {
            if mine.contains(&id) {
                continue;
            }
            let key = key(&id);
            match self.sessions.kv.entry(key.clone()).await {
                Ok(Some(e)) if owned(&e).is_some() => {
                    registry.drop_stale(&id).await;
                    dropped += 1;
                }
                Ok(_) => {
                    if let Ok(r) = self
                        .sessions
                        .kv
                        .create(&key, image::encode_owned(&self.node, None).into())
                        .await
                    {
                        lock(&self.sessions.owned).insert(key, r);
                        self.note(&id);
                    } else {
                        registry.drop_stale(&id).await;
                        dropped += 1;
                    }
                }
                Err(e) => {
                    tracing::warn!(session = %id, "cannot check its owner in the cluster: {e}")
                }
            }
        }
        (taken, dropped)
    }
}

/// What a former owner answered.
enum Answer {
    /// Its session.
    Image(Box<Card>),
    /// It had no session for the id.
    NoSession,
    /// No answer: the card in the bucket stands in.
    Gone,
}
