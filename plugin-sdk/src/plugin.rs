//! The [`Plugin`] trait: one associated function per hook.

use crate::{
    AuthRequest, AuthVerdict, ConnectProperties, Connection, DeliverAuthVerdict, DeliverVerdict,
    DeliverVerdictM5, DropReason, MessageProperties, Payload, Peer, PublishVerdict,
    PublishVerdictM5, Qos, RegisterVerdict, RegisterVerdictM5, SubscribeProperties,
    SubscribeVerdict, SubscribeVerdictM5, SubscriberId, TopicRequest, TopicSubscription,
    UnsubscribeVerdict, UnsubscribeVerdictM5, Unsubscribed, UserProperties,
};

/// A Sluice plugin: implement the hooks you need, and register the
/// implementation with [`#[plugin]`](crate::plugin).
///
/// Every hook is an associated function (no `self`: the broker may run
/// several instances of a plugin, and keeps state in none of them; keep
/// per-instance state in `static`s and shared state in [`kv`](crate::kv)).
/// The component built exports exactly the hooks the `impl` block
/// defines, and the broker never calls (nor pays for) the others. The
/// default bodies below are therefore never run by the broker; they answer
/// `Next` (chains) or do nothing (notifications), so that calling one from
/// your own code behaves as the hook being absent.
///
/// Chains (`auth-*`, `on-auth-m5`, `on-unsubscribe*`, `on-deliver*`) are
/// walked in plugin order: `Ok` or `Error` stops the chain, `Next` passes to
/// the following plugin. Notifications (`on-*` without an answer) reach
/// every plugin that implements them, after the fact. For MQTT 5 clients,
/// a plugin implementing both `hook` and `hook_m5` gets only `hook_m5`.
///
/// ```rust,standalone_crate
/// use sluice_plugin_sdk::{Plugin, RegisterModifiers, RegisterVerdict};
/// use sluice_plugin_sdk::{Connection, Denial, SubscriberId};
///
/// struct Tenants;
///
/// #[sluice_plugin_sdk::plugin]
/// impl Plugin for Tenants {
///     fn init() -> Result<(), String> {
///         sluice_plugin_sdk::log::info("tenants ready");
///         Ok(())
///     }
///
///     // Puts each user in a topic tree of its own.
///     fn auth_on_register(
///         _conn: Connection,
///         subscriber_id: SubscriberId,
///         username: Option<String>,
///         _password: Option<Vec<u8>>,
///         _clean_session: bool,
///     ) -> RegisterVerdict {
///         let Some(user) = username else {
///             return RegisterVerdict::Error(Denial::NotAuthorized("no username".into()));
///         };
///         let tree = SubscriberId { mountpoint: user, ..subscriber_id };
///         RegisterVerdict::Ok(Some(RegisterModifiers::new().subscriber_id(tree)))
///     }
/// }
/// # fn main() {}
/// ```
#[allow(
    unused_variables,
    clippy::too_many_arguments,
    reason = "the signatures are the WIT hooks'; the default bodies ignore their arguments"
)]
pub trait Plugin {
    /// Called once when an instance of the plugin is created (at load, and
    /// when the broker adds or replaces an instance), before any hook. An
    /// error refuses the plugin at load and is logged. Exported (as
    /// `lifecycle`) only when implemented.
    ///
    /// ```rust,standalone_crate
    /// use sluice_plugin_sdk::{config, Plugin};
    ///
    /// struct Checked;
    ///
    /// #[sluice_plugin_sdk::plugin]
    /// impl Plugin for Checked {
    ///     fn init() -> Result<(), String> {
    ///         config::parse::<u32>("limit").map_err(|e| e.to_string())?;
    ///         Ok(())
    ///     }
    /// }
    /// # fn main() {}
    /// ```
    fn init() -> Result<(), String> {
        Ok(())
    }

    // Session hooks (session.wit).

