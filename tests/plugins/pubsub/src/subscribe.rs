//! Subscribe and unsubscribe: what the configuration answers for the
//! requested filters, and the MQTT 3 forms of the hooks (`auth-on-subscribe`,
//! `on-subscribe`, `on-unsubscribe`); the MQTT 5 forms are in `m5`.

use crate::Pubsub;
use crate::config::{first_listed, listed, mapped, mapped_code, mapped_qos};
use crate::exports::sluice::plugin::{auth_on_subscribe, on_subscribe, on_unsubscribe};
use crate::record::{Fields, qos_number, subscriptions_text};
use crate::sluice::plugin::types::{Qos, SubscriberId, TopicSubscription};

/// What the configuration says about one requested filter.
pub(crate) enum TopicAnswer {
    Granted { filter: String, qos: Qos },
    Rejected { code: u8 },
}

pub(crate) enum SubscribeAnswer {
    Error {
        filter: String,
    },
    Next,
    /// One answer per requested filter (one more with `sub_bad_list`);
    /// `changed` is false when every filter is granted as requested.
    Topics {
        answers: Vec<TopicAnswer>,
        changed: bool,
    },
}

pub(crate) fn decide_subscribe(requested: &[(&str, Qos)]) -> SubscribeAnswer {
    let filters = || requested.iter().map(|(f, _)| *f);
    if let Some(f) = first_listed("sub_panic", filters()) {
        panic!("pubsub: sub_panic on {f}, as configured");
    }
    if let Some(f) = first_listed("sub_error", filters()) {
        return SubscribeAnswer::Error {
            filter: f.to_owned(),
        };
    }
    if first_listed("sub_next", filters()).is_some() {
        return SubscribeAnswer::Next;
    }
    let mut changed = false;
    let mut answers: Vec<TopicAnswer> = requested
        .iter()
        .map(|&(filter, qos)| {
            if listed("sub_reject", filter) {
                changed = true;
                return TopicAnswer::Rejected {
                    code: mapped_code("sub_code", filter, 0x87),
                };
            }
            let granted_filter = mapped("sub_rewrite", filter).unwrap_or(filter);
            let granted_qos = match mapped_qos("sub_max_qos", filter) {
                Some(max) if qos_number(max) < qos_number(qos) => max,
                _ => qos,
            };
            if granted_filter != filter || granted_qos != qos {
                changed = true;
            }
            TopicAnswer::Granted {
                filter: granted_filter.to_owned(),
                qos: granted_qos,
            }
        })
        .collect();
    if first_listed("sub_bad_list", filters()).is_some() {
        changed = true;
        if let Some(&(filter, qos)) = requested.last() {
            answers.push(TopicAnswer::Granted {
                filter: filter.to_owned(),
                qos,
            });
        }
    }
    SubscribeAnswer::Topics { answers, changed }
}

pub(crate) enum UnsubscribeAnswer {
    Error(String),
    Keep,
    Rewrite(Vec<String>),
}

pub(crate) fn decide_unsubscribe(topics: &[String]) -> UnsubscribeAnswer {
    if let Some(f) = first_listed("unsub_error", topics.iter().map(String::as_str)) {
        return UnsubscribeAnswer::Error(format!("unsub_error on {f}"));
    }
    let rewritten: Vec<String> = topics
        .iter()
        .map(|t| mapped("unsub_rewrite", t).unwrap_or(t).to_owned())
        .collect();
    if rewritten == topics {
        UnsubscribeAnswer::Keep
    } else {
        UnsubscribeAnswer::Rewrite(rewritten)
    }
}

impl auth_on_subscribe::Guest for Pubsub {
    fn auth_on_subscribe(
        username: Option<String>,
        subscriber_id: SubscriberId,
        topics: Vec<auth_on_subscribe::TopicRequest>,
    ) -> auth_on_subscribe::SubscribeVerdict {
        use auth_on_subscribe::{SubscribeVerdict, TopicRequest, TopicResult};
        let text: Vec<String> = topics
            .iter()
            .map(|t| format!("{}:{}", t.filter, qos_number(t.qos)))
            .collect();
        Fields::default()
            .add("topics", text.join(","))
            .who(username.as_deref(), &subscriber_id)
            .record("auth-on-subscribe", &subscriber_id);
        let requested: Vec<(&str, Qos)> =
            topics.iter().map(|t| (t.filter.as_str(), t.qos)).collect();
        match decide_subscribe(&requested) {
            SubscribeAnswer::Error { filter } => {
                SubscribeVerdict::Error(format!("sub_error on {filter}"))
            }
            SubscribeAnswer::Next => SubscribeVerdict::Next,
            SubscribeAnswer::Topics { changed: false, .. } => SubscribeVerdict::Ok(None),
            SubscribeAnswer::Topics { answers, .. } => SubscribeVerdict::Ok(Some(
                answers
                    .into_iter()
                    .map(|a| match a {
                        TopicAnswer::Granted { filter, qos } => {
                            TopicResult::Granted(TopicRequest { filter, qos })
                        }
                        TopicAnswer::Rejected { .. } => TopicResult::Rejected,
                    })
                    .collect(),
            )),
        }
    }
}

impl on_subscribe::Guest for Pubsub {
    fn on_subscribe(
        username: Option<String>,
        subscriber_id: SubscriberId,
        topics: Vec<TopicSubscription>,
    ) {
        Fields::default()
            .add("topics", subscriptions_text(&topics))
            .who(username.as_deref(), &subscriber_id)
            .record("on-subscribe", &subscriber_id);
    }
}

impl on_unsubscribe::Guest for Pubsub {
    fn on_unsubscribe(
        username: Option<String>,
        subscriber_id: SubscriberId,
        topics: Vec<String>,
    ) -> on_unsubscribe::UnsubscribeVerdict {
        use on_unsubscribe::UnsubscribeVerdict;
        Fields::default()
            .add("topics", topics.join(","))
            .who(username.as_deref(), &subscriber_id)
            .record("on-unsubscribe", &subscriber_id);
        match decide_unsubscribe(&topics) {
            UnsubscribeAnswer::Error(why) => UnsubscribeVerdict::Error(why),
            UnsubscribeAnswer::Keep => UnsubscribeVerdict::Ok(None),
            UnsubscribeAnswer::Rewrite(list) => UnsubscribeVerdict::Ok(Some(list)),
        }
    }
}
