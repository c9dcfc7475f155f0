//! Several Sluice nodes serving one MQTT namespace over NATS (`[cluster]`).
//!
//! Nodes never talk to each other directly: each connects to NATS and
//! routes by interest.
//!
//! - **Interest.** For every distinct filter its clients hold, a node holds
//!   one NATS subscription on the filter's subjects ([`subject`]),
//!   counted, and drops it when the last local subscription leaves. A
//!   shared subscription `$share/g/f` is a NATS queue subscription on `f`'s
//!   subjects in queue group `g`: NATS gives each message to one member
//!   node of the group, which gives it to one of its local members.
//! - **Publishing.** A message a client (or a Will) publishes is routed
//!   locally as on one node, then sent to NATS once, on its topic's
//!   subject, with the origin node in its envelope ([`envelope`]); NATS takes it only to
//!   nodes that subscribed to a matching subject.
//! - **Receiving.** A node gives another node's message to its plain
//!   subscriptions once however many of its NATS subscriptions matched
//!   (duplicates are recognised by the origin's message id); its own
//!   messages its plain subscriptions already have. Shared groups get
//!   every message, the origin's own included, only through their queue
//!   subscriptions, so one member in the whole cluster gets it.
//!
//! Architecture invariant: a message crosses NATS once per publish, is never
//! looped back to its origin node, and reaches each node's plain
//! subscribers once; the MQTT rules (overlapping subscriptions, No Local,
//! `$` topics) are applied by the receiving node's own router.
//!
//! - **Retained messages** are cluster-wide through a JetStream key-value
//!   bucket every node watches ([`retained`]).
//!
//! - **QoS 1/2** cross nodes at least once, through a JetStream stream
//!   and durable pull consumers ([`reliable`]); QoS 0 on core NATS.
//!
//! - **Client ids and sessions** are cluster-wide: a CONNECT claims its
//!   id in a JetStream key-value bucket, and the former owner node
//!   disconnects its client and hands the session over ([`sessions`]);
//!   the bucket keeps each persistent session's card, so the sessions of
//!   a node that dies ([`liveness`]) are taken over by the survivors.

mod envelope;
mod image;
pub(crate) mod link;
mod liveness;
mod nats;
pub(crate) mod order;
mod plugin_kv;
mod relay;
mod reliable;
mod retained;
mod sessions;
pub(crate) mod subject;

pub(crate) use nats::node_name;
use nats::{get_or_create, kv_stream, options};
pub(crate) use plugin_kv::PluginKvs;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::codec::QoS;
use crate::config::ClusterConfig;
use crate::message::Message;
use crate::router::Router;
use crate::topic::TopicFilter;

/// How many messages leave for NATS before publishers' messages are
/// dropped (and counted) rather than queued: the NATS client has its own
/// buffer behind this one.
const OUT_QUEUE: usize = 64 * 1024;
/// Messages held per NATS subscription, and between the subscriptions'
/// readers and the delivery task: what arrives from NATS is bounded in
/// count here and in size by NATS's `max_payload` (1 MiB by default).
const SUBSCRIPTION_BUFFER: usize = 1024;
/// How long a SUBACK waits at most for its NATS subscription and
/// JetStream consumer.
const SETUP_LIMIT: std::time::Duration = std::time::Duration::from_secs(2);
/// How long a stopping node waits for NATS to take what is left for it.
const STOP_FLUSH: std::time::Duration = std::time::Duration::from_secs(2);

/// Why the cluster could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot connect to NATS at {servers}: {source}")]
    Connect {
        servers: String,
        source: async_nats::ConnectError,
    },
    #[error("cluster: cannot read {}: {source}", .path.display())]
    Secret {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(
        "cannot use {bucket} in NATS JetStream ({reason}); the NATS servers must run with \
         JetStream enabled (nats-server -js)"
    )]
    Bucket {
        bucket: &'static str,
        reason: String,
    },
}

