//! The router: takes a published message to every session whose
//! subscriptions match it, and keeps the retained messages.
//!
//! Publishing takes the subscription tree's read lock once, walks the
//! matching nodes and queues one delivery per session (overlapping
//! subscriptions merge into one copy at the highest QoS, carrying every
//! subscription identifier). Shared subscriptions deliver to one member per
//! group, preferring connected members. The retained messages live in
//! [`retained`].

mod pressure;
mod remote;
mod retained;

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::{Arc, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tokio::time::Instant;

use crate::codec::{QoS, SubscriptionOptions};
use crate::config::LimitsConfig;
use crate::limits::Limit;
use crate::memory::{Budget, Pressure};
use crate::message::{Delivery, Message, SharedOrigin};
use crate::metrics::Metrics;
use crate::plugins::{DropReason, Event, Hook, Plugins};
use crate::session::{Overload, Session};
use crate::store::Store;
use crate::subscriptions::{ClientKey, NodeMatch, SubscriptionTree};
use crate::topic::{Subscription, TopicFilter};

pub(crate) use self::pressure::{Backlog, Congested, same as same_backlog};
use self::retained::{RetainedLimits, RetainedStore};

/// A subscription as the tree stores it.
#[derive(Debug)]
pub struct Subscriber {
    pub session: Arc<Session>,
    pub options: SubscriptionOptions,
    pub identifier: Option<u32>,
    /// For members of a shared subscription: the group, so that a delivery
    /// can move to another member if this one's session ends.
    pub shared: Option<Arc<SharedOrigin>>,
}

type Trees = HashMap<Arc<str>, SubscriptionTree<Subscriber>>;

/// Routes messages between sessions; one per broker.
#[derive(Debug)]
pub struct Router {
    trees: RwLock<Trees>,
    retained: RwLock<RetainedStore>,
    metrics: Arc<Metrics>,
    /// Under high pressure, QoS 0 deliveries are not queued.
    memory: Budget,
    /// Told of messages queued for offline sessions and of messages full
    /// queues drop.
    plugins: Arc<Plugins>,
    /// Where retained messages are stored too, if anywhere.
    store: Option<Arc<Store>>,
    /// The cluster this node is part of, if any (see `remote`).
    cluster: OnceLock<Arc<crate::cluster::Cluster>>,
}

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    // The trees stay structurally valid if a panic interrupted a writer.
    lock.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}

/// The QoS a subscription receives a message with: the lower of the two,
/// or the subscription's when its session upgrades QoS.
fn delivered_qos(message: &Message, sub: &Subscriber) -> QoS {
    if sub.session.upgrade_qos() {
        sub.options.qos
    } else {
        message.qos.min(sub.options.qos)
    }
}

/// What one session receives from one publish, merged over its matching
/// subscriptions.
struct Merged<'a> {
    session: &'a Arc<Session>,
    qos: QoS,
    retain: bool,
    ids: Vec<u32>,
}

impl Router {
    /// A router with no subscriptions and no retained messages.
    pub fn new(
        metrics: Arc<Metrics>,
        plugins: Arc<Plugins>,
        limits: &LimitsConfig,
        memory: Budget,
        store: Option<Arc<Store>>,
    ) -> Self {
        Router {
            trees: RwLock::new(HashMap::new()),
            retained: RwLock::new(RetainedStore::new(RetainedLimits::from_config(limits))),
            metrics,
            memory,
            plugins,
            store,
            cluster: OnceLock::new(),
        }
    }

    /// Routes `message` published in `mountpoint` by the session `publisher`
    /// (for No Local). Returns how many sessions it was queued for.
    /// Retained-message storage is separate: see [`Router::retain`].
    pub fn publish(
        &self,
        mountpoint: &Arc<str>,
        publisher: Option<ClientKey>,
        message: &Arc<Message>,
    ) -> usize {
        self.publish_reaching(mountpoint, publisher, message, true)
    }

