//! The cluster's traffic: what a node sends to NATS (core NATS for QoS 0,
//! the JetStream stream for QoS 1/2) and what it delivers from NATS into
//! its router, once per message however many of its subscriptions
//! matched.

use std::collections::{HashSet, VecDeque};
use std::future::IntoFuture as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt as _;
use tokio::sync::mpsc;

use super::{Cluster, Outgoing, Shared, envelope, reliable, subject};
use crate::codec::QoS;
use crate::router::Router;
use crate::store::{Store, records};
use async_nats::jetstream::message::Acker;
/// How long a QoS 1/2 message is sent to JetStream again before it is
/// given up (its publisher's acknowledgement waits as long).
const RETRY_FOR: Duration = Duration::from_secs(30);
/// How many recent message ids a node remembers to recognise a message
/// that came again through another of its subscriptions.
const RECENT: usize = 8192;
/// How many origin names a node remembers; past that (only a publisher on
/// the cluster's subjects inventing names gets there) it forgets them all,
/// with the ids seen, and starts over.
const ORIGINS: usize = 1024;

/// Message ids seen lately, per origin node.
#[derive(Default)]
struct Recent {
    /// Origin names, each kept as long as ids of it are remembered, so
    /// that the address of its text names it below.
    origins: HashSet<Box<str>>,
    seen: HashSet<(usize, u64)>,
    order: VecDeque<(usize, u64)>,
}

