//! QoS 1 and 2 between nodes, at least once: such messages travel through
//! a JetStream stream (`sluice_messages`, subjects `sluice.q.…`, the same
//! encoding as `sluice.t.…`) instead of core NATS.
//!
//! - **Sending.** The origin publishes each QoS 1/2 message to the stream
//!   with its origin and number (and `Nats-Msg-Id`, so JetStream drops a
//!   resend), up to [`IN_FLIGHT`] awaiting JetStream's acknowledgement.
//! - **Receiving.** For every NATS subscription of a plain filter a node
//!   holds, it also holds a durable pull consumer on the filter's
//!   `sluice.q` subject, named after the node and the subject
//!   ([`consumer_name`]); a shared group's members on every node pull from
//!   one consumer of the group. A node pulls at its own pace (at most
//!   [`MAX_ACK_PENDING`] unacknowledged per consumer), so a burst waits in
//!   JetStream instead of being dropped, and acknowledges each message
//!   once its router has queued it for the local sessions. JetStream sends
//!   what is not acknowledged within [`ACK_WAIT`] again; the node's record
//!   of recent message numbers drops such a copy if it already delivered
//!   it.
//! - **Durability.** The stream keeps a message until every consumer whose
//!   filter matches acknowledged it (interest retention), at most
//!   [`MAX_AGE`] and [`MAX_BYTES`]. A node that stops keeps its consumers
//!   for [`INACTIVE`]: what is published meanwhile for its persistent
//!   sessions' filters waits for it. At start a node deletes its consumers
//!   that no subscription needs any more; a node removing its last
//!   subscription to a filter deletes the consumer.
//!
//! Architecture invariant: a node acknowledges a message to JetStream only
//! after its router has queued it for every local session it matches (or
//! found it is the node's own, or a copy it already delivered).

use std::cell::Cell;
use std::collections::{BTreeSet, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, stream};
use futures_util::StreamExt as _;
use tokio::sync::{mpsc, watch};

use super::relay::Received;
use super::{ClusterError, Shared};

/// The stream's name.
pub(crate) const STREAM: &str = "sluice_messages";
/// The stream's subjects: `sluice.q.` and a topic as in `sluice.t.`.
const PREFIX: &str = "sluice.q";
/// How long the stream keeps a message no consumer acknowledged.
const MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// The stream's size, past which its oldest messages go.
const MAX_BYTES: i64 = 1 << 30;
/// JetStream's window for recognising a message sent twice.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// A consumer nobody pulls from for this long is removed by JetStream.
pub(crate) const INACTIVE: Duration = Duration::from_secs(3600);
/// Unacknowledged messages per consumer.
const MAX_ACK_PENDING: i64 = 1024;
/// When JetStream sends an unacknowledged message again.
const ACK_WAIT: Duration = Duration::from_secs(30);
/// Messages published to the stream and awaiting JetStream's
/// acknowledgement.
pub(crate) const IN_FLIGHT: usize = 1024;

/// The `sluice.q` subject of a `sluice.t` subject (a topic's or a
/// filter's).
pub(crate) fn reliable_subject(subject: &str) -> String {
    match subject.strip_prefix(super::subject::PREFIX) {
        Some(rest) => format!("{PREFIX}{rest}"),
        None => subject.to_owned(),
    }
}

/// The `sluice.t` subject of a `sluice.q` subject (unchanged if it is not
/// one).
pub(crate) fn plain_subject(subject: &str) -> std::borrow::Cow<'_, str> {
    match subject.strip_prefix(PREFIX) {
        Some(rest) if rest.starts_with('.') => format!("{}{rest}", super::subject::PREFIX).into(),
        _ => subject.into(),
    }
}

