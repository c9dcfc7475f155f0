//! Sessions: the state MQTT keeps for a client identity across connections.
//!
//! A [`Session`] is shared (`Arc`) between the router, which queues
//! deliveries into it, and the connection task that currently owns it, which
//! sends them. The queue sits behind a short-lived mutex; everything else a
//! connection needs per packet (QoS state, aliases) is owned by the
//! connection and parked here only while the session is offline.

pub mod congestion;
pub mod inflight;
pub mod queue;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;

use crate::codec::{QoS, SubscriptionOptions};
use crate::keepalive::Liveness;
use crate::message::{Delivery, Will};
use crate::store::Persisted;
use crate::subscriptions::ClientKey;
use crate::topic::{ClientId, Subscription};

pub use congestion::{Backpressure, Congestion, Overload};
pub use inflight::{Inflight, OutEntry, OutState};
pub use queue::{Dropped, MessageQueue, QueueLimits};

/// The default mountpoint, "", shared rather than allocated per session.
pub fn default_mountpoint() -> Arc<str> {
    static EMPTY: std::sync::OnceLock<Arc<str>> = std::sync::OnceLock::new();
    EMPTY.get_or_init(|| Arc::from("")).clone()
}

/// A session's identity: the mountpoint (topic tree) and the client id.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SubscriberId {
    pub mountpoint: Arc<str>,
    pub client_id: ClientId,
}

impl fmt::Debug for SubscriberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for SubscriberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.mountpoint.is_empty() {
            write!(f, "{}", self.client_id)
        } else {
            write!(f, "{}@{}", self.client_id, self.mountpoint)
        }
    }
}

/// Why the broker tells a connection to close.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kick {
    /// Another connection took the session over (0x8E).
    TakenOver,
    /// The broker is shutting down (0x8B).
    Shutdown,
    /// Nothing came from the client for 1.5 × its keep alive (0x8D).
    KeepAlive,
    /// The connection reached its maximum lifetime (0xA0).
    Lifetime,
}

/// A Will message waiting for its delay to run out.
#[derive(Debug)]
pub struct PendingWill {
    pub will: Box<Will>,
    /// The session generation it belongs to: a reconnect bumps the
    /// generation, which cancels the will.
    pub generation: u64,
    /// When it is due, ms since the epoch (for the store).
    pub due: u64,
}

/// Identifies a scheduled session timer (expiry, delayed Will): when it is
/// due, and a sequence number that tells apart timers due at once.
pub type TimerKey = (tokio::time::Instant, u64);

/// A subscription as the session remembers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeldSubscription {
    pub options: SubscriptionOptions,
    pub identifier: Option<u32>,
}

/// The mutable part of a session.
#[derive(Debug)]
pub struct SessionState {
    /// Deliveries waiting to be sent.
    pub queue: MessageQueue,
    /// Limits of `queue` (from the config, or a plugin's modifiers).
    pub limits: Arc<QueueLimits>,
    /// Set while the queue is congested and publishers wait for it.
    pub congestion: Option<Box<Congestion>>,
    /// The queue's last progress: the last take, or the last time it
    /// turned non-empty (kept only with backpressure; see `congestion`).
    pub progress: tokio::time::Instant,
    /// Subscriptions held, to remove them when the session ends.
    pub subscriptions: HashMap<Subscription, HeldSubscription>,
    /// QoS state, parked here while no connection owns the session.
    pub inflight: Option<Box<Inflight>>,
    /// Whether a connection owns the session.
    pub connected: bool,
    /// Set by the registry to tell the owning connection to close.
    pub kicked: Option<Kick>,
    /// Bumped by every connection that attaches.
    pub generation: u64,
    /// Seconds the session outlives its connection; `u32::MAX` = forever.
    pub expiry_interval: u32,
    pub pending_will: Option<PendingWill>,
    /// The session's scheduled timers, cancelled when a connection
    /// attaches or the session ends.
    pub timers: Vec<TimerKey>,
    /// Set once the session has ended; a connection holding a stale `Arc`
    /// must then start a new one.
    pub ended: bool,
    /// Protocol level of the last connection (for the store's record).
    pub level: u8,
    /// When the last connection ended, ms since the epoch (for the
    /// store's record).
    pub disconnected_at: u64,
}

