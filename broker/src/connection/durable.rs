//! Acknowledgements that promise durability wait for the store, and in a
//! cluster for JetStream.
//!
//! Handling a packet may change a persistent session's stored state (a
//! message queued for it, a QoS 2 packet id, a subscription, a PUBREL
//! state): the changes go to the store's writer as one ticket
//! (`Connection::ticket`), and the packet's responses (PUBACK, PUBREC,
//! PUBREL, SUBACK…) are held back until that ticket is committed. Once a
//! response is held, later ones queue behind it, so the client sees them
//! in the order its packets came (MQTT requires it for PUBACKs).
//!
//! Outgoing QoS 2 PUBLISHes of a persistent session wait the same way for
//! their packet id to be stored: after a restart the message is resent
//! with the same id (DUP), which the client recognises, instead of as a
//! new message it would deliver twice.
//!
//! In a cluster, a QoS 1/2 PUBLISH's PUBACK/PUBREC also waits until
//! JetStream has the message for the other nodes (`Connection::forwarded`,
//! a ticket of `cluster::reliable`): a publisher is told its message is
//! taken only once every node can get it, and a publisher faster than
//! JetStream is slowed by its own window of unacknowledged messages
//! instead of having messages dropped.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use bytes::BytesMut;

use super::{Close, Connection};
use crate::reason::ReasonCode;
use crate::store::StoreError;

type Wait = Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send>>;

/// What a held response waits for (0: nothing).
#[derive(Clone, Copy, Default)]
struct Tickets {
    /// The store ticket to be committed…
    store: u64,
    /// …unless this message settles first (see `store::held`).
    settle: u64,
    /// The cluster ticket.
    forwarded: u64,
}

/// Responses waiting for the store or the cluster, by the tickets they
/// wait for.
#[derive(Default)]
pub(super) struct Held {
    responses: VecDeque<(Tickets, BytesMut)>,
    bytes: usize,
    wait: Option<Wait>,
    /// The message the packet being handled stored deliveries of, and
    /// the store ticket it had then: if the packet's ticket is still that
    /// one, its responses may go once the message settles.
    settle: Option<(u64, u64)>,
}

impl Held {
    /// Ready when the tickets waited for are done (or the store failed).
    pub(super) fn poll_committed(
        &mut self,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Result<(), StoreError>> {
        match &mut self.wait {
            Some(w) => w.as_mut().poll(cx).map(|r| {
                self.wait = None;
                r
            }),
            None => Poll::Pending,
        }
    }
}

impl Connection {
    /// Output written or held back: what counts against the output
    /// buffer's high-water mark.
    pub(super) fn output_len(&self) -> usize {
        self.out.len() + self.held.as_ref().map_or(0, |h| h.bytes)
    }

    /// After a packet was handled: holds the responses it wrote from
    /// `mark` on if the store has not committed its changes yet, or
    /// JetStream does not have the QoS 1/2 message it sent to the other
    /// nodes yet (or responses are held already).
    /// Notes that the packet being handled stored deliveries of message
    /// `settle` and nothing else (`Store::settles`): its responses need
    /// not wait for the commit once that message is settled.
    pub(super) fn settle_on(&mut self, settle: u64) {
        let ticket = self.ticket;
        self.held.get_or_insert_with(Box::default).settle = Some((ticket, settle));
    }

    pub(super) fn hold_responses(&mut self, mark: usize) {
        let ticket = std::mem::take(&mut self.ticket);
        let forwarded = std::mem::take(&mut self.forwarded);
        let settle = match self.held.as_mut().and_then(|h| h.settle.take()) {
            Some((t, m)) if t == ticket => m,
            _ => 0,
        };
        let store = self.ctx.store.as_ref().and_then(|s| s.must_wait(ticket));
        let cluster = self.ctx.router.cluster();
        let sent = cluster.and_then(|c| c.must_wait(forwarded));
        let holding = self.held.as_ref().is_some_and(|h| !h.responses.is_empty());
        if (store.is_none() && sent.is_none() && !holding) || self.out.len() <= mark {
            if !holding && self.held.as_ref().is_some_and(|h| h.wait.is_none()) {
                self.held = None;
            }
            return;
        }
        let held = self.held.get_or_insert_with(Box::default);
        let after = held
            .responses
            .back()
            .map_or_else(Tickets::default, |(t, _)| *t);
        let bytes = self.out.split_off(mark);
        held.bytes += bytes.len();
        let store = store.unwrap_or(0);
        held.responses.push_back((
            Tickets {
                store: store.max(after.store),
                settle: if store > 0 { settle } else { 0 },
                forwarded: sent.unwrap_or(0).max(after.forwarded),
            },
            bytes,
        ));
        if held.wait.is_none() {
            let first = held.responses[0].0;
            let wait = self.wait_for(first);
            if let Some(held) = self.held.as_mut() {
                held.wait = Some(wait);
            }
        }
    }

    /// What the first held response waited for is done: sends every
    /// response whose tickets are done, and waits for the next.
    pub(super) fn release_responses(
        &mut self,
        result: Result<(), Box<StoreError>>,
    ) -> Result<(), Close> {
        if let Err(e) = result {
            return Err(Close::server(
                ReasonCode::UNSPECIFIED_ERROR,
                format!("not acknowledged: {e}"),
            ));
        }
        let committed = self.ctx.store.as_ref().map_or(u64::MAX, |s| s.committed());
        let sent = self
            .ctx
            .router
            .cluster()
            .map_or(u64::MAX, |c| c.done_through());
        let store = self.ctx.store.as_deref();
        let Some(held) = self.held.as_mut() else {
            return Ok(());
        };
        let stored = |t: &Tickets| {
            t.store <= committed || (t.settle > 0 && store.is_some_and(|s| s.is_settled(t.settle)))
        };
        while held
            .responses
            .front()
            .is_some_and(|(t, _)| stored(t) && t.forwarded <= sent)
        {
            if let Some((_, bytes)) = held.responses.pop_front() {
                held.bytes -= bytes.len();
                self.out.extend_from_slice(&bytes);
            }
        }
        match held.responses.front().map(|(t, _)| *t) {
            Some(t) => {
                let wait = self.wait_for(t);
                if let Some(held) = self.held.as_mut() {
                    held.wait = Some(wait);
                }
            }
            None => self.held = None,
        }
        Ok(())
    }

    /// Waits for the store to commit ticket `t.store` (or for message
    /// `t.settle` to settle) and JetStream to have the message of cluster
    /// ticket `t.forwarded`.
    fn wait_for(&self, t: Tickets) -> Wait {
        let store = self.ctx.store.clone().filter(|_| t.store > 0);
        let cluster = self
            .ctx
            .router
            .cluster()
            .cloned()
            .filter(|_| t.forwarded > 0);
        let forwarded = t.forwarded;
        Box::pin(async move {
            if let Some(store) = store {
                if t.settle > 0 {
                    tokio::select! {
                        biased;
                        done = store.wait(t.store) => {
                            store.unwatch(t.settle);
                            done?;
                        }
                        () = store.settled(t.settle) => {}
                    }
                } else {
                    store.wait(t.store).await?;
                }
            }
            if let Some(cluster) = cluster {
                cluster.wait(forwarded).await;
            }
            Ok(())
        })
    }
}
