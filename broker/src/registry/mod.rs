//! The session registry: finds or creates the session of a connecting client,
//! takes sessions over from older connections, and ends sessions (on clean
//! disconnect or expiry), publishing delayed Will messages on the way. The
//! expiry and Will timers of offline sessions are in [`timers`]; sessions
//! read back from the store at start are taken in by [`restore`].

mod handover;
mod restore;
mod timers;

pub(crate) use handover::Card;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::limits::Limit;
use crate::message::Will;
use crate::metrics::Metrics;
use crate::plugins::{Event, Plugins};
use crate::router::Router;
use crate::session::{
    Inflight, Kick, PendingWill, QueueLimits, Session, SessionState, SubscriberId,
};
use crate::store::{SessionRecord, Store};
use crate::subscriptions::ClientKey;

use self::timers::{Timer, TimerKind, Timers};

/// How long a new connection waits for the connection it takes a session
/// over from to let go.
const TAKEOVER_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a session could not be attached.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("the connection holding session {0} did not release it within {TAKEOVER_TIMEOUT:?}")]
    TakeoverTimedOut(SubscriberId),
    #[error("the broker holds limits.max_sessions = {0} sessions")]
    TooManySessions(u64),
}

/// A session attached to a new connection.
#[derive(Debug)]
pub struct Attached {
    pub session: Arc<Session>,
    /// Whether an existing session was resumed (CONNACK Session Present).
    pub session_present: bool,
    /// The session's QoS state, now owned by the connection.
    pub inflight: Inflight,
    /// The session's generation: which connection holds it.
    pub generation: u64,
}

/// Per-session settings a connection brings (from the config, or a
/// plugin's modifiers); they replace those of a resumed session.
#[derive(Clone, Debug)]
pub struct Profile {
    pub limits: Arc<QueueLimits>,
    pub upgrade_qos: bool,
    /// Whether the session outlives the connection (so it is stored, when
    /// the broker has a store).
    pub persistent: bool,
}

/// What a connection leaves behind when it ends.
#[derive(Debug)]
pub struct Departure {
    pub inflight: Inflight,
    /// The Will message to publish, if the connection ended without a
    /// normal DISCONNECT.
    pub will: Option<Will>,
    /// Session Expiry Interval, seconds (`u32::MAX` = never).
    pub expiry_interval: u32,
}

/// A session in the registry's set, found by its identity (so the set
/// stores one pointer per session, not a copy of the key).
#[derive(Debug, Clone)]
struct Entry(Arc<Session>);

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.0.id() == other.0.id()
    }
}

impl Eq for Entry {}

impl std::hash::Hash for Entry {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.id().hash(state);
    }
}

impl std::borrow::Borrow<SubscriberId> for Entry {
    fn borrow(&self) -> &SubscriberId {
        self.0.id()
    }
}

/// All sessions of the broker, by identity.
#[derive(Debug)]
pub struct Registry {
    sessions: Mutex<HashSet<Entry>>,
    next_key: AtomicU64,
    /// Wakes connections waiting to take a session over when any session
    /// is released (takeovers are rare; each waiter checks its own).
    released: Notify,
    router: Arc<Router>,
    metrics: Arc<Metrics>,
    plugins: Arc<Plugins>,
    /// Expiry and delayed-Will timers of offline sessions.
    timers: Timers,
    /// `limits.max_sessions` (0: no limit).
    max_sessions: u64,
    /// Where persistent sessions are stored, if anywhere.
    store: Option<Arc<Store>>,
}

impl Registry {
    /// An empty registry routing through `router`, holding at most
    /// `max_sessions` sessions (0: no limit).
    pub fn new(
        router: Arc<Router>,
        metrics: Arc<Metrics>,
        plugins: Arc<Plugins>,
        max_sessions: u64,
        store: Option<Arc<Store>>,
    ) -> Self {
        Registry {
            sessions: Mutex::new(HashSet::new()),
            next_key: AtomicU64::new(1),
            released: Notify::new(),
            router,
            metrics,
            plugins,
            timers: Timers::default(),
            max_sessions,
            store,
        }
    }

