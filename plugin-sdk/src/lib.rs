//! Write plugins for the Sluice MQTT broker in idiomatic Rust.
//!
//! A plugin is a WebAssembly component (`wasm32-wasip2`) exporting the
//! hooks of the WIT package `sluice:plugin@0.1.0` it implements. With this
//! crate, you implement the [`Plugin`] trait with only the hooks you care
//! about and mark the `impl` block with [`#[plugin]`](plugin): the
//! component then exports exactly those hooks (the broker never calls, nor
//! pays for, the others), and the generated WebAssembly bindings stay out
//! of sight.
//!
//! ```rust,standalone_crate
//! use sluice_plugin_sdk::{DeliverModifiers, DeliverRequest, DeliverVerdictM5, Plugin};
//!
//! /// Upper-cases the payloads delivered on `shout/#`, for MQTT 3 and 5
//! /// subscribers alike.
//! struct Shout;
//!
//! #[sluice_plugin_sdk::plugin]
//! impl Plugin for Shout {
//!     type Config = ();
//!
//!     fn on_deliver_any(_: &(), req: DeliverRequest<'_>) -> DeliverVerdictM5 {
//!         if !req.topic.starts_with("shout/") {
//!             return DeliverVerdictM5::Next;
//!         }
//!         let loud = req.payload.read().to_ascii_uppercase();
//!         DeliverVerdictM5::Ok(Some(DeliverModifiers::new().payload(loud)))
//!     }
//! }
//! # fn main() {}
//! ```
//!
//! - Each hook takes the plugin's configuration (`type Config`, parsed once
//!   per instance by the SDK: see [`FromConfig`]) and one request struct
//!   ([`RegisterRequest`], [`PublishRequest`], ...).
//! - A hook with an MQTT 3 and an MQTT 5 form can be implemented once for
//!   both (`auth_on_register_any`, `auth_on_publish_any`, ...): the request
//!   then carries the MQTT 5 fields as options, and the answer is the MQTT
//!   5 one, converted for MQTT 3.x clients.
//! - [`reason`] names the MQTT 5 reason codes; [`info!`], [`debug!`] and
//!   the other logging macros write to the broker's log; [`kv`] is the
//!   plugin's key-value store; [`publish`] publishes messages.
//! - The configuration can be any type that derives `serde::Deserialize`
//!   ([`config`]); [`topic`] matches topics and filters as the broker
//!   does; [`template`] reads text with `%c`-style placeholders.
//!
//! The plugin's crate is a `cdylib` built for `wasm32-wasip2`:
//!
//! ```toml
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! sluice-plugin-sdk = { path = "../sluice/plugin-sdk" }  # or { git = "..." }
//! # For a configuration that derives `Deserialize` (see `config`):
//! serde = { version = "1", default-features = false, features = ["std", "derive"] }
//! ```
//!
//! `cargo build --release --target wasm32-wasip2` then gives the `.wasm` to
//! put in the broker's plugin directory. One crate holds one plugin.
//!
//! The SDK carries its own copy of the broker's WIT files (`wit/`, kept
//! identical to the repository's by `cargo xtask sync-wit` and a test), so
//! it builds from any checkout, path or git dependency.

mod builders;
pub mod config;
mod convert;
pub mod kv;
pub mod log;
#[cfg(feature = "password")]
pub mod password;
mod plugin;
pub mod publish;
pub mod reason;
mod requests;
mod runtime;
pub mod template;
pub mod topic;

