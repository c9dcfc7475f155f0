//! The subscribe-flow chains: `auth-on-subscribe(-m5)`, which may accept,
//! rewrite, downgrade or refuse each topic of a SUBSCRIBE, and
//! `on-unsubscribe(-m5)`, which may rewrite the filters of an UNSUBSCRIBE.
//! Both return broker decisions with every plugin value validated.

use super::bindings::exports::sluice::plugin::{
    auth_on_subscribe, auth_on_subscribe_m5, on_unsubscribe, on_unsubscribe_m5,
};
use super::bindings::sluice::plugin::types as wit;
use super::chain::{Answer, Outcome};
use super::{CallFailure, Hook, Plugins, clip, convert, messages, walk};
use crate::codec::{ProtocolVersion, SubscriptionOptions, UserProperty};
use crate::reason::ReasonCode;
use crate::session::SubscriberId;
use crate::topic::Subscription;

/// A SUBSCRIBE, as the hooks see it.
#[derive(Debug)]
pub struct SubscribeRequest<'a> {
    pub id: &'a SubscriberId,
    pub username: Option<&'a str>,
    pub version: ProtocolVersion,
    /// The valid filters of the packet, in order.
    pub topics: &'a [(Subscription, SubscriptionOptions)],
    pub subscription_identifier: Option<u32>,
    pub user_properties: &'a [UserProperty],
}

/// What becomes of one requested topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TopicDecision {
    Granted(Subscription, SubscriptionOptions),
    /// The SUBACK code (already the 0x80 of MQTT 3.x for those clients).
    Rejected(ReasonCode),
}

/// What the subscribe chain decided: one decision per requested topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscribeOutcome {
    pub topics: Vec<TopicDecision>,
    pub reason_string: Option<String>,
    pub user_properties: Vec<UserProperty>,
    /// The topics were refused because a plugin call used up a limit the
    /// request drove (deadline, fuel, memory, no free instance): the
    /// client is slowed down.
    pub overrun: bool,
}

/// An UNSUBSCRIBE, as the hooks see it.
#[derive(Debug)]
pub struct UnsubscribeRequest<'a> {
    pub id: &'a SubscriberId,
    pub username: Option<&'a str>,
    pub version: ProtocolVersion,
    pub topics: &'a [String],
    pub user_properties: &'a [UserProperty],
}

/// What the unsubscribe chain changed; the default changes nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnsubscribeChanges {
    /// The filters to remove instead, one per requested filter.
    pub topics: Option<Vec<String>>,
    pub reason_string: Option<String>,
    pub user_properties: Vec<UserProperty>,
}

/// Whether a SUBACK may refuse a topic with `code` (MQTT 5 §3.9.3).
pub fn is_suback_refusal(code: ReasonCode) -> bool {
    matches!(
        code.0,
        0x80 | 0x83 | 0x87 | 0x8F | 0x91 | 0x97 | 0x9E | 0xA1 | 0xA2
    )
}

/// An acceptance, before validation.
enum Accepted {
    V3(Option<Vec<auth_on_subscribe::TopicResult>>),
    M5(Option<auth_on_subscribe_m5::SubscribeChanges>),
}

/// A refusal, before validation.
enum Refused {
    V3(String),
    M5(wit::M5Error),
}

