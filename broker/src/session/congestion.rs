//! A connected session's congestion: its queue passed the high-water mark
//! (half its limit) and the clients publishing to it wait before sending
//! more (`[session] overload = "backpressure"`; the publisher's side is
//! `crate::connection::backpressure`).
//!
//! An episode starts when a queued delivery takes the queue above half its
//! limit (messages or bytes) and ends when the queue is back at a quarter,
//! or when the session goes offline or ends; its end wakes every waiting
//! publisher. Publishers wait only for a session that keeps taking from
//! its queue: one whose queue has held messages for `stall` without a take
//! (a client that stopped reading) is given up on at once, and any is
//! given up on once its episode lasted `wait`. A session given up on is
//! *slow*: nobody waits for it (its queue drops as `overflow` says, for it
//! alone) until its queue has emptied. So a client that stopped reading
//! holds publishers for at most `stall`, and one that reads too slowly for
//! at most `wait`, once.

use std::task::Waker;
use std::time::Duration;

use tokio::time::Instant;

use super::queue::{MessageQueue, QueueLimits};

/// How long publishers wait for a congested session (from the config).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backpressure {
    /// At most this long per episode.
    pub wait: Duration,
    /// At most this long without the session taking from its queue.
    pub stall: Duration,
}

/// An episode of congestion.
#[derive(Debug)]
pub struct Congestion {
    since: Instant,
    /// Publishers' tasks waiting for the episode to end.
    waiters: Vec<Waker>,
    /// The session was given up on: publishers no longer wait.
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
    /// Wait, until the episode ends or until this instant (when the
    /// publisher asks again: the session may have progressed meanwhile).
    WaitUntil(Instant),
    /// Go on: the session was just given up on (nobody waits for it now).
    GaveUp,
}

/// Until when publishers may wait for an episode that began at `since`,
/// the session's last progress being `progress`.
fn deadline(b: Backpressure, since: Instant, progress: Instant) -> Instant {
    (since + b.wait).min(progress + b.stall)
}

