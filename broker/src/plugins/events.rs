//! Notifications: hooks that are told after the fact and cannot change
//! anything. They are queued without waiting and delivered in order, to
//! every plugin implementing the hook in chain order, by one background
//! task; a hook no plugin implements is not even queued.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arc_swap::ArcSwap;
use tokio::sync::mpsc;

use super::bindings::exports::sluice::plugin::{on_message_drop, on_topic_unsubscribed};
use super::set::PluginSet;
use super::{EVENT_QUEUE_BYTES, Hook, Plugin, Plugins, convert, messages};
use crate::codec::{ConnectProperties, QoS, SubscriptionOptions, UserProperty};
use crate::message::Message;
use crate::session::SubscriberId;

/// Why a message for a subscriber was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    Expired,
    QueueFull,
    MaxPacketSizeExceeded,
}

/// A notification.
#[derive(Clone, Debug)]
pub enum Event {
    Wakeup(SubscriberId),
    Register {
        peer: SocketAddr,
        id: SubscriberId,
        username: Option<String>,
        /// CONNECT properties of an MQTT 5 client.
        properties: Option<ConnectProperties>,
    },
    Offline(SubscriberId),
    Gone(SubscriberId),
    Expired(SubscriberId),
    /// A SUBSCRIBE was stored: the accepted topics.
    Subscribed {
        username: Option<String>,
        id: SubscriberId,
        topics: Vec<(String, SubscriptionOptions)>,
        /// Subscription identifier and user properties, for MQTT 5
        /// clients.
        properties: Option<(Option<u32>, Vec<UserProperty>)>,
    },
    /// Subscriptions were removed: these filters, or (`None`) all of them
    /// with their session.
    TopicUnsubscribed {
        id: SubscriberId,
        topics: Option<Vec<String>>,
    },
    /// A message was routed.
    Published {
        username: Option<String>,
        id: SubscriberId,
        message: Arc<Message>,
        /// From an MQTT 5 client.
        v5: bool,
        /// Published by this plugin (host function `publish`), whose own
        /// `on-publish(-m5)` is not told.
        from_plugin: Option<Arc<str>>,
    },
    /// A message was queued for a disconnected session.
    OfflineMessage {
        id: SubscriberId,
        message: Arc<Message>,
        qos: QoS,
        retain: bool,
    },
    /// A message for `id` was dropped.
    MessageDropped {
        id: SubscriberId,
        message: Arc<Message>,
        qos: QoS,
        reason: DropReason,
    },
}

impl Event {
    /// Bytes the event holds while queued (a shared message counted whole,
    /// though queues may share it too).
    fn size(&self) -> usize {
        let id = |id: &SubscriberId| id.client_id.as_str().len() + id.mountpoint.len();
        let user = |p: &[UserProperty]| {
            p.iter()
                .map(|p| size_of::<UserProperty>() + p.0.len() + p.1.len())
                .sum::<usize>()
        };
        let extra = match self {
            Event::Wakeup(i) | Event::Offline(i) | Event::Gone(i) | Event::Expired(i) => id(i),
            Event::Register {
                id: i,
                username,
                properties,
                ..
            } => {
                id(i)
                    + username.as_ref().map_or(0, String::len)
                    + properties.as_ref().map_or(0, |p| {
                        user(&p.user_properties)
                            + p.authentication_method.as_ref().map_or(0, String::len)
                            + p.authentication_data.as_ref().map_or(0, |d| d.len())
                    })
            }
            Event::Subscribed {
                username,
                id: i,
                topics,
                properties,
            } => {
                id(i)
                    + username.as_ref().map_or(0, String::len)
                    + topics
                        .iter()
                        .map(|(t, _)| size_of::<(String, SubscriptionOptions)>() + t.len())
                        .sum::<usize>()
                    + properties.as_ref().map_or(0, |(_, u)| user(u))
            }
            Event::TopicUnsubscribed { id: i, topics } => {
                id(i)
                    + topics
                        .as_ref()
                        .map_or(0, |t| t.iter().map(|t| size_of::<String>() + t.len()).sum())
            }
            Event::Published {
                username,
                id: i,
                message,
                ..
            } => id(i) + username.as_ref().map_or(0, String::len) + message.size(),
            Event::OfflineMessage { id: i, message, .. }
            | Event::MessageDropped { id: i, message, .. } => id(i) + message.size(),
        };
        size_of::<Event>() + extra
    }

