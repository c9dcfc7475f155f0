//! Broker configuration: the TOML file format, its defaults, and validation.
//!
//! Every key is documented on its field below, with its default; README.md's
//! configuration reference and `config/sluice.toml` repeat them for operators.
//! Unknown keys and values of the wrong type are errors that name the key
//! (and the line); values out of range are errors that name the key.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use crate::plugins::FailurePolicy;

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid config{}: {message}", .path.as_ref().map(|p| format!(" file {}", p.display())).unwrap_or_default())]
    Parse {
        path: Option<PathBuf>,
        message: String,
    },
    #[error("invalid config: `{key}` {problem}")]
    Invalid { key: &'static str, problem: String },
}

/// The whole configuration.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub mqtt: MqttConfig,
    pub session: SessionConfig,
    pub log: LogConfig,
    pub plugins: PluginsConfig,
    pub admin: AdminConfig,
    /// `[plugin.NAME]`: settings of the plugin in `NAME.wasm`.
    pub plugin: BTreeMap<String, PluginConfig>,
}

/// `[server]`: listeners and access.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// `bind`: TCP listener addresses. Default `["127.0.0.1:1883"]`.
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

/// `[mqtt]`: protocol limits.
#[derive(Clone, Debug, Deserialize, PartialEq)]
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

/// `[session]`: session lifetime and queues.
#[derive(Clone, Debug, Deserialize, PartialEq)]
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
    /// `max_queued_bytes`: payload bytes queued per client (online or
    /// offline); 0 = no byte limit (the message limits still apply).
    /// Default 0.
    pub max_queued_bytes: u64,
    /// `queue_qos0_offline`: whether QoS 0 messages are queued for
    /// disconnected clients. Default false.
    pub queue_qos0_offline: bool,
    /// `overflow`: which message a full queue drops: `"drop_newest"` (the
    /// arriving message) or `"drop_oldest"` (the head of the queue).
    /// Default `"drop_newest"`.
    pub overflow: OverflowPolicy,
}

/// `[plugins]`: where plugins come from, and the limits every plugin gets
/// unless its own `[plugin.NAME]` section says otherwise.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PluginsConfig {
    /// `dir`: directory of `.wasm` plugins (`--plugins`). Default: none.
    pub dir: Option<PathBuf>,
    /// `cache_dir`: where compiled plugins are cached. Default:
    /// `.cache` inside `dir`.
    pub cache_dir: Option<PathBuf>,
    /// `fuel`: fuel per hook call (about one unit per wasm instruction).
    /// Default 50000000.
    pub fuel: u64,
    /// `memory_mb`: linear memory per plugin instance. Default 64.
    pub memory_mb: u32,
    /// `deadline_ms`: wall-clock limit per hook call. Default 100.
    pub deadline_ms: u32,
    /// `instances`: instances kept per plugin; 0 = one per CPU. Default 0.
    pub instances: u32,
    /// `on_failure`: what a failed call (trap, fuel, memory, deadline) of an
    /// authentication hook means: `"deny"` (refuse the client) or `"next"`
    /// (ask the next plugin). Default `"deny"`.
    pub on_failure: FailurePolicy,
    /// `breaker_failures`: consecutive failures that disable a plugin for a
    /// while; 0 = never. Default 5.
    pub breaker_failures: u32,
    /// `breaker_backoff_secs`: how long a plugin is first disabled for
    /// (doubling on repeats, up to 300). Default 10.
    pub breaker_backoff_secs: u32,
    /// `kv_max_bytes`: size of each plugin's key-value store. Default
    /// 1048576.
    pub kv_max_bytes: u64,
    /// `publish_refusal_v3`: what a PUBLISH that `auth-on-publish` refuses
    /// does to an MQTT 3.x client, which has no way to be told:
    /// `"disconnect"` (close the connection, as MQTT 3.1.1 §5.4.2 suggests)
    /// or `"drop"` (acknowledge and discard the message). Default
    /// `"disconnect"`.
    pub publish_refusal_v3: PublishRefusal,
    /// `watch`: how changes to `dir` are noticed and hot-reloaded:
    /// `"auto"` (file-system events, falling back to polling when they are
    /// unavailable), `"poll"` (polling only, e.g. for network file
    /// systems) or `"off"`. Default `"auto"`.
    pub watch: WatchMode,
    /// `watch_debounce_ms`: quiet time after the last change before the
    /// directory is reloaded; a file must also keep its size and
    /// modification time for this long. Default 100.
    pub watch_debounce_ms: u32,
    /// `poll_interval_ms`: how often the directory is scanned when
    /// polling. Default 1000.
    pub poll_interval_ms: u32,
}

/// How the plugin directory is watched.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum WatchMode {
    #[default]
    Auto,
    Poll,
    Off,
}