impl Plugins {
    /// Walks `auth-on-subscribe(-m5)` for a SUBSCRIBE. Call only when
    /// [`Plugins::checks_subscribe`] is true.
    pub async fn authorize_subscribe(&self, req: &SubscribeRequest<'_>) -> SubscribeOutcome {
        let set = self.set();
        let chains = &set.subscribe;
        let chain = chains.plugins();
        let v5 = req.version.is_v5();
        if let Some(name) = chains.missing() {
            tracing::warn!(client = %req.id, "required plugin {name} is not loaded; every topic refused (fail closed)");
            return SubscribeOutcome {
                topics: vec![
                    TopicDecision::Rejected(v3_code(ReasonCode::NOT_AUTHORIZED, v5));
                    req.topics.len()
                ],
                reason_string: None,
                user_properties: Vec::new(),
                overrun: false,
            };
        }
        let id = convert::subscriber_id(req.id);
        let m5_topics: Vec<wit::TopicSubscription> = req
            .topics
            .iter()
            .map(|(s, o)| wit::TopicSubscription {
                filter: s.to_string(),
                options: messages::subscription_options(*o),
            })
            .collect();
        let v3_topics: Vec<auth_on_subscribe::TopicRequest> = m5_topics
            .iter()
            .map(|t| auth_on_subscribe::TopicRequest {
                filter: t.filter.clone(),
                qos: t.options.qos,
            })
            .collect();
        let props =
            messages::subscribe_properties(req.subscription_identifier, req.user_properties);
        let outcome = walk(chain, "auth-on-subscribe", |p| {
            let (id, m5_topics, v3_topics, props) = (&id, &m5_topics, &v3_topics, &props);
            async move {
                if chains.m5_for(p, req.version) {
                    let verdict = hook_call!(
                        p,
                        Hook::AuthOnSubscribeM5,
                        auth_on_subscribe_m5,
                        |g, store| g.call_auth_on_subscribe_m5(
                            store,
                            req.username,
                            id,
                            m5_topics,
                            props
                        )
                    )
                    .await?;
                    Ok::<_, CallFailure>(match verdict {
                        auth_on_subscribe_m5::SubscribeVerdictM5::Ok(c) => {
                            Answer::Ok(Accepted::M5(c))
                        }
                        auth_on_subscribe_m5::SubscribeVerdictM5::Next => Answer::Next,
                        auth_on_subscribe_m5::SubscribeVerdictM5::Error(e) => {
                            Answer::Error(Refused::M5(e))
                        }
                    })
                } else {
                    let verdict =
                        hook_call!(p, Hook::AuthOnSubscribe, auth_on_subscribe, |g, store| g
                            .call_auth_on_subscribe(store, req.username, id, v3_topics))
                        .await?;
                    Ok(match verdict {
                        auth_on_subscribe::SubscribeVerdict::Ok(list) => {
                            Answer::Ok(Accepted::V3(list))
                        }
                        auth_on_subscribe::SubscribeVerdict::Next => Answer::Next,
                        auth_on_subscribe::SubscribeVerdict::Error(e) => {
                            Answer::Error(Refused::V3(e))
                        }
                    })
                }
            }
        })
        .await;
        let all = |code: ReasonCode| SubscribeOutcome {
            topics: vec![TopicDecision::Rejected(v3_code(code, v5)); req.topics.len()],
            reason_string: None,
            user_properties: Vec::new(),
            overrun: false,
        };
        match outcome {
            Outcome::Accepted { index, value } => match accepted(value, req) {
                Ok(outcome) => outcome,
                Err(problem) => {
                    let hook = chains.hook_for(&chain[index], req.version);
                    chain[index].invalid_answer(req.id, hook, &problem);
                    all(ReasonCode::UNSPECIFIED_ERROR)
                }
            },
            Outcome::Refused { index, error } => {
                let plugin = &chain[index].name;
                match error {
                    Refused::V3(why) => {
                        tracing::debug!(client = %req.id, plugin = %plugin, "subscribe refused: {}", clip(&why));
                        all(ReasonCode::NOT_AUTHORIZED)
                    }
                    Refused::M5(e) => {
                        let mut code = ReasonCode(e.reason_code);
                        if !is_suback_refusal(code) {
                            tracing::warn!(client = %req.id, plugin = %plugin, "auth-on-subscribe-m5 refused with {code}, which SUBACK cannot carry; 0x87 sent");
                            code = ReasonCode::NOT_AUTHORIZED;
                        }
                        SubscribeOutcome {
                            reason_string: convert::reason_string(e.reason_string),
                            ..all(code)
                        }
                    }
                }
            }
            Outcome::Failed { index, failure } => {
                tracing::warn!(client = %req.id, plugin = %chain[index].name, "auth-on-subscribe failed ({failure}); every topic refused");
                SubscribeOutcome {
                    overrun: failure.is_overrun(),
                    ..all(ReasonCode::NOT_AUTHORIZED)
                }
            }
            Outcome::Exhausted => {
                tracing::debug!(client = %req.id, "every auth-on-subscribe plugin answered next; every topic refused");
                all(ReasonCode::NOT_AUTHORIZED)
            }
        }
    }

