//! The queue of messages leaving for NATS as a backlog publishers are
//! held for (`[session] overload = "backpressure"`): past half of its
//! capacity the link is congested, and a client whose PUBLISH is
//! forwarded then is no longer read until the queue is back at a quarter,
//! for at most `overload_wait_ms` per episode. After that wait (NATS gone,
//! or slower than the publishers for that long) nobody is held again
//! until the queue drains, and what does not fit is dropped and counted,
//! as with `overload = "drop"`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Waker;

use tokio::time::Instant;

use crate::router::Backlog;
use crate::session::Backpressure;

/// The link's congestion state.
#[derive(Debug)]
pub(crate) struct Link {
    /// The queue's capacity.
    capacity: usize,
    backpressure: Option<Backpressure>,
    /// Whether an episode runs (read without the lock on every take).
    congested: AtomicBool,
    episode: Mutex<Episode>,
}

#[derive(Debug, Default)]
struct Episode {
    /// When the running episode began.
    since: Option<Instant>,
    /// Publishers' tasks waiting for it to end.
    waiters: Vec<Waker>,
}

impl Link {
    /// A link whose queue holds `capacity` messages; `backpressure`: how
    /// long publishers wait (`None`: never).
    pub(crate) fn new(capacity: usize, backpressure: Option<Backpressure>) -> Self {
        Link {
            capacity,
            backpressure,
            congested: AtomicBool::new(false),
            episode: Mutex::new(Episode::default()),
        }
    }

    /// After a message was queued, with `len` now queued: until when its
    /// publisher is to wait, if the link is congested and the episode's
    /// wait has not run out.
    pub(crate) fn after_push(&self, len: usize) -> Option<Instant> {
        let b = self.backpressure?;
        if len <= self.capacity / 2 {
            return None;
        }
        let mut e = self.lock();
        let since = *e.since.get_or_insert_with(Instant::now);
        self.congested.store(true, Ordering::Release);
        let until = since + b.wait;
        (Instant::now() < until).then_some(until)
    }

    /// After a message left the queue, with `len` still queued: ends the
    /// episode once the queue is back at a quarter, waking the publishers
    /// held for it.
    pub(crate) fn after_take(&self, len: usize) {
        if !self.congested.load(Ordering::Acquire) || len > self.capacity / 4 {
            return;
        }
        let waiters = {
            let mut e = self.lock();
            self.congested.store(false, Ordering::Release);
            e.since = None;
            std::mem::take(&mut e.waiters)
        };
        for w in waiters {
            w.wake();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Episode> {
        self.episode.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Backlog for Link {
    fn must_wait(&self, waker: &Waker) -> Option<Instant> {
        let b = self.backpressure?;
        let mut e = self.lock();
        let until = e.since? + b.wait;
        if Instant::now() >= until {
            return None;
        }
        if !e.waiters.iter().any(|w| w.will_wake(waker)) {
            e.waiters.push(waker.clone());
        }
        Some(until)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::task::Wake;
    use std::time::Duration;

    use super::*;

    struct Flag(AtomicBool);
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    fn backpressure(wait_ms: u64) -> Option<Backpressure> {
        Some(Backpressure {
            wait: Duration::from_millis(wait_ms),
            stall: Duration::from_millis(wait_ms),
        })
    }

    #[test]
    fn congested_past_half_until_back_at_a_quarter() {
        let link = Link::new(8, backpressure(60_000));
        assert_eq!(link.after_push(4), None, "half is not congested");
        let until = link.after_push(5).expect("past half");
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let waker = Waker::from(flag.clone());
        assert_eq!(link.must_wait(&waker), Some(until));
        link.after_take(3);
        assert!(!flag.0.load(Ordering::SeqCst), "still above a quarter");
        assert_eq!(link.must_wait(&waker), Some(until));
        link.after_take(2);
        assert!(flag.0.load(Ordering::SeqCst), "the episode's end wakes");
        assert_eq!(link.must_wait(&waker), None);
    }

    #[tokio::test(start_paused = true)]
    async fn nobody_waits_past_the_wait_or_without_backpressure() {
        let link = Link::new(8, backpressure(100));
        assert!(link.after_push(7).is_some());
        tokio::time::advance(Duration::from_millis(100)).await;
        let waker = Waker::noop();
        assert_eq!(link.must_wait(waker), None, "the wait ran out");
        assert_eq!(link.after_push(8), None, "given up until it drains");
        let drop = Link::new(8, None);
        assert_eq!(drop.after_push(8), None);
        assert_eq!(drop.must_wait(waker), None);
    }
}
