//! QoS 1 and 2 state of a session: messages sent and not yet acknowledged,
//! packet-id allocation, and QoS 2 messages received and not yet released.
//!
//! This state belongs to whichever connection owns the session and is parked
//! in the session while it is offline, so a reconnect resumes it (and resends
//! what was unacknowledged, with DUP set).

use std::collections::VecDeque;

use crate::message::Delivery;
use crate::topic::PacketId;

/// Where an outgoing QoS 1/2 message stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutState {
    /// QoS 1 sent, waiting for PUBACK.
    AwaitingPubAck,
    /// QoS 2 sent, waiting for PUBREC.
    AwaitingPubRec,
    /// PUBREL sent, waiting for PUBCOMP.
    AwaitingPubComp,
}

/// One unacknowledged outgoing message.
#[derive(Debug)]
pub struct OutEntry {
    pub packet_id: PacketId,
    pub delivery: Delivery,
    pub state: OutState,
}

/// A session's QoS 1/2 state.
#[derive(Debug)]
pub struct Inflight {
    next_id: PacketId,
    /// In send order, which is also the order of resending. The window is
    /// small (at most the client's Receive Maximum), so lookups are linear.
    outgoing: VecDeque<OutEntry>,
    /// Packet ids of QoS 2 messages received and routed, waiting for
    /// PUBREL: at most the broker's Receive Maximum, so a short list.
    incoming_qos2: Vec<PacketId>,
}

impl Default for Inflight {
    fn default() -> Self {
        Inflight {
            next_id: PacketId::new(1).unwrap_or_else(|| unreachable!()),
            outgoing: VecDeque::new(),
            incoming_qos2: Vec::new(),
        }
    }
}

impl Inflight {
    /// Number of unacknowledged outgoing messages.
    pub fn outgoing_len(&self) -> usize {
        self.outgoing.len()
    }

    /// The unacknowledged outgoing messages, oldest first.
    pub fn outgoing(&self) -> impl Iterator<Item = &OutEntry> {
        self.outgoing.iter()
    }

    /// A packet id not used by any unacknowledged outgoing message.
    pub fn allocate_id(&mut self) -> PacketId {
        loop {
            let id = self.next_id;
            self.next_id = id.next();
            if !self.outgoing.iter().any(|e| e.packet_id == id) {
                return id;
            }
        }
    }

    /// Records a message just sent.
    pub fn push(&mut self, packet_id: PacketId, delivery: Delivery, state: OutState) {
        self.outgoing.push_back(OutEntry {
            packet_id,
            delivery,
            state,
        });
    }

    fn position(&self, id: PacketId, state: OutState) -> Option<usize> {
        self.outgoing
            .iter()
            .position(|e| e.packet_id == id && e.state == state)
    }

    /// Completes the message `id` waiting in `state` (PUBACK for QoS 1,
    /// PUBCOMP for QoS 2, or a PUBREC carrying an error). `None` if no
    /// message with that id waits in that state.
    pub fn complete(&mut self, id: PacketId, state: OutState) -> Option<OutEntry> {
        let i = self.position(id, state)?;
        self.outgoing.remove(i)
    }

    /// The outgoing entry of `id`, if any.
    pub fn get(&self, id: PacketId) -> Option<&OutEntry> {
        self.outgoing.iter().find(|e| e.packet_id == id)
    }

    /// PUBREC received for `id`: the message now waits for PUBCOMP.
    /// Returns false if no QoS 2 message with that id waited for PUBREC
    /// (a PUBREC repeated after a resend of PUBREL is also accepted).
    pub fn received(&mut self, id: PacketId) -> bool {
        if let Some(i) = self.position(id, OutState::AwaitingPubRec) {
            self.outgoing[i].state = OutState::AwaitingPubComp;
            return true;
        }
        self.position(id, OutState::AwaitingPubComp).is_some()
    }

    /// Takes every outgoing entry (the session is ending).
    pub fn drain_outgoing(&mut self) -> impl Iterator<Item = OutEntry> + '_ {
        self.outgoing.drain(..)
    }

    /// A QoS 2 PUBLISH with this id arrived: true if it is new (route it),
    /// false if it is a resend of one already routed.
    pub fn incoming_qos2_arrived(&mut self, id: PacketId) -> bool {
        if self.incoming_qos2.contains(&id) {
            return false;
        }
        self.incoming_qos2.push(id);
        true
    }

    /// The QoS 2 packet ids received and not released yet.
    pub(crate) fn incoming_qos2_ids(&self) -> &[PacketId] {
        &self.incoming_qos2
    }

    /// Whether a QoS 2 message with this id was received and not released.
    pub fn incoming_qos2_contains(&self, id: PacketId) -> bool {
        self.incoming_qos2.contains(&id)
    }

    /// PUBREL arrived: true if the id was known.
    pub fn incoming_qos2_released(&mut self, id: PacketId) -> bool {
        match self.incoming_qos2.iter().position(|x| *x == id) {
            Some(i) => {
                self.incoming_qos2.swap_remove(i);
                true
            }
            None => false,
        }
    }

    /// QoS 2 messages received and not yet released.
    pub fn incoming_qos2_len(&self) -> usize {
        self.incoming_qos2.len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::codec::{MessageProperties, QoS};
    use crate::message::Message;
    use crate::topic::TopicName;

    fn delivery() -> Delivery {
        Delivery {
            message: Arc::new(Message {
                topic: TopicName::new("t").unwrap(),
                payload: bytes::Bytes::new(),
                qos: QoS::ExactlyOnce,
                retain: false,
                properties: MessageProperties::default(),
                expires_at: None,
            }),
            qos: QoS::ExactlyOnce,
            retain: false,
            subscription_ids: Vec::new(),
            shared: None,
            stored: None,
        }
    }

    #[test]
    fn ids_skip_those_in_use_and_wrap() {
        let mut f = Inflight::default();
        let a = f.allocate_id();
        f.push(a, delivery(), OutState::AwaitingPubAck);
        assert_eq!(a.get(), 1);
        for _ in 0..65533 {
            f.allocate_id();
        }
        assert_eq!(f.allocate_id().get(), 65535);
        // 1 is still in flight, so the wrap skips it.
        assert_eq!(f.allocate_id().get(), 2);
    }

    #[test]
    fn qos2_outgoing_flow() {
        let mut f = Inflight::default();
        let id = f.allocate_id();
        f.push(id, delivery(), OutState::AwaitingPubRec);
        assert!(f.complete(id, OutState::AwaitingPubComp).is_none());
        assert!(f.received(id));
        assert!(f.received(id), "a repeated PUBREC is accepted");
        assert!(f.complete(id, OutState::AwaitingPubComp).is_some());
        assert_eq!(f.outgoing_len(), 0);
        assert!(!f.received(id));
    }

    #[test]
    fn qos2_incoming_dedup() {
        let mut f = Inflight::default();
        let id = PacketId::new(9).unwrap();
        assert!(f.incoming_qos2_arrived(id));
        assert!(!f.incoming_qos2_arrived(id));
        assert!(f.incoming_qos2_released(id));
        assert!(!f.incoming_qos2_released(id));
    }
}
