//! Broker configuration: the TOML file format, its defaults, and validation.
//!
//! Every key is documented on its field, with its default (in `sections`,
//! `limits`, `plugins` and `listener`);
//! `docs/config.md` (the reference) and `config/sluice.toml` (a commented
//! example) repeat them for operators. Errors name the key and, for a file,
//! the line: unknown keys, values of the wrong type and syntax errors come
//! from toml/serde (with the key found from the error's position), values
//! out of range and conflicts from [`Config::validate`] (with the line found
//! from the key in the spanned document).

use std::collections::BTreeMap;
use std::path::Path;

mod error;
mod limits;
mod listener;
mod plugins;
mod sections;
mod validate;

use serde::{Deserialize, Serialize};

use self::error::{parse_error, spanned_line};

pub use self::error::ConfigError;
pub use self::limits::{LimitsConfig, MIN_MEMORY_MB};
pub use self::listener::{ClientAuth, ListenerConfig, ListenerKind, ProtocolLevel, TlsConfig};
pub use self::plugins::{ConfigValue, PluginConfig, PluginsConfig, PublishRefusal, WatchMode};
pub use self::sections::{
    AdminConfig, ClusterConfig, Durability, LogConfig, MQTT_MAX_PACKET_SIZE, MqttConfig,
    OverflowPolicy, OverloadPolicy, PersistenceConfig, ServerConfig, SessionConfig,
};
pub use crate::plugins::FailurePolicy;

/// The whole configuration.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub mqtt: MqttConfig,
    pub session: SessionConfig,
    pub limits: LimitsConfig,
    pub log: LogConfig,
    pub plugins: PluginsConfig,
    pub admin: AdminConfig,
    pub persistence: PersistenceConfig,
    pub cluster: ClusterConfig,
    /// `[[listener]]`: listeners with a kind and settings of their own,
    /// beside the plain TCP ones of `server.bind`.
    pub listener: Vec<ListenerConfig>,
    /// `[plugin.NAME]`: settings of the plugin in `NAME.wasm`.
    pub plugin: BTreeMap<String, PluginConfig>,
}

impl Config {
    /// Reads and validates a TOML file. Errors name the file, the key and,
    /// where it can be found, the line.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_owned(),
            error,
        })?;
        Self::parse(&text).map_err(|e| e.in_file(path))
    }

    /// Parses and validates TOML text. Errors name the key and, where it
    /// can be found, the line.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| parse_error(text, &e))?;
        config.check().map_err(|p| {
            let line = spanned_line(text, &p.key);
            p.into_error(line)
        })?;
        Ok(config)
    }

    /// Checks the values serde cannot: ranges and relations. The error
    /// names the key but no line: use [`Config::parse`] or [`Config::load`]
    /// for that.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check().map_err(|p| p.into_error(None))
    }

    /// The configuration as TOML: every key, defaults filled in (optional
    /// keys that are unset are left out). [`Config::parse`] reads it back
    /// into the same configuration.
    pub fn to_toml(&self) -> Result<String, toml::ser::Error> {
        toml::to_string(self)
    }

    /// Every MQTT listener: one plain TCP listener per `server.bind`
    /// address, then the `[[listener]]` sections, in order.
    pub fn listeners(&self) -> Vec<ListenerConfig> {
        self.server
            .bind
            .iter()
            .map(|a| ListenerConfig::tcp(*a))
            .chain(self.listener.iter().cloned())
            .collect()
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
        let c = Config::parse(include_str!("../../../config/sluice.toml")).unwrap();
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

    #[test]
    fn the_effective_config_reads_back_the_same() {
        let texts = [
            "",
            include_str!("../../../config/sluice.toml"),
            r#"
            [server]
            bind = []
            [[listener]]
            bind = "0.0.0.0:8883"
            kind = "tls"
            mountpoint = "tenant/a/"
            protocol_versions = [5]
            max_packet_size = 4096
            [listener.tls]
            cert = "cert.pem"
            key = "key.pem"
            client_auth = "optional"
            client_ca = "ca.pem"
            [[listener]]
            bind = "[::]:8080"
            kind = "ws"
            path = "/ws"
            [plugins]
            dir = "plugins"
            on_failure = "next"
            [plugin."odd name".config]
            text = "a \"quoted\" value"
            integer = -3
            float = 1.5
            whole_float = 2.0
            yes = true
            [plugin.empty]
            "#,
        ];
        for text in texts {
            let config = Config::parse(text).unwrap();
            let printed = config.to_toml().unwrap();
            assert_eq!(Config::parse(&printed).unwrap(), config, "{printed}");
        }
        let printed = Config::default().to_toml().unwrap();
        for key in [
            "[server]",
            "bind = [\"127.0.0.1:1883\"]",
            "max_inflight = 32",
        ] {
            assert!(printed.contains(key), "{key} not in {printed}");
        }
    }
}
