//! The plugin host: WebAssembly components loaded from the plugin
//! directory, run in wasmtime with fuel, memory and deadline limits, and
//! called as VerneMQ-style hooks.
//!
//! The rest of the broker sees only this module's API: the chains
//! ([`Plugins::authenticate`], [`Plugins::enhanced_auth`],
//! [`Plugins::authorize_subscribe`], [`Plugins::rewrite_unsubscribe`],
//! [`Plugins::authorize_publish`], [`Plugins::rewrite_delivery`]) take and
//! return broker values; [`Plugins::notify`] queues notifications, which a
//! background task delivers in order. Nothing outside this module touches
//! wasmtime.

/// Calls hook `$field` of `$plugin`: `$g` is the typed export and `$store`
/// the instance's store inside `$call`.
macro_rules! hook_call {
    ($plugin:expr, $hook:expr, $field:ident, |$g:ident, $store:ident| $call:expr) => {
        $plugin.call(
            $hook,
            move |mut i: Box<$crate::plugins::plugin::Instance>| {
                Box::pin(async move {
                    let result = match &i.guests.$field {
                        Some($g) => {
                            let $store = &mut i.store;
                            $call.await
                        }
                        None => Err(wasmtime::format_err!("hook not exported")),
                    };
                    (i, result)
                })
            },
        )
    };
}

/// Like `hook_call!`, lending `$payload` (bytes) to the call as the WIT
/// `payload` resource `$res`, and taking it back afterwards. The guest gets
/// a borrow made from the rep alone: lowering a host-owned `Resource` as a
/// borrow would enter it in wasmtime's own handle table, where nothing
/// removes it (each store allows 100,000 such handles).
macro_rules! hook_call_with_payload {
    ($plugin:expr, $hook:expr, $field:ident, $payload:expr, |$g:ident, $store:ident, $res:ident| $call:expr) => {{
        let payload: bytes::Bytes = $payload;
        $plugin.call(
            $hook,
            move |mut i: Box<$crate::plugins::plugin::Instance>| {
                Box::pin(async move {
                    let result = match &i.guests.$field {
                        Some($g) => match i.store.data_mut().lend(payload) {
                            Ok(owned) => {
                                let $res =
                                    wasmtime::component::Resource::<
                                        $crate::plugins::host::PayloadRep,
                                    >::new_borrow(owned.rep());
                                let $store = &mut i.store;
                                let r = $call.await;
                                i.store.data_mut().reclaim(owned);
                                r
                            }
                            Err(e) => Err(e),
                        },
                        None => Err(wasmtime::format_err!("hook not exported")),
                    };
                    (i, result)
                })
            },
        )
    }};
}

mod bindings;
mod breaker;
mod cache;
pub mod chain;
mod convert;
mod deliver;
mod engine;
mod events;
mod failure;
mod hooks;
mod host;
mod http;
mod http_link;
mod http_send;
pub mod kv;
mod latency;
mod limiter;
mod log;
mod messages;
mod outbox;
mod plugin;
mod pool;
mod publish;
mod register;
mod reload;
mod scan;
mod set;
mod stats;
mod subscribe;
mod watch;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use arc_swap::ArcSwap;
use tokio::sync::mpsc;

pub use self::chain::FailurePolicy;
pub use self::convert::{
    ConnectionInfo, ListenerKind, ModifierError, Modifiers, is_connack_refusal,
};
pub use self::deliver::Withheld;
use self::engine::Runtime;
pub use self::events::{DropReason, Event};
pub use self::hooks::HookSet;
pub use self::http::UrlPattern;

