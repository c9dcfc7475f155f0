//! Example plugin: a topic ACL for PUBLISH, SUBSCRIBE and delivery.
//!
//! Allow and deny patterns (MQTT topic filters, with `%u`, `%c` and `%m`
//! standing for the client's username, client id and mountpoint) come from
//! the plugin's `[plugin.NAME.config]`, for everyone, per user and per
//! client. Deny wins over allow; what no rule mentions is refused or left
//! to the next plugin (`unmatched`). A publish acceptance depends on the
//! client and the topic only, so it is cached by the broker (`cache_secs`)
//! and a client's steady stream to one topic is checked once. A SUBSCRIBE
//! is refused only for filters entirely inside a denied space; a filter
//! that only overlaps one (`#` with `private/#` denied) is granted, and
//! each message it brings is checked in `auth-on-deliver`, with the
//! decisions cached per subscriber and topic in the instance (`cache`).
//! See README.md for the configuration.
//!
//! Written with the Rust plugin SDK (`plugin-sdk/`): the component exports
//! `lifecycle`, the four `auth-on-publish(-m5)` / `auth-on-subscribe(-m5)`
//! hooks and `auth-on-deliver` implemented below, and nothing else.

mod cache;
mod rules;

use std::cell::RefCell;
use std::sync::OnceLock;

use cache::{DecisionCache, Key};
use rules::{Acl, Client, Decision, SubscribeDecision, Unmatched};
use sluice_plugin_sdk::{
    DeliverAuthVerdict, M5Error, MessageProperties, Payload, Plugin, PublishModifiers,
    PublishVerdict, PublishVerdictM5, Qos, SubscribeChanges, SubscribeProperties, SubscribeVerdict,
    SubscribeVerdictM5, SubscriberId, TopicRequest, TopicResult, TopicResultM5, TopicSubscription,
    config, log,
};

/// The configuration, parsed once per instance (by `init`).
static ACL: OnceLock<Result<Acl, String>> = OnceLock::new();

fn acl() -> Result<&'static Acl, &'static str> {
    ACL.get_or_init(|| Acl::parse(&config::all()))
        .as_ref()
        .map_err(String::as_str)
}

fn client<'a>(username: Option<&'a str>, id: &'a SubscriberId) -> Client<'a> {
    Client {
        username,
        client_id: &id.client_id,
        mountpoint: &id.mountpoint,
    }
}

/// Not authorized (MQTT 5 §2.4).
const NOT_AUTHORIZED: u8 = 0x87;

/// The verdict on a publish, shared by the MQTT 3.x and 5 hooks.
enum Verdict {
    Ok(Option<PublishModifiers>),
    Next,
    Error(String),
}

fn decide_publish(username: Option<&str>, id: &SubscriberId, topic: &str) -> Verdict {
    let acl = match acl() {
        Ok(acl) => acl,
        // Unreachable after a successful init; refuse rather than guess.
        Err(e) => return Verdict::Error(format!("topic-acl is not configured: {e}")),
    };
    match acl.publish(&client(username, id), topic) {
        Decision::Allow => Verdict::Ok(cached(acl.cache_secs)),
        Decision::Unmatched if acl.unmatched == Unmatched::Next => Verdict::Next,
        Decision::Deny | Decision::Unmatched => {
            Verdict::Error(format!("publishing to {topic:?} is not allowed"))
        }
    }
}

/// An acceptance the broker may reuse for `secs` seconds: the decision
/// depends only on the client and the topic, never on the payload.
fn cached(secs: u32) -> Option<PublishModifiers> {
    (secs > 0).then(|| PublishModifiers::new().cache_secs(secs))
}

/// Per requested filter: granted or not; `None`: pass the SUBSCRIBE on.
fn decide_subscribe<'f>(
    username: Option<&str>,
    id: &SubscriberId,
    filters: impl IntoIterator<Item = &'f str> + Clone,
) -> Option<Vec<bool>> {
    let Ok(acl) = acl() else {
        // Unreachable after a successful init: refuse every topic.
        return Some(filters.into_iter().map(|_| false).collect());
    };
    let client = client(username, id);
    match acl.subscribe_all(&client, filters.clone()) {
        SubscribeDecision::PerTopic(granted) => {
            for (filter, ok) in filters.into_iter().zip(&granted) {
                if *ok && acl.partly_denied(&client, filter) {
                    log::debug(&format!(
                        "{filter:?} granted to {:?}; its messages are checked one by one",
                        id.client_id
                    ));
                }
            }
            Some(granted)
        }
        SubscribeDecision::Next => None,
    }
}

/// Read decisions cached by this instance: at most this many entries...
const READ_CACHE_ENTRIES: usize = 4096;
/// ...and this many bytes of keys (client ids and topics may be long).
const READ_CACHE_BYTES: usize = 1 << 20;

thread_local! {
    /// Per (subscriber, topic); an instance runs one call at a time.
    static READS: RefCell<DecisionCache<Decision>> =
        RefCell::new(DecisionCache::new(READ_CACHE_ENTRIES, READ_CACHE_BYTES));
}

