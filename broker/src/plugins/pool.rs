//! A bounded pool of reusable items (a plugin's instances): up to `max`
//! are kept, idle ones are reused most-recently-returned first, and a
//! caller that finds none idle and the pool full waits for one to be
//! returned or discarded. A caller that has waited [`PATIENCE`] may create
//! one more, up to [`burst`]`(max)` in all: calls stuck in their instances
//! (a plugin spinning to its deadline for some clients) do not make every
//! other caller wait for the deadline too. Items over `max` are dropped
//! when returned, so the burst does not stay.

use std::pin::pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;
use tokio::time::Instant;

/// What a checkout got.
#[derive(Debug)]
pub enum Checkout<T> {
    /// An idle item.
    Idle(T),
    /// Room for a new item: create it, then `put_back` (or `discard` if
    /// creation failed).
    Create,
}

/// How long a caller waits for a kept item before it may create one in a
/// burst.
pub const PATIENCE: std::time::Duration = std::time::Duration::from_millis(5);

/// How many items may exist in a burst, for a pool keeping `max`: twice as
/// many, and at least four more (a few stuck calls must not take a small
/// pool's whole burst).
pub fn burst(max: usize) -> usize {
    (max * 2).max(max + 4)
}

/// The pool.
#[derive(Debug)]
pub struct Pool<T> {
    idle: Mutex<Vec<T>>,
    /// Items in existence: idle, in use, or being created.
    live: AtomicUsize,
    max: usize,
    freed: Notify,
}

impl<T> Pool<T> {
    /// An empty pool of at most `max` (at least 1) items.
    pub fn new(max: usize) -> Self {
        Pool {
            idle: Mutex::new(Vec::new()),
            live: AtomicUsize::new(0),
            max: max.max(1),
            freed: Notify::new(),
        }
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<T>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Room for one more item, up to `limit` in all.
    fn reserve_within(&self, limit: usize) -> bool {
        self.live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .is_ok()
    }

    fn reserve(&self) -> bool {
        self.reserve_within(self.max)
    }

    /// An idle item or room for a new one, waiting until `ends` at most
    /// (after [`PATIENCE`], room in the burst will do).
    pub async fn checkout(&self, ends: Instant) -> Option<Checkout<T>> {
        if let Some(item) = self.idle().pop() {
            return Some(Checkout::Idle(item));
        }
        let burst_from = Instant::now() + PATIENCE;
        loop {
            let mut freed = pin!(self.freed.notified());
            // Registered before looking, so a return in between wakes us.
            freed.as_mut().enable();
            if let Some(item) = self.idle().pop() {
                return Some(Checkout::Idle(item));
            }
            let limit = if Instant::now() >= burst_from {
                burst(self.max)
            } else {
                self.max
            };
            if self.reserve_within(limit) {
                return Some(Checkout::Create);
            }
            let wake = if limit == self.max {
                burst_from.min(ends)
            } else {
                ends
            };
            if tokio::time::timeout_at(wake, freed).await.is_err() && Instant::now() >= ends {
                return None;
            }
        }
    }

    /// Adds an item that was just created, without checking it out (the
    /// first instance of a plugin, made at load).
    pub fn seed(&self, item: T) -> bool {
        if !self.reserve() {
            return false;
        }
        self.put_back(item);
        true
    }

    /// Returns an item for reuse (or drops it, if a burst has more than
    /// `max` in existence).
    pub fn put_back(&self, item: T) {
        let over = self
            .live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n > self.max).then(|| n - 1)
            })
            .is_ok();
        if over {
            drop(item);
        } else {
            self.idle().push(item);
        }
        self.freed.notify_one();
    }

    /// An item in use (or being created) is gone for good.
    pub fn discard(&self) {
        self.live.fetch_sub(1, Ordering::AcqRel);
        self.freed.notify_one();
    }

    /// Items in existence.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[tokio::test]
    async fn reuses_then_creates_up_to_max() {
        let pool = Pool::new(2);
        assert!(matches!(
            pool.checkout(soon()).await,
            Some(Checkout::Create)
        ));
        pool.put_back(1);
        assert!(matches!(
            pool.checkout(soon()).await,
            Some(Checkout::Idle(1))
        ));
        assert!(matches!(
            pool.checkout(soon()).await,
            Some(Checkout::Create)
        ));
        assert_eq!(pool.live(), 2);
        // Full and nothing idle: a caller with less time than the patience
        // waits, and times out.
        let t = Instant::now() + PATIENCE / 2;
        assert!(pool.checkout(t).await.is_none());
        assert_eq!(pool.live(), 2);
    }

    #[tokio::test]
    async fn a_waiter_gets_a_returned_or_discarded_slot() {
        let pool = Arc::new(Pool::new(1));
        assert!(matches!(
            pool.checkout(soon()).await,
            Some(Checkout::Create)
        ));
        let waiter = tokio::spawn({
            let pool = pool.clone();
            async move { pool.checkout(soon()).await }
        });
        tokio::task::yield_now().await;
        pool.put_back(7);
        assert!(matches!(waiter.await.unwrap(), Some(Checkout::Idle(7))));

        let waiter = tokio::spawn({
            let pool = pool.clone();
            async move { pool.checkout(soon()).await }
        });
        tokio::task::yield_now().await;
        pool.discard();
        assert!(matches!(waiter.await.unwrap(), Some(Checkout::Create)));
        assert_eq!(pool.live(), 1);
    }

    #[test]
    fn seeding_counts_against_the_maximum() {
        let pool = Pool::new(1);
        assert!(pool.seed(1));
        assert!(!pool.seed(2));
        assert_eq!(pool.live(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_caller_that_waited_may_burst() {
        assert_eq!((burst(1), burst(2), burst(8)), (5, 6, 16));
        let pool = Pool::new(1);
        assert!(matches!(
            pool.checkout(soon()).await,
            Some(Checkout::Create)
        ));
        // The only kept item is busy: after the patience, room in the burst.
        let started = Instant::now();
        assert!(matches!(
            pool.checkout(soon()).await,
            Some(Checkout::Create)
        ));
        assert!(Instant::now() - started >= PATIENCE);
        for _ in 2..burst(1) {
            assert!(matches!(
                pool.checkout(soon()).await,
                Some(Checkout::Create)
            ));
        }
        assert_eq!(pool.live(), burst(1));
        // The whole burst busy: a caller waits to its deadline.
        let t = Instant::now() + Duration::from_millis(50);
        assert!(pool.checkout(t).await.is_none());
        // Items over `max` are dropped when returned; the kept one is reused.
        for item in 1..=burst(1) {
            pool.put_back(item);
        }
        assert_eq!(pool.live(), 1);
        assert!(matches!(
            pool.checkout(soon()).await,
            Some(Checkout::Idle(5))
        ));
    }
}