impl Recent {
    /// Whether `(origin, id)` is new; remembers it.
    fn first(&mut self, origin: &str, id: u64) -> bool {
        let name = match self.origins.get(origin) {
            Some(n) => n.as_ptr(),
            None => {
                if self.origins.len() >= ORIGINS {
                    tracing::warn!(
                        "more than {ORIGINS} node names on the cluster's subjects; forgetting \
                         them and the message ids seen (a message may be delivered twice)"
                    );
                    // The ids name origins by address: both go together.
                    self.seen.clear();
                    self.order.clear();
                    self.origins.clear();
                }
                let n: Box<str> = origin.into();
                let p = n.as_ptr();
                self.origins.insert(n);
                p
            }
        };
        let key = (name as usize, id);
        if !self.seen.insert(key) {
            return false;
        }
        self.order.push_back(key);
        if self.order.len() > RECENT {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        true
    }
}

/// A message from NATS, with the shared group of the subscription that got
/// it (`None`: a plain one), and for one from JetStream the handle that
/// acknowledges it.
pub(super) struct Received {
    pub(super) shared: Shared,
    pub(super) msg: async_nats::Message,
    pub(super) ack: Option<Acker>,
}

/// Passes on what one NATS subscription receives, in its order.
pub(super) async fn receive(
    shared: Shared,
    mut sub: async_nats::Subscriber,
    into: mpsc::Sender<Received>,
) {
    while let Some(msg) = sub.next().await {
        let received = Received {
            shared: shared.clone(),
            msg,
            ack: None,
        };
        if into.send(received).await.is_err() {
            return;
        }
    }
}

/// Publishes what [`Cluster::forward`] queued, in order: QoS 0 on core
/// NATS, QoS 1/2 to the JetStream stream with up to
/// [`reliable::IN_FLIGHT`] awaiting JetStream's acknowledgement.
pub(super) async fn send(cluster: Arc<Cluster>, mut out: mpsc::Receiver<Outgoing>) {
    let stats = &cluster.stats;
    let mut acks = futures_util::stream::FuturesUnordered::new();
    loop {
        tokio::select! {
            next = out.recv(), if acks.len() < reliable::IN_FLIGHT => {
                let Some(Outgoing { subject, message, id, ticket }) = next else { break };
                cluster.link.after_take(out.len());
                let payload = envelope::wrap(&cluster.node, id, &message);
                if message.qos == QoS::AtMostOnce {
                    match cluster.client.publish(subject, payload).await {
                        Ok(()) => stats.forwarded.fetch_add(1, Ordering::Relaxed),
                        Err(_) => stats.dropped.fetch_add(1, Ordering::Relaxed),
                    };
                    continue;
                }
                // JetStream drops a second copy with the same id: a
                // message sent again after a failure is stored once.
                let mut headers = async_nats::HeaderMap::new();
                headers.insert("Nats-Msg-Id", format!("{}-{id}", cluster.node).as_str());
                let subject = reliable::reliable_subject(&subject);
                let js = cluster.js.clone();
                acks.push(async move {
                    let sent = store_in_jetstream(&js, subject, headers, payload).await;
                    (ticket, sent)
                });
            }
            Some((ticket, sent)) = acks.next(), if !acks.is_empty() => {
                match sent {
                    Ok(()) => stats.forwarded.fetch_add(1, Ordering::Relaxed),
                    Err(()) => stats.dropped.fetch_add(1, Ordering::Relaxed),
                };
                cluster.tickets.complete(ticket);
            }
        }
    }
}

/// Publishes a QoS 1/2 message to JetStream until JetStream acknowledges
/// it, sending it again (same message id) after a failure, such as the
/// node's NATS server going away while JetStream moves its stream leader,
/// for at most [`RETRY_FOR`]. `Err` (logged): given up.
async fn store_in_jetstream(
    js: &async_nats::jetstream::Context,
    subject: String,
    headers: async_nats::HeaderMap,
    payload: bytes::Bytes,
) -> Result<(), ()> {
    let deadline = tokio::time::Instant::now() + RETRY_FOR;
    let mut pause = Duration::from_millis(100);
    loop {
        let sent = js
            .publish_with_headers(subject.clone(), headers.clone(), payload.clone())
            .await;
        let error = match sent {
            Ok(ack) => match ack.into_future().await {
                Ok(_) => return Ok(()),
                Err(e) => e.to_string(),
            },
            Err(e) => e.to_string(),
        };
        if tokio::time::Instant::now() + pause > deadline {
            tracing::warn!(
                "JetStream did not take a QoS 1/2 message within {} s ({error}); it does not \
                 reach the other nodes",
                RETRY_FOR.as_secs()
            );
            return Err(());
        }
        tracing::debug!("JetStream did not take a QoS 1/2 message ({error}); sending it again");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}

/// Delivers what every NATS subscription of the node receives, in one
/// task: every subscription that matched a message holds the earlier
/// messages of its topic before it, so taking the first copy of each
/// keeps each topic's messages in their order.
pub(super) async fn deliver(
    cluster: Arc<Cluster>,
    router: Arc<Router>,
    store: Option<Arc<Store>>,
    mut from: mpsc::Receiver<Received>,
) {
    // JetStream messages to acknowledge, each with the store ticket of
    // what routing it stored (bounded by the consumers' unacknowledged
    // limit).
    let (acks, mut to_ack) = mpsc::unbounded_channel::<(u64, Acker)>();
    let routing = async {
        let mut recent = Recent::default();
        while let Some(Received { shared, msg, ack }) = from.recv().await {
            Store::begin();
            handle(&cluster, &router, &mut recent, shared, &msg);
            if let Some(ack) = ack {
                let _ = acks.send((Store::touched(), ack));
            }
        }
        drop(acks);
    };
    let acknowledging = async {
        while let Some((ticket, ack)) = to_ack.recv().await {
            // Queued for every local session it matches (or not for this
            // node) and, for persistent sessions, on this node's disk as
            // its durability says: JetStream may forget it. If the store
            // failed, JetStream sends it again later.
            if let Some(store) = &store {
                if let Some(t) = store.must_wait(ticket) {
                    if let Err(e) = store.wait(t).await {
                        tracing::warn!(
                            "a message from another node is not acknowledged to JetStream: {e}"
                        );
                        continue;
                    }
                }
            }
            if let Err(e) = ack.ack().await {
                tracing::debug!("acknowledging to JetStream: {e}");
            }
        }
    };
    tokio::join!(routing, acknowledging);
}

/// Delivers one message from NATS.
fn handle(
    cluster: &Cluster,
    router: &Router,
    recent: &mut Recent,
    shared: Shared,
    msg: &async_nats::Message,
) {
    let Some(envelope) = envelope::open(&msg.payload) else {
        cluster.stats.dropped.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(subject = %msg.subject, "a cluster message not understood; dropped");
        return;
    };
    // Plain subscribers here already have this node's own messages;
    // shared groups get them only from NATS (one member cluster-wide).
    if shared.is_none() && envelope.origin == &*cluster.node {
        return;
    }
    if shared.is_none() && !recent.first(envelope.origin, envelope.id) {
        return;
    }
    let (Some((mountpoint, topic)), Ok(message)) = (
        subject::decode_topic(&reliable::plain_subject(&msg.subject)),
        records::decode_message(envelope.record),
    ) else {
        cluster.stats.dropped.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(subject = %msg.subject, "a cluster message not understood; dropped");
        return;
    };
    // Another publisher on the subjects could claim one topic in the
    // subject and another in the message.
    if message.topic.as_str() != topic {
        cluster.stats.dropped.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let message = Arc::new(message);
    cluster.stats.received.fetch_add(1, Ordering::Relaxed);
    match &shared {
        Some((group, mp, filter)) => {
            router.deliver_to_group(mp, group, filter, &message);
        }
        None => {
            router.deliver_from_cluster(&Arc::from(mountpoint), &message);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_recognised_and_origin_names_stay_bounded() {
        let mut r = Recent::default();
        assert!(r.first("a", 1));
        assert!(!r.first("a", 1), "the same message again");
        assert!(r.first("b", 1), "another origin's number");
        for i in 0..ORIGINS * 3 {
            r.first(&format!("invented-{i}"), 7);
        }
        assert!(r.origins.len() <= ORIGINS);
        assert!(r.seen.len() <= ORIGINS && r.order.len() == r.seen.len());
        assert!(r.first("a", 2));
        assert!(!r.first("a", 2));
    }
}