/// Checks an `http_ca_file` (readable PEM with at least one certificate);
/// the error says what is wrong with it.
pub fn check_ca_file(path: &std::path::Path) -> Result<(), String> {
    http_send::client_config(Some(path)).map(drop)
}
pub use self::latency::Latency;
pub use self::outbox::Publication;
pub use self::plugin::{CallFailure, Hook, LoadError, Plugin, Settings};
pub use self::publish::{
    DeliverRequest, Delivered, DeliveryChanges, PublishChanges, PublishOutcome, PublishRequest,
    is_puback_refusal,
};
pub use self::register::{
    AuthOutcome, AuthRequest, AuthStep, Refusal, RegisterOutcome, RegisterRequest,
};
use self::reload::Reloader;
pub use self::reload::{Ignored, PluginStatus, Rejected, ReloadOutcome, Status};
use self::set::PluginSet;
pub use self::stats::{HookStatus, Outcome, OutcomeCounts};
pub use self::subscribe::{
    SubscribeOutcome, SubscribeRequest, TopicDecision, UnsubscribeChanges, UnsubscribeRequest,
};
use crate::config::Config;

/// Notifications waiting for the dispatcher; beyond this they are dropped
/// (and counted) rather than slow the broker down.
const EVENT_QUEUE: usize = 16 * 1024;
/// Bytes of notifications waiting for the dispatcher (the messages they
/// carry included); beyond this they are dropped and counted too.
const EVENT_QUEUE_BYTES: usize = 64 << 20;

/// Why the plugins could not be loaded at startup.
#[derive(Debug, thiserror::Error)]
pub enum PluginsError {
    #[error("cannot read the plugin directory {path}: {source}")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Runtime(#[from] engine::RuntimeError),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(
        "plugin {name} is required ([plugin.{name}] required = true) but not loaded: \
         no {name}.wasm in {dir}, or it is disabled"
    )]
    RequiredMissing { name: String, dir: PathBuf },
}

/// The loaded plugins: the current [`PluginSet`], swapped as a whole when
/// the plugin directory or the configuration changes.
#[derive(Debug, Default)]
pub struct Plugins {
    set: Arc<ArcSwap<PluginSet>>,
    /// The current set's hooks, as bits: the message path tests a bit
    /// without touching the set.
    exported: AtomicU32,
    /// Events and their sizes, to the dispatcher.
    events: Option<mpsc::Sender<(Event, usize)>>,
    /// See [`Plugins::generation`].
    generation: AtomicU64,
    /// Bytes of the events queued.
    queued_event_bytes: Arc<AtomicUsize>,
    dropped_events: AtomicU64,
    /// Present when plugins come from a directory.
    reloader: Option<Reloader>,
    /// Stops the directory watcher when the plugins go.
    watcher: std::sync::Mutex<Option<watch::Watcher>>,
    /// The broker store the plugins' key-value stores write through to,
    /// with the entries of plugins not loaded (yet).
    kv_backing: std::sync::Mutex<Option<KvBacking>>,
    /// In a cluster: where the stores of plugins with `kv_cluster` are
    /// replicated.
    kv_replicas: std::sync::Mutex<Option<Arc<dyn KvReplicas>>>,
    /// The plugins' publications, for the broker to route.
    outbox: Option<Arc<outbox::Outbox>>,
}

/// What makes a plugin's key-value store the cluster's (the cluster, see
/// `cluster::plugin_kv`).
pub trait KvReplicas: Send + Sync + std::fmt::Debug {
    /// Makes plugin `plugin`'s store `kv` the cluster's: its changes go to
    /// the cluster, the other nodes' come back into it.
    fn replicate(&self, plugin: &Arc<str>, kv: &Arc<kv::KvStore>);
}

/// See [`Plugins::restore_kv`].
#[derive(Debug)]
struct KvBacking {
    store: Arc<crate::store::Store>,
    entries: std::collections::HashMap<String, Vec<(String, Vec<u8>)>>,
}

impl Plugins {
    /// No plugins.
    pub fn none() -> Self {
        Plugins::default()
    }

