//! Holding a publisher while the queues its messages went to drain
//! (`[session] overload = "backpressure"`): the connection stops reading
//! from its client, so TCP's own flow control slows the client down,
//! instead of the broker dropping what a subscriber cannot take yet.
//!
//! The router reports the congested backlogs a PUBLISH reached (see
//! `crate::router::Congested`): subscribers' session queues and, in a
//! cluster, the queue to NATS. The connection then reads nothing more
//! until each of them drained, went offline or outlasted its wait (see
//! `crate::session::congestion`, `crate::cluster::link`). Writing to the
//! client goes on while it is held, and its own session never holds it (a
//! client subscribed to what it publishes must be able to read while it
//! waits).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::time::{Instant, Sleep};

use super::Connection;
use crate::metrics::Metrics;
use crate::router::{Backlog, Congested, same_backlog as same};

/// A held publisher's wait.
pub(super) struct Hold {
    backlogs: Vec<Arc<dyn Backlog>>,
    /// The earliest of the backlogs' wait deadlines.
    deadline: Pin<Box<Sleep>>,
}

impl Hold {
    /// Ready once no backlog holds the publisher any more: each drained,
    /// went offline or was given up on. The timer runs to the earliest
    /// deadline, which moves on while the backlogs keep draining.
    pub(super) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        // A few rounds at most: a deadline the timer reached has passed, so
        // its backlog lets go (should the clock disagree, stop holding).
        for _ in 0..4 {
            let mut earliest = None;
            self.backlogs.retain(|b| match b.must_wait(cx.waker()) {
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
            // The timer is due: ask the backlogs again (a deadline still
            // ahead re-arms it; a passed one lets go of its backlog).
        }
        Poll::Ready(())
    }
}

impl Connection {
    /// Holds the client for the congested backlogs its last PUBLISH
    /// reached (other than its own session).
    pub(super) fn hold_for(&mut self, congested: Congested) {
        let own = Arc::as_ptr(&self.session).cast::<()>();
        let mut congested = congested.into_iter().filter(|(b, _)| !same(b, own));
        let Some((first, until)) = congested.next() else {
            return;
        };
        let stopped = self.stopped.get_or_insert_default();
        let hold = stopped.hold.get_or_insert_with(|| {
            Metrics::add(&self.ctx.metrics.publishers_held, 1);
            Hold {
                backlogs: Vec::new(),
                deadline: Box::pin(tokio::time::sleep_until(until)),
            }
        });
        for (backlog, until) in std::iter::once((first, until)).chain(congested) {
            if until < hold.deadline.deadline() {
                hold.deadline.as_mut().reset(until);
            }
            let ptr = Arc::as_ptr(&backlog).cast::<()>();
            if !hold.backlogs.iter().any(|b| same(b, ptr)) {
                hold.backlogs.push(backlog);
            }
        }
    }
}
