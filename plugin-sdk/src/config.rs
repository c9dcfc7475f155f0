//! This plugin's settings: the key/values of `[plugin.NAME.config]` in the
//! broker's configuration file.
//!
//! ```no_run
//! use sluice_plugin_sdk::config;
//!
//! let prefix = config::get("prefix").unwrap_or_else(|| "telemetry/".to_owned());
//! let limit: u32 = config::parse("limit")?.unwrap_or(100);
//! # Ok::<(), config::ConfigError>(())
//! ```

use std::fmt;
use std::str::FromStr;

use crate::__private::bindings::sluice::plugin::host;

/// Every setting, in the configuration's order.
///
/// ```no_run
/// for (key, value) in sluice_plugin_sdk::config::all() {
///     sluice_plugin_sdk::log::debug(&format!("{key} = {value}"));
/// }
/// ```
pub fn all() -> Vec<(String, String)> {
    host::config()
}

/// The value of `key`, if set.
///
/// ```no_run
/// let field = sluice_plugin_sdk::config::get("field").ok_or("field is missing")?;
/// # Ok::<(), &str>(())
/// ```
pub fn get(key: &str) -> Option<String> {
    all().into_iter().find_map(|(k, v)| (k == key).then_some(v))
}

/// The value of `key` parsed as a `T`: `Ok(None)` if it is not set, an
/// error naming the key if it does not parse.
///
/// ```no_run
/// use std::time::Duration;
///
/// let secs: u64 = sluice_plugin_sdk::config::parse("timeout_secs")?.unwrap_or(5);
/// let timeout = Duration::from_secs(secs);
/// # Ok::<(), sluice_plugin_sdk::config::ConfigError>(())
/// ```
pub fn parse<T>(key: &str) -> Result<Option<T>, ConfigError>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    get(key)
        .map(|value| {
            value.parse().map_err(|e: T::Err| ConfigError {
                key: key.to_owned(),
                value,
                message: e.to_string(),
            })
        })
        .transpose()
}

/// A setting that does not parse (see [`parse`]).
///
/// ```
/// use sluice_plugin_sdk::config::ConfigError;
///
/// let e = ConfigError { key: "limit".into(), value: "many".into(), message: "invalid digit found in string".into() };
/// assert_eq!(e.to_string(), r#"limit = "many": invalid digit found in string"#);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The setting.
    pub key: String,
    /// Its value.
    pub value: String,
    /// Why it does not parse.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} = {:?}: {}", self.key, self.value, self.message)
    }
}

impl std::error::Error for ConfigError {}
