//! The broker's log, under this plugin's name. (A plugin's stdout and
//! stderr reach it too, at info and warn.)
//!
//! ```no_run
//! use sluice_plugin_sdk::log;
//!
//! log::info("ready");
//! log::warn(&format!("{} rules ignored", 2));
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
