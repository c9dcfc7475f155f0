//! The single writer: every change to the store goes through one thread
//! that commits whatever has been submitted since its last commit as one
//! batch (group commit), then fsyncs as the durability setting asks.
//!
//! Submitting is a push onto a list under a mutex and returns a ticket;
//! tickets are handed out in submission order and committed in that
//! order, so "ticket `t` is committed" means every change submitted up to
//! it is. Acknowledgements that promise durability wait for their ticket
//! ([`GroupWriter::wait`]).
//!
//! Submitted changes are folded at once into the batch being gathered,
//! keyed by store key: within a batch only the last change of a key is
//! written, and a key created and deleted within one batch (a delivery
//! acknowledged before its batch commits, and its message) is not written
//! at all, not even as a tombstone. Under load the writer lets a batch
//! gather for a few milliseconds before taking it (up to [`GATHER`]), so
//! that deliveries their subscribers acknowledge quickly never reach the
//! disk; the publishers' acknowledgements do not wait for that, as their
//! messages settle first (`store::held`).
//!
//! Architecture invariant: changes to one key are applied in the order
//! they were submitted.

use std::collections::{HashMap, hash_map};

use foldhash::fast::RandomState;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::backend::{Backend, Batch, Space};
use super::{StoreError, records};
use crate::config::Durability;
use crate::message::Message;

/// One change.
#[derive(Debug)]
pub(crate) enum Op {
    Put(Space, Vec<u8>, Vec<u8>),
    /// A put of a key that was never written before (sequence numbers
    /// and message ids are not reused).
    PutNew(Space, Vec<u8>, Vec<u8>),
    /// A new message (in `messages`), encoded when its batch is built.
    PutNewMessage(Vec<u8>, Arc<Message>),
    Delete(Space, Vec<u8>),
    /// Deletes every key of the keyspace starting with the prefix.
    DeletePrefix(Space, Vec<u8>),
}

impl Op {
    fn bytes(&self) -> usize {
        match self {
            Op::Put(_, k, v) | Op::PutNew(_, k, v) => 32 + k.len() + v.len(),
            Op::PutNewMessage(k, m) => 32 + k.len() + m.size(),
            Op::Delete(_, k) | Op::DeletePrefix(_, k) => 32 + k.len(),
        }
    }
}

/// A key's last change in the batch being built.
enum Change {
    Put(Vec<u8>),
    Message(Arc<Message>),
    Delete,
}

/// A change, and whether its key was created in this batch (so that a
/// delete of it leaves nothing to write).
struct Entry {
    change: Change,
    fresh: bool,
}

/// The batch being gathered: the last change of each key.
type Changes = HashMap<(Space, Vec<u8>), Entry, RandomState>;

/// How long, at most, the writer lets a batch gather while busy: only
/// while it holds nothing but deliveries to connected clients (queued,
/// sent, completed). A lasting change (a delivery queued for an offline
/// session, a session, a subscription, a retained message…), which
/// nothing will cancel soon, has its batch taken at once, so that what
/// waits for it (a CONNACK, a SUBACK, a publisher's PUBACK) is not held
/// longer than the write.
const GATHER: Duration = Duration::from_millis(10);

/// Changes in a batch past which the writer counts as busy (so the next
/// batch gathers).
const BUSY: usize = 32;

/// Bytes past which a gathering batch is taken at once.
const GATHER_BYTES: usize = 1 << 20;

#[derive(Default)]
struct Pending {
    changes: Changes,
    /// Prefixes deleted in this batch, to be expanded against what is
    /// committed when the batch is built.
    prefixes: Vec<(Space, Vec<u8>)>,
    /// Changes submitted to this batch (before folding).
    ops: usize,
    /// Whether a change in the batch is lasting (see [`GATHER`]).
    lasting: bool,
    bytes: usize,
    /// The last ticket handed out.
    submitted: u64,
    closing: bool,
}

/// Counters of the writer, for `/metrics`.
#[derive(Debug, Default)]
pub struct WriterStats {
    pub batches: AtomicU64,
    pub ops: AtomicU64,
    /// Key writes (puts and deletes) that reached the engine: `ops` less
    /// what folded away in its batch.
    pub writes: AtomicU64,
    pub bytes: AtomicU64,
    pub syncs: AtomicU64,
    pub failures: AtomicU64,
    /// Total and largest commit time (batch write, and fsync with
    /// `durability = "always"`), microseconds.
    pub commit_micros: AtomicU64,
    pub commit_micros_max: AtomicU64,
}

struct Shared {
    pending: Mutex<Pending>,
    wake: Condvar,
    committed: watch::Sender<u64>,
    /// Tickets of the last failed batch: `(first, last)`.
    failed: Mutex<Option<(u64, u64)>>,
    stats: WriterStats,
}

