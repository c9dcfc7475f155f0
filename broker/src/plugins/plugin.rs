//! One loaded plugin: its compiled component, the hooks it exports, its
//! limits and failure policy, a small pool of instances, and the call
//! wrapper that enforces fuel, memory and deadline on every call.
//!
//! Instance model: each plugin keeps up to `instances` long-lived instances
//! (default: one per CPU) and checks one out per hook call. Reusing an
//! instance costs well under a microsecond per call where a fresh instance
//! costs 20–35 µs (and Python instances ~12 MiB each), so instances are
//! reused; an instance that traps, runs out of fuel or memory, or misses its
//! deadline is dropped and never entered again, and a new one is created on
//! demand. State that must survive that belongs in the host key-value store.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use wasmtime::component::InstancePre;
use wasmtime::{Store, StoreLimitsBuilder, Trap};

use super::breaker::{Breaker, Tripped};
use super::chain::FailurePolicy;
use super::engine::{Runtime, Wasm};
pub use super::hooks::Hook;
use super::hooks::{Guests, HookSet, Hooks};
use super::host::{KvStore, PluginShared, PluginState};
use super::pool::{Checkout, Pool};

/// A plugin's limits and policies, resolved from the configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// Chain position: plugins with a priority come first, lowest first.
    pub priority: Option<i64>,
    /// Fuel per call (roughly, wasm instructions).
    pub fuel: u64,
    /// Linear-memory cap per instance, in bytes.
    pub memory_bytes: usize,
    /// Wall-clock limit per call (and per instantiation).
    pub deadline: Duration,
    /// Instances kept at most.
    pub instances: usize,
    pub on_failure: FailurePolicy,
    pub breaker_failures: u32,
    pub breaker_backoff: Duration,
    pub kv_max_bytes: u64,
    /// `[plugin.NAME.config]`.
    pub config: Vec<(String, String)>,
}

/// Why a hook call produced no answer.
#[derive(Clone, Debug, thiserror::Error)]
pub enum CallFailure {
    #[error("disabled by its circuit breaker after repeated failures")]
    Disabled,
    #[error("no instance became free within the deadline of {0:?}")]
    Busy(Duration),
    #[error("missed its deadline of {0:?}")]
    Deadline(Duration),
    #[error("ran out of fuel")]
    OutOfFuel,
    #[error("exceeded its memory limit")]
    Memory,
    #[error("overflowed its stack")]
    StackOverflow,
    #[error("trapped: {0}")]
    Trap(String),
    #[error("could not be instantiated: {0}")]
    Instantiate(String),
    #[error("init failed: {0}")]
    Init(String),
}

impl CallFailure {
    /// Whether the instance was lost to it (a trap or a host limit).
    pub fn is_trap(&self) -> bool {
        matches!(
            self,
            CallFailure::Deadline(_)
                | CallFailure::OutOfFuel
                | CallFailure::Memory
                | CallFailure::StackOverflow
                | CallFailure::Trap(_)
        )
    }

    fn from_wasmtime(e: &wasmtime::Error) -> Self {
        match e.downcast_ref::<Trap>() {
            Some(Trap::OutOfFuel) => CallFailure::OutOfFuel,
            Some(Trap::StackOverflow) => CallFailure::StackOverflow,
            Some(Trap::MemoryOutOfBounds) | Some(Trap::AllocationTooLarge) => CallFailure::Memory,
            _ => {
                let text = format!("{e:#}");
                // StoreLimits with trap_on_grow_failure reports a refused
                // memory.grow as a plain error.
                if text.contains("growing memory") || text.contains("memory minimum size") {
                    CallFailure::Memory
                } else {
                    CallFailure::Trap(text)
                }
            }
        }
    }
}

/// Counters per plugin version (a reload starts them again).
#[derive(Debug, Default)]
pub struct Stats {
    pub calls: AtomicU64,
    /// Chain calls the plugin answered with its `error` value.
    pub errors: AtomicU64,
    /// Calls that failed (trap, fuel, memory, deadline, busy, disabled).
    pub failures: AtomicU64,
    /// Failures where the instance was lost: traps, fuel, memory, stack,
    /// deadline (a subset of `failures`).
    pub traps: AtomicU64,
    pub fuel_used: AtomicU64,
    pub instances_created: AtomicU64,
}

