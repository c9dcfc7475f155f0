//! Example plugin: username/password authentication against a list of
//! PBKDF2-SHA256 password hashes (a password file, in the spirit of
//! mosquitto_passwd), for MQTT 3.x and 5 clients.
//!
//! The users come from the plugin's `[plugin.NAME.config]` (`users` and/or
//! `file`, one `NAME:$pbkdf2-sha256$...` entry per line or comma); lines
//! are made by `cargo xtask passwd`. See README.md for the configuration.
//! The logic is in `users`; the hash format is the SDK's
//! (`sluice_plugin_sdk::password`, feature `password`).

mod users;

use sluice_plugin_sdk::{M5Denial, Plugin, RegisterRequest, RegisterVerdictM5, debug, info};
use sluice_plugin_sdk::{reason, warn};
use users::{Decision, Users};

struct PasswordFile;

#[sluice_plugin_sdk::plugin]
impl Plugin for PasswordFile {
    type Config = Users;

    fn init(users: &Users) -> Result<(), String> {
        if users.is_empty() {
            warn!("password-file has no users: every client is left to the next plugin or refused");
        }
        debug!(
            "password-file ready ({} users, unknown: {:?}, on success: {:?})",
            users.len(),
            users.unknown,
            users.on_success
        );
        Ok(())
    }

    /// A refusal is 0x86 (MQTT 3.x: CONNACK 4) with a reason string that
    /// tells users apart no more than the code; the log has the reason.
    fn auth_on_register_any(users: &Users, req: RegisterRequest) -> RegisterVerdictM5 {
        let username = req.username.as_deref();
        match users.check(username, req.password.as_deref()) {
            Decision::Accept => RegisterVerdictM5::Ok(None),
            Decision::Next => RegisterVerdictM5::Next,
            Decision::Refuse(why) => {
                info!(
                    "refused: {} for user {:?}",
                    why.text(),
                    username.unwrap_or_default()
                );
                RegisterVerdictM5::Error(
                    M5Denial::new(reason::BAD_USER_NAME_OR_PASSWORD)
                        .reason_string("bad user name or password"),
                )
            }
        }
    }
}
