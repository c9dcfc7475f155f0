//! Sessions read back from the store at start ([`Registry::restore`]):
//! offline, with their subscriptions, queues, QoS state and timers, which
//! count on from the wall-clock times stored.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::timers::{Timer, TimerKind};
use super::{Entry, Registry};
use crate::plugins::Event;
use crate::session::{HeldSubscription, Inflight, PendingWill, QueueLimits, Session};
use crate::store::RecoveredSession;

impl Registry {
    /// Takes back the sessions read from the store, at start before any
    /// client connects: each offline, with its subscriptions, queue, QoS
    /// state and timers, which count on from the wall-clock times stored
    /// (a Will or an expiry that fell due while the broker was down fires
    /// now). A session that a connection held when the broker stopped
    /// without that connection ending (a crash) is treated as if the
    /// connection was lost now: its Will waits for its delay. Returns how
    /// many sessions had expired.
    pub fn restore(&self, sessions: Vec<RecoveredSession>, limits: &Arc<QueueLimits>) -> usize {
        if self.store.is_none() {
            return 0;
        }
        let mut expired = 0;
        for r in sessions {
            if self.restore_one(r, limits, true) {
                expired += 1;
            }
        }
        expired
    }

    /// Takes in one session image, offline (from this node's store, or
    /// from another node of the cluster), and starts storing it if the
    /// broker has a store. Returns whether it had expired (and ended).
    pub(crate) fn restore_one(
        &self,
        r: RecoveredSession,
        limits: &Arc<QueueLimits>,
        from_store: bool,
    ) -> bool {
        let now_ms = crate::store::now_ms();
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        let session = Arc::new(Session::new(key, r.id.clone(), limits.clone()));
        // A session from another node is stored here once a connection
        // attaches to it (with what it holds then).
        if let Some(store) = self.store.as_ref().filter(|_| from_store) {
            session.set_persisted(store.session(&r.id));
        }
        let p = session.persisted();
        let record = r.record;
        let crashed = record.disconnected_at == 0;
        let disconnected_at = if crashed {
            now_ms
        } else {
            record.disconnected_at
        };
        let mut inflight = Inflight::default();
        for (pid, d, state) in r.inflight {
            inflight.push(pid, d, state);
        }
        for pid in r.incoming_qos2 {
            inflight.incoming_qos2_arrived(pid);
        }
        let generation = 1;
        {
            let mut state = session.lock();
            state.level = record.level;
            state.expiry_interval = record.expiry_interval;
            state.disconnected_at = disconnected_at;
            state.generation = generation;
            state.inflight = Some(Box::new(inflight));
            for d in r.queued {
                let limits = state.limits.clone();
                for d in state.queue.push(d, false, &limits).deliveries {
                    if let Some(p) = p {
                        p.done(&d);
                    }
                }
            }
            for (s, options, identifier) in &r.subscriptions {
                state.subscriptions.insert(
                    s.clone(),
                    HeldSubscription {
                        options: *options,
                        identifier: *identifier,
                    },
                );
            }
            if let Some(will) = record.will {
                let due = if crashed {
                    let delay = will.delay_interval.min(record.expiry_interval);
                    now_ms.saturating_add(u64::from(delay) * 1000)
                } else {
                    record.will_due
                };
                state.pending_will = Some(PendingWill {
                    will: Box::new(will),
                    generation,
                    due,
                });
            }
        }
        for (s, options, identifier) in r.subscriptions {
            self.router.subscribe(&session, &s, options, identifier);
        }
        self.map().insert(Entry(session.clone()));
        let expires = (record.expiry_interval != u32::MAX)
            .then(|| disconnected_at.saturating_add(u64::from(record.expiry_interval) * 1000));
        if expires.is_some_and(|at| at <= now_ms) {
            // `end` publishes a Will still waiting.
            self.end(&session);
            self.plugins.notify(Event::Expired(session.id().clone()));
            return true;
        }
        let will_due = session.lock().pending_will.as_ref().map(|w| w.due);
        match will_due {
            Some(due) if due <= now_ms => self.fire(Timer {
                session: session.clone(),
                generation,
                kind: TimerKind::Will,
            }),
            Some(due) => self.schedule(
                &session,
                generation,
                TimerKind::Will,
                crate::store::instant_of(due),
            ),
            None => {}
        }
        if let Some(at) = expires {
            self.schedule(
                &session,
                generation,
                TimerKind::Expiry,
                crate::store::instant_of(at),
            );
        }
        if crashed {
            if let Some(p) = p {
                p.put_session(&Self::offline_record(&session.lock()));
            }
        }
        false
    }
}
