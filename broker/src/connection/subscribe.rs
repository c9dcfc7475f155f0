//! SUBSCRIBE and UNSUBSCRIBE from the client: the broker's own checks, the
//! `auth-on-subscribe(-m5)` and `on-unsubscribe(-m5)` chains when a plugin
//! implements them, the router, retained messages, the acknowledgement and
//! the notifications (`on-subscribe`, `on-topic-unsubscribed`).

use super::{Close, Connection, encode_within};
use crate::codec::{
    self, QoS, RetainHandling, SubAck, Subscribe, SubscriptionOptions, Unsubscribe, UserProperty,
};
use crate::limits::Limit;
use crate::memory::Pressure;
use crate::plugins::{
    Event, Hook, SubscribeOutcome, SubscribeRequest, TopicDecision, UnsubscribeChanges,
    UnsubscribeRequest,
};
use crate::reason::ReasonCode;
use crate::session::HeldSubscription;
use crate::topic::{Subscription, TopicFilter};

/// What becomes of one filter of a SUBSCRIBE.
enum Plan {
    Subscribe(Subscription, SubscriptionOptions),
    Refuse(ReasonCode),
}

/// Leaves the optional properties out of a SUBACK or UNSUBACK.
fn strip_ack_properties(ack: &mut SubAck) {
    ack.reason_string = None;
    ack.user_properties.clear();
}

impl Connection {
    /// The code that refuses a topic: 0x80 is the only one MQTT 3.x has.
    fn refusal(&self, code: ReasonCode) -> ReasonCode {
        if self.neg.version.is_v5() {
            code
        } else {
            ReasonCode::UNSPECIFIED_ERROR
        }
    }

    /// Counts and logs an acknowledgement sent without its properties (a
    /// plugin's reason string or user properties) because with them it
    /// would exceed the client's Maximum Packet Size.
    pub(super) fn over_client_max(&self, packet: &str) {
        self.ctx.metrics.limits.hit(
            Limit::ClientMaxPacket,
            self.session.id(),
            &format_args!("{packet} sent without its reason string and user properties"),
        );
    }

    /// The broker's own verdict on each filter: the permission, the filter
    /// syntax, the topic-shape limits, the number of filters per SUBSCRIBE
    /// and the memory budget.
    fn plan_subscribe(&self, s: &Subscribe) -> Result<Vec<Plan>, Close> {
        if !self.neg.allow_subscribe {
            tracing::debug!(client = %self.session.id(), "subscribe refused");
            let code = self.refusal(ReasonCode::NOT_AUTHORIZED);
            return Ok(s.filters.iter().map(|_| Plan::Refuse(code)).collect());
        }
        let hits = &self.ctx.metrics.limits;
        let client = self.session.id();
        let quota = self.refusal(ReasonCode::QUOTA_EXCEEDED);
        if self.ctx.memory.pressure() == Pressure::Over {
            hits.hit(Limit::Memory, client, &"SUBSCRIBE refused");
            return Ok(s.filters.iter().map(|_| Plan::Refuse(quota)).collect());
        }
        let max_filters = self.ctx.config.limits.max_filters_per_subscribe as usize;
        if s.filters.len() > max_filters {
            hits.hit(
                Limit::FiltersPerSubscribe,
                client,
                &format_args!("{} filters in one SUBSCRIBE", s.filters.len()),
            );
        }
        let mut plans = Vec::with_capacity(s.filters.len());
        for (i, (raw, options)) in s.filters.iter().enumerate() {
            if i >= max_filters {
                plans.push(Plan::Refuse(quota));
                continue;
            }
            let sub = match Subscription::parse(raw) {
                Ok(sub) => sub,
                Err(e) => {
                    tracing::debug!(client = %client, filter = %raw, "subscription refused: {e}");
                    plans.push(Plan::Refuse(self.refusal(ReasonCode::TOPIC_FILTER_INVALID)));
                    continue;
                }
            };
            if sub.group().is_some() && options.no_local {
                return Err(Close::server(
                    ReasonCode::PROTOCOL_ERROR,
                    "No Local set on a shared subscription",
                ));
            }
            if let Err(limit) = self.ctx.limits.topics.check_subscription(raw, &sub) {
                hits.hit(
                    limit,
                    client,
                    &format_args!("filter of {} bytes refused", raw.len()),
                );
                plans.push(Plan::Refuse(self.refusal(ReasonCode::TOPIC_FILTER_INVALID)));
                continue;
            }
            plans.push(Plan::Subscribe(sub, *options));
        }
        Ok(plans)
    }

