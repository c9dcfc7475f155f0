//! A plugin's key-value store: shared by every instance of the plugin
//! and carried over to its next version on reload, bounded in bytes, with
//! every entry counted at its key, its value and a fixed overhead (so that
//! tiny keys cannot turn the quota into millions of entries). With a
//! broker store (`[persistence]`), each store is written through to it and
//! read back at start ([`KvStore::bind`]). In a cluster, with the plugin's
//! `kv_cluster`, every change is also sent to the cluster's bucket of the
//! plugin ([`KvStore::replicate`]) and the bucket's entries come back
//! through [`KvStore::apply_replica`], in the bucket's order by revision
//! (see `cluster::order`), so every node ends with the bucket's last value
//! of each key.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::mpsc;

use super::bindings::sluice::plugin::host;
use crate::cluster::order::Pending;
use crate::store::Store;

/// Longest key.
const MAX_KEY_LEN: usize = 256;
/// What an entry costs beyond its key and value: the map's slot and the
/// two allocations.
pub const ENTRY_OVERHEAD: u64 = 64;

/// A bounded key-value store.
#[derive(Debug)]
pub struct KvStore {
    max_bytes: AtomicU64,
    inner: Mutex<KvInner>,
    /// The broker store and the plugin's name there, once bound.
    backing: OnceLock<(Arc<Store>, Arc<str>)>,
    /// Where changes go for the cluster's bucket, once replicated.
    replica: OnceLock<mpsc::Sender<Change>>,
}

/// A change for the cluster: a key and its new value (`None`: deleted).
pub type Change = (String, Option<Vec<u8>>);

#[derive(Debug, Default)]
struct KvInner {
    map: HashMap<String, Vec<u8>>,
    bytes: u64,
    /// This node's changes on their way to the cluster's bucket, and what
    /// the bucket delivered meanwhile.
    pending: Pending<Option<Vec<u8>>>,
}

impl KvStore {
    /// An empty store holding at most `max_bytes` of entries.
    pub fn new(max_bytes: u64) -> Self {
        KvStore {
            max_bytes: AtomicU64::new(max_bytes),
            inner: Mutex::new(KvInner::default()),
            backing: OnceLock::new(),
            replica: OnceLock::new(),
        }
    }

    /// Writes the store through to `store` under `plugin`, starting with
    /// `entries` read back from it (kept whatever the quota: stored data
    /// is not dropped). Once only; false if it was bound already.
    pub fn bind(
        &self,
        store: &Arc<Store>,
        plugin: &Arc<str>,
        entries: Vec<(String, Vec<u8>)>,
    ) -> bool {
        let mut inner = self.lock();
        if self.backing.set((store.clone(), plugin.clone())).is_err() {
            return false;
        }
        for (key, value) in entries {
            let new = cost(&key, &value);
            if let Some(old) = inner.map.insert(key.clone(), value) {
                inner.bytes -= cost(&key, &old);
            }
            inner.bytes += new;
        }
        true
    }

    /// Whether the store writes through to the broker store.
    pub fn is_bound(&self) -> bool {
        self.backing.get().is_some()
    }

    /// Called under the lock, so the store and the cluster see a key's
    /// changes in order.
    fn write_through(&self, inner: &mut KvInner, key: &str, value: Option<&[u8]>) {
        if let Some((store, plugin)) = self.backing.get() {
            store.plugin_kv(plugin, key, value);
        }
        if let Some(replica) = self.replica.get() {
            if replica
                .try_send((key.to_owned(), value.map(<[u8]>::to_vec)))
                .is_ok()
            {
                inner.pending.sent(key);
            } else {
                tracing::warn!(
                    key,
                    "the cluster's key-value bucket of this plugin is behind; the change stays on this node"
                );
            }
        }
    }

    /// Sends every later change to `to` (the cluster's bucket); once only,
    /// false if it was replicated already.
    pub fn replicate(&self, to: mpsc::Sender<Change>) -> bool {
        self.replica.set(to).is_ok()
    }

    /// Whether changes go to the cluster's bucket.
    pub fn is_replicated(&self) -> bool {
        self.replica.get().is_some()
    }

    /// An entry of the cluster's bucket at `revision`, in the bucket's
    /// order.
    pub fn apply_replica(&self, key: &str, value: Option<Vec<u8>>, revision: u64) {
        let mut inner = self.lock();
        if let Some(value) = inner.pending.entry(key, revision, value) {
            self.put_replica(&mut inner, key, value);
        }
    }

    /// JetStream took this node's change of `key` as `revision`.
    pub fn replica_acked(&self, key: &str, revision: u64) {
        let mut inner = self.lock();
        if let Some(value) = inner.pending.acked(key, Some(revision)) {
            self.put_replica(&mut inner, key, value);
        }
    }

