//! Test fixture: a plugin with only the MQTT 5 forms of its hooks
//! (`auth-on-register-m5`, `auth-on-subscribe-m5`, `auth-on-publish-m5`,
//! `on-deliver-m5`), to test that the broker consults it for MQTT 3.x
//! clients too (with the MQTT 5 arguments, properties empty): a deny-list
//! ACL written for MQTT 5 must not let MQTT 3.1.1 clients past.
//!
//! Configuration: `deny` (comma-separated): topics whose PUBLISH is
//! refused (0x87) and filters whose SUBSCRIBE is refused (0x87); the user
//! name `denied` is refused at CONNECT (0x87). `stamp` (comma-separated
//! topics): messages on them are delivered with `m5:` before the payload.
//! Each call appends `HOOK TOPIC-OR-USER` to the key `calls`.

wit_bindgen::generate!({
    inline: r#"
        package fixtures:m5-only;
        world m5-only {
            include sluice:plugin/imports@0.1.0;
            export sluice:plugin/auth-on-register-m5@0.1.0;
            export sluice:plugin/auth-on-subscribe-m5@0.1.0;
            export sluice:plugin/auth-on-publish-m5@0.1.0;
            export sluice:plugin/on-deliver-m5@0.1.0;
        }
    "#,
    path: "../../../wit",
    generate_all,
});

use exports::sluice::plugin::auth_on_publish_m5::{self, PublishVerdictM5};
use exports::sluice::plugin::auth_on_register_m5::{self, RegisterVerdictM5};
use exports::sluice::plugin::auth_on_subscribe_m5::{
    self, SubscribeChanges, SubscribeVerdictM5, TopicResultM5,
};
use exports::sluice::plugin::on_deliver_m5::{self, DeliverVerdictM5};
use sluice::plugin::host;
use sluice::plugin::types::{
    ConnectProperties, Connection, DeliverModifiers, M5Denial, M5Error, MessageProperties, Payload,
    Qos, SubscribeProperties, SubscriberId, TopicSubscription,
};

struct M5Only;

fn list(key: &str) -> Vec<String> {
    host::config()
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.split(',').map(str::to_owned).collect())
        .unwrap_or_default()
}

fn record(line: &str) {
    let mut calls = host::kv_get("calls").unwrap_or_default();
    calls.extend_from_slice(line.as_bytes());
    calls.push(b'\n');
    let _ = host::kv_set("calls", &calls);
}

fn denied() -> M5Error {
    M5Error {
        reason_code: 0x87,
        reason_string: Some("denied by m5-only".into()),
    }
}

impl auth_on_register_m5::Guest for M5Only {
    fn auth_on_register_m5(
        _conn: Connection,
        _subscriber_id: SubscriberId,
        username: Option<String>,
        _password: Option<Vec<u8>>,
        _clean_start: bool,
        _properties: ConnectProperties,
    ) -> RegisterVerdictM5 {
        let user = username.unwrap_or_default();
        record(&format!("auth-on-register-m5 {user}"));
        if user == "denied" {
            RegisterVerdictM5::Error(M5Denial {
                reason_code: 0x87,
                reason_string: None,
                server_reference: None,
            })
        } else {
            RegisterVerdictM5::Ok(None)
        }
    }
}

impl auth_on_subscribe_m5::Guest for M5Only {
    fn auth_on_subscribe_m5(
        _username: Option<String>,
        _subscriber_id: SubscriberId,
        topics: Vec<TopicSubscription>,
        _properties: SubscribeProperties,
    ) -> SubscribeVerdictM5 {
        let deny = list("deny");
        let results = topics
            .into_iter()
            .map(|t| {
                record(&format!("auth-on-subscribe-m5 {}", t.filter));
                if deny.contains(&t.filter) {
                    TopicResultM5::Rejected(0x87)
                } else {
                    TopicResultM5::Granted(t)
                }
            })
            .collect();
        SubscribeVerdictM5::Ok(Some(SubscribeChanges {
            topics: Some(results),
            reason_string: None,
            user_properties: Vec::new(),
        }))
    }
}

impl auth_on_publish_m5::Guest for M5Only {
    fn auth_on_publish_m5(
        _username: Option<String>,
        _subscriber_id: SubscriberId,
        _qos: Qos,
        topic: String,
        _payload: &Payload,
        _retain: bool,
        _properties: MessageProperties,
        _is_will: bool,
    ) -> PublishVerdictM5 {
        record(&format!("auth-on-publish-m5 {topic}"));
        if list("deny").contains(&topic) {
            PublishVerdictM5::Error(denied())
        } else {
            PublishVerdictM5::Ok(None)
        }
    }
}

impl on_deliver_m5::Guest for M5Only {
    fn on_deliver_m5(
        _username: Option<String>,
        _subscriber_id: SubscriberId,
        _qos: Qos,
        topic: String,
        payload: &Payload,
        _retain: bool,
        _properties: MessageProperties,
    ) -> DeliverVerdictM5 {
        record(&format!("on-deliver-m5 {topic}"));
        if !list("stamp").contains(&topic) {
            return DeliverVerdictM5::Ok(None);
        }
        let mut stamped = b"m5:".to_vec();
        stamped.extend(payload.read());
        DeliverVerdictM5::Ok(Some(DeliverModifiers {
            topic: None,
            payload: Some(stamped),
            properties: None,
        }))
    }
}

export!(M5Only);
