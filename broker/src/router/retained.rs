//! The retained messages of every mountpoint: a [`RetainTree`] each, the
//! totals that `limits.max_retained_messages` and
//! `limits.max_retained_bytes` bound, and an index of expiry times, so that
//! expired messages are removed by looking at those alone instead of
//! walking the trees.

use std::collections::{BTreeSet, HashMap};
use std::ops::ControlFlow;
use std::sync::Arc;

use tokio::time::Instant;

use crate::config::LimitsConfig;
use crate::limits::Limit;
use crate::message::Message;
use crate::retain::RetainTree;
use crate::topic::{TopicFilter, TopicName};

/// The retained-store limits (`usize::MAX`: none).
#[derive(Clone, Copy, Debug)]
pub(crate) struct RetainedLimits {
    messages: usize,
    bytes: usize,
}

impl RetainedLimits {
    pub(crate) fn from_config(c: &LimitsConfig) -> Self {
        let or_none = |n: u64| match n {
            0 => usize::MAX,
            n => usize::try_from(n).unwrap_or(usize::MAX),
        };
        RetainedLimits {
            messages: or_none(c.max_retained_messages),
            bytes: or_none(c.max_retained_bytes),
        }
    }
}

/// Retained messages by mountpoint, with their totals.
#[derive(Debug)]
pub(crate) struct RetainedStore {
    trees: HashMap<Arc<str>, RetainTree<Arc<Message>>>,
    count: usize,
    bytes: usize,
    /// (expiry, mountpoint, topic) of every retained message that expires.
    expiries: BTreeSet<(Instant, Arc<str>, TopicName)>,
    limits: RetainedLimits,
}

impl RetainedStore {
    pub(crate) fn new(limits: RetainedLimits) -> Self {
        RetainedStore {
            trees: HashMap::new(),
            count: 0,
            bytes: 0,
            expiries: BTreeSet::new(),
            limits,
        }
    }

    /// Stores `message` as the retained message of its topic, or clears
    /// the topic when the payload is empty. A new topic past the message
    /// limit, or a message that grows the total past the byte limit, is
    /// refused (and the old message kept).
    pub(crate) fn set(
        &mut self,
        mountpoint: &Arc<str>,
        message: &Arc<Message>,
    ) -> Result<(), Limit> {
        if message.payload.is_empty() {
            self.remove(mountpoint, &message.topic);
            return Ok(());
        }
        let size = message.size();
        let old = self
            .trees
            .get(mountpoint)
            .and_then(|t| t.get(&message.topic))
            .map(|m| m.size());
        if old.is_none() && self.count >= self.limits.messages {
            return Err(Limit::RetainedMessages);
        }
        let old_size = old.unwrap_or(0);
        if size > old_size && self.bytes - old_size + size > self.limits.bytes {
            return Err(Limit::RetainedBytes);
        }
        let replaced = self
            .trees
            .entry(mountpoint.clone())
            .or_default()
            .insert(&message.topic, message.clone());
        if let Some(old) = replaced {
            self.forget(mountpoint, &old);
        }
        self.count += 1;
        self.bytes += size;
        if let Some(at) = message.expires_at {
            self.expiries
                .insert((at, mountpoint.clone(), message.topic.clone()));
        }
        Ok(())
    }

    /// Clears `topic`.
    pub(crate) fn remove(&mut self, mountpoint: &Arc<str>, topic: &TopicName) {
        let Some(tree) = self.trees.get_mut(mountpoint) else {
            return;
        };
        let removed = tree.remove(topic);
        if tree.is_empty() {
            self.trees.remove(mountpoint);
        }
        if let Some(old) = removed {
            self.forget(mountpoint, &old);
        }
    }

    /// Takes a message that left its tree out of the totals and the index.
    fn forget(&mut self, mountpoint: &Arc<str>, old: &Arc<Message>) {
        self.count -= 1;
        self.bytes = self.bytes.saturating_sub(old.size());
        if let Some(at) = old.expires_at {
            self.expiries
                .remove(&(at, mountpoint.clone(), old.topic.clone()));
        }
    }

    /// Removes the messages for which `keep(mountpoint, topic)` is false,
    /// `$SYS` topics aside; returns how many went.
    pub(crate) fn keep_only(&mut self, mut keep: impl FnMut(&str, &str) -> bool) -> usize {
        let mut gone = Vec::new();
        for (mountpoint, tree) in &self.trees {
            tree.for_each(|m| {
                if !m.topic.is_sys() && !keep(mountpoint, m.topic.as_str()) {
                    gone.push((mountpoint.clone(), m.topic.clone()));
                }
            });
        }
        for (mountpoint, topic) in &gone {
            self.remove(mountpoint, topic);
        }
        gone.len()
    }

    /// Calls `visit` with every unexpired retained message of `mountpoint`
    /// matching `filter`, until it breaks.
    pub(crate) fn for_each_match(
        &self,
        mountpoint: &str,
        filter: &TopicFilter,
        now: Instant,
        mut visit: impl FnMut(&Arc<Message>) -> ControlFlow<()>,
    ) {
        if let Some(tree) = self.trees.get(mountpoint) {
            let _ = tree.try_for_each_match(filter, |m| {
                if m.is_expired(now) {
                    ControlFlow::Continue(())
                } else {
                    visit(m)
                }
            });
        }
    }

    /// Removes the messages expired at `now`; the work is proportional to
    /// their number.
    pub(crate) fn purge_expired(&mut self, now: Instant) {
        while let Some(first) = self.expiries.first() {
            if first.0 > now {
                break;
            }
            let Some((_, mountpoint, topic)) = self.expiries.pop_first() else {
                break;
            };
            // The index holds exactly the messages in the trees: this one
            // is the one stored for `topic`.
            if let Some(tree) = self.trees.get_mut(&mountpoint) {
                if let Some(old) = tree.remove(&topic) {
                    self.count -= 1;
                    self.bytes = self.bytes.saturating_sub(old.size());
                }
                if tree.is_empty() {
                    self.trees.remove(&mountpoint);
                }
            }
        }
    }