    /// The hooks that receive this event.
    fn hooks(&self) -> &'static [Hook] {
        match self {
            Event::Wakeup(_) => &[Hook::OnClientWakeup],
            Event::Register { .. } => &[Hook::OnRegister, Hook::OnRegisterM5],
            Event::Offline(_) => &[Hook::OnClientOffline],
            Event::Gone(_) => &[Hook::OnClientGone],
            Event::Expired(_) => &[Hook::OnSessionExpired],
            Event::Subscribed { .. } => &[Hook::OnSubscribe, Hook::OnSubscribeM5],
            Event::TopicUnsubscribed { .. } => &[Hook::OnTopicUnsubscribed],
            Event::Published { .. } => &[Hook::OnPublish, Hook::OnPublishM5],
            Event::OfflineMessage { .. } => &[Hook::OnOfflineMessage],
            Event::MessageDropped { .. } => &[Hook::OnMessageDrop],
        }
    }
}

impl Plugins {
    /// Queues a notification for every plugin that implements its hook.
    /// Never waits: if the dispatcher is far behind (the queue holds
    /// `EVENT_QUEUE` events or [`EVENT_QUEUE_BYTES`] bytes), the event is
    /// dropped and counted. Callers on the message path check
    /// [`Plugins::implements`] first, so that they build no event nobody
    /// wants.
    pub fn notify(&self, event: Event) {
        let Some(tx) = &self.events else {
            return;
        };
        let exported = self.exported();
        if !event.hooks().iter().any(|h| exported.contains(*h)) {
            return;
        }
        let size = event.size();
        let queued = self.queued_event_bytes.fetch_add(size, Ordering::Relaxed);
        let sent = queued + size <= EVENT_QUEUE_BYTES && tx.try_send((event, size)).is_ok();
        if !sent {
            self.queued_event_bytes.fetch_sub(size, Ordering::Relaxed);
            let n = self.dropped_events.fetch_add(1, Ordering::Relaxed);
            if n.is_power_of_two() {
                tracing::warn!(
                    "plugin notification queue full; {} notifications dropped so far",
                    n + 1
                );
            }
        }
    }
}

/// Delivers notifications in order, to every plugin implementing the hook,
/// in chain order, of the plugin set current when the event is taken from
/// the queue. Failures are logged by `Plugin::call` and go no further.
pub(super) async fn dispatch(
    set: Arc<ArcSwap<PluginSet>>,
    mut events: mpsc::Receiver<(Event, usize)>,
    queued_bytes: Arc<AtomicUsize>,
) {
    while let Some((event, size)) = events.recv().await {
        queued_bytes.fetch_sub(size, Ordering::Relaxed);
        let plugins = set.load_full();
        for p in &plugins.list {
            deliver(p, &event).await;
        }
    }
}

