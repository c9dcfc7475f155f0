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
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use wasmtime::component::InstancePre;
use wasmtime::{Store, UpdateDeadline};

use super::breaker::{Breaker, Tripped};
use super::chain::FailurePolicy;
use super::engine::{Runtime, Wasm};
pub use super::failure::CallFailure;
pub use super::hooks::Hook;
use super::hooks::{Guests, HookSet, Hooks};
use super::host::{PluginShared, PluginState};
use super::http::HttpPolicy;
use super::kv::KvStore;
use super::limiter::InstanceLimits;
use super::log::PluginLog;
use super::outbox::Publisher;
use super::pool::{Checkout, Pool};
use super::stats::{Stats, Verdict};

/// A plugin's limits and policies, resolved from the configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// Chain position: plugins with a priority come first, lowest first.
    pub priority: Option<i64>,
    /// Fuel per call (roughly, wasm instructions).
    pub fuel: u64,
    /// Memory budget per instance, in bytes: every linear memory and table
    /// of the instance together.
    pub memory_bytes: usize,
    /// Wall-clock limit per call (and per instantiation).
    pub deadline: Duration,
    /// Instances kept at most.
    pub instances: usize,
    pub on_failure: FailurePolicy,
    pub breaker_failures: u32,
    pub breaker_backoff: Duration,
    pub kv_max_bytes: u64,
    /// `kv_cluster`: the key-value store is the cluster's.
    pub kv_cluster: bool,
    /// `publish_per_sec`: the plugin's publishing rate (0: none).
    pub publish_per_sec: u32,
    /// `mountpoint`: where the plugin's publications go.
    pub mountpoint: Arc<str>,
    /// `http_allow`: the URL patterns the plugin may request.
    pub http_allow: Vec<String>,
    /// `http_timeout_ms`.
    pub http_timeout: Duration,
    /// `http_max_response_bytes`.
    pub http_max_response: u64,
    /// `http_ca_file`.
    pub http_ca_file: Option<PathBuf>,
    /// `required`, when set (see [`Plugin::is_required`]).
    pub required: Option<bool>,
    /// `[plugin.NAME.config]`.
    pub config: Vec<(String, String)>,
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