impl Congestion {
    /// After a delivery was queued for a connected session whose last
    /// progress (a take, or its queue turning non-empty) was `progress`:
    /// starts an episode if the queue passed the high-water mark, gives up
    /// on a session past its deadline, and says whether the publisher
    /// waits.
    pub(super) fn after_push(
        slot: &mut Option<Box<Congestion>>,
        queue: &MessageQueue,
        limits: &QueueLimits,
        progress: Instant,
    ) -> Overload {
        let Some(b) = limits.backpressure else {
            return Overload::None;
        };
        let since = match slot {
            Some(c) if c.slow => return Overload::None,
            Some(c) => c.since,
            None if above_high_water(queue, limits) => Instant::now(),
            None => return Overload::None,
        };
        let until = deadline(b, since, progress);
        let c = slot.get_or_insert_with(|| {
            Box::new(Congestion {
                since,
                waiters: Vec::new(),
                slow: false,
            })
        });
        if Instant::now() >= until {
            c.slow = true;
            Overload::GaveUp
        } else {
            Overload::WaitUntil(until)
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

    /// Until when a publisher must still wait (`None`: no longer); while
    /// it must, `waker` is woken when the episode ends.
    pub(super) fn wait(
        slot: &mut Option<Box<Congestion>>,
        limits: &QueueLimits,
        progress: Instant,
        waker: &Waker,
    ) -> Option<Instant> {
        let (Some(c), Some(b)) = (slot.as_mut(), limits.backpressure) else {
            return None;
        };
        let until = deadline(b, c.since, progress);
        if c.slow || Instant::now() >= until {
            // Given up on (the next publish to it marks it slow).
            return None;
        }
        if !c.waiters.iter().any(|w| w.will_wake(waker)) {
            c.waiters.push(waker.clone());
        }
        Some(until)
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

    use super::*;
    use crate::codec::{MessageProperties, QoS};
    use crate::config::OverflowPolicy;
    use crate::message::{Delivery, Message};
    use crate::topic::TopicName;

    fn limits(wait_ms: u64, stall_ms: u64) -> QueueLimits {
        QueueLimits {
            max_online: 8,
            max_offline: 8,
            max_bytes: 0,
            qos0_offline: false,
            overflow: OverflowPolicy::DropNewest,
            backpressure: Some(Backpressure {
                wait: Duration::from_millis(wait_ms),
                stall: Duration::from_millis(stall_ms),
            }),
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

    #[tokio::test(start_paused = true)]
    async fn an_episode_starts_above_half_and_ends_at_a_quarter() {
        let l = limits(60_000, 60_000);
        let (mut q, mut slot) = (MessageQueue::default(), None);
        let progress = Instant::now();
        for _ in 0..4 {
            push(&mut q, &l);
            let o = Congestion::after_push(&mut slot, &q, &l, progress);
            assert_eq!(o, Overload::None);
        }
        push(&mut q, &l);
        assert!(matches!(
            Congestion::after_push(&mut slot, &q, &l, progress),
            Overload::WaitUntil(_)
        ));
        let waker = futures_util::task::noop_waker();
        assert!(Congestion::wait(&mut slot, &l, progress, &waker).is_some());
        assert!(Congestion::wait(&mut slot, &l, progress, &waker).is_some());
        q.pop_front();
        q.pop_front();
        assert!(
            Congestion::after_take(&mut slot, &q, &l).is_none(),
            "3 > 8/4"
        );
        q.pop_front();
        let woken = Congestion::after_take(&mut slot, &q, &l).expect("drained");
        assert_eq!(woken.len(), 1, "one waker, kept once");
        assert!(Congestion::wait(&mut slot, &l, progress, &waker).is_none());
    }

    #[test]
    fn drop_policy_never_holds() {
        let l = QueueLimits {
            backpressure: None,
            ..limits(1, 1)
        };
        let (mut q, mut slot) = (MessageQueue::default(), None);
        for _ in 0..8 {
            push(&mut q, &l);
            let o = Congestion::after_push(&mut slot, &q, &l, Instant::now());
            assert_eq!(o, Overload::None);
        }
        assert!(slot.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn past_the_wait_the_session_is_slow_until_empty() {
        let l = limits(100, 100);
        let (mut q, mut slot) = (MessageQueue::default(), None);
        for _ in 0..5 {
            push(&mut q, &l);
            Congestion::after_push(&mut slot, &q, &l, Instant::now());
        }
        // It keeps taking, but not enough: the wait runs out.
        for _ in 0..2 {
            tokio::time::advance(Duration::from_millis(50)).await;
            let o = Congestion::after_push(&mut slot, &q, &l, Instant::now());
            if o == Overload::GaveUp {
                break;
            }
            assert!(matches!(o, Overload::WaitUntil(_)));
        }
        let waker = futures_util::task::noop_waker();
        assert!(
            Congestion::wait(&mut slot, &l, Instant::now(), &waker).is_none(),
            "nobody waits for a slow session"
        );
        push(&mut q, &l);
        let o = Congestion::after_push(&mut slot, &q, &l, Instant::now());
        assert_eq!(o, Overload::None);
        while q.len() > 1 {
            q.pop_front();
            assert!(Congestion::after_take(&mut slot, &q, &l).is_none());
        }
        q.pop_front();
        assert!(Congestion::after_take(&mut slot, &q, &l).is_some());
        assert!(slot.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_that_stopped_taking_is_given_up_on_after_the_stall() {
        let l = limits(60_000, 100);
        let (mut q, mut slot) = (MessageQueue::default(), None);
        let last_take = Instant::now();
        for _ in 0..4 {
            push(&mut q, &l);
        }
        // Queued long after its last take: given up on at once.
        tokio::time::advance(Duration::from_millis(150)).await;
        push(&mut q, &l);
        let o = Congestion::after_push(&mut slot, &q, &l, last_take);
        assert_eq!(o, Overload::GaveUp);
        // A fresh episode whose session then stops taking.
        let (mut q, mut slot) = (MessageQueue::default(), None);
        for _ in 0..5 {
            push(&mut q, &l);
        }
        let last_take = Instant::now();
        let o = Congestion::after_push(&mut slot, &q, &l, last_take);
        assert_eq!(
            o,
            Overload::WaitUntil(last_take + Duration::from_millis(100))
        );
        let waker = futures_util::task::noop_waker();
        tokio::time::advance(Duration::from_millis(60)).await;
        assert!(Congestion::wait(&mut slot, &l, last_take, &waker).is_some());
        // A take moves the deadline on.
        let took = Instant::now();
        let until = Congestion::wait(&mut slot, &l, took, &waker);
        assert_eq!(until, Some(took + Duration::from_millis(100)));
        tokio::time::advance(Duration::from_millis(100)).await;
        assert!(Congestion::wait(&mut slot, &l, took, &waker).is_none());
        let o = Congestion::after_push(&mut slot, &q, &l, took);
        assert_eq!(o, Overload::GaveUp);
    }
}
