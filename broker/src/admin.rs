//! The admin endpoint: a small, read-only HTTP/1.1 server for operators and
//! monitoring, enabled by `[admin] bind`.
//!
//! - `GET /plugins`: the loaded plugins in chain order with their counters
//!   and last reload result, and the rejected files, as JSON (a
//!   [`crate::plugins::Status`]); `sluice plugins` prints it as a table.
//! - `GET /metrics`: the broker's and the plugins' counters in the
//!   Prometheus text format, version 0.0.4.
//!
//! Hand-written on tokio, and deliberately small: one request per
//! connection (`Connection: close`), a request head of at most
//! [`MAX_HEAD`] bytes that must arrive within [`READ_TIMEOUT`], at most
//! [`MAX_CONNECTIONS`] connections served at once (further ones wait in the
//! kernel's accept queue). Other methods get 405, other paths 404, anything
//! unparsable 400; bad input never panics.
//!
//! The endpoint only reads broker state (relaxed atomics and short
//! snapshots) on its own tasks, so it never holds up the MQTT path. It has
//! no authentication: bind it to a loopback or otherwise private address.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};

use crate::context::Context;
use crate::limits::Limit;
use crate::metrics::Metrics;
use crate::plugins::{PluginStatus, Status};

/// Largest request head (request line and headers) accepted, in bytes.
pub const MAX_HEAD: usize = 8 * 1024;
/// How long a client has to send its whole request head.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a client has to take the response.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long, after answering, unread request bytes are drained so that
/// closing does not reset the connection before the client read the
/// response.
const LINGER: Duration = Duration::from_secs(1);
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 16;

/// `Content-Type` of `GET /metrics`.
const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";
const JSON: &str = "application/json";
const TEXT: &str = "text/plain; charset=utf-8";

/// Opens the admin listener on `addr`.
pub(crate) async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves `listener` on a task of its own until the task is aborted, which
/// also ends every connection it is serving.
pub(crate) fn spawn(listener: TcpListener, ctx: Arc<Context>) -> JoinHandle<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!("admin endpoint on http://{addr}");
        if !addr.ip().is_loopback() {
            tracing::warn!(
                "the admin endpoint on {addr} is not on a loopback address and has no \
                 authentication: anyone who can reach it can read the broker's state"
            );
        }
    }
    tokio::spawn(serve(listener, ctx))
}

async fn serve(listener: TcpListener, ctx: Arc<Context>) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    // Dropped with this task: aborts the connections in flight.
    let mut connections = JoinSet::new();
    let mut backoff = Duration::from_millis(5);
    loop {
        while connections.try_join_next().is_some() {}
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        match listener.accept().await {
            Ok((stream, _)) => {
                backoff = Duration::from_millis(5);
                let ctx = ctx.clone();
                connections.spawn(async move {
                    handle(stream, &ctx).await;
                    drop(permit);
                });
            }
            Err(e) => {
                tracing::warn!("admin endpoint: accept failed: {e}; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// Answers the one request of a connection, then closes it.
async fn handle(mut stream: TcpStream, ctx: &Context) {
    let response = match tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)).await {
        Ok(Ok(head)) => respond(ctx, &head),
        Ok(Err(HeadError::TooLarge)) => Response::text(431, "request head too large\n"),
        Ok(Err(HeadError::Incomplete)) => Response::text(400, "bad request\n"),
        Ok(Err(HeadError::Closed)) => return,
        Err(_) => Response::text(408, "request timeout\n"),
    };
    let bytes = response.to_bytes();
    let sent = async {
        stream.write_all(&bytes).await?;
        stream.shutdown().await
    };
    if let Ok(Ok(())) = tokio::time::timeout(WRITE_TIMEOUT, sent).await {
        let _ = tokio::time::timeout(LINGER, drain(&mut stream)).await;
    }
}

/// Why no request head could be read.
#[derive(Debug, PartialEq, Eq)]
enum HeadError {
    /// More than [`MAX_HEAD`] bytes without the blank line ending it.
    TooLarge,
    /// The client stopped sending in the middle of a head.
    Incomplete,
    /// The connection closed (or failed) before any byte arrived.
    Closed,
}

/// Reads up to the blank line that ends the request head; returns the head
/// without it.
async fn read_head(stream: &mut TcpStream) -> Result<Vec<u8>, HeadError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = match stream.read(&mut chunk).await {
            Ok(0) | Err(_) if buf.is_empty() => return Err(HeadError::Closed),
            Ok(0) | Err(_) => return Err(HeadError::Incomplete),
            Ok(n) => n,
        };
        // The terminator may straddle the previous read.
        let from = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = head_end(&buf, from) {
            buf.truncate(end);
            return Ok(buf);
        }
        if buf.len() >= MAX_HEAD {
            return Err(HeadError::TooLarge);
        }
    }
}

