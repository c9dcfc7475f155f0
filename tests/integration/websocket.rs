//! WebSocket listeners: MQTT over `ws` and `wss` (subprotocol `mqtt`) with
//! a tungstenite client speaking raw packets and with Paho for Python's
//! websockets transport; what the upgrade refuses; packets split across
//! messages and messages holding several packets.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt as _, StreamExt as _};
use sluice_broker::config::{ClientAuth, ListenerConfig, ListenerKind};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::real_clients::python;
use crate::support::packets::*;
use crate::support::raw::Frame;
use crate::support::{PluginDir, Raw, TestBroker, plugin_config, within};
use crate::tls::{
    Mqtt, Pki, broker_with, client_config, listener, recorded_connection, take_frame, tls_connect,
};

/// An MQTT client over WebSocket: each `send` is one binary message;
/// received messages are read as one byte stream.
struct Ws<S> {
    ws: WebSocketStream<S>,
    buf: BytesMut,
}

/// Runs the WebSocket upgrade on `stream` for `url`, offering `protocol`.
async fn upgrade<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    url: &str,
    protocol: Option<&str>,
) -> Result<Ws<S>, WsError> {
    let mut request = url.into_client_request().expect("request");
    if let Some(p) = protocol {
        request.headers_mut().insert(
            "sec-websocket-protocol",
            HeaderValue::from_str(p).expect("header"),
        );
    }
    let (ws, response) = within(
        "WebSocket upgrade",
        tokio_tungstenite::client_async(request, stream),
    )
    .await?;
    if let Some(p) = protocol {
        let chosen = response
            .headers()
            .get("sec-websocket-protocol")
            .expect("a subprotocol is chosen");
        assert!(
            p.contains(chosen.to_str().expect("text")),
            "chose {chosen:?} of {p}"
        );
    }
    Ok(Ws {
        ws,
        buf: BytesMut::new(),
    })
}

/// Connects to a `ws` listener at `path`.
async fn ws_connect(
    addr: SocketAddr,
    path: &str,
    protocol: Option<&str>,
) -> Result<Ws<TcpStream>, WsError> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    upgrade(
        tcp,
        &format!("ws://127.0.0.1:{}{path}", addr.port()),
        protocol,
    )
    .await
}

impl<S: AsyncRead + AsyncWrite + Unpin> Ws<S> {
    /// One binary message.
    async fn send(&mut self, bytes: &[u8]) {
        within(
            "send",
            self.ws.send(Message::Binary(Bytes::copy_from_slice(bytes))),
        )
        .await
        .expect("send a message");
    }

    /// The next packet, or `None` if the connection ends first.
    async fn next(&mut self) -> Option<Frame> {
        within("a packet or the end of the connection", async {
            loop {
                if let Some(f) = take_frame(&mut self.buf) {
                    return Some(f);
                }
                match self.ws.next().await {
                    Some(Ok(Message::Binary(b))) => self.buf.extend_from_slice(&b),
                    Some(Ok(Message::Text(t))) => panic!("text message from the broker: {t}"),
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                    Some(Ok(Message::Close(_)) | Err(_)) | None => return None,
                }
            }
        })
        .await
    }

    async fn recv(&mut self) -> Frame {
        self.next().await.expect("a packet from the broker")
    }

    async fn connect(&mut self, connect: &[u8]) {
        self.send(connect).await;
        let ack = self.recv().await;
        assert_eq!(ack.connack().1, 0, "CONNACK refused: {ack:?}");
    }
}

fn ws_listener(path: &str) -> ListenerConfig {
    ListenerConfig {
        path: path.to_owned(),
        ..listener(ListenerKind::Ws, None)
    }
}

