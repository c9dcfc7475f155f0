//! A connected session's congestion: its queue passed the high-water mark
//! (half its limit) and the clients publishing to it wait before sending
//! more (`[session] overload = "backpressure"`; the publisher's side is
//! `crate::connection::backpressure`).
//!
//! An episode starts when a queued delivery takes the queue above half its
//! limit (messages or bytes) and ends when the queue is back at a quarter,
//! or when the session goes offline or ends; its end wakes every waiting
//! publisher. Publishers wait for one episode at most `overload_wait`:
//! past that the session is *slow* and nobody waits for it any more (its
//! queue drops as `overflow` says, for it alone) until the queue has
//! emptied, so one client that stopped reading cannot stall a fan-out for
//! more than that once.

use std::task::Waker;

use tokio::time::Instant;

use super::queue::{MessageQueue, QueueLimits};

/// An episode of congestion.
#[derive(Debug)]
pub struct Congestion {
    since: Instant,
    /// Publishers' tasks waiting for the episode to end.
    waiters: Vec<Waker>,
    /// The episode outlasted the wait: publishers no longer wait.
    slow: bool,
}

/// Whether the queue is above the high-water mark: half of its message or
/// byte limit.
fn above_high_water(queue: &MessageQueue, limits: &QueueLimits) -> bool {
    queue.len() > limits.max_online / 2
        || (limits.max_bytes > 0 && queue.bytes() > limits.max_bytes / 2)
}

/// Whether a congestion episode of `queue` is over: back at a quarter of
/// its limits, or empty if the session turned out slow.
fn drained(queue: &MessageQueue, limits: &QueueLimits, slow: bool) -> bool {
    if slow {
        return queue.is_empty();
    }
    queue.len() <= limits.max_online / 4
        && (limits.max_bytes == 0 || queue.bytes() <= limits.max_bytes / 4)
}

/// What a publisher should do after queueing for a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overload {
    /// Go on.
    None,
    /// Wait, until the episode ends or until this instant.
    WaitUntil(Instant),
    /// Go on: the session just became slow (nobody waits for it now).
    GaveUp,
}

impl Congestion {
    /// After a delivery was queued for a connected session: starts an
    /// episode if the queue passed the high-water mark, marks one slow
    /// that outlasted the wait, and says whether the publisher waits.
    pub(super) fn after_push(
        slot: &mut Option<Box<Congestion>>,
        queue: &MessageQueue,
        limits: &QueueLimits,
    ) -> Overload {
        let Some(wait) = limits.overload_wait else {
            return Overload::None;
        };
        match slot {
            None if above_high_water(queue, limits) => {
                let since = Instant::now();
                *slot = Some(Box::new(Congestion {
                    since,
                    waiters: Vec::new(),
                    slow: false,
                }));
                Overload::WaitUntil(since + wait)
            }
            None => Overload::None,
            Some(c) if c.slow => Overload::None,
            Some(c) => {
                let until = c.since + wait;
                if Instant::now() >= until {
                    c.slow = true;
                    Overload::GaveUp
                } else {
                    Overload::WaitUntil(until)
                }
            }
        }
    }

    /// After deliveries left the queue: ends the episode if the queue
    /// drained, returning the publishers to wake (outside the lock).
    pub(super) fn after_take(
        slot: &mut Option<Box<Congestion>>,
        queue: &MessageQueue,
        limits: &QueueLimits,
    ) -> Option<Vec<Waker>> {
        let c = slot.as_ref()?;
        if !drained(queue, limits, c.slow) {
            return None;
        }
        slot.take().map(|c| c.waiters)
    }

    /// Ends the episode whatever the queue holds (the session went offline
    /// or ended), returning the publishers to wake.
    pub(super) fn end(slot: &mut Option<Box<Congestion>>) -> Option<Vec<Waker>> {
        slot.take().map(|c| c.waiters)
    }

