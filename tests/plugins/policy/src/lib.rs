//! Test fixture: an authentication plugin whose answers come from its
//! configuration (verdict, modifiers), which records every hook call in its
//! key-value store, and which implements every session hook. On TLS and
//! WebSocket listeners it also records the connection (listener, client
//! certificate) and can refuse a certificate subject (`deny_subject`).

wit_bindgen::generate!({
    inline: r#"
        package fixtures:policy;
        world policy {
            include sluice:plugin/imports@0.1.0;
            export sluice:plugin/lifecycle@0.1.0;
            export sluice:plugin/auth-on-register@0.1.0;
            export sluice:plugin/auth-on-register-m5@0.1.0;
            export sluice:plugin/on-register@0.1.0;
            export sluice:plugin/on-register-m5@0.1.0;
            export sluice:plugin/on-client-wakeup@0.1.0;
            export sluice:plugin/on-client-offline@0.1.0;
            export sluice:plugin/on-client-gone@0.1.0;
            export sluice:plugin/on-session-expired@0.1.0;
        }
    "#,
    path: "../../../wit",
    generate_all,
});

include!("common.rs");

use exports::sluice::plugin::{
    auth_on_register_m5, on_client_gone, on_client_offline, on_client_wakeup, on_register,
    on_register_m5, on_session_expired,
};
use sluice::plugin::types::{ConnectProperties, M5Denial, Peer};

impl auth_on_register_m5::Guest for Policy {
    fn auth_on_register_m5(
        conn: Connection,
        subscriber_id: SubscriberId,
        username: Option<String>,
        password: Option<Vec<u8>>,
        _clean_start: bool,
        _properties: ConnectProperties,
    ) -> auth_on_register_m5::RegisterVerdictM5 {
        use auth_on_register_m5::RegisterVerdictM5;
        record("auth-on-register-m5", &subscriber_id);
        match decide(
            &conn,
            &subscriber_id,
            username.as_deref(),
            password.as_deref(),
        ) {
            Decision::Ok(m) => RegisterVerdictM5::Ok(m),
            Decision::Next => RegisterVerdictM5::Next,
            Decision::Deny(why) => RegisterVerdictM5::Error(M5Denial {
                reason_code: number("reason_code").unwrap_or(0x86),
                reason_string: Some(why),
                server_reference: setting("server_reference"),
            }),
        }
    }
}

impl on_register::Guest for Policy {
    fn on_register(_peer: Peer, subscriber_id: SubscriberId, username: Option<String>) {
        let hook = format!("on-register[{}]", username.unwrap_or_default());
        record(&hook, &subscriber_id);
    }
}

impl on_register_m5::Guest for Policy {
    fn on_register_m5(
        _peer: Peer,
        subscriber_id: SubscriberId,
        username: Option<String>,
        _properties: ConnectProperties,
    ) {
        let hook = format!("on-register-m5[{}]", username.unwrap_or_default());
        record(&hook, &subscriber_id);
    }
}

impl on_client_wakeup::Guest for Policy {
    fn on_client_wakeup(subscriber_id: SubscriberId) {
        record("on-client-wakeup", &subscriber_id);
    }
}

impl on_client_offline::Guest for Policy {
    fn on_client_offline(subscriber_id: SubscriberId) {
        record("on-client-offline", &subscriber_id);
    }
}

impl on_client_gone::Guest for Policy {
    fn on_client_gone(subscriber_id: SubscriberId) {
        record("on-client-gone", &subscriber_id);
    }
}

impl on_session_expired::Guest for Policy {
    fn on_session_expired(subscriber_id: SubscriberId) {
        record("on-session-expired", &subscriber_id);
    }
}

export!(Policy);
