//! The [`Plugin`] trait: one associated function per hook.

use crate::{
    AuthVerdict, DeliverAuthVerdict, DeliverRequest, DeliverVerdict, DeliverVerdictM5,
    EnhancedAuthRequest, FromConfig, MessageDropEvent, OfflineMessageEvent, PublishRequest,
    PublishVerdict, PublishVerdictM5, PublishedEvent, RegisterRequest, RegisterVerdict,
    RegisterVerdictM5, RegisteredEvent, SubscribeRequest, SubscribeVerdict, SubscribeVerdictM5,
    SubscribedEvent, SubscriberId, UnsubscribeRequest, UnsubscribeVerdict, UnsubscribeVerdictM5,
    UnsubscribedEvent,
};

/// A Sluice plugin: implement the hooks you need, and register the
/// implementation with [`#[plugin]`](crate::plugin).
///
/// Every hook is an associated function taking the plugin's configuration
/// ([`Config`](Plugin::Config), parsed by the SDK once per instance) and
/// the hook's request. There is no `self`: the broker runs several
/// instances of a plugin and replaces any that fails, so keep state in
/// [`kv`](crate::kv). The component exports exactly the hooks the `impl`
/// block defines; the default bodies (`Next` for chains, nothing for
/// notifications) are never run by the broker.
///
/// Chains (`auth_*`, `on_auth_m5`, `on_unsubscribe*`, `on_deliver*`) are
/// walked in plugin order: `Ok` or `Error` stops the chain, `Next` passes
/// to the following plugin. Notifications reach every plugin that
/// implements them, after the fact.
///
/// **MQTT 3 and 5.** A hook with two forms (`auth_on_register` and
/// `auth_on_register_m5`...) can be implemented as either or both, or
/// once for both as `*_any`: the request carries the MQTT 5 fields as
/// options (`Some` for MQTT 5 clients), and the MQTT 5 answer is
/// converted for MQTT 3.x clients (see the `From` implementations of the
/// MQTT 3 verdicts). An `_any` hook cannot be combined with its two forms.
/// A plugin with only the MQTT 3 form serves MQTT 5 clients with it too
/// (with `properties: None`); with only the `_m5` form, MQTT 3.x clients
/// get the `_m5` form with empty properties.
///
/// ```rust,standalone_crate
/// use sluice_plugin_sdk::{FromConfig, M5Denial, Plugin, RegisterModifiers, RegisterRequest};
/// use sluice_plugin_sdk::{RegisterVerdictM5, Settings, SubscriberId, reason};
///
/// struct Tenants;
///
/// struct Config {
///     admin: String,
/// }
///
/// impl FromConfig for Config {
///     fn from_config(s: &Settings) -> Result<Self, String> {
///         Ok(Config { admin: s.get("admin").unwrap_or("admin").to_owned() })
///     }
/// }
///
/// #[sluice_plugin_sdk::plugin]
/// impl Plugin for Tenants {
///     type Config = Config;
///
///     // Puts each user but the admin in a topic tree of its own, whatever
///     // its protocol version.
///     fn auth_on_register_any(config: &Config, req: RegisterRequest) -> RegisterVerdictM5 {
///         let Some(user) = req.username else {
///             return RegisterVerdictM5::Error(M5Denial::new(reason::NOT_AUTHORIZED));
///         };
///         if user == config.admin {
///             return RegisterVerdictM5::Ok(None);
///         }
///         let tree = SubscriberId { mountpoint: user, ..req.subscriber_id };
///         RegisterVerdictM5::Ok(Some(RegisterModifiers::new().subscriber_id(tree)))
///     }
/// }
/// # fn main() {}
/// ```
#[allow(unused_variables, reason = "the default bodies ignore their arguments")]
pub trait Plugin {
    /// The plugin's configuration, read from `[plugin.NAME.config]` once
    /// per instance (`()` for none): an error refuses the plugin at load.
    type Config: FromConfig;

