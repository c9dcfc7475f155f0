//! The broker's lifecycle: start, serve, graceful shutdown.
//!
//! [`Server::bind`] loads the plugins and binds the listeners (see
//! [`crate::listener`]; binding first lets tests use port 0 and read the
//! real port); [`Server::run`] starts their accept loops and serves until
//! the shutdown future completes, then stops accepting, tells every
//! connection to close (MQTT 5 clients get DISCONNECT 0x8B), and waits for
//! them to flush. The admin endpoint ([`crate::admin`]), when configured,
//! is bound and stopped with the MQTT listeners.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::config::Config;
use crate::context::Context;
use crate::listener::{self, Bound, ListenerError, TlsListeners};
use crate::plugins::Plugins;
use crate::store::{Recovered, Store, StoreError};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot load plugins: {0}")]
    Plugins(#[from] crate::plugins::PluginsError),
    #[error(transparent)]
    Listener(#[from] ListenerError),
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
    #[error("cannot start the admin endpoint on {addr} (admin.bind): {source}")]
    AdminBind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the admin endpoint: {0}")]
    AdminAccess(#[from] crate::admin::AccessError),
}

/// A broker with its listeners bound.
#[derive(Debug)]
pub struct Server {
    ctx: Arc<Context>,
    /// In [`Config::listeners`] order.
    listeners: Vec<Bound>,
    /// The admin endpoint's listener and access rules, when `admin.bind`
    /// is set.
    admin: Option<(TcpListener, crate::admin::Access)>,
}

impl Server {
    /// Loads the plugins, binds every listener of [`Config::listeners`]
    /// (loading TLS certificates), and the admin endpoint's
    /// `config.admin.bind` if set.
    pub async fn bind(config: Config) -> Result<Server, ServerError> {
        // The store is read before anything else: a newer format refuses
        // to start before a listener opens.
        let (store, recovered) = match &config.persistence.dir {
            Some(_) => {
                let (store, recovered) = Store::open(&config.persistence)?;
                (Some(store), Some(recovered))
            }
            None => (None, None),
        };
        let plugins = Plugins::load(&config).await?;
        if plugins.authenticates() && config.server.allow_anonymous {
            tracing::warn!(
                "allow_anonymous is ignored: authentication plugins are loaded, and they decide"
            );
        } else if !plugins.authenticates() && !config.server.allow_anonymous {
            tracing::warn!(
                "allow_anonymous is false and no authentication plugin is loaded: \
                 every client will be refused (set server.allow_anonymous = true, \
                 pass --allow-anonymous, or add an authentication plugin)"
            );
        } else if !plugins.authenticates() {
            tracing::info!("no authentication plugin loaded; anonymous clients are allowed");
        }
        let memory = crate::memory::Budget::from_config(&config.limits);
        if memory.enforced() {
            tracing::info!(
                "memory budget: {} MiB of heap (limits.max_memory_mb)",
                memory.limit() >> 20
            );
        } else {
            tracing::warn!(
                "memory budget not enforced: this process does not allocate through \
                 sluice_broker::memory::CountingAllocator"
            );
        }
        let listeners = listener::bind_all(&config)?;
        let admin = match config.admin.bind {
            Some(addr) => {
                let access = crate::admin::Access::from_config(&config.admin)?;
                let listener = crate::admin::bind(addr)
                    .await
                    .map_err(|source| ServerError::AdminBind { addr, source })?;
                Some((listener, access))
            }
            None => None,
        };
        let cluster = if config.cluster.enabled() {
            let port = listeners.first().map_or(0, |l| l.local_addr().port());
            let node = crate::cluster::node_name(&config.cluster, port);
            let backpressure =
                crate::session::QueueLimits::from_config(&config.session).backpressure;
            Some(crate::cluster::Cluster::connect(&config.cluster, node, backpressure).await?)
        } else {
            None
        };
        let mut ctx = Context::new(config, plugins, store);
        ctx.tls = TlsListeners::of(&listeners);
        if let Some(cluster) = cluster {
            // Before the store's subscriptions come back: they are
            // interest too.
            cluster.start(ctx.router.clone(), ctx.store.clone());
            ctx.router.join_cluster(cluster);
        }
        if let (Some(store), Some(recovered)) = (&ctx.store, recovered) {
            restore(&ctx, store, recovered);
        }
        if let Some(cluster) = ctx.router.cluster().cloned() {
            cluster
                .serve(&ctx.registry, ctx.default_limits.clone())
                .await;
        }
        if let Some(cluster) = ctx.router.cluster().cloned() {
            // After the store's key-value entries are bound: the cluster's
            // bucket of a plugin with `kv_cluster` then brings its own.
            ctx.plugins
                .join_cluster(Arc::new(crate::cluster::PluginKvs(cluster.clone())));
            // After the store's: the cluster's bucket is the authority on
            // retained messages.
            cluster.ready(&ctx.router).await?;
        }
        Ok(Server {
            ctx: Arc::new(ctx),
            listeners,
            admin,
        })
    }

    /// The addresses actually bound (with real ports for port 0), in
    /// [`Config::listeners`] order.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.iter().map(Bound::local_addr).collect()
    }

    /// The address the admin endpoint is bound to (with its real port for
    /// port 0), if `admin.bind` is set.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    /// The broker state, for inspection.
    pub fn context(&self) -> &Arc<Context> {
        &self.ctx
    }

    /// Serves until `shutdown` completes, then shuts down gracefully.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let (stop_tx, stop_rx) = watch::channel(false);
        // Every connection task holds a clone; `recv` returns `None` once
        // they have all finished.
        let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
        let accept_loops: Vec<_> = self
            .listeners
            .into_iter()
            .map(|l| l.spawn(&self.ctx, &stop_rx, &alive_tx))
            .collect();
        let admin = self
            .admin
            .map(|(listener, access)| crate::admin::spawn(listener, self.ctx.clone(), access));
        let sys = tokio::spawn(crate::sys::run(self.ctx.clone()));
        let sweeper = tokio::spawn(self.ctx.sweeper.clone().run());
        let registry = self.ctx.registry.clone();
        let timers = tokio::spawn(async move { registry.run_timers().await });
        let publications = self
            .ctx
            .plugins
            .take_publications()
            .map(|queue| tokio::spawn(crate::publications::run(self.ctx.clone(), queue)));
        drop(alive_tx);

        shutdown.await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
        self.ctx.registry.kick_all(crate::session::Kick::Shutdown);
        for l in accept_loops.into_iter().chain(admin) {
            l.abort();
            let _ = l.await;
        }
        sys.abort();
        sweeper.abort();
        timers.abort();
        let grace = Duration::from_secs(u64::from(self.ctx.config.server.shutdown_timeout_secs));
        if tokio::time::timeout(grace, alive_rx.recv()).await.is_err() {
            tracing::warn!("connections still open after {grace:?}; exiting anyway");
        }
        if let Some(p) = publications {
            p.abort();
        }
        if let Some(cluster) = self.ctx.router.cluster() {
            cluster.stop().await;
        }
        if let Some(store) = &self.ctx.store {
            store.close();
        }
        tracing::info!("shutdown complete");
    }
}

/// Gives what the store held back to the router, the registry and the
/// plugins, and logs how much it was.
fn restore(ctx: &Context, store: &Arc<Store>, recovered: Recovered) {
    let Recovered {
        sessions,
        retained,
        plugin_kv,
        report,
        ..
    } = recovered;
    let refused = ctx.router.restore_retained(retained);
    if refused > 0 {
        tracing::warn!("store: {refused} retained messages are over [limits] and were dropped");
    }
    ctx.plugins.restore_kv(store, plugin_kv);
    let expired = ctx.registry.restore(sessions, &ctx.default_limits);
    tracing::info!(
        "store {} (durability {}): recovered {report}; {expired} sessions had expired",
        store.dir().display(),
        format!("{:?}", store.durability()).to_lowercase()
    );
}