    /// [`Router::publish`], to shared groups too if `shared`.
    fn publish_reaching(
        &self,
        mountpoint: &Arc<str>,
        publisher: Option<ClientKey>,
        message: &Arc<Message>,
        shared: bool,
    ) -> usize {
        let trees = read(&self.trees);
        let Some(tree) = trees.get(mountpoint) else {
            return 0;
        };
        let mut first: Option<NodeMatch<'_, Subscriber>> = None;
        let mut more: Vec<NodeMatch<'_, Subscriber>> = Vec::new();
        let mut delivered = 0;
        tree.for_each_match(&message.topic, |m| {
            for group in m.shared.iter().filter(|_| shared) {
                if let Some((_, sub)) = group.pick(|s| s.session.is_online()) {
                    let d = Self::shared_delivery(sub, message);
                    delivered += usize::from(self.enqueue(&sub.session, d));
                }
            }
            if m.plain.is_empty() {
                return;
            }
            if first.is_none() {
                first = Some(m);
            } else {
                more.push(m);
            }
        });
        let Some(first) = first else {
            return delivered;
        };
        if more.is_empty() {
            // One filter matched: a session has at most one subscription
            // per filter, so there is nothing to merge.
            for (_, sub) in first.plain {
                if let Some(d) = Self::delivery_for(sub, message, publisher) {
                    delivered += usize::from(self.enqueue(&sub.session, d));
                }
            }
            return delivered;
        }
        let mut merged: HashMap<ClientKey, Merged<'_>> = HashMap::new();
        for m in std::iter::once(&first).chain(more.iter()) {
            for (key, sub) in m.plain {
                if sub.options.no_local && publisher == Some(*key) {
                    continue;
                }
                let qos = delivered_qos(message, sub);
                let retain = message.retain && sub.options.retain_as_published;
                let entry = merged.entry(*key).or_insert(Merged {
                    session: &sub.session,
                    qos,
                    retain,
                    ids: Vec::new(),
                });
                entry.qos = entry.qos.max(qos);
                entry.retain |= retain;
                entry.ids.extend(sub.identifier);
            }
        }
        for (_, m) in merged {
            let mut ids = m.ids;
            ids.sort_unstable();
            let d = Delivery {
                message: message.clone(),
                qos: m.qos,
                retain: m.retain,
                subscription_ids: ids,
                shared: None,
                stored: None,
            };
            delivered += usize::from(self.enqueue(m.session, d));
        }
        delivered
    }

    /// The delivery of `message` to `sub`, the member a shared group
    /// picked.
    fn shared_delivery(sub: &Subscriber, message: &Arc<Message>) -> Delivery {
        Delivery {
            message: message.clone(),
            qos: delivered_qos(message, sub),
            retain: message.retain && sub.options.retain_as_published,
            subscription_ids: sub.identifier.into_iter().collect(),
            shared: sub.shared.clone(),
            stored: None,
        }
    }

    fn delivery_for(
        sub: &Subscriber,
        message: &Arc<Message>,
        publisher: Option<ClientKey>,
    ) -> Option<Delivery> {
        if sub.options.no_local && publisher == Some(sub.session.key()) {
            return None;
        }
        Some(Delivery {
            message: message.clone(),
            qos: delivered_qos(message, sub),
            retain: message.retain && sub.options.retain_as_published,
            subscription_ids: sub.identifier.into_iter().collect(),
            shared: None,
            stored: None,
        })
    }

