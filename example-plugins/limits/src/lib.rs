//! Example plugin: per-user limits (message rate, in-flight messages,
//! packet size, a cap on session expiry, MQTT 5 receive maximum and topic
//! alias maximum) set through register modifiers. It accepts every client
//! that reaches it, so it goes last in the authentication chain: see
//! README.md for the ordering and the configuration. The logic is in
//! `rules`.

mod rules;

use rules::{Config, Request};
use sluice_plugin_sdk::{Plugin, RegisterRequest, RegisterVerdictM5, debug};

struct LimitsPlugin;

#[sluice_plugin_sdk::plugin]
impl Plugin for LimitsPlugin {
    type Config = Config;

    fn init(config: &Config) -> Result<(), String> {
        debug!("limits ready (defaults: {:?})", config.defaults);
        Ok(())
    }

    /// MQTT 3.x clients never get the MQTT 5 limits (the SDK leaves them
    /// out for them).
    fn auth_on_register_any(config: &Config, req: RegisterRequest) -> RegisterVerdictM5 {
        let req = Request {
            username: req.username.as_deref(),
            v5: req.is_m5(),
            clean_start: req.clean_start,
            session_expiry: req.properties.and_then(|p| p.session_expiry_interval),
        };
        RegisterVerdictM5::Ok(config.modifiers(&req))
    }
}