    /// Starts storing `session` if `profile` asks for it and it is not
    /// stored yet, writing what it holds (its subscriptions and queue).
    fn persist(&self, session: &Arc<Session>, profile: &Profile) {
        let Some(store) = self.store.as_ref().filter(|_| profile.persistent) else {
            return;
        };
        if !session.set_persisted(store.session(session.id())) {
            return;
        }
        let Some(p) = session.persisted() else {
            return;
        };
        let mut state = session.lock();
        for (s, held) in &state.subscriptions {
            p.subscribe(s, &held.options, held.identifier);
        }
        state.queue.for_each_mut(|d| {
            if d.qos != crate::codec::QoS::AtMostOnce && d.stored.is_none() {
                d.stored = Some(p.queue(d, false));
            }
        });
    }

    /// The record of an offline session, with its waiting Will.
    fn offline_record(state: &SessionState) -> SessionRecord {
        let will = state.pending_will.as_ref();
        SessionRecord {
            level: state.level,
            expiry_interval: state.expiry_interval,
            disconnected_at: state.disconnected_at,
            will: will.map(|w| (*w.will).clone()),
            will_due: will.map_or(0, |w| w.due),
        }
    }

    fn map(&self) -> MutexGuard<'_, HashSet<Entry>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Number of sessions, online and offline.
    pub fn len(&self) -> usize {
        self.map().len()
    }

    /// Whether there are no sessions.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The session of `id`, if any.
    pub fn get(&self, id: &SubscriberId) -> Option<Arc<Session>> {
        self.map().get(id).map(|e| e.0.clone())
    }

    /// Attaches the session `id` to a new connection: resumes the existing
    /// session unless `clean_start`, after taking it over from the
    /// connection that holds it (which is told to close and waited for).
    pub async fn attach(
        self: &Arc<Self>,
        id: SubscriberId,
        clean_start: bool,
        profile: Profile,
    ) -> Result<Attached, AttachError> {
        let deadline = Instant::now() + TAKEOVER_TIMEOUT;
        loop {
            let existing = {
                let mut map = self.map();
                match map.get(&id) {
                    Some(e) => e.0.clone(),
                    None if self.max_sessions != 0 && map.len() as u64 >= self.max_sessions => {
                        drop(map);
                        self.metrics.limits.hit(
                            Limit::Sessions,
                            &id,
                            &"CONNECT refused: no room for a new session",
                        );
                        return Err(AttachError::TooManySessions(self.max_sessions));
                    }
                    None => {
                        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
                        let session =
                            Arc::new(Session::new(key, id.clone(), profile.limits.clone()));
                        {
                            let mut state = session.lock();
                            state.connected = true;
                            state.generation = 1;
                        }
                        session.set_upgrade_qos(profile.upgrade_qos);
                        session.set_online(true);
                        map.insert(Entry(session.clone()));
                        drop(map);
                        self.persist(&session, &profile);
                        return Ok(Attached {
                            session,
                            session_present: false,
                            inflight: Inflight::default(),
                            generation: 1,
                        });
                    }
                }
            };
            enum Next {
                Forget,
                WaitForRelease,
                EndIt,
                Resume(Inflight, u64, Vec<crate::session::TimerKey>),
            }
            // Registered before looking, so a release in between wakes us.
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            let next = {
                let mut state = existing.lock();
                if state.ended {
                    Next::Forget
                } else if state.connected {
                    Next::WaitForRelease
                } else if clean_start {
                    Next::EndIt
                } else {
                    state.connected = true;
                    state.kicked = None;
                    state.limits = profile.limits.clone();
                    state.generation += 1;
                    state.pending_will = None;
                    Next::Resume(
                        state.inflight.take().map(|f| *f).unwrap_or_default(),
                        state.generation,
                        std::mem::take(&mut state.timers),
                    )
                }
            };
            let (inflight, generation) = match next {
                Next::Forget => {
                    self.forget(&existing);
                    continue;
                }
                Next::WaitForRelease => {
                    existing.kick(Kick::TakenOver);
                    match tokio::time::timeout_at(deadline, released).await {
                        Ok(()) => continue,
                        Err(_) => return Err(AttachError::TakeoverTimedOut(id)),
                    }
                }
                Next::EndIt => {
                    self.end(&existing);
                    continue;
                }
                Next::Resume(inflight, generation, timers) => {
                    self.timers.cancel(&timers);
                    (inflight, generation)
                }
            };
            existing.set_upgrade_qos(profile.upgrade_qos);
            existing.set_online(true);
            self.persist(&existing, &profile);
            return Ok(Attached {
                session: existing,
                session_present: true,
                inflight,
                generation,
            });
        }
    }