    /// Authentication of MQTT 3.x clients at CONNECT (and of MQTT 5 clients
    /// for plugins without [`auth_on_register_m5`](Self::auth_on_register_m5):
    /// then `InvalidCredentials` refuses with 0x86 and `NotAuthorized` with
    /// 0x87), after the broker's own checks. `password` is the raw bytes the
    /// client sent. A chain; `Ok` may change the registration.
    ///
    /// ```
    /// # use sluice_plugin_sdk::{Connection, Denial, RegisterVerdict, SubscriberId};
    /// fn auth_on_register(
    ///     _conn: Connection,
    ///     _id: SubscriberId,
    ///     username: Option<String>,
    ///     password: Option<Vec<u8>>,
    ///     _clean_session: bool,
    /// ) -> RegisterVerdict {
    ///     match (username.as_deref(), password.as_deref()) {
    ///         (Some("admin"), Some(b"secret")) => RegisterVerdict::Ok(None),
    ///         (Some("admin"), _) => RegisterVerdict::Error(Denial::InvalidCredentials("bad password".into())),
    ///         _ => RegisterVerdict::Next,
    ///     }
    /// }
    /// ```
    fn auth_on_register(
        conn: Connection,
        subscriber_id: SubscriberId,
        username: Option<String>,
        password: Option<Vec<u8>>,
        clean_session: bool,
    ) -> RegisterVerdict {
        RegisterVerdict::Next
    }

    /// Authentication of MQTT 5 clients at CONNECT (after enhanced
    /// authentication, if the client asked for it), after the broker's own
    /// checks. A chain; `Ok` may change the registration.
    ///
    /// ```
    /// # use sluice_plugin_sdk::{ConnectProperties, Connection, M5Denial, RegisterVerdictM5, SubscriberId};
    /// fn auth_on_register_m5(
    ///     conn: Connection,
    ///     _id: SubscriberId,
    ///     _username: Option<String>,
    ///     _password: Option<Vec<u8>>,
    ///     _clean_start: bool,
    ///     _properties: ConnectProperties,
    /// ) -> RegisterVerdictM5 {
    ///     if conn.client_certificate.is_some() {
    ///         return RegisterVerdictM5::Ok(None);
    ///     }
    ///     RegisterVerdictM5::Error(M5Denial::new(0x87).reason_string("certificate required"))
    /// }
    /// ```
    fn auth_on_register_m5(
        conn: Connection,
        subscriber_id: SubscriberId,
        username: Option<String>,
        password: Option<Vec<u8>>,
        clean_start: bool,
        properties: ConnectProperties,
    ) -> RegisterVerdictM5 {
        RegisterVerdictM5::Next
    }

    /// Each step of an MQTT 5 enhanced-authentication exchange (AUTH
    /// packets). Keep state between steps in [`kv`](crate::kv), keyed by
    /// client: consecutive steps may reach different instances. A chain.
    ///
    /// ```
    /// # use sluice_plugin_sdk::{AuthRequest, AuthVerdict, Connection, SubscriberId};
    /// fn on_auth_m5(_conn: Connection, _id: SubscriberId, request: AuthRequest) -> AuthVerdict {
    ///     if request.method != "TOKEN" {
    ///         return AuthVerdict::Next;
    ///     }
    ///     match request.data.as_deref() {
    ///         Some(b"let-me-in") => AuthVerdict::Success(None),
    ///         _ => AuthVerdict::ContinueAuthentication(Some(b"token?".to_vec())),
    ///     }
    /// }
    /// ```
    fn on_auth_m5(
        conn: Connection,
        subscriber_id: SubscriberId,
        request: AuthRequest,
    ) -> AuthVerdict {
        AuthVerdict::Next
    }

    /// A client's registration succeeded (CONNACK sent). A notification.
    ///
    /// ```
    /// # use sluice_plugin_sdk::{Peer, SubscriberId};
    /// fn on_register(peer: Peer, id: SubscriberId, _username: Option<String>) {
    ///     sluice_plugin_sdk::log::info(&format!("{} from {}", id.client_id, peer.addr));
    /// }
    /// ```
    fn on_register(peer: Peer, subscriber_id: SubscriberId, username: Option<String>) {}

    /// An MQTT 5 client's registration succeeded (CONNACK sent); the
    /// properties are its CONNECT's. A notification.
    ///
    /// ```
    /// # use sluice_plugin_sdk::{ConnectProperties, Peer, SubscriberId};
    /// fn on_register_m5(_peer: Peer, id: SubscriberId, _user: Option<String>, p: ConnectProperties) {
    ///     let expiry = p.session_expiry_interval.unwrap_or(0);
    ///     sluice_plugin_sdk::log::debug(&format!("{}: expiry {expiry} s", id.client_id));
    /// }
    /// ```
    fn on_register_m5(
        peer: Peer,
        subscriber_id: SubscriberId,
        username: Option<String>,
        properties: ConnectProperties,
    ) {
    }

