//! Messages held by stored deliveries: each message is stored once
//! however many sessions queue it, under an id, with a reference count
//! kept in memory (rebuilt at recovery); the release of its last
//! reference deletes it.
//!
//! A message whose stored deliveries have all completed (acknowledged by
//! every persistent subscriber it reached, or dropped) is *settled*:
//! nothing of it needs to reach the disk any more, so a publisher's
//! acknowledgement that waits for it may go without waiting for the
//! commit (see `Store::settled`). Message ids are never reused, so an id
//! that is no longer held is settled for good.

use std::collections::HashMap;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use foldhash::fast::RandomState;

use crate::message::Message;

/// Messages held by stored deliveries, by id, with their reference counts;
/// the id of each by the message's address (the deliveries of one PUBLISH
/// share one `Arc<Message>`); and the tasks waiting for some to settle
/// (publishers' connections: as many as PUBLISHes awaiting their PUBACK,
/// kept apart so that a million queued messages do not each carry a slot).
#[derive(Debug, Default)]
pub(crate) struct Held {
    ids: HashMap<usize, u64, RandomState>,
    messages: HashMap<u64, (u32, Arc<Message>), RandomState>,
    waiters: HashMap<u64, Waker, RandomState>,
    next_id: u64,
}

impl Held {
    /// An empty set whose next id follows `last_id` (the highest id in the
    /// store).
    pub(super) fn after(last_id: u64) -> Self {
        Held {
            next_id: last_id,
            ..Held::default()
        }
    }

    /// A message read back from the store with `refs` deliveries.
    pub(super) fn restore(&mut self, id: u64, refs: u32, message: Arc<Message>) {
        self.ids.insert(Arc::as_ptr(&message) as usize, id);
        self.messages.insert(id, (refs, message));
        self.next_id = self.next_id.max(id);
    }

    /// Messages held.
    pub(super) fn len(&self) -> usize {
        self.messages.len()
    }

    /// One more delivery of `message`: its id, and whether it is new (so
    /// it must be stored).
    pub(super) fn hold(&mut self, message: &Arc<Message>) -> (u64, bool) {
        let ptr = Arc::as_ptr(message) as usize;
        if let Some(&id) = self.ids.get(&ptr) {
            if let Some(entry) = self.messages.get_mut(&id) {
                entry.0 += 1;
                return (id, false);
            }
        }
        self.next_id += 1;
        let id = self.next_id;
        self.ids.insert(ptr, id);
        self.messages.insert(id, (1, message.clone()));
        (id, true)
    }

    /// One delivery of message `id` fewer: true if it was the last (the
    /// message is to be deleted; a task waiting for it is woken).
    pub(super) fn release(&mut self, id: u64) -> bool {
        let Some(entry) = self.messages.get_mut(&id) else {
            return false;
        };
        entry.0 = entry.0.saturating_sub(1);
        if entry.0 > 0 {
            return false;
        }
        let Some((_, message)) = self.messages.remove(&id) else {
            return false;
        };
        let ptr = Arc::as_ptr(&message) as usize;
        if self.ids.get(&ptr) == Some(&id) {
            self.ids.remove(&ptr);
        }
        if let Some(w) = self.waiters.remove(&id) {
            w.wake();
        }
        true
    }

    /// Forgets the task waiting for message `id` (it stopped waiting).
    pub(super) fn unwatch(&mut self, id: u64) {
        self.waiters.remove(&id);
    }

    /// Whether message `id` is settled (no longer held).
    pub(super) fn is_settled(&self, id: u64) -> bool {
        !self.messages.contains_key(&id)
    }

    /// Ready once message `id` is settled; otherwise registers the task
    /// (one waiter per message: the connection that published it).
    pub(super) fn poll_settled(&mut self, id: u64, cx: &mut Context<'_>) -> Poll<()> {
        if !self.messages.contains_key(&id) {
            self.waiters.remove(&id);
            return Poll::Ready(());
        }
        match self.waiters.get_mut(&id) {
            Some(w) => w.clone_from(cx.waker()),
            None => {
                self.waiters.insert(id, cx.waker().clone());
            }
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    use bytes::Bytes;

    use super::*;
    use crate::codec::{MessageProperties, QoS};
    use crate::topic::TopicName;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn a_message_settles_with_its_last_delivery_and_wakes_its_waiter() {
        let mut held = Held::after(41);
        let m = Arc::new(Message {
            topic: TopicName::new("t").unwrap(),
            payload: Bytes::from_static(b"x"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: MessageProperties::default(),
            expires_at: None,
        });
        assert_eq!(held.hold(&m), (42, true));
        assert_eq!(held.hold(&m), (42, false));
        let woken = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(woken.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(held.poll_settled(42, &mut cx).is_pending());
        assert!(!held.release(42));
        assert_eq!(woken.0.load(Ordering::Relaxed), 0);
        assert!(!held.is_settled(42));
        assert!(held.release(42));
        assert_eq!(woken.0.load(Ordering::Relaxed), 1);
        assert!(held.is_settled(42));
        assert!(held.poll_settled(42, &mut cx).is_ready());
        // Ids are not reused: the same message held again is a new one.
        assert_eq!(held.hold(&m), (43, true));
        assert_eq!(held.len(), 1);
    }
}