    /// A connection ends: parks its state in the session, publishes or
    /// schedules its Will, and ends the session now or schedules its expiry.
    pub fn detach(&self, session: &Arc<Session>, departure: Departure) {
        let Departure {
            inflight,
            will,
            expiry_interval,
        } = departure;
        let (generation, dropped_qos0, released) = {
            let mut state = session.lock();
            state.connected = false;
            state.kicked = None;
            session.set_online(false);
            let released = state.end_congestion();
            state.inflight = Some(Box::new(inflight));
            state.expiry_interval = expiry_interval;
            let dropped = if state.limits.qos0_offline {
                0
            } else {
                state.queue.drop_qos0()
            };
            (state.generation, dropped, released)
        };
        crate::session::congestion::wake_all(released);
        Metrics::add(&self.metrics.messages_dropped, dropped_qos0 as u64);
        self.plugins.notify(if expiry_interval == 0 {
            Event::Gone(session.id().clone())
        } else {
            Event::Offline(session.id().clone())
        });

        if expiry_interval == 0 {
            if let Some(will) = will {
                self.publish_will(session, &will);
            }
            self.end(session);
            return;
        }
        let now = Instant::now();
        let now_ms = crate::store::now_ms();
        session.lock().disconnected_at = now_ms;
        if let Some(will) = will {
            if will.delay_interval == 0 {
                self.publish_will(session, &will);
            } else {
                let delay = will.delay_interval.min(expiry_interval);
                session.lock().pending_will = Some(PendingWill {
                    will: Box::new(will),
                    generation,
                    due: now_ms.saturating_add(u64::from(delay) * 1000),
                });
                self.schedule(session, generation, TimerKind::Will, now + secs(delay));
            }
        }
        if let Some(p) = session.persisted() {
            p.put_session(&Self::offline_record(&session.lock()));
        }
        if let Some(cluster) = self.router.cluster() {
            // The card now has the waiting Will (or none), not the
            // connection's.
            cluster.set_will(session.id(), None);
            cluster.note(session.id());
        }
        if expiry_interval != u32::MAX {
            self.schedule(
                session,
                generation,
                TimerKind::Expiry,
                now + secs(expiry_interval),
            );
        }
    }

    /// Schedules a timer of `session` and records it in the session, so a
    /// reconnect or the session's end cancels it.
    fn schedule(&self, session: &Arc<Session>, generation: u64, kind: TimerKind, at: Instant) {
        let timer = Timer {
            session: session.clone(),
            generation,
            kind,
        };
        let key = self.timers.schedule(at, timer);
        let mut state = session.lock();
        if state.generation == generation && !state.ended {
            state.timers.push(key);
        } else {
            // Attached again (or ended) meanwhile: the timer is stale.
            drop(state);
            self.timers.cancel(&[key]);
        }
    }

    /// A timer fell due.
    fn fire(&self, timer: Timer) {
        let Timer {
            session,
            generation,
            kind,
        } = timer;
        match kind {
            TimerKind::Will => {
                let will = {
                    let mut state = session.lock();
                    match &state.pending_will {
                        Some(p) if p.generation == generation => state.pending_will.take(),
                        _ => None,
                    }
                };
                if let Some(will) = will {
                    if let Some(p) = session.persisted() {
                        p.put_session(&Self::offline_record(&session.lock()));
                    }
                    if let Some(cluster) = self.router.cluster() {
                        cluster.note(session.id());
                    }
                    self.publish_will(&session, &will.will);
                }
            }
            TimerKind::Expiry => {
                let expired = {
                    let state = session.lock();
                    state.generation == generation && !state.connected && !state.ended
                };
                if expired {
                    tracing::debug!(session = %session.id(), "session expired");
                    self.end(&session);
                    self.plugins.notify(Event::Expired(session.id().clone()));
                }
            }
        }
    }

    /// Runs the sessions' timers, and purges expired retained messages
    /// every second; never returns (the server aborts it at shutdown).
    pub async fn run_timers(&self) {
        self.timers
            .run(
                Duration::from_secs(1),
                |timer| self.fire(timer),
                || {
                    self.router.purge_expired_retained();
                },
            )
            .await;
    }

