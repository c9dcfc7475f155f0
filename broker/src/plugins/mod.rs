//! The plugin host: WebAssembly components loaded from the plugin
//! directory, run in wasmtime with fuel, memory and deadline limits, and
//! called as VerneMQ-style hooks.
//!
//! The rest of the broker sees only this module's API: [`Plugins::authenticate`]
//! and [`Plugins::enhanced_auth`] walk the authentication chains and return
//! broker values; [`Plugins::notify`] queues notifications, which a
//! background task delivers in order. Nothing outside this module touches
//! wasmtime.

mod bindings;
mod breaker;
mod cache;
pub mod chain;
mod convert;
mod engine;
mod host;
mod plugin;
mod pool;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;

use self::bindings::exports::sluice::plugin::{auth_on_register, auth_on_register_m5, on_auth_m5};
use self::bindings::sluice::plugin::types as wit;
pub use self::chain::FailurePolicy;
use self::chain::{Answer, Outcome};
pub use self::convert::{ConnectionInfo, ListenerKind, ModifierError, Modifiers};
use self::engine::Runtime;
pub use self::plugin::{CallFailure, Hook, LoadError, Plugin, Settings};
use crate::codec::{ConnectProperties, ProtocolVersion};
use crate::config::Config;
use crate::reason::ReasonCode;
use crate::session::SubscriberId;

/// Calls hook `$field` of `$plugin`: `$g` is the typed export and `$store`
/// the instance's store inside `$call`.
macro_rules! hook_call {
    ($plugin:expr, $hook:expr, $field:ident, |$g:ident, $store:ident| $call:expr) => {
        $plugin.call($hook, move |mut i: Box<plugin::Instance>| {
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
        })
    };
}

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

/// A client's registration, as the authentication hooks see it.
#[derive(Debug)]
pub struct RegisterRequest<'a> {
    pub conn: &'a ConnectionInfo,
    pub id: &'a SubscriberId,
    pub version: ProtocolVersion,
    pub username: Option<&'a str>,
    pub password: Option<&'a [u8]>,
    pub clean_start: bool,
    pub properties: &'a ConnectProperties,
}

/// A refusal decided by the plugins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// MQTT 5 reason code (MQTT 3.x clients get its 3.x equivalent).
    pub code: ReasonCode,
    pub reason_string: Option<String>,
    pub server_reference: Option<String>,
    /// What to log: which plugin, and why.
    pub cause: String,
}

/// What the authentication chain decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegisterOutcome {
    /// No plugin implements an authentication hook: `allow_anonymous`
    /// decides.
    NoPlugins,
    Accepted {
        plugin: Arc<str>,
        modifiers: Modifiers,
    },
    Refused(Refusal),
}

/// Where an enhanced-authentication exchange stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthStep {
    Connect,
    Continue,
    Reauthenticate,
}

/// One step of an enhanced-authentication exchange.
#[derive(Debug)]
pub struct AuthRequest<'a> {
    pub conn: &'a ConnectionInfo,
    pub id: &'a SubscriberId,
    pub username: Option<&'a str>,
    pub step: AuthStep,
    pub method: &'a str,
    pub data: Option<&'a [u8]>,
}

/// What the enhanced-authentication chain decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthOutcome {
    /// Send AUTH 0x18 with this data.
    Continue(Option<Vec<u8>>),
    /// Authenticated; the data goes to the client.
    Success(Option<Vec<u8>>),
    Refused(Refusal),
    /// No plugin handles this method.
    Unhandled,
}

/// A session-lifecycle notification.
#[derive(Clone, Debug)]
pub enum Event {
    Wakeup(SubscriberId),
    Register {
        peer: SocketAddr,
        id: SubscriberId,
        username: Option<String>,
        /// CONNECT properties of an MQTT 5 client.
        properties: Option<ConnectProperties>,
    },
    Offline(SubscriberId),
    Gone(SubscriberId),
    Expired(SubscriberId),
}

