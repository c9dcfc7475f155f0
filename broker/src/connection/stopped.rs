//! Why reading from the client is stopped, while it is: a pause (a
//! plugin's rate limit or the overrun back-off, see `throttle`), a hold
//! for congested subscribers (see `backpressure`), or both. The
//! connection keeps one boxed [`Stopped`] only while reading is stopped,
//! so an idle connection pays one pointer for all of it.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use super::Connection;
use super::backpressure::Hold;

/// What keeps the connection from reading.
#[derive(Default)]
pub(super) struct Stopped {
    /// Reading resumes when this fires, if nothing else stops it.
    pause: Option<Pin<Box<Sleep>>>,
    /// Congested subscribers the client's messages reached.
    pub(super) hold: Option<Hold>,
}

impl Stopped {
    /// Ready once neither the pause nor the hold stops reading any more.
    pub(super) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if let Some(sleep) = &mut self.pause {
            if sleep.as_mut().poll(cx).is_ready() {
                self.pause = None;
            }
        }
        if let Some(hold) = &mut self.hold {
            if hold.poll(cx).is_ready() {
                self.hold = None;
            }
        }
        if self.pause.is_none() && self.hold.is_none() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Pauses until `until` (a later pause already running is kept).
    fn pause_until(&mut self, until: Instant) {
        match &mut self.pause {
            Some(sleep) if sleep.deadline() >= until => {}
            Some(sleep) => sleep.as_mut().reset(until),
            None => self.pause = Some(Box::pin(tokio::time::sleep_until(until))),
        }
    }

    /// Stopped for `d` from now.
    pub(super) fn paused_for(d: Duration) -> Box<Stopped> {
        let mut stopped = Box::<Stopped>::default();
        stopped.pause_until(Instant::now() + d);
        stopped
    }
}

impl Connection {
    /// Stops reading from the client for `d` (a later pause already running
    /// is kept).
    pub(super) fn pause_reading(&mut self, d: Duration) {
        let until = Instant::now() + d;
        self.stopped.get_or_insert_default().pause_until(until);
    }

    /// Whether input is read and handled: neither a pause nor a hold for
    /// congested subscribers is running.
    pub(super) fn reading(&self) -> bool {
        self.stopped.is_none()
    }
}