    /// A connection attached to a session (new or resumed), before
    /// `on_register`. A notification.
    ///
    /// ```
    /// # use sluice_plugin_sdk::SubscriberId;
    /// fn on_client_wakeup(id: SubscriberId) {
    ///     let _ = sluice_plugin_sdk::kv::set(&format!("online/{}", id.client_id), b"1");
    /// }
    /// ```
    fn on_client_wakeup(subscriber_id: SubscriberId) {}

    /// The connection of a persistent session went away; the session lives
    /// on. A notification.
    ///
    /// ```
    /// # use sluice_plugin_sdk::SubscriberId;
    /// fn on_client_offline(id: SubscriberId) {
    ///     sluice_plugin_sdk::kv::delete(&format!("online/{}", id.client_id));
    /// }
    /// ```
    fn on_client_offline(subscriber_id: SubscriberId) {}

    /// The connection of a session that ends with it (clean session /
    /// expiry 0) went away. A notification.
    ///
    /// ```
    /// # use sluice_plugin_sdk::SubscriberId;
    /// fn on_client_gone(id: SubscriberId) {
    ///     sluice_plugin_sdk::kv::delete(&format!("online/{}", id.client_id));
    /// }
    /// ```
    fn on_client_gone(subscriber_id: SubscriberId) {}

    /// An offline persistent session expired and was removed. A
    /// notification.
    ///
    /// ```
    /// # use sluice_plugin_sdk::SubscriberId;
    /// fn on_session_expired(id: SubscriberId) {
    ///     sluice_plugin_sdk::log::info(&format!("{} expired", id.client_id));
    /// }
    /// ```
    fn on_session_expired(subscriber_id: SubscriberId) {}

    // Subscribe hooks (subscribe.wit).

    /// Authorisation of every SUBSCRIBE of MQTT 3.x clients (and of MQTT 5
    /// clients for plugins without
    /// [`auth_on_subscribe_m5`](Self::auth_on_subscribe_m5)), before
    /// anything is subscribed. Invalid filters never reach it. A chain.
    ///
    /// ```
    /// # use sluice_plugin_sdk::{SubscribeVerdict, SubscriberId, TopicRequest, TopicResult};
    /// fn auth_on_subscribe(_user: Option<String>, _id: SubscriberId, topics: Vec<TopicRequest>) -> SubscribeVerdict {
    ///     let results = topics
    ///         .into_iter()
    ///         .map(|t| if t.filter.starts_with('#') { TopicResult::Rejected } else { TopicResult::Granted(t) })
    ///         .collect();
    ///     SubscribeVerdict::Ok(Some(results))
    /// }
    /// ```
    fn auth_on_subscribe(
        username: Option<String>,
        subscriber_id: SubscriberId,
        topics: Vec<TopicRequest>,
    ) -> SubscribeVerdict {
        SubscribeVerdict::Next
    }

    /// Authorisation of every SUBSCRIBE of MQTT 5 clients, before anything
    /// is subscribed. A chain.
    ///
    /// ```
    /// # use sluice_plugin_sdk::{M5Error, SubscribeProperties, SubscribeVerdictM5, SubscriberId, TopicSubscription};
    /// fn auth_on_subscribe_m5(
    ///     username: Option<String>,
    ///     _id: SubscriberId,
    ///     _topics: Vec<TopicSubscription>,
    ///     _properties: SubscribeProperties,
    /// ) -> SubscribeVerdictM5 {
    ///     match username {
    ///         Some(_) => SubscribeVerdictM5::Ok(None),
    ///         None => SubscribeVerdictM5::Error(M5Error::new(0x87).reason_string("log in first")),
    ///     }
    /// }
    /// ```
    fn auth_on_subscribe_m5(
        username: Option<String>,
        subscriber_id: SubscriberId,
        topics: Vec<TopicSubscription>,
        properties: SubscribeProperties,
    ) -> SubscribeVerdictM5 {
        SubscribeVerdictM5::Next
    }

    /// A SUBSCRIBE was stored (SUBACK sent), with the accepted topics only,
    /// as subscribed. A notification.
    ///
    /// ```
    /// # use sluice_plugin_sdk::{SubscriberId, TopicSubscription};
    /// fn on_subscribe(_user: Option<String>, id: SubscriberId, topics: Vec<TopicSubscription>) {
    ///     for t in topics {
    ///         sluice_plugin_sdk::log::debug(&format!("{} subscribed to {}", id.client_id, t.filter));
    ///     }
    /// }
    /// ```
    fn on_subscribe(
        username: Option<String>,
        subscriber_id: SubscriberId,
        topics: Vec<TopicSubscription>,
    ) {
    }

