//! Test fixture: MQTT 5 enhanced authentication by challenge and response.
//!
//! Method `SLUICE-HMAC-SHA256`. On CONNECT (or re-authentication) the plugin
//! answers AUTH 0x18 with a random 16-byte nonce, kept in the key-value store
//! under the client id; the client must answer with
//! HMAC-SHA256(secret, nonce), where `secret` comes from the plugin config.
//! With `rounds = "N"` in the config, a right answer is met with another
//! nonce until the client has answered N of them (default 1).

wit_bindgen::generate!({
    inline: r#"
        package fixtures:challenge;
        world challenge {
            include sluice:plugin/imports@0.1.0;
            export sluice:plugin/on-auth-m5@0.1.0;
            export sluice:plugin/auth-on-register-m5@0.1.0;
        }
    "#,
    path: "../../../wit",
    generate_all,
});

use exports::sluice::plugin::auth_on_register_m5::{self, RegisterVerdictM5};
use exports::sluice::plugin::on_auth_m5::{self, AuthRequest, AuthStep, AuthVerdict};
use hmac::{Hmac, Mac};
use sluice::plugin::host;
use sluice::plugin::types::{ConnectProperties, Connection, M5Denial, SubscriberId};

const METHOD: &str = "SLUICE-HMAC-SHA256";

struct Challenge;

fn secret() -> Vec<u8> {
    host::config()
        .into_iter()
        .find(|(k, _)| k == "secret")
        .map(|(_, v)| v.into_bytes())
        .unwrap_or_default()
}

/// Challenges a client must answer (config `rounds`, default 1).
fn rounds() -> u32 {
    host::config()
        .into_iter()
        .find(|(k, _)| k == "rounds")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(1)
}

/// A fresh nonce for `key`, and the verdict that sends it.
fn challenge(key: &str) -> AuthVerdict {
    let mut nonce = [0u8; 16];
    if getrandom::fill(&mut nonce).is_err() {
        return deny(0x80, "no randomness");
    }
    if host::kv_set(key, &nonce).is_err() {
        return deny(0x97, "nonce store full");
    }
    AuthVerdict::ContinueAuthentication(Some(nonce.to_vec()))
}

fn deny(code: u8, why: &str) -> AuthVerdict {
    AuthVerdict::Error(M5Denial {
        reason_code: code,
        reason_string: Some(why.to_owned()),
        server_reference: None,
    })
}

impl on_auth_m5::Guest for Challenge {
    fn on_auth_m5(_conn: Connection, id: SubscriberId, request: AuthRequest) -> AuthVerdict {
        if request.method != METHOD {
            return AuthVerdict::Next;
        }
        let key = format!("nonce/{}/{}", id.mountpoint, id.client_id);
        let answered = format!("answered/{}/{}", id.mountpoint, id.client_id);
        match request.step {
            AuthStep::Connect | AuthStep::Reauthenticate => {
                if host::kv_set(&answered, &0u32.to_le_bytes()).is_err() {
                    return deny(0x97, "store full");
                }
                challenge(&key)
            }
            AuthStep::ContinueAuthentication => {
                let Some(nonce) = host::kv_get(&key) else {
                    return deny(0x82, "no challenge outstanding");
                };
                host::kv_delete(&key);
                let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(&secret()) else {
                    return deny(0x80, "bad secret");
                };
                mac.update(&nonce);
                if mac
                    .verify_slice(request.data.as_deref().unwrap_or_default())
                    .is_err()
                {
                    return deny(0x86, "wrong response to the challenge");
                }
                let done = host::kv_get(&answered)
                    .and_then(|b| <[u8; 4]>::try_from(b.as_slice()).ok())
                    .map_or(0, u32::from_le_bytes)
                    + 1;
                if done >= rounds() {
                    host::kv_delete(&answered);
                    return AuthVerdict::Success(Some(b"welcome".to_vec()));
                }
                if host::kv_set(&answered, &done.to_le_bytes()).is_err() {
                    return deny(0x97, "store full");
                }
                challenge(&key)
            }
        }
    }
}

impl auth_on_register_m5::Guest for Challenge {
    /// Runs after a successful exchange; leaves a mark so tests can see
    /// that it did.
    fn auth_on_register_m5(
        _conn: Connection,
        id: SubscriberId,
        _username: Option<String>,
        _password: Option<Vec<u8>>,
        _clean_start: bool,
        _properties: ConnectProperties,
    ) -> RegisterVerdictM5 {
        let _ = host::kv_set(&format!("registered/{}", id.client_id), b"yes");
        RegisterVerdictM5::Ok(None)
    }
}

export!(Challenge);