    /// Number of scheduled session timers (expiry, delayed Will).
    pub fn timer_count(&self) -> usize {
        self.timers.len()
    }

    fn publish_will(&self, session: &Session, will: &Will) {
        let message = will.publication();
        tracing::debug!(session = %session.id(), topic = %message.topic, "publishing will");
        let mountpoint = will.mountpoint.as_ref().unwrap_or(&session.id().mountpoint);
        if message.retain {
            if let Err(limit) = self.router.retain(mountpoint, &message) {
                self.metrics
                    .limits
                    .hit(limit, session.id(), &"Will not retained");
            }
        }
        self.router
            .publish_everywhere(mountpoint, Some(session.key()), &message);
    }

    /// Ends a session: removes its subscriptions, publishes a pending Will,
    /// and hands its undelivered shared-subscription messages to other
    /// members of their groups.
    pub fn end(&self, session: &Arc<Session>) {
        let (subscriptions, queued, inflight, will) = {
            let mut state = session.lock();
            if state.ended {
                return;
            }
            state.ended = true;
            self.timers.cancel(&std::mem::take(&mut state.timers));
            let subscriptions: Vec<_> = state.subscriptions.drain().map(|(s, _)| s).collect();
            let queued: Vec<_> = state.queue.drain().collect();
            let inflight: Vec<_> = state
                .inflight
                .as_mut()
                .map(|f| f.drain_outgoing().map(|e| e.delivery).collect())
                .unwrap_or_default();
            (subscriptions, queued, inflight, state.pending_will.take())
        };
        self.forget(session);
        if let Some(p) = session.persisted() {
            p.end();
            for d in queued.iter().chain(&inflight) {
                p.forget(d);
            }
        }
        for s in &subscriptions {
            self.router.unsubscribe(session, s);
        }
        if !subscriptions.is_empty() {
            self.plugins.notify(Event::TopicUnsubscribed {
                id: session.id().clone(),
                topics: None,
            });
        }
        if let Some(will) = will {
            self.publish_will(session, &will.will);
        }
        for mut d in queued.into_iter().chain(inflight) {
            d.stored = None;
            if let Some(origin) = d.shared.clone() {
                self.router.reroute_shared(&origin, d, session.key());
            }
        }
    }

    /// Removes `session` from the map if it is still the one registered
    /// (and in a cluster lets go of its client id).
    fn forget(&self, session: &Arc<Session>) {
        let mut map = self.map();
        if map
            .get(session.id())
            .is_some_and(|e| Arc::ptr_eq(&e.0, session))
        {
            map.remove(session.id());
            drop(map);
            if let Some(cluster) = self.router.cluster() {
                cluster.release_id(session.id());
            }
        }
    }

    /// A connection task ended without handing its session back (it
    /// panicked): if the session is still that connection's (`generation`),
    /// it is detached as if the connection was lost, without its QoS
    /// state, and released, so its client can connect again.
    pub fn abandon(&self, session: &Arc<Session>, generation: u64, expiry_interval: u32) {
        {
            let state = session.lock();
            if !state.connected || state.generation != generation {
                return;
            }
        }
        tracing::error!(session = %session.id(), "a connection task failed; its session is released");
        self.detach(
            session,
            Departure {
                inflight: Inflight::default(),
                will: None,
                expiry_interval,
            },
        );
        self.release(session);
    }

    /// A connection let go of `session`: a connection waiting to take it
    /// over may now.
    pub fn release(&self, session: &Session) {
        let _ = session;
        self.released.notify_waiters();
    }

    /// Asks every connected session's connection to close (shutdown).
    pub fn kick_all(&self, kick: Kick) {
        let sessions: Vec<Arc<Session>> = self.map().iter().map(|e| e.0.clone()).collect();
        for s in sessions.iter().filter(|s| s.is_online()) {
            s.kick(kick);
        }
    }

    /// A fresh key for something that is not a session but publishes
    /// (`$SYS`), so No Local never matches it.
    pub fn next_key(&self) -> ClientKey {
        self.next_key.fetch_add(1, Ordering::Relaxed)
    }
}

/// `n` seconds.
fn secs(n: u32) -> Duration {
    Duration::from_secs(u64::from(n))
}