    /// An MQTT 5 SUBSCRIBE was stored. A notification.
    ///
    /// ```
    /// # use sluice_plugin_sdk::{SubscribeProperties, SubscriberId, TopicSubscription};
    /// fn on_subscribe_m5(
    ///     _user: Option<String>,
    ///     id: SubscriberId,
    ///     topics: Vec<TopicSubscription>,
    ///     _properties: SubscribeProperties,
    /// ) {
    ///     sluice_plugin_sdk::log::debug(&format!("{}: {} topics", id.client_id, topics.len()));
    /// }
    /// ```
    fn on_subscribe_m5(
        username: Option<String>,
        subscriber_id: SubscriberId,
        topics: Vec<TopicSubscription>,
        properties: SubscribeProperties,
    ) {
    }

    /// Every UNSUBSCRIBE of MQTT 3.x clients (and of MQTT 5 clients for
    /// plugins without [`on_unsubscribe_m5`](Self::on_unsubscribe_m5)),
    /// before anything is removed. A chain that may rewrite the topics, not
    /// a permission check.
    ///
    /// ```
    /// # use sluice_plugin_sdk::{SubscriberId, UnsubscribeVerdict};
    /// fn on_unsubscribe(_user: Option<String>, _id: SubscriberId, topics: Vec<String>) -> UnsubscribeVerdict {
    ///     let topics = topics.into_iter().map(|t| t.replace("legacy/", "v2/")).collect();
    ///     UnsubscribeVerdict::Ok(Some(topics))
    /// }
    /// ```
    fn on_unsubscribe(
        username: Option<String>,
        subscriber_id: SubscriberId,
        topics: Vec<String>,
    ) -> UnsubscribeVerdict {
        UnsubscribeVerdict::Next
    }

    /// Every UNSUBSCRIBE of MQTT 5 clients, before anything is removed. A
    /// chain.
    ///
    /// ```
    /// # use sluice_plugin_sdk::{SubscriberId, UnsubscribeVerdictM5, UserProperties};
    /// fn on_unsubscribe_m5(
    ///     _user: Option<String>,
    ///     _id: SubscriberId,
    ///     _topics: Vec<String>,
    ///     _props: UserProperties,
    /// ) -> UnsubscribeVerdictM5 {
    ///     UnsubscribeVerdictM5::Ok(None)
    /// }
    /// ```
    fn on_unsubscribe_m5(
        username: Option<String>,
        subscriber_id: SubscriberId,
        topics: Vec<String>,
        user_properties: UserProperties,
    ) -> UnsubscribeVerdictM5 {
        UnsubscribeVerdictM5::Next
    }

    /// Subscriptions were removed (by an UNSUBSCRIBE, or all of them with
    /// the session). A notification.
    ///
    /// ```
    /// # use sluice_plugin_sdk::{SubscriberId, Unsubscribed};
    /// fn on_topic_unsubscribed(id: SubscriberId, topics: Unsubscribed) {
    ///     if let Unsubscribed::AllTopics = topics {
    ///         sluice_plugin_sdk::log::debug(&format!("{} left", id.client_id));
    ///     }
    /// }
    /// ```
    fn on_topic_unsubscribed(subscriber_id: SubscriberId, topics: Unsubscribed) {}

    // Publish hooks (publish.wit).

    /// Authorisation of every PUBLISH of MQTT 3.x clients (and of MQTT 5
    /// clients for plugins without
    /// [`auth_on_publish_m5`](Self::auth_on_publish_m5)), and of every
    /// client's Will at CONNECT (`is_will`). A chain; `Ok` may change the
    /// message, or let the broker cache the acceptance
    /// ([`PublishModifiers::cache_secs`](crate::PublishModifiers::cache_secs)).
    ///
    /// ```
    /// # use sluice_plugin_sdk::{Payload, PublishModifiers, PublishVerdict, Qos, SubscriberId};
    /// fn auth_on_publish(
    ///     _user: Option<String>,
    ///     _id: SubscriberId,
    ///     _qos: Qos,
    ///     topic: String,
    ///     _payload: &Payload,
    ///     _retain: bool,
    ///     _is_will: bool,
    /// ) -> PublishVerdict {
    ///     if topic.starts_with("$admin/") {
    ///         return PublishVerdict::Error(format!("{topic} is reserved"));
    ///     }
    ///     PublishVerdict::Ok(Some(PublishModifiers::new().cache_secs(60)))
    /// }
    /// ```
    fn auth_on_publish(
        username: Option<String>,
        subscriber_id: SubscriberId,
        qos: Qos,
        topic: String,
        payload: &Payload,
        retain: bool,
        is_will: bool,
    ) -> PublishVerdict {
        PublishVerdict::Next
    }