    /// Called once per instance (at load, and when the broker adds or
    /// replaces one), after the configuration is read and before any
    /// hook. An error refuses the plugin at load and is logged.
    ///
    /// ```
    /// # struct Rules { count: usize }
    /// fn init(rules: &Rules) -> Result<(), String> {
    ///     sluice_plugin_sdk::debug!("{} rules", rules.count);
    ///     Ok(())
    /// }
    /// ```
    fn init(config: &Self::Config) -> Result<(), String> {
        Ok(())
    }

    // Session hooks (session.wit).

    /// Authentication at CONNECT of MQTT 3.x clients (and of MQTT 5
    /// clients for plugins without an MQTT 5 form: then
    /// `InvalidCredentials` refuses with 0x86 and `NotAuthorized` with
    /// 0x87), after the broker's own checks. A chain; `Ok` may change the
    /// registration.
    ///
    /// ```
    /// # use sluice_plugin_sdk::{Denial, RegisterRequest, RegisterVerdict};
    /// fn auth_on_register(_: &(), req: RegisterRequest) -> RegisterVerdict {
    ///     match (req.username.as_deref(), req.password.as_deref()) {
    ///         (Some("admin"), Some(b"secret")) => RegisterVerdict::Ok(None),
    ///         (Some("admin"), _) => RegisterVerdict::Error(Denial::InvalidCredentials("bad password".into())),
    ///         _ => RegisterVerdict::Next,
    ///     }
    /// }
    /// ```
    fn auth_on_register(config: &Self::Config, req: RegisterRequest) -> RegisterVerdict {
        RegisterVerdict::Next
    }

    /// Authentication at CONNECT of MQTT 5 clients (after enhanced
    /// authentication, if the client asked for it). A chain.
    ///
    /// ```
    /// # use sluice_plugin_sdk::{M5Denial, RegisterRequest, RegisterVerdictM5, reason};
    /// fn auth_on_register_m5(_: &(), req: RegisterRequest) -> RegisterVerdictM5 {
    ///     if req.conn.client_certificate.is_some() {
    ///         return RegisterVerdictM5::Ok(None);
    ///     }
    ///     RegisterVerdictM5::Error(M5Denial::new(reason::NOT_AUTHORIZED).reason_string("certificate required"))
    /// }
    /// ```
    fn auth_on_register_m5(config: &Self::Config, req: RegisterRequest) -> RegisterVerdictM5 {
        RegisterVerdictM5::Next
    }

    /// [`auth_on_register`](Self::auth_on_register) and
    /// [`auth_on_register_m5`](Self::auth_on_register_m5) at once. For
    /// MQTT 3.x clients, 0x86 refuses with CONNACK 4 and other codes with
    /// CONNACK 5; `receive-maximum` and `topic-alias-maximum` are left out.
    fn auth_on_register_any(config: &Self::Config, req: RegisterRequest) -> RegisterVerdictM5 {
        RegisterVerdictM5::Next
    }

    /// Each step of an MQTT 5 enhanced-authentication exchange (AUTH
    /// packets). Keep state between steps in [`kv`](crate::kv), keyed by
    /// client: consecutive steps may reach different instances. A chain.
    ///
    /// ```
    /// # use sluice_plugin_sdk::{AuthVerdict, EnhancedAuthRequest};
    /// fn on_auth_m5(_: &(), req: EnhancedAuthRequest) -> AuthVerdict {
    ///     if req.auth.method != "TOKEN" {
    ///         return AuthVerdict::Next;
    ///     }
    ///     match req.auth.data.as_deref() {
    ///         Some(b"let-me-in") => AuthVerdict::Success(None),
    ///         _ => AuthVerdict::ContinueAuthentication(Some(b"token?".to_vec())),
    ///     }
    /// }
    /// ```
    fn on_auth_m5(config: &Self::Config, req: EnhancedAuthRequest) -> AuthVerdict {
        AuthVerdict::Next
    }