    /// Queues `d` for `session`, counting what the queue drops. Dropped
    /// shared deliveries are not re-routed: the group member was chosen and
    /// its queue is full, which is the overload the limit exists for.
    fn enqueue(&self, session: &Arc<Session>, d: Delivery) -> bool {
        if d.qos == QoS::AtMostOnce && self.memory.pressure() >= Pressure::High {
            Metrics::add(&self.metrics.messages_dropped, 1);
            self.metrics
                .limits
                .hit(Limit::Memory, session.id(), &"QoS 0 delivery dropped");
            return false;
        }
        let offline = (self.plugins.implements(Hook::OnOfflineMessage) && !session.is_online())
            .then(|| (d.message.clone(), d.qos, d.retain));
        let (dropped, pressure) = session.enqueue(d);
        match pressure {
            Overload::None => {}
            Overload::WaitUntil(until) => Self::note_congested(session, until),
            Overload::GaveUp => {
                self.metrics.limits.hit(
                    Limit::OverloadWait,
                    session.id(),
                    &"publishers stopped waiting for a client that does not read fast enough",
                );
            }
        }
        let n = dropped.deliveries.len() as u64;
        Metrics::add(&self.metrics.messages_dropped, n);
        if let Some(limit) = dropped.limit {
            self.metrics
                .limits
                .hit(limit, session.id(), &"queue full, message dropped");
        }
        if n > 0 && self.plugins.implements(Hook::OnMessageDrop) {
            for d in &dropped.deliveries {
                self.plugins.notify(Event::MessageDropped {
                    id: session.id().clone(),
                    message: d.message.clone(),
                    qos: d.qos,
                    reason: DropReason::QueueFull,
                });
            }
        }
        if let Some((message, qos, retain)) = offline {
            // Unless it was not queued after all (its drop was reported).
            if !dropped
                .deliveries
                .iter()
                .any(|d| Arc::ptr_eq(&d.message, &message))
            {
                self.plugins.notify(Event::OfflineMessage {
                    id: session.id().clone(),
                    message,
                    qos,
                    retain,
                });
            }
        }
        n == 0
    }

    /// Queues the retained messages matching `filter` for `session`, which
    /// just subscribed with `qos` and `subscription_ids`: one at a time
    /// into its queue, with its limits, stopping at the first the queue
    /// has no room for (never collecting them first).
    pub fn queue_retained(
        &self,
        session: &Arc<Session>,
        filter: &TopicFilter,
        qos: QoS,
        subscription_ids: &[u32],
    ) {
        self.for_each_retained(&session.id().mountpoint, filter, |message| {
            let d = Delivery {
                qos: message.qos.min(qos),
                message: message.clone(),
                retain: true,
                subscription_ids: subscription_ids.to_vec(),
                shared: None,
                stored: None,
            };
            if self.enqueue(session, d) {
                ControlFlow::Continue(())
            } else {
                ControlFlow::Break(())
            }
        });
    }

    /// Stores `message` as the retained message of its topic, or clears it
    /// when the payload is empty. A message the retained limits have no
    /// room for is refused (and counted).
    pub fn retain(&self, mountpoint: &Arc<str>, message: &Arc<Message>) -> Result<(), Limit> {
        let mut retained = write(&self.retained);
        retained.set(mountpoint, message)?;
        if let Some(store) = self.store.as_ref().filter(|_| !message.topic.is_sys()) {
            // Under the lock: the store sees changes to a topic in order.
            // ($SYS topics are the broker's own, published afresh.)
            store.retain(mountpoint, message);
        }
        if let Some(cluster) = self.cluster.get() {
            // Under the lock too: see `cluster::retained`.
            cluster.retain(mountpoint, message);
        }
        Ok(())
    }

    /// Takes back retained messages read from the store (at start).
    pub fn restore_retained(&self, messages: Vec<(Arc<str>, Arc<Message>)>) -> usize {
        let mut retained = write(&self.retained);
        let mut refused = 0;
        for (mountpoint, message) in messages {
            if retained.set(&mountpoint, &message).is_err() {
                refused += 1;
                if let Some(store) = &self.store {
                    store.unretain(&mountpoint, message.topic.as_str());
                }
            }
        }
        refused
    }

    /// Calls `visit` with the unexpired retained messages matching
    /// `filter`, under the store's read lock (so `visit` must not take the
    /// router's locks; taking a session's is fine), until it breaks.
    pub fn for_each_retained(
        &self,
        mountpoint: &str,
        filter: &TopicFilter,
        visit: impl FnMut(&Arc<Message>) -> ControlFlow<()>,
    ) {
        read(&self.retained).for_each_match(mountpoint, filter, Instant::now(), visit);
    }

    /// The unexpired retained messages matching `filter`.
    pub fn retained_matching(&self, mountpoint: &str, filter: &TopicFilter) -> Vec<Arc<Message>> {
        let mut out = Vec::new();
        self.for_each_retained(mountpoint, filter, |m| {
            out.push(m.clone());
            ControlFlow::Continue(())
        });
        out
    }

