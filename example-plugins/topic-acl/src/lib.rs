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

mod cache;
mod rules;

use std::cell::RefCell;

use cache::{DecisionCache, Key};
use rules::{Acl, Client, Decision, SubscribeDecision, Unmatched};
use sluice_plugin_sdk::{
    DeliverAuthVerdict, DeliverRequest, M5Error, Plugin, PublishModifiers, PublishRequest,
    PublishVerdictM5, SubscribeChanges, SubscribeRequest, SubscribeVerdictM5, SubscriberId,
    TopicResultM5, debug,
};

fn client<'a>(username: Option<&'a str>, id: &'a SubscriberId) -> Client<'a> {
    Client {
        username,
        client_id: &id.client_id,
        mountpoint: &id.mountpoint,
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

struct TopicAcl;

#[sluice_plugin_sdk::plugin]
impl Plugin for TopicAcl {
    type Config = Acl;

    fn init(acl: &Acl) -> Result<(), String> {
        debug!(
            "topic-acl ready (unmatched: {:?}, cache: {} s)",
            acl.unmatched, acl.cache_secs
        );
        Ok(())
    }

    /// An acceptance depends only on the client and the topic, never on
    /// the payload: the broker may reuse it for `cache_secs`.
    fn auth_on_publish_any(acl: &Acl, req: PublishRequest<'_>) -> PublishVerdictM5 {
        match acl.publish(
            &client(req.username.as_deref(), &req.subscriber_id),
            &req.topic,
        ) {
            Decision::Allow => PublishVerdictM5::Ok(
                (acl.cache_secs > 0).then(|| PublishModifiers::new().cache_secs(acl.cache_secs)),
            ),
            Decision::Unmatched if acl.unmatched == Unmatched::Next => PublishVerdictM5::Next,
            Decision::Deny | Decision::Unmatched => PublishVerdictM5::Error(
                M5Error::new(sluice_plugin_sdk::reason::NOT_AUTHORIZED)
                    .reason_string(format!("publishing to {:?} is not allowed", req.topic)),
            ),
        }
    }

    /// May the subscriber read a message on this topic?
    fn auth_on_deliver(acl: &Acl, req: DeliverRequest<'_>) -> DeliverAuthVerdict {
        let (username, id, topic) = (req.username.as_deref(), &req.subscriber_id, &req.topic);
        let client = client(username, id);
        let decision = if acl.denies_reads(&client) {
            let key = Key {
                username,
                client_id: &id.client_id,
                mountpoint: &id.mountpoint,
                topic,
            };
            READS.with_borrow_mut(|c| c.get_or_insert_with(key, || acl.read(&client, topic)))
        } else {
            // No deny pattern applies to this client: nothing to withhold,
            // and the allow patterns alone are as cheap as a cache lookup.
            acl.read(&client, topic)
        };
        match decision {
            // Reused by the broker for this connection and topic.
            Decision::Allow => {
                DeliverAuthVerdict::Ok((acl.cache_secs > 0).then_some(acl.cache_secs))
            }
            Decision::Unmatched if acl.unmatched == Unmatched::Next => DeliverAuthVerdict::Next,
            Decision::Deny | Decision::Unmatched => {
                DeliverAuthVerdict::Error(format!("reading {topic:?} is not allowed"))
            }
        }
    }

    /// Per requested filter: granted or refused (MQTT 3.x: 0x80); the
    /// whole SUBSCRIBE may be passed on.
    fn auth_on_subscribe_any(acl: &Acl, req: SubscribeRequest) -> SubscribeVerdictM5 {
        let client = client(req.username.as_deref(), &req.subscriber_id);
        let filters = req.topics.iter().map(|t| t.filter.as_str());
        let SubscribeDecision::PerTopic(granted) = acl.subscribe_all(&client, filters) else {
            return SubscribeVerdictM5::Next;
        };
        let results = req.topics.into_iter().zip(granted).map(|(t, ok)| {
            if !ok {
                return TopicResultM5::Rejected(acl.subscribe_refusal_code);
            }
            if acl.partly_denied(&client, &t.filter) {
                let id = &req.subscriber_id.client_id;
                debug!(
                    "{:?} granted to {id:?}; its messages are checked one by one",
                    t.filter
                );
            }
            TopicResultM5::Granted(t)
        });
        SubscribeVerdictM5::Ok(Some(SubscribeChanges {
            topics: Some(results.collect()),
            reason_string: None,
            user_properties: Vec::new(),
        }))
    }
}
