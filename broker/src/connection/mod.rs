//! The connection task: owns one client's socket from accept to close.
//!
//! It reads CONNECT ([`handshake`]), attaches the session, then runs one
//! loop that polls, by hand and in priority order: the socket's write and
//! read readiness (bytes are decoded and handled in [`inbound`]), the
//! session's signal that deliveries were queued (encoded in [`outbound`])
//! or that the connection was kicked (takeover, shutdown, keep alive,
//! lifetime), and what stopped reading if anything did (a pause, a hold
//! for congested subscribers: [`stopped`]). No buffer, timer
//! or future is held while idle beyond what that needs. Nothing it does
//! can affect another connection except through the router and the
//! registry.

mod acceptance;
mod backpressure;
mod durable;
mod enhanced_auth;
mod establish;
mod goodbye;
mod handshake;
mod inbound;
mod outbound;
mod publish;
mod stopped;
mod subscribe;
mod throttle;
mod transport;

use self::goodbye::{FLUSH_TIMEOUT, close_gracefully, encode_within, write_all};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::sync::watch;

use crate::codec::{self, Decoder, Disconnect, ProtocolVersion};
use crate::context::Context;
use crate::limits::Limit;
use crate::listener::{ClientCertificate, Listener, Slot};
use crate::message::{Delivery, Will};
use crate::metrics::Metrics;
use crate::plugins::ConnectionInfo;
use crate::reason::ReasonCode;
use crate::registry::Departure;
use crate::session::{Inflight, Kick, Session};
use crate::topic::TopicName;
pub(crate) use transport::{Stream, Transport};

/// Stop moving queued deliveries into the output buffer above this size;
/// also stop reading from the client, so a client that does not read
/// cannot make the broker buffer without bound.
const OUT_HIGH_WATER: usize = 64 * 1024;
/// Deliveries taken from the session queue per lock.
const BATCH: usize = 64;
/// Room made in the read buffer before each read.
const READ_CHUNK: usize = 16 * 1024;
/// Room made in the output buffer before it is filled.
const WRITE_CHUNK: usize = 16 * 1024;

/// Why a connection ends.
#[derive(Debug)]
pub(crate) enum Close {
    /// The client sent DISCONNECT; reason 0x04 asks for the Will anyway.
    ClientDisconnect { publish_will: bool },
    /// The broker ends the connection; MQTT 5 clients get a DISCONNECT
    /// with `reason` and `reason_string`; `detail` is logged.
    Server {
        reason: ReasonCode,
        detail: String,
        reason_string: Option<String>,
    },
    /// Another connection took the session over.
    TakenOver,
    /// The broker is shutting down.
    Shutdown,
    /// The socket closed or failed.
    Io(String),
}

impl From<Kick> for Close {
    fn from(kick: Kick) -> Self {
        match kick {
            Kick::TakenOver => Close::TakenOver,
            Kick::Shutdown => Close::Shutdown,
            Kick::KeepAlive => Close::server(ReasonCode::KEEP_ALIVE_TIMEOUT, "keep alive timeout"),
            Kick::Lifetime => Close::server(
                ReasonCode::MAXIMUM_CONNECT_TIME,
                "maximum connection lifetime reached",
            ),
        }
    }
}

impl Close {
    fn server(reason: ReasonCode, detail: impl Into<String>) -> Self {
        let detail = detail.into();
        Close::Server {
            reason,
            reason_string: Some(detail.clone()),
            detail,
        }
    }

    fn publishes_will(&self) -> bool {
        match self {
            Close::ClientDisconnect { publish_will } => *publish_will,
            Close::Shutdown => false,
            Close::Server { .. } | Close::TakenOver | Close::Io(_) => true,
        }
    }
}

/// What CONNECT negotiated for the rest of the connection.
#[derive(Debug)]
pub(crate) struct Negotiated {
    pub version: ProtocolVersion,
    /// How many QoS 1/2 messages may be in flight towards the client.
    pub send_window: usize,
    /// The client's Maximum Packet Size.
    pub client_max_packet: u32,
    /// Topic aliases the client accepts from the broker.
    pub client_alias_max: u16,
    /// Unacknowledged QoS 1/2 messages the client may send.
    pub receive_maximum: u16,
    /// Topic aliases the client may use towards the broker.
    pub topic_alias_maximum: u16,
    pub session_expiry: u32,
    /// The session generation this connection holds.
    pub generation: u64,
    pub will: Option<Box<Will>>,
    pub allow_publish: bool,
    pub allow_subscribe: bool,
    pub allow_unsubscribe: bool,
    /// The username later hooks see (a plugin may have replaced it).
    pub username: Option<Box<str>>,
    /// What re-authentication needs, if CONNECT used enhanced
    /// authentication (MQTT 5).
    pub reauth: Option<Arc<Reauth>>,
    /// Whether reason strings and user properties may go on
    /// acknowledgements (MQTT 5 Request Problem Information).
    pub problem_info: bool,
}

