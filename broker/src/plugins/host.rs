//! What the broker provides inside a plugin's sandbox: the `host` interface
//! (logging, configuration, key-value store, publishing: `outbox.rs`),
//! `wasi:http` as its `http_allow` grants (`http.rs`), and a WASI context with no
//! filesystem, network or environment whose stdout/stderr go to the log
//! (`log.rs`); the key-value store is `kv.rs`.

use std::sync::Arc;

use bytes::Bytes;
use wasmtime::component::{Resource, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::bindings::sluice::plugin::{host, publish_types, subscribe_types, types};
use super::http::{HttpHooks, HttpPolicy};
use super::kv::KvStore;
use super::limiter::{InstanceLimits, MAX_HOST_RESOURCES};
use super::log::{LogStream, PluginLog, Stream};
use super::outbox::Publisher;

/// State shared by every instance of one plugin: its identity, its
/// configuration, and its key-value store.
#[derive(Debug)]
pub struct PluginShared {
    pub name: Arc<str>,
    pub config: Vec<(String, String)>,
    /// Its log records, rate-limited.
    pub log: Arc<PluginLog>,
    /// Shared with the plugin's next version when it is reloaded.
    pub kv: Arc<KvStore>,
    /// Its publications (the host function `publish`).
    pub publisher: Publisher,
    /// What it may reach over HTTP (`wasi:http`, `http.rs`).
    pub http: Arc<HttpPolicy>,
}

/// The data of one instance's store.
pub struct PluginState {
    pub shared: Arc<PluginShared>,
    pub limits: InstanceLimits,
    /// When the call (or instantiation) running now must have ended: the
    /// epoch callback interrupts the guest once it has passed.
    pub call_ends: Option<tokio::time::Instant>,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    http_hooks: HttpHooks,
    table: ResourceTable,
}

impl PluginState {
    /// A sandbox for one instance of `shared`'s plugin.
    pub fn new(shared: Arc<PluginShared>, limits: InstanceLimits) -> Self {
        let mut wasi = WasiCtx::builder();
        wasi.stdout(LogStream::new(shared.log.clone(), Stream::Stdout))
            .stderr(LogStream::new(shared.log.clone(), Stream::Stderr))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }));
        PluginState {
            http_hooks: HttpHooks(shared.http.clone()),
            shared,
            limits,
            call_ends: None,
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table: {
                let mut table = ResourceTable::new();
                table.set_max_capacity(MAX_HOST_RESOURCES);
                table
            },
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

impl WasiHttpView for PluginState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.http_hooks,
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
        self.shared.log.record(level, &message);
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

    fn publish(&mut self, message: host::Publication) -> Result<(), host::PublishError> {
        self.shared.publisher.publish(&self.shared.name, message)
    }
}