    /// A client's registration succeeded (CONNACK sent). A notification.
    fn on_register(config: &Self::Config, event: RegisteredEvent) {}

    /// An MQTT 5 client's registration succeeded. A notification.
    fn on_register_m5(config: &Self::Config, event: RegisteredEvent) {}

    /// `on_register` and `on_register_m5` at once.
    ///
    /// ```
    /// # use sluice_plugin_sdk::RegisteredEvent;
    /// fn on_register_any(_: &(), e: RegisteredEvent) {
    ///     let v = if e.is_m5() { 5 } else { 3 };
    ///     sluice_plugin_sdk::info!("{} (MQTT {v}) from {}", e.subscriber_id.client_id, e.peer.addr);
    /// }
    /// ```
    fn on_register_any(config: &Self::Config, event: RegisteredEvent) {}

    /// A connection attached to a session (new or resumed), before
    /// `on_register`. A notification.
    fn on_client_wakeup(config: &Self::Config, subscriber_id: SubscriberId) {}

    /// The connection of a persistent session went away; the session lives
    /// on. A notification.
    fn on_client_offline(config: &Self::Config, subscriber_id: SubscriberId) {}

    /// The connection of a session that ends with it (clean session /
    /// expiry 0) went away. A notification.
    ///
    /// ```
    /// # use sluice_plugin_sdk::SubscriberId;
    /// fn on_client_gone(_: &(), id: SubscriberId) {
    ///     sluice_plugin_sdk::kv::delete(&format!("online/{}", id.client_id));
    /// }
    /// ```
    fn on_client_gone(config: &Self::Config, subscriber_id: SubscriberId) {}

    /// An offline persistent session expired and was removed. A
    /// notification.
    fn on_session_expired(config: &Self::Config, subscriber_id: SubscriberId) {}

    // Subscribe hooks (subscribe.wit).

    /// Authorisation of every SUBSCRIBE of MQTT 3.x clients (and of MQTT 5
    /// clients for plugins without an MQTT 5 form), before anything is
    /// subscribed. Invalid filters never reach it. A chain.
    ///
    /// ```
    /// # use sluice_plugin_sdk::{SubscribeRequest, SubscribeVerdict, TopicResult};
    /// fn auth_on_subscribe(_: &(), req: SubscribeRequest) -> SubscribeVerdict {
    ///     let results = req
    ///         .topics
    ///         .into_iter()
    ///         .map(|t| if t.filter.starts_with('#') { TopicResult::Rejected } else { TopicResult::Granted(t.into()) })
    ///         .collect();
    ///     SubscribeVerdict::Ok(Some(results))
    /// }
    /// ```
    fn auth_on_subscribe(config: &Self::Config, req: SubscribeRequest) -> SubscribeVerdict {
        SubscribeVerdict::Next
    }

    /// Authorisation of every SUBSCRIBE of MQTT 5 clients. A chain.
    fn auth_on_subscribe_m5(config: &Self::Config, req: SubscribeRequest) -> SubscribeVerdictM5 {
        SubscribeVerdictM5::Next
    }

    /// `auth_on_subscribe` and `auth_on_subscribe_m5` at once. For MQTT
    /// 3.x clients a rejected topic gets SUBACK 0x80 whatever its code.
    ///
    /// ```
    /// # use sluice_plugin_sdk::{M5Error, SubscribeRequest, SubscribeVerdictM5, reason};
    /// fn auth_on_subscribe_any(_: &(), req: SubscribeRequest) -> SubscribeVerdictM5 {
    ///     match req.username {
    ///         Some(_) => SubscribeVerdictM5::Ok(None),
    ///         None => SubscribeVerdictM5::Error(M5Error::new(reason::NOT_AUTHORIZED).reason_string("log in first")),
    ///     }
    /// }
    /// ```
    fn auth_on_subscribe_any(config: &Self::Config, req: SubscribeRequest) -> SubscribeVerdictM5 {
        SubscribeVerdictM5::Next
    }