#[tokio::test]
async fn publish_and_subscribe_over_websocket() {
    let broker = broker_with(ws_listener("/mqtt"), |_| {});
    let addr = broker.addrs[1];

    let mut sub = ws_connect(addr, "/mqtt", Some("mqtt"))
        .await
        .expect("upgrade");
    // CONNECT split across two messages.
    let connect = connect_v4("ws-sub", true, 60);
    sub.send(&connect[..5]).await;
    sub.send(&connect[5..]).await;
    assert_eq!(sub.recv().await.connack().1, 0);
    sub.send(&subscribe_v4(1, "ws/#", 1)).await;
    assert_eq!(sub.recv().await.ack_codes(false), vec![1]);

    // From a TCP client.
    let mut tcp = Raw::handshake(broker.addrs[0], &connect_v4("tcp", true, 60)).await;
    tcp.send(&publish_v4("ws/1", 1, 1, b"from tcp", false))
        .await;
    tcp.recv_kind(4).await;
    let got = sub.recv().await.publish_v4();
    assert_eq!(&got.payload[..], b"from tcp");
    // QoS 1 delivery: acknowledged over WebSocket.
    sub.send(&puback(got.pkid)).await;

    // From a WebSocket client sending several packets in one message
    // (CONNECT and a PUBLISH), in MQTT 5.
    let mut publisher = ws_connect(addr, "/mqtt", Some("mqtt"))
        .await
        .expect("upgrade");
    let mut both = connect_v5("ws-pub", true, 60, |_| {});
    both.extend(publish_v5("ws/2", 0, 0, b"two in one", None));
    publisher.send(&both).await;
    assert_eq!(publisher.recv().await.connack().1, 0);
    assert_eq!(&sub.recv().await.publish_v4().payload[..], b"two in one");

    // A large message, both ways (over several WebSocket messages from
    // the broker: it sends at most 64 KiB in one).
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    sub.send(&subscribe_v4(2, "big", 0)).await;
    sub.recv().await;
    publisher.send(&publish_v5("big", 0, 0, &big, None)).await;
    assert_eq!(&sub.recv().await.publish_v4().payload[..], &big[..]);

    // And to the TCP client.
    tcp.send(&subscribe_v4(1, "back", 0)).await;
    tcp.recv_kind(9).await;
    sub.send(&publish_v4("back", 0, 0, b"from ws", false)).await;
    assert_eq!(&tcp.recv_kind(3).await.publish_v4().payload[..], b"from ws");

    // A WebSocket ping is answered.
    within(
        "ping",
        sub.ws.send(Message::Ping(Bytes::from_static(b"hi"))),
    )
    .await
    .expect("ping");
    let pong = within("pong", async {
        loop {
            match sub.ws.next().await {
                Some(Ok(Message::Pong(p))) => return p,
                Some(Ok(_)) => {}
                other => panic!("connection ended: {other:?}"),
            }
        }
    })
    .await;
    assert_eq!(&pong[..], b"hi");

    // DISCONNECT, then a close: the broker ends the connection.
    sub.send(&[0xE0, 0]).await;
    assert!(sub.next().await.is_none());
}

#[tokio::test]
async fn upgrade_refuses_other_paths_and_clients_without_the_mqtt_subprotocol() {
    let broker = broker_with(ws_listener("/ws/mqtt"), |_| {});
    let addr = broker.addrs[1];

    match ws_connect(addr, "/mqtt", Some("mqtt")).await {
        Err(WsError::Http(response)) => assert_eq!(response.status(), 404),
        Err(e) => panic!("expected HTTP 404, got {e}"),
        Ok(_) => panic!("upgraded on the wrong path"),
    }
    match ws_connect(addr, "/ws/mqtt", None).await {
        Err(WsError::Http(response)) => assert_eq!(response.status(), 400),
        Err(e) => panic!("expected HTTP 400, got {e}"),
        Ok(_) => panic!("upgraded without the mqtt subprotocol"),
    }
    match ws_connect(addr, "/ws/mqtt", Some("chat")).await {
        Err(WsError::Http(response)) => assert_eq!(response.status(), 400),
        Err(e) => panic!("expected HTTP 400, got {e}"),
        Ok(_) => panic!("upgraded without the mqtt subprotocol"),
    }
    // Plain MQTT on a WebSocket port is not an HTTP request: closed.
    let mut raw = Raw::connect(addr).await;
    raw.send(&connect_v4("plain", true, 60)).await;
    assert!(raw.expect_closed().await.is_empty());

    // "mqttv3.1" (old clients) is accepted, and the listener still works.
    let mut c = ws_connect(addr, "/ws/mqtt", Some("mqttv3.1"))
        .await
        .expect("upgrade");
    c.connect(&connect_v31("old", true)).await;
    let mut c = ws_connect(addr, "/ws/mqtt?x=1", Some("mqtt"))
        .await
        .expect("upgrade");
    c.connect(&connect_v4("query", true, 60)).await;
}

#[tokio::test]
async fn a_text_message_ends_the_connection() {
    let broker = broker_with(ws_listener("/mqtt"), |_| {});
    let mut c = ws_connect(broker.addrs[1], "/mqtt", Some("mqtt"))
        .await
        .expect("upgrade");
    c.connect(&connect_v4("texter", true, 60)).await;
    within("send text", c.ws.send(Message::Text("hello".into())))
        .await
        .expect("send");
    assert!(c.next().await.is_none(), "connection still open");
}