/// What a refused PUBLISH does to an MQTT 3.x client.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PublishRefusal {
    #[default]
    Disconnect,
    Drop,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        PluginsConfig {
            dir: None,
            cache_dir: None,
            fuel: 50_000_000,
            memory_mb: 64,
            deadline_ms: 100,
            instances: 0,
            on_failure: FailurePolicy::Deny,
            breaker_failures: 5,
            breaker_backoff_secs: 10,
            kv_max_bytes: 1 << 20,
            publish_refusal_v3: PublishRefusal::Disconnect,
            watch: WatchMode::Auto,
            watch_debounce_ms: 100,
            poll_interval_ms: 1000,
        }
    }
}

/// `[plugin.NAME]`: one plugin's settings; unset limits come from
/// `[plugins]`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PluginConfig {
    /// `enabled`: false skips the file. Default true.
    pub enabled: Option<bool>,
    /// `priority`: plugins with a priority run first, lowest first; the
    /// others follow in file-name order.
    pub priority: Option<i64>,
    pub fuel: Option<u64>,
    pub memory_mb: Option<u32>,
    pub deadline_ms: Option<u32>,
    pub instances: Option<u32>,
    pub on_failure: Option<FailurePolicy>,
    pub breaker_failures: Option<u32>,
    pub breaker_backoff_secs: Option<u32>,
    pub kv_max_bytes: Option<u64>,
    /// `config`: key/values the plugin reads with `host.config()`.
    pub config: BTreeMap<String, ConfigValue>,
}

/// A plugin setting: written as a TOML string, number or boolean, handed to
/// the plugin as text.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum ConfigValue {
    Text(String),
    Integer(i64),
    Float(f64),
    Bool(bool),
}

impl fmt::Display for ConfigValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigValue::Text(s) => f.write_str(s),
            ConfigValue::Integer(i) => write!(f, "{i}"),
            ConfigValue::Float(x) => write!(f, "{x}"),
            ConfigValue::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// What a full queue drops.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OverflowPolicy {
    DropNewest,
    DropOldest,
}

/// `[admin]`: the HTTP admin endpoint (`GET /plugins`, `GET /metrics`;
/// see `crate::admin`). It has no authentication: keep it on a loopback
/// or otherwise private address.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// `bind`: address of the admin endpoint, e.g. `"127.0.0.1:8888"`;
    /// must differ from every `server.bind` address. Default: none (no
    /// admin endpoint).
    pub bind: Option<SocketAddr>,
}

/// `[log]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `level`: `error`, `warn`, `info`, `debug` or `trace`, optionally
    /// per target (`"info,sluice_broker::connection=debug"`).
    /// Default `"info"`.
    pub level: String,
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

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            max_session_expiry_secs: u32::MAX,
            max_queued_messages: 1000,
            max_offline_messages: 1000,
            max_queued_bytes: 0,
            queue_qos0_offline: false,
            overflow: OverflowPolicy::DropNewest,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".to_owned(),
        }
    }
}

/// The largest packet MQTT can frame: 268435455 bytes of remaining length
/// plus a 5-byte fixed header.
pub const MQTT_MAX_PACKET_SIZE: u32 = 268_435_460;

impl Config {
    /// Reads and validates a TOML file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: Some(path.to_owned()),
                message,
            },
            other => other,
        })
    }

    /// Parses and validates TOML text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: None,
            message: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks the values serde cannot: ranges and relations.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn invalid(key: &'static str, problem: impl Into<String>) -> Result<(), ConfigError> {
            Err(ConfigError::Invalid {
                key,
                problem: problem.into(),
            })
        }
        if self.server.bind.is_empty() {
            return invalid("server.bind", "must list at least one address");
        }
        if self.server.connect_timeout_secs == 0 {
            return invalid("server.connect_timeout_secs", "must be at least 1");
        }
        // The smallest useful packet: a CONNECT with a short client id.
        if self.mqtt.max_packet_size < 64 || self.mqtt.max_packet_size > MQTT_MAX_PACKET_SIZE {
            return invalid(
                "mqtt.max_packet_size",
                format!("must be between 64 and {MQTT_MAX_PACKET_SIZE}"),
            );
        }
        if self.mqtt.receive_maximum == 0 {
            return invalid("mqtt.receive_maximum", "must be between 1 and 65535");
        }
        if self.mqtt.max_inflight == 0 {
            return invalid("mqtt.max_inflight", "must be between 1 and 65535");
        }
        if self.mqtt.max_client_id_len < 23 {
            return invalid(
                "mqtt.max_client_id_len",
                "must be at least 23 (MQTT requires servers to accept 23-character ids)",
            );
        }
        if self.session.max_queued_messages == 0 {
            return invalid("session.max_queued_messages", "must be at least 1");
        }
        if let Some(admin) = self.admin.bind {
            if let Some(mqtt) = self.server.bind.iter().find(|a| same_socket(a, &admin)) {
                return invalid(
                    "admin.bind",
                    format!("{admin} would share a port with server.bind {mqtt}"),
                );
            }
        }
        if self.log.level.trim().is_empty() {
            return invalid("log.level", "must not be empty");
        }
        if self.plugins.memory_mb == 0 {
            return invalid("plugins.memory_mb", "must be at least 1");
        }
        if self.plugins.deadline_ms == 0 {
            return invalid("plugins.deadline_ms", "must be at least 1");
        }
        if self.plugins.poll_interval_ms == 0 {
            return invalid("plugins.poll_interval_ms", "must be at least 1");
        }
        if self.plugins.fuel == 0 {
            return invalid("plugins.fuel", "must be at least 1");
        }
        for p in self.plugin.values() {
            if p.memory_mb == Some(0) {
                return invalid("plugin.<name>.memory_mb", "must be at least 1");
            }
            if p.deadline_ms == Some(0) {
                return invalid("plugin.<name>.deadline_ms", "must be at least 1");
            }
            if p.fuel == Some(0) {
                return invalid("plugin.<name>.fuel", "must be at least 1");
            }
        }
        Ok(())
    }
}

