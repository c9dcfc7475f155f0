//! TLS for `tls` and `wss` listeners (rustls, TLS 1.2 and 1.3 only, the
//! `ring` provider): the certificate chain and key, optional or required
//! client certificates verified against a CA file, and reloading them all
//! (SIGHUP) without touching established connections: [`TlsServer`] swaps
//! the rustls configuration that new handshakes start from.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{ServerConfig, version};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::cert::ClientCertificate;
use crate::config::{ClientAuth, TlsConfig};

/// Why a listener's certificates cannot be loaded; names the file and the
/// problem.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: not valid PEM: {detail}", path.display())]
    Pem { path: PathBuf, detail: String },
    #[error("{}: no certificate in it (expected PEM \"BEGIN CERTIFICATE\" sections)", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{}: the certificate is not valid: {detail}", path.display())]
    BadCertificate { path: PathBuf, detail: String },
    #[error(
        "{}: no private key in it (expected a PEM PKCS#8 \"PRIVATE KEY\", PKCS#1 \
         \"RSA PRIVATE KEY\" or SEC1 \"EC PRIVATE KEY\")", path.display()
    )]
    NoKey { path: PathBuf },
    #[error("{}: encrypted private keys are not supported; decrypt it first", path.display())]
    EncryptedKey { path: PathBuf },
    #[error("{}: unsupported private key: {detail}", path.display())]
    UnsupportedKey { path: PathBuf, detail: String },
    #[error("{}: the private key does not match the certificate in {}", key.display(), cert.display())]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("client_auth = \"{0}\" needs client_ca (a PEM file of CA certificates)")]
    NoClientCa(&'static str),
    #[error("{}: bad CA file: {detail}", path.display())]
    BadCa { path: PathBuf, detail: String },
    #[error("TLS setup failed: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A TLS listener's rustls configuration, replaced whole on reload: each
/// handshake uses the configuration current when it starts, and an
/// established connection keeps what it negotiated.
pub struct TlsServer {
    config: ArcSwap<ServerConfig>,
}

impl std::fmt::Debug for TlsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsServer").finish_non_exhaustive()
    }
}

impl TlsServer {
    /// Loads the certificate chain, key and client CAs of `config`.
    pub fn load(config: &TlsConfig) -> Result<TlsServer, TlsError> {
        Ok(TlsServer {
            config: ArcSwap::from_pointee(server_config(config)?),
        })
    }

    /// Loads `config` again (new files, or the same files changed) and uses
    /// it for new handshakes; on an error nothing changes.
    pub fn reload(&self, config: &TlsConfig) -> Result<(), TlsError> {
        self.config.store(Arc::new(server_config(config)?));
        Ok(())
    }

    /// Runs the TLS handshake on an accepted socket (the caller bounds its
    /// time). Returns the stream and the client's verified certificate, if
    /// it sent one.
    pub async fn accept<IO>(&self, io: IO) -> io::Result<(TlsStream<IO>, Option<ClientCertificate>)>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let acceptor = TlsAcceptor::from(self.config.load_full());
        let stream = acceptor.accept(io).await?;
        let certificate = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|leaf| ClientCertificate::from_der(leaf));
        Ok((stream, certificate))
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn server_config(config: &TlsConfig) -> Result<ServerConfig, TlsError> {
    let provider = provider();
    let key = certified_key(&config.cert, &config.key, &provider)?;
    let verifier = client_verifier(config, &provider)?;
    // No ALPN protocols: a client offering some (a browser's "h2" and
    // "http/1.1" for wss) gets no ALPN answer, which means HTTP/1.1.
    Ok(ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&version::TLS13, &version::TLS12])?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(key))))
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn pem_error(path: &Path, e: pem::Error) -> TlsError {
    TlsError::Pem {
        path: path.to_owned(),
        detail: e.to_string(),
    }
}

/// Every certificate in a PEM file, in order.
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))
}

fn certified_key(
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let chain = certificates(cert_path)?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert_path.to_owned(),
        });
    }
    let pem = read(key_path)?;
    let key = match PrivateKeyDer::from_pem_slice(&pem) {
        Ok(key) => key,
        Err(pem::Error::NoItemsFound) => {
            let encrypted = pem.windows(b"ENCRYPTED".len()).any(|w| w == b"ENCRYPTED");
            return Err(if encrypted {
                TlsError::EncryptedKey {
                    path: key_path.to_owned(),
                }
            } else {
                TlsError::NoKey {
                    path: key_path.to_owned(),
                }
            });
        }
        Err(e) => return Err(pem_error(key_path, e)),
    };
    let signing_key =
        provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| TlsError::UnsupportedKey {
                path: key_path.to_owned(),
                detail: e.to_string(),
            })?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(_)) => Err(TlsError::KeyMismatch {
            cert: cert_path.to_owned(),
            key: key_path.to_owned(),
        }),
        Err(e) => Err(TlsError::BadCertificate {
            path: cert_path.to_owned(),
            detail: e.to_string(),
        }),
    }
}