    /// In a cluster, before SUBACK or UNSUBACK: a persistent session's
    /// subscriptions are in its card (kept by the cluster in case this
    /// node dies), and the NATS subscriptions a SUBSCRIBE needs are in
    /// place, so what other nodes publish after SUBACK arrives.
    pub(super) fn save_card(&self) -> impl Future<Output = ()> + Send + 'static {
        let cluster = self.ctx.router.cluster().cloned();
        let persistent = self.neg.session_expiry > 0;
        let id = self.session.id().clone();
        async move {
            if let Some(cluster) = cluster {
                cluster.subscribed().await;
                if persistent {
                    cluster.save(&id).await;
                }
            }
        }
    }

    /// SUBSCRIBE, with `auth-on-subscribe(-m5)`'s decisions.
    pub(super) async fn on_subscribe_checked(&mut self, s: Subscribe) -> Result<(), Close> {
        let mut plans = self.plan_subscribe(&s)?;
        let topics: Vec<(Subscription, SubscriptionOptions)> = plans
            .iter()
            .filter_map(|p| match p {
                Plan::Subscribe(sub, o) => Some((sub.clone(), *o)),
                Plan::Refuse(_) => None,
            })
            .collect();
        if topics.is_empty() {
            self.on_subscribe_planned(&s, plans, None);
            return Ok(());
        }
        let outcome = self
            .ctx
            .plugins
            .authorize_subscribe(&SubscribeRequest {
                id: self.session.id(),
                username: self.neg.username.as_deref(),
                version: self.neg.version,
                topics: &topics,
                subscription_identifier: s.subscription_identifier,
                user_properties: &s.user_properties,
            })
            .await;
        let SubscribeOutcome {
            topics: decisions,
            reason_string,
            user_properties,
            overrun,
        } = outcome;
        self.plugin_overrun(overrun);
        let mut decisions = decisions.into_iter();
        for plan in &mut plans {
            if let Plan::Subscribe(..) = plan {
                *plan = match decisions.next() {
                    Some(TopicDecision::Granted(sub, o)) if sub.group().is_some() && o.no_local => {
                        tracing::warn!(client = %self.session.id(), filter = %sub, "a plugin set No Local on a shared subscription; topic refused");
                        Plan::Refuse(ReasonCode::UNSPECIFIED_ERROR)
                    }
                    Some(TopicDecision::Granted(sub, o)) => Plan::Subscribe(sub, o),
                    Some(TopicDecision::Rejected(code)) => Plan::Refuse(self.refusal(code)),
                    None => Plan::Refuse(ReasonCode::UNSPECIFIED_ERROR),
                };
            }
        }
        self.on_subscribe_planned(&s, plans, Some((reason_string, user_properties)));
        Ok(())
    }

    /// SUBSCRIBE when no plugin checks subscriptions.
    pub(super) fn on_subscribe(&mut self, s: Subscribe) -> Result<(), Close> {
        let plans = self.plan_subscribe(&s)?;
        self.on_subscribe_planned(&s, plans, None);
        Ok(())
    }

    /// Stores the accepted subscriptions (within the per-client limit),
    /// answers SUBACK, queues retained messages behind it (once per
    /// subscription, however often the packet repeats it) and tells the
    /// plugins.
    fn on_subscribe_planned(
        &mut self,
        s: &Subscribe,
        plans: Vec<Plan>,
        ack_props: Option<(Option<String>, Vec<UserProperty>)>,
    ) {
        let mut reasons = Vec::with_capacity(plans.len());
        let notify = self.ctx.plugins.implements(Hook::OnSubscribe)
            || self.ctx.plugins.implements(Hook::OnSubscribeM5);
        let max_held = match self.ctx.config.limits.max_subscriptions_per_client {
            0 => usize::MAX,
            n => n as usize,
        };
        let ids: Vec<u32> = s.subscription_identifier.into_iter().collect();
        let mut accepted = Vec::new();
        // Retained messages go out after the SUBACK: remember which filters
        // want them, each once.
        let mut retained: Vec<(TopicFilter, QoS)> = Vec::new();
        for plan in plans {
            let (subscription, options) = match plan {
                Plan::Subscribe(sub, o) => (sub, o),
                Plan::Refuse(code) => {
                    reasons.push(code);
                    continue;
                }
            };
            let held = {
                let mut state = self.session.lock();
                let new = !state.subscriptions.contains_key(&subscription);
                let room = !new || state.subscriptions.len() < max_held;
                if room {
                    state.subscriptions.insert(
                        subscription.clone(),
                        HeldSubscription {
                            options,
                            identifier: s.subscription_identifier,
                        },
                    );
                }
                room
            };
            if !held {
                self.ctx.metrics.limits.hit(
                    Limit::SubscriptionsPerClient,
                    self.session.id(),
                    &format_args!("subscription to {subscription} refused"),
                );
                reasons.push(self.refusal(ReasonCode::QUOTA_EXCEEDED));
                continue;
            }
            let existed = self.ctx.router.subscribe(
                &self.session,
                &subscription,
                options,
                s.subscription_identifier,
            );
            if let Some(p) = self.session.persisted() {
                let t = p.subscribe(&subscription, &options, s.subscription_identifier);
                self.ticket = self.ticket.max(t);
            }
            reasons.push(ReasonCode(options.qos as u8));
            let send_retained = match options.retain_handling {
                RetainHandling::OnSubscribe => true,
                RetainHandling::OnNewSubscribe => !existed,
                RetainHandling::Never => false,
            };
            if let (true, Subscription::Plain(filter)) = (send_retained, &subscription) {
                match retained.iter_mut().find(|(f, _)| f == filter) {
                    // Repeated in this packet: the last occurrence's QoS.
                    Some(wanted) => wanted.1 = options.qos,
                    None => retained.push((filter.clone(), options.qos)),
                }
            }
            if notify {
                accepted.push((subscription.to_string(), options));
            }
        }
        let (reason_string, user_properties) = match ack_props {
            Some((r, u)) if self.neg.problem_info => (r, u),
            _ => (None, Vec::new()),
        };
        let version = self.neg.version;
        let stripped = encode_within(
            &mut self.out,
            self.neg.client_max_packet,
            &mut SubAck {
                packet_id: s.packet_id,
                reasons,
                reason_string,
                user_properties,
            },
            |out, ack| codec::encode_suback(out, version, ack),
            strip_ack_properties,
        );
        if stripped {
            self.over_client_max("SUBACK");
        }
        // Queued behind the SUBACK already in the output buffer.
        for (filter, qos) in &retained {
            self.ctx
                .router
                .queue_retained(&self.session, filter, *qos, &ids);
        }
        if notify && !accepted.is_empty() {
            self.ctx.plugins.notify(Event::Subscribed {
                username: self.neg.username.as_deref().map(String::from),
                id: self.session.id().clone(),
                topics: accepted,
                properties: self
                    .neg
                    .version
                    .is_v5()
                    .then(|| (s.subscription_identifier, s.user_properties.clone())),
            });
        }
    }

    /// UNSUBSCRIBE through `on-unsubscribe(-m5)`, which may rewrite it.
    pub(super) async fn on_unsubscribe_checked(&mut self, u: Unsubscribe) -> Result<(), Close> {
        if !self.neg.allow_unsubscribe {
            return self.on_unsubscribe(u, None);
        }
        let changes = self
            .ctx
            .plugins
            .rewrite_unsubscribe(&UnsubscribeRequest {
                id: self.session.id(),
                username: self.neg.username.as_deref(),
                version: self.neg.version,
                topics: &u.filters,
                user_properties: &u.user_properties,
            })
            .await;
        self.on_unsubscribe(u, Some(changes))
    }

    /// UNSUBSCRIBE, with the chain's changes if it ran.
    pub(super) fn on_unsubscribe(
        &mut self,
        mut u: Unsubscribe,
        changes: Option<UnsubscribeChanges>,
    ) -> Result<(), Close> {
        let v5 = self.neg.version.is_v5();
        let mut reasons = Vec::with_capacity(u.filters.len());
        if !self.neg.allow_unsubscribe {
            if !v5 {
                // MQTT 3.x UNSUBACK cannot carry a refusal.
                return Err(Close::server(
                    ReasonCode::NOT_AUTHORIZED,
                    "unsubscribe not allowed",
                ));
            }
            reasons.resize(u.filters.len(), ReasonCode::NOT_AUTHORIZED);
        }
        let UnsubscribeChanges {
            topics,
            reason_string,
            user_properties,
        } = changes.unwrap_or_default();
        if let Some(topics) = topics {
            u.filters = topics;
        }
        let notify = self.ctx.plugins.implements(Hook::OnTopicUnsubscribed);
        let mut removed = Vec::new();
        for raw in u.filters.iter().filter(|_| self.neg.allow_unsubscribe) {
            let reason = match Subscription::parse(raw) {
                Ok(subscription) => {
                    let existed = self.ctx.router.unsubscribe(&self.session, &subscription);
                    self.session.lock().subscriptions.remove(&subscription);
                    if let Some(p) = self.session.persisted() {
                        let t = p.unsubscribe(&subscription);
                        self.ticket = self.ticket.max(t);
                    }
                    if existed {
                        if notify {
                            removed.push(raw.clone());
                        }
                        ReasonCode::SUCCESS
                    } else {
                        ReasonCode::NO_SUBSCRIPTION_EXISTED
                    }
                }
                Err(_) if v5 => ReasonCode::TOPIC_FILTER_INVALID,
                Err(_) => ReasonCode::SUCCESS,
            };
            reasons.push(reason);
        }
        let (reason_string, user_properties) = if self.neg.problem_info {
            (reason_string, user_properties)
        } else {
            (None, Vec::new())
        };
        let version = self.neg.version;
        let stripped = encode_within(
            &mut self.out,
            self.neg.client_max_packet,
            &mut SubAck {
                packet_id: u.packet_id,
                reasons,
                reason_string,
                user_properties,
            },
            |out, ack| codec::encode_unsuback(out, version, ack),
            strip_ack_properties,
        );
        if stripped {
            self.over_client_max("UNSUBACK");
        }
        if !removed.is_empty() {
            self.ctx.plugins.notify(Event::TopicUnsubscribed {
                id: self.session.id().clone(),
                topics: Some(removed),
            });
        }
        Ok(())
    }
}