/// The loaded plugins, in chain order.
#[derive(Debug, Default)]
pub struct Plugins {
    list: Vec<Arc<Plugin>>,
    events: Option<mpsc::Sender<Event>>,
    /// Notification hooks some plugin implements: events for the others
    /// are not even queued.
    wanted: Vec<Hook>,
    /// The authentication chains, precomputed: MQTT 3.x clients, MQTT 5
    /// clients, enhanced authentication.
    auth_v3: Vec<Arc<Plugin>>,
    auth_v5: Vec<Arc<Plugin>>,
    auth_enhanced: Vec<Arc<Plugin>>,
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
        let wanted: Vec<Hook> = Hook::ALL
            .into_iter()
            .filter(|h| list.iter().any(|p| p.implements(*h)))
            .collect();
        let chain = |keep: &dyn Fn(&Plugin) -> bool| -> Vec<Arc<Plugin>> {
            list.iter().filter(|p| keep(p)).cloned().collect()
        };
        let auth_v3 = chain(&|p| p.implements(Hook::AuthOnRegister));
        let auth_v5 =
            chain(&|p| p.implements(Hook::AuthOnRegister) || p.implements(Hook::AuthOnRegisterM5));
        let auth_enhanced = chain(&|p| p.implements(Hook::OnAuthM5));
        let (tx, rx) = mpsc::channel(EVENT_QUEUE);
        tokio::spawn(dispatch(list.clone(), rx));
        Ok(Plugins {
            list,
            events: Some(tx),
            wanted,
            auth_v3,
            auth_v5,
            auth_enhanced,
            dropped_events: AtomicU64::new(0),
        })
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
        self.list.iter().any(|p| p.implements(hook))
    }

    /// Whether any plugin authenticates clients at CONNECT.
    pub fn authenticates(&self) -> bool {
        self.implements(Hook::AuthOnRegister) || self.implements(Hook::AuthOnRegisterM5)
    }

    /// Notifications dropped because the dispatcher fell behind.
    pub fn dropped_events(&self) -> u64 {
        self.dropped_events.load(Ordering::Relaxed)
    }

    /// Walks the authentication chain for a CONNECT. MQTT 5 clients get a
    /// plugin's `auth-on-register-m5`, or its `auth-on-register` when it has
    /// only that one.
    pub async fn authenticate(
        &self,
        req: &RegisterRequest<'_>,
        config: &Config,
    ) -> RegisterOutcome {
        if !self.authenticates() {
            return RegisterOutcome::NoPlugins;
        }
        let v5 = req.version.is_v5();
        let chain = if v5 { &self.auth_v5 } else { &self.auth_v3 };
        let conn = req.conn.wit();
        let id = convert::subscriber_id(req.id);
        let props = v5.then(|| convert::connect_properties(req.properties));
        let outcome = chain::walk(
            chain,
            |p| {
                let (id, props) = (&id, &props);
                async move {
                    match props {
                        Some(props) if p.implements(Hook::AuthOnRegisterM5) => {
                            call_register_m5(p, conn, id, req, props).await
                        }
                        _ => call_register(p, conn, id, req).await,
                    }
                }
            },
            |p| p.settings.on_failure,
            |p, failure: &CallFailure| {
                tracing::warn!(plugin = %p.name, "authentication hook failed ({failure}); failing open to the next plugin");
            },
        )
        .await;
        match outcome {
            Outcome::Accepted { index, value } => {
                let plugin = chain[index].name.clone();
                match value.map(|m| convert::modifiers(m, req.version, config)) {
                    None => RegisterOutcome::Accepted {
                        plugin,
                        modifiers: Modifiers::default(),
                    },
                    Some(Ok(modifiers)) => RegisterOutcome::Accepted { plugin, modifiers },
                    Some(Err(e)) => RegisterOutcome::Refused(Refusal {
                        code: ReasonCode::UNSPECIFIED_ERROR,
                        reason_string: None,
                        server_reference: None,
                        cause: format!("plugin {plugin} returned an invalid {e}"),
                    }),
                }
            }
            Outcome::Refused { index, error } => {
                RegisterOutcome::Refused(error.by(&chain[index].name, convert::is_connack_refusal))
            }
            Outcome::Failed { index, failure } => RegisterOutcome::Refused(Refusal {
                code: ReasonCode::NOT_AUTHORIZED,
                reason_string: None,
                server_reference: None,
                cause: format!("plugin {} failed: {failure}", chain[index].name),
            }),
            Outcome::Exhausted => RegisterOutcome::Refused(Refusal {
                code: ReasonCode::NOT_AUTHORIZED,
                reason_string: None,
                server_reference: None,
                cause: "every authentication plugin answered next".into(),
            }),
        }
    }

    /// Walks the enhanced-authentication chain for one step. `reauth`
    /// selects which reason codes a refusal may use (DISCONNECT instead of
    /// CONNACK).
    pub async fn enhanced_auth(&self, req: &AuthRequest<'_>, reauth: bool) -> AuthOutcome {
        let chain = &self.auth_enhanced;
        let conn = req.conn.wit();
        let id = convert::subscriber_id(req.id);
        let request = on_auth_m5::AuthRequest {
            step: match req.step {
                AuthStep::Connect => on_auth_m5::AuthStep::Connect,
                AuthStep::Continue => on_auth_m5::AuthStep::ContinueAuthentication,
                AuthStep::Reauthenticate => on_auth_m5::AuthStep::Reauthenticate,
            },
            method: req.method.to_owned(),
            data: req.data.map(<[u8]>::to_vec),
            username: req.username.map(str::to_owned),
        };
        let outcome = chain::walk(
            chain,
            |p| {
                let (id, request) = (&id, &request);
                async move {
                    let verdict = hook_call!(p, Hook::OnAuthM5, on_auth_m5, |g, store| {
                        g.call_on_auth_m5(store, conn, id, request)
                    })
                    .await?;
                    Ok(match verdict {
                        on_auth_m5::AuthVerdict::ContinueAuthentication(d) => {
                            Answer::Ok(AuthOutcome::Continue(d))
                        }
                        on_auth_m5::AuthVerdict::Success(d) => Answer::Ok(AuthOutcome::Success(d)),
                        on_auth_m5::AuthVerdict::Next => Answer::Next,
                        on_auth_m5::AuthVerdict::Error(e) => Answer::Error(Denied::M5(e)),
                    })
                }
            },
            |p| p.settings.on_failure,
            |p, failure: &CallFailure| {
                tracing::warn!(plugin = %p.name, "on-auth-m5 failed ({failure}); failing open to the next plugin");
            },
        )
        .await;
        let valid: fn(ReasonCode) -> bool = if reauth {
            convert::is_disconnect_reason
        } else {
            convert::is_connack_refusal
        };
        match outcome {
            Outcome::Accepted { value, .. } => value,
            Outcome::Refused { index, error } => {
                let mut refusal = error.by(&chain[index].name, |code| {
                    valid(code) || (reauth && convert::is_connack_refusal(code))
                });
                // A CONNACK-only code (0x86 bad credentials, 0x8C bad
                // method...) cannot end an established connection.
                if reauth && !convert::is_disconnect_reason(refusal.code) {
                    refusal.code = ReasonCode::NOT_AUTHORIZED;
                }
                AuthOutcome::Refused(refusal)
            }
            Outcome::Failed { index, failure } => AuthOutcome::Refused(Refusal {
                code: ReasonCode::NOT_AUTHORIZED,
                reason_string: None,
                server_reference: None,
                cause: format!("plugin {} failed: {failure}", chain[index].name),
            }),
            Outcome::Exhausted => AuthOutcome::Unhandled,
        }
    }

    /// Queues a notification for every plugin that implements its hook.
    /// Never waits: if the dispatcher is far behind, the event is dropped
    /// and counted.
    pub fn notify(&self, event: Event) {
        let Some(tx) = &self.events else {
            return;
        };
        let hooks: &[Hook] = match event {
            Event::Wakeup(_) => &[Hook::OnClientWakeup],
            Event::Register { .. } => &[Hook::OnRegister, Hook::OnRegisterM5],
            Event::Offline(_) => &[Hook::OnClientOffline],
            Event::Gone(_) => &[Hook::OnClientGone],
            Event::Expired(_) => &[Hook::OnSessionExpired],
        };
        if !hooks.iter().any(|h| self.wanted.contains(h)) {
            return;
        }
        if tx.try_send(event).is_err() {
            let n = self.dropped_events.fetch_add(1, Ordering::Relaxed);
            if n.is_power_of_two() {
                tracing::warn!(
                    "plugin notification queue full; {} notifications dropped so far",
                    n + 1
                );
            }
        }
    }
}