/// One instance of a plugin, with its own store.
pub struct Instance {
    pub store: Store<PluginState>,
    pub guests: Guests,
}

/// A hook call in progress: it owns the instance while it runs and hands it
/// back with the result (a call cut off by its deadline drops it).
pub type CallFuture<'c, R> =
    Pin<Box<dyn Future<Output = (Box<Instance>, wasmtime::Result<R>)> + Send + 'c>>;

/// A hook call bounded by a wall-clock deadline. Most calls finish in
/// their first poll, so the timer is only set up when a call has to wait
/// (an epoch yield, or a host call that waits): the common case costs no
/// timer registration.
struct WithDeadline<'c, R> {
    call: CallFuture<'c, R>,
    ends: Instant,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// The deadline passed.
struct Elapsed;

impl<R> Future for WithDeadline<'_, R> {
    type Output = Result<(Box<Instance>, wasmtime::Result<R>), Elapsed>;

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        use std::task::Poll;
        if let Poll::Ready(v) = self.call.as_mut().poll(cx) {
            return Poll::Ready(Ok(v));
        }
        let ends = self.ends;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(ends)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed)),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Why a plugin could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid WebAssembly component: {message}")]
    Compile { path: PathBuf, message: String },
    #[error("{path} needs imports the broker does not provide: {message}")]
    Imports { path: PathBuf, message: String },
    #[error(
        "{path} exports no hook of sluice:plugin@0.1.0 (it exports: {exports}); \
         was it built against another version of the WIT package?"
    )]
    NoHooks { path: PathBuf, exports: String },
    #[error("{path} failed its first instantiation: {failure}")]
    Canary { path: PathBuf, failure: CallFailure },
}

/// What a plugin is made of besides its settings.
struct Parts {
    runtime: Arc<Runtime>,
    pre: InstancePre<PluginState>,
    hooks: Arc<Hooks>,
    exports: HookSet,
    hash: String,
    cached: bool,
}

/// A loaded plugin.
pub struct Plugin {
    pub name: Arc<str>,
    pub file: PathBuf,
    /// Hex SHA-256 of the `.wasm`.
    pub hash: String,
    /// Whether the compiled form came from the artifact cache.
    pub cached: bool,
    pub settings: Settings,
    pub stats: Stats,
    pub shared: Arc<PluginShared>,
    runtime: Arc<Runtime>,
    pre: InstancePre<PluginState>,
    hooks: Arc<Hooks>,
    /// The hooks it exports.
    exports: HookSet,
    pool: Pool<Box<Instance>>,
    breaker: Mutex<Breaker>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name)
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

impl Plugin {
    /// Reads, compiles (or loads from cache), links and canaries the plugin
    /// in `path`: it is instantiated once (running its `init`) before it is
    /// accepted.
    pub async fn load(
        runtime: &Arc<Runtime>,
        name: &str,
        path: &Path,
        settings: Settings,
    ) -> Result<Plugin, LoadError> {
        let wasm = tokio::fs::read(path)
            .await
            .map_err(|source| LoadError::Read {
                path: path.to_owned(),
                source,
            })?;
        let wasm = Wasm::hash(wasm)
            .await
            .map_err(|message| LoadError::Compile {
                path: path.to_owned(),
                message,
            })?;
        Plugin::from_wasm(runtime, name, path, wasm, settings, None).await
    }

