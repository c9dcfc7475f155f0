//! Sessions moving between the nodes of a cluster.
//!
//! [`Registry::hand_over`] takes a session out of this node, after telling
//! its connection to close, as an image (subscriptions, queue, QoS state,
//! a waiting Will) that the node taking the client over passes to
//! [`Registry::take_in`]. [`Registry::card`] is the part of a persistent
//! session the cluster keeps for the case its node dies (no queue).
//!
//! Architecture invariant: a session handed over leaves this node without
//! a trace (no Will, no end-of-session notification, no rerouting): it
//! goes on, elsewhere.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::Registry;
use crate::message::Will;
use crate::session::{Kick, QueueLimits, Session, SubscriberId};
use crate::store::{RecoveredSession, SessionRecord};

/// A session's card: its record and subscriptions.
pub(crate) type Card = RecoveredSession;

impl Registry {
    /// Takes session `id` out of this node for another node: its
    /// connection (if any) is told the session was taken over and waited
    /// for at most `wait`. `None` if there is no such session, or its
    /// connection did not let go in time.
    pub(crate) async fn hand_over(&self, id: &SubscriberId, wait: Duration) -> Option<Card> {
        let deadline = Instant::now() + wait;
        loop {
            let session = self.get(id)?;
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            let online = {
                let state = session.lock();
                if state.ended {
                    return None;
                }
                state.connected
            };
            if online {
                session.kick(Kick::TakenOver);
                if tokio::time::timeout_at(deadline, released).await.is_err() {
                    tracing::warn!(session = %id, "its connection did not close in time; not handed over");
                    return None;
                }
                continue;
            }
            return self.take_out(&session);
        }
    }

    /// Removes an offline session from this node, returning its image.
    fn take_out(&self, session: &Arc<Session>) -> Option<Card> {
        let image = {
            let mut state = session.lock();
            if state.ended || state.connected {
                return None;
            }
            state.ended = true;
            self.timers.cancel(&std::mem::take(&mut state.timers));
            let record = Self::offline_record(&state);
            let subscriptions = state
                .subscriptions
                .drain()
                .map(|(s, held)| (s, held.options, held.identifier))
                .collect();
            let mut queued: Vec<_> = state.queue.drain().collect();
            let mut inflight = Vec::new();
            let mut incoming_qos2 = Vec::new();
            if let Some(f) = state.inflight.as_mut() {
                incoming_qos2 = f.incoming_qos2_ids().to_vec();
                inflight = f
                    .drain_outgoing()
                    .map(|e| (e.packet_id, e.delivery, e.state))
                    .collect();
            }
            state.pending_will = None;
            if let Some(p) = session.persisted() {
                p.end();
                for d in queued.iter().chain(inflight.iter().map(|(_, d, _)| d)) {
                    p.forget(d);
                }
            }
            for d in queued
                .iter_mut()
                .chain(inflight.iter_mut().map(|(_, d, _)| d))
            {
                d.stored = None;
                d.shared = None;
            }
            RecoveredSession {
                id: session.id().clone(),
                record,
                subscriptions,
                queued,
                inflight,
                incoming_qos2,
            }
        };
        self.remove_quietly(session);
        for (s, _, _) in &image.subscriptions {
            self.router.unsubscribe(session, s);
        }
        tracing::debug!(session = %session.id(), "handed over to another node");
        Some(image)
    }

    /// Removes `session` from the map without letting go of its client id
    /// (another node holds it now).
    fn remove_quietly(&self, session: &Arc<Session>) {
        let mut map = self.map();
        if map
            .get(session.id())
            .is_some_and(|e| Arc::ptr_eq(&e.0, session))
        {
            map.remove(session.id());
        }
    }

    /// Takes in a session from another node (offline, its timers counting
    /// from the times in the image), in place of any this node still has
    /// under the same id. Returns false if it had expired.
    pub(crate) async fn take_in(&self, image: Card, limits: &Arc<QueueLimits>) -> bool {
        if self.get(&image.id).is_some() {
            // A stale copy (this node lost the id while cut off).
            let _ = self.hand_over(&image.id, Duration::from_secs(2)).await;
        }
        !self.restore_one(image, limits, false)
    }

    /// What the cluster keeps of persistent session `id`: its record (with
    /// the Will of the connection holding it, `will`) and subscriptions.
    /// `None` if there is no such session here.
    pub(crate) fn card(&self, id: &SubscriberId, will: Option<&Will>) -> Option<Card> {
        let session = self.get(id)?;
        let state = session.lock();
        if state.ended {
            return None;
        }
        let record = if state.connected {
            SessionRecord {
                level: state.level,
                expiry_interval: state.expiry_interval,
                disconnected_at: 0,
                will: will.cloned(),
                will_due: 0,
            }
        } else {
            Self::offline_record(&state)
        };
        Some(RecoveredSession {
            id: id.clone(),
            record,
            subscriptions: state
                .subscriptions
                .iter()
                .map(|(s, held)| (s.clone(), held.options, held.identifier))
                .collect(),
            queued: Vec::new(),
            inflight: Vec::new(),
            incoming_qos2: Vec::new(),
        })
    }

    /// The ids of this node's sessions that outlive their connections.
    pub(crate) fn persistent_ids(&self) -> Vec<SubscriberId> {
        let sessions: Vec<Arc<Session>> = self.map().iter().map(|e| e.0.clone()).collect();
        sessions
            .into_iter()
            .filter(|s| {
                let state = s.lock();
                !state.ended && state.expiry_interval > 0
            })
            .map(|s| s.id().clone())
            .collect()
    }

    /// Drops session `id` from this node without a trace (another node
    /// took it over while this one was cut off): its connection, if any,
    /// is told so.
    pub(crate) async fn drop_stale(&self, id: &SubscriberId) {
        if self.hand_over(id, Duration::from_secs(2)).await.is_some() {
            tracing::info!(session = %id, "another node holds this session now; dropped here");
        }
    }
}
