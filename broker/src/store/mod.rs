//! Durable state: persistent sessions, their subscriptions, queues and
//! QoS 1/2 state, retained messages and the plugins' key-value stores, in
//! an embedded store that survives a restart or a crash
//! (`[persistence] dir`).
//!
//! Memory stays the broker's working copy; the store is written alongside
//! it and read only at start ([`recover`]). Each change is an [`Op`] on a
//! keyspace ([`backend::Space`]), submitted to the single
//! [`writer::GroupWriter`], which commits everything submitted since its
//! last commit as one batch. A message is stored once however many
//! sessions queue it: sessions hold it by id, and the store counts the
//! references in memory (rebuilt at recovery), deleting the message with
//! the last delivery that refers to it.
//!
//! Architecture invariant: what a persistent session's client or a
//! publisher is told is durable — PUBACK/PUBREC of a message queued for a
//! persistent session, PUBREC of a QoS 2 message (its packet id), PUBREL,
//! SUBACK and the CONNACK of a persistent session — is sent only after the
//! change is committed, unless `durability = "none"`.
//!
//! Architecture invariant: sessions that do not outlive their connection
//! (clean session, expiry 0) never touch the store.

pub mod backend;
mod held;
pub mod inspect;
mod keys;
pub(crate) mod records;
pub mod recover;
mod salvage;
mod writer;

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::codec::SubscriptionOptions;
use crate::config::{Durability, PersistenceConfig};
use crate::message::{Delivery, Message};
use crate::session::{OutState, SubscriberId};
use crate::topic::{PacketId, Subscription};

use self::backend::{Backend, Space};
pub(crate) use self::held::Held;
use self::records::{DeliveryRecord, DeliveryState};
pub(crate) use self::records::{SessionRecord, instant_of, now_ms};
pub use self::recover::{Recovered, RecoveredSession, RecoveryReport};
pub use self::writer::WriterStats;
use self::writer::{GroupWriter, Op};

/// The store's format; a store written by a newer format is refused.
pub const FORMAT: u32 = 1;

/// Submitted bytes the writer has not taken past which even
/// `durability = "none"` makes acknowledgements wait.
const BACKLOG_LIMIT: usize = 64 << 20;

/// What went wrong with the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {error}", path = .0.display(), error = .1)]
    Io(PathBuf, std::io::Error),
    #[error("cannot open the store in {}: {source}", .path.display())]
    Open { path: PathBuf, source: fjall::Error },
    #[error(
        "the store in {} is in use by another process (a running broker?)",
        .0.display()
    )]
    Locked(PathBuf),
    #[error("store: {0}")]
    Engine(fjall::Error),
    #[error(
        "the store in {} has format {found}, newer than this broker's ({FORMAT}); \
         run the newer broker, or move the directory away to start empty",
        .path.display()
    )]
    NewerFormat { path: PathBuf, found: u32 },
    #[error("cannot start the store's writer thread: {0}")]
    Thread(std::io::Error),
    #[error("the store could not write this change")]
    Failed,
}

impl StoreError {
    fn open(path: &Path, source: fjall::Error) -> Self {
        if matches!(source, fjall::Error::Locked) {
            return StoreError::Locked(path.to_owned());
        }
        StoreError::Open {
            path: path.to_owned(),
            source,
        }
    }

    /// Whether the engine found its files damaged (rather than locked by
    /// another process, unreadable, or of another version): only then is
    /// the store moved aside.
    fn is_damage(&self) -> bool {
        use fjall::Error as E;
        match self {
            StoreError::Open { source, .. } => match source {
                E::Storage(fjall::LsmError::Io(_))
                | E::Io(_)
                | E::Locked
                | E::InvalidVersion(_)
                | E::Poisoned => false,
                E::Storage(_)
                | E::JournalRecovery(_)
                | E::Decompress(_)
                | E::InvalidTrailer
                | E::InvalidTag(_)
                | E::Unrecoverable => true,
                _ => false,
            },
            _ => false,
        }
    }
}

/// A stored delivery: its queue entry and its message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stored {
    pub seq: u64,
    pub message: u64,
}

thread_local! {
    /// The highest ticket submitted on this thread since [`Store::begin`]:
    /// routing a PUBLISH is synchronous, so what it stored for every
    /// session it reached is collected here without threading tickets
    /// through the router.
    static TOUCHED: Cell<u64> = const { Cell::new(0) };
    /// The one message whose deliveries are all this thread stored since
    /// [`Store::begin`] (0: nothing stored; [`MIXED`]: other changes
    /// too): see [`Store::settles`].
    static ONLY: Cell<u64> = const { Cell::new(0) };
}

