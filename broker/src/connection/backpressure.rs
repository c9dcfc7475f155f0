//! Holding a publisher while the queues its messages went to drain
//! (`[session] overload = "backpressure"`): the connection stops reading
//! from its client, so TCP's own flow control slows the client down,
//! instead of the broker dropping what a subscriber cannot take yet.
//!
//! The router reports the congested sessions a PUBLISH reached (see
//! `crate::router::Congested`); the connection then reads nothing more
//! until each of them drained, went offline or outlasted its wait (see
//! `crate::session::congestion`). Writing to the client goes on while it
//! is held, and its own session never holds it (a client subscribed to
//! what it publishes must be able to read while it waits).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::time::{Instant, Sleep};

use super::Connection;
use crate::metrics::Metrics;
use crate::router::Congested;
use crate::session::Session;

/// A held publisher's wait.
pub(super) struct Hold {
    sessions: Vec<Arc<Session>>,
    /// The earliest of the sessions' wait deadlines.
    deadline: Pin<Box<Sleep>>,
}

impl Hold {
    /// Ready once no session holds the publisher any more: each drained,
    /// went offline or was given up on. The timer runs to the earliest
    /// deadline, which moves on while the sessions keep taking from their
    /// queues.
    pub(super) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        // A few rounds at most: a deadline the timer reached has passed, so
        // its session lets go (should the clock disagree, stop holding).
        for _ in 0..4 {
            let mut earliest = None;
            self.sessions.retain(|s| match s.must_wait(cx.waker()) {
                Some(until) => {
                    earliest = Some(earliest.map_or(until, |e: Instant| e.min(until)));
                    true
                }
                None => false,
            });
            let Some(earliest) = earliest else {
                return Poll::Ready(());
            };
            if earliest != self.deadline.deadline() {
                self.deadline.as_mut().reset(earliest);
            }
            if self.deadline.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            // The timer is due: ask the sessions again (a deadline still
            // ahead re-arms it; a passed one lets go of its session).
        }
        Poll::Ready(())
    }
}

impl Connection {
    /// Holds the client for the congested sessions its last PUBLISH
    /// reached (other than its own).
    pub(super) fn hold_for(&mut self, congested: Congested) {
        let own = &self.session;
        let mut congested = congested.into_iter().filter(|(s, _)| !Arc::ptr_eq(s, own));
        let Some((first, until)) = congested.next() else {
            return;
        };
        let stopped = self.stopped.get_or_insert_default();
        let hold = stopped.hold.get_or_insert_with(|| {
            Metrics::add(&self.ctx.metrics.publishers_held, 1);
            Hold {
                sessions: Vec::new(),
                deadline: Box::pin(tokio::time::sleep_until(until)),
            }
        });
        for (session, until) in std::iter::once((first, until)).chain(congested) {
            if until < hold.deadline.deadline() {
                hold.deadline.as_mut().reset(until);
            }
            if !hold.sessions.iter().any(|s| Arc::ptr_eq(s, &session)) {
                hold.sessions.push(session);
            }
        }
    }
}
