//! A session's queue of deliveries waiting to be sent, with its limits and
//! drop policy.

use std::collections::VecDeque;
use std::time::Duration;

use crate::codec::QoS;
use crate::config::{OverflowPolicy, OverloadPolicy, SessionConfig};
use crate::limits::Limit;
use crate::message::Delivery;

use super::congestion::Backpressure;

/// Limits on one session's queue, from `[session]` in the config.
#[derive(Clone, Copy, Debug)]
pub struct QueueLimits {
    pub max_online: usize,
    pub max_offline: usize,
    pub max_bytes: u64,
    pub qos0_offline: bool,
    pub overflow: OverflowPolicy,
    /// How long publishers wait for this session while it is congested
    /// (`None`: they never do; see `super::congestion`).
    pub backpressure: Option<Backpressure>,
}

impl QueueLimits {
    /// The limits configured in `[session]`.
    pub fn from_config(c: &SessionConfig) -> Self {
        QueueLimits {
            max_online: c.max_queued_messages as usize,
            max_offline: c.max_offline_messages as usize,
            max_bytes: c.max_queued_bytes,
            qos0_offline: c.queue_qos0_offline,
            overflow: c.overflow,
            backpressure: (c.overload == OverloadPolicy::Backpressure).then(|| Backpressure {
                wait: Duration::from_millis(c.overload_wait_ms),
                stall: Duration::from_millis(c.overload_stall_ms),
            }),
        }
    }
}

/// What a push dropped to stay within the limits.
#[derive(Debug, Default)]
pub struct Dropped {
    /// The deliveries dropped: the new one, or older ones.
    pub deliveries: Vec<Delivery>,
    /// The limit that was in the way (none when the queue simply does not
    /// take QoS 0 while offline).
    pub limit: Option<Limit>,
}

impl Dropped {
    /// Whether nothing was dropped.
    pub fn is_empty(&self) -> bool {
        self.deliveries.is_empty()
    }
}

/// Deliveries in the order they are to be sent.
#[derive(Debug, Default)]
pub struct MessageQueue {
    items: VecDeque<Delivery>,
    bytes: u64,
    qos0: usize,
}

impl MessageQueue {
    /// Calls `f` with each queued delivery, in order (to mark them
    /// stored; sizes must not change).
    pub fn for_each_mut(&mut self, f: impl FnMut(&mut Delivery)) {
        self.items.iter_mut().for_each(f);
    }

    /// Number of queued deliveries.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Bytes of queued deliveries, as `max_bytes` counts them.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Queues `delivery` within `limits`, dropping what the policy says
    /// when full. Returns the deliveries dropped (possibly `delivery`
    /// itself), so the caller can count them and re-route shared ones, and
    /// the limit that made the queue full.
    pub fn push(&mut self, delivery: Delivery, online: bool, limits: &QueueLimits) -> Dropped {
        let mut dropped = Dropped::default();
        if !online && delivery.qos == QoS::AtMostOnce && !limits.qos0_offline {
            dropped.deliveries.push(delivery);
            return dropped;
        }
        let max = if online {
            limits.max_online
        } else {
            limits.max_offline
        };
        let size = delivery.message.size() as u64;
        let full = |q: &Self| {
            if q.items.len() >= max {
                Some(Limit::QueuedMessages)
            } else if limits.max_bytes > 0 && q.bytes + size > limits.max_bytes {
                Some(Limit::QueuedBytes)
            } else {
                None
            }
        };
        while let Some(limit) = full(self).filter(|_| !self.items.is_empty()) {
            dropped.limit = Some(limit);
            if delivery.qos == QoS::AtMostOnce {
                dropped.deliveries.push(delivery);
                return dropped;
            }
            if self.qos0 > 0 {
                if let Some(i) = self.items.iter().position(|d| d.qos == QoS::AtMostOnce) {
                    if let Some(d) = self.remove_at(i) {
                        dropped.deliveries.push(d);
                    }
                    continue;
                }
            }
            match limits.overflow {
                OverflowPolicy::DropNewest => {
                    dropped.deliveries.push(delivery);
                    return dropped;
                }
                OverflowPolicy::DropOldest => {
                    if let Some(d) = self.pop_front() {
                        dropped.deliveries.push(d);
                    }
                }
            }
        }
        if max == 0 {
            dropped.limit = Some(Limit::QueuedMessages);
            dropped.deliveries.push(delivery);
            return dropped;
        }
        self.bytes += size;
        if delivery.qos == QoS::AtMostOnce {
            self.qos0 += 1;
        }
        self.items.push_back(delivery);
        dropped
    }

    /// The delivery at the front, if any.
    pub fn front(&self) -> Option<&Delivery> {
        self.items.front()
    }

    /// Takes the delivery at the front.
    pub fn pop_front(&mut self) -> Option<Delivery> {
        let d = self.items.pop_front()?;
        self.account_removed(&d);
        Some(d)
    }

    /// Puts a delivery back at the front (it could not be sent yet).
    pub fn push_front(&mut self, d: Delivery) {
        self.bytes += d.message.size() as u64;
        if d.qos == QoS::AtMostOnce {
            self.qos0 += 1;
        }
        self.items.push_front(d);
    }

