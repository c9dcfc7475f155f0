//! The router's side of the cluster (see `crate::cluster`): it tells the
//! cluster which filters its subscriptions need, sends what is published
//! here to the other nodes, and delivers what they publish.

use std::sync::Arc;

use super::{Router, read, write};
use crate::cluster::Cluster;
use crate::limits::Limit;
use crate::message::Message;
use crate::subscriptions::ClientKey;
use crate::topic::{Subscription, TopicFilter, TopicName};

impl Router {
    /// Joins `cluster`: from now on subscriptions are its interest and
    /// publishes go to it. Subscriptions already here (restored from the
    /// store) become interest at once.
    pub(crate) fn join_cluster(&self, cluster: Arc<Cluster>) {
        let _ = self.cluster.set(cluster);
    }

    /// The cluster this node is part of, if any.
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.cluster.get()
    }

    pub(super) fn tell_cluster(
        &self,
        mountpoint: &Arc<str>,
        subscription: &Subscription,
        added: bool,
    ) {
        let Some(cluster) = self.cluster.get() else {
            return;
        };
        match subscription {
            Subscription::Plain(filter) => cluster.interest(mountpoint, filter, None, added),
            Subscription::Shared { group, filter } => {
                cluster.interest(mountpoint, filter, Some(group), added);
            }
        }
    }

    /// Routes a message published on this node, here and, in a cluster, on
    /// every node with matching subscriptions.
    pub fn publish_everywhere(
        &self,
        mountpoint: &Arc<str>,
        publisher: Option<ClientKey>,
        message: &Arc<Message>,
    ) -> usize {
        let Some(cluster) = self.cluster.get() else {
            return self.publish(mountpoint, publisher, message);
        };
        // Shared groups, this node's members included, get the message
        // through their NATS queue subscriptions: one member in the whole
        // cluster.
        let n = self.publish_reaching(mountpoint, publisher, message, false);
        if let Some((link, until)) = cluster.forward(mountpoint, message) {
            Self::note_congested(link, until);
        }
        n
    }

    /// Delivers a message another node published to this node's plain
    /// subscriptions (its shared groups get theirs through their own NATS
    /// queue subscriptions).
    pub(crate) fn deliver_from_cluster(
        &self,
        mountpoint: &Arc<str>,
        message: &Arc<Message>,
    ) -> usize {
        self.publish_reaching(mountpoint, None, message, false)
    }

    /// Delivers a message another node published to one member of the
    /// local shared group `group` on `filter`.
    pub(crate) fn deliver_to_group(
        &self,
        mountpoint: &Arc<str>,
        group: &str,
        filter: &TopicFilter,
        message: &Arc<Message>,
    ) -> bool {
        if !filter.matches(&message.topic) {
            // NATS's `>` also matches `$` topics, which MQTT keeps from
            // leading wildcards.
            return false;
        }
        let trees = read(&self.trees);
        let Some((_, sub)) = trees
            .get(mountpoint)
            .and_then(|t| t.shared_group(group, filter))
            .and_then(|g| g.pick(|s| s.session.is_online()))
        else {
            return false;
        };
        self.enqueue(&sub.session, Self::shared_delivery(sub, message))
    }

    /// Sets (`Some`) or clears the retained message of `topic` from the
    /// cluster's bucket, here and in the node's store, unless `admit`
    /// (asked under the retained store's lock, which orders this node's
    /// own writes to the bucket too) says no. Returns whether it did.
    pub(crate) fn retained_from_cluster(
        &self,
        mountpoint: &Arc<str>,
        topic: &TopicName,
        message: Option<Arc<Message>>,
        admit: impl FnOnce() -> bool,
    ) -> Result<bool, Limit> {
        let mut retained = write(&self.retained);
        if !admit() {
            return Ok(false);
        }
        match message {
            Some(message) => {
                retained.set(mountpoint, &message)?;
                if let Some(store) = &self.store {
                    store.retain(mountpoint, &message);
                }
            }
            None => {
                retained.remove(mountpoint, topic);
                if let Some(store) = &self.store {
                    store.unretain(mountpoint, topic.as_str());
                }
            }
        }
        Ok(true)
    }

    /// Removes the retained messages (`$SYS` aside) for which
    /// `keep(mountpoint, topic)` is false, here and in the node's store;
    /// returns how many went.
    pub(crate) fn retained_keep_only(&self, mut keep: impl FnMut(&str, &str) -> bool) -> usize {
        let mut retained = write(&self.retained);
        let store = self.store.as_ref();
        retained.keep_only(|mountpoint, topic| {
            let kept = keep(mountpoint, topic);
            if let (false, Some(store)) = (kept, store) {
                store.unretain(mountpoint, topic);
            }
            kept
        })
    }
}