/// For a shared subscription: the group, the mountpoint and the filter
/// (to find the local group); `None` for a plain one.
type Shared = Option<(Arc<str>, Arc<str>, TopicFilter)>;

/// A NATS subscription a node needs: a subject, and the queue group of a
/// shared subscription.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Interest {
    subject: String,
    shared: Shared,
}

impl Interest {
    /// The durable JetStream consumer of this interest.
    fn consumer(&self, node: &str) -> String {
        reliable::consumer_name(
            node,
            &self.subject,
            self.shared.as_ref().map(|(g, _, _)| &**g),
        )
    }
}

enum Command {
    /// With its ticket in [`Cluster::subscribed`].
    Subscribe(Interest, u64),
    Unsubscribe(Interest),
}

/// A message for NATS: its subject, the message, its number, and its
/// ticket (QoS 1/2; 0 for QoS 0).
pub(super) struct Outgoing {
    subject: String,
    message: Arc<Message>,
    id: u64,
    ticket: u64,
}

/// Counters, for `/metrics`.
#[derive(Debug, Default)]
pub struct ClusterStats {
    /// Messages sent to NATS.
    pub forwarded: AtomicU64,
    /// Messages received from other nodes.
    pub received: AtomicU64,
    /// Messages not forwarded (the queue to NATS was full) or not
    /// understood.
    pub dropped: AtomicU64,
    /// NATS subscriptions held.
    pub subscriptions: AtomicU64,
    /// Retained messages set or cleared here from the cluster's bucket.
    pub retained_applied: AtomicU64,
    /// Retained messages not written to the bucket (queue full, or
    /// JetStream refused) or not taken from it (a limit here).
    pub retained_failed: AtomicU64,
    /// Sessions handed over to another node at its takeover.
    pub handed_out: AtomicU64,
    /// Sessions handed over by another node at a takeover here.
    pub handed_in: AtomicU64,
    /// Nodes this node declared dead.
    pub dead_nodes: AtomicU64,
    /// Dead nodes whose sessions this node claimed (every survivor claims).
    pub dead_handled: AtomicU64,
    /// Sessions of dead nodes this node won.
    pub inherited: AtomicU64,
}

/// This node's part in the cluster.
pub struct Cluster {
    node: Arc<str>,
    client: async_nats::Client,
    js: async_nats::jetstream::Context,
    /// The stream QoS 1/2 messages cross nodes in.
    messages: async_nats::jetstream::stream::Stream,
    out: mpsc::Sender<Outgoing>,
    /// `out` as a backlog publishers are held for.
    link: Arc<link::Link>,
    commands: mpsc::UnboundedSender<Command>,
    /// Local subscriptions per NATS subscription.
    interest: Mutex<HashMap<Interest, usize>>,
    next_id: AtomicU64,
    stats: Arc<ClusterStats>,
    /// The retained messages' bucket.
    retained: retained::Replicated,
    /// QoS 1/2 messages on their way to JetStream.
    tickets: reliable::Tickets,
    /// NATS subscriptions (and their JetStream consumers) being set up:
    /// a SUBACK waits for those issued before it.
    subscribed: reliable::Tickets,
    /// The owner node (and card) of every client id.
    sessions: sessions::Sessions,
    /// Every node's heartbeat.
    nodes: async_nats::jetstream::kv::Store,
    /// `[cluster] node_timeout`.
    node_timeout: std::time::Duration,
    /// `[cluster] replicas`.
    replicas: usize,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Taken by [`Cluster::start`].
    pending: Mutex<Option<Receivers>>,
}

