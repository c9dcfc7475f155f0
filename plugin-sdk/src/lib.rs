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
//! use sluice_plugin_sdk::{DeliverModifiers, DeliverVerdict, Payload, Plugin, Qos, SubscriberId};
//!
//! /// Upper-cases the payloads delivered on `shout/#`.
//! struct Shout;
//!
//! #[sluice_plugin_sdk::plugin]
//! impl Plugin for Shout {
//!     fn on_deliver(
//!         _username: Option<String>,
//!         _subscriber_id: SubscriberId,
//!         _qos: Qos,
//!         topic: String,
//!         payload: &Payload,
//!         _retain: bool,
//!     ) -> DeliverVerdict {
//!         if !topic.starts_with("shout/") {
//!             return DeliverVerdict::Next;
//!         }
//!         let loud = payload.read().to_ascii_uppercase();
//!         DeliverVerdict::Ok(Some(DeliverModifiers::new().payload(loud)))
//!     }
//! }
//! # fn main() {}
//! ```
//!
//! The plugin's crate is a `cdylib` built for `wasm32-wasip2`:
//!
//! ```toml
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! sluice-plugin-sdk = { path = "../../plugin-sdk" }
//! ```
//!
//! `cargo build --release --target wasm32-wasip2` then gives the `.wasm` to
//! put in the broker's plugin directory. One crate holds one plugin.
//!
//! What the broker offers every plugin is in [`log`], [`config`],
//! [`kv`] and [`publish`]; the hooks' arguments and answers are the types at the root of
//! this crate, with constructors for the records of optional fields
//! ([`RegisterModifiers::new`], [`PublishModifiers::new`],
//! [`DeliverModifiers::new`], [`MessageProperties::new`]).
//!
//! The WIT files come from the repository's `wit/` directory, which both
//! this crate and its macro read at compile time: the SDK is used as a path
//! dependency from within the Sluice repository.

mod builders;
pub mod config;
pub mod kv;
pub mod log;
mod plugin;
pub mod publish;

pub use plugin::Plugin;
/// Registers a [`Plugin`] implementation as the component's exports.
///
/// Put it on the `impl Plugin for T` block: the block is kept as written,
/// and the component exports one WIT interface per hook the block defines
/// (`init` exports `lifecycle`), each forwarding to `T`. Use it once per
/// crate. The `impl` must be in a module (not in a function body), for a
/// type without generic parameters.
///
/// ```rust,standalone_crate
/// use sluice_plugin_sdk::{Plugin, SubscriberId};
///
/// struct Audit;
///
/// // Exports `on-client-gone` only.
/// #[sluice_plugin_sdk::plugin]
/// impl Plugin for Audit {
///     fn on_client_gone(id: SubscriberId) {
///         sluice_plugin_sdk::log::info(&format!("{} left", id.client_id));
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

/// What the `#[plugin]` expansion uses. Not a public API.
#[doc(hidden)]
pub mod __private {
    pub use wit_bindgen;

    /// The types of the hook signatures, for the generated adapters.
    pub mod prelude {
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
    /// (`with`), so that every plugin shares these Rust types.
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
            path: "../wit",
            generate_all,
            generate_unused_types: true,
            additional_derives: [PartialEq, Eq],
        });
    }
}
