//! The hooks a plugin may export, named once: the [`Hook`] enum the broker
//! uses, the export indices looked up once per plugin at load, and the
//! typed exports loaded into each instance. Adding a hook is one line in
//! the table below (plus its WIT interface and where the broker calls it).

use wasmtime::Store;
use wasmtime::component::InstancePre;

use super::bindings::exports::sluice::plugin::{
    auth_on_deliver, auth_on_publish, auth_on_publish_m5, auth_on_register, auth_on_register_m5,
    auth_on_subscribe, auth_on_subscribe_m5, lifecycle, on_auth_m5, on_client_gone,
    on_client_offline, on_client_wakeup, on_deliver, on_deliver_m5, on_message_drop,
    on_offline_message, on_publish, on_publish_m5, on_register, on_register_m5, on_session_expired,
    on_subscribe, on_subscribe_m5, on_topic_unsubscribed, on_unsubscribe, on_unsubscribe_m5,
};
use super::host::PluginState;

macro_rules! hooks {
    ($($variant:ident => $field:ident, $wit:literal;)*) => {
        /// The hooks a plugin may implement.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Hook {
            $($variant,)*
        }

        const COUNT: usize = [$($wit),*].len();

        impl Hook {
            /// Every hook.
            pub const ALL: [Hook; COUNT] = [$(Hook::$variant),*];

            /// The WIT name.
            pub fn name(self) -> &'static str {
                match self {
                    $(Hook::$variant => $wit,)*
                }
            }

            /// This hook's bit in a [`HookSet`].
            const fn bit(self) -> u32 {
                1 << self as u32
            }
        }

        /// Hook interfaces a component exports, looked up once at load.
        #[derive(Default)]
        pub(super) struct Hooks {
            lifecycle: Option<lifecycle::GuestIndices>,
            $($field: Option<$field::GuestIndices>,)*
        }

        impl Hooks {
            pub(super) fn find(pre: &InstancePre<PluginState>) -> Self {
                Hooks {
                    lifecycle: lifecycle::GuestIndices::new(pre).ok(),
                    $($field: $field::GuestIndices::new(pre).ok(),)*
                }
            }

            /// The hooks found.
            pub(super) fn set(&self) -> HookSet {
                let mut set = HookSet::default();
                $(if self.$field.is_some() {
                    set.insert(Hook::$variant);
                })*
                set
            }

            pub(super) fn load(
                &self,
                store: &mut Store<PluginState>,
                instance: &wasmtime::component::Instance,
            ) -> wasmtime::Result<Guests> {
                Ok(Guests {
                    lifecycle: match &self.lifecycle {
                        Some(i) => Some(i.load(&mut *store, instance)?),
                        None => None,
                    },
                    $($field: match &self.$field {
                        Some(i) => Some(i.load(&mut *store, instance)?),
                        None => None,
                    },)*
                })
            }
        }

        /// The typed exports of one instance.
        pub struct Guests {
            pub lifecycle: Option<lifecycle::Guest>,
            $(pub $field: Option<$field::Guest>,)*
        }
    };
}

hooks! {
    AuthOnRegister => auth_on_register, "auth-on-register";
    AuthOnRegisterM5 => auth_on_register_m5, "auth-on-register-m5";
    OnAuthM5 => on_auth_m5, "on-auth-m5";
    OnRegister => on_register, "on-register";
    OnRegisterM5 => on_register_m5, "on-register-m5";
    OnClientWakeup => on_client_wakeup, "on-client-wakeup";
    OnClientOffline => on_client_offline, "on-client-offline";
    OnClientGone => on_client_gone, "on-client-gone";
    OnSessionExpired => on_session_expired, "on-session-expired";
    AuthOnSubscribe => auth_on_subscribe, "auth-on-subscribe";
    AuthOnSubscribeM5 => auth_on_subscribe_m5, "auth-on-subscribe-m5";
    OnSubscribe => on_subscribe, "on-subscribe";
    OnSubscribeM5 => on_subscribe_m5, "on-subscribe-m5";
    OnUnsubscribe => on_unsubscribe, "on-unsubscribe";
    OnUnsubscribeM5 => on_unsubscribe_m5, "on-unsubscribe-m5";
    OnTopicUnsubscribed => on_topic_unsubscribed, "on-topic-unsubscribed";
    AuthOnPublish => auth_on_publish, "auth-on-publish";
    AuthOnPublishM5 => auth_on_publish_m5, "auth-on-publish-m5";
    OnPublish => on_publish, "on-publish";
    OnPublishM5 => on_publish_m5, "on-publish-m5";
    AuthOnDeliver => auth_on_deliver, "auth-on-deliver";
    OnDeliver => on_deliver, "on-deliver";
    OnDeliverM5 => on_deliver_m5, "on-deliver-m5";
    OnOfflineMessage => on_offline_message, "on-offline-message";
    OnMessageDrop => on_message_drop, "on-message-drop";
}

