//! Broker-wide counters, read by `$SYS` and (later) the admin interface.
//!
//! Counters are relaxed atomics: they are statistics, not synchronisation.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::limits::LimitHits;

/// The broker's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    pub clients_connected: AtomicU64,
    pub connections_total: AtomicU64,
    /// Connections closed on accept because their listener had
    /// `max_connections` open.
    pub connections_refused_limit: AtomicU64,
    /// Connections closed on accept because they came faster than their
    /// listener's `max_connection_rate`.
    pub connections_refused_rate: AtomicU64,
    pub messages_received: AtomicU64,
    pub messages_sent: AtomicU64,
    pub messages_dropped: AtomicU64,
    /// Times the broker stopped reading from a publisher until the queues
    /// its messages went to drained (`session.overload`).
    pub publishers_held: AtomicU64,
    pub bytes_received: AtomicU64,
    pub bytes_sent: AtomicU64,
    /// Hits of each client limit.
    pub limits: LimitHits,
}

impl Metrics {
    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        if n != 0 {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