/// May the subscriber read a message on `topic`?
fn decide_read(username: Option<&str>, id: &SubscriberId, topic: &str) -> DeliverAuthVerdict {
    let acl = match acl() {
        Ok(acl) => acl,
        // Unreachable after a successful init; withhold rather than guess.
        Err(e) => return DeliverAuthVerdict::Error(format!("topic-acl is not configured: {e}")),
    };
    let client = client(username, id);
    let decision = if acl.denies_reads(&client) {
        let key = Key {
            username,
            client_id: &id.client_id,
            mountpoint: &id.mountpoint,
            topic,
        };
        READS.with_borrow_mut(|cache| cache.get_or_insert_with(key, || acl.read(&client, topic)))
    } else {
        // No deny pattern applies to this client: nothing to withhold,
        // and the allow patterns alone are as cheap as a cache lookup.
        acl.read(&client, topic)
    };
    match decision {
        // Reused by the broker for this connection and topic.
        Decision::Allow => DeliverAuthVerdict::Ok((acl.cache_secs > 0).then_some(acl.cache_secs)),
        Decision::Unmatched if acl.unmatched == Unmatched::Next => DeliverAuthVerdict::Next,
        Decision::Deny | Decision::Unmatched => {
            DeliverAuthVerdict::Error(format!("reading {topic:?} is not allowed"))
        }
    }
}

struct TopicAcl;

#[sluice_plugin_sdk::plugin]
impl Plugin for TopicAcl {
    fn init() -> Result<(), String> {
        let acl = acl().map_err(|e| format!("invalid topic-acl configuration: {e}"))?;
        log::debug(&format!(
            "topic-acl ready (unmatched: {:?}, cache: {} s)",
            acl.unmatched, acl.cache_secs
        ));
        Ok(())
    }

    fn auth_on_publish(
        username: Option<String>,
        subscriber_id: SubscriberId,
        _qos: Qos,
        topic: String,
        _payload: &Payload,
        _retain: bool,
        _is_will: bool,
    ) -> PublishVerdict {
        match decide_publish(username.as_deref(), &subscriber_id, &topic) {
            Verdict::Ok(m) => PublishVerdict::Ok(m),
            Verdict::Next => PublishVerdict::Next,
            Verdict::Error(why) => PublishVerdict::Error(why),
        }
    }

    fn auth_on_publish_m5(
        username: Option<String>,
        subscriber_id: SubscriberId,
        _qos: Qos,
        topic: String,
        _payload: &Payload,
        _retain: bool,
        _properties: MessageProperties,
        _is_will: bool,
    ) -> PublishVerdictM5 {
        match decide_publish(username.as_deref(), &subscriber_id, &topic) {
            Verdict::Ok(m) => PublishVerdictM5::Ok(m),
            Verdict::Next => PublishVerdictM5::Next,
            Verdict::Error(why) => {
                PublishVerdictM5::Error(M5Error::new(NOT_AUTHORIZED).reason_string(why))
            }
        }
    }

    fn auth_on_deliver(
        username: Option<String>,
        subscriber_id: SubscriberId,
        _qos: Qos,
        topic: String,
        _payload: &Payload,
        _retain: bool,
    ) -> DeliverAuthVerdict {
        decide_read(username.as_deref(), &subscriber_id, &topic)
    }

    fn auth_on_subscribe(
        username: Option<String>,
        subscriber_id: SubscriberId,
        topics: Vec<TopicRequest>,
    ) -> SubscribeVerdict {
        let filters = topics.iter().map(|t| t.filter.as_str());
        let Some(granted) = decide_subscribe(username.as_deref(), &subscriber_id, filters) else {
            return SubscribeVerdict::Next;
        };
        let results = topics
            .into_iter()
            .zip(granted)
            .map(|(t, ok)| {
                if ok {
                    TopicResult::Granted(t)
                } else {
                    TopicResult::Rejected
                }
            })
            .collect();
        SubscribeVerdict::Ok(Some(results))
    }

    fn auth_on_subscribe_m5(
        username: Option<String>,
        subscriber_id: SubscriberId,
        topics: Vec<TopicSubscription>,
        _properties: SubscribeProperties,
    ) -> SubscribeVerdictM5 {
        let filters = topics.iter().map(|t| t.filter.as_str());
        let Some(granted) = decide_subscribe(username.as_deref(), &subscriber_id, filters) else {
            return SubscribeVerdictM5::Next;
        };
        let refusal = acl().map_or(NOT_AUTHORIZED, |acl| acl.subscribe_refusal_code);
        let results = topics
            .into_iter()
            .zip(granted)
            .map(|(t, ok)| {
                if ok {
                    TopicResultM5::Granted(t)
                } else {
                    TopicResultM5::Rejected(refusal)
                }
            })
            .collect();
        SubscribeVerdictM5::Ok(Some(SubscribeChanges {
            topics: Some(results),
            reason_string: None,
            user_properties: Vec::new(),
        }))
    }
}
