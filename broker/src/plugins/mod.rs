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
mod engine;
mod events;
mod hooks;
mod host;
mod messages;
mod plugin;
mod pool;
mod publish;
mod register;
mod subscribe;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;

pub use self::chain::FailurePolicy;
pub use self::convert::{
    ConnectionInfo, ListenerKind, ModifierError, Modifiers, is_connack_refusal,
};
use self::engine::Runtime;
pub use self::events::{DropReason, Event};
pub use self::hooks::HookSet;
pub use self::plugin::{CallFailure, Hook, LoadError, Plugin, Settings};
pub use self::publish::{
    DeliverRequest, DeliveryChanges, PublishChanges, PublishOutcome, PublishRequest,
    is_puback_refusal,
};
pub use self::register::{
    AuthOutcome, AuthRequest, AuthStep, Refusal, RegisterOutcome, RegisterRequest,
};
pub use self::subscribe::{
    SubscribeOutcome, SubscribeRequest, TopicDecision, UnsubscribeChanges, UnsubscribeRequest,
};
use crate::codec::ProtocolVersion;
use crate::config::Config;

/// Notifications waiting for the dispatcher; beyond this they are dropped
/// (and counted) rather than slow the broker down.
const EVENT_QUEUE: usize = 16 * 1024;

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
}

/// The plugins of one conditional chain, per protocol family: a plugin
/// serves MQTT 3.x clients with its v3 hook, and MQTT 5 clients with its m5
/// hook, or its v3 hook when it has no m5 one.
#[derive(Debug, Default)]
struct Chain {
    v3: Vec<Arc<Plugin>>,
    v5: Vec<Arc<Plugin>>,
}

impl Chain {
    fn new(list: &[Arc<Plugin>], v3: Hook, m5: Hook) -> Self {
        let keep = |hooks: &[Hook]| -> Vec<Arc<Plugin>> {
            list.iter()
                .filter(|p| hooks.iter().any(|h| p.implements(*h)))
                .cloned()
                .collect()
        };
        Chain {
            v3: keep(&[v3]),
            v5: keep(&[v3, m5]),
        }
    }

    fn get(&self, version: ProtocolVersion) -> &[Arc<Plugin>] {
        if version.is_v5() { &self.v5 } else { &self.v3 }
    }
}

/// The loaded plugins, in chain order.
#[derive(Debug, Default)]
pub struct Plugins {
    list: Vec<Arc<Plugin>>,
    events: Option<mpsc::Sender<Event>>,
    /// Every hook some plugin implements: notifications for the others are
    /// not even queued, and chains nobody implements are not walked.
    exported: HookSet,
    /// The chains, precomputed.
    register: Chain,
    auth_enhanced: Vec<Arc<Plugin>>,
    subscribe: Chain,
    unsubscribe: Chain,
    publish: Chain,
    deliver: Chain,
    dropped_events: AtomicU64,
}

impl Plugins {
    /// No plugins.
    pub fn none() -> Self {
        Plugins::default()
    }

    /// Loads every `.wasm` in `config.plugins.dir` (hidden files and
    /// `enabled = false` ones skipped), in chain order: plugins with a
    /// `priority` first, lowest first, then the rest by file name. Must run
    /// inside the tokio runtime (it starts the notification dispatcher).
    pub async fn load(config: &Config) -> Result<Plugins, PluginsError> {
        let Some(dir) = &config.plugins.dir else {
            return Ok(Plugins::none());
        };
        let files = plugin_files(dir)?;
        let cache_dir = config
            .plugins
            .cache_dir
            .clone()
            .unwrap_or_else(|| dir.join(".cache"));
        let runtime = Runtime::new(Some(cache_dir))?;
        let mut list = Vec::new();
        for (name, path) in files {
            let own = config.plugin.get(&name);
            if own.and_then(|p| p.enabled) == Some(false) {
                tracing::info!(plugin = %name, "plugin disabled in the configuration");
                continue;
            }
            let settings = settings(config, own);
            list.push(Arc::new(
                Plugin::load(&runtime, &name, &path, settings).await?,
            ));
        }
        for name in config.plugin.keys() {
            if !list.iter().any(|p| &*p.name == name.as_str()) {
                tracing::warn!(
                    "[plugin.{name}] is configured but there is no {name}.wasm in {}",
                    dir.display()
                );
            }
        }
        // Stable: file-name order among equal priorities.
        list.sort_by_key(|p| (p.settings.priority.is_none(), p.settings.priority));
        let order: Vec<&str> = list.iter().map(|p| &*p.name).collect();
        tracing::info!("plugin chain: [{}]", order.join(", "));
        let (tx, rx) = mpsc::channel(EVENT_QUEUE);
        tokio::spawn(events::dispatch(list.clone(), rx));
        Ok(Plugins::assemble(list, Some(tx)))
    }

