//! Listeners, the accept loops, and graceful shutdown.
//!
//! [`Server::bind`] opens the listeners (so tests can bind port 0 and read
//! the real port); [`Server::run`] serves until the shutdown future
//! completes, then stops accepting, tells every connection to close
//! (MQTT 5 clients get DISCONNECT 0x8B), and waits for them to flush.
//! The admin endpoint ([`crate::admin`]), when configured, is bound and
//! stopped with the MQTT listeners.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};

use crate::config::Config;
use crate::connection;
use crate::context::Context;
use crate::plugins::Plugins;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot load plugins: {0}")]
    Plugins(#[from] crate::plugins::PluginsError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the admin endpoint on {addr} (admin.bind): {source}")]
    AdminBind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A broker with its listeners bound.
#[derive(Debug)]
pub struct Server {
    ctx: Arc<Context>,
    listeners: Vec<TcpListener>,
    /// The admin endpoint's listener, when `admin.bind` is set.
    admin: Option<TcpListener>,
}

impl Server {
    /// Loads the plugins, binds every address in `config.server.bind`, and
    /// the admin endpoint's `config.admin.bind` if set.
    pub async fn bind(config: Config) -> Result<Server, ServerError> {
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
        let mut listeners = Vec::new();
        for addr in &config.server.bind {
            let listener = listen(*addr).map_err(|source| ServerError::Bind {
                addr: *addr,
                source,
            })?;
            listeners.push(listener);
        }
        let admin = match config.admin.bind {
            Some(addr) => Some(
                crate::admin::bind(addr)
                    .await
                    .map_err(|source| ServerError::AdminBind { addr, source })?,
            ),
            None => None,
        };
        Ok(Server {
            ctx: Arc::new(Context::new(config, plugins)),
            listeners,
            admin,
        })
    }

    /// The addresses actually bound (with real ports for port 0).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// The address the admin endpoint is bound to (with its real port for
    /// port 0), if `admin.bind` is set.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
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
        let mut accept_loops = Vec::new();
        for listener in self.listeners {
            let Ok(addr) = listener.local_addr() else {
                continue;
            };
            tracing::info!("listening on {addr} (mqtt over tcp)");
            let info = Arc::new(connection::Listener {
                addr,
                kind: crate::plugins::ListenerKind::Tcp,
            });
            accept_loops.push(tokio::spawn(accept_loop(
                listener,
                info,
                self.ctx.clone(),
                stop_rx.clone(),
                alive_tx.clone(),
            )));
        }
        let admin = self
            .admin
            .map(|listener| crate::admin::spawn(listener, self.ctx.clone()));
        let sys = tokio::spawn(crate::sys::run(self.ctx.clone()));
        let sweeper = tokio::spawn(self.ctx.sweeper.clone().run());
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
        let grace = Duration::from_secs(u64::from(self.ctx.config.server.shutdown_timeout_secs));
        if tokio::time::timeout(grace, alive_rx.recv()).await.is_err() {
            tracing::warn!("connections still open after {grace:?}; exiting anyway");
        }
        tracing::info!("shutdown complete");
    }
}

/// Pending connections the kernel queues per listener.
const LISTEN_BACKLOG: u32 = 1024;

/// Opens a listening socket with `TCP_NODELAY` set, so that (on Linux and
/// the BSDs) accepted sockets inherit it without a syscall each.
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

async fn accept_loop(
    listener: TcpListener,
    info: Arc<connection::Listener>,
    ctx: Arc<Context>,
    stop: watch::Receiver<bool>,
    alive: mpsc::Sender<()>,
) {
    let mut backoff = Duration::from_millis(5);
    // Whether accepted sockets inherit the listener's TCP_NODELAY (checked
    // on the first one; if not, it is set on each).
    let mut nodelay_inherited = None;
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(5);
                let inherited =
                    *nodelay_inherited.get_or_insert_with(|| stream.nodelay().unwrap_or(false));
                if !inherited {
                    let _ = stream.set_nodelay(true);
                }
                spawn_connection(stream, peer, &info, &ctx, &stop, &alive);
            }
            Err(e) => {
                // Out of file descriptors and the like: back off instead of
                // spinning; the listener itself stays up.
                tracing::warn!("accept failed: {e}; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

fn spawn_connection(
    stream: TcpStream,
    peer: SocketAddr,
    listener: &Arc<connection::Listener>,
    ctx: &Arc<Context>,
    stop: &watch::Receiver<bool>,
    alive: &mpsc::Sender<()>,
) {
    // The connection's own future is the task: no wrapper holding copies
    // of its arguments.
    tokio::spawn(connection::run(
        ctx.clone(),
        stream,
        peer,
        listener.clone(),
        stop.clone(),
        alive.clone(),
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepted_sockets_have_nodelay() {
        let listener = listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = TcpStream::connect(addr).await.unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        // Inherited from the listener, so the accept loop need not set it.
        assert!(stream.nodelay().unwrap());
    }
}
