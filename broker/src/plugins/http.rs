//! Outbound HTTP for plugins (`wasi:http/outgoing-handler`, so a plugin
//! uses its language's ordinary WASI HTTP client). Nothing is reachable by
//! default: a plugin reaches the URLs its `http_allow` patterns grant.
//! Every request is bounded by `http_timeout_ms` (connect, first byte and
//! between bytes, whatever the plugin asks for), its response body by
//! `http_max_response_bytes`, and a plugin has at most [`MAX_IN_FLIGHT`]
//! requests waiting for their response at once. TLS is rustls with the
//! Mozilla roots (webpki-roots) and the certificates of the plugin's
//! `http_ca_file` (a private CA); `http_send.rs` sends the request.
//!
//! The request runs on the broker's runtime while the hook's wasm call is
//! suspended (the call is async), so a slow server never blocks a worker
//! thread; the call's own deadline still applies.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use super::bindings::sluice::plugin::host::LogLevel;
use super::http_send::{self, Timeouts};
use super::log::PluginLog;

/// Requests of one plugin waiting for their response at once.
pub const MAX_IN_FLIGHT: usize = 16;

/// An `http_allow` entry: `scheme://host[:port]/path`, the path exact or,
/// ending in `*`, a prefix. The query is not part of the match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UrlPattern {
    scheme: String,
    /// Lower-case host and explicit port.
    authority: String,
    path: String,
    prefix: bool,
}

impl UrlPattern {
    /// Parses a pattern; the error says what is wrong.
    pub fn parse(s: &str) -> Result<UrlPattern, String> {
        let (path, prefix) = match s.strip_suffix('*') {
            Some(rest) => (rest, true),
            None => (s, false),
        };
        let uri: http::Uri = path
            .parse()
            .map_err(|e| format!("{s:?} is not a URL ({e})"))?;
        let scheme = match uri.scheme_str() {
            Some(s @ ("http" | "https")) => s.to_owned(),
            _ => return Err(format!("{s:?}: the scheme must be http or https")),
        };
        let Some(authority) = authority(&uri) else {
            return Err(format!("{s:?} has no host"));
        };
        if uri.query().is_some() || path.contains('*') {
            return Err(format!(
                "{s:?}: a pattern is a URL without a query, with at most a final '*'"
            ));
        }
        let path = match uri.path() {
            "" => "/".to_owned(),
            p => p.to_owned(),
        };
        Ok(UrlPattern {
            scheme,
            authority,
            path,
            prefix,
        })
    }

    /// Whether `uri` is one this pattern grants.
    pub fn matches(&self, uri: &http::Uri) -> bool {
        let path = match uri.path() {
            "" => "/",
            p => p,
        };
        uri.scheme_str() == Some(self.scheme.as_str())
            && authority(uri).as_deref() == Some(self.authority.as_str())
            && if self.prefix {
                path.starts_with(&self.path)
            } else {
                path == self.path
            }
    }
}

/// `host:port` of `uri`, lower-case, with the scheme's port when none is
/// written; `None` without a host or with user information.
fn authority(uri: &http::Uri) -> Option<String> {
    let a = uri.authority()?;
    if a.as_str().contains('@') || a.host().is_empty() {
        return None;
    }
    let port = a.port_u16().or(match uri.scheme_str() {
        Some("https") => Some(443),
        Some("http") => Some(80),
        _ => None,
    })?;
    Some(format!("{}:{port}", a.host().to_ascii_lowercase()))
}

/// One plugin's outbound HTTP rights, shared by its instances.
#[derive(Debug)]
pub struct HttpPolicy {
    allow: Vec<UrlPattern>,
    timeout: Duration,
    max_response: u64,
    in_flight: Arc<AtomicUsize>,
    /// The TLS settings, or why `http_ca_file` could not be read (then
    /// every `https` request is refused, and says why in the log).
    tls: Result<Arc<rustls::ClientConfig>, String>,
    log: Arc<PluginLog>,
}