    /// Takes everything, e.g. when the session ends.
    pub fn drain(&mut self) -> impl Iterator<Item = Delivery> + '_ {
        self.bytes = 0;
        self.qos0 = 0;
        self.items.drain(..)
    }

    /// Drops QoS 0 deliveries, as a session going offline does when QoS 0
    /// is not queued for offline clients. Returns how many.
    pub fn drop_qos0(&mut self) -> usize {
        let before = self.items.len();
        self.items.retain(|d| d.qos != QoS::AtMostOnce);
        self.qos0 = 0;
        self.bytes = self.items.iter().map(|d| d.message.size() as u64).sum();
        before - self.items.len()
    }

    fn remove_at(&mut self, i: usize) -> Option<Delivery> {
        let d = self.items.remove(i)?;
        self.account_removed(&d);
        Some(d)
    }

    fn account_removed(&mut self, d: &Delivery) {
        self.bytes = self.bytes.saturating_sub(d.message.size() as u64);
        if d.qos == QoS::AtMostOnce {
            self.qos0 = self.qos0.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::codec::MessageProperties;
    use crate::message::Message;
    use crate::topic::TopicName;

    fn delivery(qos: QoS, tag: &str) -> Delivery {
        Delivery {
            message: Arc::new(Message {
                topic: TopicName::new("t").unwrap(),
                payload: bytes::Bytes::copy_from_slice(tag.as_bytes()),
                qos,
                retain: false,
                properties: MessageProperties::default(),
                expires_at: None,
            }),
            qos,
            retain: false,
            subscription_ids: Vec::new(),
            shared: None,
            stored: None,
        }
    }

    fn limits(max: usize, overflow: OverflowPolicy) -> QueueLimits {
        QueueLimits {
            max_online: max,
            max_offline: max,
            max_bytes: 0,
            qos0_offline: false,
            overflow,
            backpressure: None,
        }
    }

    fn tags(q: &MessageQueue) -> Vec<String> {
        q.items
            .iter()
            .map(|d| String::from_utf8_lossy(&d.message.payload).into_owned())
            .collect()
    }

    #[test]
    fn qos0_is_dropped_first() {
        let l = limits(2, OverflowPolicy::DropNewest);
        let mut q = MessageQueue::default();
        assert!(q.push(delivery(QoS::AtMostOnce, "a"), true, &l).is_empty());
        assert!(q.push(delivery(QoS::AtLeastOnce, "b"), true, &l).is_empty());
        // Full: a QoS 1 arrival evicts the queued QoS 0.
        let dropped = q.push(delivery(QoS::AtLeastOnce, "c"), true, &l);
        assert_eq!(dropped.deliveries.len(), 1);
        assert_eq!(dropped.limit, Some(Limit::QueuedMessages));
        assert_eq!(tags(&q), ["b", "c"]);
        // Full of QoS 1: a QoS 0 arrival is dropped.
        let dropped = q.push(delivery(QoS::AtMostOnce, "d"), true, &l);
        assert_eq!(dropped.deliveries.len(), 1);
        // Drop newest.
        let dropped = q.push(delivery(QoS::AtLeastOnce, "e"), true, &l);
        assert_eq!(&dropped.deliveries[0].message.payload[..], b"e");
        assert_eq!(tags(&q), ["b", "c"]);
    }

    #[test]
    fn drop_oldest() {
        let l = limits(2, OverflowPolicy::DropOldest);
        let mut q = MessageQueue::default();
        for t in ["a", "b", "c"] {
            q.push(delivery(QoS::AtLeastOnce, t), true, &l);
        }
        assert_eq!(tags(&q), ["b", "c"]);
    }

    #[test]
    fn offline_qos0_not_queued_by_default() {
        let l = limits(10, OverflowPolicy::DropNewest);
        let mut q = MessageQueue::default();
        let dropped = q.push(delivery(QoS::AtMostOnce, "a"), false, &l);
        assert_eq!((dropped.deliveries.len(), dropped.limit), (1, None));
        assert!(q.is_empty());
        let l = QueueLimits {
            qos0_offline: true,
            ..l
        };
        assert!(q.push(delivery(QoS::AtMostOnce, "a"), false, &l).is_empty());
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn byte_limit() {
        let each = delivery(QoS::AtLeastOnce, "a").message.size() as u64;
        let l = QueueLimits {
            max_bytes: 2 * each + 1,
            ..limits(100, OverflowPolicy::DropOldest)
        };
        let mut q = MessageQueue::default();
        for t in ["a", "b"] {
            assert!(q.push(delivery(QoS::AtLeastOnce, t), true, &l).is_empty());
        }
        let dropped = q.push(delivery(QoS::AtLeastOnce, "c"), true, &l);
        assert_eq!(dropped.limit, Some(Limit::QueuedBytes));
        assert_eq!(tags(&q), ["b", "c"]);
        assert_eq!(q.bytes, 2 * each);
    }
}
