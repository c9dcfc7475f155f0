//! The hooks with one form for both protocol versions, about what happens to
//! a subscriber's session: subscriptions removed (`on-topic-unsubscribed`),
//! messages queued while offline (`on-offline-message`) or dropped
//! (`on-message-drop`). Only the `pubsub` fixture exports them.

use crate::Pubsub;
use crate::exports::sluice::plugin::{on_message_drop, on_offline_message, on_topic_unsubscribed};
use crate::record::{Fields, message_fields, qos_number};
use crate::sluice::plugin::types::{Payload, Qos, SubscriberId};

impl on_topic_unsubscribed::Guest for Pubsub {
    fn on_topic_unsubscribed(
        subscriber_id: SubscriberId,
        topics: on_topic_unsubscribed::Unsubscribed,
    ) {
        use on_topic_unsubscribed::Unsubscribed;
        let fields = match topics {
            Unsubscribed::AllTopics => Fields::default().flag("all"),
            Unsubscribed::Topics(list) => Fields::default().add("topics", list.join(",")),
        };
        fields
            .who(None, &subscriber_id)
            .record("on-topic-unsubscribed", &subscriber_id);
    }
}

impl on_offline_message::Guest for Pubsub {
    fn on_offline_message(
        subscriber_id: SubscriberId,
        qos: Qos,
        topic: String,
        payload: &Payload,
        retain: bool,
    ) {
        message_fields(&topic, qos, retain)
            .payload(payload)
            .who(None, &subscriber_id)
            .record("on-offline-message", &subscriber_id);
    }
}

impl on_message_drop::Guest for Pubsub {
    fn on_message_drop(
        subscriber_id: SubscriberId,
        qos: Qos,
        topic: String,
        payload: &Payload,
        reason: on_message_drop::DropReason,
    ) {
        use on_message_drop::DropReason;
        let reason = match reason {
            DropReason::Expired => "expired",
            DropReason::QueueFull => "queue-full",
            DropReason::MaxPacketSizeExceeded => "max-packet-size-exceeded",
        };
        Fields::default()
            .add("topic", &topic)
            .add("qos", qos_number(qos))
            .add("reason", reason)
            .payload(payload)
            .who(None, &subscriber_id)
            .record("on-message-drop", &subscriber_id);
    }
}