/// Where the head in `buf` ends: the index of the line feed before the
/// blank line (`\r\n\r\n`, or a bare `\n\n`), searching from `from`. A
/// head longer than [`MAX_HEAD`] does not count.
fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    (from..buf.len().min(MAX_HEAD)).find(|&i| {
        buf[i] == b'\n' && {
            let rest = &buf[i + 1..];
            rest.starts_with(b"\n") || rest.starts_with(b"\r\n")
        }
    })
}

/// Discards what the client still sends (at most 64 KiB), until it closes.
async fn drain(stream: &mut TcpStream) {
    let mut sink = [0u8; 1024];
    let mut left: usize = 64 * 1024;
    while left > 0 {
        match stream.read(&mut sink).await {
            Ok(0) | Err(_) => return,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
}

/// The parts of a request the endpoint looks at.
#[derive(Debug, PartialEq, Eq)]
struct Request<'a> {
    method: &'a str,
    /// The target without its query.
    path: &'a str,
}

/// Parses a request head; `None` if it is not HTTP/1.x.
fn parse(head: &[u8]) -> Option<Request<'_>> {
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let request_line = std::str::from_utf8(lines.next()?).ok()?;
    let mut parts = request_line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    let well_formed = parts.next().is_none()
        && is_token(method.as_bytes())
        && target.starts_with('/')
        && target.bytes().all(|b| b.is_ascii_graphic())
        && matches!(version, "HTTP/1.1" | "HTTP/1.0");
    if !well_formed || !lines.all(is_header) {
        return None;
    }
    let path = target.split(['?', '#']).next().unwrap_or(target);
    Some(Request { method, path })
}

/// `name: value`, with a token for the name.
fn is_header(line: &[u8]) -> bool {
    line.iter()
        .position(|&b| b == b':')
        .is_some_and(|colon| is_token(&line[..colon]))
}

/// An HTTP token (RFC 9110 §5.6.2): method and header names.
fn is_token(s: &[u8]) -> bool {
    !s.is_empty()
        && s.iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// What to send back.
#[derive(Debug)]
struct Response {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
}

impl Response {
    fn text(status: u16, body: &str) -> Self {
        Response {
            status,
            content_type: TEXT,
            body: body.as_bytes().to_vec(),
        }
    }

    fn reason(&self) -> &'static str {
        match self.status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            408 => "Request Timeout",
            431 => "Request Header Fields Too Large",
            _ => "Internal Server Error",
        }
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
            self.status,
            self.reason(),
            self.content_type,
            self.body.len()
        );
        if self.status == 405 {
            head.push_str("Allow: GET\r\n");
        }
        head.push_str("Cache-Control: no-store\r\nConnection: close\r\n\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

/// Routes a request head.
fn respond(ctx: &Context, head: &[u8]) -> Response {
    let Some(request) = parse(head) else {
        return Response::text(400, "bad request\n");
    };
    if request.method != "GET" {
        return Response::text(405, "only GET is supported\n");
    }
    match request.path {
        "/plugins" => plugins_json(&ctx.plugins.status()),
        "/metrics" => Response {
            status: 200,
            content_type: PROMETHEUS,
            body: metrics_text(ctx).into_bytes(),
        },
        _ => Response::text(404, "not found; try /plugins or /metrics\n"),
    }
}

/// `GET /plugins`.
fn plugins_json(status: &Status) -> Response {
    match serde_json::to_vec_pretty(status) {
        Ok(mut body) => {
            body.push(b'\n');
            Response {
                status: 200,
                content_type: JSON,
                body,
            }
        }
        Err(e) => {
            tracing::warn!("admin endpoint: cannot encode the plugin status: {e}");
            Response::text(500, "cannot encode the plugin status\n")
        }
    }
}

/// Prometheus metric types used here.
#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
}