    /// Loads every `.wasm` in `config.plugins.dir` (hidden files and
    /// `enabled = false` ones skipped), in chain order: plugins with a
    /// `priority` first, lowest first, then the rest by file name; any
    /// plugin that fails to load fails the start. Then watches the
    /// directory (unless `plugins.watch = "off"`). Must run inside the
    /// tokio runtime (it starts the notification dispatcher).
    pub async fn load(config: &Config) -> Result<Arc<Plugins>, PluginsError> {
        let Some(dir) = &config.plugins.dir else {
            return Ok(Arc::new(Plugins::none()));
        };
        let outbox = outbox::Outbox::new(crate::limits::MessageLimits::from_config(config));
        let runtime = Runtime::new(config.plugins.cache_dir.clone(), dir, Some(outbox.clone()))?;
        let reloader = Reloader::new(runtime, dir.clone(), config.clone());
        let set = reloader.initial(config).await?;
        tracing::info!("plugin chain: {}", set.order());
        let shared = Arc::new(ArcSwap::from_pointee(set));
        let (tx, rx) = mpsc::channel(EVENT_QUEUE);
        let queued_event_bytes = Arc::new(AtomicUsize::new(0));
        tokio::spawn(events::dispatch(
            shared.clone(),
            rx,
            queued_event_bytes.clone(),
        ));
        let plugins = Arc::new(Plugins {
            exported: AtomicU32::new(shared.load().exported.bits()),
            set: shared,
            events: Some(tx),
            generation: AtomicU64::new(0),
            queued_event_bytes,
            dropped_events: AtomicU64::new(0),
            reloader: Some(reloader),
            watcher: std::sync::Mutex::new(None),
            kv_backing: std::sync::Mutex::new(None),
            kv_replicas: std::sync::Mutex::new(None),
            outbox: Some(outbox),
        });
        if let Some(w) = watch::Watcher::start(&plugins, dir, &config.plugins) {
            *plugins.watcher.lock().unwrap_or_else(|e| e.into_inner()) = Some(w);
        }
        Ok(plugins)
    }

    /// The current set.
    fn set(&self) -> Arc<PluginSet> {
        self.set.load_full()
    }

