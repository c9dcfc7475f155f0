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

use event::Event;
use sluice_plugin_sdk::{FromConfig, Plugin, Qos, RegisteredEvent, SubscriberId, debug, warn};
use sluice_plugin_sdk::{Settings as Values, publish};

/// Where and how the events are published.
struct Settings {
    prefix: String,
    qos: Qos,
}

impl FromConfig for Settings {
    fn from_config(c: &Values) -> Result<Self, String> {
        let prefix = c.get("prefix").unwrap_or("audit").to_owned();
        if prefix.is_empty() || prefix.contains(['+', '#']) || prefix.starts_with('$') {
            return Err(format!(
                "prefix {prefix:?} is not a topic name for publishing"
            ));
        }
        let qos = c.value("qos")?.unwrap_or(Qos::AtLeastOnce);
        Ok(Settings { prefix, qos })
    }
}

/// Publishes `event`; a refusal (rate, queue full) is logged, never fatal.
fn emit(s: &Settings, event: &Event<'_>) {
    let topic = format!("{}/{}", s.prefix, event.kind());
    if let Err(e) = publish::message(&topic, event.json().as_bytes(), s.qos, false) {
        warn!("audit event on {topic} not published: {e:?}");
    }
}

struct AuditLog;

#[sluice_plugin_sdk::plugin]
impl Plugin for AuditLog {
    type Config = Settings;

    fn init(s: &Settings) -> Result<(), String> {
        debug!("audit-log publishing on {}/#", s.prefix);
        Ok(())
    }

    fn on_register(s: &Settings, e: RegisteredEvent) {
        let (id, username, peer) = (&e.subscriber_id, e.username.as_deref(), &e.peer);
        emit(s, &Event::Connected { id, username, peer });
    }

    fn on_client_offline(s: &Settings, id: SubscriberId) {
        emit(
            s,
            &Event::Disconnected {
                id: &id,
                session_kept: true,
            },
        );
    }

    fn on_client_gone(s: &Settings, id: SubscriberId) {
        emit(
            s,
            &Event::Disconnected {
                id: &id,
                session_kept: false,
            },
        );
    }
}
