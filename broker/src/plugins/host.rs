//! What the broker provides inside a plugin's sandbox: the `host` interface
//! (logging, configuration, key-value store), and a WASI context with no
//! filesystem, network or environment whose stdout/stderr go to the log.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime::StoreLimits;
use wasmtime::component::{Resource, ResourceTable};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::sluice::plugin::{host, publish_types, subscribe_types, types};

/// Longest key in a plugin's key-value store.
const MAX_KEY_LEN: usize = 256;
/// Longest line of plugin stdout/stderr logged as one record.
const MAX_LOG_LINE: usize = 4096;

/// State shared by every instance of one plugin: its identity, its
/// configuration, and its key-value store.
#[derive(Debug)]
pub struct PluginShared {
    pub name: Arc<str>,
    pub config: Vec<(String, String)>,
    /// Shared with the plugin's next version when it is reloaded.
    pub kv: Arc<KvStore>,
}

/// A bounded key-value store.
#[derive(Debug)]
pub struct KvStore {
    max_bytes: AtomicU64,
    inner: Mutex<KvInner>,
}

#[derive(Debug, Default)]
struct KvInner {
    map: HashMap<String, Vec<u8>>,
    bytes: u64,
}

impl KvStore {
    /// An empty store holding at most `max_bytes` of keys plus values.
    pub fn new(max_bytes: u64) -> Self {
        KvStore {
            max_bytes: AtomicU64::new(max_bytes),
            inner: Mutex::new(KvInner::default()),
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
        let old = inner
            .map
            .get(&key)
            .map_or(0, |v| (key.len() + v.len()) as u64);
        let new = (key.len() + value.len()) as u64;
        if inner.bytes - old + new > self.max_bytes.load(Ordering::Relaxed) {
            return Err(host::KvError::StoreFull);
        }
        inner.bytes = inner.bytes - old + new;
        inner.map.insert(key, value);
        Ok(())
    }

    /// Removes `key`; true if it existed.
    pub fn delete(&self, key: &str) -> bool {
        let mut inner = self.lock();
        match inner.map.remove(key) {
            Some(v) => {
                inner.bytes -= (key.len() + v.len()) as u64;
                true
            }
            None => false,
        }
    }
}

/// The data of one instance's store.
pub struct PluginState {
    pub shared: Arc<PluginShared>,
    pub limits: StoreLimits,
    wasi: WasiCtx,
    table: ResourceTable,
}

impl PluginState {
    /// A sandbox for one instance of `shared`'s plugin.
    pub fn new(shared: Arc<PluginShared>, limits: StoreLimits) -> Self {
        let mut wasi = WasiCtx::builder();
        wasi.stdout(LogStream::new(shared.name.clone(), Stream::Stdout))
            .stderr(LogStream::new(shared.name.clone(), Stream::Stderr))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }));
        PluginState {
            shared,
            limits,
            wasi: wasi.build(),
            table: ResourceTable::new(),
        }
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for PluginState {}
impl subscribe_types::Host for PluginState {}
impl publish_types::Host for PluginState {}

/// A message payload lent to a plugin for one hook call (the WIT resource
/// `payload`): the plugin copies it into its memory only if it reads it.
#[derive(Debug)]
pub struct PayloadRep(pub Bytes);

impl PluginState {
    /// Lends `payload` to the next call; give it back with
    /// [`PluginState::reclaim`] once the call returns.
    pub fn lend(&mut self, payload: Bytes) -> wasmtime::Result<Resource<PayloadRep>> {
        Ok(self.table.push(PayloadRep(payload))?)
    }

    /// Ends a loan made by [`PluginState::lend`].
    pub fn reclaim(&mut self, payload: Resource<PayloadRep>) {
        let _ = self.table.delete(payload);
    }

    fn payload(&self, handle: &Resource<PayloadRep>) -> &[u8] {
        // The broker lends every handle the plugin can name for the whole
        // call; a stale one would be the plugin's own bug, and reads empty.
        self.table.get(handle).map_or(&[], |p| &p.0[..])
    }
}

impl types::HostPayload for PluginState {
    fn size(&mut self, handle: Resource<PayloadRep>) -> u32 {
        u32::try_from(self.payload(&handle).len()).unwrap_or(u32::MAX)
    }

    fn read(&mut self, handle: Resource<PayloadRep>) -> Vec<u8> {
        self.payload(&handle).to_vec()
    }

    fn drop(&mut self, handle: Resource<PayloadRep>) -> wasmtime::Result<()> {
        // Handles are owned by the broker and reclaimed after each call.
        let _ = self.table.delete(handle);
        Ok(())
    }
}

impl host::Host for PluginState {
    fn log(&mut self, level: host::LogLevel, message: String) {
        let plugin = &*self.shared.name;
        match level {
            host::LogLevel::Trace => tracing::trace!(target: "plugin", plugin, "{message}"),
            host::LogLevel::Debug => tracing::debug!(target: "plugin", plugin, "{message}"),
            host::LogLevel::Info => tracing::info!(target: "plugin", plugin, "{message}"),
            host::LogLevel::Warn => tracing::warn!(target: "plugin", plugin, "{message}"),
            host::LogLevel::Error => tracing::error!(target: "plugin", plugin, "{message}"),
        }
    }

    fn config(&mut self) -> Vec<(String, String)> {
        self.shared.config.clone()
    }

    fn kv_get(&mut self, key: String) -> Option<Vec<u8>> {
        self.shared.kv.get(&key)
    }

    fn kv_set(&mut self, key: String, value: Vec<u8>) -> Result<(), host::KvError> {
        self.shared.kv.set(key, value)
    }

    fn kv_delete(&mut self, key: String) -> bool {
        self.shared.kv.delete(&key)
    }
}

#[derive(Clone, Copy, Debug)]
enum Stream {
    Stdout,
    Stderr,
}

/// A plugin's stdout or stderr: each line becomes a log record under the
/// plugin's name (stdout at info, stderr at warn).
#[derive(Clone)]
struct LogStream {
    plugin: Arc<str>,
    stream: Stream,
}

impl LogStream {
    fn new(plugin: Arc<str>, stream: Stream) -> Self {
        LogStream { plugin, stream }
    }
}

impl IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogStream {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(LineLogger {
            plugin: self.plugin.clone(),
            stream: self.stream,
            line: Vec::new(),
        })
    }
}

struct LineLogger {
    plugin: Arc<str>,
    stream: Stream,
    line: Vec<u8>,
}

impl LineLogger {
    fn emit(&mut self) {
        if self.line.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&self.line);
        let plugin = &*self.plugin;
        match self.stream {
            Stream::Stdout => tracing::info!(target: "plugin", plugin, stream = "stdout", "{text}"),
            Stream::Stderr => tracing::warn!(target: "plugin", plugin, stream = "stderr", "{text}"),
        }
        self.line.clear();
    }
}

impl AsyncWrite for LineLogger {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        for &b in buf {
            if b == b'\n' || self.line.len() >= MAX_LOG_LINE {
                self.emit();
            }
            if b != b'\n' {
                self.line.push(b);
            }
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.emit();
        Poll::Ready(Ok(()))
    }
}

impl Drop for LineLogger {
    fn drop(&mut self) {
        self.emit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv_limits() {
        let kv = KvStore::new(10);
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
