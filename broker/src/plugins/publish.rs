//! The publish-flow chains: `auth-on-publish(-m5)`, which accepts (maybe
//! changing the message), refuses or passes each PUBLISH and Will, and
//! `on-deliver(-m5)`, which may rewrite a message for one subscriber (after
//! the read check of `deliver`). Both return broker decisions with every
//! plugin value validated. The payload
//! is lent to the plugin as a handle: it is copied into the guest only if
//! the plugin reads it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::bindings::exports::sluice::plugin::{
    auth_on_publish, auth_on_publish_m5, on_deliver, on_deliver_m5,
};
use super::bindings::sluice::plugin::types as wit;
use super::chain::{Answer, Outcome};
use super::convert::{self, ModifierError, bad};
use super::deliver::Withheld;
use super::{CallFailure, Hook, Plugins, clip, messages, walk};
use crate::codec::{MessageProperties, ProtocolVersion, QoS};
use crate::limits::MessageLimits;
use crate::message::{Draft, Message};
use crate::reason::ReasonCode;
use crate::session::SubscriberId;
use crate::topic::TopicName;

/// Longest throttle a plugin may ask for.
const MAX_THROTTLE: Duration = Duration::from_secs(60);
/// Longest a cached acceptance may live.
pub(super) const MAX_CACHE: Duration = Duration::from_secs(24 * 3600);

/// A PUBLISH (or Will), as the hooks see it.
#[derive(Debug)]
pub struct PublishRequest<'a> {
    pub id: &'a SubscriberId,
    pub username: Option<&'a str>,
    pub version: ProtocolVersion,
    pub topic: &'a TopicName,
    pub payload: &'a Bytes,
    pub qos: QoS,
    pub retain: bool,
    pub properties: &'a MessageProperties,
    /// Message Expiry Interval, seconds.
    pub expiry: Option<u32>,
    pub is_will: bool,
    /// The plugin that published the message (host function `publish`):
    /// its own `auth-on-publish(-m5)` is not asked.
    pub from_plugin: Option<&'a str>,
    /// What the plugins' changes must stay within.
    pub limits: &'a MessageLimits,
}

/// Validated changes to a message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PublishChanges {
    pub topic: Option<TopicName>,
    pub payload: Option<Bytes>,
    pub qos: Option<QoS>,
    pub retain: Option<bool>,
    pub mountpoint: Option<Arc<str>>,
    pub throttle: Option<Duration>,
    /// New properties and Message Expiry Interval.
    pub properties: Option<(MessageProperties, Option<u32>)>,
}

impl PublishChanges {
    /// Applies the changes to a message's fields (topic, payload, QoS,
    /// RETAIN, properties with the expiry); the mountpoint and the
    /// throttle are the caller's to apply.
    pub(crate) fn apply(&self, d: &mut Draft) {
        if let Some(t) = &self.topic {
            d.topic = t.clone();
        }
        if let Some(p) = &self.payload {
            d.payload = p.clone();
        }
        if let Some(q) = self.qos {
            d.qos = q;
        }
        if let Some(r) = self.retain {
            d.retain = r;
        }
        if let Some((p, e)) = &self.properties {
            d.properties = p.clone();
            d.expiry = *e;
        }
    }
}

/// What the publish chain decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PublishOutcome {
    Accepted {
        changes: Option<Box<PublishChanges>>,
        /// The acceptance may be reused this long for the same client,
        /// topic, QoS and RETAIN flag.
        cache: Option<Duration>,
    },
    Refused {
        /// For MQTT 5 PUBACK/PUBREC (MQTT 3.x clients: see the policy).
        code: ReasonCode,
        reason_string: Option<String>,
        /// What to log.
        cause: String,
        /// The refusal came from a plugin call that used up a limit the
        /// request drove (deadline, fuel, memory, no free instance): the
        /// client is slowed down.
        overrun: bool,
    },
}

/// A delivery, as `on-deliver(-m5)` sees it.
#[derive(Debug)]
pub struct DeliverRequest<'a> {
    /// The subscriber.
    pub id: &'a SubscriberId,
    pub username: Option<&'a str>,
    pub version: ProtocolVersion,
    pub message: &'a Message,
    pub qos: QoS,
    pub retain: bool,
    /// What the plugins' changes must stay within.
    pub limits: &'a MessageLimits,
}

