//! The MQTT listeners: binding every [`Config::listeners`] entry (each
//! `server.bind` address, then each `[[listener]]`), one accept loop per
//! listener, its admission limits, and handing each accepted socket to a
//! connection task over the listener's transport.
//!
//! The accept loop never waits on a client: limits are checked from
//! counters and timestamps, refused sockets are closed at once, and TLS and
//! WebSocket handshakes run in the connection's own task.

pub mod cert;
mod limits;
pub mod tls;
pub mod ws;

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU32;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub use self::cert::ClientCertificate;
pub(crate) use self::limits::Slot;
use self::limits::{TokenBucket, WarnEvery};
pub use self::tls::{TlsError, TlsServer};
use crate::config::{Config, ListenerConfig, ListenerKind, TlsConfig};
use crate::connection::{self, Stream, Transport};
use crate::context::Context;
use crate::metrics::Metrics;

/// Pending connections the kernel queues per listener.
const LISTEN_BACKLOG: u32 = 1024;

/// How often a listener logs refused connections (with their count).
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Why a listener could not start; names the listener.
#[derive(Debug, thiserror::Error)]
pub enum ListenerError {
    #[error("cannot listen on {addr} ({listener}): {source}")]
    Bind {
        /// The listener's configuration key, e.g. `listener[1]`.
        listener: String,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot load the TLS certificate of {listener} ({addr}): {source}")]
    Tls {
        listener: String,
        addr: SocketAddr,
        #[source]
        source: TlsError,
    },
}

/// A listener's settings and state, shared by its accept loop and its
/// connections (which reach it through their `Arc`).
pub(crate) struct Listener {
    /// Position in [`Config::listeners`].
    pub index: usize,
    /// Configuration key, for logs: `server.bind[0]`, `listener[1]`.
    pub name: String,
    /// The bound address (with the real port for port 0).
    pub addr: SocketAddr,
    pub kind: ListenerKind,
    /// Where this listener's clients start (a plugin may move them).
    pub mountpoint: Arc<str>,
    /// Largest packet accepted from this listener's clients.
    pub max_packet_size: u32,
    /// The HTTP path of a WebSocket listener.
    pub path: String,
    /// The certificates of a TLS listener (`tls`/`wss`), reloadable.
    pub tls: Option<Arc<TlsServer>>,
    /// Accepted CONNECT protocol levels, as bits `1 << level`.
    versions: u8,
    /// 0 = no limit.
    max_connections: u32,
    /// New connections a second; 0 = no limit.
    max_connection_rate: u32,
    /// Connections open now (held by their [`Slot`]s).
    open: AtomicU32,
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("name", &self.name)
            .field("addr", &self.addr)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl Listener {
    /// The facts and limits of listener `index`, `config`, bound to `addr`.
    pub(crate) fn new(
        index: usize,
        name: String,
        config: &ListenerConfig,
        addr: SocketAddr,
        mqtt_max_packet_size: u32,
        tls: Option<Arc<TlsServer>>,
    ) -> Self {
        Listener {
            index,
            name,
            addr,
            kind: config.kind,
            mountpoint: if config.mountpoint.is_empty() {
                crate::session::default_mountpoint()
            } else {
                Arc::from(config.mountpoint.as_str())
            },
            max_packet_size: config.packet_size_limit(mqtt_max_packet_size),
            path: config.path.clone(),
            tls,
            versions: config
                .protocol_versions
                .iter()
                .filter(|v| **v < 8)
                .fold(0, |bits, v| bits | 1 << v),
            max_connections: config.max_connections,
            max_connection_rate: config.max_connection_rate,
            open: AtomicU32::new(0),
        }
    }

    /// Whether CONNECT protocol level `level` is accepted here.
    pub(crate) fn accepts(&self, level: u8) -> bool {
        level < 8 && self.versions & (1 << level) != 0
    }

    /// The kind as the plugins see it.
    pub(crate) fn plugin_kind(&self) -> crate::plugins::ListenerKind {
        use crate::plugins::ListenerKind as P;
        match self.kind {
            ListenerKind::Tcp => P::Tcp,
            ListenerKind::Tls => P::Tls,
            ListenerKind::Ws => P::Ws,
            ListenerKind::Wss => P::Wss,
        }
    }
}

/// The configuration key of listener `index` of [`Config::listeners`].
pub fn listener_name(config: &Config, index: usize) -> String {
    match index.checked_sub(config.server.bind.len()) {
        None => format!("server.bind[{index}]"),
        Some(j) => format!("listener[{j}]"),
    }
}

/// A listener with its socket bound, not yet accepting.
#[derive(Debug)]
pub(crate) struct Bound {
    socket: TcpListener,
    listener: Arc<Listener>,
}

/// Binds every listener of `config.listeners()`, in that order, loading
/// the certificates of TLS listeners.
pub(crate) fn bind_all(config: &Config) -> Result<Vec<Bound>, ListenerError> {
    config
        .listeners()
        .iter()
        .enumerate()
        .map(|(index, l)| {
            let name = listener_name(config, index);
            let socket = listen(l.bind).map_err(|source| ListenerError::Bind {
                listener: name.clone(),
                addr: l.bind,
                source,
            })?;
            let addr = socket.local_addr().unwrap_or(l.bind);
            let tls = match &l.tls {
                Some(tls) if l.kind.is_tls() => {
                    Some(Arc::new(TlsServer::load(tls).map_err(|source| {
                        ListenerError::Tls {
                            listener: name.clone(),
                            addr,
                            source,
                        }
                    })?))
                }
                _ => None,
            };
            let listener = Listener::new(index, name, l, addr, config.mqtt.max_packet_size, tls);
            Ok(Bound {
                socket,
                listener: Arc::new(listener),
            })
        })
        .collect()
}

impl Bound {
    /// The bound address (with its real port for port 0).
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.listener.addr
    }