/// [`ONLY`] when more than one message's deliveries, or other changes,
/// were stored.
const MIXED: u64 = u64::MAX;

/// The durable store of one broker.
pub struct Store {
    dir: PathBuf,
    backend: Arc<dyn Backend>,
    writer: GroupWriter,
    durability: Durability,
    held: Mutex<Held>,
    next_seq: AtomicU64,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.dir)
            .field("durability", &self.durability)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the store of `config` (which has a `dir`) and reads it back.
    /// A store the engine cannot open is moved aside (and logged) and an
    /// empty one started; a store of a newer format is refused.
    pub fn open(config: &PersistenceConfig) -> Result<(Arc<Store>, Recovered), StoreError> {
        let dir = config.dir.clone().unwrap_or_default();
        let backend: Arc<dyn Backend> = match backend::Fjall::open(&dir) {
            Ok(b) => Arc::new(b),
            Err(e @ StoreError::Open { .. }) if e.is_damage() => {
                let aside = aside_name(&dir);
                match salvage::salvage(&dir, &aside) {
                    Ok(Some(s)) => tracing::error!(
                        "{e}; the journal {} is cut at its damaged batch: {} bytes kept, {} \
                         dropped{}, with what they held; the damaged store is copied to {}",
                        s.journal.display(),
                        s.kept,
                        s.dropped,
                        if s.dropped_journals > 0 {
                            format!(" and {} newer journal files", s.dropped_journals)
                        } else {
                            String::new()
                        },
                        aside.display()
                    ),
                    outcome => {
                        if let Err(s) = outcome {
                            tracing::error!("store: salvaging the journal failed: {s}");
                        }
                        // Nothing is deleted: a copy made before the
                        // failure stays beside the store moved aside.
                        let mut target = aside.clone().into_os_string();
                        if aside.exists() {
                            target.push(".whole");
                        }
                        let target = PathBuf::from(target);
                        tracing::error!(
                            "{e}; it is moved to {} and the broker starts with an empty store",
                            target.display()
                        );
                        std::fs::rename(&dir, &target)
                            .map_err(|e| StoreError::Io(dir.clone(), e))?;
                    }
                }
                Arc::new(backend::Fjall::open(&dir)?)
            }
            Err(e) => return Err(e),
        };
        Self::with_backend(dir, backend, config)
    }

    /// A store over `backend` (tests use [`backend::Memory`]).
    pub fn with_backend(
        dir: PathBuf,
        backend: Arc<dyn Backend>,
        config: &PersistenceConfig,
    ) -> Result<(Arc<Store>, Recovered), StoreError> {
        recover::check_format(&dir, &*backend)?;
        let started = std::time::Instant::now();
        let (mut recovered, held, next_seq) = recover::read(&*backend)?;
        let writer =
            GroupWriter::start(backend.clone(), config.durability, config.sync_interval())?;
        let store = Arc::new(Store {
            dir,
            backend,
            writer,
            durability: config.durability,
            held: Mutex::new(held),
            next_seq: AtomicU64::new(next_seq),
        });
        // Orphans and damaged entries found while reading go now.
        store.submit(recovered.cleanup.drain_ops());
        recovered.report.elapsed = started.elapsed();
        Ok((store, recovered))
    }

    /// Where the store lives.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The durability setting.
    pub fn durability(&self) -> Durability {
        self.durability
    }

    fn held(&self) -> MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn submit(&self, ops: impl IntoIterator<Item = Op>) -> u64 {
        ONLY.with(|o| o.set(MIXED));
        self.submit_for(ops, true)
    }

    /// Submits changes of a delivery in flight to a connected client
    /// (sent, or completed), which the writer may wait a moment for.
    fn submit_delivery(&self, ops: impl IntoIterator<Item = Op>) -> u64 {
        ONLY.with(|o| o.set(MIXED));
        self.submit_for(ops, false)
    }

    /// Submits `ops` (the caller accounts for them in [`ONLY`]); `lasting`:
    /// nothing will cancel them soon.
    fn submit_for(&self, ops: impl IntoIterator<Item = Op>, lasting: bool) -> u64 {
        let ticket = self.writer.submit(ops, lasting);
        TOUCHED.with(|t| t.set(t.get().max(ticket)));
        ticket
    }

    /// Starts collecting the tickets this thread submits (see
    /// [`Store::touched`], [`Store::settles`]).
    pub fn begin() {
        TOUCHED.with(|t| t.set(0));
        ONLY.with(|o| o.set(0));
    }

    /// The message whose new stored deliveries are everything this thread
    /// submitted since [`Store::begin`], if so: once it is settled
    /// ([`Store::settled`]) nothing submitted since then needs the commit
    /// any more.
    pub fn settles() -> Option<u64> {
        let only = ONLY.with(Cell::get);
        (only != 0 && only != MIXED).then_some(only)
    }

    /// The highest ticket this thread submitted since [`Store::begin`]
    /// (0: none).
    pub fn touched() -> u64 {
        TOUCHED.with(Cell::get)
    }

    /// The ticket an acknowledgement must wait for before it is sent, if
    /// any: `ticket` unless it is committed already, or durability is
    /// `"none"` and the writer keeps up.
    pub fn must_wait(&self, ticket: u64) -> Option<u64> {
        if ticket == 0 || self.writer.committed() >= ticket {
            return None;
        }
        if self.durability == Durability::None && self.writer.backlog() < BACKLOG_LIMIT {
            return None;
        }
        Some(ticket)
    }

    /// Waits until `ticket` is committed.
    pub async fn wait(&self, ticket: u64) -> Result<(), StoreError> {
        self.writer.wait(ticket).await
    }

    /// The last ticket committed.
    pub fn committed(&self) -> u64 {
        self.writer.committed()
    }

    /// The last ticket handed out (everything submitted so far).
    pub fn last_ticket(&self) -> u64 {
        self.writer.submitted()
    }

    /// The writer's counters.
    pub fn stats(&self) -> &WriterStats {
        self.writer.stats()
    }

    /// Bytes submitted and not yet taken by the writer.
    pub fn backlog(&self) -> usize {
        self.writer.backlog()
    }

    /// Bytes on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.backend.disk_bytes()
    }

    /// Messages held by stored deliveries.
    pub fn held_messages(&self) -> usize {
        self.held().len()
    }

    /// Commits what is queued and fsyncs (shutdown).
    pub fn close(&self) {
        self.writer.close();
        if let Err(e) = self.backend.sync() {
            tracing::error!("store: final fsync failed: {e}");
        }
    }

    /// The handle a persistent session writes through.
    pub fn session(self: &Arc<Self>, id: &SubscriberId) -> Persisted {
        Persisted {
            store: self.clone(),
            key: keys::id_key(id).into_boxed_slice(),
        }
    }

    /// Stores `message` as the retained message of its topic (or clears
    /// it, for an empty payload).
    pub fn retain(&self, mountpoint: &str, message: &Message) -> u64 {
        let key = keys::retained_key(mountpoint, message.topic.as_str());
        self.submit([if message.payload.is_empty() {
            Op::Delete(Space::Retained, key)
        } else {
            Op::Put(Space::Retained, key, records::encode_message(message))
        }])
    }

    /// Removes the retained message of `topic` (expired).
    pub fn unretain(&self, mountpoint: &str, topic: &str) {
        self.submit([Op::Delete(
            Space::Retained,
            keys::retained_key(mountpoint, topic),
        )]);
    }

    /// Sets (`Some`) or deletes a plugin's key-value entry.
    pub fn plugin_kv(&self, plugin: &str, key: &str, value: Option<&[u8]>) {
        let k = keys::kv_key(plugin, key);
        self.submit([match value {
            Some(v) => {
                let mut w = records::Writer::new();
                w.bytes(v);
                Op::Put(Space::PluginKv, k, w.finish())
            }
            None => Op::Delete(Space::PluginKv, k),
        }]);
    }

    /// A reference to `message` from a new stored delivery: the message's
    /// id, and the op storing it if it is not stored yet.
    fn hold(&self, message: &Arc<Message>) -> (u64, Option<Op>) {
        let (id, new) = self.held().hold(message);
        // Encoded by the writer, and only if it is still there when the
        // batch is built.
        let op = new.then(|| Op::PutNewMessage(id.to_be_bytes().to_vec(), message.clone()));
        (id, op)
    }

    /// Drops a reference to message `id`: the op deleting it, if it was
    /// the last.
    fn release(&self, id: u64) -> Option<Op> {
        self.held()
            .release(id)
            .then(|| Op::Delete(Space::Messages, id.to_be_bytes().to_vec()))
    }

    /// Whether message `id` is settled: every stored delivery of it
    /// completed, so nothing of it has to be on disk any more.
    pub fn is_settled(&self, id: u64) -> bool {
        self.held().is_settled(id)
    }

    /// Completes once message `id` is settled.
    pub async fn settled(&self, id: u64) {
        std::future::poll_fn(|cx| self.held().poll_settled(id, cx)).await;
    }

    /// Forgets a wait for message `id` that ended otherwise (its commit
    /// came first).
    pub fn unwatch(&self, id: u64) {
        self.held().unwatch(id);
    }
}