/// What the delivery hooks made of one message for one subscriber.
#[derive(Debug)]
pub struct Delivered {
    /// `on-deliver(-m5)`'s changes, if any.
    pub changes: Option<DeliveryChanges>,
    /// How long `auth-on-deliver`'s acceptance may be reused, if it said.
    pub reuse: Option<Duration>,
}

/// Validated changes to one delivery.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeliveryChanges {
    pub topic: Option<TopicName>,
    pub payload: Option<Bytes>,
    pub properties: Option<(MessageProperties, Option<u32>)>,
}

/// Whether PUBACK/PUBREC may refuse a message with `code` (MQTT 5
/// §3.4.2.1).
pub fn is_puback_refusal(code: ReasonCode) -> bool {
    matches!(code.0, 0x80 | 0x83 | 0x87 | 0x90 | 0x91 | 0x97 | 0x99)
}

enum Refused {
    V3(String),
    M5(wit::M5Error),
}

impl Plugins {
    /// Walks `auth-on-publish(-m5)` for a PUBLISH or a Will. Call only when
    /// [`Plugins::checks_publish`] is true.
    pub async fn authorize_publish(&self, req: &PublishRequest<'_>) -> PublishOutcome {
        let set = self.set();
        let chains = &set.publish;
        if let Some(name) = chains.missing() {
            return PublishOutcome::Refused {
                code: ReasonCode::NOT_AUTHORIZED,
                reason_string: None,
                cause: format!("required plugin {name} is not loaded (fail closed)"),
                overrun: false,
            };
        }
        let others: Vec<Arc<super::Plugin>>;
        let chain = match req.from_plugin {
            Some(name) => {
                others = chains
                    .plugins()
                    .iter()
                    .filter(|p| &*p.name != name)
                    .cloned()
                    .collect();
                if others.is_empty() {
                    // No other plugin checks publishes: as for a client
                    // when no plugin does.
                    return PublishOutcome::Accepted {
                        changes: None,
                        cache: None,
                    };
                }
                &others[..]
            }
            None => chains.plugins(),
        };
        let id = convert::subscriber_id(req.id);
        let qos = messages::qos(req.qos);
        let topic = req.topic.as_str();
        let props = chains
            .needs_m5(req.version)
            .then(|| messages::properties(req.properties, req.expiry));
        let outcome = walk(chain, "auth-on-publish", |p| {
            let (id, props) = (&id, &props);
            async move {
                match props {
                    Some(props) if chains.m5_for(p, req.version) => {
                        let verdict = hook_call_with_payload!(
                            p,
                            Hook::AuthOnPublishM5,
                            auth_on_publish_m5,
                            req.payload.clone(),
                            |g, store, payload| g.call_auth_on_publish_m5(
                                store,
                                req.username,
                                id,
                                qos,
                                topic,
                                payload,
                                req.retain,
                                props,
                                req.is_will
                            )
                        )
                        .await?;
                        Ok::<_, CallFailure>(match verdict {
                            auth_on_publish_m5::PublishVerdictM5::Ok(m) => Answer::Ok(m),
                            auth_on_publish_m5::PublishVerdictM5::Next => Answer::Next,
                            auth_on_publish_m5::PublishVerdictM5::Error(e) => {
                                Answer::Error(Refused::M5(e))
                            }
                        })
                    }
                    _ => {
                        let verdict = hook_call_with_payload!(
                            p,
                            Hook::AuthOnPublish,
                            auth_on_publish,
                            req.payload.clone(),
                            |g, store, payload| g.call_auth_on_publish(
                                store,
                                req.username,
                                id,
                                qos,
                                topic,
                                payload,
                                req.retain,
                                req.is_will
                            )
                        )
                        .await?;
                        Ok(match verdict {
                            auth_on_publish::PublishVerdict::Ok(m) => Answer::Ok(m),
                            auth_on_publish::PublishVerdict::Next => Answer::Next,
                            auth_on_publish::PublishVerdict::Error(e) => {
                                Answer::Error(Refused::V3(e))
                            }
                        })
                    }
                }
            }
        })
        .await;
        let refused = |code, cause: String| PublishOutcome::Refused {
            code,
            reason_string: None,
            cause,
            overrun: false,
        };
        match outcome {
            Outcome::Accepted { index, value } => {
                let plugin = &chain[index].name;
                let Some(m) = value else {
                    return PublishOutcome::Accepted {
                        changes: None,
                        cache: None,
                    };
                };
                match publish_changes(m, req.limits) {
                    Ok((changes, cache)) => PublishOutcome::Accepted { changes, cache },
                    Err(e) => {
                        let hook = chains.hook_for(&chain[index], req.version);
                        chain[index].invalid_answer(req.id, hook, &e);
                        refused(
                            ReasonCode::UNSPECIFIED_ERROR,
                            format!("plugin {plugin} returned an invalid {e}"),
                        )
                    }
                }
            }
            Outcome::Refused { index, error } => {
                let plugin = &chain[index].name;
                match error {
                    Refused::V3(why) => refused(
                        ReasonCode::NOT_AUTHORIZED,
                        format!("plugin {plugin}: {}", clip(&why)),
                    ),
                    Refused::M5(e) => {
                        let code = ReasonCode(e.reason_code);
                        let cause = format!(
                            "plugin {plugin} refused with {code}{}",
                            e.reason_string
                                .as_deref()
                                .map(|s| format!(": {}", clip(s)))
                                .unwrap_or_default()
                        );
                        if is_puback_refusal(code) {
                            PublishOutcome::Refused {
                                code,
                                reason_string: convert::reason_string(e.reason_string),
                                cause,
                                overrun: false,
                            }
                        } else {
                            refused(
                                ReasonCode::NOT_AUTHORIZED,
                                format!("{cause}, which PUBACK cannot carry (0x87 sent)"),
                            )
                        }
                    }
                }
            }
            Outcome::Failed { index, failure } => PublishOutcome::Refused {
                code: ReasonCode::NOT_AUTHORIZED,
                reason_string: None,
                cause: format!("plugin {} failed: {failure}", chain[index].name),
                overrun: failure.is_overrun(),
            },
            Outcome::Exhausted => refused(
                ReasonCode::NOT_AUTHORIZED,
                "every auth-on-publish plugin answered next".into(),
            ),
        }
    }

