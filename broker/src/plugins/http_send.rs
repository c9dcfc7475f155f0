//! Sends one plugin HTTP request (what wasmtime-wasi-http's default sender
//! does, with the plugin's own TLS trust): a TCP connection within the
//! connect timeout, TLS for `https` with rustls and the plugin's roots (the
//! Mozilla roots, plus `http_ca_file`'s certificates), HTTP/1.1 with hyper,
//! the first byte of the response within its timeout. One connection per
//! request; the connection's task ends with the response body.

use std::sync::Arc;
use std::time::Duration;

use hyper::client::conn::http1;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error, WasiBody};

/// The timeouts of one request, each already capped by `http_timeout_ms`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timeouts {
    pub connect: Duration,
    pub first_byte: Duration,
}

/// A connection's byte stream, plain or TLS.
trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}

/// The connection's task, ended when the response (and its body) is
/// dropped.
pub(crate) struct Connection(JoinHandle<Result<(), hyper::Error>>);

impl Drop for Connection {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Sends `request` (an absolute URI) and returns the response, whose body
/// needs `Connection` alive.
pub(crate) async fn send(
    mut request: http::Request<WasiBody>,
    timeouts: Timeouts,
    tls: &Arc<ClientConfig>,
) -> Result<(http::Response<hyper::body::Incoming>, Connection), Error> {
    let uri = request.uri().clone();
    let host = uri.host().ok_or(Error::HttpRequestUriInvalid)?;
    let https = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    // An IPv6 literal comes bracketed.
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let tcp = timeout(timeouts.connect, TcpStream::connect((host, port)))
        .await
        .map_err(|_| Error::ConnectionTimeout)?
        .map_err(Error::Connect)?;
    let _ = tcp.set_nodelay(true);
    let stream: Box<dyn Stream> = if https {
        let name = ServerName::try_from(host.to_owned()).map_err(Error::InvalidDnsNameError)?;
        let connecting = TlsConnector::from(tls.clone()).connect(name, tcp);
        Box::new(
            timeout(timeouts.connect, connecting)
                .await
                .map_err(|_| Error::ConnectionTimeout)?
                .map_err(Error::Tls)?,
        )
    } else {
        Box::new(tcp)
    };
    let (mut sender, connection) = timeout(
        timeouts.connect,
        http1::handshake::<_, WasiBody>(TokioIo::new(stream)),
    )
    .await
    .map_err(|_| Error::ConnectionTimeout)??;
    let connection = Connection(tokio::spawn(connection));
    // Not through a proxy: the request line carries the path only.
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    *request.uri_mut() = path.parse().map_err(|_| Error::HttpRequestUriInvalid)?;
    let response = timeout(timeouts.first_byte, sender.send_request(request))
        .await
        .map_err(|_| Error::ConnectionReadTimeout)??;
    Ok((response, connection))
}

/// The TLS settings of a plugin: the Mozilla roots, plus the certificates
/// of `ca_file` (PEM) when given. The error names the file and the reason.
pub(crate) fn client_config(ca_file: Option<&std::path::Path>) -> Result<ClientConfig, String> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = ca_file {
        let extra = crate::listener::tls::ca_roots(path).map_err(|e| e.to_string())?;
        roots.roots.extend(extra.roots);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
