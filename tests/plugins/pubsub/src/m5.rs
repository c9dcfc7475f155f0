//! The MQTT 5 forms of the hooks (`*-m5`), which only the `pubsub` fixture
//! exports (`pubsub-v3` serves MQTT 5 clients with the MQTT 3 forms): the
//! same decisions as those, answered with MQTT 5 codes and properties.

use crate::Pubsub;
use crate::config::{mapped_code, property, setting};
use crate::deliver::{DeliverAnswer, decide_deliver};
use crate::exports::sluice::plugin::{
    auth_on_publish_m5, auth_on_subscribe_m5, on_deliver_m5, on_publish_m5, on_subscribe_m5,
    on_unsubscribe_m5,
};
use crate::publish::{PublishAnswer, decide_publish};
use crate::record::{Fields, bit, message_fields, subscriptions_text, user_properties};
use crate::sluice::plugin::types::{
    M5Error, MessageProperties, Payload, Qos, RetainHandling, SubscribeProperties, SubscriberId,
    SubscriptionOptions, TopicSubscription,
};
use crate::subscribe::{
    SubscribeAnswer, TopicAnswer, UnsubscribeAnswer, decide_subscribe, decide_unsubscribe,
};

impl auth_on_subscribe_m5::Guest for Pubsub {
    fn auth_on_subscribe_m5(
        username: Option<String>,
        subscriber_id: SubscriberId,
        topics: Vec<TopicSubscription>,
        properties: SubscribeProperties,
    ) -> auth_on_subscribe_m5::SubscribeVerdictM5 {
        use auth_on_subscribe_m5::{SubscribeChanges, SubscribeVerdictM5, TopicResultM5};
        Fields::default()
            .add("topics", subscriptions_text(&topics))
            .add_if("id", properties.subscription_identifier)
            .add_if("up", user_properties(&properties.user_properties))
            .who(username.as_deref(), &subscriber_id)
            .record("auth-on-subscribe-m5", &subscriber_id);
        let requested: Vec<(&str, Qos)> = topics
            .iter()
            .map(|t| (t.filter.as_str(), t.options.qos))
            .collect();
        let reason_string = setting("suback_reason").map(str::to_owned);
        let user_properties: Vec<(String, String)> =
            property("suback_user_property").into_iter().collect();
        let extras = reason_string.is_some() || !user_properties.is_empty();
        match decide_subscribe(&requested) {
            SubscribeAnswer::Error { filter } => SubscribeVerdictM5::Error(M5Error {
                reason_code: mapped_code("sub_error_code", &filter, 0x87),
                reason_string: Some(format!("sub_error on {filter}")),
            }),
            SubscribeAnswer::Next => SubscribeVerdictM5::Next,
            SubscribeAnswer::Topics { changed: false, .. } if !extras => {
                SubscribeVerdictM5::Ok(None)
            }
            SubscribeAnswer::Topics { answers, changed } => {
                let results = changed.then(|| {
                    answers
                        .into_iter()
                        .enumerate()
                        .map(|(i, a)| match a {
                            TopicAnswer::Granted { filter, qos } => {
                                // Other options as requested (the extra
                                // answer of `sub_bad_list` copies the last).
                                let base = topics
                                    .get(i)
                                    .or(topics.last())
                                    .map(|t| t.options)
                                    .unwrap_or(SubscriptionOptions {
                                        qos,
                                        no_local: false,
                                        retain_as_published: false,
                                        retain_handling: RetainHandling::SendOnSubscribe,
                                    });
                                TopicResultM5::Granted(TopicSubscription {
                                    filter,
                                    options: SubscriptionOptions { qos, ..base },
                                })
                            }
                            TopicAnswer::Rejected { code } => TopicResultM5::Rejected(code),
                        })
                        .collect()
                });
                SubscribeVerdictM5::Ok(Some(SubscribeChanges {
                    topics: results,
                    reason_string,
                    user_properties,
                }))
            }
        }
    }
}

impl on_subscribe_m5::Guest for Pubsub {
    fn on_subscribe_m5(
        username: Option<String>,
        subscriber_id: SubscriberId,
        topics: Vec<TopicSubscription>,
        properties: SubscribeProperties,
    ) {
        Fields::default()
            .add("topics", subscriptions_text(&topics))
            .add_if("id", properties.subscription_identifier)
            .add_if("up", user_properties(&properties.user_properties))
            .who(username.as_deref(), &subscriber_id)
            .record("on-subscribe-m5", &subscriber_id);
    }
}

