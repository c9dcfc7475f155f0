//! The wasmtime engine every plugin runs on: one configuration for the
//! process (fuel, epoch interruption, no component-model concurrency), the
//! epoch ticker, the linker with what plugins may import, and compilation
//! (off the async threads, through the artifact cache).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine};

use super::bindings::Plugin;
use super::cache::{ArtifactCache, resolve_dir, sha256_hex};
use super::host::PluginState;
use super::outbox::Outbox;

/// How often the epoch advances: how often a running plugin is looked at
/// (interrupted past its deadline, else made to yield to the runtime's
/// other tasks). 1 ms: a client whose message passes through tasks queued
/// behind a few spinning plugins waits about a millisecond per plugin and
/// task, not five; the ticker's thousand wake-ups a second cost next to
/// nothing.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Why the plugin runtime could not start.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot configure wasmtime: {0}")]
    Engine(String),
}

/// A compiled plugin.
#[derive(Debug)]
pub struct Compiled {
    pub component: Component,
    /// Hex SHA-256 of the `.wasm`.
    pub hash: String,
    /// Whether it came from the artifact cache.
    pub cached: bool,
}

/// A plugin file's bytes with their SHA-256 (its identity and artifact
/// cache key), hashed once.
#[derive(Debug)]
pub struct Wasm {
    pub bytes: Vec<u8>,
    /// Hex SHA-256 of `bytes`.
    pub hash: String,
}

impl Wasm {
    /// Hashes `bytes` on a blocking thread (a Python plugin is ~18 MB).
    pub async fn hash(bytes: Vec<u8>) -> Result<Wasm, String> {
        tokio::task::spawn_blocking(move || {
            let hash = sha256_hex(&bytes);
            Wasm { bytes, hash }
        })
        .await
        .map_err(|e| format!("hashing task failed: {e}"))
    }
}

/// Engine, linker and cache, shared by all plugins, and the outbox of
/// their publications.
pub struct Runtime {
    pub engine: Engine,
    pub linker: Linker<PluginState>,
    /// Where the plugins' `publish` calls go (none: publishing is off).
    pub outbox: Option<Arc<Outbox>>,
    cache: ArtifactCache,
    /// Components compiled by Cranelift (not found in the cache).
    compiles: AtomicU64,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("cache", &self.cache)
            .finish()
    }
}

impl Runtime {
    /// The engine, its epoch ticker, and a linker offering WASI (sandboxed)
    /// and the `host` interface. Compiled plugins are cached in
    /// `cache_dir` (`plugins.cache_dir`), or by default outside
    /// `plugin_dir` (see [`cache::default_dir`]); a cache directory that
    /// cannot be used is logged and the broker runs without a cache.
    ///
    /// [`cache::default_dir`]: super::cache::default_dir
    pub fn new(
        cache_dir: Option<PathBuf>,
        plugin_dir: &Path,
        outbox: Option<Arc<Outbox>>,
    ) -> Result<Arc<Self>, RuntimeError> {
        let mut config = Config::new();
        config
            .consume_fuel(true)
            .epoch_interruption(true)
            .concurrency_support(false);
        let engine = Engine::new(&config).map_err(|e| RuntimeError::Engine(e.to_string()))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| RuntimeError::Engine(e.to_string()))?;
        super::http_link::add_to_linker(&mut linker)
            .map_err(|e| RuntimeError::Engine(e.to_string()))?;
        Plugin::add_to_linker::<PluginState, HasSelf<PluginState>>(&mut linker, |s| s)
            .map_err(|e| RuntimeError::Engine(e.to_string()))?;
        let cache = ArtifactCache::new(&engine, Some(resolve_dir(cache_dir, plugin_dir)));
        start_ticker(&engine);
        Ok(Arc::new(Runtime {
            engine,
            linker,
            outbox,
            cache,
            compiles: AtomicU64::new(0),
        }))
    }

    /// Compiles `wasm` (or loads it from the cache) on a blocking thread.
    pub async fn compile(self: &Arc<Self>, wasm: Wasm) -> Result<Compiled, String> {
        let runtime = self.clone();
        tokio::task::spawn_blocking(move || {
            let Wasm { bytes: wasm, hash } = wasm;
            if let Some(component) = runtime.cache.load(&runtime.engine, &hash) {
                return Ok(Compiled {
                    component,
                    hash,
                    cached: true,
                });
            }
            runtime.compiles.fetch_add(1, Ordering::Relaxed);
            let component = Component::new(&runtime.engine, &wasm).map_err(|e| {
                // wasmtime's message chain says what is wrong with the bytes.
                format!("{e:#}")
            })?;
            runtime.cache.store(&hash, &component);
            Ok(Compiled {
                component,
                hash,
                cached: false,
            })
        })
        .await
        .map_err(|e| format!("compilation task failed: {e}"))?
    }
}

impl Runtime {
    /// Components compiled so far (cache misses).
    pub fn compiles(&self) -> u64 {
        self.compiles.load(Ordering::Relaxed)
    }

    /// Cached artifacts refused so far (they failed a check or their
    /// authentication, and were recompiled).
    pub fn cache_refused(&self) -> u64 {
        self.cache.refused()
    }
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until the engine is
/// dropped.
fn start_ticker(engine: &Engine) {
    let weak = engine.weak();
    let spawned = std::thread::Builder::new()
        .name("sluice-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        });
    if let Err(e) = spawned {
        tracing::error!(
            "cannot start the plugin epoch ticker ({e}); plugin deadlines rely on fuel only"
        );
    }
}