    /// Walks `on-unsubscribe(-m5)` for an UNSUBSCRIBE. Call only when
    /// [`Plugins::checks_unsubscribe`] is true. Errors, exhaustion and
    /// failures leave the request unchanged (as in VerneMQ).
    pub async fn rewrite_unsubscribe(&self, req: &UnsubscribeRequest<'_>) -> UnsubscribeChanges {
        let set = self.set();
        let chains = &set.unsubscribe;
        let chain = chains.plugins();
        let id = convert::subscriber_id(req.id);
        let user = req.user_properties.to_vec();
        let outcome = walk(chain, "on-unsubscribe", |p| {
            let (id, user) = (&id, &user);
            async move {
                if chains.m5_for(p, req.version) {
                    let verdict =
                        hook_call!(p, Hook::OnUnsubscribeM5, on_unsubscribe_m5, |g, store| g
                            .call_on_unsubscribe_m5(store, req.username, id, req.topics, user))
                        .await?;
                    Ok::<_, CallFailure>(match verdict {
                        on_unsubscribe_m5::UnsubscribeVerdictM5::Ok(c) => {
                            Answer::Ok(c.map(|c| UnsubscribeChanges {
                                topics: c.topics,
                                reason_string: c.reason_string,
                                user_properties: c.user_properties,
                            }))
                        }
                        on_unsubscribe_m5::UnsubscribeVerdictM5::Next => Answer::Next,
                        on_unsubscribe_m5::UnsubscribeVerdictM5::Error(e) => Answer::Error(e),
                    })
                } else {
                    let verdict = hook_call!(p, Hook::OnUnsubscribe, on_unsubscribe, |g, store| g
                        .call_on_unsubscribe(store, req.username, id, req.topics))
                    .await?;
                    Ok(match verdict {
                        on_unsubscribe::UnsubscribeVerdict::Ok(topics) => {
                            Answer::Ok(topics.map(|topics| UnsubscribeChanges {
                                topics: Some(topics),
                                ..UnsubscribeChanges::default()
                            }))
                        }
                        on_unsubscribe::UnsubscribeVerdict::Next => Answer::Next,
                        on_unsubscribe::UnsubscribeVerdict::Error(e) => Answer::Error(e),
                    })
                }
            }
        })
        .await;
        match outcome {
            Outcome::Accepted { index, value } => {
                let Some(changes) = value else {
                    return UnsubscribeChanges::default();
                };
                match checked_unsubscribe(changes, req) {
                    Ok(c) => c,
                    Err(problem) => {
                        let hook = chains.hook_for(&chain[index], req.version);
                        chain[index].invalid_answer(req.id, hook, &problem);
                        UnsubscribeChanges::default()
                    }
                }
            }
            Outcome::Refused { index, error } => {
                tracing::debug!(client = %req.id, plugin = %chain[index].name, "on-unsubscribe error: {}; request unchanged", clip(&error));
                UnsubscribeChanges::default()
            }
            Outcome::Failed { index, failure } => {
                tracing::warn!(client = %req.id, plugin = %chain[index].name, "on-unsubscribe failed ({failure}); request unchanged");
                UnsubscribeChanges::default()
            }
            Outcome::Exhausted => UnsubscribeChanges::default(),
        }
    }
}

/// MQTT 3.x SUBACK has one refusal code.
fn v3_code(code: ReasonCode, v5: bool) -> ReasonCode {
    if v5 {
        code
    } else {
        ReasonCode::UNSPECIFIED_ERROR
    }
}

fn parse_filter(filter: &str) -> Result<Subscription, String> {
    Subscription::parse(filter).map_err(|e| format!("invalid filter {filter:?}: {e}"))
}

/// Checks an acceptance against the request.
fn accepted(value: Accepted, req: &SubscribeRequest<'_>) -> Result<SubscribeOutcome, String> {
    let v5 = req.version.is_v5();
    let n = req.topics.len();
    let as_requested = || {
        req.topics
            .iter()
            .map(|(s, o)| TopicDecision::Granted(s.clone(), *o))
            .collect::<Vec<_>>()
    };
    let wrong_length = |len: usize| format!("{len} topic results for {n} requested topics");
    match value {
        Accepted::V3(None) | Accepted::M5(None) => Ok(SubscribeOutcome {
            topics: as_requested(),
            reason_string: None,
            user_properties: Vec::new(),
            overrun: false,
        }),
        Accepted::V3(Some(list)) => {
            if list.len() != n {
                return Err(wrong_length(list.len()));
            }
            let topics = list
                .into_iter()
                .zip(req.topics)
                .map(|(result, (_, requested))| match result {
                    auth_on_subscribe::TopicResult::Granted(t) => {
                        let options = SubscriptionOptions {
                            qos: messages::qos_from(t.qos),
                            ..*requested
                        };
                        Ok(TopicDecision::Granted(parse_filter(&t.filter)?, options))
                    }
                    auth_on_subscribe::TopicResult::Rejected => Ok(TopicDecision::Rejected(
                        v3_code(ReasonCode::NOT_AUTHORIZED, v5),
                    )),
                })
                .collect::<Result<Vec<_>, String>>()?;
            Ok(SubscribeOutcome {
                topics,
                reason_string: None,
                user_properties: Vec::new(),
                overrun: false,
            })
        }
        Accepted::M5(Some(changes)) => {
            let topics = match changes.topics {
                None => as_requested(),
                Some(list) if list.len() != n => return Err(wrong_length(list.len())),
                Some(list) => list
                    .into_iter()
                    .map(|result| match result {
                        auth_on_subscribe_m5::TopicResultM5::Granted(t) => {
                            Ok(TopicDecision::Granted(
                                parse_filter(&t.filter)?,
                                messages::subscription_options_from(t.options),
                            ))
                        }
                        auth_on_subscribe_m5::TopicResultM5::Rejected(code) => {
                            let code = ReasonCode(code);
                            if is_suback_refusal(code) {
                                Ok(TopicDecision::Rejected(code))
                            } else {
                                tracing::warn!(client = %req.id, "auth-on-subscribe-m5 rejected a topic with {code}, which SUBACK cannot carry; 0x80 sent");
                                Ok(TopicDecision::Rejected(ReasonCode::UNSPECIFIED_ERROR))
                            }
                        }
                    })
                    .collect::<Result<Vec<_>, String>>()?,
            };
            let user_properties =
                messages::user_properties("user-properties", changes.user_properties)
                    .map_err(|e| e.to_string())?;
            Ok(SubscribeOutcome {
                topics,
                reason_string: convert::reason_string(changes.reason_string),
                user_properties,
                overrun: false,
            })
        }
    }
}

