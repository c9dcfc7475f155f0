//! One version of the loaded plugins: the list in chain order and the
//! chains precomputed from it. A set never changes once built; a reload
//! builds a new one and swaps it in (see `reload`), and calls in flight
//! keep the set they started with.

use std::sync::Arc;

use super::hooks::HookSet;
use super::plugin::{Hook, Plugin};
use crate::codec::ProtocolVersion;
use crate::config::Config;

/// The plugins of one conditional chain: every plugin implementing its v3
/// hook or its m5 hook, for clients of every version. A plugin serves
/// MQTT 5 clients with its m5 hook (its v3 hook when it has no m5 one),
/// and MQTT 3.x clients with its v3 hook (its m5 hook, given the call
/// without MQTT 5 properties, when it has no v3 one: see [`Chain::m5_for`]),
/// so that no plugin that checks something leaves a protocol version
/// unchecked.
#[derive(Debug)]
pub(super) struct Chain {
    plugins: Vec<Arc<Plugin>>,
    v3: Hook,
    m5: Hook,
    /// A required plugin serving this chain that is not loaded: the chain
    /// refuses everything until it is back.
    missing: Option<Arc<str>>,
}

impl Chain {
    fn new(list: &[Arc<Plugin>], missing: &[Missing], v3: Hook, m5: Hook) -> Self {
        Chain {
            plugins: list
                .iter()
                .filter(|p| p.implements(v3) || p.implements(m5))
                .cloned()
                .collect(),
            v3,
            m5,
            missing: missing
                .iter()
                .find(|m| m.hooks.contains(v3) || m.hooks.contains(m5))
                .map(|m| m.name.clone()),
        }
    }

    /// The chain, in order.
    pub(super) fn plugins(&self) -> &[Arc<Plugin>] {
        &self.plugins
    }

    /// The required plugin this chain is missing, if any: then it refuses
    /// whatever it is asked (fail closed).
    pub(super) fn missing(&self) -> Option<&str> {
        self.missing.as_deref()
    }

    /// Whether `plugin` is called through its m5 hook for a client of
    /// `version`.
    pub(super) fn m5_for(&self, plugin: &Plugin, version: ProtocolVersion) -> bool {
        plugin.implements(self.m5) && (version.is_v5() || !plugin.implements(self.v3))
    }

    /// The hook `plugin` is called through for a client of `version`.
    pub(super) fn hook_for(&self, plugin: &Plugin, version: ProtocolVersion) -> Hook {
        if self.m5_for(plugin, version) {
            self.m5
        } else {
            self.v3
        }
    }

    /// Whether a client of `version` needs the MQTT 5 form of the
    /// arguments for some plugin of the chain.
    pub(super) fn needs_m5(&self, version: ProtocolVersion) -> bool {
        self.plugins.iter().any(|p| self.m5_for(p, version))
    }
}

/// A required plugin that is not loaded (its file was removed, renamed or
/// disabled, or it failed to load with no version to keep): the
/// authorisation hooks it served refuse until it is back or no longer
/// required (`[plugin.NAME] required = false`). So a deploy that removes
/// the authentication plugin, even for a moment, never lets clients in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Missing {
    pub name: Arc<str>,
    /// Its authorisation hooks.
    pub hooks: HookSet,
}

impl Missing {
    /// The required plugins missing once `list` replaces the plugins of
    /// `current`: those that served an authorisation hook in `current` and
    /// are not in `list`, and those already missing that are still not
    /// back; except those `config` no longer requires.
    pub(super) fn after(
        current: &PluginSet,
        list: &[Arc<Plugin>],
        config: &Config,
    ) -> Vec<Missing> {
        let gone = current
            .list
            .iter()
            .filter(|p| p.is_required())
            .map(|p| Missing {
                name: p.name.clone(),
                hooks: p.hooks().intersection(HookSet::auth()),
            });
        let mut missing: Vec<Missing> = Vec::new();
        for m in gone.chain(current.missing.iter().cloned()) {
            let back = list.iter().any(|p| p.name == m.name);
            let released = config.plugin.get(&*m.name).and_then(|p| p.required) == Some(false);
            if !back && !released && !m.hooks.is_empty() && !missing.contains(&m) {
                missing.push(m);
            }
        }
        missing
    }
}

/// The loaded plugins, in chain order, with their chains.
#[derive(Debug)]
pub(super) struct PluginSet {
    pub(super) list: Vec<Arc<Plugin>>,
    /// Required plugins that are not loaded.
    pub(super) missing: Vec<Missing>,
    /// Every hook some plugin implements, or some missing required plugin
    /// served (its chain then runs, and refuses).
    pub(super) exported: HookSet,
    pub(super) register: Chain,
    pub(super) auth_enhanced: Vec<Arc<Plugin>>,
    /// A missing required plugin that served `on-auth-m5`.
    pub(super) auth_enhanced_missing: Option<Arc<str>>,
    pub(super) subscribe: Chain,
    pub(super) unsubscribe: Chain,
    pub(super) publish: Chain,
    /// `auth-on-deliver`, which has a single form for every protocol
    /// version (its `v3` and `m5` hooks are the same).
    pub(super) deliver_auth: Chain,
    pub(super) deliver: Chain,
}

impl Default for PluginSet {
    /// No plugins.
    fn default() -> Self {
        PluginSet::new(Vec::new(), Vec::new())
    }
}

impl PluginSet {
    /// The set of `list`, sorted into chain order: plugins with a
    /// `priority` first, lowest first, then the rest; the sort is stable,
    /// so `list` should come in file-name order. `missing`: required
    /// plugins that are not loaded.
    pub(super) fn new(mut list: Vec<Arc<Plugin>>, missing: Vec<Missing>) -> PluginSet {
        list.sort_by_key(|p| (p.settings.priority.is_none(), p.settings.priority));
        let m = &missing;
        PluginSet {
            exported: list
                .iter()
                .map(|p| p.hooks())
                .chain(m.iter().map(|m| m.hooks))
                .fold(HookSet::default(), HookSet::union),
            register: Chain::new(&list, m, Hook::AuthOnRegister, Hook::AuthOnRegisterM5),
            auth_enhanced: list
                .iter()
                .filter(|p| p.implements(Hook::OnAuthM5))
                .cloned()
                .collect(),
            auth_enhanced_missing: m
                .iter()
                .find(|m| m.hooks.contains(Hook::OnAuthM5))
                .map(|m| m.name.clone()),
            subscribe: Chain::new(&list, m, Hook::AuthOnSubscribe, Hook::AuthOnSubscribeM5),
            unsubscribe: Chain::new(&list, m, Hook::OnUnsubscribe, Hook::OnUnsubscribeM5),
            publish: Chain::new(&list, m, Hook::AuthOnPublish, Hook::AuthOnPublishM5),
            deliver_auth: Chain::new(&list, m, Hook::AuthOnDeliver, Hook::AuthOnDeliver),
            deliver: Chain::new(&list, m, Hook::OnDeliver, Hook::OnDeliverM5),
            list,
            missing,
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