    /// A SUBSCRIBE was stored (SUBACK sent), with the accepted topics only,
    /// as subscribed. A notification.
    fn on_subscribe(config: &Self::Config, event: SubscribedEvent) {}

    /// An MQTT 5 SUBSCRIBE was stored. A notification.
    fn on_subscribe_m5(config: &Self::Config, event: SubscribedEvent) {}

    /// `on_subscribe` and `on_subscribe_m5` at once.
    fn on_subscribe_any(config: &Self::Config, event: SubscribedEvent) {}

    /// Every UNSUBSCRIBE of MQTT 3.x clients (and of MQTT 5 clients for
    /// plugins without an MQTT 5 form), before anything is removed. A
    /// chain that may rewrite the topics, not a permission check.
    ///
    /// ```
    /// # use sluice_plugin_sdk::{UnsubscribeRequest, UnsubscribeVerdict};
    /// fn on_unsubscribe(_: &(), req: UnsubscribeRequest) -> UnsubscribeVerdict {
    ///     let topics = req.topics.into_iter().map(|t| t.replace("legacy/", "v2/")).collect();
    ///     UnsubscribeVerdict::Ok(Some(topics))
    /// }
    /// ```
    fn on_unsubscribe(config: &Self::Config, req: UnsubscribeRequest) -> UnsubscribeVerdict {
        UnsubscribeVerdict::Next
    }

    /// Every UNSUBSCRIBE of MQTT 5 clients. A chain.
    fn on_unsubscribe_m5(config: &Self::Config, req: UnsubscribeRequest) -> UnsubscribeVerdictM5 {
        UnsubscribeVerdictM5::Next
    }

    /// `on_unsubscribe` and `on_unsubscribe_m5` at once.
    fn on_unsubscribe_any(config: &Self::Config, req: UnsubscribeRequest) -> UnsubscribeVerdictM5 {
        UnsubscribeVerdictM5::Next
    }

    /// Subscriptions were removed (by an UNSUBSCRIBE, or all of them with
    /// the session). A notification.
    fn on_topic_unsubscribed(config: &Self::Config, event: UnsubscribedEvent) {}

    // Publish hooks (publish.wit).

    /// Authorisation of every PUBLISH of MQTT 3.x clients (and of MQTT 5
    /// clients for plugins without an MQTT 5 form), and of every client's
    /// Will at CONNECT (`is_will`). A chain; `Ok` may change the message,
    /// or let the broker cache the acceptance
    /// ([`PublishModifiers::cache_secs`](crate::PublishModifiers::cache_secs)).
    ///
    /// ```
    /// # use sluice_plugin_sdk::{PublishModifiers, PublishRequest, PublishVerdict};
    /// fn auth_on_publish(_: &(), req: PublishRequest<'_>) -> PublishVerdict {
    ///     if req.topic.starts_with("$admin/") {
    ///         return PublishVerdict::Error(format!("{} is reserved", req.topic));
    ///     }
    ///     PublishVerdict::Ok(Some(PublishModifiers::new().cache_secs(60)))
    /// }
    /// ```
    fn auth_on_publish(config: &Self::Config, req: PublishRequest<'_>) -> PublishVerdict {
        PublishVerdict::Next
    }

    /// Authorisation of every PUBLISH (and Will) of MQTT 5 clients. A chain.
    fn auth_on_publish_m5(config: &Self::Config, req: PublishRequest<'_>) -> PublishVerdictM5 {
        PublishVerdictM5::Next
    }

