//! The hook table: for each hook interface of the WIT package, its
//! function's parameters and answer, and how the generated `Guest`
//! implementation builds the SDK's request from them. A hook is added here
//! and in the SDK's `Plugin` trait; the tests check this table against the
//! WIT (every exported hook, with its parameters in order) and the WIT
//! copy against the repository's.

use proc_macro2::{Ident, TokenStream};
use quote::quote;

/// One hook interface.
pub struct Hook {
    /// The WIT interface (and function) name.
    pub wit: &'static str,
    /// The WIT function's parameter names, as Rust identifiers.
    #[cfg_attr(
        not(test),
        allow(dead_code, reason = "checked against the WIT by the tests")
    )]
    pub params: &'static [&'static str],
    /// The `Guest` implementation for the interface module, forwarding to
    /// the plugin's method.
    pub guest: fn(&Ident, &Ident) -> TokenStream,
}

/// The hooks serving a `Plugin` method: one, two for an `_any` method (the
/// MQTT 3 and MQTT 5 forms), none if it is not a hook.
pub fn served_by(method: &str) -> Vec<&'static Hook> {
    let find = |wit: &str| HOOKS.iter().find(|h| h.wit == wit);
    match method.strip_suffix("_any") {
        Some(base) => {
            let base = base.replace('_', "-");
            match (find(&base), find(&format!("{base}-m5"))) {
                (Some(v3), Some(m5)) => vec![v3, m5],
                _ => Vec::new(),
            }
        }
        None => find(&method.replace('_', "-")).into_iter().collect(),
    }
}

macro_rules! hooks {
    ($($wit:literal $fun:ident ($($arg:ident : $ty:ty),*) $(-> $ret:ty)? => { $($build:tt)* };)*) => {
        static HOOKS: &[Hook] = &[$(
            Hook {
                wit: $wit,
                params: &[$(stringify!($arg)),*],
                guest: |module, method| quote! {
                    impl exports::sluice::plugin::#module::Guest for Exports {
                        fn $fun($($arg: $ty),*) $(-> $ret)? {
                            let req = { $($build)* };
                            hook(&CONFIG, |c| <P as Plugin>::#method(c, req).into())
                        }
                    }
                },
            },
        )*];
    };
}