impl SessionState {
    /// Ends a congestion episode (the session goes offline): publishers
    /// waiting for it go on once the returned wakers are woken (outside
    /// the lock, with [`congestion::wake_all`]).
    pub(crate) fn end_congestion(&mut self) -> Option<Vec<std::task::Waker>> {
        Congestion::end(&mut self.congestion)
    }
}

/// A session.
pub struct Session {
    key: ClientKey,
    id: SubscriberId,
    online: AtomicBool,
    upgrade_qos: AtomicBool,
    state: Mutex<SessionState>,
    /// Set when something was queued (or the connection was kicked) since
    /// the owning connection last looked.
    signalled: AtomicBool,
    /// The owning connection's task, to wake.
    waker: AtomicWaker,
    /// When the owning connection last heard from its client, for the
    /// keep-alive sweeper.
    pub liveness: Liveness,
    /// Set when the session outlives its connection and the broker has a
    /// store: everything it holds is written there too.
    persisted: std::sync::OnceLock<Persisted>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("key", &self.key)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// A new, empty, offline session.
    pub fn new(key: ClientKey, id: SubscriberId, limits: Arc<QueueLimits>) -> Self {
        Session {
            key,
            id,
            online: AtomicBool::new(false),
            upgrade_qos: AtomicBool::new(false),
            state: Mutex::new(SessionState {
                queue: MessageQueue::default(),
                limits,
                congestion: None,
                progress: tokio::time::Instant::now(),
                subscriptions: HashMap::new(),
                inflight: None,
                connected: false,
                kicked: None,
                generation: 0,
                expiry_interval: 0,
                pending_will: None,
                timers: Vec::new(),
                ended: false,
                level: 0,
                disconnected_at: 0,
            }),
            signalled: AtomicBool::new(false),
            waker: AtomicWaker::new(),
            liveness: Liveness::default(),
            persisted: std::sync::OnceLock::new(),
        }
    }

    /// The session's way into the store, if it is stored.
    pub fn persisted(&self) -> Option<&Persisted> {
        self.persisted.get()
    }

    /// Starts storing the session (once; later calls do nothing). The
    /// caller writes what the session already holds.
    pub(crate) fn set_persisted(&self, p: Persisted) -> bool {
        self.persisted.set(p).is_ok()
    }

    /// The session's unique key (never reused within a broker run).
    pub fn key(&self) -> ClientKey {
        self.key
    }

    /// The session's identity.
    pub fn id(&self) -> &SubscriberId {
        &self.id
    }

    /// Whether a connection currently owns the session.
    pub fn is_online(&self) -> bool {
        self.online.load(Ordering::Relaxed)
    }

    pub(crate) fn set_online(&self, online: bool) {
        self.online.store(online, Ordering::Relaxed);
    }

    /// Whether messages are delivered at the subscription's QoS even when
    /// published lower (a plugin's `upgrade-qos`).
    pub fn upgrade_qos(&self) -> bool {
        self.upgrade_qos.load(Ordering::Relaxed)
    }

    pub(crate) fn set_upgrade_qos(&self, upgrade: bool) {
        self.upgrade_qos.store(upgrade, Ordering::Relaxed);
    }

