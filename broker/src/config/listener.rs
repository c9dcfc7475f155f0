//! `[[listener]]`: the broker's listeners beyond `server.bind`, each with a
//! kind (plain TCP, TLS, WebSocket, WebSocket over TLS) and its own limits.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// How clients reach a listener.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ListenerKind {
    /// MQTT over TCP.
    #[default]
    Tcp,
    /// MQTT over TLS (rustls).
    Tls,
    /// MQTT over WebSocket (subprotocol `mqtt`).
    Ws,
    /// MQTT over WebSocket over TLS.
    Wss,
}

impl ListenerKind {
    /// Whether the listener terminates TLS.
    pub fn is_tls(self) -> bool {
        matches!(self, ListenerKind::Tls | ListenerKind::Wss)
    }

    /// Whether the listener speaks WebSocket.
    pub fn is_websocket(self) -> bool {
        matches!(self, ListenerKind::Ws | ListenerKind::Wss)
    }

    /// The name used in the configuration and in logs.
    pub fn name(self) -> &'static str {
        match self {
            ListenerKind::Tcp => "tcp",
            ListenerKind::Tls => "tls",
            ListenerKind::Ws => "ws",
            ListenerKind::Wss => "wss",
        }
    }
}

/// An MQTT protocol version a listener accepts, by its CONNECT protocol
/// level: 3 (MQTT 3.1), 4 (MQTT 3.1.1) or 5 (MQTT 5.0).
pub type ProtocolLevel = u8;

/// `[[listener]]`: one listener.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// `kind`: `"tcp"`, `"tls"`, `"ws"` or `"wss"`. Default `"tcp"`.
    #[serde(default)]
    pub kind: ListenerKind,
    /// `bind`: address and port to listen on. Required.
    pub bind: SocketAddr,
    /// `mountpoint`: the topic tree of this listener's clients (an
    /// authentication plugin may still move a client to another). Default
    /// `""` (the shared tree).
    #[serde(default)]
    pub mountpoint: String,
    /// `max_connections`: connections open at once on this listener; more
    /// are refused (closed before CONNECT is read). 0 = no limit.
    /// Default 0.
    #[serde(default)]
    pub max_connections: u32,
    /// `max_connection_rate`: new connections per second accepted on this
    /// listener (a token bucket holding one second's worth); connections
    /// beyond it are closed at once. 0 = no limit. Default 0.
    #[serde(default)]
    pub max_connection_rate: u32,
    /// `protocol_versions`: CONNECT protocol levels accepted: 3 (MQTT
    /// 3.1), 4 (MQTT 3.1.1), 5 (MQTT 5.0). Others get CONNACK
    /// "unacceptable protocol version". Default `[3, 4, 5]`.
    #[serde(default = "all_versions")]
    pub protocol_versions: Vec<ProtocolLevel>,
    /// `max_packet_size`: largest packet accepted on this listener, in
    /// bytes. Default `mqtt.max_packet_size`.
    #[serde(default)]
    pub max_packet_size: Option<u32>,
    /// `path`: the HTTP path of a `ws`/`wss` listener. Default `"/mqtt"`.
    #[serde(default = "default_ws_path")]
    pub path: String,
    /// `[listener.tls]`: certificate and client authentication of a
    /// `tls`/`wss` listener. Required for those kinds.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

/// Whether a TLS listener asks clients for a certificate.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// No client certificate is requested.
    #[default]
    None,
    /// A certificate is requested; a client without one may connect, one
    /// with a certificate that does not verify against `client_ca` may not.
    Optional,
    /// A certificate verifying against `client_ca` is required.
    Required,
}

/// `[listener.tls]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// `cert`: PEM file with the server certificate chain, leaf first.
    /// Required.
    pub cert: PathBuf,
    /// `key`: PEM file with the certificate's private key (PKCS#8, PKCS#1
    /// or SEC1). Required.
    pub key: PathBuf,
    /// `client_auth`: `"none"`, `"optional"` or `"required"`. Default
    /// `"none"`.
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// `client_ca`: PEM file with the CA certificates client certificates
    /// must chain to. Required unless `client_auth = "none"`.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
}

fn all_versions() -> Vec<ProtocolLevel> {
    vec![3, 4, 5]
}

fn default_ws_path() -> String {
    "/mqtt".to_owned()
}

impl ListenerConfig {
    /// A plain TCP listener on `bind` with the defaults (what each
    /// `server.bind` address is).
    pub fn tcp(bind: SocketAddr) -> Self {
        ListenerConfig {
            kind: ListenerKind::Tcp,
            bind,
            mountpoint: String::new(),
            max_connections: 0,
            max_connection_rate: 0,
            protocol_versions: all_versions(),
            max_packet_size: None,
            path: default_ws_path(),
            tls: None,
        }
    }

    /// What is wrong with this listener, as (key below the listener,
    /// problem).
    pub(super) fn problem(&self) -> Option<(&'static str, String)> {
        if self.protocol_versions.is_empty() {
            return Some((
                "protocol_versions",
                "must list at least one of 3, 4, 5".into(),
            ));
        }
        if let Some(v) = self
            .protocol_versions
            .iter()
            .find(|v| !(3..=5).contains(*v))
        {
            return Some((
                "protocol_versions",
                format!("{v} is not an MQTT protocol level (3 = MQTT 3.1, 4 = 3.1.1, 5 = 5.0)"),
            ));
        }
        if let Some(size) = self.max_packet_size {
            if !(64..=super::MQTT_MAX_PACKET_SIZE).contains(&size) {
                return Some((
                    "max_packet_size",
                    format!("must be between 64 and {}", super::MQTT_MAX_PACKET_SIZE),
                ));
            }
        }
        if self.mountpoint.contains(['+', '#', '\0']) {
            return Some(("mountpoint", "must not contain '+', '#' or NUL".into()));
        }
        if self.kind.is_websocket() && !self.path.starts_with('/') {
            return Some(("path", "must start with '/'".into()));
        }
        match (&self.tls, self.kind.is_tls()) {
            (None, true) => {
                return Some((
                    "tls",
                    format!(
                        "a {} listener needs a [listener.tls] section with cert and key",
                        self.kind.name()
                    ),
                ));
            }
            (Some(_), false) => {
                return Some((
                    "tls",
                    format!(
                        "a {} listener does not use TLS; use kind = \"tls\" or \"wss\"",
                        self.kind.name()
                    ),
                ));
            }
            (Some(tls), true) if tls.client_auth != ClientAuth::None && tls.client_ca.is_none() => {
                return Some((
                    "tls.client_ca",
                    "is required when client_auth is \"optional\" or \"required\"".into(),
                ));
            }
            _ => {}
        }
        None
    }

    /// The packet size limit on this listener.
    pub fn packet_size_limit(&self, mqtt_max_packet_size: u32) -> u32 {
        self.max_packet_size.unwrap_or(mqtt_max_packet_size)
    }

    /// Whether CONNECT protocol level `level` is accepted here.
    pub fn accepts(&self, level: ProtocolLevel) -> bool {
        self.protocol_versions.contains(&level)
    }
}