/// What an MQTT 5 re-authentication needs from the CONNECT exchange.
#[derive(Debug)]
pub(crate) struct Reauth {
    /// The Authentication Method of CONNECT.
    pub method: String,
    /// The connection facts the hooks saw at CONNECT (client certificate
    /// included).
    pub conn: ConnectionInfo,
}

/// The running state of an established connection.
pub(crate) struct Connection {
    ctx: Arc<Context>,
    peer: SocketAddr,
    session: Arc<Session>,
    decoder: Decoder,
    neg: Negotiated,
    inflight: Inflight,
    rbuf: BytesMut,
    out: BytesMut,
    batch: Vec<Delivery>,
    /// MQTT 5 topic aliases, both ways (created on first use).
    aliases: Option<Box<Aliases>>,
    /// The client's PUBLISH rate limit, if a plugin set one.
    rate: Option<Box<throttle::RateLimit>>,
    /// Acceptances `auth-on-publish` and `auth-on-deliver` let the broker
    /// reuse (created on first use).
    acceptances: Option<Box<acceptance::Caches>>,
    /// Why reading is stopped (a pause, a hold for congested
    /// subscribers), only while it is.
    stopped: Option<Box<stopped::Stopped>>,
    /// AUTH packets of the re-authentication in progress, its AUTH 0x19
    /// included (0: none in progress; otherwise the client owes an AUTH
    /// 0x18).
    reauth_rounds: u32,
    /// Set once [`Connection::finish`] handed the session back.
    finished: bool,
    /// Plugin calls in a row that this client's requests made overrun
    /// (see `throttle`).
    overruns: u8,
    stats: Stats,
    /// The store ticket of the changes the packet being handled made.
    ticket: u64,
    /// The cluster ticket of the QoS 1/2 message the packet being handled
    /// sent to the other nodes (see `durable`).
    forwarded: u64,
    /// Responses waiting for the store (see `durable`).
    held: Option<Box<durable::Held>>,
}

/// What woke the connection.
enum Event {
    Writable,
    Readable,
    Queued,
    /// A rate-limit pause is over, or the subscribers a hold waited for
    /// drained.
    Resume,
    /// The store committed what held responses wait for.
    /// (The error boxed: the event lives in the connection's task.)
    Committed(Result<(), Box<crate::store::StoreError>>),
}

/// Topic aliases of an MQTT 5 connection.
#[derive(Debug, Default)]
struct Aliases {
    /// Set by the client.
    inbound: HashMap<u16, TopicName>,
    /// Assigned by the broker.
    outbound: HashMap<TopicName, u16>,
}

/// Per-connection counters, added to the broker's in batches.
#[derive(Debug, Default)]
struct Stats {
    messages_in: u64,
    messages_out: u64,
    bytes_in: u64,
    bytes_out: u64,
    dropped: u64,
}