pub use config::{FromConfig, Settings};
pub use plugin::Plugin;
pub use requests::{
    DeliverRequest, EnhancedAuthRequest, MessageDropEvent, OfflineMessageEvent, PublishRequest,
    PublishedEvent, RegisterRequest, RegisteredEvent, SubscribeRequest, SubscribedEvent,
    UnsubscribeRequest, UnsubscribedEvent,
};
/// Registers a [`Plugin`] implementation as the component's exports.
///
/// Put it on the `impl Plugin for T` block: the block is kept as written,
/// and the component exports one WIT interface per hook the block defines
/// (two for an `_any` hook: the MQTT 3 and the MQTT 5 form), each
/// forwarding to `T`, plus `lifecycle` (`init`), which parses the
/// configuration. Use it once per crate. The `impl` must be in a module
/// (not in a function body), for a type without generic parameters.
///
/// ```rust,standalone_crate
/// use sluice_plugin_sdk::{Plugin, SubscriberId};
///
/// struct Audit;
///
/// // Exports `on-client-gone` (and `lifecycle`).
/// #[sluice_plugin_sdk::plugin]
/// impl Plugin for Audit {
///     type Config = ();
///
///     fn on_client_gone(_: &(), id: SubscriberId) {
///         sluice_plugin_sdk::info!("{} left", id.client_id);
///     }
/// }
/// # fn main() {}
/// ```
pub use sluice_plugin_sdk_macros::plugin;

use __private::bindings::sluice::plugin::{publish_types, subscribe_types, types};

pub use publish_types::{
    DeliverAuthVerdict, DeliverVerdict, DeliverVerdictM5, DropReason, PublishVerdict,
    PublishVerdictM5,
};
pub use subscribe_types::{
    SubscribeChanges, SubscribeVerdict, SubscribeVerdictM5, TopicRequest, TopicResult,
    TopicResultM5, UnsubscribeChanges, UnsubscribeVerdict, UnsubscribeVerdictM5, Unsubscribed,
};
pub use types::{
    AuthRequest, AuthStep, AuthVerdict, ClientCertificate, ConnectProperties, Connection,
    DeliverModifiers, Denial, Listener, ListenerKind, M5Denial, M5Error, MessageProperties,
    Payload, Peer, PublishModifiers, Qos, ReasonCode, RegisterModifiers, RegisterVerdict,
    RegisterVerdictM5, RetainHandling, SubscribeProperties, SubscriberId, SubscriptionOptions,
    TopicSubscription, UserProperties,
};

/// Seconds since 1970-01-01 UTC by the broker host's clock (0 if the clock
/// is set before 1970): for expiry times, such as a token's `exp` or a
/// cache entry's.
///
/// ```
/// let now = sluice_plugin_sdk::unix_time();
/// assert!(now > 1_600_000_000);
/// ```
pub fn unix_time() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What the `#[plugin]` expansion uses. Not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::runtime::{Fallback, hook, init};
    pub use wit_bindgen;

    /// The types of the hook signatures, for the generated adapters.
    pub mod prelude {
        pub use crate::requests::*;
        pub use crate::{
            AuthRequest, AuthVerdict, ConnectProperties, Connection, DeliverAuthVerdict,
            DeliverVerdict, DeliverVerdictM5, DropReason, MessageProperties, Payload, Peer, Plugin,
            PublishVerdict, PublishVerdictM5, Qos, RegisterVerdict, RegisterVerdictM5,
            SubscribeProperties, SubscribeVerdict, SubscribeVerdictM5, SubscriberId, TopicRequest,
            TopicSubscription, UnsubscribeVerdict, UnsubscribeVerdictM5, Unsubscribed,
            UserProperties,
        };
    }

    /// The bindings of everything a plugin imports: the host functions and
    /// the types of `types`, `subscribe-types` and `publish-types`. Each
    /// plugin's own bindings (`#[plugin]`) map these interfaces here
    /// (`with`), so that every plugin shares these Rust types. Read from
    /// this crate's copy of the WIT (`wit/`, relative to its manifest).
    #[allow(unsafe_code, reason = "generated guest bindings")]
    pub mod bindings {
        wit_bindgen::generate!({
            inline: r#"
                package sluice:plugin-sdk;
                world sdk {
                    import sluice:plugin/host@0.1.0;
                    import sluice:plugin/types@0.1.0;
                    import sluice:plugin/subscribe-types@0.1.0;
                    import sluice:plugin/publish-types@0.1.0;
                }
            "#,
            path: "wit",
            generate_all,
            generate_unused_types: true,
            additional_derives: [PartialEq, Eq],
        });
    }
}
