//! TLS listeners: handshakes with certificates made here (rcgen),
//! publish/subscribe over TLS, what is refused (plain TCP, TLS 1.1, clients
//! without an acceptable certificate), client certificates reaching the
//! plugins, and certificates reloaded without dropping connections.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, SupportedProtocolVersion};
use sluice_broker::config::{ClientAuth, ListenerConfig, ListenerKind, TlsConfig};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::support::packets::*;
use crate::support::raw::Frame;
use crate::support::{PATIENCE, PluginDir, Raw, TestBroker, plugin_config, within};

// ---- Certificates -----------------------------------------------------

/// A test CA and the certificates it signs, as PEM files in a temporary
/// directory (removed when dropped).
pub struct Pki {
    pub dir: PathBuf,
    ca: CertifiedIssuer<'static, KeyPair>,
    /// The CA certificate's PEM file.
    pub ca_file: PathBuf,
}

/// A certificate and key as PEM files, and the certificate's DER.
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub der: Vec<u8>,
}

fn distinguished_name(pairs: &[(DnType, &str)]) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    for (t, v) in pairs {
        dn.push(t.clone(), *v);
    }
    dn
}

impl Pki {
    /// A new CA named `name` in a new temporary directory.
    pub fn new(name: &str) -> Pki {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("sluice-pki-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create PKI dir");
        let mut params = CertificateParams::new(Vec::new()).expect("CA params");
        params.distinguished_name = distinguished_name(&[
            (DnType::OrganizationName, "Sluice tests"),
            (DnType::CommonName, name),
        ]);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key"))
            .expect("CA certificate");
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).expect("write CA");
        Pki { dir, ca, ca_file }
    }

    fn issue(&self, stem: &str, params: CertificateParams) -> Issued {
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.ca).expect("sign");
        let issued = Issued {
            cert: self.dir.join(format!("{stem}.pem")),
            key: self.dir.join(format!("{stem}.key")),
            der: cert.der().to_vec(),
        };
        std::fs::write(&issued.cert, cert.pem()).expect("write certificate");
        std::fs::write(&issued.key, key.serialize_pem()).expect("write key");
        issued
    }

    /// A server certificate for localhost and 127.0.0.1.
    pub fn server(&self, stem: &str) -> Issued {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("server params");
        params.distinguished_name = distinguished_name(&[(DnType::CommonName, "localhost")]);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(stem, params)
    }

    /// A client certificate with subject "CN=`cn`,O=Acme" and the DNS SAN
    /// "`cn`.example".
    pub fn client(&self, cn: &str) -> Issued {
        let mut params =
            CertificateParams::new(vec![format!("{cn}.example")]).expect("client params");
        params.distinguished_name =
            distinguished_name(&[(DnType::OrganizationName, "Acme"), (DnType::CommonName, cn)]);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(&format!("client-{cn}"), params)
    }

    /// `[listener.tls]` with a new server certificate.
    pub fn listener_tls(&self, client_auth: ClientAuth) -> TlsConfig {
        let server = self.server("server");
        TlsConfig {
            cert: server.cert,
            key: server.key,
            client_auth,
            client_ca: (client_auth != ClientAuth::None).then(|| self.ca_file.clone()),
        }
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A listener of `kind` on an ephemeral port with `tls`.
pub fn listener(kind: ListenerKind, tls: Option<TlsConfig>) -> ListenerConfig {
    ListenerConfig {
        kind,
        tls,
        ..ListenerConfig::tcp("127.0.0.1:0".parse().expect("address"))
    }
}

/// A broker with a plain TCP listener (`addrs[0]`) and `extra`
/// (`addrs[1]`), changed by `tweak`.
pub fn broker_with(
    extra: ListenerConfig,
    tweak: impl FnOnce(&mut sluice_broker::Config),
) -> TestBroker {
    TestBroker::with(|c| {
        c.listener.push(extra);
        tweak(c);
    })
}

// ---- TLS clients ------------------------------------------------------

/// A rustls client configuration trusting `ca` (a PEM file), with a
/// client certificate if `identity` is given.
pub fn client_config(
    ca: &Path,
    identity: Option<&Issued>,
    versions: &[&'static SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("read CA") {
        roots.add(cert.expect("CA PEM")).expect("CA certificate");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("versions")
        .with_root_certificates(roots);
    let config = match identity {
        Some(id) => {
            let chain = CertificateDer::pem_file_iter(&id.cert)
                .expect("read certificate")
                .collect::<Result<Vec<_>, _>>()
                .expect("certificate PEM");
            let key = PrivateKeyDer::from_pem_file(&id.key).expect("key PEM");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client certificate")
        }
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

const ALL_VERSIONS: &[&SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// Connects over TLS (server name "localhost"). The handshake may succeed
/// on the client's side and still be refused by the broker after it (TLS
/// 1.3 client certificates are checked after the client finished).
pub async fn tls_connect(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from("localhost").expect("server name");
    within(
        "TLS handshake",
        TlsConnector::from(config).connect(name, tcp),
    )
    .await
}

/// Splits the first whole MQTT packet off `buf`.
pub fn take_frame(buf: &mut BytesMut) -> Option<Frame> {
    let mut len = 0usize;
    let mut i = 1;
    loop {
        let byte = *buf.get(i)?;
        len |= usize::from(byte & 0x7F) << (7 * (i - 1));
        i += 1;
        if byte & 0x80 == 0 {
            break;
        }
        assert!(i <= 4, "bad remaining length");
    }
    if buf.len() < i + len {
        return None;
    }
    let byte1 = buf[0];
    buf.advance(i);
    let body = buf.split_to(len).freeze();
    Some(Frame { byte1, body })
}

/// An MQTT client speaking raw packets over any stream (TLS here).
pub struct Mqtt<S> {
    pub stream: S,
    buf: BytesMut,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Mqtt<S> {
    pub fn new(stream: S) -> Self {
        Mqtt {
            stream,
            buf: BytesMut::new(),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        within("send", async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        })
        .await
        .expect("write to broker");
    }

    /// The next packet, or `None` if the connection ends (or fails) first.
    pub async fn next(&mut self) -> Option<Frame> {
        within("a packet or the end of the connection", async {
            loop {
                if let Some(f) = take_frame(&mut self.buf) {
                    return Some(f);
                }
                match self.stream.read_buf(&mut self.buf).await {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                }
            }
        })
        .await
    }

    pub async fn recv(&mut self) -> Frame {
        self.next().await.expect("a packet from the broker")
    }

    /// Sends CONNECT and expects CONNACK 0.
    pub async fn connect(&mut self, connect: &[u8]) {
        self.send(connect).await;
        let ack = self.recv().await;
        assert_eq!(ack.connack().1, 0, "CONNACK refused: {ack:?}");
    }

    /// Sends CONNECT (if the connection still takes it) and returns the
    /// CONNACK's code, or `None` if the connection ended without one.
    pub async fn try_connect(&mut self, connect: &[u8]) -> Option<u8> {
        let _ = tokio::time::timeout(PATIENCE, async {
            self.stream.write_all(connect).await?;
            self.stream.flush().await
        })
        .await;
        self.next().await.map(|f| f.connack().1)
    }
}

/// Publish and subscribe through `sub` and `publisher` (both connected):
/// a QoS 1 message on `topic` reaches the subscriber.
pub async fn round_trip<A, B>(sub: &mut Mqtt<A>, publisher: &mut Mqtt<B>, topic: &str)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    sub.send(&subscribe_v4(1, topic, 1)).await;
    let ack = sub.recv().await;
    assert_eq!(ack.ack_codes(false), vec![1], "{ack:?}");
    let payload = format!("over {topic}");
    publisher
        .send(&publish_v4(topic, 1, 7, payload.as_bytes(), false))
        .await;
    assert_eq!(publisher.recv().await.kind(), 4, "PUBACK");
    let got = sub.recv().await.publish_v4();
    assert_eq!(got.topic, topic);
    assert_eq!(&got.payload[..], payload.as_bytes());
}

async fn tls_client(
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
    id: &str,
) -> Mqtt<TlsStream<TcpStream>> {
    let stream = tls_connect(addr, config.clone())
        .await
        .expect("TLS handshake");
    let mut c = Mqtt::new(stream);
    c.connect(&connect_v4(id, true, 60)).await;
    c
}

// ---- Tests ------------------------------------------------------------

#[tokio::test]
async fn publish_and_subscribe_over_tls_1_3_and_1_2() {
    let pki = Pki::new("ca");
    let broker = broker_with(
        listener(ListenerKind::Tls, Some(pki.listener_tls(ClientAuth::None))),
        |_| {},
    );
    let addr = broker.addrs[1];

    let tls13 = client_config(&pki.ca_file, None, &[&rustls::version::TLS13]);
    let tls12 = client_config(&pki.ca_file, None, &[&rustls::version::TLS12]);
    let mut sub = tls_client(addr, &tls13, "sub").await;
    assert_eq!(
        sub.stream.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    let mut publisher = tls_client(addr, &tls12, "pub").await;
    assert_eq!(
        publisher.stream.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    round_trip(&mut sub, &mut publisher, "tls/a").await;

    // Between TLS and plain TCP clients too, both ways.
    let mut tcp = Raw::handshake(broker.addrs[0], &connect_v4("tcp", true, 60)).await;
    tcp.send(&subscribe_v4(1, "tcp/#", 0)).await;
    tcp.recv_kind(9).await;
    publisher
        .send(&publish_v4("tcp/x", 0, 0, b"from tls", false))
        .await;
    assert_eq!(
        &tcp.recv_kind(3).await.publish_v4().payload[..],
        b"from tls"
    );
    tcp.send(&publish_v4("tls/a", 0, 0, b"from tcp", false))
        .await;
    assert_eq!(&sub.recv().await.publish_v4().payload[..], b"from tcp");

    // A large message crosses several TLS records, both ways.
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    publisher
        .send(&publish_v4("tls/a", 1, 9, &big, false))
        .await;
    assert_eq!(publisher.recv().await.kind(), 4);
    assert_eq!(&sub.recv().await.publish_v4().payload[..], &big[..]);
}

/// A TLS 1.1 ClientHello (no `supported_versions` extension), by hand:
/// rustls cannot send one.
fn tls11_client_hello() -> Vec<u8> {
    let mut body = vec![0x03, 0x02];
    body.extend_from_slice(&[0x42; 32]); // random
    body.push(0); // no session id
    // Suites rustls has for TLS 1.2 (ECDHE with AES-GCM).
    body.extend_from_slice(&[0x00, 0x04, 0xc0, 0x2b, 0xc0, 0x2f]);
    body.extend_from_slice(&[0x01, 0x00]); // null compression
    let mut handshake = vec![0x01, 0, 0, body.len() as u8];
    handshake.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01, 0, handshake.len() as u8];
    record.extend_from_slice(&handshake);
    record
}

/// Reads until the broker closes; returns what came.
async fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let read = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut got)).await;
    assert!(read.is_ok(), "the broker kept the connection open");
    got
}

#[tokio::test]
async fn plain_mqtt_and_old_tls_are_refused_and_the_listener_keeps_serving() {
    let pki = Pki::new("ca");
    let broker = broker_with(
        listener(ListenerKind::Tls, Some(pki.listener_tls(ClientAuth::None))),
        |_| {},
    );
    let addr = broker.addrs[1];

    // MQTT without TLS: not a TLS record; closed without a CONNACK.
    let mut plain = TcpStream::connect(addr).await.expect("connect");
    plain
        .write_all(&connect_v4("plain", true, 60))
        .await
        .expect("write");
    let got = read_to_close(&mut plain).await;
    assert!(
        !got.starts_with(&[0x20]),
        "plain MQTT got a CONNACK: {got:?}"
    );

    // TLS 1.1: an alert (or just the close), no handshake.
    let mut old = TcpStream::connect(addr).await.expect("connect");
    old.write_all(&tls11_client_hello()).await.expect("write");
    let got = read_to_close(&mut old).await;
    if !got.is_empty() {
        assert_eq!(got[0], 0x15, "expected a TLS alert, got {got:?}");
    }

    // The listener still serves TLS clients, and TCP clients theirs.
    let config = client_config(&pki.ca_file, None, ALL_VERSIONS);
    let mut a = tls_client(addr, &config, "a").await;
    let mut b = tls_client(addr, &config, "b").await;
    round_trip(&mut a, &mut b, "still/here").await;
    Raw::handshake(broker.addrs[0], &connect_v4("tcp", true, 60)).await;
}

#[tokio::test]
async fn required_client_certificates_refuse_clients_without_a_valid_one() {
    let pki = Pki::new("ca");
    let other = Pki::new("other-ca");
    let broker = broker_with(
        listener(
            ListenerKind::Tls,
            Some(pki.listener_tls(ClientAuth::Required)),
        ),
        |_| {},
    );
    let addr = broker.addrs[1];

    // No certificate.
    let anonymous = client_config(&pki.ca_file, None, ALL_VERSIONS);
    for config in [
        anonymous,
        client_config(&pki.ca_file, None, &[&rustls::version::TLS12]),
    ] {
        if let Ok(stream) = tls_connect(addr, config).await {
            let mut c = Mqtt::new(stream);
            assert_eq!(c.try_connect(&connect_v4("anon", true, 60)).await, None);
        }
    }

    // A certificate from another CA.
    let stranger = other.client("stranger");
    let config = client_config(&pki.ca_file, Some(&stranger), ALL_VERSIONS);
    if let Ok(stream) = tls_connect(addr, config).await {
        let mut c = Mqtt::new(stream);
        assert_eq!(c.try_connect(&connect_v4("stranger", true, 60)).await, None);
    }

    // A certificate from the CA: served.
    let device = pki.client("device-1");
    let config = client_config(&pki.ca_file, Some(&device), ALL_VERSIONS);
    let mut a = tls_client(addr, &config, "a").await;
    let mut b = tls_client(addr, &config, "b").await;
    round_trip(&mut a, &mut b, "certified").await;
}

#[tokio::test]
async fn optional_client_certificates_admit_clients_without_one() {
    let pki = Pki::new("ca");
    let other = Pki::new("other-ca");
    let broker = broker_with(
        listener(
            ListenerKind::Tls,
            Some(pki.listener_tls(ClientAuth::Optional)),
        ),
        |_| {},
    );
    let addr = broker.addrs[1];

    let anonymous = client_config(&pki.ca_file, None, ALL_VERSIONS);
    tls_client(addr, &anonymous, "anon").await;
    let device = pki.client("device-1");
    let with_cert = client_config(&pki.ca_file, Some(&device), ALL_VERSIONS);
    tls_client(addr, &with_cert, "device").await;

    // A certificate that does not verify is refused even so.
    let stranger = other.client("stranger");
    let config = client_config(&pki.ca_file, Some(&stranger), ALL_VERSIONS);
    if let Ok(stream) = tls_connect(addr, config).await {
        let mut c = Mqtt::new(stream);
        assert_eq!(c.try_connect(&connect_v4("stranger", true, 60)).await, None);
    }
}

/// What the `policy` fixture recorded about client `id`'s connection.
pub fn recorded_connection(broker: &TestBroker, id: &str) -> String {
    let raw = broker
        .ctx
        .plugins
        .kv_get("policy", &format!("conn:{id}"))
        .unwrap_or_default();
    String::from_utf8_lossy(&raw).into_owned()
}

fn sha256_hex(der: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn plugins_see_the_client_certificate_and_can_refuse_its_subject() {
    let pki = Pki::new("ca");
    let plugins = PluginDir::new();
    plugins.add("policy", "policy");
    let broker = broker_with(
        listener(
            ListenerKind::Tls,
            Some(pki.listener_tls(ClientAuth::Optional)),
        ),
        |c| {
            plugins.configure(c);
            plugin_config(c, "policy", &[("deny_subject", "CN=banned,O=Acme")]);
        },
    );
    let addr = broker.addrs[1];

    let device = pki.client("device-17");
    let config = client_config(&pki.ca_file, Some(&device), ALL_VERSIONS);
    tls_client(addr, &config, "dev17").await;
    assert_eq!(
        recorded_connection(&broker, "dev17"),
        format!(
            "kind=tls;port={};subject=CN=device-17,O=Acme;sans=device-17.example;sha256={}",
            addr.port(),
            sha256_hex(&device.der)
        )
    );

    // MQTT 5 (auth-on-register-m5) sees it too.
    let stream = tls_connect(addr, config.clone())
        .await
        .expect("TLS handshake");
    let mut v5 = Mqtt::new(stream);
    v5.send(&connect_v5("dev17-m5", true, 60, |_| {})).await;
    assert_eq!(v5.recv().await.connack().1, 0);
    assert!(
        recorded_connection(&broker, "dev17-m5").contains(";subject=CN=device-17,O=Acme;"),
        "{}",
        recorded_connection(&broker, "dev17-m5")
    );

    // Without a certificate: no subject.
    let anonymous = client_config(&pki.ca_file, None, ALL_VERSIONS);
    tls_client(addr, &anonymous, "anon").await;
    assert_eq!(
        recorded_connection(&broker, "anon"),
        format!("kind=tls;port={};subject=;sans=;sha256=", addr.port())
    );

    // The plugin refuses the banned subject.
    let banned = pki.client("banned");
    let config = client_config(&pki.ca_file, Some(&banned), ALL_VERSIONS);
    let stream = tls_connect(addr, config).await.expect("TLS handshake");
    let mut c = Mqtt::new(stream);
    let code = c.try_connect(&connect_v4("banned", true, 60)).await;
    assert!(
        matches!(code, Some(c) if c != 0),
        "banned subject got {code:?}"
    );
}

#[tokio::test]
async fn reloaded_certificates_serve_new_handshakes_and_keep_connections() {
    let first = Pki::new("first-ca");
    let second = Pki::new("second-ca");
    let broker = broker_with(
        listener(
            ListenerKind::Tls,
            Some(first.listener_tls(ClientAuth::None)),
        ),
        |_| {},
    );
    let addr = broker.addrs[1];
    let trusts_first = client_config(&first.ca_file, None, ALL_VERSIONS);
    let trusts_second = client_config(&second.ca_file, None, ALL_VERSIONS);
    let mut old = tls_client(addr, &trusts_first, "old").await;
    old.send(&subscribe_v4(1, "r/#", 1)).await;
    old.recv().await;

    // New files (as a SIGHUP would find them).
    let mut config = broker.ctx.config.clone();
    config.listener[0].tls = Some(second.listener_tls(ClientAuth::None));
    broker.ctx.reload(&config).await;

    // New handshakes get the new certificate.
    let refused = tls_connect(addr, trusts_first.clone()).await;
    assert!(refused.is_err(), "the old certificate is still served");
    let mut new = tls_client(addr, &trusts_second, "new").await;
    // The connection made before the reload is still up.
    new.send(&publish_v4("r/1", 1, 3, b"after reload", false))
        .await;
    assert_eq!(new.recv().await.kind(), 4);
    assert_eq!(&old.recv().await.publish_v4().payload[..], b"after reload");

    // Files that do not load leave the certificates as they were.
    let mut broken = config.clone();
    if let Some(tls) = &mut broken.listener[0].tls {
        tls.key = second.dir.join("missing.key");
    }
    broker.ctx.reload(&broken).await;
    tls_client(addr, &trusts_second, "still").await;
}

#[tokio::test]
async fn mosquitto_clients_with_client_certificates() {
    let pki = Pki::new("ca");
    let broker = broker_with(
        listener(
            ListenerKind::Tls,
            Some(pki.listener_tls(ClientAuth::Required)),
        ),
        |_| {},
    );
    let port = broker.addrs[1].port().to_string();
    let sub_cert = pki.client("subscriber");
    let pub_cert = pki.client("publisher");
    let tls_args = |id: &Issued| {
        vec![
            "-h".to_owned(),
            "localhost".to_owned(),
            "-p".to_owned(),
            port.clone(),
            "--cafile".to_owned(),
            pki.ca_file.display().to_string(),
            "--cert".to_owned(),
            id.cert.display().to_string(),
            "--key".to_owned(),
            id.key.display().to_string(),
        ]
    };
    let found = std::process::Command::new("sh")
        .args(["-c", "command -v mosquitto_sub && command -v mosquitto_pub"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "mosquitto-clients are not installed: run the suite with `cargo xtask test`"
    );

    let sub = tokio::process::Command::new("mosquitto_sub")
        .args(tls_args(&sub_cert))
        .args(["-t", "m/#", "-q", "1", "-C", "1", "-W", "20", "-i", "msub"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start mosquitto_sub");
    let id = sluice_broker::session::SubscriberId {
        mountpoint: "".into(),
        client_id: sluice_broker::topic::ClientId::new("msub").expect("id"),
    };
    crate::support::eventually("mosquitto_sub subscribed", || {
        broker
            .ctx
            .registry
            .get(&id)
            .is_some_and(|s| !s.lock().subscriptions.is_empty())
    })
    .await;
    let publish = tokio::process::Command::new("mosquitto_pub")
        .args(tls_args(&pub_cert))
        .args(["-t", "m/1", "-q", "1", "-m", "hello over tls"])
        .stdin(Stdio::null())
        .output();
    let out = tokio::time::timeout(Duration::from_secs(30), publish)
        .await
        .expect("mosquitto_pub finished")
        .expect("mosquitto_pub ran");
    assert!(
        out.status.success(),
        "mosquitto_pub: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let received = crate::real_clients::finish(sub).await;
    assert_eq!(received.trim(), "hello over tls");

    // Without a client certificate, mosquitto_pub is refused.
    let out = tokio::process::Command::new("mosquitto_pub")
        .args(["-h", "localhost", "-p", &port, "--cafile"])
        .arg(&pki.ca_file)
        .args(["-t", "m/1", "-m", "no cert"])
        .stdin(Stdio::null())
        .output();
    let out = tokio::time::timeout(Duration::from_secs(30), out)
        .await
        .expect("mosquitto_pub finished")
        .expect("mosquitto_pub ran");
    assert!(
        !out.status.success(),
        "a client without a certificate was served"
    );
}