impl on_unsubscribe_m5::Guest for Pubsub {
    fn on_unsubscribe_m5(
        username: Option<String>,
        subscriber_id: SubscriberId,
        topics: Vec<String>,
        user_properties_in: Vec<(String, String)>,
    ) -> on_unsubscribe_m5::UnsubscribeVerdictM5 {
        use on_unsubscribe_m5::{UnsubscribeChanges, UnsubscribeVerdictM5};
        Fields::default()
            .add("topics", topics.join(","))
            .add_if("up", user_properties(&user_properties_in))
            .who(username.as_deref(), &subscriber_id)
            .record("on-unsubscribe-m5", &subscriber_id);
        let reason_string = setting("unsuback_reason").map(str::to_owned);
        let user_properties: Vec<(String, String)> =
            property("unsuback_user_property").into_iter().collect();
        let topics = match decide_unsubscribe(&topics) {
            UnsubscribeAnswer::Error(why) => return UnsubscribeVerdictM5::Error(why),
            UnsubscribeAnswer::Keep => None,
            UnsubscribeAnswer::Rewrite(list) => Some(list),
        };
        if topics.is_none() && reason_string.is_none() && user_properties.is_empty() {
            return UnsubscribeVerdictM5::Ok(None);
        }
        UnsubscribeVerdictM5::Ok(Some(UnsubscribeChanges {
            topics,
            reason_string,
            user_properties,
        }))
    }
}

impl auth_on_publish_m5::Guest for Pubsub {
    fn auth_on_publish_m5(
        username: Option<String>,
        subscriber_id: SubscriberId,
        qos: Qos,
        topic: String,
        payload: &Payload,
        retain: bool,
        properties: MessageProperties,
        is_will: bool,
    ) -> auth_on_publish_m5::PublishVerdictM5 {
        use auth_on_publish_m5::PublishVerdictM5;
        message_fields(&topic, qos, retain)
            .add("will", bit(is_will))
            .payload(payload)
            .properties(&properties)
            .who(username.as_deref(), &subscriber_id)
            .record("auth-on-publish-m5", &subscriber_id);
        match decide_publish(&topic, is_will, Some(&properties)) {
            PublishAnswer::Ok(m) => PublishVerdictM5::Ok(m),
            PublishAnswer::Next => PublishVerdictM5::Next,
            PublishAnswer::Deny => PublishVerdictM5::Error(M5Error {
                reason_code: mapped_code("pub_code", &topic, 0x87),
                reason_string: setting("pub_reason").map(str::to_owned),
            }),
        }
    }
}

impl on_publish_m5::Guest for Pubsub {
    fn on_publish_m5(
        username: Option<String>,
        subscriber_id: SubscriberId,
        qos: Qos,
        topic: String,
        payload: &Payload,
        retain: bool,
        properties: MessageProperties,
    ) {
        message_fields(&topic, qos, retain)
            .payload(payload)
            .properties(&properties)
            .who(username.as_deref(), &subscriber_id)
            .record("on-publish-m5", &subscriber_id);
    }
}

impl on_deliver_m5::Guest for Pubsub {
    fn on_deliver_m5(
        username: Option<String>,
        subscriber_id: SubscriberId,
        qos: Qos,
        topic: String,
        payload: &Payload,
        retain: bool,
        properties: MessageProperties,
    ) -> on_deliver_m5::DeliverVerdictM5 {
        use on_deliver_m5::DeliverVerdictM5;
        message_fields(&topic, qos, retain)
            .payload(payload)
            .properties(&properties)
            .who(username.as_deref(), &subscriber_id)
            .record("on-deliver-m5", &subscriber_id);
        match decide_deliver(&subscriber_id, &topic, payload, Some(&properties)) {
            DeliverAnswer::Ok(m) => DeliverVerdictM5::Ok(m),
            DeliverAnswer::Next => DeliverVerdictM5::Next,
            DeliverAnswer::Error(why) => DeliverVerdictM5::Error(why),
        }
    }
}
