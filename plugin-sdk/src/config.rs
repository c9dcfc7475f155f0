//! This plugin's settings: the key/values of `[plugin.NAME.config]` in the
//! broker's configuration file, read into the plugin's `type Config`
//! ([`FromConfig`]) once per instance.
//!
//! ```
//! use sluice_plugin_sdk::{FromConfig, Settings};
//!
//! struct Config {
//!     prefix: String,
//!     limit: u32,
//!     users: Vec<String>,
//! }
//!
//! impl FromConfig for Config {
//!     fn from_config(s: &Settings) -> Result<Self, String> {
//!         let config = Config {
//!             prefix: s.get("prefix").unwrap_or("telemetry/").to_owned(),
//!             limit: s.parse("limit")?.unwrap_or(100),
//!             users: s.list("users").map(str::to_owned).collect(),
//!         };
//!         s.finish()?; // an unknown key is an error
//!         Ok(config)
//!     }
//! }
//!
//! let c = Config::from_config(&Settings::new([("limit", "5"), ("users", "a, b")]))?;
//! assert_eq!((c.prefix.as_str(), c.limit, c.users.len()), ("telemetry/", 5, 2));
//! let e = Config::from_config(&Settings::new([("limit", "many")])).err();
//! assert_eq!(e.as_deref(), Some(r#"limit = "many": invalid digit found in string"#));
//! # Ok::<(), String>(())
//! ```

use std::cell::Cell;
use std::fmt::Display;
use std::str::FromStr;

use crate::__private::bindings::sluice::plugin::host;

/// A plugin's configuration, built from its settings by the SDK once per
/// instance, before any hook: an error refuses the instance (and the
/// plugin, at load) with `invalid NAME configuration: ERROR`. Hooks get it
/// as their first argument. `()` is the configuration of a plugin that has
/// none (its settings are ignored).
pub trait FromConfig: Sized + Send + Sync + 'static {
    /// Reads the configuration; the error names the key and what is wrong.
    fn from_config(settings: &Settings) -> Result<Self, String>;
}

impl FromConfig for () {
    fn from_config(_: &Settings) -> Result<(), String> {
        Ok(())
    }
}

/// The settings, as strings (the broker converts numbers and booleans),
/// in the configuration's order. The accessors remember which keys they
/// were asked for, so that [`finish`](Settings::finish) can refuse the
/// others.
#[derive(Debug, Default)]
pub struct Settings {
    entries: Vec<(String, String, Cell<bool>)>,
}

