//! {{name}}: a Sluice plugin written with the Rust plugin SDK.
//!
//! It authenticates MQTT 3.x and MQTT 5 clients against the `users` of its
//! configuration (`name:password` pairs, comma-separated) and leaves
//! clients it does not know to the next plugin. Replace the hooks with your
//! own: implement only the ones you need, and the component exports only
//! those (the broker never calls the others).

use std::collections::HashMap;

use sluice_plugin_sdk::{FromConfig, M5Denial, Plugin, RegisterRequest, RegisterVerdictM5};
use sluice_plugin_sdk::{Settings, info, reason};

/// The configuration, read by the SDK once per instance: an error refuses
/// the plugin at load.
struct Users(HashMap<String, String>);

impl FromConfig for Users {
    fn from_config(s: &Settings) -> Result<Self, String> {
        let users = s
            .list("users")
            .map(|entry| match entry.split_once(':') {
                Some((name, password)) => Ok((name.to_owned(), password.to_owned())),
                None => Err(format!("users: {entry:?} is not name:password")),
            })
            .collect::<Result<_, _>>()?;
        s.finish()?;
        Ok(Users(users))
    }
}

struct {{Name}};

#[sluice_plugin_sdk::plugin]
impl Plugin for {{Name}} {
    type Config = Users;

    fn init(users: &Users) -> Result<(), String> {
        info!("{} users configured", users.0.len());
        Ok(())
    }

    /// One hook for MQTT 3.x and 5 clients: a refusal with 0x86 is
    /// CONNACK 4 for MQTT 3.x clients.
    fn auth_on_register_any(users: &Users, req: RegisterRequest) -> RegisterVerdictM5 {
        let Some(expected) = req.username.as_ref().and_then(|u| users.0.get(u)) else {
            return RegisterVerdictM5::Next;
        };
        if req.password.as_deref() == Some(expected.as_bytes()) {
            RegisterVerdictM5::Ok(None)
        } else {
            RegisterVerdictM5::Error(M5Denial::new(reason::BAD_USER_NAME_OR_PASSWORD))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_parse() {
        let users = Users::from_config(&Settings::new([("users", "alice:secret, bob:hunter2")]));
        assert_eq!(users.map(|u| u.0.len()), Ok(2));
        assert!(Users::from_config(&Settings::new([("users", "nocolon")])).is_err());
    }
}