/// A plugin's refusal before validation.
enum Denied {
    V3(wit::Denial),
    M5(wit::M5Denial),
}

impl Denied {
    /// The refusal to send, checking that a plugin-supplied code is one
    /// `valid` allows.
    fn by(self, plugin: &str, valid: impl Fn(ReasonCode) -> bool) -> Refusal {
        match self {
            Denied::V3(wit::Denial::InvalidCredentials(why)) => Refusal {
                code: ReasonCode::BAD_USER_NAME_OR_PASSWORD,
                reason_string: None,
                server_reference: None,
                cause: format!("plugin {plugin}: invalid credentials: {}", clip(&why)),
            },
            Denied::V3(wit::Denial::NotAuthorized(why)) => Refusal {
                code: ReasonCode::NOT_AUTHORIZED,
                reason_string: None,
                server_reference: None,
                cause: format!("plugin {plugin}: not authorized: {}", clip(&why)),
            },
            Denied::M5(d) => {
                let code = ReasonCode(d.reason_code);
                if valid(code) {
                    Refusal {
                        code,
                        cause: format!(
                            "plugin {plugin} refused with {code}{}",
                            d.reason_string
                                .as_deref()
                                .map(|s| format!(": {}", clip(s)))
                                .unwrap_or_default()
                        ),
                        reason_string: convert::reason_string(d.reason_string),
                        server_reference: convert::reason_string(d.server_reference),
                    }
                } else {
                    Refusal {
                        code: ReasonCode::UNSPECIFIED_ERROR,
                        reason_string: None,
                        server_reference: None,
                        cause: format!(
                            "plugin {plugin} refused with {code}, which is not a refusal code here"
                        ),
                    }
                }
            }
        }
    }
}

