//! The broker-wide state every connection task shares: configuration,
//! router, session registry, counters.

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::time::Instant;

use crate::config::Config;
use crate::keepalive::Sweeper;
use crate::limits::MessageLimits;
use crate::listener::TlsListeners;
use crate::memory::{Budget, Pressure};
use crate::metrics::Metrics;
use crate::plugins::Plugins;
use crate::registry::Registry;
use crate::router::Router;
use crate::session::QueueLimits;
use crate::store::Store;
use crate::topic::ClientId;

/// Buffered bytes of an incomplete packet past which the memory budget is
/// consulted before reading more of it.
const PARTIAL_PACKET_CHECK: usize = 64 * 1024;

/// Shared broker state.
#[derive(Debug)]
pub struct Context {
    pub config: Config,
    pub router: Arc<Router>,
    pub registry: Arc<Registry>,
    pub metrics: Arc<Metrics>,
    pub plugins: Arc<Plugins>,
    /// Enforces keep alive and connection lifetimes.
    pub sweeper: Arc<Sweeper>,
    /// Queue limits of sessions no plugin changed (shared by them).
    pub default_limits: Arc<QueueLimits>,
    /// Topic shapes and message sizes, for clients and plugins alike.
    pub limits: MessageLimits,
    /// The memory budget.
    pub memory: Budget,
    /// Where persistent sessions and retained messages are stored
    /// (`[persistence] dir`), if anywhere.
    pub store: Option<Arc<Store>>,
    pub started: Instant,
    /// The TLS listeners' certificates, reloaded by [`Context::reload`]
    /// (set by the server once its listeners are bound).
    pub(crate) tls: TlsListeners,
    id_seed: u64,
    id_counter: AtomicU64,
}

impl Context {
    /// Fresh state for `config` (already validated) and loaded `plugins`.
    pub fn new(config: Config, plugins: Arc<Plugins>, store: Option<Arc<Store>>) -> Self {
        let metrics = Arc::new(Metrics::default());
        let memory = Budget::from_config(&config.limits);
        let router = Arc::new(Router::new(
            metrics.clone(),
            plugins.clone(),
            &config.limits,
            memory,
            store.clone(),
        ));
        let registry = Arc::new(Registry::new(
            router.clone(),
            metrics.clone(),
            plugins.clone(),
            config.limits.max_sessions,
            store.clone(),
        ));
        Context {
            default_limits: Arc::new(QueueLimits::from_config(&config.session)),
            limits: MessageLimits::from_config(&config),
            memory,
            store,
            config,
            router,
            registry,
            metrics,
            plugins,
            sweeper: Arc::new(Sweeper::default()),
            started: Instant::now(),
            tls: TlsListeners::default(),
            // Random per process, so assigned ids differ between runs.
            id_seed: RandomState::new().hash_one(std::process::id()),
            id_counter: AtomicU64::new(0),
        }
    }

    /// Applies a configuration file read again (SIGHUP): the plugin
    /// limits and `[plugin.NAME]` sections take effect now (see
    /// [`Plugins::reconfigure`]), and each TLS listener reloads its
    /// certificates from its `[listener.tls]` (keeping the old ones if the
    /// new ones fail to load; open connections are untouched); changes
    /// anywhere else are logged as needing a restart. Returns whether the
    /// plugin chain changed.
    pub async fn reload(&self, config: &Config) -> bool {
        let old = &self.config;
        // Listener settings other than the TLS files need a restart.
        let listener_settings = |c: &Config| {
            let mut listeners = c.listener.clone();
            for l in &mut listeners {
                l.tls = None;
            }
            listeners
        };
        let restart_only = [
            (
                "[[listener]] (other than [listener.tls])",
                listener_settings(old) != listener_settings(config),
            ),
            ("[server]", old.server != config.server),
            ("[mqtt]", old.mqtt != config.mqtt),
            ("[session]", old.session != config.session),
            ("[limits]", old.limits != config.limits),
            ("[log]", old.log != config.log),
            ("[admin]", old.admin != config.admin),
            ("[persistence]", old.persistence != config.persistence),
            ("[cluster]", old.cluster != config.cluster),
            (
                "plugins.cache_dir",
                old.plugins.cache_dir != config.plugins.cache_dir,
            ),
            (
                "plugins.publish_refusal_v3",
                old.plugins.publish_refusal_v3 != config.plugins.publish_refusal_v3,
            ),
            (
                "plugins.watch settings",
                (
                    old.plugins.watch,
                    old.plugins.watch_debounce_ms,
                    old.plugins.poll_interval_ms,
                ) != (
                    config.plugins.watch,
                    config.plugins.watch_debounce_ms,
                    config.plugins.poll_interval_ms,
                ),
            ),
        ];
        for (what, changed) in restart_only {
            if changed {
                tracing::warn!(
                    "configuration reloaded: {what} changed and takes effect after a restart"
                );
            }
        }
        self.tls.reload(config);
        let changed = self.plugins.reconfigure(config).await;
        tracing::info!(
            "configuration reloaded; plugin chain {}",
            if changed { "changed" } else { "unchanged" }
        );
        changed
    }

    /// Whether a connection holding `buffered` bytes of a packet not yet
    /// complete must stop buffering it: the broker is over its memory
    /// budget and the packet is past the size a read fills anyway.
    pub fn over_budget_for_partial(&self, buffered: usize) -> bool {
        buffered >= PARTIAL_PACKET_CHECK && self.memory.pressure() == Pressure::Over
    }

    /// A client id for a client that sent an empty one: unique within this
    /// run and unlikely to repeat across runs.
    pub fn assign_client_id(&self) -> ClientId {
        let n = self.id_counter.fetch_add(1, Ordering::Relaxed);
        let id = format!("sluice-{:016x}-{n}", self.id_seed);
        // Non-empty, no NUL: always valid.
        ClientId::new(&id).unwrap_or_else(|_| unreachable!("assigned ids are valid"))
    }
}