    /// Authorisation of every PUBLISH (and Will) of MQTT 5 clients. A chain.
    ///
    /// ```
    /// # use sluice_plugin_sdk::{M5Error, MessageProperties, Payload, PublishVerdictM5, Qos, SubscriberId};
    /// fn auth_on_publish_m5(
    ///     _user: Option<String>,
    ///     _id: SubscriberId,
    ///     _qos: Qos,
    ///     _topic: String,
    ///     payload: &Payload,
    ///     _retain: bool,
    ///     _properties: MessageProperties,
    ///     _is_will: bool,
    /// ) -> PublishVerdictM5 {
    ///     if payload.size() > 64 * 1024 {
    ///         return PublishVerdictM5::Error(M5Error::new(0x95).reason_string("too large"));
    ///     }
    ///     PublishVerdictM5::Next
    /// }
    /// ```
    fn auth_on_publish_m5(
        username: Option<String>,
        subscriber_id: SubscriberId,
        qos: Qos,
        topic: String,
        payload: &Payload,
        retain: bool,
        properties: MessageProperties,
        is_will: bool,
    ) -> PublishVerdictM5 {
        PublishVerdictM5::Next
    }

    /// A message was routed, as routed (after `auth_on_publish`'s
    /// changes). A notification, delivered in order by a background task
    /// (dropped and counted if plugins fall far behind).
    ///
    /// ```
    /// # use sluice_plugin_sdk::{Payload, Qos, SubscriberId};
    /// fn on_publish(_user: Option<String>, _id: SubscriberId, _qos: Qos, topic: String, payload: &Payload, _retain: bool) {
    ///     sluice_plugin_sdk::log::trace(&format!("{topic}: {} bytes", payload.size()));
    /// }
    /// ```
    fn on_publish(
        username: Option<String>,
        subscriber_id: SubscriberId,
        qos: Qos,
        topic: String,
        payload: &Payload,
        retain: bool,
    ) {
    }

    /// A message from an MQTT 5 client was routed. A notification.
    ///
    /// ```
    /// # use sluice_plugin_sdk::{MessageProperties, Payload, Qos, SubscriberId};
    /// fn on_publish_m5(
    ///     _user: Option<String>,
    ///     _id: SubscriberId,
    ///     _qos: Qos,
    ///     topic: String,
    ///     _payload: &Payload,
    ///     _retain: bool,
    ///     properties: MessageProperties,
    /// ) {
    ///     if let Some(ct) = properties.content_type {
    ///         sluice_plugin_sdk::log::trace(&format!("{topic}: {ct}"));
    ///     }
    /// }
    /// ```
    fn on_publish_m5(
        username: Option<String>,
        subscriber_id: SubscriberId,
        qos: Qos,
        topic: String,
        payload: &Payload,
        retain: bool,
        properties: MessageProperties,
    ) {
    }

    /// May this subscriber read this message? Asked for each message about
    /// to be sent to a subscriber of any protocol version, before
    /// [`on_deliver`](Self::on_deliver) rewrites it; `username` and
    /// `subscriber_id` are the subscriber's. An authorisation chain: `Ok`
    /// sends it, `Error` withholds it from this subscriber, and an
    /// exhausted chain or a failure (with `on_failure = "deny"`) withholds
    /// it too. It runs for every delivery: when the decision depends only on
    /// the subscriber and the topic, answer `Ok(Some(secs))` and the broker
    /// reuses it for that connection and topic for `secs` seconds.
    ///
    /// ```
    /// # use sluice_plugin_sdk::{DeliverAuthVerdict, Payload, Qos, SubscriberId};
    /// fn auth_on_deliver(
    ///     _user: Option<String>,
    ///     _id: SubscriberId,
    ///     _qos: Qos,
    ///     topic: String,
    ///     _payload: &Payload,
    ///     _retain: bool,
    /// ) -> DeliverAuthVerdict {
    ///     if topic.starts_with("private/") {
    ///         return DeliverAuthVerdict::Error(format!("{topic} is private"));
    ///     }
    ///     DeliverAuthVerdict::Ok(Some(60))
    /// }
    /// ```
    fn auth_on_deliver(
        username: Option<String>,
        subscriber_id: SubscriberId,
        qos: Qos,
        topic: String,
        payload: &Payload,
        retain: bool,
    ) -> DeliverAuthVerdict {
        DeliverAuthVerdict::Next
    }