/// A hook call bounded by a wall-clock deadline. Running guest code is
/// interrupted by the epoch callback (see `Plugin::new_store`); this covers
/// the rest: a call waiting in a host call, and a call that ends after its
/// deadline (its answer came too late and is not used), checked by the
/// clock at every poll. Most calls finish in their first poll, so the timer
/// is only set up when a call has to wait: the common case costs no timer
/// registration.
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
            // A first poll that finished is a fast call: no clock read.
            if self.timer.is_some() && Instant::now() > self.ends {
                return Poll::Ready(Err(Elapsed));
            }
            return Poll::Ready(Ok(v));
        }
        let ends = self.ends;
        if Instant::now() >= ends {
            return Poll::Ready(Err(Elapsed));
        }
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
        let log = Arc::new(PluginLog::new(name.clone()));
        let plugin = Plugin {
            shared: Arc::new(PluginShared {
                name: name.clone(),
                config: settings.config.clone(),
                http: Arc::new(HttpPolicy::new(
                    &settings.http_allow,
                    settings.http_timeout,
                    settings.http_max_response,
                    settings.http_ca_file.as_deref(),
                    log.clone(),
                )),
                log,
                kv,
                publisher: Publisher::new(
                    parts.runtime.outbox.clone(),
                    settings.mountpoint.clone(),
                    settings.publish_per_sec,
                ),
            }),
            name,
            file: path.to_owned(),
            hash: parts.hash,
            cached: parts.cached,
            stats: Stats::new(parts.exports),
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

    /// Counts and logs (at warn, with the plugin, the hook, the client and
    /// the field) an answer refused as invalid.
    pub fn invalid_answer(
        &self,
        client: &dyn std::fmt::Display,
        hook: Hook,
        problem: &dyn std::fmt::Display,
    ) {
        self.stats.record_invalid(hook);
        tracing::warn!(
            plugin = %self.name, hook = hook.name(), client = %client,
            "plugin answer refused: invalid {problem}"
        );
    }

    /// Instances in existence (idle or in use).
    pub fn instances(&self) -> usize {
        self.pool.live()
    }

    /// Whether clients may not go unchecked without it: its `required`
    /// setting, by default whether it exports an authorisation hook.
    pub fn is_required(&self) -> bool {
        self.settings
            .required
            .unwrap_or_else(|| self.exports.intersects(HookSet::auth()))
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
        let limits = InstanceLimits::new(self.settings.memory_bytes);
        let mut store = Store::new(
            &self.runtime.engine,
            PluginState::new(self.shared.clone(), limits),
        );
        store.limiter(|s| &mut s.limits);
        // At every epoch tick (1 ms) the guest is looked at: past the end
        // of its call it is interrupted (a trap), by the call's own clock,
        // however busy the runtime's timers are; otherwise it yields to the
        // runtime behind every other task ready to run (`yield_now`), so a
        // spinning plugin neither blocks a worker thread nor delays the
        // other clients.
        store.epoch_deadline_callback(|ctx| {
            let over = ctx
                .data()
                .call_ends
                .is_some_and(|ends| Instant::now() >= ends);
            Ok(if over {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::YieldCustom(1, Box::pin(tokio::task::yield_now()))
            })
        });
        store
    }

    /// A new instance, its `init` run. Counts against fuel and the
    /// deadline like a call.
    async fn instantiate(&self) -> Result<Box<Instance>, CallFailure> {
        let deadline = self.settings.deadline;
        let mut retried = false;
        let (mut store, instance) = loop {
            let mut store = self.new_store();
            self.arm(&mut store, Instant::now() + deadline);
            let result = tokio::time::timeout(deadline, self.pre.instantiate_async(&mut store))
                .await
                .map_err(|_| CallFailure::Deadline(deadline))?;
            match result {
                Ok(instance) => break (store, instance),
                // The host could not set up the instance's memory (the
                // kernel refused to seal the memory image's memfd while
                // one of its pages was briefly referenced elsewhere, seen
                // once in a test run): not the plugin's doing, so one more
                // try on a fresh store.
                Err(e) if !retried && e.chain().any(|c| c.is::<std::io::Error>()) => {
                    tracing::warn!(plugin = %self.name, "instantiation failed ({e:#}); trying once more");
                    retried = true;
                }
                Err(e) => {
                    return Err(match CallFailure::from_wasmtime(&e, deadline) {
                        CallFailure::Trap(t) => CallFailure::Instantiate(t),
                        other => other,
                    });
                }
            }
        };
        let guests = self
            .hooks
            .load(&mut store, &instance)
            .map_err(|e| CallFailure::Instantiate(format!("{e:#}")))?;
        self.stats.instances_created.fetch_add(1, Ordering::Relaxed);
        if let Some(lifecycle) = &guests.lifecycle {
            self.arm(&mut store, Instant::now() + deadline);
            let init = tokio::time::timeout(deadline, lifecycle.call_init(&mut store))
                .await
                .map_err(|_| CallFailure::Deadline(deadline))?
                .map_err(|e| CallFailure::from_wasmtime(&e, deadline))?;
            init.map_err(CallFailure::Init)?;
        }
        Ok(Box::new(Instance { store, guests }))
    }

    /// Resets the per-call budgets: fuel, and the call's end.
    fn arm(&self, store: &mut Store<PluginState>, ends: Instant) {
        // Fuel is enabled on the engine, so this cannot fail.
        let _ = store.set_fuel(self.settings.fuel);
        store.data_mut().call_ends = Some(ends);
        store.set_epoch_deadline(1);
    }

    /// Runs one hook call on an instance, under the plugin's fuel, memory
    /// and deadline. The instance goes back to the pool only if the call
    /// returned normally.
    pub(crate) async fn call<'c, R: Verdict>(
        &self,
        hook: Hook,
        f: impl FnOnce(Box<Instance>) -> CallFuture<'c, R>,
    ) -> Result<R, CallFailure> {
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let result = self.call_inner(f, started).await;
        let ended = Instant::now();
        self.stats
            .record_call(hook, ended.duration_since(started), &result);
        match &result {
            Ok(_) => {
                let mut breaker = self.breaker();
                if !breaker.is_clean() {
                    breaker.success();
                }
            }
            Err(failure) if failure.is_fault() => {
                tracing::warn!(plugin = %self.name, hook = hook.name(), "plugin call failed: {failure}");
                let tripped = self.breaker().failure(started, ended);
                if let Tripped::For(backoff) = tripped {
                    tracing::error!(
                        plugin = %self.name,
                        "plugin disabled for {backoff:?} after {} consecutive faults",
                        self.settings.breaker_failures
                    );
                }
            }
            Err(failure) if failure.is_overrun() => {
                // The chain's caller logs it with the client, which is
                // slowed down.
                tracing::debug!(plugin = %self.name, hook = hook.name(), "plugin call failed: {failure}");
            }
            Err(_) => {}
        }
        result
    }

    fn breaker(&self) -> std::sync::MutexGuard<'_, Breaker> {
        self.breaker.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn call_inner<'c, R>(
        &self,
        f: impl FnOnce(Box<Instance>) -> CallFuture<'c, R>,
        started: Instant,
    ) -> Result<R, CallFailure> {
        if !self.breaker().allows(|| started) {
            return Err(CallFailure::Disabled);
        }
        let deadline = self.settings.deadline;
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
        self.arm(&mut instance.store, ends);
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
                Err(CallFailure::from_wasmtime(&e, deadline))
            }
        }
    }
}