/// Whether two listeners would need the same port: same non-zero port, and
/// the same address or a wildcard on either side.
fn same_socket(a: &SocketAddr, b: &SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        assert_eq!(Config::parse("").unwrap(), Config::default());
    }

    #[test]
    fn the_repository_config_is_valid() {
        let c = Config::parse(include_str!("../../config/sluice.toml")).unwrap();
        assert!(c.server.allow_anonymous);
    }

    #[test]
    fn values_are_read() {
        let c = Config::parse(
            r#"
            [server]
            bind = ["0.0.0.0:1884", "[::1]:1885"]
            allow_anonymous = true
            [mqtt]
            max_keepalive = 60
            [session]
            overflow = "drop_oldest"
            [plugins]
            dir = "plugins"
            on_failure = "next"
            [plugin.acl]
            priority = 10
            deadline_ms = 20
            [plugin.acl.config]
            users = "alice bob"
            max = 3
            strict = true
            "#,
        )
        .unwrap();
        assert_eq!(c.server.bind.len(), 2);
        assert!(c.server.allow_anonymous);
        assert_eq!(c.mqtt.max_keepalive, 60);
        assert_eq!(c.session.overflow, OverflowPolicy::DropOldest);
        assert_eq!(c.plugins.on_failure, FailurePolicy::Next);
        let acl = &c.plugin["acl"];
        assert_eq!((acl.priority, acl.deadline_ms), (Some(10), Some(20)));
        let config: Vec<String> = acl.config.values().map(|v| v.to_string()).collect();
        assert_eq!(config, ["3", "true", "alice bob"]);
    }

    fn error_of(text: &str) -> String {
        Config::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = error_of("[mqtt]\nmax_packet_sise = 10\n");
        assert!(e.contains("max_packet_sise"), "{e}");
        assert!(e.contains("line 2"), "{e}");
        let e = error_of("[nope]\n");
        assert!(e.contains("nope"), "{e}");
    }

    #[test]
    fn bad_values_are_named() {
        let e = error_of("[mqtt]\nreceive_maximum = \"many\"\n");
        assert!(e.contains("receive_maximum"), "{e}");
        let e = error_of("[mqtt]\nreceive_maximum = 0\n");
        assert!(e.contains("mqtt.receive_maximum"), "{e}");
        let e = error_of("[server]\nbind = [\"localhost\"]\n");
        assert!(e.contains("bind"), "{e}");
        let e = error_of("[session]\noverflow = \"drop_all\"\n");
        assert!(e.contains("overflow"), "{e}");
        let e = error_of("[mqtt]\nmax_packet_size = 10\n");
        assert!(e.contains("mqtt.max_packet_size"), "{e}");
        let e = error_of("[plugins]\non_failure = \"maybe\"\n");
        assert!(e.contains("on_failure"), "{e}");
        let e = error_of("[plugin.x]\nfule = 3\n");
        assert!(e.contains("fule"), "{e}");
        let e = error_of("[admin]\nbind = \"localhost\"\n");
        assert!(e.contains("bind"), "{e}");
        let e = error_of("[admin]\nport = 8888\n");
        assert!(e.contains("port"), "{e}");
    }

    #[test]
    fn admin_endpoint_is_off_by_default_and_must_not_share_an_mqtt_address() {
        assert_eq!(Config::default().admin.bind, None);
        let c = Config::parse("[admin]\nbind = \"127.0.0.1:8888\"\n").unwrap();
        assert_eq!(c.admin.bind, Some(SocketAddr::from(([127, 0, 0, 1], 8888))));
        let e = error_of("[admin]\nbind = \"127.0.0.1:1883\"\n");
        assert!(e.contains("admin.bind"), "{e}");
        let e =
            error_of("[server]\nbind = [\"0.0.0.0:1884\"]\n[admin]\nbind = \"127.0.0.1:1884\"\n");
        assert!(e.contains("admin.bind"), "{e}");
        let c =
            Config::parse("[server]\nbind = [\"127.0.0.1:0\"]\n[admin]\nbind = \"127.0.0.1:0\"\n");
        assert!(c.is_ok(), "ephemeral ports never clash");
    }
}