struct Receivers {
    out: mpsc::Receiver<Outgoing>,
    commands: mpsc::UnboundedReceiver<Command>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The node a value of the cluster's session bucket (`sluice_sessions`)
/// names as holding its client id; for tools and tests that read the
/// bucket.
pub fn session_owner(value: &[u8]) -> Option<String> {
    image::decode_owned(value).ok().map(|o| o.owner)
}

impl Cluster {
    /// Connects to NATS (the first connection must succeed; later losses
    /// are reconnected by the client).
    /// `backpressure`: how long publishers wait for a congested queue to
    /// NATS (`[session] overload`; `None`: they never do).
    pub(crate) async fn connect(
        config: &ClusterConfig,
        node: String,
        backpressure: Option<crate::session::Backpressure>,
    ) -> Result<Arc<Self>, ClusterError> {
        let servers = config.nats.join(", ");
        let stats = Arc::new(ClusterStats::default());
        let events = stats.clone();
        let client = options(config)?
            .name(format!("sluice {node}"))
            .event_callback(move |event| {
                let stats = events.clone();
                async move {
                    if let async_nats::Event::SlowConsumer(_) = event {
                        // A QoS 0 message the node did not take in time.
                        if stats.dropped.fetch_add(1, Ordering::Relaxed) % 1000 == 0 {
                            tracing::warn!(
                                "a NATS subscription's buffer is full: QoS 0 messages from \
                                 other nodes are dropped (counted in sluice_cluster_dropped_total)"
                            );
                        }
                    }
                }
            })
            // Messages buffered per NATS subscription before its reader
            // takes them.
            .subscription_capacity(SUBSCRIPTION_BUFFER)
            .connect(config.nats.as_slice())
            .await
            .map_err(|source| ClusterError::Connect { servers, source })?;
        let retained = retained::Replicated::open(&client, usize::from(config.replicas)).await?;
        let js = async_nats::jetstream::new(client.clone());
        let messages = reliable::open(&js, usize::from(config.replicas)).await?;
        let sessions = sessions::open(&js, usize::from(config.replicas)).await?;
        let nodes = liveness::open(&js, usize::from(config.replicas)).await?;
        let (out_tx, out_rx) = mpsc::channel(OUT_QUEUE);
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        tracing::info!(node = %node, "joined the cluster over NATS ({})", config.nats.join(", "));
        Ok(Arc::new(Cluster {
            node: node.into(),
            client,
            js,
            messages,
            out: out_tx,
            link: Arc::new(link::Link::new(OUT_QUEUE, backpressure)),
            commands: cmd_tx,
            interest: Mutex::new(HashMap::new()),
            // Numbers from the wall clock in microseconds: a node that
            // restarts does not reuse the numbers others still remember
            // (unless it averaged over a message per microsecond).
            next_id: AtomicU64::new(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
            ),
            stats,
            retained,
            tickets: reliable::Tickets::default(),
            subscribed: reliable::Tickets::default(),
            sessions,
            nodes,
            node_timeout: std::time::Duration::from_secs(u64::from(config.node_timeout)),
            replicas: usize::from(config.replicas),
            tasks: Mutex::new(Vec::new()),
            pending: Mutex::new(Some(Receivers {
                out: out_rx,
                commands: cmd_rx,
            })),
        }))
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The counters.
    pub fn stats(&self) -> &ClusterStats {
        &self.stats
    }

    /// Starts the tasks that send to NATS and deliver what comes from it
    /// into `router`.
    pub(crate) fn start(
        self: &Arc<Self>,
        router: Arc<Router>,
        store: Option<Arc<crate::store::Store>>,
    ) {
        let Some(Receivers { out, mut commands }) = lock(&self.pending).take() else {
            return;
        };
        let sender = tokio::spawn(relay::send(self.clone(), out));
        let router_for_retained = router.clone();
        let manager = {
            let this = self.clone();
            tokio::spawn(async move {
                let (into, from) = mpsc::channel(SUBSCRIPTION_BUFFER);
                let deliverer = tokio::spawn(relay::deliver(this.clone(), router, store, from));
                let mut held: HashMap<Interest, [JoinHandle<()>; 2]> = HashMap::new();
                while let Some(command) = commands.recv().await {
                    match command {
                        Command::Subscribe(interest, ticket) => {
                            // Done once NATS has the subscription and
                            // JetStream the consumer (or it failed, or
                            // [`SETUP_LIMIT`] passed), whatever happens.
                            let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
                            let setup = this.clone();
                            tokio::spawn(async move {
                                let _ = tokio::time::timeout(SETUP_LIMIT, ready_rx).await;
                                // The server has the SUBSCRIBE once the
                                // connection's round trip is back.
                                let _ =
                                    tokio::time::timeout(SETUP_LIMIT, setup.client.flush()).await;
                                setup.subscribed.complete(ticket);
                            });
                            if held.contains_key(&interest) {
                                continue;
                            }
                            let sub = match &interest.shared {
                                None => this.client.subscribe(interest.subject.clone()).await,
                                Some((group, _, _)) => {
                                    this.client
                                        .queue_subscribe(
                                            interest.subject.clone(),
                                            group.to_string(),
                                        )
                                        .await
                                }
                            };
                            let sub = match sub {
                                Ok(sub) => sub,
                                Err(e) => {
                                    tracing::error!(subject = %interest.subject, "cannot subscribe in NATS: {e}");
                                    continue;
                                }
                            };
                            this.stats.subscriptions.fetch_add(1, Ordering::Relaxed);
                            let core = tokio::spawn(relay::receive(
                                interest.shared.clone(),
                                sub,
                                into.clone(),
                            ));
                            let reliable = tokio::spawn(reliable::pull(
                                this.messages.clone(),
                                interest.consumer(&this.node),
                                interest.subject.clone(),
                                interest.shared.clone(),
                                into.clone(),
                                ready_tx,
                            ));
                            held.insert(interest, [core, reliable]);
                        }
                        Command::Unsubscribe(interest) => {
                            if let Some(tasks) = held.remove(&interest) {
                                // Dropping the subscriber unsubscribes.
                                tasks.iter().for_each(JoinHandle::abort);
                                this.stats.subscriptions.fetch_sub(1, Ordering::Relaxed);
                                // The node's own consumer goes with its
                                // last subscription (a group's stays for
                                // the other nodes' members, until unused
                                // for `reliable::INACTIVE`).
                                if interest.shared.is_none() {
                                    let stream = this.messages.clone();
                                    let name = interest.consumer(&this.node);
                                    tokio::spawn(async move {
                                        let _ = stream.delete_consumer(&name).await;
                                    });
                                }
                            }
                        }
                    }
                }
                for (_, tasks) in held {
                    tasks.iter().for_each(JoinHandle::abort);
                }
                deliverer.abort();
            })
        };
        lock(&self.tasks).extend([sender, manager]);
        lock(&self.tasks).extend(self.retained.start(self, &router_for_retained));
    }

    /// Stops the tasks (at shutdown), after what is queued for NATS went.
    pub(crate) async fn stop(&self) {
        // The cards of the sessions whose connections just closed.
        self.flush_cards().await;
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
        // Expected back: the others leave its sessions alone.
        if tokio::time::timeout(STOP_FLUSH, self.leave())
            .await
            .is_err()
        {
            tracing::warn!("could not tell the cluster this node stops");
        }
        // Bounded: with NATS out of reach a flush would wait for it.
        if tokio::time::timeout(STOP_FLUSH, self.client.flush())
            .await
            .is_err()
        {
            tracing::warn!(
                "NATS did not take what was left for it within {} s at shutdown",
                STOP_FLUSH.as_secs()
            );
        }
    }

    /// Called once the node's state is restored, before its listeners
    /// open: takes the cluster's retained messages, reconciles its
    /// sessions with the cluster's, deletes the node's JetStream consumers
    /// no subscription needs any more and starts its heartbeat.
    pub(crate) async fn ready(self: &Arc<Self>, router: &Arc<Router>) -> Result<(), ClusterError> {
        let n = self.sync_retained(router).await?;
        let (taken, dropped) = self.adopt().await;
        if taken + dropped > 0 {
            tracing::info!(
                "{taken} sessions this node holds taken back from the cluster, {dropped} held \
                 by other nodes now dropped"
            );
        }
        self.start_liveness();
        let keep: HashSet<String> = lock(&self.interest)
            .keys()
            .filter(|i| i.shared.is_none())
            .map(|i| i.consumer(&self.node))
            .collect();
        let stale = reliable::delete_stale(&self.messages, &self.node, &keep).await;
        tracing::info!(
            "{n} retained messages from the cluster; {stale} JetStream consumers of this node \
             no subscription needs any more deleted"
        );
        Ok(())
    }

    /// Starts collecting the tickets of the QoS 1/2 messages this thread
    /// forwards (see [`Cluster::touched`]).
    pub(crate) fn begin() {
        reliable::Tickets::begin();
    }

    /// The highest ticket of a QoS 1/2 message this thread forwarded
    /// since [`Cluster::begin`] (0: none): its publisher's acknowledgement
    /// waits for it.
    pub(crate) fn touched() -> u64 {
        reliable::Tickets::touched()
    }

    /// `ticket`, unless JetStream has its message (and every earlier one)
    /// already.
    pub(crate) fn must_wait(&self, ticket: u64) -> Option<u64> {
        self.tickets.must_wait(ticket)
    }

    /// Every ticket up to this one is done.
    pub(crate) fn done_through(&self) -> u64 {
        self.tickets.done_through()
    }

    /// Waits until JetStream has the message of `ticket` (and every
    /// earlier one).
    pub(crate) async fn wait(&self, ticket: u64) {
        self.tickets.wait(ticket).await;
    }

    /// Waits (at most [`SETUP_LIMIT`]) until the NATS subscriptions and
    /// JetStream consumers asked for so far are in place: a SUBACK then
    /// means messages published on other nodes from now on arrive.
    pub(crate) async fn subscribed(&self) {
        let ticket = self.subscribed.issued();
        if self.subscribed.must_wait(ticket).is_some() {
            let _ = tokio::time::timeout(SETUP_LIMIT, self.subscribed.wait(ticket)).await;
        }
    }

    /// Sends a message published on this node to the other nodes. Returns
    /// the link and until when the publisher is to wait for it, if the
    /// queue to NATS is congested (see [`link`]).
    pub(crate) fn forward(
        &self,
        mountpoint: &str,
        message: &Arc<Message>,
    ) -> Option<(&Arc<link::Link>, tokio::time::Instant)> {
        if message.topic.as_str().starts_with("$SYS") {
            return None;
        }
        let subject = subject::topic_subject(mountpoint, message.topic.as_str());
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let ticket = if message.qos == QoS::AtMostOnce {
            0
        } else {
            self.tickets.take()
        };
        let out = Outgoing {
            subject,
            message: message.clone(),
            id,
            ticket,
        };
        if self.out.try_send(out).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            if ticket != 0 {
                tracing::warn!(
                    "the queue to NATS is full: a QoS {} message does not reach the other nodes",
                    message.qos as u8
                );
                self.tickets.complete(ticket);
            }
            return None;
        }
        let queued = OUT_QUEUE - self.out.capacity();
        self.link
            .after_push(queued)
            .map(|until| (&self.link, until))
    }

    /// A local subscription to `filter` (with the shared group, if any)
    /// was added (`added`) or removed.
    pub(crate) fn interest(
        &self,
        mountpoint: &Arc<str>,
        filter: &TopicFilter,
        group: Option<&Arc<str>>,
        added: bool,
    ) {
        let shared = group.map(|g| (g.clone(), mountpoint.clone(), filter.clone()));
        let mut interest = lock(&self.interest);
        for subject in subject::filter_subjects(mountpoint, filter.as_str()) {
            let key = Interest {
                subject,
                shared: shared.clone(),
            };
            if added {
                let n = interest.entry(key.clone()).or_insert(0);
                *n += 1;
                if *n == 1 {
                    let ticket = self.subscribed.issue();
                    let _ = self.commands.send(Command::Subscribe(key, ticket));
                }
            } else if let Some(n) = interest.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    interest.remove(&key);
                    let _ = self.commands.send(Command::Unsubscribe(key));
                }
            }
        }
    }
}