    /// Compiles (or loads from cache), links and canaries `wasm`, read
    /// from `path`. `kv` carries a previous version's key-value store over.
    pub(super) async fn from_wasm(
        runtime: &Arc<Runtime>,
        name: &str,
        path: &Path,
        wasm: Wasm,
        settings: Settings,
        kv: Option<Arc<KvStore>>,
    ) -> Result<Plugin, LoadError> {
        let compiled = runtime
            .compile(wasm)
            .await
            .map_err(|message| LoadError::Compile {
                path: path.to_owned(),
                message,
            })?;
        let pre = runtime
            .linker
            .instantiate_pre(&compiled.component)
            .map_err(|e| LoadError::Imports {
                path: path.to_owned(),
                message: format!("{e:#}"),
            })?;
        let hooks = Hooks::find(&pre);
        let exports = hooks.set();
        if exports.is_empty() {
            let ty = compiled.component.component_type();
            let exports: Vec<String> = ty
                .exports(&runtime.engine)
                .map(|(n, _)| n.to_owned())
                .collect();
            return Err(LoadError::NoHooks {
                path: path.to_owned(),
                exports: if exports.is_empty() {
                    "nothing".into()
                } else {
                    exports.join(", ")
                },
            });
        }
        let parts = Parts {
            runtime: runtime.clone(),
            pre,
            hooks: Arc::new(hooks),
            exports,
            hash: compiled.hash,
            cached: compiled.cached,
        };
        Plugin::canary(name, path, parts, settings, kv).await
    }

    /// This plugin (same file, same compiled code) with other settings,
    /// canaried again; the key-value store carries over.
    pub(super) async fn reconfigure(&self, settings: Settings) -> Result<Plugin, LoadError> {
        let parts = Parts {
            runtime: self.runtime.clone(),
            pre: self.pre.clone(),
            hooks: self.hooks.clone(),
            exports: self.exports,
            hash: self.hash.clone(),
            cached: true,
        };
        let kv = Some(self.shared.kv.clone());
        Plugin::canary(&self.name, &self.file, parts, settings, kv).await
    }

    async fn canary(
        name: &str,
        path: &Path,
        parts: Parts,
        settings: Settings,
        kv: Option<Arc<KvStore>>,
    ) -> Result<Plugin, LoadError> {
        let kv = match kv {
            Some(kv) => {
                kv.set_max_bytes(settings.kv_max_bytes);
                kv
            }
            None => Arc::new(KvStore::new(settings.kv_max_bytes)),
        };
        let name: Arc<str> = Arc::from(name);
        let plugin = Plugin {
            shared: Arc::new(PluginShared {
                name: name.clone(),
                config: settings.config.clone(),
                kv,
            }),
            name,
            file: path.to_owned(),
            hash: parts.hash,
            cached: parts.cached,
            stats: Stats::default(),
            runtime: parts.runtime,
            pre: parts.pre,
            hooks: parts.hooks,
            exports: parts.exports,
            pool: Pool::new(settings.instances),
            breaker: Mutex::new(Breaker::new(
                settings.breaker_failures,
                settings.breaker_backoff,
            )),
            settings,
        };
        let canary = plugin
            .instantiate()
            .await
            .map_err(|failure| LoadError::Canary {
                path: path.to_owned(),
                failure,
            })?;
        plugin.pool.seed(canary);
        tracing::info!(
            plugin = %plugin.name,
            file = %path.display(),
            sha256 = %plugin.hash,
            cached = plugin.cached,
            hooks = %plugin.hooks().iter().map(Hook::name).collect::<Vec<_>>().join(","),
            "plugin loaded"
        );
        Ok(plugin)
    }

    /// Instances in existence (idle or in use).
    pub fn instances(&self) -> usize {
        self.pool.live()
    }

    /// Whether the plugin exports `hook`.
    pub fn implements(&self, hook: Hook) -> bool {
        self.exports.contains(hook)
    }

    /// The hooks the plugin exports.
    pub fn hooks(&self) -> HookSet {
        self.exports
    }

    fn new_store(&self) -> Store<PluginState> {
        let limits = StoreLimitsBuilder::new()
            .memory_size(self.settings.memory_bytes)
            .trap_on_grow_failure(true)
            .build();
        let mut store = Store::new(
            &self.runtime.engine,
            PluginState::new(self.shared.clone(), limits),
        );
        store.limiter(|s| &mut s.limits);
        // At every epoch tick past the deadline, yield to the async runtime
        // and move the deadline one tick on: a long call never blocks a
        // worker thread, and the call's timeout can fire.
        store.epoch_deadline_async_yield_and_update(1);
        store
    }