/// At most 200 characters of plugin text, for logs.
fn clip(s: &str) -> String {
    match s.char_indices().nth(200) {
        Some((i, _)) => format!("{}… ({} bytes)", &s[..i], s.len()),
        None => s.to_owned(),
    }
}

type RegisterAnswer = Result<Answer<Option<wit::RegisterModifiers>, Denied>, CallFailure>;

async fn call_register(
    p: &Plugin,
    conn: &wit::Connection,
    id: &wit::SubscriberId,
    req: &RegisterRequest<'_>,
) -> RegisterAnswer {
    let verdict = hook_call!(p, Hook::AuthOnRegister, auth_on_register, |g, store| {
        g.call_auth_on_register(store, conn, id, req.username, req.password, req.clean_start)
    })
    .await?;
    Ok(match verdict {
        auth_on_register::RegisterVerdict::Ok(m) => Answer::Ok(m),
        auth_on_register::RegisterVerdict::Next => Answer::Next,
        auth_on_register::RegisterVerdict::Error(d) => Answer::Error(Denied::V3(d)),
    })
}

async fn call_register_m5(
    p: &Plugin,
    conn: &wit::Connection,
    id: &wit::SubscriberId,
    req: &RegisterRequest<'_>,
    props: &wit::ConnectProperties,
) -> RegisterAnswer {
    let verdict = hook_call!(
        p,
        Hook::AuthOnRegisterM5,
        auth_on_register_m5,
        |g, store| {
            g.call_auth_on_register_m5(
                store,
                conn,
                id,
                req.username,
                req.password,
                req.clean_start,
                props,
            )
        }
    )
    .await?;
    Ok(match verdict {
        auth_on_register_m5::RegisterVerdictM5::Ok(m) => Answer::Ok(m),
        auth_on_register_m5::RegisterVerdictM5::Next => Answer::Next,
        auth_on_register_m5::RegisterVerdictM5::Error(d) => Answer::Error(Denied::M5(d)),
    })
}

/// Delivers notifications in order, to every plugin implementing the hook,
/// in chain order. Failures are logged by `Plugin::call` and go no further.
async fn dispatch(plugins: Vec<Arc<Plugin>>, mut events: mpsc::Receiver<Event>) {
    while let Some(event) = events.recv().await {
        for p in &plugins {
            deliver(p, &event).await;
        }
    }
}

async fn deliver(p: &Plugin, event: &Event) {
    macro_rules! simple {
        ($hook:expr, $field:ident, $call:ident, $id:expr) => {{
            if p.implements($hook) {
                let id = &convert::subscriber_id($id);
                let _ = hook_call!(p, $hook, $field, |g, store| g.$call(store, id)).await;
            }
        }};
    }
    match event {
        Event::Wakeup(id) => simple!(
            Hook::OnClientWakeup,
            on_client_wakeup,
            call_on_client_wakeup,
            id
        ),
        Event::Offline(id) => simple!(
            Hook::OnClientOffline,
            on_client_offline,
            call_on_client_offline,
            id
        ),
        Event::Gone(id) => simple!(Hook::OnClientGone, on_client_gone, call_on_client_gone, id),
        Event::Expired(id) => simple!(
            Hook::OnSessionExpired,
            on_session_expired,
            call_on_session_expired,
            id
        ),
        Event::Register {
            peer,
            id,
            username,
            properties,
        } => {
            let peer = convert::peer(*peer);
            let id = convert::subscriber_id(id);
            let username = username.as_deref();
            match properties {
                Some(props) if p.implements(Hook::OnRegisterM5) => {
                    let props = &convert::connect_properties(props);
                    let (peer, id) = (&peer, &id);
                    let _ = hook_call!(p, Hook::OnRegisterM5, on_register_m5, |g, store| {
                        g.call_on_register_m5(store, peer, id, username, props)
                    })
                    .await;
                }
                _ if p.implements(Hook::OnRegister) => {
                    let (peer, id) = (&peer, &id);
                    let _ = hook_call!(p, Hook::OnRegister, on_register, |g, store| {
                        g.call_on_register(store, peer, id, username)
                    })
                    .await;
                }
                _ => {}
            }
        }
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
