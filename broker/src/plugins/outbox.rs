//! Messages plugins publish (the host function `publish`). A plugin's call
//! is checked at once, against its own rate (`publish_per_sec`, a token
//! bucket) and the broker's topic and size limits, and queued without
//! waiting; one task of the broker (`crate::publications`) then takes the
//! queue, passes each message through the other plugins' `auth-on-publish`
//! and routes it as a client's PUBLISH.
//!
//! Architecture invariant: a plugin's `publish` never waits and never runs
//! a hook; the queue is bounded in messages and bytes, and a full queue is
//! the plugin's `busy` error, not memory.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::bindings::sluice::plugin::host::{Publication as WitPublication, PublishError};
use super::messages;
use crate::codec::{MessageProperties, QoS};
use crate::limits::MessageLimits;
use crate::topic::TopicName;

/// Publications waiting for the broker's task.
const QUEUE: usize = 4096;
/// Bytes of publications waiting (payloads and properties).
const QUEUE_BYTES: usize = 16 << 20;

/// A message a plugin published, checked and waiting to be routed.
#[derive(Debug)]
pub struct Publication {
    /// The publishing plugin: its own publish hooks are skipped.
    pub plugin: Arc<str>,
    pub mountpoint: Arc<str>,
    pub topic: TopicName,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    pub properties: MessageProperties,
    /// Message Expiry Interval, seconds.
    pub expiry: Option<u32>,
    size: usize,
    queued: Arc<AtomicUsize>,
}

impl Drop for Publication {
    fn drop(&mut self) {
        self.queued.fetch_sub(self.size, Ordering::Relaxed);
    }
}

/// The queue every plugin's publications go through, one per [`Plugins`].
///
/// [`Plugins`]: super::Plugins
#[derive(Debug)]
pub struct Outbox {
    tx: mpsc::Sender<Publication>,
    rx: Mutex<Option<mpsc::Receiver<Publication>>>,
    limits: MessageLimits,
    queued: Arc<AtomicUsize>,
}

