//! The hooks' arguments, one struct per hook (the MQTT 3 and MQTT 5 forms
//! of a hook share theirs). The MQTT 5 fields are options: `None` in the
//! MQTT 3 form, `Some` in the `_m5` form, and in an `_any` hook `Some`
//! exactly for MQTT 5 clients ([`RegisterRequest::is_m5`] and the like).

use crate::{
    AuthRequest, ConnectProperties, Connection, DropReason, MessageProperties, Payload, Peer, Qos,
    SubscribeProperties, SubscriberId, TopicSubscription, Unsubscribed, UserProperties,
};

/// A CONNECT to authenticate (`auth_on_register*`).
///
/// ```
/// # use sluice_plugin_sdk::RegisterRequest;
/// fn is_admin(req: &RegisterRequest) -> bool {
///     req.username.as_deref() == Some("admin") && req.password.as_deref() == Some(b"secret")
/// }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisterRequest {
    pub conn: Connection,
    pub subscriber_id: SubscriberId,
    pub username: Option<String>,
    /// The raw bytes the client sent.
    pub password: Option<Vec<u8>>,
    /// Clean Session (MQTT 3.x) / Clean Start (MQTT 5).
    pub clean_start: bool,
    /// The CONNECT's properties: MQTT 5 clients only.
    pub properties: Option<ConnectProperties>,
}

/// One step of MQTT 5 enhanced authentication (`on_auth_m5`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnhancedAuthRequest {
    pub conn: Connection,
    pub subscriber_id: SubscriberId,
    pub auth: AuthRequest,
}

/// A client registered: CONNACK sent (`on_register*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisteredEvent {
    pub peer: Peer,
    pub subscriber_id: SubscriberId,
    pub username: Option<String>,
    /// The CONNECT's properties: MQTT 5 clients only.
    pub properties: Option<ConnectProperties>,
}

/// A SUBSCRIBE to authorise (`auth_on_subscribe*`). MQTT 3.x topics come
/// with their QoS and the other options false / send-on-subscribe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscribeRequest {
    pub username: Option<String>,
    pub subscriber_id: SubscriberId,
    pub topics: Vec<TopicSubscription>,
    /// MQTT 5 clients only.
    pub properties: Option<SubscribeProperties>,
}

/// A SUBSCRIBE was stored, with the accepted topics (`on_subscribe*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscribedEvent {
    pub username: Option<String>,
    pub subscriber_id: SubscriberId,
    pub topics: Vec<TopicSubscription>,
    /// MQTT 5 clients only.
    pub properties: Option<SubscribeProperties>,
}

/// An UNSUBSCRIBE, before anything is removed (`on_unsubscribe*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnsubscribeRequest {
    pub username: Option<String>,
    pub subscriber_id: SubscriberId,
    pub topics: Vec<String>,
    /// MQTT 5 clients only.
    pub user_properties: Option<UserProperties>,
}

/// Subscriptions were removed (`on_topic_unsubscribed`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnsubscribedEvent {
    pub subscriber_id: SubscriberId,
    pub topics: Unsubscribed,
}

/// A PUBLISH (or a Will, `is_will`) to authorise (`auth_on_publish*`).
/// The payload is a handle: `payload.read()` copies the bytes in.
#[derive(Debug)]
pub struct PublishRequest<'a> {
    pub username: Option<String>,
    pub subscriber_id: SubscriberId,
    pub qos: Qos,
    pub topic: String,
    pub payload: &'a Payload,
    pub retain: bool,
    pub is_will: bool,
    /// MQTT 5 publishers only.
    pub properties: Option<MessageProperties>,
}

/// A message was routed, as routed (`on_publish*`).
#[derive(Debug)]
pub struct PublishedEvent<'a> {
    pub username: Option<String>,
    pub subscriber_id: SubscriberId,
    pub qos: Qos,
    pub topic: String,
    pub payload: &'a Payload,
    pub retain: bool,
    /// MQTT 5 publishers only.
    pub properties: Option<MessageProperties>,
}

/// A message about to be sent to a subscriber (`auth_on_deliver`,
/// `on_deliver*`); `username` and `subscriber_id` are the subscriber's.
#[derive(Debug)]
pub struct DeliverRequest<'a> {
    pub username: Option<String>,
    pub subscriber_id: SubscriberId,
    pub qos: Qos,
    pub topic: String,
    pub payload: &'a Payload,
    pub retain: bool,
    /// MQTT 5 subscribers only (`on_deliver_m5`, `on_deliver_any`); never
    /// in `auth_on_deliver`.
    pub properties: Option<MessageProperties>,
}

/// A message was queued for an offline session (`on_offline_message`).
#[derive(Debug)]
pub struct OfflineMessageEvent<'a> {
    pub subscriber_id: SubscriberId,
    pub qos: Qos,
    pub topic: String,
    pub payload: &'a Payload,
    pub retain: bool,
}

/// A message for a subscriber was dropped (`on_message_drop`).
#[derive(Debug)]
pub struct MessageDropEvent<'a> {
    pub subscriber_id: SubscriberId,
    pub qos: Qos,
    pub topic: String,
    pub payload: &'a Payload,
    pub reason: DropReason,
}

/// `is_m5()`: whether the client speaks MQTT 5 (its MQTT 5 fields are
/// set).
macro_rules! is_m5 {
    ($($ty:ident$(<$l:lifetime>)?.$field:ident),*) => {$(
        impl$(<$l>)? $ty$(<$l>)? {
            #[doc = concat!("Whether the client speaks MQTT 5 (`", stringify!($field), "` is set).")]
            pub fn is_m5(&self) -> bool {
                self.$field.is_some()
            }
        }
    )*};
}

is_m5!(
    RegisterRequest.properties,
    RegisteredEvent.properties,
    SubscribeRequest.properties,
    SubscribedEvent.properties,
    UnsubscribeRequest.user_properties,
    PublishRequest<'a>.properties,
    PublishedEvent<'a>.properties,
    DeliverRequest<'a>.properties
);