fn client_verifier(
    config: &TlsConfig,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let optional = match config.client_auth {
        ClientAuth::None => return Ok(WebPkiClientVerifier::no_client_auth()),
        ClientAuth::Optional => true,
        ClientAuth::Required => false,
    };
    let Some(path) = &config.client_ca else {
        return Err(TlsError::NoClientCa(if optional {
            "optional"
        } else {
            "required"
        }));
    };
    let roots = ca_roots(path)?;
    let bad = |detail: String| TlsError::BadCa {
        path: path.clone(),
        detail,
    };
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
    let builder = if optional {
        builder.allow_unauthenticated()
    } else {
        builder
    };
    builder.build().map_err(|e| bad(e.to_string()))
}

/// The CA certificates of a PEM file (`client_ca`, a plugin's
/// `http_ca_file`): at least one, each a usable trust anchor.
pub(crate) fn ca_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let bad = |detail: String| TlsError::BadCa {
        path: path.to_owned(),
        detail,
    };
    let mut roots = RootCertStore::empty();
    for (i, ca) in certificates(path)?.into_iter().enumerate() {
        roots
            .add(ca)
            .map_err(|e| bad(format!("certificate {}: {e}", i + 1)))?;
    }
    if roots.is_empty() {
        return Err(bad("no certificate in it".into()));
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    /// A temporary directory for PEM files, removed when dropped.
    struct Dir(PathBuf);

    impl Dir {
        fn new(name: &str) -> Dir {
            let path =
                std::env::temp_dir().join(format!("sluice-tls-unit-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).unwrap();
            Dir(path)
        }

        fn write(&self, name: &str, text: &str) -> PathBuf {
            let p = self.0.join(name);
            std::fs::write(&p, text).unwrap();
            p
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn self_signed(name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn tls(cert: PathBuf, key: PathBuf) -> TlsConfig {
        TlsConfig {
            cert,
            key,
            client_auth: ClientAuth::None,
            client_ca: None,
        }
    }

    fn load_err(config: &TlsConfig) -> String {
        match TlsServer::load(config) {
            Ok(_) => panic!("loaded a bad configuration"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn loads_a_certificate_and_key() {
        let dir = Dir::new("ok");
        let (cert, key) = self_signed("localhost");
        let config = tls(dir.write("c.pem", &cert), dir.write("k.pem", &key));
        let server = TlsServer::load(&config).unwrap();
        // Reloading swaps in a new configuration.
        let before = server.config.load_full();
        server.reload(&config).unwrap();
        assert!(!Arc::ptr_eq(&before, &server.config.load_full()));
    }

    #[test]
    fn errors_name_the_file_and_the_problem() {
        let dir = Dir::new("errors");
        let (cert, key) = self_signed("localhost");
        let (_, other_key) = self_signed("other");
        let c = dir.write("c.pem", &cert);
        let k = dir.write("k.pem", &key);

        let missing = dir.0.join("missing.pem");
        let e = load_err(&tls(missing.clone(), k.clone()));
        assert!(
            e.contains("cannot read") && e.contains("missing.pem"),
            "{e}"
        );

        let e = load_err(&tls(k.clone(), k.clone()));
        assert!(e.contains("k.pem: no certificate"), "{e}");

        let e = load_err(&tls(c.clone(), c.clone()));
        assert!(e.contains("c.pem: no private key"), "{e}");

        let enc = dir.write(
            "enc.pem",
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
        );
        let e = load_err(&tls(c.clone(), enc));
        assert!(e.contains("enc.pem: encrypted private keys"), "{e}");

        let garbage = dir.write(
            "garbage.pem",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        );
        let e = load_err(&tls(c.clone(), garbage));
        assert!(e.contains("garbage.pem: unsupported private key"), "{e}");

        let ok = dir.write("other.pem", &other_key);
        let e = load_err(&tls(c.clone(), ok));
        assert!(
            e.contains("other.pem: the private key does not match the certificate in")
                && e.contains("c.pem"),
            "{e}"
        );

        let mut config = tls(c.clone(), k.clone());
        config.client_auth = ClientAuth::Required;
        let e = load_err(&config);
        assert!(e.contains("needs client_ca"), "{e}");

        config.client_ca = Some(k.clone());
        let e = load_err(&config);
        assert!(e.contains("k.pem: bad CA file: no certificate"), "{e}");

        let bad_ca = dir.write(
            "bad-ca.pem",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        );
        config.client_ca = Some(bad_ca);
        let e = load_err(&config);
        assert!(e.contains("bad-ca.pem: bad CA file: certificate 1"), "{e}");

        config.client_ca = Some(c.clone());
        config.client_auth = ClientAuth::Optional;
        TlsServer::load(&config).unwrap();
    }
}