/// `dir` renamed aside: `dir.corrupt-<ms since the epoch>`.
fn aside_name(dir: &Path) -> PathBuf {
    let mut name = dir.as_os_str().to_owned();
    name.push(format!(".corrupt-{}", now_ms()));
    PathBuf::from(name)
}

/// A persistent session's way into the store.
pub struct Persisted {
    store: Arc<Store>,
    key: Box<[u8]>,
}

impl std::fmt::Debug for Persisted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Persisted").finish_non_exhaustive()
    }
}

impl Persisted {
    /// The store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Writes the session's record.
    pub(crate) fn put_session(&self, record: &SessionRecord) -> u64 {
        self.store.submit([Op::Put(
            Space::Sessions,
            self.key.to_vec(),
            records::encode_session(record),
        )])
    }

    /// Deletes everything of the session. Its deliveries' messages must be
    /// released with [`Persisted::forget`].
    pub fn end(&self) -> u64 {
        let k = self.key.to_vec();
        self.store.submit([
            Op::Delete(Space::Sessions, k.clone()),
            Op::DeletePrefix(Space::Subscriptions, k.clone()),
            Op::DeletePrefix(Space::Queue, k.clone()),
            Op::DeletePrefix(Space::IncomingQos2, k),
        ])
    }

    /// Stores a subscription.
    pub fn subscribe(
        &self,
        subscription: &Subscription,
        options: &SubscriptionOptions,
        identifier: Option<u32>,
    ) -> u64 {
        self.store.submit([Op::Put(
            Space::Subscriptions,
            keys::sub_key(&self.key, &subscription.to_string()),
            records::encode_subscription(options, identifier),
        )])
    }

