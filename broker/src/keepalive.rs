//! Keep alive and connection lifetime, enforced by one sweeper task for the
//! whole broker instead of a timer per connection.
//!
//! A connection records when it last heard from its client in its session's
//! [`Liveness`] (one atomic store per batch of packets) and registers with
//! the [`Sweeper`] once. The sweeper keeps entries in buckets by the time
//! they are next due; when a bucket comes due it looks at each entry's
//! real deadline (1.5 × the keep alive after the last packet, or the end
//! of the connection's lifetime): expired ones are kicked through their
//! session, the others go back into the bucket of their deadline. So an
//! idle connection costs one entry, and a busy one is looked at once per
//! keep-alive period however many packets it sends.
//!
//! Timeouts fire within one [`TICK`] after they are due, never before.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::time::Instant;

use crate::session::{Kick, Session};

/// How often the sweeper looks for expired connections.
pub const TICK: Duration = Duration::from_millis(250);
const TICK_MS: u64 = TICK.as_millis() as u64;

/// No lifetime limit.
const NO_END: u64 = u64::MAX;

/// What the sweeper needs to know about a connection, kept in its session
/// (all times in milliseconds since the sweeper's start).
#[derive(Debug)]
pub struct Liveness {
    /// When a packet last arrived.
    last_seen: AtomicU64,
    /// 1.5 × the keep alive; 0 when keep alive is off.
    grace: AtomicU32,
    /// When the connection must end (a plugin's lifetime), or [`NO_END`].
    end: AtomicU64,
}

impl Default for Liveness {
    fn default() -> Self {
        Liveness {
            last_seen: AtomicU64::new(0),
            grace: AtomicU32::new(0),
            end: AtomicU64::new(NO_END),
        }
    }
}

impl Liveness {
    /// Records that a packet arrived at `now` (see [`Sweeper::now`]).
    pub fn touch(&self, now: u64) {
        self.last_seen.store(now, Ordering::Relaxed);
    }

    /// The time at which the connection is next due a look, if ever.
    fn next_due(&self) -> Option<u64> {
        let end = self.end.load(Ordering::Relaxed);
        let grace = u64::from(self.grace.load(Ordering::Relaxed));
        let idle_until = if grace == 0 {
            NO_END
        } else {
            self.last_seen.load(Ordering::Relaxed) + grace
        };
        let due = end.min(idle_until);
        (due != NO_END).then_some(due)
    }

    /// Why the connection must close at `now`, if it must.
    fn expired(&self, now: u64) -> Option<Kick> {
        if now >= self.end.load(Ordering::Relaxed) {
            return Some(Kick::Lifetime);
        }
        let grace = u64::from(self.grace.load(Ordering::Relaxed));
        (grace != 0 && now >= self.last_seen.load(Ordering::Relaxed) + grace)
            .then_some(Kick::KeepAlive)
    }
}

/// A connection the sweeper watches: its session, and the session's
/// generation when it attached (a newer connection has its own entry).
#[derive(Debug)]
struct Watched {
    session: Weak<Session>,
    generation: u64,
}

/// The broker's keep-alive and lifetime sweeper.
#[derive(Debug)]
pub struct Sweeper {
    start: Instant,
    /// Entries by the tick at which they are next due.
    due: Mutex<BTreeMap<u64, Vec<Watched>>>,
}

impl Default for Sweeper {
    fn default() -> Self {
        Sweeper {
            start: Instant::now(),
            due: Mutex::new(BTreeMap::new()),
        }
    }
}

impl Sweeper {
    /// Milliseconds since the sweeper started: the clock of [`Liveness`].
    pub fn now(&self) -> u64 {
        self.at(Instant::now())
    }