/// Prometheus text exposition (format 0.0.4) being written.
#[derive(Default)]
struct Exposition(String);

impl Exposition {
    /// Starts a metric family: its `# HELP` and `# TYPE` lines.
    fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    /// A family with one unlabelled sample.
    fn single(&mut self, name: &str, kind: Kind, help: &str, value: u64) {
        self.family(name, kind, help);
        let _ = writeln!(self.0, "{name} {value}");
    }

    /// A sample labelled with a plugin name.
    fn plugin_sample(&mut self, name: &str, plugin: &str, value: u64) {
        self.labelled(name, "plugin", plugin, value);
    }

    /// A sample with one label.
    fn labelled(&mut self, name: &str, label: &str, value_of_label: &str, value: u64) {
        let _ = writeln!(
            self.0,
            "{name}{{{label}=\"{}\"}} {value}",
            escape_label(value_of_label)
        );
    }
}

/// A label value as the text format needs it: `\`, `"` and line feeds
/// escaped.
fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A count as a sample value.
fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// `GET /metrics`.
fn metrics_text(ctx: &Context) -> String {
    let mut out = Exposition::default();
    broker_metrics(&mut out, ctx);
    plugin_metrics(
        &mut out,
        &ctx.plugins.status(),
        ctx.plugins.dropped_events(),
    );
    out.0
}

fn broker_metrics(out: &mut Exposition, ctx: &Context) {
    use Kind::{Counter, Gauge};
    let m = &ctx.metrics;
    let get = |c: &AtomicU64| Metrics::get(c);
    let families = [
        (
            "sluice_uptime_seconds",
            Gauge,
            "Seconds since the broker started.",
            ctx.started.elapsed().as_secs(),
        ),
        (
            "sluice_clients_connected",
            Gauge,
            "Clients connected now.",
            get(&m.clients_connected),
        ),
        (
            "sluice_sessions",
            Gauge,
            "Sessions: connected clients and persistent sessions of disconnected ones.",
            count(ctx.registry.len()),
        ),
        (
            "sluice_connections_total",
            Counter,
            "Client connections accepted.",
            get(&m.connections_total),
        ),
        (
            "sluice_connections_refused_limit_total",
            Counter,
            "Connections closed at accept because their listener's max_connections was reached.",
            get(&m.connections_refused_limit),
        ),
        (
            "sluice_connections_refused_rate_total",
            Counter,
            "Connections closed at accept because their listener's max_connection_rate was exceeded.",
            get(&m.connections_refused_rate),
        ),
        (
            "sluice_messages_received_total",
            Counter,
            "PUBLISH packets received from clients.",
            get(&m.messages_received),
        ),
        (
            "sluice_messages_sent_total",
            Counter,
            "PUBLISH packets sent to clients.",
            get(&m.messages_sent),
        ),
        (
            "sluice_messages_dropped_total",
            Counter,
            "Messages dropped (full queues, expiry, refusals).",
            get(&m.messages_dropped),
        ),
        (
            "sluice_bytes_received_total",
            Counter,
            "Bytes received from clients.",
            get(&m.bytes_received),
        ),
        (
            "sluice_bytes_sent_total",
            Counter,
            "Bytes sent to clients.",
            get(&m.bytes_sent),
        ),
        (
            "sluice_subscriptions",
            Gauge,
            "Subscriptions across all sessions.",
            count(ctx.router.subscription_count()),
        ),
        (
            "sluice_retained_messages",
            Gauge,
            "Retained messages.",
            count(ctx.router.retained_count()),
        ),
        (
            "sluice_retained_bytes",
            Gauge,
            "Bytes of retained messages, as limits.max_retained_bytes counts them.",
            count(ctx.router.retained_bytes()),
        ),
        (
            "sluice_session_timers",
            Gauge,
            "Scheduled session expiries and delayed Wills.",
            count(ctx.registry.timer_count()),
        ),
        (
            "sluice_memory_allocated_bytes",
            Gauge,
            "Heap bytes in use, as the memory budget counts them.",
            count(crate::memory::allocated()),
        ),
        (
            "sluice_memory_budget_bytes",
            Gauge,
            "The memory budget (limits.max_memory_mb).",
            count(ctx.memory.limit()),
        ),
        (
            "sluice_runtime_alive_tasks",
            Gauge,
            "Tasks alive in the broker's runtime (connections, timers, plugin dispatch).",
            count(
                tokio::runtime::Handle::current()
                    .metrics()
                    .num_alive_tasks(),
            ),
        ),
    ];
    for (name, kind, help, value) in families {
        out.single(name, kind, help, value);
    }
    if let Some(store) = &ctx.store {
        store_metrics(out, store);
    }
    if let Some(cluster) = ctx.router.cluster() {
        cluster_metrics(out, cluster);
    }
    let hits = "sluice_limit_hits_total";
    out.family(
        hits,
        Counter,
        "Times a client ran into a limit (limit: which one; see docs/config.md).",
    );
    for limit in Limit::ALL {
        out.labelled(hits, "limit", limit.label(), m.limits.count(*limit));
    }
}