    /// Removes a subscription.
    pub fn unsubscribe(&self, subscription: &Subscription) -> u64 {
        self.store.submit([Op::Delete(
            Space::Subscriptions,
            keys::sub_key(&self.key, &subscription.to_string()),
        )])
    }

    fn record(d: &Delivery, message: u64, state: DeliveryState) -> Vec<u8> {
        records::encode_delivery(&DeliveryRecord {
            message,
            qos: d.qos,
            retain: d.retain,
            subscription_ids: d.subscription_ids.clone(),
            state,
        })
    }

    /// Stores a delivery entering the session's queue; `online`: the
    /// session's client is connected (so the delivery may well be
    /// acknowledged before it is written).
    pub fn queue(&self, d: &Delivery, online: bool) -> Stored {
        let (message, put) = self.store.hold(&d.message);
        let seq = self.store.next_seq.fetch_add(1, Ordering::Relaxed);
        let op = Op::PutNew(
            Space::Queue,
            keys::seq_key(&self.key, seq),
            Self::record(d, message, DeliveryState::Queued),
        );
        // Only deliveries to connected clients can settle soon; one to an
        // offline session has its batch written at once anyway.
        ONLY.with(|o| {
            let only = o.get();
            let one = online && (only == 0 || only == message);
            o.set(if one { message } else { MIXED });
        });
        self.store.submit_for(put.into_iter().chain([op]), !online);
        Stored { seq, message }
    }

    /// A stored delivery was sent with `pid` and now waits in `state`.
    pub fn sent(&self, d: &Delivery, pid: PacketId, state: OutState) -> u64 {
        let Some(s) = d.stored else { return 0 };
        self.store.submit_delivery([Op::Put(
            Space::Queue,
            keys::seq_key(&self.key, s.seq),
            Self::record(d, s.message, DeliveryState::Sent(pid, state)),
        )])
    }

    /// A stored delivery is complete (acknowledged, or dropped).
    pub fn done(&self, d: &Delivery) -> u64 {
        let Some(s) = d.stored else { return 0 };
        let delete = Op::Delete(Space::Queue, keys::seq_key(&self.key, s.seq));
        let release = self.store.release(s.message);
        self.store
            .submit_delivery(std::iter::once(delete).chain(release))
    }

    /// Releases the message of a delivery whose entry went with
    /// [`Persisted::end`].
    pub fn forget(&self, d: &Delivery) {
        if let Some(s) = d.stored {
            if let Some(op) = self.store.release(s.message) {
                self.store.submit([op]);
            }
        }
    }

    /// A QoS 2 PUBLISH with `pid` was taken: stored until PUBREL, so a
    /// resend after a restart is still recognised.
    pub fn incoming_qos2(&self, pid: PacketId) -> u64 {
        self.store.submit([Op::Put(
            Space::IncomingQos2,
            keys::pid_key(&self.key, pid),
            records::Writer::new().finish(),
        )])
    }

    /// PUBREL for `pid`.
    pub fn released_qos2(&self, pid: PacketId) -> u64 {
        self.store.submit([Op::Delete(
            Space::IncomingQos2,
            keys::pid_key(&self.key, pid),
        )])
    }
}

#[cfg(test)]
mod tests;