    /// A new instance, its `init` run. Counts against fuel and the
    /// deadline like a call.
    async fn instantiate(&self) -> Result<Box<Instance>, CallFailure> {
        let mut store = self.new_store();
        let deadline = self.settings.deadline;
        self.arm(&mut store);
        let instance = tokio::time::timeout(deadline, self.pre.instantiate_async(&mut store))
            .await
            .map_err(|_| CallFailure::Deadline(deadline))?
            .map_err(|e| match CallFailure::from_wasmtime(&e) {
                CallFailure::Trap(t) => CallFailure::Instantiate(t),
                other => other,
            })?;
        let guests = self
            .hooks
            .load(&mut store, &instance)
            .map_err(|e| CallFailure::Instantiate(format!("{e:#}")))?;
        self.stats.instances_created.fetch_add(1, Ordering::Relaxed);
        if let Some(lifecycle) = &guests.lifecycle {
            self.arm(&mut store);
            let init = tokio::time::timeout(deadline, lifecycle.call_init(&mut store))
                .await
                .map_err(|_| CallFailure::Deadline(deadline))?
                .map_err(|e| CallFailure::from_wasmtime(&e))?;
            init.map_err(CallFailure::Init)?;
        }
        Ok(Box::new(Instance { store, guests }))
    }

    /// Resets the per-call budgets.
    fn arm(&self, store: &mut Store<PluginState>) {
        // Fuel is enabled on the engine, so this cannot fail.
        let _ = store.set_fuel(self.settings.fuel);
        store.set_epoch_deadline(1);
    }

    /// Runs one hook call on an instance, under the plugin's fuel, memory
    /// and deadline. The instance goes back to the pool only if the call
    /// returned normally.
    pub async fn call<'c, R>(
        &self,
        hook: Hook,
        f: impl FnOnce(Box<Instance>) -> CallFuture<'c, R>,
    ) -> Result<R, CallFailure> {
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        let result = self.call_inner(f).await;
        match &result {
            Ok(_) => {
                let mut breaker = self.breaker();
                if !breaker.is_clean() {
                    breaker.success();
                }
            }
            Err(failure) => {
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                if failure.is_trap() {
                    self.stats.traps.fetch_add(1, Ordering::Relaxed);
                }
                if !matches!(failure, CallFailure::Disabled) {
                    tracing::warn!(plugin = %self.name, hook = hook.name(), "plugin call failed: {failure}");
                    if let Tripped::For(backoff) = self.breaker().failure(Instant::now()) {
                        tracing::error!(
                            plugin = %self.name,
                            "plugin disabled for {backoff:?} after {} consecutive failures",
                            self.settings.breaker_failures
                        );
                    }
                }
            }
        }
        result
    }

    fn breaker(&self) -> std::sync::MutexGuard<'_, Breaker> {
        self.breaker.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn call_inner<'c, R>(
        &self,
        f: impl FnOnce(Box<Instance>) -> CallFuture<'c, R>,
    ) -> Result<R, CallFailure> {
        if !self.breaker().allows(Instant::now) {
            return Err(CallFailure::Disabled);
        }
        let deadline = self.settings.deadline;
        let started = Instant::now();
        let ends = started + deadline;
        let mut instance = match self.pool.checkout(ends).await {
            Some(Checkout::Idle(i)) => i,
            Some(Checkout::Create) => match self.instantiate().await {
                Ok(i) => i,
                Err(e) => {
                    self.pool.discard();
                    return Err(e);
                }
            },
            None => return Err(CallFailure::Busy(deadline)),
        };
        self.arm(&mut instance.store);
        let Ok((instance, result)) = (WithDeadline {
            call: f(instance),
            ends,
            timer: None,
        })
        .await
        else {
            // The instance went with the cancelled call.
            self.pool.discard();
            self.stats
                .fuel_used
                .fetch_add(self.settings.fuel, Ordering::Relaxed);
            return Err(CallFailure::Deadline(deadline));
        };
        let fuel_left = instance.store.get_fuel().unwrap_or(0);
        self.stats.fuel_used.fetch_add(
            self.settings.fuel.saturating_sub(fuel_left),
            Ordering::Relaxed,
        );
        match result {
            Ok(value) => {
                self.pool.put_back(instance);
                Ok(value)
            }
            // The instance is dropped: after a trap it must never be
            // entered again.
            Err(e) => {
                drop(instance);
                self.pool.discard();
                Err(CallFailure::from_wasmtime(&e))
            }
        }
    }
}
