//! Which congested backlogs a publish reached (`[session] overload =
//! "backpressure"`): session queues (see `crate::session::congestion`)
//! and, in a cluster, the queue to NATS (see `crate::cluster::link`).
//!
//! Routing a PUBLISH is synchronous, so, as with the store's and the
//! cluster's tickets, the connection collects on its thread what the
//! router saw: it starts with [`Router::collect_congestion`], routes, and
//! takes the list with [`Router::congested`] to hold its client until
//! those backlogs drained. Other publishers (plugins, the cluster, Wills,
//! `$SYS`) do not collect and are never held.

use std::cell::RefCell;
use std::sync::Arc;
use std::task::Waker;

use tokio::time::Instant;

use super::Router;

/// A queue a publisher may be held for while it is congested.
pub(crate) trait Backlog: Send + Sync {
    /// Until when a publisher must still wait for this backlog (`None`:
    /// no longer); while it must, `waker` is woken when the congestion
    /// ends.
    fn must_wait(&self, waker: &Waker) -> Option<Instant>;
}

/// Backlogs a publish found congested, and until when to wait for each.
pub(crate) type Congested = Vec<(Arc<dyn Backlog>, Instant)>;

/// Whether two backlogs are the same one.
pub(crate) fn same(a: &Arc<dyn Backlog>, b: *const ()) -> bool {
    std::ptr::eq(Arc::as_ptr(a).cast::<()>(), b)
}

thread_local! {
    /// `Some` between `collect_congestion` and `congested` on this thread.
    static CONGESTED: RefCell<Option<Congested>> = const { RefCell::new(None) };
}

impl Router {
    /// Starts collecting the congested sessions this thread's routing
    /// reaches.
    pub(crate) fn collect_congestion() {
        CONGESTED.with(|c| *c.borrow_mut() = Some(Vec::new()));
    }

    /// The congested sessions reached since [`Router::collect_congestion`]
    /// (each once), ending the collection.
    pub(crate) fn congested() -> Congested {
        CONGESTED
            .with(|c| c.borrow_mut().take())
            .unwrap_or_default()
    }

    /// Notes that `backlog` is congested, if this thread collects.
    pub(super) fn note_congested<B: Backlog + 'static>(backlog: &Arc<B>, until: Instant) {
        CONGESTED.with(|c| {
            if let Some(list) = c.borrow_mut().as_mut() {
                let ptr = Arc::as_ptr(backlog).cast::<()>();
                if !list.iter().any(|(b, _)| same(b, ptr)) {
                    list.push((backlog.clone() as Arc<dyn Backlog>, until));
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{QueueLimits, Session, SubscriberId};

    #[test]
    fn collects_each_session_once_and_only_when_asked() {
        let limits = Arc::new(QueueLimits::from_config(&Default::default()));
        let id = SubscriberId {
            mountpoint: crate::session::default_mountpoint(),
            client_id: crate::topic::ClientId::new("c").expect("valid id"),
        };
        let s = Arc::new(Session::new(1, id, limits));
        let now = Instant::now();
        Router::note_congested(&s, now);
        assert!(Router::congested().is_empty(), "not collecting");
        Router::collect_congestion();
        Router::note_congested(&s, now);
        Router::note_congested(&s, now);
        assert_eq!(Router::congested().len(), 1);
        assert!(Router::congested().is_empty(), "taken");
    }
}
