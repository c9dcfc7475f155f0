//! Per-listener admission limits, checked by the accept loop without
//! waiting: the number of connections open at once (a counter, released by
//! each connection task's [`Slot`] when it ends) and the rate of new
//! connections (a token bucket computed from timestamps).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::Listener;

/// What a connection task holds until it ends: its place among the
/// listener's open connections, and the server's wait for every connection
/// to finish (the server's shutdown waits until every clone of the sender
/// is dropped).
#[derive(Debug)]
pub(crate) struct Slot {
    listener: Arc<Listener>,
    _alive: mpsc::Sender<()>,
}

impl Slot {
    /// Takes a place among `listener`'s open connections, if its
    /// `max_connections` leaves one.
    pub(crate) fn take(listener: &Arc<Listener>, alive: &mpsc::Sender<()>) -> Option<Slot> {
        let max = listener.max_connections;
        let before = listener.open.fetch_add(1, Ordering::Relaxed);
        if max != 0 && before >= max {
            listener.open.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(Slot {
            listener: listener.clone(),
            _alive: alive.clone(),
        })
    }

    /// The listener the connection came through.
    pub(crate) fn listener(&self) -> &Arc<Listener> {
        &self.listener
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.listener.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A token bucket: `rate` tokens a second, refilled continuously, holding
/// at most one second's worth. Owned by one accept loop; never sleeps.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    /// Tokens per second; 0 = no limit.
    rate: u32,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket of `rate` tokens a second (0 = unlimited).
    pub(crate) fn new(rate: u32, now: Instant) -> Self {
        TokenBucket {
            rate,
            tokens: f64::from(rate),
            last: now,
        }
    }

    /// Takes a token if one is there at `now`.
    pub(crate) fn try_take(&mut self, now: Instant) -> bool {
        if self.rate == 0 {
            return true;
        }
        let rate = f64::from(self.rate);
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now.max(self.last);
        self.tokens = (self.tokens + elapsed * rate).min(rate);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Limits how often a recurring warning is logged: at most once per
/// `every`, with the number of occurrences since the last one.
#[derive(Debug)]
pub(crate) struct WarnEvery {
    every: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl WarnEvery {
    pub(crate) fn new(every: Duration) -> Self {
        WarnEvery {
            every,
            last: None,
            suppressed: 0,
        }
    }

    /// Counts an occurrence; `Some(n)` when it should be logged now, `n`
    /// being the occurrences since the last log (this one included).
    pub(crate) fn hit(&mut self, now: Instant) -> Option<u64> {
        self.suppressed += 1;
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.every => None,
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_a_burst_of_one_seconds_worth_then_refills() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(5, t0);
        for _ in 0..5 {
            assert!(b.try_take(t0));
        }
        assert!(!b.try_take(t0), "the burst is one second's worth");
        // 200 ms is one token at 5/s.
        assert!(!b.try_take(t0 + Duration::from_millis(150)));
        assert!(b.try_take(t0 + Duration::from_millis(210)));
        assert!(!b.try_take(t0 + Duration::from_millis(220)));
        // A long pause refills to the capacity, no more.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..5 {
            assert!(b.try_take(later));
        }
        assert!(!b.try_take(later));
    }

    #[test]
    fn zero_rate_is_unlimited() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(0, t0);
        assert!((0..10_000).all(|_| b.try_take(t0)));
    }

    #[test]
    fn warnings_are_rate_limited_and_counted() {
        let t0 = Instant::now();
        let mut w = WarnEvery::new(Duration::from_secs(10));
        assert_eq!(w.hit(t0), Some(1));
        assert_eq!(w.hit(t0 + Duration::from_secs(1)), None);
        assert_eq!(w.hit(t0 + Duration::from_secs(2)), None);
        assert_eq!(w.hit(t0 + Duration::from_secs(11)), Some(3));
    }
}
