//! A token bucket for a client's PUBLISH rate (a plugin's
//! `max-message-rate`): when the client goes over, the connection stops
//! reading from its socket until the rate allows again.

use std::num::NonZeroU32;
use std::time::Duration;

use tokio::time::Instant;

/// Messages per second, with a burst of one second's worth.
#[derive(Debug)]
pub struct RateLimit {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimit {
    /// A full bucket for `per_second` messages.
    pub fn new(per_second: NonZeroU32) -> Self {
        let rate = f64::from(per_second.get());
        RateLimit {
            rate,
            tokens: rate,
            last: Instant::now(),
        }
    }

    /// Counts one message at `now`; returns how long to pause reading if the
    /// bucket is now empty.
    pub fn take(&mut self, now: Instant) -> Option<Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate) - 1.0;
        (self.tokens < 0.0).then(|| Duration::from_secs_f64(-self.tokens / self.rate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_paces() {
        let t = Instant::now();
        let mut r = RateLimit::new(NonZeroU32::new(4).unwrap());
        r.last = t;
        for _ in 0..4 {
            assert_eq!(r.take(t), None, "a second's worth passes at once");
        }
        let wait = r.take(t).expect("over the rate");
        assert!((wait.as_secs_f64() - 0.25).abs() < 1e-9, "{wait:?}");
        // After the pause the bucket is back at zero: one more each 250 ms.
        let t = t + wait;
        assert!(r.take(t).is_some());
        let t = t + Duration::from_secs(10);
        assert_eq!(r.take(t), None, "refills up to the burst only");
    }
}