    /// `auth_on_publish` and `auth_on_publish_m5` at once.
    ///
    /// ```
    /// # use sluice_plugin_sdk::{M5Error, PublishRequest, PublishVerdictM5, reason};
    /// fn auth_on_publish_any(_: &(), req: PublishRequest<'_>) -> PublishVerdictM5 {
    ///     if req.payload.size() > 64 * 1024 {
    ///         return PublishVerdictM5::Error(M5Error::new(reason::PACKET_TOO_LARGE));
    ///     }
    ///     PublishVerdictM5::Next
    /// }
    /// ```
    fn auth_on_publish_any(config: &Self::Config, req: PublishRequest<'_>) -> PublishVerdictM5 {
        PublishVerdictM5::Next
    }

    /// A message was routed, as routed (after `auth_on_publish`'s
    /// changes). A notification.
    fn on_publish(config: &Self::Config, event: PublishedEvent<'_>) {}

    /// A message from an MQTT 5 client was routed. A notification.
    fn on_publish_m5(config: &Self::Config, event: PublishedEvent<'_>) {}

    /// `on_publish` and `on_publish_m5` at once.
    ///
    /// ```
    /// # use sluice_plugin_sdk::PublishedEvent;
    /// fn on_publish_any(_: &(), e: PublishedEvent<'_>) {
    ///     sluice_plugin_sdk::trace!("{}: {} bytes", e.topic, e.payload.size());
    /// }
    /// ```
    fn on_publish_any(config: &Self::Config, event: PublishedEvent<'_>) {}

    /// May this subscriber read this message? Asked for each message about
    /// to be sent to a subscriber of any protocol version, before
    /// `on_deliver*` rewrites it. An authorisation chain: `Ok` sends it,
    /// `Error` withholds it, and an exhausted chain or a failure withholds
    /// it too. `Ok(Some(secs))` lets the broker reuse the answer for that
    /// connection and topic for `secs` seconds.
    ///
    /// ```
    /// # use sluice_plugin_sdk::{DeliverAuthVerdict, DeliverRequest};
    /// fn auth_on_deliver(_: &(), req: DeliverRequest<'_>) -> DeliverAuthVerdict {
    ///     if req.topic.starts_with("private/") {
    ///         return DeliverAuthVerdict::Error(format!("{} is private", req.topic));
    ///     }
    ///     DeliverAuthVerdict::Ok(Some(60))
    /// }
    /// ```
    fn auth_on_deliver(config: &Self::Config, req: DeliverRequest<'_>) -> DeliverAuthVerdict {
        DeliverAuthVerdict::Next
    }

    /// Each message about to be sent to an MQTT 3.x subscriber (and MQTT 5
    /// subscribers, for plugins without an MQTT 5 form). A chain: the
    /// first `Ok` decides; `Error`, an exhausted chain or a failure sends
    /// the message unchanged.
    fn on_deliver(config: &Self::Config, req: DeliverRequest<'_>) -> DeliverVerdict {
        DeliverVerdict::Next
    }

    /// Each message about to be sent to an MQTT 5 subscriber. A chain.
    fn on_deliver_m5(config: &Self::Config, req: DeliverRequest<'_>) -> DeliverVerdictM5 {
        DeliverVerdictM5::Next
    }

    /// `on_deliver` and `on_deliver_m5` at once; new properties are left
    /// out for MQTT 3.x subscribers.
    fn on_deliver_any(config: &Self::Config, req: DeliverRequest<'_>) -> DeliverVerdictM5 {
        DeliverVerdictM5::Next
    }

    /// A message was queued for a session whose client is not connected. A
    /// notification.
    fn on_offline_message(config: &Self::Config, event: OfflineMessageEvent<'_>) {}

    /// A message for a subscriber was dropped. A notification.
    ///
    /// ```
    /// # use sluice_plugin_sdk::MessageDropEvent;
    /// fn on_message_drop(_: &(), e: MessageDropEvent<'_>) {
    ///     sluice_plugin_sdk::warn!("{} to {} dropped: {:?}", e.topic, e.subscriber_id.client_id, e.reason);
    /// }
    /// ```
    fn on_message_drop(config: &Self::Config, event: MessageDropEvent<'_>) {}
}
