//! Example plugin: username/password authentication against a list of
//! PBKDF2-SHA256 password hashes (a password file, in the spirit of
//! mosquitto_passwd), for MQTT 3.x and 5 clients.
//!
//! The users come from the plugin's `[plugin.NAME.config]` (`users` and/or
//! `file`, one `NAME:$pbkdf2-sha256$...` entry per line or comma); lines
//! are made by `cargo xtask passwd`. See README.md for the configuration.
//!
//! Written with the Rust plugin SDK (`plugin-sdk/`): the component exports
//! `lifecycle`, `auth-on-register` and `auth-on-register-m5`, implemented
//! below, and nothing else. The hook glue is here; the logic is in `users`
//! and `hash`, which do not use the SDK.

#[allow(dead_code, reason = "shared with `cargo xtask passwd`, which hashes")]
mod hash;
mod users;

use std::sync::OnceLock;

use sluice_plugin_sdk::{
    ConnectProperties, Connection, Denial, M5Denial, Plugin, RegisterVerdict, RegisterVerdictM5,
    SubscriberId, config, log,
};
use users::{Decision, Users};

/// Bad user name or password (MQTT 5 §3.2.2.2).
const BAD_USERNAME_OR_PASSWORD: u8 = 0x86;

/// The configuration, parsed once per instance (by `init`).
static USERS: OnceLock<Result<Users, String>> = OnceLock::new();

fn users() -> Result<&'static Users, &'static str> {
    USERS
        .get_or_init(|| Users::parse(&config::all()))
        .as_ref()
        .map_err(String::as_str)
}

fn decide(username: Option<&str>, password: Option<&[u8]>) -> Result<(), Option<String>> {
    let users = match users() {
        Ok(users) => users,
        // Unreachable after a successful init; refuse rather than guess.
        Err(e) => return Err(Some(format!("password-file is not configured: {e}"))),
    };
    match users.check(username, password) {
        Decision::Accept => Ok(()),
        Decision::Next => Err(None),
        Decision::Refuse(why) => Err(Some(format!(
            "{} for user {:?}",
            why.text(),
            username.unwrap_or_default()
        ))),
    }
}

struct PasswordFile;

#[sluice_plugin_sdk::plugin]
impl Plugin for PasswordFile {
    fn init() -> Result<(), String> {
        let users = users().map_err(|e| format!("invalid password-file configuration: {e}"))?;
        if users.is_empty() {
            log::warn(
                "password-file has no users: every client is left to the next plugin or refused",
            );
        }
        log::debug(&format!(
            "password-file ready ({} users, unknown: {:?}, on success: {:?})",
            users.len(),
            users.unknown,
            users.on_success
        ));
        Ok(())
    }

    fn auth_on_register(
        _conn: Connection,
        _subscriber_id: SubscriberId,
        username: Option<String>,
        password: Option<Vec<u8>>,
        _clean_session: bool,
    ) -> RegisterVerdict {
        match decide(username.as_deref(), password.as_deref()) {
            Ok(()) => RegisterVerdict::Ok(None),
            Err(None) => RegisterVerdict::Next,
            Err(Some(why)) => RegisterVerdict::Error(Denial::InvalidCredentials(why)),
        }
    }

    fn auth_on_register_m5(
        _conn: Connection,
        _subscriber_id: SubscriberId,
        username: Option<String>,
        password: Option<Vec<u8>>,
        _clean_start: bool,
        _properties: ConnectProperties,
    ) -> RegisterVerdictM5 {
        match decide(username.as_deref(), password.as_deref()) {
            Ok(()) => RegisterVerdictM5::Ok(None),
            Err(None) => RegisterVerdictM5::Next,
            Err(Some(why)) => {
                // The client learns nothing that tells users apart; the
                // log has the reason.
                log::info(&format!("refused: {why}"));
                RegisterVerdictM5::Error(
                    M5Denial::new(BAD_USERNAME_OR_PASSWORD)
                        .reason_string("bad user name or password"),
                )
            }
        }
    }
}