fn checked_unsubscribe(
    changes: UnsubscribeChanges,
    req: &UnsubscribeRequest<'_>,
) -> Result<UnsubscribeChanges, String> {
    if let Some(topics) = &changes.topics {
        if topics.len() != req.topics.len() {
            return Err(format!(
                "{} filters for {} requested",
                topics.len(),
                req.topics.len()
            ));
        }
        for t in topics {
            parse_filter(t)?;
        }
    }
    Ok(UnsubscribeChanges {
        reason_string: convert::reason_string(changes.reason_string),
        user_properties: messages::user_properties("user-properties", changes.user_properties)
            .map_err(|e| e.to_string())?,
        topics: changes.topics,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suback_refusal_codes() {
        for ok in [0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2] {
            assert!(is_suback_refusal(ReasonCode(ok)), "{ok:#x}");
        }
        for bad in [0x00, 0x01, 0x02, 0x86, 0x8B, 0x99] {
            assert!(!is_suback_refusal(ReasonCode(bad)), "{bad:#x}");
        }
    }

    fn request<'a>(
        id: &'a SubscriberId,
        topics: &'a [(Subscription, SubscriptionOptions)],
        version: ProtocolVersion,
    ) -> SubscribeRequest<'a> {
        SubscribeRequest {
            id,
            username: None,
            version,
            topics,
            subscription_identifier: None,
            user_properties: &[],
        }
    }

    #[test]
    fn v3_results_follow_the_request() {
        use crate::codec::QoS;
        let id = SubscriberId {
            mountpoint: "".into(),
            client_id: crate::topic::ClientId::new("c").unwrap(),
        };
        let topics = [
            (
                Subscription::parse("a").unwrap(),
                SubscriptionOptions::v3(QoS::ExactlyOnce),
            ),
            (
                Subscription::parse("b").unwrap(),
                SubscriptionOptions::v3(QoS::AtMostOnce),
            ),
        ];
        let list = vec![
            auth_on_subscribe::TopicResult::Granted(auth_on_subscribe::TopicRequest {
                filter: "a/rewritten".into(),
                qos: wit::Qos::AtLeastOnce,
            }),
            auth_on_subscribe::TopicResult::Rejected,
        ];
        let out = accepted(
            Accepted::V3(Some(list.clone())),
            &request(&id, &topics, ProtocolVersion::V3_1_1),
        )
        .unwrap();
        assert_eq!(
            out.topics,
            [
                TopicDecision::Granted(
                    Subscription::parse("a/rewritten").unwrap(),
                    SubscriptionOptions::v3(QoS::AtLeastOnce)
                ),
                TopicDecision::Rejected(ReasonCode::UNSPECIFIED_ERROR),
            ]
        );
        // An MQTT 5 client served by a v3 hook gets 0x87.
        let out = accepted(
            Accepted::V3(Some(list)),
            &request(&id, &topics, ProtocolVersion::V5),
        )
        .unwrap();
        assert_eq!(
            out.topics[1],
            TopicDecision::Rejected(ReasonCode::NOT_AUTHORIZED)
        );
        // Wrong length, or a bad filter: the answer is invalid.
        assert!(
            accepted(
                Accepted::V3(Some(vec![])),
                &request(&id, &topics, ProtocolVersion::V3_1_1)
            )
            .is_err()
        );
        let bad = vec![
            auth_on_subscribe::TopicResult::Granted(auth_on_subscribe::TopicRequest {
                filter: "a/#/b".into(),
                qos: wit::Qos::AtLeastOnce,
            }),
            auth_on_subscribe::TopicResult::Rejected,
        ];
        assert!(
            accepted(
                Accepted::V3(Some(bad)),
                &request(&id, &topics, ProtocolVersion::V3_1_1)
            )
            .is_err()
        );
    }
}
