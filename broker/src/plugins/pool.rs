//! A bounded pool of reusable items (a plugin's instances): at most `max`
//! exist at once, idle ones are reused most-recently-returned first, and a
//! caller that finds none idle and the pool full waits for one to be
//! returned or discarded.

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

    fn reserve(&self) -> bool {
        self.live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .is_ok()
    }

    /// An idle item or room for a new one, waiting until `ends` at most.
    pub async fn checkout(&self, ends: Instant) -> Option<Checkout<T>> {
        if let Some(item) = self.idle().pop() {
            return Some(Checkout::Idle(item));
        }
        loop {
            let mut freed = pin!(self.freed.notified());
            // Registered before looking, so a return in between wakes us.
            freed.as_mut().enable();
            if let Some(item) = self.idle().pop() {
                return Some(Checkout::Idle(item));
            }
            if self.reserve() {
                return Some(Checkout::Create);
            }
            if tokio::time::timeout_at(ends, freed).await.is_err() {
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

    /// Returns an item for reuse.
    pub fn put_back(&self, item: T) {
        self.idle().push(item);
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
        // Full and nothing idle: waits, and times out.
        let t = Instant::now() + Duration::from_millis(20);
        assert!(pool.checkout(t).await.is_none());
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
}
