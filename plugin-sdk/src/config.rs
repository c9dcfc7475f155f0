//! This plugin's settings: the key/values of `[plugin.NAME.config]` in the
//! broker's configuration file, read into the plugin's `type Config`
//! ([`FromConfig`]) once per instance.
//!
//! The simplest configuration is a struct that derives
//! [`serde::Deserialize`]: every such type is a [`FromConfig`]. Each field
//! is the key of its name, read from its text as the field's type wants
//! it (see [`Settings::deserialize`]); an `Option` or a
//! `#[serde(default)]` field may be left out, and a key no field reads
//! refuses the plugin at load. Errors name the key:
//!
//! ```
//! use std::collections::HashMap;
//! use std::time::Duration;
//!
//! use serde::Deserialize;
//! use sluice_plugin_sdk::{FromConfig, Settings};
//!
//! #[derive(Debug, Deserialize)]
//! #[serde(rename_all = "lowercase")]
//! enum Mode {
//!     Quiet,
//!     Loud,
//! }
//!
//! #[derive(Debug, Deserialize)]
//! struct Limits {
//!     rate: u32,
//! }
//!
//! #[derive(Debug, Deserialize)]
//! struct Config {
//!     prefix: Option<String>,
//!     limit: u32,
//!     mode: Mode,
//!     /// `users = "a, b"`: comma- or newline-separated.
//!     #[serde(default)]
//!     users: Vec<String>,
//!     /// `timeout = "1500ms"` (`ms`, `s`, `m`, `h`, `d`).
//!     timeout: Duration,
//!     /// `user.NAME.rate = 5`: a group of keys per NAME.
//!     #[serde(default)]
//!     user: HashMap<String, Limits>,
//! }
//!
//! let c = Config::from_config(&Settings::new([
//!     ("limit", "5"),
//!     ("mode", "loud"),
//!     ("users", "a, b"),
//!     ("timeout", "1.5s"),
//!     ("user.first.last.rate", "10"),
//! ]))?;
//! assert_eq!((c.prefix, c.limit, c.users.len()), (None, 5, 2));
//! assert_eq!(c.timeout, Duration::from_millis(1500));
//! assert_eq!(c.user["first.last"].rate, 10);
//!
//! let e = |pairs: &[(&str, &str)]| Config::from_config(&Settings::new(pairs.iter().copied())).err();
//! assert_eq!(e(&[("mode", "loud")]).as_deref(), Some("limit is missing"));
//! let bad = [("limit", "many"), ("mode", "loud"), ("timeout", "1s")];
//! assert_eq!(e(&bad).as_deref(), Some(r#"limit = "many": expected a whole number from 0 to 4294967295"#));
//! let bad = [("limit", "1"), ("mode", "shout"), ("timeout", "1s")];
//! assert_eq!(e(&bad).as_deref(), Some(r#"mode = "shout": expected "quiet" or "loud""#));
//! let bad = [("limit", "1"), ("mode", "loud"), ("timeout", "1s"), ("limt", "2")];
//! assert_eq!(e(&bad).as_deref(), Some(r#"unknown configuration key "limt""#));
//! # Ok::<(), String>(())
//! ```
//!
//! For what a derive cannot say, implement [`FromConfig`] by hand with the
//! accessors of [`Settings`]:
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

mod de;

use std::cell::Cell;
use std::fmt::{self, Display};
use std::str::FromStr;

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};

use crate::__private::bindings::sluice::plugin::host;

/// A plugin's configuration, built from its settings by the SDK once per
/// instance, before any hook: an error refuses the instance (and the
/// plugin, at load) with `invalid NAME configuration: ERROR`. Hooks get it
/// as their first argument.
///
/// Every type that derives [`serde::Deserialize`] is one: it is read with
/// [`Settings::deserialize`], and then a key it did not read is an error
/// ([`Settings::finish`]). `()` is the configuration of a plugin that has
/// none (its settings are ignored). Implement it by hand for the others.
pub trait FromConfig: Sized + Send + Sync + 'static {
    /// Reads the configuration; the error names the key and what is wrong.
    fn from_config(settings: &Settings) -> Result<Self, String>;
}

impl<T: DeserializeOwned + Send + Sync + 'static> FromConfig for T {
    fn from_config(settings: &Settings) -> Result<T, String> {
        let config = settings.deserialize()?;
        settings.finish()?;
        Ok(config)
    }
}

