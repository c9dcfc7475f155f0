//! The broker's own sections: `[server]`, `[mqtt]`, `[session]`, `[log]`,
//! `[admin]` and `[persistence]`, with their defaults.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[server]`: listeners and access.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// `bind`: plain TCP listener addresses, with default settings (use
    /// `[[listener]]` for other kinds and per-listener settings); may be
    /// empty when there are `[[listener]]` sections.
    /// Default `["127.0.0.1:1883"]`.
    pub bind: Vec<SocketAddr>,
    /// `allow_anonymous`: with no authentication plugin loaded, whether
    /// clients may connect at all. Ignored (with a warning) when an
    /// authentication plugin is loaded: then the plugin chain decides.
    /// Default `false`.
    pub allow_anonymous: bool,
    /// `connect_timeout_secs`: how long a new connection may take to send
    /// CONNECT before it is closed. Default 10.
    pub connect_timeout_secs: u32,
    /// `sys_interval_secs`: period of the `$SYS/broker/...` statistics;
    /// 0 disables them. Default 10.
    pub sys_interval_secs: u32,
    /// `shutdown_timeout_secs`: how long a graceful shutdown waits for
    /// connections to flush and close. Default 5.
    pub shutdown_timeout_secs: u32,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            bind: vec![SocketAddr::from(([127, 0, 0, 1], 1883))],
            allow_anonymous: false,
            connect_timeout_secs: 10,
            sys_interval_secs: 10,
            shutdown_timeout_secs: 5,
        }
    }
}

/// `[mqtt]`: protocol limits.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// `max_packet_size`: largest packet accepted from a client, in bytes,
    /// fixed header included (MQTT 5 clients are told in CONNACK).
    /// Default 1048576 (1 MiB); at most 268435460.
    pub max_packet_size: u32,
    /// `max_keepalive`: largest keep alive a client may use, in seconds.
    /// MQTT 5 clients asking for more (or 0) are given this value in CONNACK
    /// (Server Keep Alive); MQTT 3.x clients asking for more (or 0) are
    /// refused with "identifier rejected", as mosquitto does. 0 = no cap.
    /// Default 0.
    pub max_keepalive: u16,
    /// `receive_maximum`: how many QoS 1/2 messages a client may have
    /// unacknowledged towards the broker (MQTT 5 Receive Maximum). 1..=65535.
    /// Default 32.
    pub receive_maximum: u16,
    /// `max_inflight`: how many QoS 1/2 messages the broker sends a client
    /// before waiting for acknowledgements (also capped by the client's own
    /// Receive Maximum). 1..=65535. Default 32.
    pub max_inflight: u16,
    /// `topic_alias_maximum`: topic aliases a client may use towards the
    /// broker (MQTT 5). 0 disables inbound aliases. Default 16.
    pub topic_alias_maximum: u16,
    /// `max_client_id_len`: longest client identifier accepted from MQTT
    /// 3.1.1 and 5 clients (MQTT 3.1 is always limited to 23). Default 65535.
    pub max_client_id_len: u16,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            max_packet_size: 1024 * 1024,
            max_keepalive: 0,
            receive_maximum: 32,
            max_inflight: 32,
            topic_alias_maximum: 16,
            max_client_id_len: u16::MAX,
        }
    }
}

/// The largest packet MQTT can frame: 268435455 bytes of remaining length
/// plus a 5-byte fixed header.
pub const MQTT_MAX_PACKET_SIZE: u32 = 268_435_460;

/// `[session]`: session lifetime and queues.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SessionConfig {
    /// `max_session_expiry_secs`: cap on the session expiry a client asks
    /// for; also the expiry of MQTT 3.x persistent sessions (clean session
    /// 0). 4294967295 = never expire. Default 4294967295.
    pub max_session_expiry_secs: u32,
    /// `max_queued_messages`: messages queued for a connected client that
    /// is not reading fast enough. QoS 0 messages are dropped first.
    /// Default 1000.
    pub max_queued_messages: u32,
    /// `max_offline_messages`: messages queued for a disconnected client
    /// with a persistent session. Default 1000.
    pub max_offline_messages: u32,
    /// `max_queued_bytes`: bytes of messages queued per client (online or
    /// offline), each counted as its topic, payload and properties plus a
    /// fixed overhead; 0 = no byte limit (the message limits still apply).
    /// Default 16777216 (16 MiB).
    pub max_queued_bytes: u64,
    /// `queue_qos0_offline`: whether QoS 0 messages are queued for
    /// disconnected clients. Default false.
    pub queue_qos0_offline: bool,
    /// `overflow`: which message a full queue drops: `"drop_newest"` (the
    /// arriving message) or `"drop_oldest"` (the head of the queue).
    /// Default `"drop_newest"`.
    pub overflow: OverflowPolicy,
    /// `overload`: what happens when a connected client's queue fills
    /// faster than it reads: `"backpressure"` (the broker stops reading
    /// from the clients publishing to it once its queue is half full,
    /// until it drains, for at most `overload_wait_ms` per episode) or
    /// `"drop"` (publishers are never held; a full queue drops as
    /// `overflow` says). Default `"backpressure"`.
    pub overload: OverloadPolicy,
    /// `overload_wait_ms`: how long publishers wait for one congested
    /// client before the broker gives up on it and drops for it alone
    /// until its queue has emptied. Default 1000.
    pub overload_wait_ms: u64,
    /// `overload_stall_ms`: a congested client that takes nothing from
    /// its queue for this long is given up on at once (a client that
    /// stopped reading holds publishers for no more than this). Default
    /// 100; at most `overload_wait_ms`.
    pub overload_stall_ms: u64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            max_session_expiry_secs: u32::MAX,
            max_queued_messages: 1000,
            max_offline_messages: 1000,
            max_queued_bytes: 16 << 20,
            queue_qos0_offline: false,
            overflow: OverflowPolicy::DropNewest,
            overload: OverloadPolicy::Backpressure,
            overload_wait_ms: 1000,
            overload_stall_ms: 100,
        }
    }
}

