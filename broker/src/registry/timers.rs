//! Timers of offline sessions — session expiry and delayed Wills — for
//! every session in one ordered map and one task, instead of a sleeping
//! task per disconnect. A session keeps the keys of its timers, and a
//! reconnect or the end of the session cancels them, so a client that
//! connects and disconnects in a loop leaves nothing behind.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::session::{Session, TimerKey};

/// What happens when a timer is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TimerKind {
    /// Publish the session's pending Will.
    Will,
    /// End the session, if it is still offline.
    Expiry,
}

/// A scheduled timer.
#[derive(Debug)]
pub(crate) struct Timer {
    pub session: Arc<Session>,
    /// The session generation it was scheduled for: a timer of an older
    /// generation does nothing.
    pub generation: u64,
    pub kind: TimerKind,
}

/// Every session timer, by when it is due.
#[derive(Debug, Default)]
pub(crate) struct Timers {
    due: Mutex<BTreeMap<TimerKey, Timer>>,
    next_seq: AtomicU64,
    /// Tells the task that a timer due earlier than it waits for arrived.
    earlier: Notify,
}

impl Timers {
    fn map(&self) -> MutexGuard<'_, BTreeMap<TimerKey, Timer>> {
        self.due.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Schedules `timer` at `at`; the key cancels it.
    pub(crate) fn schedule(&self, at: Instant, timer: Timer) -> TimerKey {
        let key = (at, self.next_seq.fetch_add(1, Ordering::Relaxed));
        let mut due = self.map();
        due.insert(key, timer);
        if due
            .first_key_value()
            .is_some_and(|(first, _)| *first == key)
        {
            // A permit is kept if the task is not waiting right now.
            self.earlier.notify_one();
        }
        key
    }

    /// Cancels the timers of `keys` (those still scheduled).
    pub(crate) fn cancel(&self, keys: &[TimerKey]) {
        if keys.is_empty() {
            return;
        }
        let mut due = self.map();
        for key in keys {
            due.remove(key);
        }
    }

    /// Number of scheduled timers.
    pub(crate) fn len(&self) -> usize {
        self.map().len()
    }

    /// Takes the timers due at `now`; returns them and when the next one
    /// is due.
    fn take_due(&self, now: Instant) -> (Vec<Timer>, Option<Instant>) {
        let mut due = self.map();
        let mut fired = Vec::new();
        while let Some(entry) = due.first_entry() {
            if entry.key().0 > now {
                break;
            }
            fired.push(entry.remove());
        }
        (fired, due.first_key_value().map(|(k, _)| k.0))
    }

    /// Fires timers as they fall due, forever; waits at most `tick` between
    /// rounds and calls `on_tick` after each (for other periodic work).
    pub(crate) async fn run(
        &self,
        tick: std::time::Duration,
        mut fire: impl FnMut(Timer),
        mut on_tick: impl FnMut(),
    ) {
        loop {
            let now = Instant::now();
            let (fired, next) = self.take_due(now);
            for timer in fired {
                fire(timer);
            }
            on_tick();
            let until = next.map_or(now + tick, |at| at.min(now + tick));
            tokio::select! {
                () = tokio::time::sleep_until(until) => {}
                () = self.earlier.notified() => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::session::{QueueLimits, SubscriberId};
    use crate::topic::ClientId;

    fn session() -> Arc<Session> {
        let limits = QueueLimits::from_config(&crate::config::SessionConfig::default());
        Arc::new(Session::new(
            1,
            SubscriberId {
                mountpoint: Arc::from(""),
                client_id: ClientId::new("c").unwrap(),
            },
            Arc::new(limits),
        ))
    }

    fn timer(generation: u64, kind: TimerKind) -> Timer {
        Timer {
            session: session(),
            generation,
            kind,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn timers_fire_in_order_and_cancelled_ones_never() {
        let timers = Arc::new(Timers::default());
        let now = Instant::now();
        let a = timers.schedule(now + Duration::from_secs(3), timer(3, TimerKind::Expiry));
        timers.schedule(now + Duration::from_secs(1), timer(1, TimerKind::Will));
        timers.schedule(now + Duration::from_secs(2), timer(2, TimerKind::Expiry));
        timers.cancel(&[a]);
        assert_eq!(timers.len(), 2);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let runner = timers.clone();
        let task = tokio::spawn(async move {
            runner
                .run(
                    Duration::from_secs(1),
                    |t| {
                        let _ = tx.send((t.generation, Instant::now()));
                    },
                    || {},
                )
                .await;
        });
        let (first, at) = rx.recv().await.unwrap();
        assert_eq!((first, at - now), (1, Duration::from_secs(1)));
        let (second, at) = rx.recv().await.unwrap();
        assert_eq!((second, at - now), (2, Duration::from_secs(2)));
        // A timer due before the one the task waits for wakes it.
        timers.schedule(
            Instant::now() + Duration::from_millis(10),
            timer(4, TimerKind::Will),
        );
        let (fourth, _) = rx.recv().await.unwrap();
        assert_eq!(fourth, 4);
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(rx.try_recv().is_err(), "the cancelled timer never fires");
        assert_eq!(timers.len(), 0);
        task.abort();
    }
}