    /// Applies a value from the cluster, writing it through to the broker
    /// store. Its writer took it within the same quota, so the quota is
    /// not checked again (nodes must agree), but an entry no node could
    /// have written (a key too long, or a store past twice its quota:
    /// something else writing to the bucket) is refused and logged.
    fn put_replica(&self, inner: &mut KvInner, key: &str, value: Option<Vec<u8>>) {
        let old = inner.map.get(key).map_or(0, |v| cost(key, v));
        let new = value.as_ref().map_or(0, |v| cost(key, v));
        let limit = self.max_bytes.load(Ordering::Relaxed).saturating_mul(2);
        if key.len() > MAX_KEY_LEN || (new > old && inner.bytes - old + new > limit) {
            tracing::warn!(
                key,
                "an entry from the cluster's bucket is beyond this store's bounds; ignored"
            );
            return;
        }
        if let Some((store, plugin)) = self.backing.get() {
            store.plugin_kv(plugin, key, value.as_deref());
        }
        if let Some(old) = inner.map.remove(key) {
            inner.bytes -= cost(key, &old);
        }
        if let Some(v) = value {
            inner.bytes += cost(key, &v);
            inner.map.insert(key.to_owned(), v);
        }
    }

    /// Changes the size limit; entries already stored stay.
    pub fn set_max_bytes(&self, max_bytes: u64) {
        self.max_bytes.store(max_bytes, Ordering::Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, KvInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.lock().map.get(key).cloned()
    }

    /// Sets `key`, within the size limits.
    pub fn set(&self, key: String, value: Vec<u8>) -> Result<(), host::KvError> {
        if key.len() > MAX_KEY_LEN {
            return Err(host::KvError::KeyTooLong);
        }
        let mut inner = self.lock();
        let old = inner.map.get(&key).map_or(0, |v| cost(&key, v));
        let new = cost(&key, &value);
        if inner.bytes - old + new > self.max_bytes.load(Ordering::Relaxed) {
            return Err(host::KvError::StoreFull);
        }
        inner.bytes = inner.bytes - old + new;
        self.write_through(&mut inner, &key, Some(&value));
        inner.map.insert(key, value);
        Ok(())
    }

    /// Removes `key`; true if it existed.
    pub fn delete(&self, key: &str) -> bool {
        let mut inner = self.lock();
        match inner.map.remove(key) {
            Some(v) => {
                inner.bytes -= cost(key, &v);
                self.write_through(&mut inner, key, None);
                true
            }
            None => false,
        }
    }
}

/// What an entry counts against the quota.
fn cost(key: &str, value: &[u8]) -> u64 {
    (key.len() + value.len()) as u64 + ENTRY_OVERHEAD
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv_limits() {
        let kv = KvStore::new(10 + 2 * ENTRY_OVERHEAD);
        assert_eq!(
            kv.set("k".repeat(257), vec![]),
            Err(host::KvError::KeyTooLong)
        );
        assert_eq!(kv.set("ab".into(), vec![0; 8]), Ok(()));
        assert_eq!(
            kv.set("c".into(), vec![0; 1]),
            Err(host::KvError::StoreFull)
        );
        // Replacing a value counts the difference only.
        assert_eq!(kv.set("ab".into(), vec![1; 7]), Ok(()));
        assert_eq!(kv.set("c".into(), vec![0; 0]), Ok(()));
        assert_eq!(kv.get("ab"), Some(vec![1; 7]));
        assert!(kv.delete("ab"));
        assert!(!kv.delete("ab"));
        assert_eq!(
            kv.set("d".into(), vec![0; 8]),
            Ok(()),
            "the space was given back"
        );
    }

    #[test]
    fn replicated_changes_follow_the_buckets_order() {
        let kv = KvStore::new(1 << 20);
        let (tx, mut rx) = mpsc::channel(16);
        assert!(kv.replicate(tx));
        // Another node's entry applies.
        kv.apply_replica("k", Some(b"theirs".to_vec()), 1);
        assert_eq!(kv.get("k"), Some(b"theirs".to_vec()));
        // This node's write goes out; an older entry of another node
        // arriving meanwhile is skipped, its own coming back changes
        // nothing, a later one of another node applies.
        kv.set("k".into(), b"mine".to_vec()).unwrap();
        assert_eq!(rx.try_recv().unwrap(), ("k".into(), Some(b"mine".to_vec())));
        kv.apply_replica("k", Some(b"older".to_vec()), 2);
        kv.replica_acked("k", 3);
        assert_eq!(kv.get("k"), Some(b"mine".to_vec()));
        kv.apply_replica("k", Some(b"mine".to_vec()), 3);
        kv.apply_replica("k", None, 4);
        assert_eq!(kv.get("k"), None, "deleted by the later entry");
        // What no node could have written is refused.
        kv.apply_replica(&"k".repeat(300), Some(vec![1]), 6);
        assert_eq!(kv.get(&"k".repeat(300)), None);
        kv.apply_replica("huge", Some(vec![0; 3 << 20]), 7);
        assert_eq!(kv.get("huge"), None, "past twice the quota");
        // Deletions go out too.
        kv.apply_replica("j", Some(b"x".to_vec()), 8);
        assert!(kv.delete("j"));
        assert_eq!(rx.try_recv().unwrap(), ("j".into(), None));
    }
}