/// What a connected client's filling queue does to its publishers.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OverloadPolicy {
    /// Stop reading from the publishers until the queue drains (bounded
    /// by `overload_wait_ms`).
    Backpressure,
    /// Never hold publishers: a full queue drops.
    Drop,
}

/// What a full queue drops.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OverflowPolicy {
    DropNewest,
    DropOldest,
}

/// `[log]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `level`: `error`, `warn`, `info`, `debug` or `trace`, optionally
    /// per target (`"info,sluice_broker::connection=debug"`).
    /// Default `"info"`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".to_owned(),
        }
    }
}

/// `[admin]`: the HTTP admin endpoint (`GET /plugins`, `GET /metrics`;
/// see `crate::admin`), with an optional bearer token and a `Host` check.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// `bind`: address of the admin endpoint, e.g. `"127.0.0.1:8888"`;
    /// must differ from every `server.bind` address. Default: none (no
    /// admin endpoint).
    pub bind: Option<SocketAddr>,
    /// `token_file`: a file holding the bearer token every request must
    /// carry (`Authorization: Bearer TOKEN`), at least 16 bytes. Default:
    /// none (no authentication: keep the endpoint on a loopback or private
    /// address).
    pub token_file: Option<PathBuf>,
    /// `hosts`: host names accepted in a request's `Host` besides IP
    /// addresses and `localhost` (the name the endpoint is reached by
    /// through a proxy or DNS). Default: none.
    pub hosts: Vec<String>,
}

/// `[persistence]`: the on-disk store of sessions, queues, in-flight QoS
/// state, retained messages and plugin key-value data (see
/// `crate::store`).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PersistenceConfig {
    /// `dir`: directory of the store, created if missing. Default: none
    /// (everything is kept in memory and lost at exit).
    pub dir: Option<PathBuf>,
    /// `durability`: when a write is on disk. `"always"`: acknowledgements
    /// (PUBACK, PUBREC, PUBREL, SUBACK, CONNACK of a persistent session)
    /// wait until the batch holding the change is fsynced; `"interval"`:
    /// they wait until it is written to the operating system (which
    /// survives a crash of the broker), and the store is fsynced every
    /// `sync_interval_ms`; `"none"`: they do not wait. Default
    /// `"interval"`.
    pub durability: Durability,
    /// `sync_interval_ms`: fsync period of `durability = "interval"`
    /// (at least 1). Default 1000.
    pub sync_interval_ms: u32,
}

impl Default for PersistenceConfig {
    fn default() -> Self {
        PersistenceConfig {
            dir: None,
            durability: Durability::Interval,
            sync_interval_ms: 1000,
        }
    }
}

impl PersistenceConfig {
    /// The fsync period of `durability = "interval"`.
    pub fn sync_interval(&self) -> std::time::Duration {
        std::time::Duration::from_millis(u64::from(self.sync_interval_ms.max(1)))
    }
}

/// `[cluster]`: nodes serving one MQTT namespace over NATS (see
/// `crate::cluster`). Without `nats` the node is alone and nothing of the
/// cluster runs.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// `nats`: URLs of the NATS servers (`nats://host:port`), any of which
    /// the node connects to. Default: none.
    pub nats: Vec<String>,
    /// `node`: this node's name, unique in the cluster. Default: the host
    /// name and the first listener's port.
    pub node: Option<String>,
    /// `replicas`: copies JetStream keeps of the cluster's streams (QoS
    /// 1/2 messages, retained messages, client ids), 1 to 5, when the
    /// first node creates them.
    /// Default: 1; 3 in production (needs at least 3 NATS servers).
    pub replicas: u8,
    /// `node_timeout`: seconds without a heartbeat from a node before the
    /// others take it for dead, fire its clients' Wills and take its
    /// sessions over, 2 to 300. Default: 5.
    pub node_timeout: u32,
    /// `user` and `password_file`: a NATS user and the file holding its
    /// password (the first line). Default: none (or in the URLs).
    pub user: Option<String>,
    pub password_file: Option<PathBuf>,
    /// `token_file`: a file holding a NATS authentication token (the first
    /// line).
    pub token_file: Option<PathBuf>,
    /// `tls_ca`: CA certificates (PEM) the NATS servers' certificates must
    /// chain to; TLS is then required. Default: the system's roots, and
    /// TLS only for `tls://` URLs.
    pub tls_ca: Option<PathBuf>,
    /// `tls_cert` and `tls_key`: a client certificate and its key (PEM)
    /// for NATS servers that verify clients.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            nats: Vec::new(),
            node: None,
            replicas: 1,
            node_timeout: 5,
            user: None,
            password_file: None,
            token_file: None,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
        }
    }
}

impl ClusterConfig {
    /// Whether this node is part of a cluster.
    pub fn enabled(&self) -> bool {
        !self.nats.is_empty()
    }
}

/// When a store write is on disk (`persistence.durability`).
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    Always,
    #[default]
    Interval,
    None,
}