#[tokio::test]
async fn wss_with_client_certificates_reaches_the_plugins() {
    let pki = Pki::new("ca");
    let plugins = PluginDir::new();
    plugins.add("policy", "policy");
    let broker = broker_with(
        listener(
            ListenerKind::Wss,
            Some(pki.listener_tls(ClientAuth::Optional)),
        ),
        |c| {
            plugins.configure(c);
            plugin_config(c, "policy", &[("deny_subject", "CN=banned,O=Acme")]);
        },
    );
    let addr = broker.addrs[1];
    let url = format!("wss://localhost:{}/mqtt", addr.port());

    let device = pki.client("browser");
    let config = client_config(&pki.ca_file, Some(&device), &[&rustls::version::TLS13]);
    let tls = tls_connect(addr, config).await.expect("TLS handshake");
    let mut sub = upgrade(tls, &url, Some("mqtt")).await.expect("upgrade");
    sub.connect(&connect_v4("wss-sub", true, 60)).await;
    assert!(
        recorded_connection(&broker, "wss-sub").starts_with(&format!(
            "kind=wss;port={};subject=CN=browser,O=Acme;sans=browser.example;sha256=",
            addr.port()
        )),
        "{}",
        recorded_connection(&broker, "wss-sub")
    );
    sub.send(&subscribe_v4(1, "wss/#", 0)).await;
    sub.recv().await;

    // Without a certificate, over TLS 1.2.
    let anonymous = client_config(&pki.ca_file, None, &[&rustls::version::TLS12]);
    let tls = tls_connect(addr, anonymous).await.expect("TLS handshake");
    let mut publisher = upgrade(tls, &url, Some("mqtt")).await.expect("upgrade");
    publisher.connect(&connect_v4("wss-pub", true, 60)).await;
    publisher
        .send(&publish_v4("wss/1", 0, 0, b"secure", false))
        .await;
    assert_eq!(&sub.recv().await.publish_v4().payload[..], b"secure");

    // A refused subject.
    let banned = pki.client("banned");
    let config = client_config(&pki.ca_file, Some(&banned), &[&rustls::version::TLS13]);
    let tls = tls_connect(addr, config).await.expect("TLS handshake");
    let mut c = upgrade(tls, &url, Some("mqtt")).await.expect("upgrade");
    c.send(&connect_v4("banned", true, 60)).await;
    let ack = c.recv().await;
    assert_ne!(ack.connack().1, 0, "banned subject accepted");

    // A WebSocket upgrade without TLS on a wss listener fails.
    assert!(ws_connect(addr, "/mqtt", Some("mqtt")).await.is_err());
    // TLS without the upgrade: MQTT straight over TLS is not served.
    let anonymous = client_config(&pki.ca_file, None, &[&rustls::version::TLS13]);
    let tls = tls_connect(addr, anonymous).await.expect("TLS handshake");
    let mut c = Mqtt::new(tls);
    assert_eq!(c.try_connect(&connect_v4("no-ws", true, 60)).await, None);
}

/// Subscribes and publishes with Paho's websockets transport (over TLS
/// when `ca` is given); prints the message received.
const PAHO_WS: &str = r#"
import sys, threading
import paho.mqtt.client as mqtt

port, path = int(sys.argv[1]), sys.argv[2]
ca = sys.argv[3] if len(sys.argv) > 3 else None

def client(name):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name, transport="websockets")
    c.ws_set_options(path=path)
    if ca:
        c.tls_set(ca_certs=ca)
    return c

got, subscribed = threading.Event(), threading.Event()
messages = []
def on_message(c, userdata, m):
    messages.append(m.payload.decode())
    got.set()

sub = client("paho-ws-sub")
sub.on_message = on_message
sub.on_subscribe = lambda *a: subscribed.set()
sub.on_connect = lambda c, *a: c.subscribe("paho/#", qos=1)
sub.connect("localhost", port)
sub.loop_start()
assert subscribed.wait(10), "not subscribed"

pub = client("paho-ws-pub")
pub.connect("localhost", port)
pub.loop_start()
pub.publish("paho/1", "hello paho", qos=1).wait_for_publish(10)
assert got.wait(10), "no message"
print(messages[0])
pub.disconnect()
sub.disconnect()
pub.loop_stop()
sub.loop_stop()
"#;

async fn paho(port: u16, path: &str, ca: Option<&std::path::Path>) -> String {
    let mut cmd = tokio::process::Command::new(python());
    cmd.args(["-c", PAHO_WS, &port.to_string(), path]);
    if let Some(ca) = ca {
        cmd.arg(ca);
    }
    let out = cmd.stdin(Stdio::null()).kill_on_drop(true).output();
    let out = tokio::time::timeout(Duration::from_secs(40), out)
        .await
        .expect("paho finished")
        .expect("paho ran");
    assert!(
        out.status.success(),
        "paho: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test]
async fn paho_python_over_ws_and_wss() {
    let pki = Pki::new("ca");
    let broker = TestBroker::with(|c| {
        c.listener.push(ws_listener("/mqtt"));
        c.listener.push(listener(
            ListenerKind::Wss,
            Some(pki.listener_tls(ClientAuth::None)),
        ));
    });
    assert_eq!(
        paho(broker.addrs[1].port(), "/mqtt", None).await,
        "hello paho"
    );
    assert_eq!(
        paho(broker.addrs[2].port(), "/mqtt", Some(&pki.ca_file)).await,
        "hello paho"
    );
}
