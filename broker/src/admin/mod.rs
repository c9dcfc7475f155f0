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
//! snapshots) on its own tasks, so it never holds up the MQTT path. Every
//! request passes `access.rs` first: a `Host` check against DNS rebinding
//! and, with `[admin] token_file`, a bearer token. `metrics.rs` writes
//! `/metrics`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};

mod access;
mod exposition;
mod metrics;

use crate::context::Context;
use crate::plugins::Status;

pub(crate) use access::{Access, AccessError};
use metrics::metrics_text;

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
pub(crate) fn spawn(listener: TcpListener, ctx: Arc<Context>, access: Access) -> JoinHandle<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(
            "admin endpoint on http://{addr}{}",
            if access.has_token() {
                " (bearer token required)"
            } else {
                ""
            }
        );
        if !addr.ip().is_loopback() && !access.has_token() {
            tracing::warn!(
                "the admin endpoint on {addr} is not on a loopback address and has no \
                 authentication ([admin] token_file): anyone who can reach it can read \
                 the broker's state"
            );
        }
    }
    tokio::spawn(serve(listener, ctx, Arc::new(access)))
}

async fn serve(listener: TcpListener, ctx: Arc<Context>, access: Arc<Access>) {
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
                let (ctx, access) = (ctx.clone(), access.clone());
                connections.spawn(async move {
                    handle(stream, &ctx, &access).await;
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
async fn handle(mut stream: TcpStream, ctx: &Context, access: &Access) {
    let response = match tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)).await {
        Ok(Ok(head)) => respond(ctx, access, &head),
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
    /// The `Host` and `Authorization` headers' values.
    host: Option<&'a str>,
    authorization: Option<&'a str>,
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
    if !well_formed {
        return None;
    }
    let (mut host, mut authorization) = (None, None);
    for line in lines {
        let colon = line.iter().position(|&b| b == b':')?;
        if !is_token(&line[..colon]) {
            return None;
        }
        let name = &line[..colon];
        let value = || std::str::from_utf8(&line[colon + 1..]).ok().map(str::trim);
        if name.eq_ignore_ascii_case(b"host") {
            host = Some(value()?);
        } else if name.eq_ignore_ascii_case(b"authorization") {
            authorization = Some(value()?);
        }
    }
    let path = target.split(['?', '#']).next().unwrap_or(target);
    Some(Request {
        method,
        path,
        host,
        authorization,
    })
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
            401 => "Unauthorized",
            403 => "Forbidden",
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
        if self.status == 401 {
            head.push_str("WWW-Authenticate: Bearer realm=\"sluice\"\r\n");
        }
        head.push_str("Cache-Control: no-store\r\nConnection: close\r\n\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

/// Routes a request head.
fn respond(ctx: &Context, access: &Access, head: &[u8]) -> Response {
    let Some(request) = parse(head) else {
        return Response::text(400, "bad request\n");
    };
    match access.check(request.host, request.authorization) {
        Ok(()) => {}
        Err(access::Denied::Host) => {
            return Response::text(
                403,
                "unknown Host: add it to [admin] hosts to reach the endpoint by this name\n",
            );
        }
        Err(access::Denied::Token) => {
            return Response::text(401, "a bearer token is required ([admin] token_file)\n");
        }
    }
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
                path: "/metrics",
                host: Some("a"),
                authorization: None,
            }
        );
        let r = parse(b"GET / HTTP/1.1\r\nauthorization:  Bearer x ").unwrap();
        assert_eq!(r.authorization, Some("Bearer x"));
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
