//! The circuit breaker that disables a plugin which keeps failing.
//!
//! After `threshold` consecutive faults of the plugin's own (traps,
//! failed instantiations; not the deadlines, fuel or instances a client's
//! requests use up, which clients can cause at will) the plugin is
//! disabled for a back-off period; a call after it is a trial: success
//! closes the breaker, a fault disables the plugin again for twice as long
//! (up to a maximum). Calls that started before the breaker opened do not
//! count as trials. Pure logic: the caller passes the time.

use std::time::Duration;

use tokio::time::Instant;

/// Upper bound of the back-off.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Breaker state for one plugin.
#[derive(Debug)]
pub struct Breaker {
    threshold: u32,
    base_backoff: Duration,
    consecutive_failures: u32,
    backoff: Duration,
    open_until: Option<Instant>,
    /// When the breaker last opened.
    opened_at: Option<Instant>,
}

/// What a failure did to the breaker.
#[derive(Debug, PartialEq, Eq)]
pub enum Tripped {
    /// Still closed.
    No,
    /// Now open for this long.
    For(Duration),
}

impl Breaker {
    /// A closed breaker that opens after `threshold` consecutive failures
    /// (0 = never) for `backoff`, doubling on repeated trips.
    pub fn new(threshold: u32, backoff: Duration) -> Self {
        Breaker {
            threshold,
            base_backoff: backoff,
            consecutive_failures: 0,
            backoff,
            open_until: None,
            opened_at: None,
        }
    }

    /// Whether calls are allowed at `now` (read only when the breaker has
    /// been open). Once the back-off has passed, calls are allowed again
    /// (the next result decides).
    pub fn allows(&self, now: impl FnOnce() -> Instant) -> bool {
        self.open_until.is_none_or(|until| now() >= until)
    }

    /// Whether anything has failed since the last success.
    pub fn is_clean(&self) -> bool {
        self.consecutive_failures == 0
    }

    /// A call succeeded.
    pub fn success(&mut self) {
        self.consecutive_failures = 0;
        self.backoff = self.base_backoff;
        self.open_until = None;
        self.opened_at = None;
    }

    /// A call that started at `started` failed at `now`. A call that was
    /// already running when the breaker opened tells nothing new.
    pub fn failure(&mut self, started: Instant, now: Instant) -> Tripped {
        if self.opened_at.is_some_and(|at| started < at) {
            return Tripped::No;
        }
        self.consecutive_failures += 1;
        let trial_failed = self.open_until.is_some();
        if self.threshold == 0 || (!trial_failed && self.consecutive_failures < self.threshold) {
            return Tripped::No;
        }
        if trial_failed {
            self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        }
        self.open_until = Some(now + self.backoff);
        self.opened_at = Some(now);
        Tripped::For(self.backoff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_and_backs_off() {
        let t0 = Instant::now();
        let mut b = Breaker::new(3, Duration::from_secs(10));
        assert_eq!(b.failure(t0, t0), Tripped::No);
        assert_eq!(b.failure(t0, t0), Tripped::No);
        assert!(b.allows(|| t0));
        assert_eq!(b.failure(t0, t0), Tripped::For(Duration::from_secs(10)));
        assert!(!b.allows(|| t0 + Duration::from_secs(9)));
        let t1 = t0 + Duration::from_secs(10);
        assert!(b.allows(|| t1), "a trial call after the back-off");
        assert_eq!(b.failure(t1, t1), Tripped::For(Duration::from_secs(20)));
        assert!(!b.allows(|| t1 + Duration::from_secs(19)));
        let t2 = t1 + Duration::from_secs(20);
        b.success();
        assert!(b.allows(|| t2));
        assert_eq!(b.failure(t2, t2), Tripped::No, "counting starts again");
    }

    #[test]
    fn success_resets_the_count() {
        let t = Instant::now();
        let mut b = Breaker::new(2, Duration::from_secs(1));
        b.failure(t, t);
        b.success();
        assert_eq!(b.failure(t, t), Tripped::No);
    }

    #[test]
    fn backoff_is_capped_and_zero_threshold_never_opens() {
        let mut t = Instant::now();
        let mut b = Breaker::new(1, Duration::from_secs(200));
        b.failure(t, t);
        t += Duration::from_secs(200);
        assert_eq!(b.failure(t, t), Tripped::For(MAX_BACKOFF));
        let mut never = Breaker::new(0, Duration::from_secs(1));
        for _ in 0..100 {
            assert_eq!(never.failure(t, t), Tripped::No);
        }
        assert!(never.allows(|| t));
    }

    #[test]
    fn calls_in_flight_when_it_opens_do_not_extend_it() {
        let t0 = Instant::now();
        let mut b = Breaker::new(1, Duration::from_secs(10));
        let t1 = t0 + Duration::from_millis(5);
        assert_eq!(b.failure(t0, t1), Tripped::For(Duration::from_secs(10)));
        // Another call that started before it opened fails a moment later.
        let t2 = t1 + Duration::from_millis(4);
        assert_eq!(b.failure(t0, t2), Tripped::No);
        assert!(!b.allows(|| t1 + Duration::from_secs(9)));
        // A real trial after the back-off still doubles it.
        let t3 = t1 + Duration::from_secs(10);
        assert_eq!(b.failure(t3, t3), Tripped::For(Duration::from_secs(20)));
    }
}