/// The store's metrics (`[persistence]`).
fn store_metrics(out: &mut Exposition, store: &crate::store::Store) {
    use Kind::{Counter, Gauge};
    let s = store.stats();
    let get = |c: &AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    let families = [
        (
            "sluice_store_disk_bytes",
            Gauge,
            "Bytes the store occupies on disk.",
            store.disk_bytes(),
        ),
        (
            "sluice_store_messages",
            Gauge,
            "Messages held in the store by queued or in-flight deliveries.",
            count(store.held_messages()),
        ),
        (
            "sluice_store_batches_total",
            Counter,
            "Batches committed by the store's writer (group commit).",
            get(&s.batches),
        ),
        (
            "sluice_store_ops_total",
            Counter,
            "Changes submitted to the store.",
            get(&s.ops),
        ),
        (
            "sluice_store_written_bytes_total",
            Counter,
            "Key and value bytes written by committed batches.",
            get(&s.bytes),
        ),
        (
            "sluice_store_syncs_total",
            Counter,
            "fsyncs of the store.",
            get(&s.syncs),
        ),
        (
            "sluice_store_failures_total",
            Counter,
            "Batches or fsyncs that failed.",
            get(&s.failures),
        ),
        (
            "sluice_store_commit_microseconds_total",
            Counter,
            "Time spent committing batches (fsync included with durability = always).",
            get(&s.commit_micros),
        ),
        (
            "sluice_store_commit_microseconds_max",
            Gauge,
            "Longest batch commit since start.",
            get(&s.commit_micros_max),
        ),
        (
            "sluice_store_backlog_bytes",
            Gauge,
            "Bytes of changes submitted and not yet taken by the writer.",
            count(store.backlog()),
        ),
    ];
    for (name, kind, help, value) in families {
        out.single(name, kind, help, value);
    }
}

