//! {{name}}: a Sluice plugin written with the Rust plugin SDK.
//!
//! It authenticates MQTT 3.x and MQTT 5 clients against the `users` of its
//! configuration (`name:password` pairs, comma-separated) and leaves
//! clients it does not know to the next plugin. Replace the hooks with your
//! own: implement only the ones you need, and the component exports only
//! those (the broker never calls the others).

use std::collections::HashMap;
use std::sync::OnceLock;

use sluice_plugin_sdk::{
    ConnectProperties, Connection, Denial, M5Denial, Plugin, RegisterVerdict, RegisterVerdictM5,
    SubscriberId, config, log,
};

/// `users`, parsed once per instance.
static USERS: OnceLock<HashMap<String, String>> = OnceLock::new();

fn parse_users(text: &str) -> Result<HashMap<String, String>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            entry
                .split_once(':')
                .map(|(name, password)| (name.to_owned(), password.to_owned()))
                .ok_or_else(|| format!("users: {entry:?} is not name:password"))
        })
        .collect()
}

/// What to answer for these credentials.
enum Check {
    Accept,
    WrongPassword,
    Unknown,
}

fn check(username: Option<&str>, password: Option<&[u8]>) -> Check {
    let users = USERS.get_or_init(HashMap::new);
    match username.and_then(|name| users.get(name)) {
        None => Check::Unknown,
        Some(expected) if password == Some(expected.as_bytes()) => Check::Accept,
        Some(_) => Check::WrongPassword,
    }
}

struct {{Name}};

#[sluice_plugin_sdk::plugin]
impl Plugin for {{Name}} {
    fn init() -> Result<(), String> {
        let users = parse_users(&config::get("users").unwrap_or_default())?;
        log::info(&format!("{} users configured", users.len()));
        let _ = USERS.set(users);
        Ok(())
    }

    fn auth_on_register(
        _conn: Connection,
        _subscriber_id: SubscriberId,
        username: Option<String>,
        password: Option<Vec<u8>>,
        _clean_session: bool,
    ) -> RegisterVerdict {
        match check(username.as_deref(), password.as_deref()) {
            Check::Accept => RegisterVerdict::Ok(None),
            Check::WrongPassword => {
                RegisterVerdict::Error(Denial::InvalidCredentials("wrong password".into()))
            }
            Check::Unknown => RegisterVerdict::Next,
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
        match check(username.as_deref(), password.as_deref()) {
            Check::Accept => RegisterVerdictM5::Ok(None),
            Check::WrongPassword => RegisterVerdictM5::Error(M5Denial::new(0x86)),
            Check::Unknown => RegisterVerdictM5::Next,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_parse() {
        let users = parse_users("alice:secret, bob:hunter2").unwrap();
        assert_eq!(users.get("bob").map(String::as_str), Some("hunter2"));
        assert!(parse_users("nocolon").is_err());
    }
}
