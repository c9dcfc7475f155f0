//! A plugin built outside the Sluice repository: one user, for MQTT 3
//! and 5 clients alike.

use sluice_plugin_sdk::{FromConfig, M5Denial, Plugin, RegisterRequest, RegisterVerdictM5};
use sluice_plugin_sdk::{Settings, info, reason};

struct Config {
    user: String,
    password: String,
}

impl FromConfig for Config {
    fn from_config(s: &Settings) -> Result<Self, String> {
        let config = Config {
            user: s.require("user")?.to_owned(),
            password: s.require("password")?.to_owned(),
        };
        s.finish()?;
        Ok(config)
    }
}

struct Outside;

#[sluice_plugin_sdk::plugin]
impl Plugin for Outside {
    type Config = Config;

    fn auth_on_register_any(c: &Config, req: RegisterRequest) -> RegisterVerdictM5 {
        let v = if req.is_m5() { 5 } else { 3 };
        if req.username.as_deref() == Some(&c.user)
            && req.password.as_deref() == Some(c.password.as_bytes())
        {
            info!("{} logged in with MQTT {v}", c.user);
            return RegisterVerdictM5::Ok(None);
        }
        RegisterVerdictM5::Error(M5Denial::new(reason::BAD_USER_NAME_OR_PASSWORD))
    }
}