impl HttpPolicy {
    /// The rights `allow` (patterns already validated with the
    /// configuration; one that does not parse grants nothing) grants.
    pub fn new(
        allow: &[String],
        timeout: Duration,
        max_response: u64,
        ca_file: Option<&std::path::Path>,
        log: Arc<PluginLog>,
    ) -> HttpPolicy {
        let tls = if allow.is_empty() {
            Err("no URL is granted (http_allow)".to_owned())
        } else {
            http_send::client_config(ca_file).map(Arc::new)
        };
        if let (Err(why), Some(_)) = (&tls, ca_file) {
            log.record(LogLevel::Error, &format!("http_ca_file: {why}"));
        }
        HttpPolicy {
            tls,
            allow: allow
                .iter()
                .filter_map(|p| UrlPattern::parse(p).ok())
                .collect(),
            timeout,
            max_response,
            in_flight: Arc::new(AtomicUsize::new(0)),
            log,
        }
    }

    fn allows(&self, uri: &http::Uri) -> bool {
        self.allow.iter().any(|p| p.matches(uri))
    }

    /// One of the plugin's [`MAX_IN_FLIGHT`] places, if one is free.
    fn place(&self) -> Option<InFlight> {
        let taken = self.in_flight.fetch_add(1, Ordering::AcqRel);
        let place = InFlight(self.in_flight.clone());
        (taken < MAX_IN_FLIGHT).then_some(place)
    }

    /// The plugin's timeouts (connect, first byte, between bytes), at
    /// most `http_timeout_ms` each.
    fn timeouts(&self, asked: Option<RequestOptions>) -> (Timeouts, Duration) {
        let asked = asked.unwrap_or_default();
        let cap = |d: Option<Duration>| d.map_or(self.timeout, |d| d.min(self.timeout));
        let timeouts = Timeouts {
            connect: cap(asked.connect_timeout),
            first_byte: cap(asked.first_byte_timeout),
        };
        (timeouts, cap(asked.between_bytes_timeout))
    }
}

/// A request waiting for its response; the place is given back on drop.
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What an instance's `wasi:http` calls go through.
pub struct HttpHooks(pub Arc<HttpPolicy>);

type IoFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;
type Sent = Box<dyn Future<Output = Result<(http::Response<WasiBody>, IoFuture), Error>> + Send>;

impl WasiHttpHooks for HttpHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: IoFuture,
    ) -> Sent {
        let policy = self.0.clone();
        Box::new(async move {
            let uri = request.uri().clone();
            if !policy.allows(&uri) {
                policy.log.record(
                    LogLevel::Warn,
                    &format!("HTTP request to {uri} refused: not granted by http_allow"),
                );
                return Err(Error::HttpRequestDenied);
            }
            let Some(place) = policy.place() else {
                policy.log.record(
                    LogLevel::Warn,
                    &format!("HTTP request to {uri} refused: {MAX_IN_FLIGHT} already in flight"),
                );
                return Err(Error::ConnectionLimitReached);
            };
            let (timeouts, between_bytes) = policy.timeouts(options);
            let tls = match &policy.tls {
                Ok(tls) => tls,
                Err(why) => {
                    policy.log.record(
                        LogLevel::Warn,
                        &format!("HTTP request to {uri} refused: {why}"),
                    );
                    return Err(Error::TlsCertificateError);
                }
            };
            let (response, connection) = http_send::send(request, timeouts, tls).await?;
            drop(place);
            let max = policy.max_response;
            let declared = response
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
            if declared.is_some_and(|n| n > max) {
                return Err(Error::HttpResponseBodySize(declared));
            }
            let response = response.map(|body| {
                Limited {
                    inner: body,
                    left: max,
                    max,
                    between_bytes,
                    idle: Box::pin(tokio::time::sleep(between_bytes)),
                    _connection: connection,
                }
                .boxed_unsync()
            });
            // The connection's task is the body's: nothing else to drive.
            let io = async { Ok(()) };
            Ok((response, Box::new(io) as IoFuture))
        })
    }
}