    fn assemble(list: Vec<Arc<Plugin>>, events: Option<mpsc::Sender<Event>>) -> Plugins {
        let exported = list
            .iter()
            .fold(HookSet::default(), |set, p| set.union(p.hooks()));
        Plugins {
            exported,
            register: Chain::new(&list, Hook::AuthOnRegister, Hook::AuthOnRegisterM5),
            auth_enhanced: list
                .iter()
                .filter(|p| p.implements(Hook::OnAuthM5))
                .cloned()
                .collect(),
            subscribe: Chain::new(&list, Hook::AuthOnSubscribe, Hook::AuthOnSubscribeM5),
            unsubscribe: Chain::new(&list, Hook::OnUnsubscribe, Hook::OnUnsubscribeM5),
            publish: Chain::new(&list, Hook::AuthOnPublish, Hook::AuthOnPublishM5),
            deliver: Chain::new(&list, Hook::OnDeliver, Hook::OnDeliverM5),
            list,
            events,
            dropped_events: AtomicU64::new(0),
        }
    }

    /// The plugins in chain order.
    pub fn list(&self) -> &[Arc<Plugin>] {
        &self.list
    }

    /// The plugin named `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Plugin>> {
        self.list.iter().find(|p| &*p.name == name)
    }

    /// A value from plugin `name`'s key-value store (for inspection).
    pub fn kv_get(&self, name: &str, key: &str) -> Option<Vec<u8>> {
        self.get(name)?.shared.kv.get(key)
    }

    /// Whether any plugin implements `hook`.
    pub fn implements(&self, hook: Hook) -> bool {
        self.exported.contains(hook)
    }

    /// Whether any plugin authenticates clients at CONNECT.
    pub fn authenticates(&self) -> bool {
        !self.register.v5.is_empty()
    }

    /// Whether PUBLISH from a client of `version` goes through
    /// `auth-on-publish(-m5)`.
    pub fn checks_publish(&self, version: ProtocolVersion) -> bool {
        !self.publish.get(version).is_empty()
    }

    /// Whether SUBSCRIBE from a client of `version` goes through
    /// `auth-on-subscribe(-m5)`.
    pub fn checks_subscribe(&self, version: ProtocolVersion) -> bool {
        !self.subscribe.get(version).is_empty()
    }

    /// Whether UNSUBSCRIBE from a client of `version` goes through
    /// `on-unsubscribe(-m5)`.
    pub fn checks_unsubscribe(&self, version: ProtocolVersion) -> bool {
        !self.unsubscribe.get(version).is_empty()
    }

    /// Whether messages to a subscriber of `version` go through
    /// `on-deliver(-m5)`.
    pub fn rewrites_deliveries(&self, version: ProtocolVersion) -> bool {
        !self.deliver.get(version).is_empty()
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

/// The `.wasm` files of `dir`, by file name, skipping hidden and
/// temporary files: (name without `.wasm`, path).
fn plugin_files(dir: &Path) -> Result<Vec<(String, PathBuf)>, PluginsError> {
    let entries = std::fs::read_dir(dir).map_err(|source| PluginsError::Dir {
        path: dir.to_owned(),
        source,
    })?;
    let mut files: Vec<(String, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| {
            let path = e.path();
            let name = path.file_name()?.to_str()?;
            let stem = name.strip_suffix(".wasm")?;
            (!name.starts_with('.') && !stem.is_empty()).then(|| (stem.to_owned(), path.clone()))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// A plugin's settings: its own section over `[plugins]`.
fn settings(config: &Config, own: Option<&crate::config::PluginConfig>) -> Settings {
    let d = &config.plugins;
    let own = own.cloned().unwrap_or_default();
    let instances = own.instances.unwrap_or(d.instances) as usize;
    let instances = if instances == 0 {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    } else {
        instances
    };
    Settings {
        priority: own.priority,
        fuel: own.fuel.unwrap_or(d.fuel),
        memory_bytes: own.memory_mb.unwrap_or(d.memory_mb) as usize * 1024 * 1024,
        deadline: Duration::from_millis(u64::from(own.deadline_ms.unwrap_or(d.deadline_ms))),
        instances,
        on_failure: own.on_failure.unwrap_or(d.on_failure),
        breaker_failures: own.breaker_failures.unwrap_or(d.breaker_failures),
        breaker_backoff: Duration::from_secs(u64::from(
            own.breaker_backoff_secs.unwrap_or(d.breaker_backoff_secs),
        )),
        kv_max_bytes: own.kv_max_bytes.unwrap_or(d.kv_max_bytes),
        config: own
            .config
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect(),
    }
}