impl Outbox {
    /// An outbox whose messages must stay within `limits`.
    pub fn new(limits: MessageLimits) -> Arc<Outbox> {
        let (tx, rx) = mpsc::channel(QUEUE);
        Arc::new(Outbox {
            tx,
            rx: Mutex::new(Some(rx)),
            limits,
            queued: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// The receiving end, once: the broker's task that routes publications.
    pub fn take(&self) -> Option<mpsc::Receiver<Publication>> {
        self.rx.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// One plugin's right to publish: where to, how fast, and what it did.
#[derive(Debug)]
pub struct Publisher {
    outbox: Option<Arc<Outbox>>,
    mountpoint: Arc<str>,
    bucket: Mutex<Bucket>,
    /// Messages queued.
    pub published: AtomicU64,
    /// Calls refused (rate, limits, queue full).
    pub refused: AtomicU64,
    /// Queued messages the other plugins' `auth-on-publish` refused.
    pub denied: AtomicU64,
}

impl Publisher {
    /// Publishing into `mountpoint` through `outbox`, at most `per_sec`
    /// messages a second (bursts of as many); 0 or no outbox: never.
    pub fn new(outbox: Option<Arc<Outbox>>, mountpoint: Arc<str>, per_sec: u32) -> Publisher {
        Publisher {
            outbox,
            mountpoint,
            bucket: Mutex::new(Bucket::new(per_sec)),
            published: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            denied: AtomicU64::new(0),
        }
    }

    /// Checks and queues `message` from plugin `plugin`.
    pub fn publish(&self, plugin: &Arc<str>, message: WitPublication) -> Result<(), PublishError> {
        let result = self.check_and_queue(plugin, message);
        match &result {
            Ok(()) => self.published.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.refused.fetch_add(1, Ordering::Relaxed),
        };
        result
    }

    fn check_and_queue(
        &self,
        plugin: &Arc<str>,
        message: WitPublication,
    ) -> Result<(), PublishError> {
        let Some(outbox) = &self.outbox else {
            return Err(PublishError::NotAllowed);
        };
        if self
            .bucket
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .per_sec
            == 0
        {
            return Err(PublishError::NotAllowed);
        }
        let topic = checked_topic(&message.topic, &outbox.limits)?;
        let (properties, expiry) = match message.properties {
            Some(p) => messages::properties_from(p).map_err(|_| PublishError::InvalidProperties)?,
            None => (MessageProperties::default(), None),
        };
        messages::within_size(message.payload.len(), Some(&properties), &outbox.limits)
            .map_err(|_| PublishError::TooLarge)?;
        if !self
            .bucket
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take(Instant::now())
        {
            return Err(PublishError::RateLimited);
        }
        let size = topic.as_str().len() + message.payload.len() + properties.size();
        let queued = outbox.queued.fetch_add(size, Ordering::Relaxed);
        // Built before the check, so that its drop gives the bytes back.
        let publication = Publication {
            plugin: plugin.clone(),
            mountpoint: self.mountpoint.clone(),
            topic,
            payload: Bytes::from(message.payload),
            qos: messages::qos_from(message.qos),
            retain: message.retain,
            properties,
            expiry,
            size,
            queued: outbox.queued.clone(),
        };
        if queued + size > QUEUE_BYTES {
            return Err(PublishError::Busy);
        }
        outbox
            .tx
            .try_send(publication)
            .map_err(|_| PublishError::Busy)
    }
}

/// A topic a plugin may publish to: a valid topic name within the
/// operator's limits, and not the broker's own (`$…`).
fn checked_topic(topic: &str, limits: &MessageLimits) -> Result<TopicName, PublishError> {
    if topic.starts_with('$') {
        return Err(PublishError::InvalidTopic);
    }
    messages::limited_topic("topic", topic, limits).map_err(|_| PublishError::InvalidTopic)
}

/// A token bucket: `per_sec` tokens a second, holding at most `per_sec`.
#[derive(Debug)]
struct Bucket {
    per_sec: u32,
    tokens: f64,
    at: Option<Instant>,
}

impl Bucket {
    fn new(per_sec: u32) -> Bucket {
        Bucket {
            per_sec,
            tokens: f64::from(per_sec),
            at: None,
        }
    }

    /// Takes a token if there is one at `now`.
    fn take(&mut self, now: Instant) -> bool {
        let rate = f64::from(self.per_sec);
        if let Some(at) = self.at {
            let refill = now.saturating_duration_since(at).as_secs_f64() * rate;
            self.tokens = (self.tokens + refill).min(rate);
        }
        self.at = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn bucket_allows_bursts_then_its_rate() {
        let mut b = Bucket::new(10);
        let t = Instant::now();
        assert_eq!((0..15).filter(|_| b.take(t)).count(), 10);
        // A tenth of a second later: one more.
        let t = t + Duration::from_millis(100);
        assert!(b.take(t));
        assert!(!b.take(t));
        // A long pause refills to the burst, no more.
        let t = t + Duration::from_secs(60);
        assert_eq!((0..15).filter(|_| b.take(t)).count(), 10);
    }

    #[test]
    fn zero_rate_never_allows() {
        let mut b = Bucket::new(0);
        let t = Instant::now();
        assert!(!b.take(t));
        assert!(!b.take(t + Duration::from_secs(5)));
    }

    fn limits() -> MessageLimits {
        MessageLimits::from_config(&crate::Config::default())
    }

    fn publication(topic: &str, payload: usize) -> WitPublication {
        WitPublication {
            topic: topic.into(),
            payload: vec![0; payload],
            qos: messages::qos(QoS::AtLeastOnce),
            retain: false,
            properties: None,
        }
    }

    #[test]
    fn checks_topic_size_rate_and_queue() {
        let outbox = Outbox::new(limits());
        let p = Publisher::new(Some(outbox.clone()), "".into(), 2);
        let name: Arc<str> = "audit".into();
        for bad in ["", "a/+", "a/#", "$SYS/x", "a\0b"] {
            assert_eq!(
                p.publish(&name, publication(bad, 1)),
                Err(PublishError::InvalidTopic),
                "{bad:?}"
            );
        }
        let huge = limits().max_payload + 1;
        assert_eq!(
            p.publish(&name, publication("a", huge)),
            Err(PublishError::TooLarge)
        );
        assert_eq!(p.publish(&name, publication("a", 3)), Ok(()));
        assert_eq!(p.publish(&name, publication("b", 3)), Ok(()));
        assert_eq!(
            p.publish(&name, publication("c", 3)),
            Err(PublishError::RateLimited)
        );
        assert_eq!(p.published.load(Ordering::Relaxed), 2);
        assert_eq!(p.refused.load(Ordering::Relaxed), 7);
        let mut rx = outbox.take().expect("receiver");
        assert!(outbox.take().is_none());
        let first = rx.try_recv().expect("queued");
        assert_eq!(
            (first.topic.as_str(), &*first.plugin, first.qos),
            ("a", "audit", QoS::AtLeastOnce)
        );
        assert!(outbox.queued.load(Ordering::Relaxed) >= 8);
        drop(first);
        drop(rx);
        assert_eq!(outbox.queued.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn without_outbox_or_rate_publishing_is_off() {
        let name: Arc<str> = "p".into();
        let none = Publisher::new(None, "".into(), 100);
        assert_eq!(
            none.publish(&name, publication("a", 1)),
            Err(PublishError::NotAllowed)
        );
        let zero = Publisher::new(Some(Outbox::new(limits())), "".into(), 0);
        assert_eq!(
            zero.publish(&name, publication("a", 1)),
            Err(PublishError::NotAllowed)
        );
    }
}
