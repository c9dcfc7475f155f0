//! Example plugin: per-user limits (message rate, in-flight messages,
//! packet size, a cap on session expiry, MQTT 5 receive maximum and topic
//! alias maximum) set through register modifiers. It accepts every client
//! that reaches it, so it goes last in the authentication chain: see
//! README.md for the ordering and the configuration.
//!
//! Written with the Rust plugin SDK (`plugin-sdk/`): the component exports
//! `lifecycle`, `auth-on-register` and `auth-on-register-m5`, implemented
//! below, and nothing else. The hook glue is here; the logic is in
//! `rules`, which does not use the SDK.

mod rules;

use std::sync::OnceLock;

use rules::{Config, Modifiers, Request};
use sluice_plugin_sdk::{
    ConnectProperties, Connection, Denial, M5Denial, Plugin, RegisterModifiers, RegisterVerdict,
    RegisterVerdictM5, SubscriberId, log,
};

/// Unspecified error (MQTT 5 §3.2.2.2).
const UNSPECIFIED_ERROR: u8 = 0x80;

/// The configuration, parsed once per instance (by `init`).
static CONFIG: OnceLock<Result<Config, String>> = OnceLock::new();

fn config() -> Result<&'static Config, &'static str> {
    CONFIG
        .get_or_init(|| Config::parse(&sluice_plugin_sdk::config::all()))
        .as_ref()
        .map_err(String::as_str)
}

fn register_modifiers(req: &Request<'_>) -> Result<Option<RegisterModifiers>, String> {
    let config = config().map_err(|e| format!("limits is not configured: {e}"))?;
    let m = config.modifiers(req);
    if m == Modifiers::default() {
        return Ok(None);
    }
    Ok(Some(RegisterModifiers {
        session_expiry_interval: m.session_expiry_interval,
        max_packet_size: m.max_packet_size,
        max_message_rate: m.max_message_rate,
        max_inflight_messages: m.max_inflight,
        receive_maximum: m.receive_maximum,
        topic_alias_maximum: m.topic_alias_maximum,
        ..RegisterModifiers::new()
    }))
}

struct LimitsPlugin;

#[sluice_plugin_sdk::plugin]
impl Plugin for LimitsPlugin {
    fn init() -> Result<(), String> {
        let c = config().map_err(|e| format!("invalid limits configuration: {e}"))?;
        log::debug(&format!("limits ready (defaults: {:?})", c.defaults));
        Ok(())
    }

    fn auth_on_register(
        _conn: Connection,
        _subscriber_id: SubscriberId,
        username: Option<String>,
        _password: Option<Vec<u8>>,
        clean_session: bool,
    ) -> RegisterVerdict {
        let req = Request {
            username: username.as_deref(),
            v5: false,
            clean_start: clean_session,
            session_expiry: None,
        };
        match register_modifiers(&req) {
            Ok(m) => RegisterVerdict::Ok(m),
            Err(why) => RegisterVerdict::Error(Denial::NotAuthorized(why)),
        }
    }

    fn auth_on_register_m5(
        _conn: Connection,
        _subscriber_id: SubscriberId,
        username: Option<String>,
        _password: Option<Vec<u8>>,
        clean_start: bool,
        properties: ConnectProperties,
    ) -> RegisterVerdictM5 {
        let req = Request {
            username: username.as_deref(),
            v5: true,
            clean_start,
            session_expiry: properties.session_expiry_interval,
        };
        match register_modifiers(&req) {
            Ok(m) => RegisterVerdictM5::Ok(m),
            Err(why) => {
                RegisterVerdictM5::Error(M5Denial::new(UNSPECIFIED_ERROR).reason_string(why))
            }
        }
    }
}
