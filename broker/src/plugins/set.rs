//! One version of the loaded plugins: the list in chain order and the
//! chains precomputed from it. A set never changes once built; a reload
//! builds a new one and swaps it in (see `reload`), and calls in flight
//! keep the set they started with.

use std::sync::Arc;

use super::hooks::HookSet;
use super::plugin::{Hook, Plugin};
use crate::codec::ProtocolVersion;

/// The plugins of one conditional chain, per protocol family: a plugin
/// serves MQTT 3.x clients with its v3 hook, and MQTT 5 clients with its m5
/// hook, or its v3 hook when it has no m5 one.
#[derive(Debug, Default)]
pub(super) struct Chain {
    v3: Vec<Arc<Plugin>>,
    v5: Vec<Arc<Plugin>>,
}

impl Chain {
    fn new(list: &[Arc<Plugin>], v3: Hook, m5: Hook) -> Self {
        let keep = |hooks: &[Hook]| -> Vec<Arc<Plugin>> {
            list.iter()
                .filter(|p| hooks.iter().any(|h| p.implements(*h)))
                .cloned()
                .collect()
        };
        Chain {
            v3: keep(&[v3]),
            v5: keep(&[v3, m5]),
        }
    }

    pub(super) fn get(&self, version: ProtocolVersion) -> &[Arc<Plugin>] {
        if version.is_v5() { &self.v5 } else { &self.v3 }
    }
}

/// The loaded plugins, in chain order, with their chains.
#[derive(Debug, Default)]
pub(super) struct PluginSet {
    pub(super) list: Vec<Arc<Plugin>>,
    /// Every hook some plugin implements.
    pub(super) exported: HookSet,
    pub(super) register: Chain,
    pub(super) auth_enhanced: Vec<Arc<Plugin>>,
    pub(super) subscribe: Chain,
    pub(super) unsubscribe: Chain,
    pub(super) publish: Chain,
    pub(super) deliver: Chain,
}

impl PluginSet {
    /// The set of `list`, sorted into chain order: plugins with a
    /// `priority` first, lowest first, then the rest; the sort is stable,
    /// so `list` should come in file-name order.
    pub(super) fn new(mut list: Vec<Arc<Plugin>>) -> PluginSet {
        list.sort_by_key(|p| (p.settings.priority.is_none(), p.settings.priority));
        PluginSet {
            exported: list
                .iter()
                .fold(HookSet::default(), |set, p| set.union(p.hooks())),
            register: Chain::new(&list, Hook::AuthOnRegister, Hook::AuthOnRegisterM5),
            auth_enhanced: list
                .iter()
                .filter(|p| p.implements(Hook::OnAuthM5))
                .cloned()
                .collect(),
            subscribe: Chain::new(&list, Hook::AuthOnSubscribe, Hook::AuthOnSubscribeM5),
            unsubscribe: Chain::new(&list, Hook::OnUnsubscribe, Hook::OnUnsubscribeM5),
            publish: Chain::new(&list, Hook::AuthOnPublish, Hook::AuthOnPublishM5),
            deliver: Chain::new(&list, Hook::OnDeliver, Hook::OnDeliverM5),
            list,
        }
    }

    /// The plugin named `name`.
    pub(super) fn get(&self, name: &str) -> Option<&Arc<Plugin>> {
        self.list.iter().find(|p| &*p.name == name)
    }

    /// The chain order, for logs.
    pub(super) fn order(&self) -> String {
        let names: Vec<&str> = self.list.iter().map(|p| &*p.name).collect();
        format!("[{}]", names.join(", "))
    }
}