    /// Locks the session state. Never held across an await, and never
    /// while taking the router's locks (the router takes this lock inside
    /// its own).
    pub fn lock(&self) -> MutexGuard<'_, SessionState> {
        // A panic while holding the lock cannot leave the queue in a state
        // worse than losing a message, so poisoning is ignored.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a delivery and wakes the owning connection. Returns the
    /// deliveries the queue dropped to make room (or the new one), and
    /// whether the publisher should wait for this session.
    pub fn enqueue(&self, mut delivery: Delivery) -> (Dropped, Overload) {
        let (dropped, pressure) = {
            let mut state = self.lock();
            if state.ended {
                let dropped = Dropped {
                    deliveries: vec![delivery],
                    limit: None,
                };
                return (dropped, Overload::None);
            }
            let limits = state.limits.clone();
            // Stored under the lock, so that the store sees a delivery's
            // entry before anything takes it from the queue.
            let persisted = self.persisted().filter(|_| delivery.qos != QoS::AtMostOnce);
            let online = self.is_online();
            if let Some(p) = persisted {
                delivery.stored = Some(p.queue(&delivery, online));
            }
            if online && limits.backpressure.is_some() && state.queue.is_empty() {
                state.progress = tokio::time::Instant::now();
            }
            let dropped = state.queue.push(delivery, online, &limits);
            if let Some(p) = persisted {
                for d in &dropped.deliveries {
                    p.done(d);
                }
            }
            let state = &mut *state;
            let pressure = if online {
                Congestion::after_push(&mut state.congestion, &state.queue, &limits, state.progress)
            } else {
                Overload::None
            };
            (dropped, pressure)
        };
        self.wake();
        (dropped, pressure)
    }

    /// Until when a publisher must still wait for this session's
    /// congestion to end (`None`: no longer); while it must, `waker` is
    /// woken when it does.
    pub fn must_wait(&self, waker: &std::task::Waker) -> Option<tokio::time::Instant> {
        let mut state = self.lock();
        if !state.connected {
            return None;
        }
        let s = &mut *state;
        Congestion::wait(&mut s.congestion, &s.limits, s.progress, waker)
    }

    /// Moves up to `max` deliveries from the front of the queue into `out`,
    /// at most `room` of them QoS 1/2 (the send window) and about `bytes`
    /// of messages (at least one delivery), stopping at the first that does
    /// not fit so that order is kept: what leaves the queue leaves its
    /// limits, so a connection takes no more than it can write soon.
    /// Returns the kick, if the registry asked the connection to close.
    pub fn take_batch(
        &self,
        out: &mut Vec<Delivery>,
        max: usize,
        mut room: usize,
        mut bytes: usize,
    ) -> Option<Kick> {
        let mut state = self.lock();
        if let Some(kick) = state.kicked {
            return Some(kick);
        }
        let before = out.len();
        while out.len() < max {
            match state.queue.front() {
                Some(d) if d.qos == QoS::AtMostOnce || room > 0 => {
                    let size = d.message.size();
                    if size > bytes && !out.is_empty() {
                        break;
                    }
                    bytes = bytes.saturating_sub(size);
                    if d.qos != QoS::AtMostOnce {
                        room -= 1;
                    }
                }
                _ => break,
            }
            if let Some(d) = state.queue.pop_front() {
                out.push(d);
            }
        }
        let took = out.len() > before;
        if took && state.limits.backpressure.is_some() {
            state.progress = tokio::time::Instant::now();
        }
        let woken = if took && state.congestion.is_some() {
            let s = &mut *state;
            Congestion::after_take(&mut s.congestion, &s.queue, &s.limits)
        } else {
            None
        };
        drop(state);
        congestion::wake_all(woken);
        None
    }

    /// The kick waiting for the owning connection, if any.
    pub fn kicked(&self) -> Option<Kick> {
        self.lock().kicked
    }

    /// Asks the owning connection to close.
    pub fn kick(&self, kick: Kick) {
        self.lock().kicked = Some(kick);
        self.wake();
    }

    /// Wakes the owning connection (something was queued).
    pub fn wake(&self) {
        if !self.signalled.swap(true, Ordering::AcqRel) {
            self.waker.wake();
        }
    }

    /// Ready when something was queued since the last time it was ready.
    /// No stored future: the connection polls it from its own loop.
    pub fn poll_signal(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.signalled.swap(false, Ordering::AcqRel) {
            return Poll::Ready(());
        }
        self.waker.register(cx.waker());
        // A wake between the check and the registration would be lost:
        // look again.
        if self.signalled.swap(false, Ordering::AcqRel) {
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

impl crate::router::Backlog for Session {
    fn must_wait(&self, waker: &std::task::Waker) -> Option<tokio::time::Instant> {
        Session::must_wait(self, waker)
    }
}