async fn deliver(p: &Plugin, event: &Event) {
    macro_rules! simple {
        ($hook:expr, $field:ident, $call:ident, $id:expr) => {{
            if p.implements($hook) {
                let id = &convert::subscriber_id($id);
                let _ = hook_call!(p, $hook, $field, |g, store| g.$call(store, id)).await;
            }
        }};
    }
    match event {
        Event::Wakeup(id) => simple!(
            Hook::OnClientWakeup,
            on_client_wakeup,
            call_on_client_wakeup,
            id
        ),
        Event::Offline(id) => simple!(
            Hook::OnClientOffline,
            on_client_offline,
            call_on_client_offline,
            id
        ),
        Event::Gone(id) => simple!(Hook::OnClientGone, on_client_gone, call_on_client_gone, id),
        Event::Expired(id) => simple!(
            Hook::OnSessionExpired,
            on_session_expired,
            call_on_session_expired,
            id
        ),
        Event::Register {
            peer,
            id,
            username,
            properties,
        } => {
            let peer = convert::peer(*peer);
            let id = convert::subscriber_id(id);
            let username = username.as_deref();
            match properties {
                Some(props) if p.implements(Hook::OnRegisterM5) => {
                    let props = &convert::connect_properties(props);
                    let (peer, id) = (&peer, &id);
                    let _ = hook_call!(p, Hook::OnRegisterM5, on_register_m5, |g, store| {
                        g.call_on_register_m5(store, peer, id, username, props)
                    })
                    .await;
                }
                _ if p.implements(Hook::OnRegister) => {
                    let (peer, id) = (&peer, &id);
                    let _ = hook_call!(p, Hook::OnRegister, on_register, |g, store| {
                        g.call_on_register(store, peer, id, username)
                    })
                    .await;
                }
                _ => {}
            }
        }
        Event::Subscribed {
            username,
            id,
            topics,
            properties,
        } => {
            let id = &convert::subscriber_id(id);
            let username = username.as_deref();
            let topics = &messages::topic_subscriptions(topics);
            match properties {
                Some((identifier, user)) if p.implements(Hook::OnSubscribeM5) => {
                    let props = &messages::subscribe_properties(*identifier, user);
                    let _ = hook_call!(p, Hook::OnSubscribeM5, on_subscribe_m5, |g, store| {
                        g.call_on_subscribe_m5(store, username, id, topics, props)
                    })
                    .await;
                }
                _ if p.implements(Hook::OnSubscribe) => {
                    let _ = hook_call!(p, Hook::OnSubscribe, on_subscribe, |g, store| {
                        g.call_on_subscribe(store, username, id, topics)
                    })
                    .await;
                }
                _ => {}
            }
        }
        Event::TopicUnsubscribed { id, topics } => {
            if p.implements(Hook::OnTopicUnsubscribed) {
                let id = &convert::subscriber_id(id);
                let topics = &match topics {
                    None => on_topic_unsubscribed::Unsubscribed::AllTopics,
                    Some(t) => on_topic_unsubscribed::Unsubscribed::Topics(t.clone()),
                };
                let _ = hook_call!(
                    p,
                    Hook::OnTopicUnsubscribed,
                    on_topic_unsubscribed,
                    |g, store| g.call_on_topic_unsubscribed(store, id, topics)
                )
                .await;
            }
        }
        Event::Published { from_plugin, .. } if from_plugin.as_deref() == Some(&*p.name) => {}
        Event::Published {
            username,
            id,
            message,
            v5,
            ..
        } => {
            let id = &convert::subscriber_id(id);
            let username = username.as_deref();
            let m = message;
            let qos = messages::qos(m.qos);
            let topic = m.topic.as_str();
            if *v5 && p.implements(Hook::OnPublishM5) {
                let props = &messages::message_properties(m, tokio::time::Instant::now());
                let _ = hook_call_with_payload!(
                    p,
                    Hook::OnPublishM5,
                    on_publish_m5,
                    m.payload.clone(),
                    |g, store, payload| {
                        g.call_on_publish_m5(
                            store, username, id, qos, topic, payload, m.retain, props,
                        )
                    }
                )
                .await;
            } else if p.implements(Hook::OnPublish) {
                let _ = hook_call_with_payload!(
                    p,
                    Hook::OnPublish,
                    on_publish,
                    m.payload.clone(),
                    |g, store, payload| {
                        g.call_on_publish(store, username, id, qos, topic, payload, m.retain)
                    }
                )
                .await;
            }
        }
        Event::OfflineMessage {
            id,
            message,
            qos,
            retain,
        } => {
            if p.implements(Hook::OnOfflineMessage) {
                let id = &convert::subscriber_id(id);
                let (qos, retain) = (messages::qos(*qos), *retain);
                let topic = message.topic.as_str();
                let _ = hook_call_with_payload!(
                    p,
                    Hook::OnOfflineMessage,
                    on_offline_message,
                    message.payload.clone(),
                    |g, store, payload| {
                        g.call_on_offline_message(store, id, qos, topic, payload, retain)
                    }
                )
                .await;
            }
        }
        Event::MessageDropped {
            id,
            message,
            qos,
            reason,
        } => {
            if p.implements(Hook::OnMessageDrop) {
                let id = &convert::subscriber_id(id);
                let qos = messages::qos(*qos);
                let topic = message.topic.as_str();
                let reason = match reason {
                    DropReason::Expired => on_message_drop::DropReason::Expired,
                    DropReason::QueueFull => on_message_drop::DropReason::QueueFull,
                    DropReason::MaxPacketSizeExceeded => {
                        on_message_drop::DropReason::MaxPacketSizeExceeded
                    }
                };
                let _ = hook_call_with_payload!(
                    p,
                    Hook::OnMessageDrop,
                    on_message_drop,
                    message.payload.clone(),
                    |g, store, payload| {
                        g.call_on_message_drop(store, id, qos, topic, payload, reason)
                    }
                )
                .await;
            }
        }
    }
}