    /// Walks `auth-on-deliver` (unless the connection reuses an earlier
    /// acceptance: `read_accepted`), then `on-deliver(-m5)`, for one
    /// message to one subscriber. Call only when
    /// [`Plugins::rewrites_deliveries`] is true. `Err`: do not send it (see
    /// `deliver`). `changes` `None`: send it unchanged (no change, `error`,
    /// exhaustion, a failed call, or an invalid change, which is logged).
    pub async fn rewrite_delivery(
        &self,
        req: &DeliverRequest<'_>,
        read_accepted: bool,
    ) -> Result<Delivered, Withheld> {
        let reuse = if read_accepted {
            None
        } else {
            self.authorize_delivery(req).await?
        };
        let changes = if self.walks(Hook::OnDeliver, Hook::OnDeliverM5) {
            self.rewrite_delivery_only(req).await
        } else {
            None
        };
        Ok(Delivered { changes, reuse })
    }

    /// The `on-deliver(-m5)` half of [`Plugins::rewrite_delivery`].
    async fn rewrite_delivery_only(&self, req: &DeliverRequest<'_>) -> Option<DeliveryChanges> {
        let set = self.set();
        let chains = &set.deliver;
        let chain = chains.plugins();
        let v5 = req.version.is_v5();
        let id = convert::subscriber_id(req.id);
        let m = req.message;
        let qos = messages::qos(req.qos);
        let topic = m.topic.as_str();
        let props = chains
            .needs_m5(req.version)
            .then(|| messages::message_properties(m, Instant::now()));
        let outcome = walk(chain, "on-deliver", |p| {
            let (id, props) = (&id, &props);
            async move {
                match props {
                    Some(props) if chains.m5_for(p, req.version) => {
                        let verdict = hook_call_with_payload!(
                            p,
                            Hook::OnDeliverM5,
                            on_deliver_m5,
                            m.payload.clone(),
                            |g, store, payload| g.call_on_deliver_m5(
                                store,
                                req.username,
                                id,
                                qos,
                                topic,
                                payload,
                                req.retain,
                                props
                            )
                        )
                        .await?;
                        Ok::<_, CallFailure>(match verdict {
                            on_deliver_m5::DeliverVerdictM5::Ok(m) => Answer::Ok(m),
                            on_deliver_m5::DeliverVerdictM5::Next => Answer::Next,
                            on_deliver_m5::DeliverVerdictM5::Error(e) => Answer::Error(e),
                        })
                    }
                    _ => {
                        let verdict = hook_call_with_payload!(
                            p,
                            Hook::OnDeliver,
                            on_deliver,
                            m.payload.clone(),
                            |g, store, payload| g.call_on_deliver(
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
                        Ok(match verdict {
                            on_deliver::DeliverVerdict::Ok(m) => Answer::Ok(m),
                            on_deliver::DeliverVerdict::Next => Answer::Next,
                            on_deliver::DeliverVerdict::Error(e) => Answer::Error(e),
                        })
                    }
                }
            }
        })
        .await;
        match outcome {
            Outcome::Accepted { index, value } => {
                let via_m5 = chains.m5_for(&chain[index], req.version);
                match delivery_changes(value?, v5, via_m5, req.limits) {
                    Ok(changes) => Some(changes),
                    Err(e) => {
                        let hook = chains.hook_for(&chain[index], req.version);
                        chain[index].invalid_answer(req.id, hook, &e);
                        None
                    }
                }
            }
            Outcome::Refused { index, error } => {
                tracing::debug!(client = %req.id, plugin = %chain[index].name, "on-deliver error: {}; message sent unchanged", clip(&error));
                None
            }
            Outcome::Failed { index, failure } => {
                tracing::warn!(client = %req.id, plugin = %chain[index].name, "on-deliver failed ({failure}); message sent unchanged");
                None
            }
            Outcome::Exhausted => None,
        }
    }
}

/// Checks publish modifiers: the changes (none if only the cache is set)
/// and how long the acceptance may be cached.
fn publish_changes(
    m: wit::PublishModifiers,
    limits: &MessageLimits,
) -> Result<(Option<Box<PublishChanges>>, Option<Duration>), ModifierError> {
    let changes = PublishChanges {
        topic: m
            .topic
            .as_deref()
            .map(|t| messages::limited_topic("topic", t, limits))
            .transpose()?,
        payload: m.payload.map(Bytes::from),
        qos: m.qos.map(messages::qos_from),
        retain: m.retain,
        mountpoint: m
            .mountpoint
            .as_deref()
            .map(|mp| messages::mountpoint("mountpoint", mp))
            .transpose()?,
        throttle: m
            .throttle_ms
            .map(|ms| {
                let d = Duration::from_millis(u64::from(ms));
                if d > MAX_THROTTLE {
                    Err(bad("throttle-ms", format!("{ms} exceeds 60000")))
                } else {
                    Ok(d)
                }
            })
            .transpose()?,
        properties: m.properties.map(messages::properties_from).transpose()?,
    };
    if let Some(payload) = &changes.payload {
        messages::within_size(
            payload.len(),
            changes.properties.as_ref().map(|(p, _)| p),
            limits,
        )?;
    }
    if changes == PublishChanges::default() {
        let cache = m
            .cache_secs
            .map(|s| Duration::from_secs(u64::from(s)).min(MAX_CACHE));
        return Ok((None, cache.filter(|d| !d.is_zero())));
    }
    // A cached answer must not skip changes: caching is only for plain
    // acceptances.
    Ok((Some(Box::new(changes)), None))
}

/// The changes `on-deliver(-m5)` made, for a subscriber of MQTT 5 (`v5`)
/// or 3.x, answered through the m5 hook or not (`via_m5`).
fn delivery_changes(
    mut m: wit::DeliverModifiers,
    v5: bool,
    via_m5: bool,
    limits: &MessageLimits,
) -> Result<DeliveryChanges, ModifierError> {
    if m.properties.is_some() && !v5 {
        if !via_m5 {
            return Err(bad(
                "properties",
                "cannot be sent to an MQTT 3.x subscriber",
            ));
        }
        // An m5 hook serving an MQTT 3.x subscriber: the properties have
        // nowhere to go.
        m.properties = None;
    }
    let changes = DeliveryChanges {
        topic: m
            .topic
            .as_deref()
            .map(|t| messages::limited_topic("topic", t, limits))
            .transpose()?,
        payload: m.payload.map(Bytes::from),
        properties: m.properties.map(messages::properties_from).transpose()?,
    };
    if let Some(payload) = &changes.payload {
        messages::within_size(
            payload.len(),
            changes.properties.as_ref().map(|(p, _)| p),
            limits,
        )?;
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none() -> wit::PublishModifiers {
        wit::PublishModifiers {
            topic: None,
            payload: None,
            qos: None,
            retain: None,
            mountpoint: None,
            throttle_ms: None,
            properties: None,
            cache_secs: None,
        }
    }

    fn limits() -> MessageLimits {
        MessageLimits::from_config(&crate::Config::default())
    }

    #[test]
    fn changes_stay_within_the_operator_limits() {
        let limits = MessageLimits {
            max_payload: 100,
            ..limits()
        };
        let big = wit::PublishModifiers {
            payload: Some(vec![0; 101]),
            ..none()
        };
        assert_eq!(publish_changes(big, &limits).unwrap_err().field, "payload");
        let fits = wit::PublishModifiers {
            payload: Some(vec![0; 100]),
            ..none()
        };
        assert!(publish_changes(fits, &limits).is_ok());
        let deep = wit::PublishModifiers {
            topic: Some("a/".repeat(200) + "b"),
            ..none()
        };
        assert_eq!(publish_changes(deep, &limits).unwrap_err().field, "topic");
        let big = wit::DeliverModifiers {
            topic: None,
            payload: Some(vec![0; 101]),
            properties: None,
        };
        assert_eq!(
            delivery_changes(big, true, false, &limits)
                .unwrap_err()
                .field,
            "payload"
        );
    }

    #[test]
    fn cache_only_for_plain_acceptances() {
        let plain = wit::PublishModifiers {
            cache_secs: Some(30),
            ..none()
        };
        assert_eq!(
            publish_changes(plain, &limits()).unwrap(),
            (None, Some(Duration::from_secs(30)))
        );
        let changed = wit::PublishModifiers {
            cache_secs: Some(30),
            retain: Some(true),
            ..none()
        };
        let (changes, cache) = publish_changes(changed, &limits()).unwrap();
        assert_eq!(changes.unwrap().retain, Some(true));
        assert_eq!(cache, None);
        assert_eq!(publish_changes(none(), &limits()).unwrap(), (None, None));
    }

    #[test]
    fn invalid_publish_modifiers_name_the_field() {
        let cases = [
            (
                wit::PublishModifiers {
                    topic: Some("a/+".into()),
                    ..none()
                },
                "topic",
            ),
            (
                wit::PublishModifiers {
                    mountpoint: Some("#".into()),
                    ..none()
                },
                "mountpoint",
            ),
            (
                wit::PublishModifiers {
                    throttle_ms: Some(600_000),
                    ..none()
                },
                "throttle-ms",
            ),
        ];
        for (m, field) in cases {
            assert_eq!(publish_changes(m, &limits()).unwrap_err().field, field);
        }
    }

    #[test]
    fn deliver_properties_need_mqtt5() {
        let m = wit::DeliverModifiers {
            topic: None,
            payload: Some(b"x".to_vec()),
            properties: Some(messages::properties(&MessageProperties::default(), None)),
        };
        assert_eq!(
            delivery_changes(m.clone(), false, false, &limits())
                .unwrap_err()
                .field,
            "properties"
        );
        // An m5 hook serving an MQTT 3.x subscriber: the properties are
        // dropped, the rest applies.
        let via_m5 = delivery_changes(m.clone(), false, true, &limits()).unwrap();
        assert_eq!(via_m5.properties, None);
        assert_eq!(via_m5.payload.as_deref(), Some(&b"x"[..]));
        assert!(delivery_changes(m, true, false, &limits()).is_ok());
        assert!(is_puback_refusal(ReasonCode::NOT_AUTHORIZED));
        assert!(!is_puback_refusal(ReasonCode::BANNED));
    }
}