    /// Drops expired retained messages (looking at those alone). Returns
    /// when the next one expires.
    pub fn purge_expired_retained(&self) -> Option<Instant> {
        let now = Instant::now();
        let due = read(&self.retained)
            .next_expiry()
            .is_some_and(|at| at <= now);
        if !due {
            return read(&self.retained).next_expiry();
        }
        let mut retained = write(&self.retained);
        retained.purge_expired(now);
        retained.next_expiry()
    }

    /// Adds or replaces `session`'s subscription. Returns whether it
    /// already existed (for Retain Handling 1).
    pub fn subscribe(
        &self,
        session: &Arc<Session>,
        subscription: &Subscription,
        options: SubscriptionOptions,
        identifier: Option<u32>,
    ) -> bool {
        let mountpoint = &session.id().mountpoint;
        let sub = Subscriber {
            session: session.clone(),
            options,
            identifier,
            shared: match subscription {
                Subscription::Plain(_) => None,
                Subscription::Shared { group, filter } => Some(Arc::new(SharedOrigin {
                    mountpoint: mountpoint.clone(),
                    group: group.clone(),
                    filter: filter.clone(),
                })),
            },
        };
        let mut trees = write(&self.trees);
        let tree = trees.entry(mountpoint.clone()).or_default();
        let previous = match subscription {
            Subscription::Plain(filter) => tree.insert(filter, session.key(), sub),
            Subscription::Shared { group, filter } => {
                tree.insert_shared(group, filter, session.key(), sub)
            }
        };
        if previous.is_none() {
            self.tell_cluster(mountpoint, subscription, true);
        }
        previous.is_some()
    }

    /// Removes `session`'s subscription. Returns whether it existed.
    pub fn unsubscribe(&self, session: &Session, subscription: &Subscription) -> bool {
        let mountpoint = &session.id().mountpoint;
        let mut trees = write(&self.trees);
        let Some(tree) = trees.get_mut(mountpoint) else {
            return false;
        };
        let previous = match subscription {
            Subscription::Plain(filter) => tree.remove(filter, session.key()),
            Subscription::Shared { group, filter } => {
                tree.remove_shared(group, filter, session.key())
            }
        };
        if tree.is_empty() {
            trees.remove(mountpoint);
        }
        if previous.is_some() {
            self.tell_cluster(mountpoint, subscription, false);
        }
        previous.is_some()
    }

    /// Gives a delivery that its chosen member could not take (the member's
    /// session ended) to another member of the same shared subscription.
    /// Returns false when the group has no other member (the message is
    /// then dropped and counted).
    pub fn reroute_shared(
        &self,
        origin: &Arc<SharedOrigin>,
        delivery: Delivery,
        except: ClientKey,
    ) -> bool {
        let trees = read(&self.trees);
        let target = trees
            .get(&origin.mountpoint)
            .and_then(|t| t.shared_group(&origin.group, &origin.filter))
            .and_then(|g| g.pick(|s| s.session.key() != except && s.session.is_online()))
            .filter(|(key, _)| *key != except)
            .map(|(_, s)| s);
        match target {
            Some(sub) => {
                let d = Delivery {
                    qos: delivered_qos(&delivery.message, sub),
                    subscription_ids: sub.identifier.into_iter().collect(),
                    shared: sub.shared.clone(),
                    stored: None,
                    ..delivery
                };
                self.enqueue(&sub.session, d)
            }
            None => {
                Metrics::add(&self.metrics.messages_dropped, 1);
                false
            }
        }
    }

    /// Number of subscriptions across all mountpoints.
    pub fn subscription_count(&self) -> usize {
        read(&self.trees).values().map(|t| t.len()).sum()
    }

    /// Number of retained messages across all mountpoints.
    pub fn retained_count(&self) -> usize {
        read(&self.retained).len()
    }

    /// Bytes of retained messages, as `limits.max_retained_bytes` counts
    /// them.
    pub fn retained_bytes(&self) -> usize {
        read(&self.retained).bytes()
    }
}
