//! A real HTTP/1.1 server on 127.0.0.1 (an ephemeral port), plain or over
//! TLS, for the plugins that call out over HTTP: each request's JSON body
//! goes to a handler that chooses the reply, and every request is recorded.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::path::Path;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// A request the server received.
#[derive(Clone, Debug)]
pub struct Request {
    pub path: String,
    pub body: serde_json::Value,
}

/// The server's answer to one request.
pub struct Reply {
    pub status: u16,
    pub body: String,
    /// How long the server takes before answering (a slow service).
    pub delay: Duration,
}

impl Reply {
    /// `status` with a JSON body `{"result": result}`.
    pub fn result(status: u16, result: &str) -> Reply {
        Reply {
            status,
            body: serde_json::json!({ "result": result }).to_string(),
            delay: Duration::ZERO,
        }
    }
}

type Handler = dyn Fn(&Request) -> Reply + Send + Sync;

/// The server; it stops when dropped.
pub struct HttpServer {
    pub addr: SocketAddr,
    scheme: &'static str,
    requests: Arc<Mutex<Vec<Request>>>,
    task: tokio::task::JoinHandle<()>,
}

impl HttpServer {
    /// Serves `handler` until dropped.
    pub async fn start(handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> HttpServer {
        Self::start_with(None, Arc::new(handler)).await
    }

    /// Serves `handler` over TLS with the certificate and key in the PEM
    /// files `cert` and `key` until dropped.
    pub async fn start_tls(
        cert: &Path,
        key: &Path,
        handler: impl Fn(&Request) -> Reply + Send + Sync + 'static,
    ) -> HttpServer {
        let certs = CertificateDer::pem_file_iter(cert)
            .expect("certificate file")
            .collect::<Result<Vec<_>, _>>()
            .expect("certificates");
        let key = PrivateKeyDer::from_pem_file(key).expect("key");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server certificate");
        let acceptor = TlsAcceptor::from(Arc::new(config));
        Self::start_with(Some(acceptor), Arc::new(handler)).await
    }

    async fn start_with(tls: Option<TlsAcceptor>, handler: Arc<Handler>) -> HttpServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (handler, seen) = (handler.clone(), seen.clone());
                match &tls {
                    None => drop(tokio::spawn(serve(stream, handler, seen))),
                    Some(acceptor) => {
                        let accepting = acceptor.accept(stream);
                        tokio::spawn(async move {
                            // A client that refuses the certificate ends
                            // the handshake: nothing to serve.
                            if let Ok(stream) = accepting.await {
                                serve(stream, handler, seen).await;
                            }
                        });
                    }
                }
            }
        });
        HttpServer {
            addr,
            scheme,
            requests,
            task,
        }
    }

    /// `http://127.0.0.1:PORT{path}` (`https` over TLS).
    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{path}", self.scheme, self.addr)
    }

    /// The requests received so far.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().expect("requests").clone()
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one request (head and `Content-Length` body), answers it and
/// closes the connection.
async fn serve(
    mut stream: impl AsyncRead + AsyncWrite + Unpin,
    handler: Arc<Handler>,
    seen: Arc<Mutex<Vec<Request>>>,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let path = head
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    let length = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let body = serde_json::from_slice(&buf[head_end..head_end + length])
        .unwrap_or(serde_json::Value::Null);
    let request = Request { path, body };
    seen.lock().expect("requests").push(request.clone());
    let reply = handler(&request);
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let response = format!(
        "HTTP/1.1 {} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}",
        reply.status,
        reply.body.len(),
        reply.body
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}