/// The writer thread and its queue.
pub(crate) struct GroupWriter {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for GroupWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupWriter").finish_non_exhaustive()
    }
}

impl GroupWriter {
    /// Starts the writer thread over `backend`.
    pub(crate) fn start(
        backend: Arc<dyn Backend>,
        durability: Durability,
        sync_interval: Duration,
    ) -> Result<Self, StoreError> {
        Self::start_gathering(backend, durability, sync_interval, GATHER)
    }

    /// [`GroupWriter::start`] with a gathering time other than [`GATHER`].
    fn start_gathering(
        backend: Arc<dyn Backend>,
        durability: Durability,
        sync_interval: Duration,
        gather: Duration,
    ) -> Result<Self, StoreError> {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
            committed: watch::channel(0).0,
            failed: Mutex::new(None),
            stats: WriterStats::default(),
        });
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("sluice-store".into())
                .spawn(move || run(&shared, &*backend, durability, sync_interval, gather))
                .map_err(StoreError::Thread)?
        };
        Ok(GroupWriter {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    fn pending(&self) -> MutexGuard<'_, Pending> {
        lock(&self.shared.pending)
    }

    /// Queues changes; returns the ticket that is committed once they are.
    /// `lasting`: nothing will cancel them soon (see [`GATHER`]).
    pub(crate) fn submit(&self, ops: impl IntoIterator<Item = Op>, lasting: bool) -> u64 {
        let mut p = self.pending();
        // A gathering writer is woken by the first lasting change.
        let ends_gathering = lasting && !p.lasting;
        p.lasting |= lasting;
        let was_empty = p.ops == 0;
        let was_small = p.bytes < GATHER_BYTES;
        for op in ops {
            p.bytes += op.bytes();
            p.ops += 1;
            p.fold(op);
        }
        p.submitted += 1;
        let ticket = p.submitted;
        let grown = was_small && p.bytes >= GATHER_BYTES;
        drop(p);
        if was_empty || grown || ends_gathering {
            self.shared.wake.notify_one();
        }
        ticket
    }

    /// The last ticket handed out.
    pub(crate) fn submitted(&self) -> u64 {
        self.pending().submitted
    }

    /// The last ticket committed.
    pub(crate) fn committed(&self) -> u64 {
        *self.shared.committed.borrow()
    }

    /// Bytes submitted and not yet taken by the writer.
    pub(crate) fn backlog(&self) -> usize {
        self.pending().bytes
    }

    /// Waits until `ticket` is committed; an error if its batch failed.
    pub(crate) async fn wait(&self, ticket: u64) -> Result<(), StoreError> {
        if self.committed() < ticket {
            let mut rx = self.shared.committed.subscribe();
            // The sender lives as long as `self`.
            let _ = rx.wait_for(|c| *c >= ticket).await;
        }
        match *lock(&self.shared.failed) {
            Some((first, last)) if (first..=last).contains(&ticket) => Err(StoreError::Failed),
            _ => Ok(()),
        }
    }

    pub(crate) fn stats(&self) -> &WriterStats {
        &self.shared.stats
    }

    /// Commits what is queued and stops the thread.
    pub(crate) fn close(&self) {
        self.pending().closing = true;
        self.shared.wake.notify_one();
        if let Some(t) = lock(&self.thread).take() {
            let _ = t.join();
        }
    }
}

