//! Benchmark fixture (`cargo xtask bench`, "Stuck plugin"): an
//! `auth-on-publish` hook that keeps its instance busy. A message to a topic
//! under `spin/` makes it spin for `spin_ms` milliseconds (config, default
//! 250) by its own monotonic clock, then accept; any other topic is
//! accepted at once. It records nothing.

wit_bindgen::generate!({
    inline: r#"
        package fixtures:spinner;
        world spinner {
            include sluice:plugin/imports@0.1.0;
            export sluice:plugin/auth-on-publish@0.1.0;
            export sluice:plugin/auth-on-publish-m5@0.1.0;
        }
    "#,
    path: "../../../wit",
    generate_all,
});

use std::time::{Duration, Instant};

use exports::sluice::plugin::auth_on_publish::{self, PublishVerdict};
use exports::sluice::plugin::auth_on_publish_m5::{self, PublishVerdictM5};
use sluice::plugin::host;
use sluice::plugin::types::{MessageProperties, Payload, Qos, SubscriberId};

struct Spinner;

/// Spins for `spin_ms` if `topic` is under `spin/`.
fn maybe_spin(topic: &str) {
    if !topic.starts_with("spin/") {
        return;
    }
    let ms = host::config()
        .into_iter()
        .find(|(k, _)| k == "spin_ms")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(250);
    let until = Instant::now() + Duration::from_millis(ms);
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}

impl auth_on_publish::Guest for Spinner {
    fn auth_on_publish(
        _username: Option<String>,
        _subscriber_id: SubscriberId,
        _qos: Qos,
        topic: String,
        _payload: &Payload,
        _retain: bool,
        _is_will: bool,
    ) -> PublishVerdict {
        maybe_spin(&topic);
        PublishVerdict::Ok(None)
    }
}

impl auth_on_publish_m5::Guest for Spinner {
    fn auth_on_publish_m5(
        _username: Option<String>,
        _subscriber_id: SubscriberId,
        _qos: Qos,
        topic: String,
        _payload: &Payload,
        _retain: bool,
        _properties: MessageProperties,
        _is_will: bool,
    ) -> PublishVerdictM5 {
        maybe_spin(&topic);
        PublishVerdictM5::Ok(None)
    }
}

export!(Spinner);
