//! Acceptances a connection may reuse without asking its plugins again:
//! `auth-on-publish` ones for what the client publishes, `auth-on-deliver`
//! ones for what it is sent, each for as long as the plugin said
//! (`cache-secs`) and only under the plugin set that said it.

use std::collections::HashMap;

use tokio::time::Instant;

use crate::codec::QoS;
use crate::topic::TopicName;

/// Cached acceptances kept per connection and direction; beyond this the
/// oldest half is dropped.
const CACHE_ENTRIES: usize = 64;

/// A connection's reusable acceptances.
#[derive(Debug, Default)]
pub(super) struct Caches {
    /// Of its PUBLISHes (`auth-on-publish(-m5)`).
    pub publish: Acceptances,
    /// Of deliveries to it (`auth-on-deliver`).
    pub read: Acceptances,
}

/// Acceptances a plugin chain said may be reused: per topic, when the
/// acceptance lapses for each QoS and RETAIN flag; all of them given by
/// one version of the plugin set (`generation`), and forgotten when it
/// changes.
#[derive(Debug, Default)]
pub(super) struct Acceptances {
    entries: HashMap<TopicName, [Option<Instant>; 6]>,
    generation: u64,
}

fn slot(qos: QoS, retain: bool) -> usize {
    qos as usize * 2 + usize::from(retain)
}

impl Acceptances {
    pub(super) fn allows(
        &self,
        generation: u64,
        topic: &TopicName,
        qos: QoS,
        retain: bool,
        now: Instant,
    ) -> bool {
        generation == self.generation
            && self
                .entries
                .get(topic)
                .and_then(|lapses| lapses[slot(qos, retain)])
                .is_some_and(|until| until > now)
    }

    pub(super) fn insert(
        &mut self,
        generation: u64,
        topic: TopicName,
        qos: QoS,
        retain: bool,
        until: Instant,
    ) {
        if generation != self.generation {
            self.entries.clear();
            self.generation = generation;
        }
        if self.entries.len() >= CACHE_ENTRIES && !self.entries.contains_key(&topic) {
            let now = Instant::now();
            let latest = |l: &[Option<Instant>; 6]| l.iter().flatten().max().copied();
            self.entries
                .retain(|_, l| latest(l).is_some_and(|t| t > now));
            if self.entries.len() >= CACHE_ENTRIES {
                // Still full of live entries: keep the later half.
                let mut lapses: Vec<Instant> = self.entries.values().filter_map(latest).collect();
                lapses.sort_unstable();
                let cut = lapses[lapses.len() / 2];
                self.entries
                    .retain(|_, l| latest(l).is_some_and(|t| t > cut));
            }
        }
        self.entries.entry(topic).or_default()[slot(qos, retain)] = Some(until);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn last_topic() -> TopicName {
        TopicName::new("t/999").unwrap()
    }

    #[tokio::test]
    async fn cache_entries_lapse_and_stay_bounded() {
        let mut cache = Acceptances::default();
        let now = Instant::now();
        let t = TopicName::new("a/b").unwrap();
        assert!(!cache.allows(0, &t, QoS::AtMostOnce, false, now));
        cache.insert(
            0,
            t.clone(),
            QoS::AtMostOnce,
            false,
            now + Duration::from_secs(5),
        );
        assert!(cache.allows(0, &t, QoS::AtMostOnce, false, now));
        // Another QoS or RETAIN flag is another question.
        assert!(!cache.allows(0, &t, QoS::AtLeastOnce, false, now));
        assert!(!cache.allows(0, &t, QoS::AtMostOnce, true, now));
        assert!(!cache.allows(0, &t, QoS::AtMostOnce, false, now + Duration::from_secs(6)));
        for i in 0..1000 {
            let topic = TopicName::new(&format!("t/{i}")).unwrap();
            cache.insert(
                0,
                topic,
                QoS::AtMostOnce,
                false,
                now + Duration::from_secs(60 + i),
            );
        }
        assert!(cache.entries.len() <= CACHE_ENTRIES);
        // Another QoS of a cached topic adds no entry.
        cache.insert(
            0,
            last_topic(),
            QoS::AtLeastOnce,
            false,
            now + Duration::from_secs(1),
        );
        assert!(cache.entries.len() <= CACHE_ENTRIES);
        // The latest entries survive.
        let last = TopicName::new("t/999").unwrap();
        assert!(cache.allows(0, &last, QoS::AtMostOnce, false, now));
    }

    #[tokio::test]
    async fn a_new_plugin_set_forgets_every_acceptance() {
        let mut cache = Acceptances::default();
        let now = Instant::now();
        let t = TopicName::new("a/b").unwrap();
        let later = now + Duration::from_secs(60);
        cache.insert(0, t.clone(), QoS::AtMostOnce, false, later);
        assert!(cache.allows(0, &t, QoS::AtMostOnce, false, now));
        assert!(!cache.allows(1, &t, QoS::AtMostOnce, false, now));
        let u = TopicName::new("c").unwrap();
        cache.insert(1, u.clone(), QoS::AtMostOnce, false, later);
        assert_eq!(cache.entries.len(), 1, "the old set's entries are gone");
        assert!(cache.allows(1, &u, QoS::AtMostOnce, false, now));
    }
}
