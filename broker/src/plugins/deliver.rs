//! Read authorisation of deliveries: the `auth-on-deliver` chain, asked
//! for each message about to be sent to a subscriber, before
//! `on-deliver(-m5)` may rewrite it. It is an authorisation chain: `ok`
//! sends, `error` withholds the message from this subscriber, and an
//! exhausted chain, a failed call that fails closed, or a required plugin
//! that is not loaded withhold it too. So an ACL can accept a wide filter
//! (`#`) at SUBSCRIBE and still keep some topics from the subscriber.

use std::time::Duration;

use super::bindings::exports::sluice::plugin::auth_on_deliver;
use super::chain::{Answer, Outcome};
use super::publish::DeliverRequest;
use super::{CallFailure, Hook, Plugins, clip, convert, messages, walk};

/// A delivery the read check withheld from its subscriber: the connection
/// does not send it (the cause is logged here, at debug level).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Withheld;

impl Plugins {
    /// Walks `auth-on-deliver` for one message to one subscriber (every
    /// delivery passes when no plugin implements it).
    /// `Ok` with how long the acceptance may be reused, if the plugin
    /// that accepted said so.
    pub(super) async fn authorize_delivery(
        &self,
        req: &DeliverRequest<'_>,
    ) -> Result<Option<Duration>, Withheld> {
        if !self.implements(Hook::AuthOnDeliver) {
            return Ok(None);
        }
        let set = self.set();
        let chain = &set.deliver_auth;
        let m = req.message;
        let topic = m.topic.as_str();
        let withheld = |cause: &dyn std::fmt::Display| {
            tracing::debug!(client = %req.id, topic, "message withheld: {cause}");
            Err(Withheld)
        };
        if let Some(name) = chain.missing() {
            return withheld(&format_args!(
                "required plugin {name} is not loaded (fail closed)"
            ));
        }
        let plugins = chain.plugins();
        let id = convert::subscriber_id(req.id);
        let qos = messages::qos(req.qos);
        let outcome = walk(plugins, "auth-on-deliver", |p| {
            let id = &id;
            async move {
                let verdict = hook_call_with_payload!(
                    p,
                    Hook::AuthOnDeliver,
                    auth_on_deliver,
                    m.payload.clone(),
                    |g, store, payload| g.call_auth_on_deliver(
                        store,
                        req.username,
                        id,
                        qos,
                        topic,
                        payload,
                        req.retain
                    )
                )
                .await?;
                Ok::<_, CallFailure>(match verdict {
                    auth_on_deliver::DeliverAuthVerdict::Ok(secs) => Answer::Ok(secs),
                    auth_on_deliver::DeliverAuthVerdict::Next => Answer::Next,
                    auth_on_deliver::DeliverAuthVerdict::Error(e) => Answer::Error(e),
                })
            }
        })
        .await;
        match outcome {
            Outcome::Accepted { value, .. } => Ok(value
                .map(|s| Duration::from_secs(u64::from(s)).min(super::publish::MAX_CACHE))
                .filter(|d| !d.is_zero())),
            Outcome::Refused { index, error } => withheld(&format_args!(
                "plugin {}: {}",
                plugins[index].name,
                clip(&error)
            )),
            Outcome::Failed { index, failure } => withheld(&format_args!(
                "plugin {} failed: {failure} (fail closed)",
                plugins[index].name
            )),
            Outcome::Exhausted => withheld(&"every auth-on-deliver plugin answered next"),
        }
    }
}