/// A set of hooks, one bit each: asking whether some plugin implements a
/// hook is one load and a mask on the message path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HookSet(u32);

const _: () = assert!(COUNT <= 32, "HookSet holds 32 hooks");

impl HookSet {
    pub fn insert(&mut self, hook: Hook) {
        self.0 |= hook.bit();
    }

    pub fn contains(self, hook: Hook) -> bool {
        self.0 & hook.bit() != 0
    }

    /// Whether any hook is in both sets.
    pub fn intersects(self, other: HookSet) -> bool {
        self.0 & other.0 != 0
    }

    pub fn union(self, other: HookSet) -> HookSet {
        HookSet(self.0 | other.0)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The set as bits (for an atomic copy).
    pub(super) fn bits(self) -> u32 {
        self.0
    }

    /// The set `bits` came from.
    pub(super) fn from_bits(bits: u32) -> HookSet {
        HookSet(bits)
    }

    /// The hooks in the set, in [`Hook::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = Hook> {
        Hook::ALL.into_iter().filter(move |h| self.contains(*h))
    }

    /// How many hooks of the set come before `hook` in [`Hook::ALL`]
    /// order: its index among the set's hooks, when the set holds it.
    pub(super) fn rank(self, hook: Hook) -> usize {
        (self.0 & (hook.bit() - 1)).count_ones() as usize
    }

    /// The hooks in both sets.
    pub fn intersection(self, other: HookSet) -> HookSet {
        HookSet(self.0 & other.0)
    }

    /// The hooks that decide whether a client may do something: a plugin
    /// exporting one is required by default (see `set::Missing`).
    pub fn auth() -> HookSet {
        [
            Hook::AuthOnRegister,
            Hook::AuthOnRegisterM5,
            Hook::OnAuthM5,
            Hook::AuthOnSubscribe,
            Hook::AuthOnSubscribeM5,
            Hook::AuthOnPublish,
            Hook::AuthOnPublishM5,
            Hook::AuthOnDeliver,
        ]
        .into_iter()
        .collect()
    }
}

impl FromIterator<Hook> for HookSet {
    fn from_iter<I: IntoIterator<Item = Hook>>(iter: I) -> Self {
        let mut set = HookSet::default();
        for h in iter {
            set.insert(h);
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hook_sets() {
        let mut set = HookSet::default();
        assert!(set.is_empty());
        set.insert(Hook::OnMessageDrop);
        set.insert(Hook::AuthOnRegister);
        assert!(set.contains(Hook::OnMessageDrop));
        assert!(!set.contains(Hook::OnPublish));
        assert_eq!(
            set.iter().collect::<Vec<_>>(),
            [Hook::AuthOnRegister, Hook::OnMessageDrop]
        );
        let other: HookSet = [Hook::OnPublish].into_iter().collect();
        assert!(!set.intersects(other));
        assert!(set.union(other).contains(Hook::OnPublish));
        assert_eq!(Hook::OnDeliverM5.name(), "on-deliver-m5");
        assert_eq!(set.rank(Hook::AuthOnRegister), 0);
        assert_eq!(set.rank(Hook::OnMessageDrop), 1);
        assert_eq!(
            set.rank(Hook::OnPublish),
            1,
            "not in the set: where it would go"
        );
    }
}