hooks! {
    "auth-on-register" auth_on_register(
        conn: Connection, subscriber_id: SubscriberId, username: Option<String>,
        password: Option<Vec<u8>>, clean_session: bool
    ) -> RegisterVerdict => {
        RegisterRequest { conn, subscriber_id, username, password, clean_start: clean_session, properties: None }
    };
    "auth-on-register-m5" auth_on_register_m5(
        conn: Connection, subscriber_id: SubscriberId, username: Option<String>,
        password: Option<Vec<u8>>, clean_start: bool, properties: ConnectProperties
    ) -> RegisterVerdictM5 => {
        RegisterRequest { conn, subscriber_id, username, password, clean_start, properties: Some(properties) }
    };
    "on-auth-m5" on_auth_m5(
        conn: Connection, subscriber_id: SubscriberId, request: AuthRequest
    ) -> AuthVerdict => {
        EnhancedAuthRequest { conn, subscriber_id, auth: request }
    };
    "on-register" on_register(peer: Peer, subscriber_id: SubscriberId, username: Option<String>) => {
        RegisteredEvent { peer, subscriber_id, username, properties: None }
    };
    "on-register-m5" on_register_m5(
        peer: Peer, subscriber_id: SubscriberId, username: Option<String>,
        properties: ConnectProperties
    ) => {
        RegisteredEvent { peer, subscriber_id, username, properties: Some(properties) }
    };
    "on-client-wakeup" on_client_wakeup(subscriber_id: SubscriberId) => { subscriber_id };
    "on-client-offline" on_client_offline(subscriber_id: SubscriberId) => { subscriber_id };
    "on-client-gone" on_client_gone(subscriber_id: SubscriberId) => { subscriber_id };
    "on-session-expired" on_session_expired(subscriber_id: SubscriberId) => { subscriber_id };
    "auth-on-subscribe" auth_on_subscribe(
        username: Option<String>, subscriber_id: SubscriberId, topics: Vec<TopicRequest>
    ) -> SubscribeVerdict => {
        let topics = topics.into_iter().map(TopicSubscription::from).collect();
        SubscribeRequest { username, subscriber_id, topics, properties: None }
    };
    "auth-on-subscribe-m5" auth_on_subscribe_m5(
        username: Option<String>, subscriber_id: SubscriberId, topics: Vec<TopicSubscription>,
        properties: SubscribeProperties
    ) -> SubscribeVerdictM5 => {
        SubscribeRequest { username, subscriber_id, topics, properties: Some(properties) }
    };
    "on-subscribe" on_subscribe(
        username: Option<String>, subscriber_id: SubscriberId, topics: Vec<TopicSubscription>
    ) => {
        SubscribedEvent { username, subscriber_id, topics, properties: None }
    };
    "on-subscribe-m5" on_subscribe_m5(
        username: Option<String>, subscriber_id: SubscriberId, topics: Vec<TopicSubscription>,
        properties: SubscribeProperties
    ) => {
        SubscribedEvent { username, subscriber_id, topics, properties: Some(properties) }
    };
    "on-unsubscribe" on_unsubscribe(
        username: Option<String>, subscriber_id: SubscriberId, topics: Vec<String>
    ) -> UnsubscribeVerdict => {
        UnsubscribeRequest { username, subscriber_id, topics, user_properties: None }
    };
    "on-unsubscribe-m5" on_unsubscribe_m5(
        username: Option<String>, subscriber_id: SubscriberId, topics: Vec<String>,
        user_properties: UserProperties
    ) -> UnsubscribeVerdictM5 => {
        UnsubscribeRequest { username, subscriber_id, topics, user_properties: Some(user_properties) }
    };
    "on-topic-unsubscribed" on_topic_unsubscribed(
        subscriber_id: SubscriberId, topics: Unsubscribed
    ) => {
        UnsubscribedEvent { subscriber_id, topics }
    };
    "auth-on-publish" auth_on_publish(
        username: Option<String>, subscriber_id: SubscriberId, qos: Qos, topic: String,
        payload: &Payload, retain: bool, is_will: bool
    ) -> PublishVerdict => {
        PublishRequest { username, subscriber_id, qos, topic, payload, retain, is_will, properties: None }
    };
    "auth-on-publish-m5" auth_on_publish_m5(
        username: Option<String>, subscriber_id: SubscriberId, qos: Qos, topic: String,
        payload: &Payload, retain: bool, properties: MessageProperties, is_will: bool
    ) -> PublishVerdictM5 => {
        PublishRequest { username, subscriber_id, qos, topic, payload, retain, is_will, properties: Some(properties) }
    };
    "on-publish" on_publish(
        username: Option<String>, subscriber_id: SubscriberId, qos: Qos, topic: String,
        payload: &Payload, retain: bool
    ) => {
        PublishedEvent { username, subscriber_id, qos, topic, payload, retain, properties: None }
    };
    "on-publish-m5" on_publish_m5(
        username: Option<String>, subscriber_id: SubscriberId, qos: Qos, topic: String,
        payload: &Payload, retain: bool, properties: MessageProperties
    ) => {
        PublishedEvent { username, subscriber_id, qos, topic, payload, retain, properties: Some(properties) }
    };
    "auth-on-deliver" auth_on_deliver(
        username: Option<String>, subscriber_id: SubscriberId, qos: Qos, topic: String,
        payload: &Payload, retain: bool
    ) -> DeliverAuthVerdict => {
        DeliverRequest { username, subscriber_id, qos, topic, payload, retain, properties: None }
    };
    "on-deliver" on_deliver(
        username: Option<String>, subscriber_id: SubscriberId, qos: Qos, topic: String,
        payload: &Payload, retain: bool
    ) -> DeliverVerdict => {
        DeliverRequest { username, subscriber_id, qos, topic, payload, retain, properties: None }
    };
    "on-deliver-m5" on_deliver_m5(
        username: Option<String>, subscriber_id: SubscriberId, qos: Qos, topic: String,
        payload: &Payload, retain: bool, properties: MessageProperties
    ) -> DeliverVerdictM5 => {
        DeliverRequest { username, subscriber_id, qos, topic, payload, retain, properties: Some(properties) }
    };
    "on-offline-message" on_offline_message(
        subscriber_id: SubscriberId, qos: Qos, topic: String, payload: &Payload, retain: bool
    ) => {
        OfflineMessageEvent { subscriber_id, qos, topic, payload, retain }
    };
    "on-message-drop" on_message_drop(
        subscriber_id: SubscriberId, qos: Qos, topic: String, payload: &Payload,
        reason: DropReason
    ) => {
        MessageDropEvent { subscriber_id, qos, topic, payload, reason }
    };
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::fs;
    use std::path::Path;

    use super::*;

    fn wit_files(dir: &Path) -> BTreeMap<String, String> {
        let Ok(entries) = fs::read_dir(dir) else {
            return BTreeMap::new();
        };
        entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "wit"))
            .filter_map(|p| {
                let name = p.file_name()?.to_string_lossy().into_owned();
                Some((name, fs::read_to_string(&p).ok()?))
            })
            .collect()
    }

    fn own_wit() -> BTreeMap<String, String> {
        wit_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("wit"))
    }

    /// Inside the repository, both of the SDK's copies are the broker's
    /// WIT (`cargo xtask sync-wit` makes them so).
    #[test]
    fn the_wit_copies_are_the_repository_wit() {
        let own = own_wit();
        assert!(own.contains_key("worlds.wit"));
        let here = Path::new(env!("CARGO_MANIFEST_DIR"));
        let reference = here.join("../../wit");
        if !reference.join("worlds.wit").is_file() {
            return; // packaged: no repository around
        }
        let reference = wit_files(&reference);
        for copy in [here.join("wit"), here.join("../wit")] {
            assert!(
                wit_files(&copy) == reference,
                "{} differs from wit/: run `cargo xtask sync-wit`",
                copy.display()
            );
        }
    }

    /// The table holds every hook the WIT's `plugin` world exports (but
    /// `lifecycle`), each with its WIT function's parameters in order.
    #[test]
    fn the_table_is_the_wit() {
        let wit = own_wit();
        let worlds = &wit["worlds.wit"];
        let world = worlds
            .split("world plugin {")
            .nth(1)
            .and_then(|w| w.split('}').next())
            .unwrap_or_default();
        let exported: Vec<&str> = world
            .lines()
            .filter_map(|l| l.trim().strip_prefix("export ")?.strip_suffix(';'))
            .filter(|i| *i != "lifecycle")
            .collect();
        let table: Vec<&str> = HOOKS.iter().map(|h| h.wit).collect();
        assert_eq!(
            table, exported,
            "the hook table is not the plugin world's exports"
        );
        let all: String = wit.values().map(String::as_str).collect();
        for hook in HOOKS {
            let start = format!("\n    {}: func(", hook.wit);
            let params = all
                .split(start.as_str())
                .nth(1)
                .and_then(|rest| rest.split(')').next())
                .unwrap_or_else(|| panic!("no function {} in the WIT", hook.wit));
            let names: Vec<String> = params
                .split(',')
                .filter_map(|p| Some(p.split(':').next()?.trim().replace('-', "_")))
                .filter(|p| !p.is_empty())
                .collect();
            assert_eq!(names, hook.params, "parameters of {}", hook.wit);
        }
    }
}
