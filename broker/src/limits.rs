//! The limits a client can run into, as the broker enforces them: one list
//! of them ([`Limit`], with the configuration key and the metric label of
//! each), the topic-shape check, and [`LimitHits`], which counts every hit
//! for `/metrics` and logs it (every hit at debug, at most one warning per
//! limit every [`WARN_EVERY`]).
//!
//! The values come from `[limits]`, `[session]` and `[mqtt]`
//! (`crate::config`); the memory budget is `crate::memory`.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::config::LimitsConfig;
use crate::topic::Subscription;

/// How often a limit that keeps being hit is logged at warn level.
pub const WARN_EVERY: Duration = Duration::from_secs(10);

macro_rules! limits {
    ($($variant:ident => $label:literal, $key:literal;)*) => {
        /// A limit a client ran into.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Limit {
            $($variant,)*
        }

        impl Limit {
            /// Every limit, in metric order.
            pub const ALL: &'static [Limit] = &[$(Limit::$variant,)*];

            /// The `limit` label of `sluice_limit_hits_total`.
            pub fn label(self) -> &'static str {
                match self {
                    $(Limit::$variant => $label,)*
                }
            }

            /// The configuration key that sets it.
            pub fn key(self) -> &'static str {
                match self {
                    $(Limit::$variant => $key,)*
                }
            }
        }
    };
}

limits! {
    TopicLevels => "topic_levels", "limits.max_topic_levels";
    TopicLength => "topic_length", "limits.max_topic_length";
    FiltersPerSubscribe => "filters_per_subscribe", "limits.max_filters_per_subscribe";
    SubscriptionsPerClient => "subscriptions_per_client", "limits.max_subscriptions_per_client";
    Sessions => "sessions", "limits.max_sessions";
    RetainedMessages => "retained_messages", "limits.max_retained_messages";
    RetainedBytes => "retained_bytes", "limits.max_retained_bytes";
    AuthRounds => "auth_rounds", "limits.max_auth_rounds";
    Memory => "memory", "limits.max_memory_mb";
    QueuedMessages => "queued_messages", "session.max_queued_messages";
    QueuedBytes => "queued_bytes", "session.max_queued_bytes";
    OverloadWait => "overload_wait", "session.overload_wait_ms";
    SysPublish => "sys_publish", "($SYS is the broker's own)";
    ClientMaxPacket => "client_max_packet", "(the client's Maximum Packet Size)";
}

