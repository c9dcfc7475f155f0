//! The broker's log, under this plugin's name. (A plugin's stdout and
//! stderr reach it too, at info and warn.)
//!
//! The macros [`trace!`](crate::trace), [`debug!`](crate::debug),
//! [`info!`](crate::info), [`warn!`](crate::warn) and
//! [`error!`](crate::error) take `format!` arguments; the functions here
//! take a string.
//!
//! ```no_run
//! use sluice_plugin_sdk::{info, log, warn};
//!
//! info!("ready");
//! warn!("{} rules ignored", 2);
//! log::debug("a plain message");
//! ```

use crate::__private::bindings::sluice::plugin::host;
pub use host::LogLevel as Level;

/// Writes `message` at `level`.
///
/// ```no_run
/// use sluice_plugin_sdk::log::{self, Level};
///
/// let verbose = true;
/// log::log(if verbose { Level::Info } else { Level::Debug }, "hello");
/// ```
pub fn log(level: Level, message: &str) {
    host::log(level, message);
}

/// Writes `message` at trace level.
///
/// ```no_run
/// sluice_plugin_sdk::log::trace("entering on-deliver");
/// ```
pub fn trace(message: &str) {
    log(Level::Trace, message);
}

/// Writes `message` at debug level.
///
/// ```no_run
/// sluice_plugin_sdk::log::debug("cache miss");
/// ```
pub fn debug(message: &str) {
    log(Level::Debug, message);
}

/// Writes `message` at info level.
///
/// ```no_run
/// sluice_plugin_sdk::log::info("ready");
/// ```
pub fn info(message: &str) {
    log(Level::Info, message);
}

/// Writes `message` at warn level.
///
/// ```no_run
/// sluice_plugin_sdk::log::warn("unknown key ignored");
/// ```
pub fn warn(message: &str) {
    log(Level::Warn, message);
}

/// Writes `message` at error level.
///
/// ```no_run
/// sluice_plugin_sdk::log::error("backend unreachable");
/// ```
pub fn error(message: &str) {
    log(Level::Error, message);
}

/// Writes a `format!` message at trace level.
///
/// ```no_run
/// let n = 3;
/// sluice_plugin_sdk::trace!("{n} rules");
/// ```
#[macro_export]
macro_rules! trace {
    ($($arg:tt)+) => {
        $crate::log::trace(&::std::format!($($arg)+))
    };
}

/// Writes a `format!` message at debug level.
///
/// ```no_run
/// let n = 3;
/// sluice_plugin_sdk::debug!("{n} rules");
/// ```
#[macro_export]
macro_rules! debug {
    ($($arg:tt)+) => {
        $crate::log::debug(&::std::format!($($arg)+))
    };
}

/// Writes a `format!` message at info level.
///
/// ```no_run
/// let n = 3;
/// sluice_plugin_sdk::info!("{n} rules");
/// ```
#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => {
        $crate::log::info(&::std::format!($($arg)+))
    };
}

/// Writes a `format!` message at warn level.
///
/// ```no_run
/// let n = 3;
/// sluice_plugin_sdk::warn!("{n} rules");
/// ```
#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => {
        $crate::log::warn(&::std::format!($($arg)+))
    };
}

/// Writes a `format!` message at error level.
///
/// ```no_run
/// let n = 3;
/// sluice_plugin_sdk::error!("{n} rules");
/// ```
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => {
        $crate::log::error(&::std::format!($($arg)+))
    };
}