/// FNV-1a, 64 bits: a name that stays the same across runs and versions.
pub(super) fn fnv(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.bytes().chain([0]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// The prefix of every consumer of `node`.
pub(crate) fn node_prefix(node: &str) -> String {
    format!("sluice_n_{node}_")
}

/// The durable consumer for `subject` (a `sluice.t` filter subject): the
/// node's own for a plain filter, the group's for a shared one.
pub(crate) fn consumer_name(node: &str, subject: &str, group: Option<&str>) -> String {
    match group {
        None => format!("{}{:016x}", node_prefix(node), fnv(&[subject])),
        Some(g) => format!("sluice_g_{:016x}", fnv(&[g, subject])),
    }
}

/// Opens the stream, creating it with `replicas` copies if no node did.
pub(crate) async fn open(
    js: &jetstream::Context,
    replicas: usize,
) -> Result<stream::Stream, ClusterError> {
    let config = stream::Config {
        name: STREAM.into(),
        description: Some("Sluice: QoS 1/2 messages between nodes".into()),
        subjects: vec![format!("{PREFIX}.>")],
        retention: stream::RetentionPolicy::Interest,
        storage: stream::StorageType::File,
        num_replicas: replicas,
        max_age: MAX_AGE,
        max_bytes: MAX_BYTES,
        max_messages: -1,
        max_message_size: -1,
        discard: stream::DiscardPolicy::Old,
        duplicate_window: DUPLICATE_WINDOW,
        ..Default::default()
    };
    super::get_or_create(js, STREAM, config, async || js.get_stream(STREAM).await).await
}

/// Pulls from the consumer `name` on `subject` (a `sluice.t` filter
/// subject) into the delivery task, creating the consumer if needed, and
/// again after a failure, until aborted.
pub(crate) async fn pull(
    stream: stream::Stream,
    name: String,
    subject: String,
    shared: Shared,
    into: mpsc::Sender<Received>,
    ready: tokio::sync::oneshot::Sender<()>,
) {
    let mut ready = Some(ready);
    let config = pull::Config {
        durable_name: Some(name.clone()),
        filter_subject: reliable_subject(&subject),
        deliver_policy: jetstream::consumer::DeliverPolicy::New,
        ack_policy: jetstream::consumer::AckPolicy::Explicit,
        ack_wait: ACK_WAIT,
        max_ack_pending: MAX_ACK_PENDING,
        inactive_threshold: INACTIVE,
        ..Default::default()
    };
    loop {
        match stream.get_or_create_consumer(&name, config.clone()).await {
            Ok(consumer) => {
                let consumer: jetstream::consumer::Consumer<pull::Config> = consumer;
                // JetStream keeps what is published from now on for it.
                if let Some(ready) = ready.take() {
                    let _ = ready.send(());
                }
                match consumer.messages().await {
                    Ok(mut messages) => {
                        while let Some(m) = messages.next().await {
                            match m {
                                Ok(m) => {
                                    let (msg, acker) = m.split();
                                    let received = Received {
                                        shared: shared.clone(),
                                        msg,
                                        ack: Some(acker),
                                    };
                                    if into.send(received).await.is_err() {
                                        return;
                                    }
                                }
                                Err(e) => tracing::debug!(consumer = %name, "pulling: {e}"),
                            }
                        }
                    }
                    Err(e) => tracing::warn!(consumer = %name, "cannot pull from JetStream: {e}"),
                }
            }
            Err(e) => tracing::warn!(consumer = %name, "cannot create the JetStream consumer: {e}"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Deletes the consumers of `node` not in `keep` (left from an earlier
/// run); returns how many went.
pub(crate) async fn delete_stale(
    stream: &stream::Stream,
    node: &str,
    keep: &HashSet<String>,
) -> usize {
    let prefix = node_prefix(node);
    let mut names = stream.consumer_names();
    let mut stale = Vec::new();
    while let Some(name) = names.next().await {
        match name {
            Ok(name) if name.starts_with(&prefix) && !keep.contains(&name) => stale.push(name),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!("listing the node's JetStream consumers: {e}");
                break;
            }
        }
    }
    let mut n = 0;
    for name in stale {
        if stream.delete_consumer(&name).await.is_ok() {
            n += 1;
        }
    }
    n
}

thread_local! {
    /// The highest ticket [`Tickets::take`] handed out on this thread since
    /// [`Tickets::begin`]: routing a PUBLISH is synchronous, so the
    /// connection finds its message's ticket here (as with the store's).
    static TOUCHED: Cell<u64> = const { Cell::new(0) };
}

/// Tickets of QoS 1/2 messages sent to JetStream: the publisher's
/// acknowledgement waits until JetStream has its message.
#[derive(Debug)]
pub(crate) struct Tickets {
    next: AtomicU64,
    done: Mutex<Done>,
    /// Every ticket up to this one is done.
    through: watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct Done {
    through: u64,
    beyond: BTreeSet<u64>,
}

impl Default for Tickets {
    fn default() -> Self {
        Tickets {
            next: AtomicU64::new(0),
            done: Mutex::new(Done::default()),
            through: watch::channel(0).0,
        }
    }
}

impl Tickets {
    /// Starts collecting the tickets this thread takes.
    pub(crate) fn begin() {
        TOUCHED.with(|t| t.set(0));
    }

    /// The highest ticket this thread took since [`Tickets::begin`] (0:
    /// none).
    pub(crate) fn touched() -> u64 {
        TOUCHED.with(Cell::get)
    }

    /// A new ticket.
    pub(crate) fn take(&self) -> u64 {
        let t = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        TOUCHED.with(|c| c.set(c.get().max(t)));
        t
    }

    /// A new ticket, not collected for [`Tickets::touched`] (for what is
    /// not a message: a subscription being set up).
    pub(crate) fn issue(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The last ticket handed out.
    pub(crate) fn issued(&self) -> u64 {
        self.next.load(Ordering::Relaxed)
    }

    /// `ticket` is done: JetStream has its message (or refused it, or it
    /// was never sent; logged and counted where that happened).
    pub(crate) fn complete(&self, ticket: u64) {
        let mut guard = self.done.lock().unwrap_or_else(|e| e.into_inner());
        let done = &mut *guard;
        done.beyond.insert(ticket);
        let before = done.through;
        while done.beyond.remove(&(done.through + 1)) {
            done.through += 1;
        }
        if done.through != before {
            self.through.send_replace(done.through);
        }
    }

    /// `ticket`, unless it is done already.
    pub(crate) fn must_wait(&self, ticket: u64) -> Option<u64> {
        (ticket != 0 && *self.through.borrow() < ticket).then_some(ticket)
    }

    /// Every ticket done so far is at most this.
    pub(crate) fn done_through(&self) -> u64 {
        *self.through.borrow()
    }

    /// Waits until `ticket` is done.
    pub(crate) async fn wait(&self, ticket: u64) {
        let mut rx = self.through.subscribe();
        let _ = rx.wait_for(|t| *t >= ticket).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_map_both_ways_and_names_are_stable_and_valid() {
        let t = super::super::subject::topic_subject("", "a/b");
        let q = reliable_subject(&t);
        assert!(q.starts_with("sluice.q."), "{q}");
        assert_eq!(plain_subject(&q), t);
        assert_eq!(plain_subject("sluice.qx.a"), "sluice.qx.a");
        let a = consumer_name("node-1", &t, None);
        assert_eq!(a, consumer_name("node-1", &t, None));
        assert_ne!(a, consumer_name("node-2", &t, None));
        assert!(a.starts_with(&node_prefix("node-1")));
        let g = consumer_name("node-1", &t, Some("g"));
        assert_eq!(g, consumer_name("node-2", &t, Some("g")));
        assert_ne!(g, consumer_name("node-1", &t, Some("h")));
        for name in [a, g] {
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
                "{name}"
            );
        }
    }

    #[tokio::test]
    async fn tickets_are_done_through_the_first_one_missing() {
        let t = Tickets::default();
        Tickets::begin();
        let (one, two, three) = (t.take(), t.take(), t.take());
        assert_eq!(Tickets::touched(), three);
        t.complete(two);
        assert_eq!(t.done_through(), 0);
        assert_eq!(t.must_wait(two), Some(two));
        t.complete(one);
        assert_eq!(t.done_through(), two);
        assert_eq!(t.must_wait(two), None);
        let waiting = tokio::spawn({
            let t = std::sync::Arc::new(t);
            let w = t.clone();
            async move {
                let wait = w.wait(three);
                t.complete(three);
                wait.await;
            }
        });
        waiting.await.unwrap();
    }
}
