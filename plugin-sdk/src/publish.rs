//! Publishing messages from a plugin, as a client would: to the topic in
//! the plugin's mountpoint (`mountpoint` in `[plugin.NAME]`), at most
//! `publish_per_sec` messages a second. The message passes the other
//! plugins' `auth-on-publish` (never this plugin's own publish hooks, so a
//! plugin cannot loop on its own messages), then reaches subscribers and,
//! with `retain`, the retained store.
//!
//! ```no_run
//! use sluice_plugin_sdk::{Qos, publish};
//!
//! publish::message("audit/connected/dev-1", b"{}", Qos::AtLeastOnce, false)?;
//! # Ok::<(), publish::PublishError>(())
//! ```

use crate::__private::bindings::sluice::plugin::host;
use crate::{MessageProperties, Qos};
pub use host::{Publication, PublishError};

/// Publishes `payload` to `topic`. Returns once the broker has queued it;
/// what the other plugins decide is the broker's log's and metrics'.
///
/// ```no_run
/// sluice_plugin_sdk::publish::message("status/bridge", b"up", sluice_plugin_sdk::Qos::AtMostOnce, true)?;
/// # Ok::<(), sluice_plugin_sdk::publish::PublishError>(())
/// ```
pub fn message(topic: &str, payload: &[u8], qos: Qos, retain: bool) -> Result<(), PublishError> {
    host::publish(&Publication {
        topic: topic.to_owned(),
        payload: payload.to_vec(),
        qos,
        retain,
        properties: None,
    })
}

/// Publishes `payload` to `topic` with MQTT 5 properties (user properties,
/// content type, message expiry, ...).
///
/// ```no_run
/// use sluice_plugin_sdk::{MessageProperties, Qos, publish};
///
/// let mut props = MessageProperties::new();
/// props.content_type = Some("application/json".into());
/// publish::with_properties("audit/x", b"{}", Qos::AtLeastOnce, false, props)?;
/// # Ok::<(), publish::PublishError>(())
/// ```
pub fn with_properties(
    topic: &str,
    payload: &[u8],
    qos: Qos,
    retain: bool,
    properties: MessageProperties,
) -> Result<(), PublishError> {
    host::publish(&Publication {
        topic: topic.to_owned(),
        payload: payload.to_vec(),
        qos,
        retain,
        properties: Some(properties),
    })
}
