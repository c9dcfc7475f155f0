//! Shared-subscription groups (`$share/{group}/{filter}`): the members of one
//! group and the round-robin choice of the member that gets a message.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::ClientKey;
use super::list::SubList;

/// The members of one `$share/{group}/{filter}`.
#[derive(Debug)]
pub struct SharedGroup<V> {
    name: Box<str>,
    members: SubList<V>,
    /// Where the next [`pick`](Self::pick) starts (modulo the member count).
    /// Atomic so that routing can pick with a shared reference to the tree.
    cursor: AtomicUsize,
}

impl<V> SharedGroup<V> {
    pub(super) fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            members: SubList::new(),
            cursor: AtomicUsize::new(0),
        }
    }

    /// The group name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The members. Their order is unspecified: removing a member moves the
    /// last one into its place.
    pub fn members(&self) -> &[(ClientKey, V)] {
        self.members.as_slice()
    }

    /// The value of `client`'s membership, if it is a member.
    pub fn get(&self, client: ClientKey) -> Option<&V> {
        self.members.get(client)
    }

    pub(super) fn list(&self) -> &SubList<V> {
        &self.members
    }

    pub(super) fn list_mut(&mut self) -> &mut SubList<V> {
        &mut self.members
    }

    /// Picks a member round-robin: the next one for which `eligible` holds,
    /// or the next one regardless when none does. `None` when empty.
    ///
    /// Starts at the cursor and leaves it just past the chosen member.
    /// Concurrent callers each advance the cursor, so they spread over the
    /// members too.
    pub fn pick(&self, eligible: impl Fn(&V) -> bool) -> Option<&(ClientKey, V)> {
        let members = self.members.as_slice();
        let n = members.len();
        if n == 0 {
            return None;
        }
        let raw = self.cursor.fetch_add(1, Ordering::Relaxed);
        let start = raw % n;
        for step in 0..n {
            let at = (start + step) % n;
            let Some(member) = members.get(at) else { break };
            if eligible(&member.1) {
                if step > 0 {
                    // Skip the ineligible ones too, unless another caller
                    // moved the cursor meanwhile (theirs then wins).
                    let _ = self.cursor.compare_exchange(
                        raw.wrapping_add(1),
                        at + 1,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                }
                return Some(member);
            }
        }
        members.get(start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(keys: &[ClientKey]) -> SharedGroup<bool> {
        let mut g = SharedGroup::new("g");
        for &k in keys {
            g.list_mut().insert(k, true);
        }
        g
    }

    #[test]
    fn round_robin() {
        let g = group(&[1, 2, 3]);
        let mut picked: Vec<_> = (0..3)
            .map(|_| g.pick(|_| true).map(|m| m.0))
            .collect::<Option<_>>()
            .unwrap();
        picked.sort_unstable();
        assert_eq!(picked, [1, 2, 3]);
        // And again, in the same order.
        let first: Vec<_> = (0..3).map(|_| g.pick(|_| true).unwrap().0).collect();
        let second: Vec<_> = (0..3).map(|_| g.pick(|_| true).unwrap().0).collect();
        assert_eq!(first, second);
    }

    #[test]
    fn skips_ineligible_members() {
        let mut g = group(&[1, 2, 3]);
        g.list_mut().insert(2, false);
        let picked: Vec<_> = (0..4).map(|_| g.pick(|v| *v).unwrap().0).collect();
        assert!(!picked.contains(&2), "{picked:?}");
        assert!(picked.contains(&1) && picked.contains(&3), "{picked:?}");
        // Alternates between the eligible ones.
        assert!(picked.windows(2).all(|w| w[0] != w[1]), "{picked:?}");
    }

    #[test]
    fn none_eligible_still_picks_round_robin() {
        let g = group(&[1, 2, 3]);
        let mut picked: Vec<_> = (0..3).map(|_| g.pick(|_| false).unwrap().0).collect();
        picked.sort_unstable();
        assert_eq!(picked, [1, 2, 3]);
    }

    #[test]
    fn empty_group_picks_nothing() {
        let g = group(&[]);
        assert!(g.pick(|_| true).is_none());
        assert_eq!(g.name(), "g");
    }
}