/// The cluster's metrics (`[cluster]`).
fn cluster_metrics(out: &mut Exposition, cluster: &crate::cluster::Cluster) {
    use Kind::{Counter, Gauge};
    let s = cluster.stats();
    let get = |c: &AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    for (name, kind, help, value) in [
        (
            "sluice_cluster_forwarded_total",
            Counter,
            "Messages published here and sent to NATS for the other nodes.",
            get(&s.forwarded),
        ),
        (
            "sluice_cluster_received_total",
            Counter,
            "Messages other nodes published, received from NATS.",
            get(&s.received),
        ),
        (
            "sluice_cluster_dropped_total",
            Counter,
            "Messages not sent to NATS (its queue full, or NATS refused) or not understood.",
            get(&s.dropped),
        ),
        (
            "sluice_cluster_subscriptions",
            Gauge,
            "NATS subscriptions this node holds for its clients' filters.",
            get(&s.subscriptions),
        ),
        (
            "sluice_cluster_retained_applied_total",
            Counter,
            "Retained messages set or cleared here from the cluster's bucket.",
            get(&s.retained_applied),
        ),
        (
            "sluice_cluster_retained_failed_total",
            Counter,
            "Retained messages not written to the cluster's bucket, or refused here by a limit.",
            get(&s.retained_failed),
        ),
        (
            "sluice_cluster_sessions_handed_out_total",
            Counter,
            "Sessions handed to another node whose client connected there.",
            get(&s.handed_out),
        ),
        (
            "sluice_cluster_sessions_handed_in_total",
            Counter,
            "Sessions handed over by another node to a client connecting here.",
            get(&s.handed_in),
        ),
        (
            "sluice_cluster_nodes_declared_dead_total",
            Counter,
            "Nodes this node found without a heartbeat for node_timeout and declared dead.",
            get(&s.dead_nodes),
        ),
        (
            "sluice_cluster_dead_nodes_handled_total",
            Counter,
            "Dead nodes whose sessions this node tried to take over.",
            get(&s.dead_handled),
        ),
        (
            "sluice_cluster_sessions_inherited_total",
            Counter,
            "Sessions of dead nodes this node took over (their Wills sent here).",
            get(&s.inherited),
        ),
    ] {
        out.single(name, kind, help, value);
    }
}

/// One per-plugin metric family: name, type, help, and its value.
type PluginFamily = (&'static str, Kind, &'static str, fn(&PluginStatus) -> u64);

const PLUGIN_FAMILIES: [PluginFamily; 13] = [
    (
        "sluice_plugin_calls_total",
        Kind::Counter,
        "Hook calls into the plugin's loaded version.",
        |p| p.calls,
    ),
    (
        "sluice_plugin_errors_total",
        Kind::Counter,
        "Hook calls the plugin answered with an error.",
        |p| p.errors,
    ),
    (
        "sluice_plugin_failures_total",
        Kind::Counter,
        "Hook calls that failed (trap, fuel, memory, deadline, disabled).",
        |p| p.failures,
    ),
    (
        "sluice_plugin_traps_total",
        Kind::Counter,
        "Hook calls that trapped.",
        |p| p.traps,
    ),
    (
        "sluice_plugin_deadlines_total",
        Kind::Counter,
        "Hook calls cut at their deadline.",
        |p| p.deadlines,
    ),
    (
        "sluice_plugin_out_of_fuel_total",
        Kind::Counter,
        "Hook calls that ran out of fuel.",
        |p| p.out_of_fuel,
    ),
    (
        "sluice_plugin_invalid_answers_total",
        Kind::Counter,
        "Answers refused as invalid (a modifier out of range or past the operator's limits).",
        |p| p.invalid,
    ),
    (
        "sluice_plugin_busy_total",
        Kind::Counter,
        "Hook calls that found no free instance within the deadline.",
        |p| p.busy,
    ),
    (
        "sluice_plugin_fuel_used_total",
        Kind::Counter,
        "Fuel the plugin's hook calls used.",
        |p| p.fuel_used,
    ),
    (
        "sluice_plugin_instances",
        Kind::Gauge,
        "Live instances of the plugin.",
        |p| count(p.instances),
    ),
    (
        "sluice_plugin_published_total",
        Kind::Counter,
        "Messages the plugin published (host function publish) that were queued.",
        |p| p.published,
    ),
    (
        "sluice_plugin_publish_refused_total",
        Kind::Counter,
        "Publish calls refused at once: publishing off, rate, topic, size or queue full.",
        |p| p.publish_refused,
    ),
    (
        "sluice_plugin_publications_denied_total",
        Kind::Counter,
        "Queued publications of the plugin that other plugins or the broker's limits refused.",
        |p| p.publications_denied,
    ),
];

