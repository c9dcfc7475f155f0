//! Where the store's bytes live: the [`Backend`] interface (keyspaces of
//! ordered keys, atomic batches, an fsync) and its two implementations,
//! fjall on disk and a map in memory (tests).
//!
//! The interface is the whole contract the broker relies on, so another
//! engine (redb, SQLite, a replicated one for the cluster) fits behind
//! it: a batch is applied whole or not at all, in the order batches are
//! given, and `sync` makes every applied batch survive a power loss.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use super::StoreError;

/// The store's keyspaces (column families).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Space {
    /// `"format"` → the store's format version.
    Meta,
    /// Session identity → [`super::records::SessionRecord`].
    Sessions,
    /// Identity ‖ subscription → options and identifier.
    Subscriptions,
    /// Identity ‖ sequence number → a delivery (queued or in flight).
    Queue,
    /// Identity ‖ packet id → nothing: incoming QoS 2 awaiting PUBREL.
    IncomingQos2,
    /// Message id → a message, stored once however many queues hold it.
    Messages,
    /// Mountpoint ‖ topic → the retained message.
    Retained,
    /// Plugin ‖ key → value: the plugins' key-value stores.
    PluginKv,
}

impl Space {
    /// Every keyspace.
    pub const ALL: [Space; 8] = [
        Space::Meta,
        Space::Sessions,
        Space::Subscriptions,
        Space::Queue,
        Space::IncomingQos2,
        Space::Messages,
        Space::Retained,
        Space::PluginKv,
    ];

    /// Its name on disk.
    pub fn name(self) -> &'static str {
        match self {
            Space::Meta => "meta",
            Space::Sessions => "sessions",
            Space::Subscriptions => "subscriptions",
            Space::Queue => "queue",
            Space::IncomingQos2 => "incoming_qos2",
            Space::Messages => "messages",
            Space::Retained => "retained",
            Space::PluginKv => "plugin_kv",
        }
    }
}

/// One batch: at most one write per key (`None`: delete), applied
/// together.
#[derive(Debug, Default)]
pub struct Batch(Vec<(Space, Vec<u8>, Option<Vec<u8>>)>);

impl Batch {
    pub fn new() -> Self {
        Batch::default()
    }

    /// Adds the write of a key not yet in the batch.
    pub fn insert(&mut self, (space, key): (Space, Vec<u8>), value: Option<Vec<u8>>) {
        self.0.push((space, key, value));
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn iter(&self) -> impl Iterator<Item = &(Space, Vec<u8>, Option<Vec<u8>>)> {
        self.0.iter()
    }
}

/// An ordered, batched key-value engine.
pub trait Backend: Send + Sync + 'static {
    /// Applies `batch` atomically; with `sync`, returns once it is on
    /// disk (fsynced), else once it survives the process crashing.
    fn apply(&self, batch: &Batch, sync: bool) -> Result<(), StoreError>;
    /// Makes everything applied so far survive a power loss.
    fn sync(&self) -> Result<(), StoreError>;
    /// Calls `visit` with each key and value of `space` starting with
    /// `prefix`, in key order.
    fn scan(
        &self,
        space: Space,
        prefix: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]),
    ) -> Result<(), StoreError>;
    /// Bytes on disk.
    fn disk_bytes(&self) -> u64;
    /// Rewrites the data to reclaim space (deleted entries, tombstones).
    fn compact(&self) -> Result<(), StoreError>;
}

/// fjall: an LSM tree with a journal; every batch is written to the
/// journal before `apply` returns.
pub struct Fjall {
    db: Database,
    spaces: Vec<Keyspace>,
}

impl Fjall {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Io(dir.to_owned(), e))?;
        let db = Database::builder(dir)
            // The writer thread decides when to fsync.
            .manual_journal_persist(true)
            .worker_threads(1)
            .open()
            .map_err(|e| StoreError::open(dir, e))?;
        let spaces = Space::ALL
            .iter()
            .map(|s| db.keyspace(s.name(), KeyspaceCreateOptions::default))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| StoreError::open(dir, e))?;
        Ok(Fjall { db, spaces })
    }

    fn space(&self, s: Space) -> &Keyspace {
        &self.spaces[Space::ALL.iter().position(|x| *x == s).unwrap_or(0)]
    }
}

impl Backend for Fjall {
    fn apply(&self, batch: &Batch, sync: bool) -> Result<(), StoreError> {
        let mut b = self.db.batch().durability(Some(if sync {
            PersistMode::SyncData
        } else {
            PersistMode::Buffer
        }));
        for (space, key, value) in batch.iter() {
            let ks = self.space(*space);
            match value {
                Some(v) => b.insert(ks, key.as_slice(), v.as_slice()),
                None => b.remove(ks, key.as_slice()),
            }
        }
        b.commit().map_err(StoreError::Engine)
    }

    fn sync(&self) -> Result<(), StoreError> {
        self.db
            .persist(PersistMode::SyncData)
            .map_err(StoreError::Engine)
    }

    fn scan(
        &self,
        space: Space,
        prefix: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]),
    ) -> Result<(), StoreError> {
        for guard in self.space(space).prefix(prefix) {
            let (k, v) = guard.into_inner().map_err(StoreError::Engine)?;
            visit(&k, &v);
        }
        Ok(())
    }

    fn disk_bytes(&self) -> u64 {
        self.db.disk_space().unwrap_or(0)
    }

    fn compact(&self) -> Result<(), StoreError> {
        for ks in &self.spaces {
            ks.rotate_memtable_and_wait().map_err(StoreError::Engine)?;
            ks.major_compact().map_err(StoreError::Engine)?;
        }
        self.sync()
    }
}

type Entries = BTreeMap<(Space, Vec<u8>), Vec<u8>>;

/// A map in memory (unit tests; a model of what a backend must do).
#[derive(Default)]
pub struct Memory {
    data: Mutex<Entries>,
}

impl Backend for Memory {
    fn apply(&self, batch: &Batch, _sync: bool) -> Result<(), StoreError> {
        let mut data = self.data.lock().unwrap_or_else(|e| e.into_inner());
        for (space, key, value) in batch.iter() {
            let key = (*space, key.clone());
            match value {
                Some(v) => data.insert(key, v.clone()),
                None => data.remove(&key),
            };
        }
        Ok(())
    }

    fn sync(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn scan(
        &self,
        space: Space,
        prefix: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]),
    ) -> Result<(), StoreError> {
        let data = self.data.lock().unwrap_or_else(|e| e.into_inner());
        for ((_, k), v) in data
            .range((space, prefix.to_vec())..)
            .take_while(|((s, k), _)| *s == space && k.starts_with(prefix))
        {
            visit(k, v);
        }
        Ok(())
    }

    fn disk_bytes(&self) -> u64 {
        0
    }

    fn compact(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
