//! `[limits]`: bounds on everything a client can make the broker hold —
//! topic shapes, subscriptions, sessions, retained messages, AUTH rounds —
//! and the global memory budget. `crate::limits` enforces them.

use serde::{Deserialize, Serialize};

/// `[limits]`. Count limits where 0 means "no limit" say so; the others
/// must be at least 1.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// `max_topic_levels`: levels in a topic name or filter a client sends
    /// (PUBLISH, Will, SUBSCRIBE; for `$share/GROUP/FILTER` the levels of
    /// FILTER). Default 128.
    pub max_topic_levels: u32,
    /// `max_topic_length`: bytes of a topic name or filter as the client
    /// sends it. 1..=65535. Default 4096.
    pub max_topic_length: u32,
    /// `max_filters_per_subscribe`: filters handled in one SUBSCRIBE; the
    /// ones after are refused (Quota exceeded). Default 256.
    pub max_filters_per_subscribe: u32,
    /// `max_subscriptions_per_client`: subscriptions one session holds;
    /// replacing one it holds is always allowed. 0 = no limit.
    /// Default 4096.
    pub max_subscriptions_per_client: u32,
    /// `max_sessions`: sessions in the broker, connected or not; a CONNECT
    /// that would create one more is refused. 0 = no limit.
    /// Default 1000000.
    pub max_sessions: u64,
    /// `max_retained_messages`: retained messages in the broker. 0 = no
    /// limit. Default 1000000.
    pub max_retained_messages: u64,
    /// `max_retained_bytes`: bytes of retained messages (topic, payload,
    /// properties). 0 = no limit. Default 268435456 (256 MiB).
    pub max_retained_bytes: u64,
    /// `max_auth_rounds`: AUTH packets a client may send in one enhanced
    /// authentication exchange (at CONNECT, and per re-authentication).
    /// Default 16.
    pub max_auth_rounds: u32,
    /// `max_memory_mb`: the broker's memory budget, in MiB of heap. Above
    /// 90 % QoS 0 messages are dropped; above 100 % new connections,
    /// subscriptions and QoS 1/2 messages are refused. At least 16.
    /// Default: unset, which means half of the memory the process may use
    /// (its cgroup's limit, or the machine's memory).
    pub max_memory_mb: Option<u64>,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_topic_levels: 128,
            max_topic_length: 4096,
            max_filters_per_subscribe: 256,
            max_subscriptions_per_client: 4096,
            max_sessions: 1_000_000,
            max_retained_messages: 1_000_000,
            max_retained_bytes: 256 << 20,
            max_auth_rounds: 16,
            max_memory_mb: None,
        }
    }
}

/// The smallest memory budget the broker accepts, in MiB: below it the
/// broker could not even hold its own start-up state.
pub const MIN_MEMORY_MB: u64 = 16;
