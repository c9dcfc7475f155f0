//! A plugin's key-value store: shared by every instance of the plugin
//! and carried over to its next version on reload, bounded in bytes, with
//! every entry counted at its key, its value and a fixed overhead (so that
//! tiny keys cannot turn the quota into millions of entries). With a
//! broker store (`[persistence]`), each store is written through to it and
//! read back at start ([`KvStore::bind`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use super::bindings::sluice::plugin::host;
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
}

#[derive(Debug, Default)]
struct KvInner {
    map: HashMap<String, Vec<u8>>,
    bytes: u64,
}

impl KvStore {
    /// An empty store holding at most `max_bytes` of entries.
    pub fn new(max_bytes: u64) -> Self {
        KvStore {
            max_bytes: AtomicU64::new(max_bytes),
            inner: Mutex::new(KvInner::default()),
            backing: OnceLock::new(),
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

    fn write_through(&self, key: &str, value: Option<&[u8]>) {
        if let Some((store, plugin)) = self.backing.get() {
            store.plugin_kv(plugin, key, value);
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
        // Under the lock: the store sees a key's changes in order.
        self.write_through(&key, Some(&value));
        inner.map.insert(key, value);
        Ok(())
    }

    /// Removes `key`; true if it existed.
    pub fn delete(&self, key: &str) -> bool {
        let mut inner = self.lock();
        match inner.map.remove(key) {
            Some(v) => {
                inner.bytes -= cost(key, &v);
                self.write_through(key, None);
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
}