/// Completes once the broker is shutting down. (The guard `wait_for`
/// returns must not live in the connection's future: it is not `Send`.)
async fn stopping(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

/// Serves one client connection until it closes, on any transport (TLS
/// and WebSocket handshakes already done); `certificate` is a TLS client's
/// verified certificate.
pub(crate) async fn run<T: Transport>(
    ctx: Arc<Context>,
    mut stream: T,
    peer: SocketAddr,
    // Held until the task ends: the listener's count of open connections
    // and the server's wait for every connection both go by it.
    slot: Slot,
    certificate: Option<Box<ClientCertificate>>,
    mut shutdown: watch::Receiver<bool>,
) {
    // Nothing of the handshake exists before the client sends something:
    // a connection that stays silent costs its small task until the
    // connect timeout. What is left of the timeout then bounds the rest of
    // CONNECT (kept in milliseconds: the task stays small).
    let left_ms = Box::pin(async {
        let timeout = Duration::from_secs(u64::from(ctx.config.server.connect_timeout_secs));
        let deadline = tokio::time::Instant::now() + timeout;
        let first = tokio::select! {
            r = tokio::time::timeout_at(deadline, stream.readable()) => r,
            () = stopping(&mut shutdown) => return None,
        };
        match first {
            Ok(Ok(())) => {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                Some(u32::try_from(left.as_millis()).unwrap_or(u32::MAX))
            }
            Ok(Err(_)) => None,
            Err(_) => {
                tracing::info!(peer = %peer, "no CONNECT within {timeout:?}; closing");
                None
            }
        }
    })
    .await;
    let Some(left_ms) = left_ms else {
        return;
    };
    // The handshake's state is large and short-lived: on the heap, so that
    // the task of an established connection stays small.
    let listener = slot.listener().clone();
    let accepted = Box::pin(async {
        tokio::select! {
            r = handshake::accept(&ctx, &mut stream, peer, listener, certificate, left_ms) => r,
            () = stopping(&mut shutdown) => None,
        }
    })
    .await;
    let Some(mut conn) = accepted else {
        return;
    };
    Metrics::add(&ctx.metrics.connections_total, 1);
    tracing::debug!(
        client = %conn.session.id(), peer = %peer, version = ?conn.neg.version,
        "client connected"
    );

    // Once registered, shutdown reaches the connection as a kick through
    // its session; check for one that came before.
    let close = if *shutdown.borrow() {
        Close::Shutdown
    } else {
        conn.serve(&stream).await
    };
    Box::pin(conn.finish(&mut stream, close)).await;
    drop(slot);
}

impl Drop for Connection {
    /// An established connection stops counting; and if its task ended
    /// without [`Connection::finish`] handing the session back (it
    /// panicked: tokio catches the panic and drops the task), the session
    /// is released here, or it would stay marked connected and its client
    /// could never connect again.
    fn drop(&mut self) {
        self.ctx
            .metrics
            .clients_connected
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        if !self.finished {
            self.ctx
                .registry
                .abandon(&self.session, self.neg.generation, self.neg.session_expiry);
        }
    }
}

impl Connection {
    async fn serve<T: Transport>(&mut self, stream: &T) -> Close {
        loop {
            let filled = if self.ctx.plugins.rewrites_deliveries() {
                // On the heap: the plugin call's state is large.
                Box::pin(self.fill_outgoing_rewritten()).await
            } else {
                self.fill_outgoing()
            };
            let more = match filled {
                Ok(more) => more,
                Err(kick) => return Close::from(kick),
            };
            self.flush_stats();
            // Write what is ready now; wait for the socket only if it is full.
            if let Err(close) = self.write_some(stream) {
                return close;
            }
            if more && self.output_len() < OUT_HIGH_WATER {
                // The buffer filled up and drained at once: refill before
                // waiting, since no notification will come for what is
                // already queued.
                continue;
            }
            if self.out.is_empty() {
                // Idle buffers go back to the allocator.
                self.out = BytesMut::new();
            }
            let has_output = !self.out.is_empty() || stream.has_pending_output();
            let can_read = self.output_len() < OUT_HIGH_WATER && self.reading();
            // One hand-written poll over every source, in priority order:
            // no future is stored per source, so the task stays small.
            // (Keep alive and lifetime are the sweeper's; it kicks through
            // the session like a takeover does.) The session's signal is
            // polled even when the output buffer is full, so that a kick
            // reaches a connection whose client stopped reading.
            let session = &self.session;
            let stopped = &mut self.stopped;
            let held = &mut self.held;
            let event = std::future::poll_fn(|cx| {
                if let Some(h) = held {
                    if let Poll::Ready(r) = h.poll_committed(cx) {
                        return Poll::Ready(Ok(Event::Committed(r.map_err(Box::new))));
                    }
                }
                if has_output {
                    if let Poll::Ready(r) = stream.poll_write_ready(cx) {
                        return Poll::Ready(r.map(|()| Event::Writable));
                    }
                }
                if can_read {
                    if let Poll::Ready(r) = stream.poll_read_ready(cx) {
                        return Poll::Ready(r.map(|()| Event::Readable));
                    }
                }
                if session.poll_signal(cx).is_ready() {
                    return Poll::Ready(Ok(Event::Queued));
                }
                if let Some(s) = stopped {
                    if s.poll(cx).is_ready() {
                        *stopped = None;
                        return Poll::Ready(Ok(Event::Resume));
                    }
                }
                Poll::Pending
            })
            .await;
            let input = match event {
                Err(e) => return Close::Io(e.to_string()),
                Ok(Event::Queued) if self.output_len() >= OUT_HIGH_WATER => {
                    // Nothing can be taken now, but a kick must be seen.
                    if let Some(kick) = self.session.kicked() {
                        return Close::from(kick);
                    }
                    false
                }
                Ok(Event::Writable | Event::Queued) => false,
                Ok(Event::Readable) => match self.read_some(stream) {
                    Ok(n) => n > 0,
                    Err(close) => return close,
                },
                Ok(Event::Resume) => self.reading(),
                Ok(Event::Committed(r)) => {
                    if let Err(close) = self.release_responses(r) {
                        return close;
                    }
                    false
                }
            };
            if input {
                // On the heap: the packet handling state is large, and only
                // lives while input is handled.
                if let Err(close) = Box::pin(self.process_input()).await {
                    return close;
                }
            }
        }
    }

    /// Reads what the socket has into the read buffer (allocated only now:
    /// an idle connection holds none). `Ok(0)`: nothing after all.
    fn read_some<T: Transport>(&mut self, stream: &T) -> Result<usize, Close> {
        if self.ctx.over_budget_for_partial(self.rbuf.len()) {
            self.ctx
                .metrics
                .limits
                .hit(Limit::Memory, self.session.id(), &"large packet refused");
            return Err(Close::server(
                ReasonCode::QUOTA_EXCEEDED,
                "the broker is over its memory budget and cannot buffer a large packet",
            ));
        }
        let mut total = 0;
        loop {
            if self.rbuf.capacity() - self.rbuf.len() < READ_CHUNK / 4 {
                self.rbuf.reserve(READ_CHUNK);
            }
            let room = self.rbuf.capacity() - self.rbuf.len();
            match stream.try_read_buf(&mut self.rbuf) {
                Ok(0) => return Err(Close::Io("connection closed by client".into())),
                Ok(n) => {
                    total += n;
                    self.stats.bytes_in += n as u64;
                    // A short read drained the socket.
                    if n < room || self.rbuf.len() >= OUT_HIGH_WATER {
                        return Ok(total);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if self.rbuf.is_empty() {
                        // Readiness was stale: do not keep a buffer for an
                        // idle connection.
                        self.rbuf = BytesMut::new();
                    }
                    return Ok(total);
                }
                Err(e) => return Err(Close::Io(e.to_string())),
            }
        }
    }

    /// Writes as much of the output buffer as the socket takes now.
    fn write_some<T: Transport>(&mut self, stream: &T) -> Result<(), Close> {
        while !self.out.is_empty() {
            match stream.try_write(&self.out) {
                Ok(0) => return Err(Close::Io("connection closed while writing".into())),
                Ok(n) => {
                    self.stats.bytes_out += n as u64;
                    self.out.advance(n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(Close::Io(e.to_string())),
            }
        }
        Ok(())
    }

    /// Decodes and handles every whole packet in the read buffer (up to a
    /// rate-limit pause or a hold).
    async fn process_input(&mut self) -> Result<(), Close> {
        let mut any = false;
        while self.reading() {
            match self.decoder.decode(&mut self.rbuf) {
                Ok(Some(packet)) => {
                    any = true;
                    let mark = self.out.len();
                    self.handle(packet).await?;
                    self.hold_responses(mark);
                }
                Ok(None) => break,
                Err(e) => {
                    return Err(Close::server(e.reason_code(), e.to_string()));
                }
            }
        }
        if any {
            self.session.liveness.touch(self.ctx.sweeper.now());
        }
        // An empty read buffer goes back to the allocator: payloads of
        // messages still queued elsewhere keep their own part of it alive.
        if self.rbuf.is_empty() {
            self.rbuf = BytesMut::new();
        }
        Ok(())
    }

    fn flush_stats(&mut self) {
        let s = std::mem::take(&mut self.stats);
        let m = &self.ctx.metrics;
        Metrics::add(&m.messages_received, s.messages_in);
        Metrics::add(&m.messages_sent, s.messages_out);
        Metrics::add(&m.bytes_received, s.bytes_in);
        Metrics::add(&m.bytes_sent, s.bytes_out);
        Metrics::add(&m.messages_dropped, s.dropped);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What an idle connection costs lives mostly in its task: keep the
    /// future of an established connection small (large, rare states such
    /// as the handshake and re-authentication are boxed).
    #[test]
    fn connection_task_stays_small() {
        let config = crate::Config::default();
        let ctx = Arc::new(Context::new(
            config,
            Arc::new(crate::plugins::Plugins::none()),
            None,
        ));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (stream, peer) = listener.accept().await.unwrap();
            let (_tx, rx) = watch::channel(false);
            let (alive, _all_done) = tokio::sync::mpsc::channel(1);
            let listener = Arc::new(Listener::new(
                0,
                "server.bind[0]".into(),
                &crate::config::ListenerConfig::tcp(addr),
                addr,
                1024,
                None,
            ));
            let slot = Slot::take(&listener, &alive).unwrap();
            let task = run(ctx, stream, peer, slot, None, rx);
            let size = size_of_val(&task);
            let conn = size_of::<Connection>();
            eprintln!("connection task future: {size} bytes; Connection: {conn} bytes");
            assert!(size <= 384, "connection task future is {size} bytes");
            assert!(conn <= 384, "Connection is {conn} bytes");
        });
    }
}