    /// Starts accepting: one task per listener. Every connection task
    /// holds a clone of `alive` until it ends.
    pub(crate) fn spawn(
        self,
        ctx: &Arc<Context>,
        stop: &watch::Receiver<bool>,
        alive: &mpsc::Sender<()>,
    ) -> JoinHandle<()> {
        tracing::info!(
            "listening on {} (mqtt over {})",
            self.listener.addr,
            self.listener.kind.name()
        );
        tokio::spawn(accept_loop(self, ctx.clone(), stop.clone(), alive.clone()))
    }
}

/// The TLS listeners' certificates, reloaded with the configuration
/// (SIGHUP): kept by the [`Context`].
#[derive(Default)]
pub struct TlsListeners(Vec<(usize, String, Arc<TlsServer>)>);

impl fmt::Debug for TlsListeners {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(_, name, _)| name))
            .finish()
    }
}

impl TlsListeners {
    /// The TLS listeners among `bound`.
    pub(crate) fn of(bound: &[Bound]) -> Self {
        TlsListeners(
            bound
                .iter()
                .filter_map(|b| {
                    let l = &b.listener;
                    l.tls.clone().map(|t| (l.index, l.name.clone(), t))
                })
                .collect(),
        )
    }

    /// Reloads each TLS listener's certificates from its entry (same
    /// index) in `config.listeners()`. A listener whose certificates fail
    /// to load keeps its old ones (logged); open connections are not
    /// touched.
    pub(crate) fn reload(&self, config: &Config) {
        let listeners = config.listeners();
        for (index, name, server) in &self.0 {
            let Some(tls) = listeners.get(*index).and_then(|l| l.tls.as_ref()) else {
                tracing::warn!(
                    "configuration reloaded: {name} has no [listener.tls] any more; \
                     it keeps its certificates until a restart"
                );
                continue;
            };
            reload_one(name, server, tls);
        }
    }
}

fn reload_one(name: &str, server: &TlsServer, tls: &TlsConfig) {
    match server.reload(tls) {
        Ok(()) => tracing::info!("{name}: TLS certificates reloaded"),
        Err(e) => {
            tracing::error!("{name}: cannot reload TLS certificates, keeping the old ones: {e}");
        }
    }
}

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