impl Limit {
    fn index(self) -> usize {
        Limit::ALL.iter().position(|l| *l == self).unwrap_or(0)
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// The topic-shape limits, from `[limits]`.
#[derive(Clone, Copy, Debug)]
pub struct TopicLimits {
    max_levels: usize,
    max_length: usize,
}

impl TopicLimits {
    pub fn from_config(c: &LimitsConfig) -> Self {
        TopicLimits {
            max_levels: c.max_topic_levels as usize,
            max_length: c.max_topic_length as usize,
        }
    }

    /// Checks a topic name as a client sent it.
    pub fn check_topic(&self, topic: &str) -> Result<(), Limit> {
        self.check(topic.len(), topic)
    }

    /// Checks a subscription: the length of `raw` as sent, the levels of
    /// its filter (without a share group's prefix).
    pub fn check_subscription(&self, raw: &str, sub: &Subscription) -> Result<(), Limit> {
        self.check(raw.len(), sub.filter().as_str())
    }

    fn check(&self, length: usize, levels_of: &str) -> Result<(), Limit> {
        if length > self.max_length {
            return Err(Limit::TopicLength);
        }
        // Stops counting once over: the work is bounded by the limit.
        let levels = 1 + levels_of
            .bytes()
            .filter(|&b| b == b'/')
            .take(self.max_levels)
            .count();
        if levels > self.max_levels {
            return Err(Limit::TopicLevels);
        }
        Ok(())
    }
}

/// What a message may be, whoever made it (a client, or a plugin's
/// changes): its topic's shape, and its payload and properties' size
/// (`mqtt.max_packet_size`: a plugin cannot turn a small message into one
/// no client could have sent).
#[derive(Clone, Copy, Debug)]
pub struct MessageLimits {
    pub topics: TopicLimits,
    pub max_payload: usize,
}

impl MessageLimits {
    pub fn from_config(c: &crate::Config) -> Self {
        MessageLimits {
            topics: TopicLimits::from_config(&c.limits),
            max_payload: c.mqtt.max_packet_size as usize,
        }
    }
}

/// Hits per limit, for `/metrics`, and when each was last logged at warn.
#[derive(Debug)]
pub struct LimitHits {
    counts: Vec<AtomicU64>,
    /// Milliseconds after `since` of the last warning, per limit (0: none).
    warned: Vec<AtomicU64>,
    since: Instant,
}

impl Default for LimitHits {
    fn default() -> Self {
        let zeros = || Limit::ALL.iter().map(|_| AtomicU64::new(0)).collect();
        LimitHits {
            counts: zeros(),
            warned: zeros(),
            since: Instant::now(),
        }
    }
}

impl LimitHits {
    /// Counts a hit of `limit` by `client` and logs it: at debug level
    /// every time, at warn level at most every [`WARN_EVERY`] per limit.
    pub fn hit(&self, limit: Limit, client: &dyn fmt::Display, detail: &dyn fmt::Display) {
        let i = limit.index();
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        let now = u64::try_from(self.since.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let last = self.warned[i].load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= WARN_EVERY.as_millis() as u64;
        if due
            && self.warned[i]
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                client = %client, limit = limit.label(),
                "limit {limit} reached: {detail} (every hit is counted in sluice_limit_hits_total; this warning repeats at most every {}s)",
                WARN_EVERY.as_secs()
            );
        } else {
            tracing::debug!(client = %client, limit = limit.label(), "limit {limit} reached: {detail}");
        }
    }

    /// Hits of `limit` so far.
    pub fn count(&self, limit: Limit) -> u64 {
        self.counts[limit.index()].load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(levels: u32, length: u32) -> TopicLimits {
        TopicLimits::from_config(&LimitsConfig {
            max_topic_levels: levels,
            max_topic_length: length,
            ..LimitsConfig::default()
        })
    }

    #[test]
    fn topic_levels_and_length() {
        let l = limits(3, 10);
        assert_eq!(l.check_topic("a"), Ok(()));
        assert_eq!(l.check_topic("a/b/c"), Ok(()));
        assert_eq!(l.check_topic("a/b/c/d"), Err(Limit::TopicLevels));
        assert_eq!(l.check_topic("///"), Err(Limit::TopicLevels));
        assert_eq!(l.check_topic("0123456789"), Ok(()));
        assert_eq!(l.check_topic("0123456789x"), Err(Limit::TopicLength));
        let deep = "a/".repeat(100_000);
        assert_eq!(
            limits(128, 65535).check_topic(&deep),
            Err(Limit::TopicLength)
        );
        assert_eq!(
            limits(128, 65535).check_topic(&deep[..60_000]),
            Err(Limit::TopicLevels)
        );
    }

    #[test]
    fn shared_subscriptions_count_the_levels_of_their_filter() {
        let l = limits(2, 30);
        let raw = "$share/g/a/b";
        let sub = Subscription::parse(raw).unwrap();
        assert_eq!(l.check_subscription(raw, &sub), Ok(()));
        let raw = "$share/g/a/b/c";
        let sub = Subscription::parse(raw).unwrap();
        assert_eq!(l.check_subscription(raw, &sub), Err(Limit::TopicLevels));
        let raw = "$share/a-long-group-name/a/b";
        let sub = Subscription::parse(raw).unwrap();
        assert_eq!(l.check_subscription(raw, &sub), Ok(()));
        let raw = "$share/a-much-longer-group-name/a";
        let sub = Subscription::parse(raw).unwrap();
        assert_eq!(l.check_subscription(raw, &sub), Err(Limit::TopicLength));
    }

    #[test]
    fn every_limit_has_a_label_and_a_key() {
        for l in Limit::ALL {
            assert!(!l.label().is_empty() && !l.key().is_empty());
        }
        let hits = LimitHits::default();
        hits.hit(Limit::Sessions, &"c", &"test");
        hits.hit(Limit::Sessions, &"c", &"test");
        assert_eq!(hits.count(Limit::Sessions), 2);
        assert_eq!(hits.count(Limit::Memory), 0);
    }
}
