//! Acknowledgements that promise durability wait for the store.
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

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use bytes::BytesMut;

use super::{Close, Connection};
use crate::reason::ReasonCode;
use crate::store::{Store, StoreError};

type Wait = Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send>>;

/// Responses waiting for the store, by the ticket they wait for.
#[derive(Default)]
pub(super) struct Held {
    responses: VecDeque<(u64, BytesMut)>,
    bytes: usize,
    wait: Option<Wait>,
}

impl Held {
    /// Ready when the ticket waited for is committed (or failed).
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
    /// `mark` on if the store has not committed its changes yet (or
    /// responses are held already).
    pub(super) fn hold_responses(&mut self, mark: usize) {
        let Some(store) = &self.ctx.store else {
            return;
        };
        let ticket = std::mem::take(&mut self.ticket);
        let must = store.must_wait(ticket);
        let holding = self.held.as_ref().is_some_and(|h| !h.responses.is_empty());
        if (must.is_none() && !holding) || self.out.len() <= mark {
            return;
        }
        let held = self.held.get_or_insert_with(Box::default);
        let after = held.responses.back().map_or(0, |(t, _)| *t);
        let bytes = self.out.split_off(mark);
        held.bytes += bytes.len();
        held.responses
            .push_back((must.unwrap_or(0).max(after), bytes));
        if held.wait.is_none() {
            held.wait = Some(wait_for(store, held.responses[0].0));
        }
    }

    /// The store committed what the first held response waited for: sends
    /// every response whose changes are committed, and waits for the next.
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
        let (Some(store), Some(held)) = (&self.ctx.store, self.held.as_mut()) else {
            return Ok(());
        };
        let committed = store.committed();
        while held.responses.front().is_some_and(|(t, _)| *t <= committed) {
            if let Some((_, bytes)) = held.responses.pop_front() {
                held.bytes -= bytes.len();
                self.out.extend_from_slice(&bytes);
            }
        }
        match held.responses.front() {
            Some((t, _)) => held.wait = Some(wait_for(store, *t)),
            None => self.held = None,
        }
        Ok(())
    }
}

fn wait_for(store: &Arc<Store>, ticket: u64) -> Wait {
    let store = store.clone();
    Box::pin(async move { store.wait(ticket).await })
}
