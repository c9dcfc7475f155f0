//! `[plugins]` (where plugins come from, and the limits they get) and
//! `[plugin.NAME]` (one plugin's own limits and settings).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::FailurePolicy;

/// `[plugins]`: where plugins come from, and the limits every plugin gets
/// unless its own `[plugin.NAME]` section says otherwise.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PluginsConfig {
    /// `dir`: directory of `.wasm` plugins (`--plugins`). Default: none.
    pub dir: Option<PathBuf>,
    /// `cache_dir`: where compiled plugins are cached (created mode 0700;
    /// refused, and plugins compiled at every load, if it is a symbolic
    /// link, another user's, or writable by group or others). Default,
    /// never inside `dir`: `$CACHE_DIRECTORY/plugins` (systemd),
    /// `$XDG_CACHE_HOME/sluice/plugins`, `$HOME/.cache/sluice/plugins`, or
    /// `sluice-UID/plugins` in the temporary directory, the first whose
    /// variable is set.
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
    /// `publish_per_sec`: messages a plugin may publish per second with
    /// the host function `publish` (bursts of as many); 0 = none. Default
    /// 100.
    pub publish_per_sec: u32,
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
            publish_per_sec: 100,
            publish_refusal_v3: PublishRefusal::Disconnect,
            watch: WatchMode::Auto,
            watch_debounce_ms: 100,
            poll_interval_ms: 1000,
        }
    }
}

/// How the plugin directory is watched.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum WatchMode {
    #[default]
    Auto,
    Poll,
    Off,
}

/// What a refused PUBLISH does to an MQTT 3.x client.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PublishRefusal {
    #[default]
    Disconnect,
    Drop,
}

/// `[plugin.NAME]`: one plugin's settings; unset limits come from
/// `[plugins]`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PluginConfig {
    /// `enabled`: false skips the file. Default true.
    pub enabled: Option<bool>,
    /// `priority`: plugins with a priority run first, lowest first; the
    /// others follow in file-name order.
    pub priority: Option<i64>,
    /// `fuel`: as `plugins.fuel`, for this plugin. Default: `plugins.fuel`.
    pub fuel: Option<u64>,
    /// `memory_mb`: as `plugins.memory_mb`. Default: `plugins.memory_mb`.
    pub memory_mb: Option<u32>,
    /// `deadline_ms`: as `plugins.deadline_ms`. Default:
    /// `plugins.deadline_ms`.
    pub deadline_ms: Option<u32>,
    /// `instances`: as `plugins.instances`. Default: `plugins.instances`.
    pub instances: Option<u32>,
    /// `on_failure`: as `plugins.on_failure`. Default:
    /// `plugins.on_failure`.
    pub on_failure: Option<FailurePolicy>,
    /// `breaker_failures`: as `plugins.breaker_failures`. Default:
    /// `plugins.breaker_failures`.
    pub breaker_failures: Option<u32>,
    /// `breaker_backoff_secs`: as `plugins.breaker_backoff_secs`. Default:
    /// `plugins.breaker_backoff_secs`.
    pub breaker_backoff_secs: Option<u32>,
    /// `kv_max_bytes`: as `plugins.kv_max_bytes`. Default:
    /// `plugins.kv_max_bytes`.
    pub kv_max_bytes: Option<u64>,
    /// `kv_cluster`: in a cluster, whether the plugin's key-value store is
    /// the cluster's (one JetStream bucket, `sluice_kv_<name>`, every
    /// node's instances reading and writing the same entries) rather than
    /// each node's own. Default false; ignored without `[cluster]`.
    pub kv_cluster: Option<bool>,
    /// `publish_per_sec`: as `plugins.publish_per_sec`. Default:
    /// `plugins.publish_per_sec`.
    pub publish_per_sec: Option<u32>,
    /// `mountpoint`: the mountpoint of the messages the plugin publishes.
    /// Default: none (the default mountpoint).
    pub mountpoint: Option<String>,
    /// `http_allow`: the URLs the plugin may request with `wasi:http`
    /// (`scheme://host[:port]/path`, a final `*` for a path prefix).
    /// Default: none (no outbound HTTP).
    pub http_allow: Vec<String>,
    /// `http_timeout_ms`: the longest wait to connect, for the response
    /// and between bytes of one request. Default 1000.
    pub http_timeout_ms: Option<u32>,
    /// `http_max_response_bytes`: the largest response body. Default
    /// 1048576.
    pub http_max_response_bytes: Option<u64>,
    /// `http_ca_file`: PEM certificates trusted for `https` besides the
    /// Mozilla roots (a private CA). Default: none.
    pub http_ca_file: Option<PathBuf>,
    /// `required`: whether clients may go unchecked without this plugin.
    /// When a required plugin that was loaded disappears (removed, renamed,
    /// disabled) or fails to load with no version to keep, the
    /// authorisation hooks it served refuse everything until it is back;
    /// `true` here also makes the broker refuse to start without it.
    /// Default: true for a plugin exporting an authentication or
    /// authorisation hook, false for the others.
    pub required: Option<bool>,
    /// `config`: key/values the plugin reads with `host.config()`.
    pub config: BTreeMap<String, ConfigValue>,
}

/// A plugin setting: written as a TOML string, number or boolean, handed to
/// the plugin as text.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(untagged)]
pub enum ConfigValue {
    Text(String),
    Integer(i64),
    Float(f64),
    Bool(bool),
}

/// By hand rather than `untagged`, for an error that says what is allowed.
impl<'de> Deserialize<'de> for ConfigValue {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ConfigValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, integer, float or boolean")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ConfigValue, E> {
                Ok(ConfigValue::Text(v.to_owned()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<ConfigValue, E> {
                Ok(ConfigValue::Text(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ConfigValue, E> {
                Ok(ConfigValue::Integer(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ConfigValue, E> {
                i64::try_from(v)
                    .map(ConfigValue::Integer)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(v), &self))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<ConfigValue, E> {
                Ok(ConfigValue::Float(v))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<ConfigValue, E> {
                Ok(ConfigValue::Bool(v))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
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

/// As it is written in the file: `"deny"` or `"next"`.
impl Serialize for FailurePolicy {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(match self {
            FailurePolicy::Deny => "deny",
            FailurePolicy::Next => "next",
        })
    }
}
