//! Example plugin: an audit log of connections, published as MQTT messages.
//! Every client that connects, goes offline (keeping its session) or goes
//! away (its session ending) makes one JSON message on
//! `<prefix>/connected` or `<prefix>/disconnected`, which any subscriber
//! (a log shipper, a dashboard) can read. It uses the host function
//! `publish` (see `sluice_plugin_sdk::publish`) from notification hooks: it
//! never delays a client.
//!
//! Settings (`[plugin.audit-log.config]`): `prefix` (default `audit`),
//! `qos` (0, 1 or 2; default 1).

mod event;

use std::sync::OnceLock;

use event::Event;
use sluice_plugin_sdk::{Peer, Plugin, Qos, SubscriberId, config, log, publish};

/// Where and how the events are published.
struct Settings {
    prefix: String,
    qos: Qos,
}

static SETTINGS: OnceLock<Result<Settings, String>> = OnceLock::new();

fn settings() -> Result<&'static Settings, &'static str> {
    SETTINGS
        .get_or_init(|| {
            let prefix = config::get("prefix").unwrap_or_else(|| "audit".to_owned());
            if prefix.is_empty() || prefix.contains(['+', '#']) || prefix.starts_with('$') {
                return Err(format!(
                    "prefix {prefix:?} is not a topic name for publishing"
                ));
            }
            let qos = match config::parse::<u8>("qos").map_err(|e| e.to_string())? {
                None | Some(1) => Qos::AtLeastOnce,
                Some(0) => Qos::AtMostOnce,
                Some(2) => Qos::ExactlyOnce,
                Some(n) => return Err(format!("qos = {n}: use 0, 1 or 2")),
            };
            Ok(Settings { prefix, qos })
        })
        .as_ref()
        .map_err(String::as_str)
}

/// Publishes `event`; a refusal (rate, queue full) is logged, never fatal.
fn emit(event: &Event<'_>) {
    let Ok(s) = settings() else {
        return;
    };
    let topic = format!("{}/{}", s.prefix, event.kind());
    if let Err(e) = publish::message(&topic, event.json().as_bytes(), s.qos, false) {
        log::warn(&format!("audit event on {topic} not published: {e:?}"));
    }
}

struct AuditLog;

#[sluice_plugin_sdk::plugin]
impl Plugin for AuditLog {
    fn init() -> Result<(), String> {
        let s = settings().map_err(|e| format!("invalid audit-log configuration: {e}"))?;
        log::debug(&format!("audit-log publishing on {}/#", s.prefix));
        Ok(())
    }

    fn on_register(peer: Peer, subscriber_id: SubscriberId, username: Option<String>) {
        emit(&Event::Connected {
            id: &subscriber_id,
            username: username.as_deref(),
            peer: &peer,
        });
    }

    fn on_client_offline(subscriber_id: SubscriberId) {
        emit(&Event::Disconnected {
            id: &subscriber_id,
            session_kept: true,
        });
    }

    fn on_client_gone(subscriber_id: SubscriberId) {
        emit(&Event::Disconnected {
            id: &subscriber_id,
            session_kept: false,
        });
    }
}