/// One setting: key, value, and whether an accessor asked for it.
type Entry = (String, String, Cell<bool>);

/// The settings, as strings (the broker converts numbers and booleans),
/// in the configuration's order. The accessors remember which keys they
/// were asked for, so that [`finish`](Settings::finish) can refuse the
/// others.
#[derive(Debug, Default)]
pub struct Settings {
    entries: Vec<Entry>,
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
        let expected = one_of(words, |(w, _)| format!("{w:?}"));
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

    /// The settings read into `T`, a type that derives
    /// [`serde::Deserialize`] (what [`FromConfig`] does for such a type,
    /// before [`finish`](Settings::finish)). A struct's fields are the keys
    /// of their names (`#[serde(rename)]` and the other serde attributes
    /// apply), and each value is read from its text as its type wants:
    ///
    /// - `String` as it is; numbers (trimmed; integers in decimal or as
    ///   `0x` hex), `bool` (`true`, `false`), `char`;
    /// - an enum of unit variants by the variant's name (`rename_all`
    ///   helps);
    /// - `Vec<T>` (and other sequences): the items of the text, split at
    ///   commas and newlines, trimmed, empty items left out (as
    ///   [`list`](Settings::list));
    /// - [`std::time::Duration`]: a number and a unit, `ms`, `s`, `m`, `h`
    ///   or `d` (`500ms`, `1.5s`, `2h`);
    /// - `Option<T>`: `None` when the key is not set;
    /// - a nested struct or a map, from a group of keys: the field `tls`
    ///   of a struct type reads `tls.cert`, `tls.key`...; a map field `user`
    ///   of `HashMap<String, T>` reads `user.NAME.KEY` per NAME (which may
    ///   contain dots: the last dot ends it; with `T` a single value, NAME
    ///   is what follows `user.`).
    ///
    /// Types of their own deserialize from these as usual (a
    /// `#[serde(try_from = "String")]` type from the text, for example).
    /// What serde buffers before it knows the type (`#[serde(flatten)]`
    /// fields, untagged enums) gets every value as text, and takes every
    /// key it sees as read: read such parts with separate calls instead
    /// (`deserialize` for the top-level keys, [`value`](Settings::value)
    /// for a group), as the `limits` example plugin does.
    /// An error names the key and its value (`KEY = "VALUE": WHY`; for a
    /// list item, `KEY: "ITEM": WHY`), or the missing key
    /// (`KEY is missing`).
    ///
    /// The keys `T` reads count as asked for; others are not an error
    /// here, so that several calls (and other accessors) can read one
    /// configuration and [`finish`](Settings::finish) then refuse what
    /// none of them read.
    ///
    /// ```
    /// use serde::Deserialize;
    ///
    /// #[derive(Deserialize)]
    /// struct Rate {
    ///     per_sec: u32,
    ///     burst: Option<u32>,
    /// }
    ///
    /// let s = sluice_plugin_sdk::Settings::new([("per_sec", "10"), ("colour", "red")]);
    /// let rate: Rate = s.deserialize()?;
    /// assert_eq!((rate.per_sec, rate.burst), (10, None));
    /// assert_eq!(s.finish(), Err(r#"unknown configuration key "colour""#.to_owned()));
    /// # Ok::<(), String>(())
    /// ```
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T, String> {
        de::root(&self.entries)
    }

