//! Example plugin: authentication with a JSON Web Token (HS256) in the
//! CONNECT password, for MQTT 3.x and 5 clients. The token's claims can
//! move the client (`client_id`, `mountpoint`) and take away publishing or
//! subscribing (`can_publish`, `can_subscribe`) through register
//! modifiers. See README.md for the configuration. The logic is in
//! `token`.

mod token;

use sluice_plugin_sdk::{M5Denial, Plugin, RegisterModifiers, RegisterRequest, RegisterVerdictM5};
use sluice_plugin_sdk::{SubscriberId, debug, reason, warn};
use token::{Grant, Outcome, Settings};

/// The register modifiers for a token's grant (`None` when it grants
/// nothing special). A client id moves the client within its mountpoint
/// unless the token names a mountpoint too.
fn modifiers(id: SubscriberId, grant: Grant) -> Option<RegisterModifiers> {
    let subscriber_id =
        (grant.client_id.is_some() || grant.mountpoint.is_some()).then(|| SubscriberId {
            mountpoint: grant.mountpoint.unwrap_or(id.mountpoint),
            client_id: grant.client_id.unwrap_or(id.client_id),
        });
    let m = RegisterModifiers {
        subscriber_id,
        allow_publish: grant.can_publish,
        allow_subscribe: grant.can_subscribe,
        ..RegisterModifiers::new()
    };
    m.changes()
}

struct JwtAuth;

#[sluice_plugin_sdk::plugin]
impl Plugin for JwtAuth {
    type Config = Settings;

    fn init(s: &Settings) -> Result<(), String> {
        if s.weak_secret() {
            warn!(
                "jwt-auth: the secret is shorter than 32 bytes (RFC 7518 asks for at least 256 bits)"
            );
        }
        debug!("jwt-auth ready ({s:?})");
        Ok(())
    }

    /// Bad credentials refuse with 0x86 (MQTT 3.x: CONNACK 4), a token for
    /// another issuer or audience with 0x87 (CONNACK 5).
    fn auth_on_register_any(s: &Settings, req: RegisterRequest) -> RegisterVerdictM5 {
        let Some(password) = req.password else {
            return RegisterVerdictM5::Next;
        };
        match s.check(&password, sluice_plugin_sdk::unix_time()) {
            Outcome::Valid(grant) => RegisterVerdictM5::Ok(modifiers(req.subscriber_id, grant)),
            Outcome::Next => RegisterVerdictM5::Next,
            Outcome::Refused(why) => {
                let code = match why.is_bad_credentials() {
                    true => reason::BAD_USER_NAME_OR_PASSWORD,
                    false => reason::NOT_AUTHORIZED,
                };
                RegisterVerdictM5::Error(M5Denial::new(code).reason_string(why.text()))
            }
        }
    }
}