    /// Each message about to be sent to an MQTT 3.x subscriber (and MQTT 5
    /// subscribers, for plugins without
    /// [`on_deliver_m5`](Self::on_deliver_m5)); `username` and
    /// `subscriber_id` are the subscriber's. A chain: the first `Ok`
    /// decides; `Error`, an exhausted chain or a failure sends the message
    /// unchanged.
    ///
    /// ```
    /// # use sluice_plugin_sdk::{DeliverModifiers, DeliverVerdict, Payload, Qos, SubscriberId};
    /// fn on_deliver(
    ///     _user: Option<String>,
    ///     _id: SubscriberId,
    ///     _qos: Qos,
    ///     topic: String,
    ///     payload: &Payload,
    ///     _retain: bool,
    /// ) -> DeliverVerdict {
    ///     if !topic.starts_with("shout/") {
    ///         return DeliverVerdict::Next;
    ///     }
    ///     let loud = payload.read().to_ascii_uppercase();
    ///     DeliverVerdict::Ok(Some(DeliverModifiers::new().payload(loud)))
    /// }
    /// ```
    fn on_deliver(
        username: Option<String>,
        subscriber_id: SubscriberId,
        qos: Qos,
        topic: String,
        payload: &Payload,
        retain: bool,
    ) -> DeliverVerdict {
        DeliverVerdict::Next
    }

    /// Each message about to be sent to an MQTT 5 subscriber. A chain, as
    /// [`on_deliver`](Self::on_deliver).
    ///
    /// ```
    /// # use sluice_plugin_sdk::{DeliverModifiers, DeliverVerdictM5, MessageProperties, Payload, Qos, SubscriberId};
    /// fn on_deliver_m5(
    ///     _user: Option<String>,
    ///     _id: SubscriberId,
    ///     _qos: Qos,
    ///     _topic: String,
    ///     _payload: &Payload,
    ///     _retain: bool,
    ///     properties: MessageProperties,
    /// ) -> DeliverVerdictM5 {
    ///     let tagged = properties.user_property("via", "sluice");
    ///     DeliverVerdictM5::Ok(Some(DeliverModifiers::new().properties(tagged)))
    /// }
    /// ```
    fn on_deliver_m5(
        username: Option<String>,
        subscriber_id: SubscriberId,
        qos: Qos,
        topic: String,
        payload: &Payload,
        retain: bool,
        properties: MessageProperties,
    ) -> DeliverVerdictM5 {
        DeliverVerdictM5::Next
    }

    /// A message was queued for a session whose client is not connected. A
    /// notification.
    ///
    /// ```
    /// # use sluice_plugin_sdk::{Payload, Qos, SubscriberId};
    /// fn on_offline_message(id: SubscriberId, _qos: Qos, topic: String, _payload: &Payload, _retain: bool) {
    ///     sluice_plugin_sdk::log::debug(&format!("{topic} queued for {}", id.client_id));
    /// }
    /// ```
    fn on_offline_message(
        subscriber_id: SubscriberId,
        qos: Qos,
        topic: String,
        payload: &Payload,
        retain: bool,
    ) {
    }

    /// A message for a subscriber was dropped. A notification.
    ///
    /// ```
    /// # use sluice_plugin_sdk::{DropReason, Payload, Qos, SubscriberId};
    /// fn on_message_drop(id: SubscriberId, _qos: Qos, topic: String, _payload: &Payload, reason: DropReason) {
    ///     sluice_plugin_sdk::log::warn(&format!("{topic} to {} dropped: {reason:?}", id.client_id));
    /// }
    /// ```
    fn on_message_drop(
        subscriber_id: SubscriberId,
        qos: Qos,
        topic: String,
        payload: &Payload,
        reason: DropReason,
    ) {
    }
}