impl Settings {
    /// Settings from pairs (for tests; the SDK reads the broker's).
    ///
    /// ```
    /// let s = sluice_plugin_sdk::Settings::new([("a", "1")]);
    /// assert_eq!(s.get("a"), Some("1"));
    /// ```
    pub fn new<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        Settings {
            entries: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into(), Cell::new(false)))
                .collect(),
        }
    }

    /// The broker's settings for this plugin.
    pub fn from_host() -> Self {
        Settings::new(all())
    }

    /// The value of `key`, if set (the last one, if set twice).
    ///
    /// ```
    /// let s = sluice_plugin_sdk::Settings::new([("field", "seen")]);
    /// assert_eq!(s.get("field"), Some("seen"));
    /// assert_eq!(s.get("value"), None);
    /// ```
    pub fn get(&self, key: &str) -> Option<&str> {
        let (_, value, used) = self.entries.iter().rev().find(|(k, _, _)| k == key)?;
        used.set(true);
        Some(value)
    }

    /// The value of `key`, or an error `KEY is missing`.
    ///
    /// ```
    /// let s = sluice_plugin_sdk::Settings::new([("a", "1")]);
    /// assert_eq!(s.require("b"), Err("b is missing".to_owned()));
    /// ```
    pub fn require(&self, key: &str) -> Result<&str, String> {
        self.get(key).ok_or_else(|| format!("{key} is missing"))
    }

    /// The value of `key` parsed (after trimming) as a `T`: `Ok(None)` if
    /// it is not set, an error `KEY = "VALUE": WHY` if it does not parse.
    ///
    /// ```
    /// let s = sluice_plugin_sdk::Settings::new([("secs", " 5 ")]);
    /// assert_eq!(s.parse::<u64>("secs"), Ok(Some(5)));
    /// assert_eq!(s.parse::<u64>("other"), Ok(None));
    /// ```
    pub fn parse<T>(&self, key: &str) -> Result<Option<T>, String>
    where
        T: FromStr,
        T::Err: Display,
    {
        self.get(key)
            .map(|value| {
                value
                    .trim()
                    .parse()
                    .map_err(|e: T::Err| invalid(key, value, e))
            })
            .transpose()
    }

    /// One of a few words: the value of the one `key` names, `default` if
    /// it is not set, an error listing the words otherwise.
    ///
    /// ```
    /// let s = sluice_plugin_sdk::Settings::new([("unknown", "deny"), ("mode", "loud")]);
    /// assert_eq!(s.choice("unknown", false, &[("next", false), ("deny", true)]), Ok(true));
    /// assert_eq!(
    ///     s.choice("mode", 0, &[("quiet", 0), ("normal", 1)]),
    ///     Err(r#"mode = "loud": expected "quiet" or "normal""#.to_owned())
    /// );
    /// ```
    pub fn choice<T: Copy>(&self, key: &str, default: T, words: &[(&str, T)]) -> Result<T, String> {
        let Some(value) = self.get(key) else {
            return Ok(default);
        };
        if let Some((_, t)) = words.iter().find(|(w, _)| *w == value.trim()) {
            return Ok(*t);
        }
        let names: Vec<String> = words.iter().map(|(w, _)| format!("{w:?}")).collect();
        let expected = match names.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
            _ => names.concat(),
        };
        Err(invalid(key, value, format!("expected {expected}")))
    }

    /// The items of a list setting: split at commas and newlines, trimmed,
    /// empty items left out (nothing if the key is not set).
    ///
    /// ```
    /// let s = sluice_plugin_sdk::Settings::new([("topics", "a/#, b\nc,")]);
    /// assert_eq!(s.list("topics").collect::<Vec<_>>(), ["a/#", "b", "c"]);
    /// ```
    pub fn list(&self, key: &str) -> impl Iterator<Item = &str> {
        self.get(key)
            .unwrap_or_default()
            .split([',', '\n'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
    }

    /// The settings under `PREFIX.NAME.` for every NAME (which may contain
    /// dots: the last dot ends it), as (NAME, its settings without the
    /// prefix), in the order of their first key. Their keys count as
    /// asked for; the returned settings check their own with `finish`.
    ///
    /// ```
    /// let s = sluice_plugin_sdk::Settings::new([("user.a.b.rate", "1"), ("rate", "2")]);
    /// let users = s.scoped("user");
    /// assert_eq!(users[0].0, "a.b");
    /// assert_eq!(users[0].1.get("rate"), Some("1"));
    /// ```
    pub fn scoped(&self, prefix: &str) -> Vec<(String, Settings)> {
        let mut scopes: Vec<(String, Settings)> = Vec::new();
        for (key, value, used) in &self.entries {
            let Some((name, rest)) = key
                .strip_prefix(prefix)
                .and_then(|k| k.strip_prefix('.'))
                .and_then(|k| k.rsplit_once('.'))
                .filter(|(name, _)| !name.is_empty())
            else {
                continue;
            };
            used.set(true);
            let entry = (rest.to_owned(), value.clone(), Cell::new(false));
            match scopes.iter_mut().find(|(n, _)| n == name) {
                Some((_, s)) => s.entries.push(entry),
                None => scopes.push((
                    name.to_owned(),
                    Settings {
                        entries: vec![entry],
                    },
                )),
            }
        }
        scopes
    }

    /// Every setting, in order (all count as asked for).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v, used)| {
            used.set(true);
            (k.as_str(), v.as_str())
        })
    }

    /// An error `unknown configuration key "KEY"` for the first key no
    /// accessor asked for.
    ///
    /// ```
    /// let s = sluice_plugin_sdk::Settings::new([("a", "1"), ("b", "2")]);
    /// let _ = s.get("a");
    /// assert_eq!(s.finish(), Err(r#"unknown configuration key "b""#.to_owned()));
    /// ```
    pub fn finish(&self) -> Result<(), String> {
        match self.entries.iter().find(|(_, _, used)| !used.get()) {
            Some((key, _, _)) => Err(format!("unknown configuration key {key:?}")),
            None => Ok(()),
        }
    }
}

/// The error for a value that does not fit: `KEY = "VALUE": WHY`.
///
/// ```
/// let e = sluice_plugin_sdk::config::invalid("limit", "0", "at least 1");
/// assert_eq!(e, r#"limit = "0": at least 1"#);
/// ```
pub fn invalid(key: &str, value: &str, why: impl Display) -> String {
    format!("{key} = {value:?}: {why}")
}

/// Every setting, read from the broker (the SDK reads them for
/// [`FromConfig`]; hooks rarely need this).
pub fn all() -> Vec<(String, String)> {
    host::config()
}
