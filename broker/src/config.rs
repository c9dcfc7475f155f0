//! Broker configuration: the TOML file format, its defaults, and validation.
//!
//! Every key is documented on its field below, with its default; README.md's
//! configuration reference and `config/sluice.toml` repeat them for operators.
//! Unknown keys and values of the wrong type are errors that name the key
//! (and the line); values out of range are errors that name the key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

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
}

/// `[server]`: listeners and access.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// `bind`: TCP listener addresses. Default `["127.0.0.1:1883"]`.
    pub bind: Vec<SocketAddr>,
    /// `allow_anonymous`: with no authentication plugin loaded, whether
    /// clients may connect at all. Default `false`.
    pub allow_anonymous: bool,
    /// `plugins_dir`: directory of `.wasm` plugins. Default: none.
    pub plugins_dir: Option<PathBuf>,
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

/// What a full queue drops.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OverflowPolicy {
    DropNewest,
    DropOldest,
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
            plugins_dir: None,
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
        if self.log.level.trim().is_empty() {
            return invalid("log.level", "must not be empty");
        }
        Ok(())
    }
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
            "#,
        )
        .unwrap();
        assert_eq!(c.server.bind.len(), 2);
        assert!(c.server.allow_anonymous);
        assert_eq!(c.mqtt.max_keepalive, 60);
        assert_eq!(c.session.overflow, OverflowPolicy::DropOldest);
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
    }
}