/// A response body cut (with an error) past `max` bytes or after
/// `between_bytes` without data; it holds the connection's task.
struct Limited {
    inner: hyper::body::Incoming,
    left: u64,
    max: u64,
    between_bytes: Duration,
    idle: Pin<Box<tokio::time::Sleep>>,
    _connection: http_send::Connection,
}

impl Body for Limited {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = &mut *self;
        let frame = match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => frame.map(|f| f.map_err(Error::from)),
            Poll::Pending => {
                ready!(this.idle.as_mut().poll(cx));
                return Poll::Ready(Some(Err(Error::ConnectionReadTimeout)));
            }
        };
        let next = tokio::time::Instant::now() + this.between_bytes;
        this.idle.as_mut().reset(next);
        if let Some(Ok(f)) = &frame {
            if let Some(data) = f.data_ref() {
                let n = data.len() as u64;
                if n > this.left {
                    this.left = 0;
                    return Poll::Ready(Some(Err(Error::HttpResponseBodySize(Some(this.max)))));
                }
                this.left -= n;
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(s: &str) -> http::Uri {
        s.parse().expect("uri")
    }

    #[test]
    fn patterns_match_scheme_host_port_and_path() {
        let p = UrlPattern::parse("https://Auth.example.com/v1/*").expect("pattern");
        assert!(p.matches(&uri("https://auth.example.com/v1/check?u=1")));
        assert!(p.matches(&uri("https://auth.example.com:443/v1/")));
        assert!(!p.matches(&uri("http://auth.example.com/v1/check")));
        assert!(!p.matches(&uri("https://auth.example.com:8443/v1/check")));
        assert!(!p.matches(&uri("https://auth.example.com.evil.net/v1/check")));
        assert!(!p.matches(&uri("https://auth.example.com/v2/check")));
        assert!(!p.matches(&uri("https://user@auth.example.com/v1/check")));

        let exact = UrlPattern::parse("http://127.0.0.1:8080/auth").expect("pattern");
        assert!(exact.matches(&uri("http://127.0.0.1:8080/auth?x=1")));
        assert!(!exact.matches(&uri("http://127.0.0.1:8080/auth/more")));
        assert!(!exact.matches(&uri("http://127.0.0.1:8081/auth")));

        let root = UrlPattern::parse("http://hooks.local").expect("pattern");
        assert!(root.matches(&uri("http://hooks.local/")));
        assert!(!root.matches(&uri("http://hooks.local/x")));
    }

    #[test]
    fn bad_patterns_say_why() {
        for bad in [
            "ftp://x/",
            "auth.example.com/*",
            "https:///x",
            "https://x/a*b",
            "https://x/?q=1",
            "https://u@x/",
        ] {
            assert!(UrlPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn timeouts_are_capped() {
        let log = Arc::new(PluginLog::new("p".into()));
        let policy = HttpPolicy::new(&[], Duration::from_secs(2), 10, None, log);
        let (o, between_bytes) = policy.timeouts(Some(RequestOptions {
            connect_timeout: Some(Duration::from_secs(60)),
            first_byte_timeout: Some(Duration::from_millis(100)),
            between_bytes_timeout: None,
        }));
        assert_eq!(o.connect, Duration::from_secs(2));
        assert_eq!(o.first_byte, Duration::from_millis(100));
        assert_eq!(between_bytes, Duration::from_secs(2));
    }

    #[test]
    fn places_are_bounded_and_given_back() {
        let log = Arc::new(PluginLog::new("p".into()));
        let policy = HttpPolicy::new(&[], Duration::from_secs(1), 10, None, log);
        let held: Vec<_> = (0..MAX_IN_FLIGHT).map(|_| policy.place()).collect();
        assert!(held.iter().all(Option::is_some));
        assert!(policy.place().is_none());
        drop(held);
        assert!(policy.place().is_some());
    }
}