    fn at(&self, instant: Instant) -> u64 {
        u64::try_from(instant.saturating_duration_since(self.start).as_millis()).unwrap_or(NO_END)
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<u64, Vec<Watched>>> {
        // The map stays consistent whatever panicked while holding it.
        self.due.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts watching the connection that holds `session` in `generation`:
    /// a `keep_alive` of zero is off, `lifetime_end` is when it must end.
    pub fn watch(
        &self,
        session: &Arc<Session>,
        generation: u64,
        keep_alive: Duration,
        lifetime_end: Option<Instant>,
    ) {
        let live = &session.liveness;
        live.touch(self.now());
        let grace = keep_alive.as_millis() * 3 / 2;
        live.grace
            .store(u32::try_from(grace).unwrap_or(u32::MAX), Ordering::Relaxed);
        live.end.store(
            lifetime_end.map_or(NO_END, |end| self.at(end)),
            Ordering::Relaxed,
        );
        if let Some(due) = live.next_due() {
            self.schedule(
                due,
                Watched {
                    session: Arc::downgrade(session),
                    generation,
                },
            );
        }
    }

    fn schedule(&self, due: u64, watched: Watched) {
        self.lock()
            .entry(due.div_ceil(TICK_MS))
            .or_default()
            .push(watched);
    }

    /// Kicks the connections whose time ran out by `now`, and reschedules
    /// the others that were due. Returns how many were kicked.
    pub fn sweep(&self, now: u64) -> usize {
        let due = {
            let mut map = self.lock();
            let later = map.split_off(&(now / TICK_MS + 1));
            std::mem::replace(&mut *map, later)
        };
        let mut kicked = 0;
        for watched in due.into_values().flatten() {
            let Some(session) = watched.session.upgrade() else {
                continue;
            };
            let next = {
                let mut state = session.lock();
                if !state.connected || state.generation != watched.generation {
                    // That connection is gone.
                    continue;
                }
                match session.liveness.expired(now) {
                    Some(kick) => {
                        state.kicked = Some(kick);
                        None
                    }
                    None => session.liveness.next_due(),
                }
            };
            match next {
                Some(due) => self.schedule(due, watched),
                None => {
                    session.wake();
                    kicked += 1;
                }
            }
        }
        kicked
    }

    /// Sweeps every [`TICK`], forever (the server aborts it on shutdown).
    pub async fn run(self: Arc<Self>) {
        let mut ticks = tokio::time::interval(TICK);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let kicked = self.sweep(self.now());
            if kicked > 0 {
                tracing::debug!("keep alive: {kicked} connections timed out");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::SubscriberId;
    use crate::topic::ClientId;

    fn online_session(generation: u64) -> Arc<Session> {
        let id = SubscriberId {
            mountpoint: crate::session::default_mountpoint(),
            client_id: ClientId::new("c").unwrap(),
        };
        let limits = crate::session::QueueLimits::from_config(&crate::Config::default().session);
        let session = Arc::new(Session::new(1, id, Arc::new(limits)));
        {
            let mut state = session.lock();
            state.connected = true;
            state.generation = generation;
        }
        session
    }

    fn kicked(session: &Session) -> Option<Kick> {
        session.lock().kicked
    }

    #[test]
    fn idle_connection_is_kicked_after_one_and_a_half_keep_alives() {
        let sweeper = Sweeper::default();
        let session = online_session(1);
        sweeper.watch(&session, 1, Duration::from_secs(10), None);
        session.liveness.touch(0);
        assert_eq!(sweeper.sweep(14_999), 0);
        assert_eq!(kicked(&session), None);
        assert_eq!(sweeper.sweep(15_000), 1);
        assert_eq!(kicked(&session), Some(Kick::KeepAlive));
        // Kicked once: the entry is gone.
        assert_eq!(sweeper.sweep(100_000), 0);
    }

    #[test]
    fn traffic_pushes_the_deadline_back() {
        let sweeper = Sweeper::default();
        let session = online_session(1);
        sweeper.watch(&session, 1, Duration::from_secs(10), None);
        session.liveness.touch(9_000);
        assert_eq!(sweeper.sweep(15_000), 0);
        assert_eq!(sweeper.sweep(23_999), 0);
        assert_eq!(sweeper.sweep(24_000), 1);
        assert_eq!(kicked(&session), Some(Kick::KeepAlive));
    }

    #[test]
    fn lifetime_ends_even_a_busy_connection() {
        let sweeper = Sweeper::default();
        let session = online_session(1);
        let end = sweeper.start + Duration::from_secs(5);
        sweeper.watch(&session, 1, Duration::from_secs(60), Some(end));
        session.liveness.touch(4_900);
        assert_eq!(sweeper.sweep(4_999), 0);
        assert_eq!(sweeper.sweep(5_000), 1);
        assert_eq!(kicked(&session), Some(Kick::Lifetime));
    }

    #[test]
    fn keep_alive_zero_is_never_watched() {
        let sweeper = Sweeper::default();
        let session = online_session(1);
        sweeper.watch(&session, 1, Duration::ZERO, None);
        assert!(sweeper.lock().is_empty());
    }

    #[test]
    fn a_newer_connection_is_not_kicked_for_an_older_one() {
        let sweeper = Sweeper::default();
        let session = online_session(1);
        sweeper.watch(&session, 1, Duration::from_secs(1), None);
        // Taken over by a connection without keep alive.
        session.lock().generation = 2;
        sweeper.watch(&session, 2, Duration::ZERO, None);
        assert_eq!(sweeper.sweep(60_000), 0);
        assert_eq!(kicked(&session), None);
        assert!(sweeper.lock().is_empty());
    }

    #[test]
    fn ended_sessions_are_forgotten() {
        let sweeper = Sweeper::default();
        let session = online_session(1);
        sweeper.watch(&session, 1, Duration::from_secs(1), None);
        drop(session);
        assert_eq!(sweeper.sweep(60_000), 0);
        assert!(sweeper.lock().is_empty());
    }
}