fn plugin_metrics(out: &mut Exposition, status: &Status, dropped_events: u64) {
    use Kind::{Counter, Gauge};
    for (name, kind, help, value) in PLUGIN_FAMILIES {
        out.family(name, kind, help);
        for p in &status.plugins {
            out.plugin_sample(name, &p.name, value(p));
        }
    }
    let totals = [
        (
            "sluice_plugins_loaded",
            Gauge,
            "Plugins in the chain.",
            count(status.plugins.len()),
        ),
        (
            "sluice_plugins_rejected",
            Gauge,
            "Plugin files that failed to load at their last attempt.",
            count(status.rejected.len()),
        ),
        (
            "sluice_plugins_ignored",
            Gauge,
            "Plugin files not tried: disabled in the configuration, or not a readable file (dangling symlink, symlink loop, directory).",
            count(status.ignored.len()),
        ),
        (
            "sluice_plugin_reloads_total",
            Counter,
            "Reloads that changed the plugin chain.",
            status.reloads,
        ),
        (
            "sluice_plugin_compiles_total",
            Counter,
            "Plugins compiled to machine code (compile-cache misses).",
            status.compiles,
        ),
        (
            "sluice_plugins_required_missing",
            Gauge,
            "Required plugins not loaded: the hooks they served refuse every client.",
            count(status.required_missing.len()),
        ),
        (
            "sluice_plugin_cache_refused_total",
            Counter,
            "Cached compiled plugins refused (failed their ownership or authentication checks) and compiled again.",
            status.cache_refused,
        ),
        (
            "sluice_plugin_events_dropped_total",
            Counter,
            "Plugin notifications dropped because their dispatcher fell behind.",
            dropped_events,
        ),
    ];
    for (name, kind, help, value) in totals {
        out.single(name, kind, help, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_are_parsed() {
        let r = parse(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nAccept: */*").unwrap();
        assert_eq!(
            r,
            Request {
                method: "GET",
                path: "/metrics"
            }
        );
        assert_eq!(parse(b"POST /plugins HTTP/1.0").unwrap().method, "POST");
    }

    #[test]
    fn garbage_is_refused() {
        for head in [
            &b""[..],
            b"hello",
            b"GET /plugins",
            b"GET plugins HTTP/1.1",
            b"GET /plugins HTTP/2",
            b"GET  /plugins HTTP/1.1",
            b"GET /plugins HTTP/1.1 extra",
            b"G\xffT /plugins HTTP/1.1",
            b"GET /plugins HTTP/1.1\r\nno colon here",
            b"GET /plugins HTTP/1.1\r\n: empty name",
            b"\x00\x01\x02\x03",
        ] {
            assert_eq!(parse(head), None, "{:?}", String::from_utf8_lossy(head));
        }
    }

    #[test]
    fn the_head_ends_at_the_blank_line() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\n", 0), Some(15));
        assert_eq!(head_end(b"GET / HTTP/1.1\n\n", 0), Some(14));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n", 0), None);
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(escape_label("plain"), "plain");
    }

    #[test]
    fn responses_close_the_connection() {
        let text = String::from_utf8(Response::text(405, "no\n").to_bytes()).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
            "{text}"
        );
        assert!(text.contains("Allow: GET\r\n"), "{text}");
        assert!(text.contains("Content-Length: 3\r\n"), "{text}");
        assert!(text.contains("Connection: close\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\nno\n"), "{text}");
    }
}