impl Drop for GroupWriter {
    fn drop(&mut self) {
        self.close();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The writer thread: take everything queued, commit it as one batch,
/// publish the ticket; fsync on the interval while there is unsynced
/// data.
fn run(
    shared: &Shared,
    backend: &dyn Backend,
    durability: Durability,
    interval: Duration,
    gather_busy: Duration,
) {
    let sync_each = durability == Durability::Always;
    let mut dirty = false;
    let mut last_sync = Instant::now();
    let mut last_take = Instant::now();
    // How long the batch being gathered may wait (zero: not busy).
    let mut gather = Duration::ZERO;
    loop {
        let (taken, ticket) = {
            let mut p = lock(&shared.pending);
            loop {
                if p.ops > 0 {
                    // Busy: let the batch gather, so that what is
                    // acknowledged meanwhile cancels out.
                    let gathered = last_take.elapsed();
                    if p.closing || p.lasting || gathered >= gather || p.bytes >= GATHER_BYTES {
                        break;
                    }
                    p = shared
                        .wake
                        .wait_timeout(p, gather - gathered)
                        .map(|(p, _)| p)
                        .unwrap_or_else(|e| e.into_inner().0);
                    continue;
                }
                if p.closing {
                    drop(p);
                    if dirty {
                        sync(shared, backend);
                    }
                    return;
                }
                if dirty {
                    let left = interval.saturating_sub(last_sync.elapsed());
                    if left.is_zero() {
                        drop(p);
                        sync(shared, backend);
                        dirty = false;
                        last_sync = Instant::now();
                        p = lock(&shared.pending);
                        continue;
                    }
                    p = shared
                        .wake
                        .wait_timeout(p, left)
                        .map(|(p, _)| p)
                        .unwrap_or_else(|e| e.into_inner().0);
                } else {
                    p = shared.wake.wait(p).unwrap_or_else(|e| e.into_inner());
                }
            }
            last_take = Instant::now();
            gather = if p.ops < BUSY {
                Duration::ZERO
            } else {
                gather_busy
            };
            (p.take(), p.submitted)
        };
        let first = *shared.committed.borrow() + 1;
        let start = Instant::now();
        let n = taken.ops as u64;
        let result = build(backend, taken).and_then(|(batch, bytes)| {
            if !batch.is_empty() {
                backend.apply(&batch, sync_each)?;
            }
            Ok((batch.len() as u64, bytes))
        });
        let micros = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
        let s = &shared.stats;
        match result {
            Ok((writes, bytes)) => {
                s.batches.fetch_add(1, Ordering::Relaxed);
                s.ops.fetch_add(n, Ordering::Relaxed);
                s.writes.fetch_add(writes, Ordering::Relaxed);
                s.bytes.fetch_add(bytes, Ordering::Relaxed);
                s.commit_micros.fetch_add(micros, Ordering::Relaxed);
                s.commit_micros_max.fetch_max(micros, Ordering::Relaxed);
                if sync_each {
                    s.syncs.fetch_add(1, Ordering::Relaxed);
                } else {
                    dirty = true;
                }
            }
            Err(e) => {
                s.failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    "store: a batch of {n} changes could not be written ({e}); \
                     the acknowledgements waiting for it are refused"
                );
                *lock(&shared.failed) = Some((first, ticket));
            }
        }
        shared.committed.send_replace(ticket);
        if dirty && last_sync.elapsed() >= interval {
            sync(shared, backend);
            dirty = false;
            last_sync = Instant::now();
        }
    }
}

fn sync(shared: &Shared, backend: &dyn Backend) {
    match backend.sync() {
        Ok(()) => {
            shared.stats.syncs.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => {
            shared.stats.failures.fetch_add(1, Ordering::Relaxed);
            tracing::error!("store: fsync failed: {e}");
        }
    }
}

/// What the writer takes from [`Pending`].
struct Taken {
    changes: Changes,
    prefixes: Vec<(Space, Vec<u8>)>,
    ops: usize,
}

impl Pending {
    /// Folds `op` into the batch being gathered.
    fn fold(&mut self, op: Op) {
        let changes = &mut self.changes;
        match op {
            Op::Put(s, k, v) => put(changes, (s, k), Change::Put(v), false),
            Op::PutNew(s, k, v) => put(changes, (s, k), Change::Put(v), true),
            Op::PutNewMessage(k, m) => {
                put(changes, (Space::Messages, k), Change::Message(m), true);
            }
            Op::Delete(s, k) => delete(changes, (s, k)),
            Op::DeletePrefix(s, p) => {
                // Rare (a session ends): a pass over the batch is fine.
                let earlier: Vec<_> = changes
                    .keys()
                    .filter(|(sp, k)| *sp == s && k.starts_with(&p))
                    .cloned()
                    .collect();
                for k in earlier {
                    delete(changes, k);
                }
                self.prefixes.push((s, p));
            }
        }
    }

    /// The batch gathered so far; an empty one starts.
    fn take(&mut self) -> Taken {
        self.bytes = 0;
        self.lasting = false;
        Taken {
            changes: std::mem::take(&mut self.changes),
            prefixes: std::mem::take(&mut self.prefixes),
            ops: std::mem::take(&mut self.ops),
        }
    }
}

fn put(changes: &mut Changes, key: (Space, Vec<u8>), change: Change, new: bool) {
    match changes.entry(key) {
        hash_map::Entry::Occupied(mut e) => {
            let fresh = new || e.get().fresh;
            e.insert(Entry { change, fresh });
        }
        hash_map::Entry::Vacant(e) => {
            e.insert(Entry { change, fresh: new });
        }
    }
}

/// Deletes `key` in the batch (cancelling its creation in it, if so).
fn delete(changes: &mut Changes, key: (Space, Vec<u8>)) {
    match changes.entry(key) {
        hash_map::Entry::Occupied(e) if e.get().fresh => {
            e.remove();
        }
        hash_map::Entry::Occupied(mut e) => {
            e.get_mut().change = Change::Delete;
        }
        hash_map::Entry::Vacant(e) => {
            e.insert(Entry {
                change: Change::Delete,
                fresh: false,
            });
        }
    }
}

/// The batch of what was taken: the last change of each key, and a delete
/// of every committed key under a prefix deleted in it unless the batch
/// changes that key again (a change folded after the prefix's delete).
fn build(backend: &dyn Backend, taken: Taken) -> Result<(Batch, u64), StoreError> {
    let Taken {
        mut changes,
        prefixes,
        ..
    } = taken;
    for (s, p) in prefixes {
        let mut found = Vec::new();
        backend.scan(s, &p, &mut |k, _| found.push(k.to_vec()))?;
        for k in found {
            changes.entry((s, k)).or_insert(Entry {
                change: Change::Delete,
                fresh: false,
            });
        }
    }
    let mut batch = Batch::new();
    let mut bytes = 0u64;
    for (key, entry) in changes {
        let value = match entry.change {
            Change::Put(v) => Some(v),
            Change::Message(m) => Some(records::encode_message(&m)),
            Change::Delete => None,
        };
        bytes += (key.1.len() + value.as_ref().map_or(0, Vec::len)) as u64;
        batch.insert(key, value);
    }
    Ok((batch, bytes))
}

#[cfg(test)]
mod tests {
    use super::super::backend::Memory;
    use super::*;

    fn keys(m: &Memory, s: Space) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        m.scan(s, b"", &mut |k, _| out.push(k.to_vec())).unwrap();
        out
    }

    #[tokio::test]
    async fn batches_keep_the_last_change_and_expand_prefixes() {
        let m = Arc::new(Memory::default());
        let w = GroupWriter::start(m.clone(), Durability::Always, Duration::from_secs(1)).unwrap();
        let q = Space::Queue;
        let t = w.submit(
            [
                Op::Put(q, b"a1".to_vec(), b"x".to_vec()),
                Op::Put(q, b"a2".to_vec(), b"x".to_vec()),
                Op::Put(q, b"b1".to_vec(), b"x".to_vec()),
            ],
            false,
        );
        w.wait(t).await.unwrap();
        let t = w.submit(
            [
                Op::Put(q, b"a3".to_vec(), b"x".to_vec()),
                Op::DeletePrefix(q, b"a".to_vec()),
                Op::Put(q, b"a4".to_vec(), b"y".to_vec()),
                Op::Put(q, b"b2".to_vec(), b"x".to_vec()),
                Op::Delete(q, b"b2".to_vec()),
            ],
            false,
        );
        w.wait(t).await.unwrap();
        assert_eq!(keys(&m, q), [b"a4".to_vec(), b"b1".to_vec()]);
        // A key created and deleted in one batch leaves nothing, not even
        // a tombstone over an older value of another key.
        let t = w.submit(
            [
                Op::PutNew(q, b"c1".to_vec(), b"x".to_vec()),
                Op::Put(q, b"c1".to_vec(), b"y".to_vec()),
                Op::Delete(q, b"c1".to_vec()),
                Op::Delete(q, b"b1".to_vec()),
            ],
            false,
        );
        w.wait(t).await.unwrap();
        assert_eq!(keys(&m, q), [b"a4".to_vec()]);
        assert!(w.committed() >= t);
        w.close();
    }

    #[tokio::test]
    async fn a_busy_writer_gathers_deliveries_and_takes_lasting_changes_at_once() {
        let m = Arc::new(Memory::default());
        // A gathering time no test run reaches: only a lasting change ends
        // a busy batch here.
        let long = Duration::from_secs(60);
        let w = GroupWriter::start_gathering(
            m.clone(),
            Durability::Always,
            Duration::from_secs(1),
            long,
        )
        .unwrap();
        let q = Space::Queue;
        let busy: Vec<_> = (0..BUSY)
            .map(|i| Op::PutNew(q, format!("b{i:02}").into_bytes(), b"x".to_vec()))
            .collect();
        let t = w.submit(busy, false);
        w.wait(t).await.unwrap();
        assert_eq!(w.stats().writes.load(Ordering::Relaxed), BUSY as u64);
        // Busy now: the next batch gathers. A delivery acknowledged
        // meanwhile cancels out; a lasting change has the batch taken.
        let started = Instant::now();
        w.submit([Op::PutNew(q, b"d".to_vec(), b"x".to_vec())], false);
        w.submit([Op::Delete(q, b"d".to_vec())], false);
        w.submit([Op::PutNew(q, b"e".to_vec(), b"x".to_vec())], false);
        let t = w.submit(
            [Op::Put(Space::Sessions, b"s".to_vec(), b"x".to_vec())],
            true,
        );
        w.wait(t).await.unwrap();
        assert!(started.elapsed() < long, "taken at the lasting change");
        assert_eq!(
            w.stats().writes.load(Ordering::Relaxed),
            BUSY as u64 + 2,
            "d was never written; e and s were"
        );
        assert_eq!(keys(&m, Space::Sessions), [b"s".to_vec()]);
        assert_eq!(keys(&m, q).len(), BUSY + 1);
        w.close();
    }
}
