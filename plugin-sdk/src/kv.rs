//! This plugin's key-value store, held by the broker and shared by all
//! instances of the plugin (the broker runs several, and replaces one that
//! traps): where a plugin keeps state across calls.
//!
//! ```no_run
//! use sluice_plugin_sdk::kv;
//!
//! let seen = kv::get("seen").map_or(0, |v| v.len());
//! kv::set("seen", &vec![b'x'; seen + 1])?;
//! # Ok::<(), kv::KvError>(())
//! ```

use crate::__private::bindings::sluice::plugin::host;
pub use host::KvError;

/// The value of `key`, if set.
///
/// ```no_run
/// let token = sluice_plugin_sdk::kv::get("token/device-1");
/// ```
pub fn get(key: &str) -> Option<Vec<u8>> {
    host::kv_get(key)
}

/// Sets `key` (at most 256 bytes) to `value`.
///
/// ```no_run
/// sluice_plugin_sdk::kv::set("token/device-1", b"abc")?;
/// # Ok::<(), sluice_plugin_sdk::kv::KvError>(())
/// ```
pub fn set(key: &str, value: &[u8]) -> Result<(), KvError> {
    host::kv_set(key, value)
}

/// Removes `key`; true if it existed.
///
/// ```no_run
/// let existed = sluice_plugin_sdk::kv::delete("token/device-1");
/// ```
pub fn delete(key: &str) -> bool {
    host::kv_delete(key)
}