    /// Whether a publisher must still wait; if so, `waker` is woken when
    /// the episode ends.
    pub(super) fn wait(slot: &mut Option<Box<Congestion>>, waker: &Waker) -> bool {
        match slot {
            Some(c) if !c.slow => {
                if !c.waiters.iter().any(|w| w.will_wake(waker)) {
                    c.waiters.push(waker.clone());
                }
                true
            }
            _ => false,
        }
    }
}

/// Wakes publishers an episode's end released.
pub(crate) fn wake_all(waiters: Option<Vec<Waker>>) {
    for w in waiters.into_iter().flatten() {
        w.wake();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::codec::{MessageProperties, QoS};
    use crate::config::OverflowPolicy;
    use crate::message::{Delivery, Message};
    use crate::topic::TopicName;

    fn limits(wait: Option<Duration>) -> QueueLimits {
        QueueLimits {
            max_online: 8,
            max_offline: 8,
            max_bytes: 0,
            qos0_offline: false,
            overflow: OverflowPolicy::DropNewest,
            overload_wait: wait,
        }
    }

    fn push(q: &mut MessageQueue, l: &QueueLimits) {
        let message = Arc::new(Message {
            topic: TopicName::new("t").expect("valid topic"),
            payload: bytes::Bytes::from_static(b"x"),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: MessageProperties::default(),
            expires_at: None,
        });
        let d = Delivery {
            message,
            qos: QoS::AtMostOnce,
            retain: false,
            subscription_ids: Vec::new(),
            shared: None,
            stored: None,
        };
        assert!(q.push(d, true, l).is_empty());
    }

    #[test]
    fn an_episode_starts_above_half_and_ends_at_a_quarter() {
        let l = limits(Some(Duration::from_secs(60)));
        let (mut q, mut slot) = (MessageQueue::default(), None);
        for _ in 0..4 {
            push(&mut q, &l);
            assert_eq!(Congestion::after_push(&mut slot, &q, &l), Overload::None);
        }
        push(&mut q, &l);
        assert!(matches!(
            Congestion::after_push(&mut slot, &q, &l),
            Overload::WaitUntil(_)
        ));
        let waker = futures_util::task::noop_waker();
        assert!(Congestion::wait(&mut slot, &waker));
        assert!(Congestion::wait(&mut slot, &waker), "one waker, kept once");
        q.pop_front();
        q.pop_front();
        assert!(
            Congestion::after_take(&mut slot, &q, &l).is_none(),
            "3 > 8/4"
        );
        q.pop_front();
        let woken = Congestion::after_take(&mut slot, &q, &l).expect("drained");
        assert_eq!(woken.len(), 1);
        assert!(!Congestion::wait(&mut slot, &waker));
    }

    #[test]
    fn drop_policy_never_holds() {
        let l = limits(None);
        let (mut q, mut slot) = (MessageQueue::default(), None);
        for _ in 0..8 {
            push(&mut q, &l);
            assert_eq!(Congestion::after_push(&mut slot, &q, &l), Overload::None);
        }
        assert!(slot.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn past_the_wait_the_session_is_slow_until_empty() {
        let l = limits(Some(Duration::from_millis(100)));
        let (mut q, mut slot) = (MessageQueue::default(), None);
        for _ in 0..5 {
            push(&mut q, &l);
            Congestion::after_push(&mut slot, &q, &l);
        }
        tokio::time::advance(Duration::from_millis(100)).await;
        push(&mut q, &l);
        assert_eq!(Congestion::after_push(&mut slot, &q, &l), Overload::GaveUp);
        push(&mut q, &l);
        assert_eq!(Congestion::after_push(&mut slot, &q, &l), Overload::None);
        let waker = futures_util::task::noop_waker();
        assert!(
            !Congestion::wait(&mut slot, &waker),
            "nobody waits for a slow session"
        );
        while q.len() > 1 {
            q.pop_front();
            assert!(Congestion::after_take(&mut slot, &q, &l).is_none());
        }
        q.pop_front();
        assert!(Congestion::after_take(&mut slot, &q, &l).is_some());
        assert!(slot.is_none());
    }
}