/// Accepts connections on one listener until the task is aborted: checks
/// its limits and hands each admitted socket to a new connection task.
/// Nothing here waits on a client.
async fn accept_loop(
    bound: Bound,
    ctx: Arc<Context>,
    stop: watch::Receiver<bool>,
    alive: mpsc::Sender<()>,
) {
    let Bound { socket, listener } = bound;
    let mut backoff = Duration::from_millis(5);
    // Whether accepted sockets inherit the listener's TCP_NODELAY (checked
    // on the first one; if not, it is set on each).
    let mut nodelay_inherited = None;
    let mut rate = TokenBucket::new(listener.max_connection_rate, Instant::now());
    let mut full_log = WarnEvery::new(REFUSAL_LOG_INTERVAL);
    let mut rate_log = WarnEvery::new(REFUSAL_LOG_INTERVAL);
    loop {
        match socket.accept().await {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(5);
                let Some(slot) = Slot::take(&listener, &alive) else {
                    // Closed before anything is read: the client sees the
                    // connection end without a CONNACK.
                    drop(stream);
                    Metrics::add(&ctx.metrics.connections_refused_limit, 1);
                    if let Some(n) = full_log.hit(Instant::now()) {
                        tracing::warn!(
                            peer = %peer,
                            "{} ({}): refused {n} connection(s): max_connections ({}) reached",
                            listener.name, listener.addr, listener.max_connections
                        );
                    }
                    continue;
                };
                if listener.max_connection_rate != 0 && !rate.try_take(Instant::now()) {
                    drop(stream);
                    drop(slot);
                    Metrics::add(&ctx.metrics.connections_refused_rate, 1);
                    if let Some(n) = rate_log.hit(Instant::now()) {
                        tracing::warn!(
                            peer = %peer,
                            "{} ({}): refused {n} connection(s): more than \
                             max_connection_rate ({}/s)",
                            listener.name, listener.addr, listener.max_connection_rate
                        );
                    }
                    continue;
                }
                let inherited =
                    *nodelay_inherited.get_or_insert_with(|| stream.nodelay().unwrap_or(false));
                if !inherited {
                    let _ = stream.set_nodelay(true);
                }
                start_connection(stream, peer, slot, &ctx, &stop);
            }
            Err(e) => {
                // Out of file descriptors and the like: back off instead of
                // spinning; the listener itself stays up.
                tracing::warn!(
                    "{}: accept failed: {e}; retrying in {backoff:?}",
                    listener.name
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// Starts the connection task of an accepted socket, setting up the
/// listener's transport in it.
fn start_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    slot: Slot,
    ctx: &Arc<Context>,
    stop: &watch::Receiver<bool>,
) {
    // ---- Transport set-up, per listener kind --------------------------
    // TLS and WebSocket handshakes must run in the spawned task, under
    // `server.connect_timeout_secs` (see `spawn_after_handshake`), never
    // here in the accept loop.
    match slot.listener().kind {
        ListenerKind::Tcp => spawn_connection(tcp, peer, slot, None, ctx, stop),
        ListenerKind::Ws => {
            let listener = slot.listener().clone();
            spawn_after_handshake(
                async move {
                    let ws = ws::accept(tcp, &listener.path, listener.max_packet_size).await?;
                    Ok((Stream::new(ws), None))
                },
                peer,
                slot,
                ctx,
                stop,
            );
        }
        ListenerKind::Tls | ListenerKind::Wss => {
            let listener = slot.listener().clone();
            let Some(tls) = listener.tls.clone() else {
                // `bind_all` loads certificates for every TLS listener.
                let name = &listener.name;
                tracing::error!(peer = %peer, "{name}: no TLS certificates; connection closed");
                return;
            };
            if listener.kind == ListenerKind::Tls {
                spawn_after_handshake(
                    async move {
                        let (stream, certificate) = tls.accept(tcp).await?;
                        Ok((Stream::new(stream), certificate))
                    },
                    peer,
                    slot,
                    ctx,
                    stop,
                );
            } else {
                spawn_after_handshake(
                    async move {
                        let (stream, certificate) = tls.accept(tcp).await?;
                        let ws =
                            ws::accept(stream, &listener.path, listener.max_packet_size).await?;
                        Ok((Stream::new(ws), certificate))
                    },
                    peer,
                    slot,
                    ctx,
                    stop,
                );
            }
        }
    }
}

/// Spawns the task of a connection whose transport is ready (for TLS and
/// WebSocket: handshakes done): any [`Transport`], the client certificate
/// of a TLS connection (`None` otherwise). The connection's own future is
/// the task: no wrapper holding copies of its arguments.
pub(crate) fn spawn_connection<T: Transport + 'static>(
    stream: T,
    peer: SocketAddr,
    slot: Slot,
    certificate: Option<ClientCertificate>,
    ctx: &Arc<Context>,
    stop: &watch::Receiver<bool>,
) {
    tokio::spawn(connection::run(
        ctx.clone(),
        stream,
        peer,
        slot,
        certificate.map(Box::new),
        stop.clone(),
    ));
}

/// Spawns a connection task that first runs `handshake` (TLS, WebSocket
/// upgrade: whatever turns the accepted socket into the stream MQTT runs
/// on) under `server.connect_timeout_secs`, then serves the connection on
/// the stream it yields, with the client certificate it found.
pub(crate) fn spawn_after_handshake<T, F>(
    handshake: F,
    peer: SocketAddr,
    slot: Slot,
    ctx: &Arc<Context>,
    stop: &watch::Receiver<bool>,
) where
    T: Transport + 'static,
    F: Future<Output = std::io::Result<(T, Option<ClientCertificate>)>> + Send + 'static,
{
    let ctx = ctx.clone();
    let mut stop = stop.clone();
    tokio::spawn(async move {
        let kind = slot.listener().kind.name();
        let timeout = Duration::from_secs(u64::from(ctx.config.server.connect_timeout_secs));
        let done = tokio::select! {
            r = tokio::time::timeout(timeout, handshake) => r,
            () = stopping(&mut stop) => return,
        };
        let (stream, certificate) = match done {
            Ok(Ok(ready)) => ready,
            Ok(Err(e)) => {
                tracing::debug!(peer = %peer, "{kind} handshake failed: {e}");
                return;
            }
            Err(_) => {
                tracing::info!(peer = %peer, "no {kind} handshake within {timeout:?}; closing");
                return;
            }
        };
        // Not boxed: the handshake's state and the connection's share the
        // task's memory, one after the other.
        connection::run(ctx, stream, peer, slot, certificate.map(Box::new), stop).await;
    });
}

/// Completes once the broker is shutting down. (The guard `wait_for`
/// returns must not live in a task's future: it is not `Send`.)
async fn stopping(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
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

    fn listener(config: &ListenerConfig) -> Arc<Listener> {
        Arc::new(Listener::new(
            0,
            "listener[0]".into(),
            config,
            config.bind,
            1024,
            None,
        ))
    }

    #[test]
    fn slots_count_open_connections() {
        let mut config = ListenerConfig::tcp("127.0.0.1:0".parse().unwrap());
        config.max_connections = 2;
        let l = listener(&config);
        let (alive, _) = mpsc::channel(1);
        let a = Slot::take(&l, &alive).expect("first");
        let b = Slot::take(&l, &alive).expect("second");
        assert!(Slot::take(&l, &alive).is_none(), "third is over the limit");
        drop(a);
        let c = Slot::take(&l, &alive).expect("a place came free");
        assert!(Slot::take(&l, &alive).is_none());
        drop((b, c));
        assert_eq!(l.open.load(std::sync::atomic::Ordering::Relaxed), 0);
    }

    #[test]
    fn settings_come_from_the_config() {
        let mut config = ListenerConfig::tcp("127.0.0.1:0".parse().unwrap());
        config.protocol_versions = vec![3, 5];
        config.mountpoint = "tenant".into();
        let l = listener(&config);
        assert!(l.accepts(3) && !l.accepts(4) && l.accepts(5));
        assert!(!l.accepts(200));
        assert_eq!(&*l.mountpoint, "tenant");
        assert_eq!(l.max_packet_size, 1024, "the [mqtt] default");
        config.max_packet_size = Some(100);
        assert_eq!(listener(&config).max_packet_size, 100);
    }

    #[test]
    fn listeners_are_named_by_their_config_key() {
        let mut config = Config::default();
        config.server.bind = vec!["127.0.0.1:0".parse().unwrap(); 2];
        config
            .listener
            .push(ListenerConfig::tcp("127.0.0.1:0".parse().unwrap()));
        assert_eq!(listener_name(&config, 1), "server.bind[1]");
        assert_eq!(listener_name(&config, 2), "listener[0]");
    }
}
