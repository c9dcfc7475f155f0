//! Slowing a client down: a token bucket for its PUBLISH rate (a
//! plugin's `max-message-rate`), and the back-off of a client whose
//! requests keep using up a plugin's limits. Either way the connection
//! stops reading from its socket for a while.

use std::num::NonZeroU32;
use std::time::Duration;

use tokio::time::Instant;

use super::Connection;

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

/// Reading pauses this long after a plugin call the client's request made
/// overrun its limits, doubling with each further one in a row.
const OVERRUN_PAUSE: Duration = Duration::from_millis(100);
/// The longest such pause.
const OVERRUN_PAUSE_MAX: Duration = Duration::from_secs(6);

/// The pause after `n` overruns in a row (n ≥ 1).
fn overrun_pause(n: u8) -> Duration {
    let doublings = u32::from(n.saturating_sub(1)).min(6);
    (OVERRUN_PAUSE * (1 << doublings)).min(OVERRUN_PAUSE_MAX)
}

impl Connection {
    /// After a plugin call for this client: `overrun` when the call used up
    /// a limit its request drove (deadline, fuel, memory, no free
    /// instance). A client that keeps doing that is read from less and
    /// less often, so that it cannot hold the plugin's instances and
    /// workers from everyone else; the plugin itself stays in service.
    pub(super) fn plugin_overrun(&mut self, overrun: bool) {
        if !overrun {
            self.overruns = 0;
            return;
        }
        self.overruns = self.overruns.saturating_add(1);
        let pause = overrun_pause(self.overruns);
        if self.overruns == 1 {
            tracing::warn!(
                client = %self.session.id(),
                "a plugin call for this client ran out of time, fuel, memory or instances; \
                 reading from it pauses for {pause:?}, and longer while this goes on"
            );
        }
        self.pause_reading(pause);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrun_pauses_double_up_to_a_bound() {
        assert_eq!(overrun_pause(1), Duration::from_millis(100));
        assert_eq!(overrun_pause(2), Duration::from_millis(200));
        assert_eq!(overrun_pause(6), Duration::from_millis(3200));
        assert_eq!(overrun_pause(7), OVERRUN_PAUSE_MAX);
        assert_eq!(overrun_pause(u8::MAX), OVERRUN_PAUSE_MAX);
    }

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