    /// The value of `key`, or the group of keys under `key.`, read into
    /// `T` as [`deserialize`](Settings::deserialize) reads a field:
    /// `Ok(None)` if none is set.
    ///
    /// ```
    /// use std::collections::HashMap;
    ///
    /// let s = sluice_plugin_sdk::Settings::new([
    ///     ("code", "0x87"),
    ///     ("topics", "a/#, b"),
    ///     ("user.alice.rate", "5"),
    /// ]);
    /// assert_eq!(s.value::<u8>("code")?, Some(0x87));
    /// assert_eq!(s.value::<Vec<String>>("topics")?, Some(vec!["a/#".into(), "b".into()]));
    /// let rates: HashMap<String, HashMap<String, u32>> = s.value("user")?.unwrap_or_default();
    /// assert_eq!(rates["alice"]["rate"], 5);
    /// assert_eq!(s.value::<u8>("other")?, None);
    /// let e = s.value::<bool>("code").err();
    /// assert_eq!(e.as_deref(), Some(r#"code = "0x87": expected true or false"#));
    /// # Ok::<(), String>(())
    /// ```
    pub fn value<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, String> {
        de::at_key(&self.entries, key)
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

/// `a`, `a or b`, `a, b or c`: the items' names, for an error.
pub(crate) fn one_of<T>(items: &[T], name: impl Fn(&T) -> String) -> String {
    let names: Vec<String> = items.iter().map(name).collect();
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => names.concat(),
    }
}

/// What a plugin answers for what it has nothing to say about (a user it
/// does not know, a password that is not its kind, a service that did not
/// answer): the setting `"next"` (the next plugin decides; the default)
/// or `"deny"` (refuse).
///
/// ```
/// use serde::Deserialize;
/// use sluice_plugin_sdk::{FromConfig, Settings, config::Otherwise};
///
/// #[derive(Deserialize)]
/// struct Config {
///     #[serde(default)]
///     unknown: Otherwise,
/// }
///
/// let c = Config::from_config(&Settings::new([("unknown", "deny")]))?;
/// assert_eq!(c.unknown, Otherwise::Deny);
/// assert_eq!(Config::from_config(&Settings::default())?.unknown, Otherwise::Next);
/// let e = Config::from_config(&Settings::new([("unknown", "allow")])).err();
/// assert_eq!(e.as_deref(), Some(r#"unknown = "allow": expected "next" or "deny""#));
/// # Ok::<(), String>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Otherwise {
    /// Leave it to the next plugin.
    #[default]
    Next,
    /// Refuse it.
    Deny,
}

impl<'de> Deserialize<'de> for Otherwise {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match String::deserialize(d)?.trim() {
            "next" => Ok(Otherwise::Next),
            "deny" => Ok(Otherwise::Deny),
            _ => Err(D::Error::custom(r#"expected "next" or "deny""#)),
        }
    }
}

/// A secret setting (a key, a token, a password): its `Debug` form shows
/// no more than that it is set, and an empty one is refused. The bytes are
/// the setting's text.
///
/// ```
/// use serde::Deserialize;
/// use sluice_plugin_sdk::{FromConfig, Settings, config::Secret};
///
/// #[derive(Debug, Deserialize)]
/// struct Config {
///     key: Secret,
/// }
///
/// let c = Config::from_config(&Settings::new([("key", "hunter2")]))?;
/// assert_eq!(c.key.expose(), b"hunter2");
/// assert_eq!(format!("{c:?}"), "Config { key: Secret(..) }");
/// let e = Config::from_config(&Settings::new([("key", "")])).err();
/// assert_eq!(e.as_deref(), Some(r#"key = "": an empty secret"#));
/// # Ok::<(), String>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// The secret itself.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl From<Vec<u8>> for Secret {
    fn from(bytes: Vec<u8>) -> Self {
        Secret(bytes)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if text.is_empty() {
            return Err(D::Error::custom("an empty secret"));
        }
        Ok(Secret(text.into_bytes()))
    }
}

/// A whole number setting of at least `MIN` (a rate, a size, a count for
/// which small values make no sense): `Option<AtLeast<1, u32>>` is an
/// optional positive `u32`.
///
/// ```
/// use serde::Deserialize;
/// use sluice_plugin_sdk::{FromConfig, Settings, config::AtLeast};
///
/// #[derive(Deserialize)]
/// struct Config {
///     max_packet_size: AtLeast<64, u32>,
/// }
///
/// let c = Config::from_config(&Settings::new([("max_packet_size", "1024")]))?;
/// assert_eq!(c.max_packet_size.get(), 1024);
/// let e = Config::from_config(&Settings::new([("max_packet_size", "10")])).err();
/// assert_eq!(e.as_deref(), Some(r#"max_packet_size = "10": expected a whole number, at least 64"#));
/// # Ok::<(), String>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AtLeast<const MIN: u64, T>(T);

impl<const MIN: u64, T: Copy> AtLeast<MIN, T> {
    /// The number.
    pub fn get(self) -> T {
        self.0
    }
}

impl<'de, const MIN: u64, T> Deserialize<'de> for AtLeast<MIN, T>
where
    T: Deserialize<'de> + Into<u64> + Copy,
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = T::deserialize(d)?;
        if n.into() < MIN {
            return Err(D::Error::custom(format!(
                "expected a whole number, at least {MIN}"
            )));
        }
        Ok(AtLeast(n))
    }
}
