//! Example plugin: authentication with a JSON Web Token (HS256) in the
//! CONNECT password, for MQTT 3.x and 5 clients. The token's claims can
//! move the client (`client_id`, `mountpoint`) and take away publishing or
//! subscribing (`can_publish`, `can_subscribe`) through register
//! modifiers. See README.md for the configuration.
//!
//! Written with the Rust plugin SDK (`plugin-sdk/`): the component exports
//! `lifecycle`, `auth-on-register` and `auth-on-register-m5`, implemented
//! below, and nothing else. The hook glue is here; the logic is in
//! `token`, which does not use the SDK.

mod token;

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use sluice_plugin_sdk::{
    ConnectProperties, Connection, Denial, M5Denial, Plugin, RegisterModifiers, RegisterVerdict,
    RegisterVerdictM5, SubscriberId, config, log,
};
use token::{Grant, Outcome, Rejection, Settings};

/// Bad user name or password / not authorized (MQTT 5 §3.2.2.2).
const BAD_USERNAME_OR_PASSWORD: u8 = 0x86;
const NOT_AUTHORIZED: u8 = 0x87;

/// The configuration, parsed once per instance (by `init`).
static SETTINGS: OnceLock<Result<Settings, String>> = OnceLock::new();

fn settings() -> Result<&'static Settings, &'static str> {
    SETTINGS
        .get_or_init(|| Settings::parse(&config::all()))
        .as_ref()
        .map_err(String::as_str)
}

/// The verdict, shared by the MQTT 3.x and 5 hooks.
enum Verdict {
    Ok(Option<RegisterModifiers>),
    Next,
    Refuse(Rejection),
}

fn decide(id: &SubscriberId, password: Option<&[u8]>) -> Verdict {
    let Some(password) = password else {
        return Verdict::Next;
    };
    let settings = match settings() {
        Ok(s) => s,
        // Unreachable after a successful init; refuse rather than guess.
        Err(e) => return Verdict::Refuse(Rejection::Malformed(format!("not configured: {e}"))),
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    match settings.check(password, now) {
        Outcome::Valid(grant) => Verdict::Ok(modifiers(id, grant)),
        Outcome::Next => Verdict::Next,
        Outcome::Refused(why) => Verdict::Refuse(why),
    }
}

/// The register modifiers for a token's grant (`None` when it grants
/// nothing special). A client id moves the client within its mountpoint
/// unless the token names a mountpoint too.
fn modifiers(id: &SubscriberId, grant: Grant) -> Option<RegisterModifiers> {
    if grant.is_empty() {
        return None;
    }
    let subscriber_id =
        (grant.client_id.is_some() || grant.mountpoint.is_some()).then(|| SubscriberId {
            mountpoint: grant.mountpoint.unwrap_or_else(|| id.mountpoint.clone()),
            client_id: grant.client_id.unwrap_or_else(|| id.client_id.clone()),
        });
    Some(RegisterModifiers {
        subscriber_id,
        allow_publish: grant.can_publish,
        allow_subscribe: grant.can_subscribe,
        ..RegisterModifiers::new()
    })
}

struct JwtAuth;

#[sluice_plugin_sdk::plugin]
impl Plugin for JwtAuth {
    fn init() -> Result<(), String> {
        let s = settings().map_err(|e| format!("invalid jwt-auth configuration: {e}"))?;
        if s.weak_secret() {
            log::warn(
                "jwt-auth: the secret is shorter than 32 bytes (RFC 7518 asks for at least 256 bits)",
            );
        }
        log::debug(&format!("jwt-auth ready ({s:?})"));
        Ok(())
    }

    fn auth_on_register(
        _conn: Connection,
        subscriber_id: SubscriberId,
        _username: Option<String>,
        password: Option<Vec<u8>>,
        _clean_session: bool,
    ) -> RegisterVerdict {
        match decide(&subscriber_id, password.as_deref()) {
            Verdict::Ok(m) => RegisterVerdict::Ok(m),
            Verdict::Next => RegisterVerdict::Next,
            Verdict::Refuse(why) if why.is_bad_credentials() => {
                RegisterVerdict::Error(Denial::InvalidCredentials(why.text()))
            }
            Verdict::Refuse(why) => RegisterVerdict::Error(Denial::NotAuthorized(why.text())),
        }
    }

    fn auth_on_register_m5(
        _conn: Connection,
        subscriber_id: SubscriberId,
        _username: Option<String>,
        password: Option<Vec<u8>>,
        _clean_start: bool,
        _properties: ConnectProperties,
    ) -> RegisterVerdictM5 {
        match decide(&subscriber_id, password.as_deref()) {
            Verdict::Ok(m) => RegisterVerdictM5::Ok(m),
            Verdict::Next => RegisterVerdictM5::Next,
            Verdict::Refuse(why) => {
                let code = if why.is_bad_credentials() {
                    BAD_USERNAME_OR_PASSWORD
                } else {
                    NOT_AUTHORIZED
                };
                RegisterVerdictM5::Error(M5Denial::new(code).reason_string(why.text()))
            }
        }
    }
}