    /// Makes `set` current: new calls use it, calls in flight finish on
    /// the set they started with.
    fn swap(&self, set: PluginSet) {
        self.bind_kv(&set.list);
        self.exported.store(set.exported.bits(), Ordering::Release);
        self.set.store(Arc::new(set));
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Makes every plugin's key-value store write through to `store`,
    /// starting from `entries` (read back from it, by plugin name); a
    /// plugin loaded later finds its entries when it arrives.
    pub fn restore_kv(
        &self,
        store: &Arc<crate::store::Store>,
        entries: std::collections::HashMap<String, Vec<(String, Vec<u8>)>>,
    ) {
        *self.kv_backing.lock().unwrap_or_else(|e| e.into_inner()) = Some(KvBacking {
            store: store.clone(),
            entries,
        });
        self.bind_kv(&self.set().list);
    }

    /// In a cluster: the stores of plugins with `kv_cluster` (now and
    /// later) become the cluster's through `replicas`.
    pub fn join_cluster(&self, replicas: Arc<dyn KvReplicas>) {
        *self.kv_replicas.lock().unwrap_or_else(|e| e.into_inner()) = Some(replicas);
        self.replicate_kv(&self.set().list);
    }

    fn replicate_kv(&self, list: &[Arc<Plugin>]) {
        let replicas = self.kv_replicas.lock().unwrap_or_else(|e| e.into_inner());
        let Some(r) = replicas.as_ref() else {
            return;
        };
        for p in list.iter().filter(|p| p.settings.kv_cluster) {
            if !p.shared.kv.is_replicated() {
                r.replicate(&p.name, &p.shared.kv);
            }
        }
    }

    fn bind_kv(&self, list: &[Arc<Plugin>]) {
        self.replicate_kv(list);
        let mut backing = self.kv_backing.lock().unwrap_or_else(|e| e.into_inner());
        let Some(b) = backing.as_mut() else {
            return;
        };
        for p in list {
            let kv = &p.shared.kv;
            if !kv.is_bound() {
                let entries = b.entries.remove(&*p.name).unwrap_or_default();
                kv.bind(&b.store, &p.name, entries);
            }
        }
    }

    /// The messages plugins publish, once: for the broker's task that
    /// routes them (`crate::publications`).
    pub fn take_publications(&self) -> Option<mpsc::Receiver<Publication>> {
        self.outbox.as_ref()?.take()
    }

    /// Counts a publication of plugin `name` that the other plugins
    /// refused.
    pub fn publication_denied(&self, name: &str) {
        if let Some(p) = self.get(name) {
            p.shared.publisher.denied.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Bumped whenever the plugin set changes: what the previous set
    /// allowed (a cached publish acceptance) no longer holds.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn exported(&self) -> HookSet {
        HookSet::from_bits(self.exported.load(Ordering::Acquire))
    }

    /// The plugins in chain order.
    pub fn list(&self) -> Vec<Arc<Plugin>> {
        self.set().list.clone()
    }

    /// The plugin named `name`.
    pub fn get(&self, name: &str) -> Option<Arc<Plugin>> {
        self.set().get(name).cloned()
    }

    /// A value from plugin `name`'s key-value store (for inspection).
    pub fn kv_get(&self, name: &str, key: &str) -> Option<Vec<u8>> {
        self.get(name)?.shared.kv.get(key)
    }

    /// Whether any plugin implements `hook`.
    pub fn implements(&self, hook: Hook) -> bool {
        self.exported().contains(hook)
    }

    /// Whether any plugin authenticates clients at CONNECT.
    pub fn authenticates(&self) -> bool {
        let e = self.exported();
        e.contains(Hook::AuthOnRegister) || e.contains(Hook::AuthOnRegisterM5)
    }

    /// Whether some plugin implements `v3` or `m5`: clients of every
    /// version then go through the chain (see `set::Chain`).
    fn walks(&self, v3: Hook, m5: Hook) -> bool {
        let e = self.exported();
        e.contains(v3) || e.contains(m5)
    }

    /// Whether PUBLISH goes through `auth-on-publish(-m5)`.
    pub fn checks_publish(&self) -> bool {
        self.walks(Hook::AuthOnPublish, Hook::AuthOnPublishM5)
    }

    /// Whether SUBSCRIBE goes through `auth-on-subscribe(-m5)`.
    pub fn checks_subscribe(&self) -> bool {
        self.walks(Hook::AuthOnSubscribe, Hook::AuthOnSubscribeM5)
    }

    /// Whether UNSUBSCRIBE goes through `on-unsubscribe(-m5)`.
    pub fn checks_unsubscribe(&self) -> bool {
        self.walks(Hook::OnUnsubscribe, Hook::OnUnsubscribeM5)
    }

    /// Whether messages to subscribers go through the plugins: the read
    /// check `auth-on-deliver` or the rewrite `on-deliver(-m5)` (see
    /// [`Plugins::rewrite_delivery`]).
    pub fn rewrites_deliveries(&self) -> bool {
        let e = self.exported();
        e.contains(Hook::AuthOnDeliver)
            || e.contains(Hook::OnDeliver)
            || e.contains(Hook::OnDeliverM5)
    }

    /// Notifications dropped because the dispatcher fell behind.
    pub fn dropped_events(&self) -> u64 {
        self.dropped_events.load(Ordering::Relaxed)
    }
}

/// Walks `chain` with `call` under each plugin's failure policy (see
/// `chain::walk`); a failure the policy turns into `next` is logged with
/// the hook's name.
async fn walk<'a, T, E, Fut>(
    chain: &'a [Arc<Plugin>],
    hook: &'static str,
    call: impl FnMut(&'a Arc<Plugin>) -> Fut,
) -> chain::Outcome<T, E, CallFailure>
where
    Fut: Future<Output = Result<chain::Answer<T, E>, CallFailure>>,
{
    chain::walk(
        chain,
        call,
        |p| p.settings.on_failure,
        |p, failure| {
            tracing::warn!(plugin = %p.name, hook, "call failed ({failure}); failing open to the next plugin");
        },
    )
    .await
}

/// At most 200 characters of plugin text, for logs.
fn clip(s: &str) -> String {
    match s.char_indices().nth(200) {
        Some((i, _)) => format!("{}… ({} bytes)", &s[..i], s.len()),
        None => s.to_owned(),
    }
}