    /// When the next message expires, if any does.
    pub(crate) fn next_expiry(&self) -> Option<Instant> {
        self.expiries.first().map(|e| e.0)
    }

    /// Number of retained messages.
    pub(crate) fn len(&self) -> usize {
        self.count
    }

    /// Bytes of retained messages, as the byte limit counts them.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;
    use crate::codec::{MessageProperties, QoS};

    fn message(topic: &str, payload: &str, expires_at: Option<Instant>) -> Arc<Message> {
        Arc::new(Message {
            topic: TopicName::new(topic).unwrap(),
            payload: Bytes::copy_from_slice(payload.as_bytes()),
            qos: QoS::AtMostOnce,
            retain: true,
            properties: MessageProperties::default(),
            expires_at,
        })
    }

    fn store(messages: u64, bytes: u64) -> RetainedStore {
        RetainedStore::new(RetainedLimits::from_config(&LimitsConfig {
            max_retained_messages: messages,
            max_retained_bytes: bytes,
            ..LimitsConfig::default()
        }))
    }

    fn topics(s: &RetainedStore, mountpoint: &str, filter: &str) -> Vec<String> {
        let mut out = Vec::new();
        s.for_each_match(
            mountpoint,
            &TopicFilter::new(filter).unwrap(),
            Instant::now(),
            |m| {
                out.push(m.topic.to_string());
                ControlFlow::Continue(())
            },
        );
        out.sort();
        out
    }

    #[test]
    fn counts_and_bytes_follow_sets_replacements_and_clears() {
        let mp: Arc<str> = Arc::from("");
        let mut s = store(0, 0);
        s.set(&mp, &message("a", "xx", None)).unwrap();
        s.set(&mp, &message("b", "y", None)).unwrap();
        let one = message("a", "xx", None).size();
        assert_eq!((s.len(), s.bytes()), (2, one * 2 - 1));
        s.set(&mp, &message("a", "xxxx", None)).unwrap();
        assert_eq!((s.len(), s.bytes()), (2, one * 2 + 1));
        s.set(&mp, &message("a", "", None)).unwrap();
        assert_eq!((s.len(), s.bytes()), (1, one - 1));
        s.remove(&mp, &TopicName::new("b").unwrap());
        assert_eq!((s.len(), s.bytes()), (0, 0));
        assert!(s.trees.is_empty());
    }

    #[test]
    fn limits_refuse_new_topics_and_growth_but_not_replacements() {
        let mp: Arc<str> = Arc::from("");
        let size = message("t/1", "x", None).size() as u64;
        let mut s = store(2, 3 * size);
        s.set(&mp, &message("t/1", "x", None)).unwrap();
        s.set(&mp, &message("t/2", "x", None)).unwrap();
        assert_eq!(
            s.set(&mp, &message("t/3", "x", None)),
            Err(Limit::RetainedMessages)
        );
        // Replacing is fine, and so is growing within the byte limit.
        s.set(&mp, &message("t/1", "y", None)).unwrap();
        let grown = "z".repeat(size as usize);
        s.set(&mp, &message("t/2", &grown, None)).unwrap();
        assert_eq!(
            s.set(&mp, &message("t/1", &grown, None)),
            Err(Limit::RetainedBytes)
        );
        assert_eq!(topics(&s, "", "t/+"), ["t/1", "t/2"]);
        // Clearing makes room.
        s.set(&mp, &message("t/2", "", None)).unwrap();
        s.set(&mp, &message("t/3", "x", None)).unwrap();
        assert_eq!(topics(&s, "", "#"), ["t/1", "t/3"]);
    }

    #[tokio::test(start_paused = true)]
    async fn expired_messages_are_purged_through_the_index() {
        let mp: Arc<str> = Arc::from("m");
        let now = Instant::now();
        let soon = Some(now + Duration::from_secs(1));
        let later = Some(now + Duration::from_secs(10));
        let mut s = store(0, 0);
        s.set(&mp, &message("a", "1", soon)).unwrap();
        s.set(&mp, &message("b", "1", soon)).unwrap();
        s.set(&mp, &message("c", "1", None)).unwrap();
        // Replaced with a later expiry: the earlier one leaves the index.
        s.set(&mp, &message("b", "2", later)).unwrap();
        assert_eq!(s.expiries.len(), 2);
        assert_eq!(s.next_expiry(), soon);
        s.purge_expired(now + Duration::from_secs(2));
        assert_eq!(topics(&s, "m", "#"), ["b", "c"]);
        assert_eq!(s.len(), 2);
        s.purge_expired(now + Duration::from_secs(10));
        assert_eq!(topics(&s, "m", "#"), ["c"]);
        assert_eq!(s.next_expiry(), None);
        s.remove(&mp, &TopicName::new("c").unwrap());
        assert_eq!((s.len(), s.bytes(), s.trees.len()), (0, 0, 0));
    }

    #[test]
    fn visits_stop_when_asked() {
        let mp: Arc<str> = Arc::from("");
        let mut s = store(0, 0);
        for i in 0..100 {
            s.set(&mp, &message(&format!("t/{i}"), "x", None)).unwrap();
        }
        let mut seen = 0;
        s.for_each_match(
            "",
            &TopicFilter::new("t/#").unwrap(),
            Instant::now(),
            |_| {
                seen += 1;
                if seen == 10 {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            },
        );
        assert_eq!(seen, 10);
    }
}
