//! Test fixture for publishing from plugins: every message a client
//! publishes comes back on `echo/<topic>`, published by this plugin from
//! its `on-publish`. Its `auth-on-publish` refuses clients the `echo/`
//! topics (and accepts the rest): since the broker asks neither hook about
//! the plugin's own messages, its echoes pass and are never echoed again.

wit_bindgen::generate!({
    inline: r#"
        package fixtures:echo;
        world echo {
            include sluice:plugin/imports@0.1.0;
            export sluice:plugin/auth-on-publish@0.1.0;
            export sluice:plugin/on-publish@0.1.0;
        }
    "#,
    path: "../../../wit",
    generate_all,
});

use exports::sluice::plugin::auth_on_publish::{self, PublishVerdict};
use exports::sluice::plugin::on_publish;
use sluice::plugin::host::{self, Publication};
use sluice::plugin::types::{Payload, Qos, SubscriberId};

struct Echo;

impl auth_on_publish::Guest for Echo {
    fn auth_on_publish(
        _username: Option<String>,
        _subscriber_id: SubscriberId,
        _qos: Qos,
        topic: String,
        _payload: &Payload,
        _retain: bool,
        _is_will: bool,
    ) -> PublishVerdict {
        if topic.starts_with("echo/") {
            PublishVerdict::Error("echo/ is the echo plugin's".into())
        } else {
            PublishVerdict::Ok(None)
        }
    }
}

impl on_publish::Guest for Echo {
    fn on_publish(
        _username: Option<String>,
        _subscriber_id: SubscriberId,
        qos: Qos,
        topic: String,
        payload: &Payload,
        retain: bool,
    ) {
        let echo = Publication {
            topic: format!("echo/{topic}"),
            payload: payload.read(),
            qos,
            retain,
            properties: None,
        };
        if let Err(e) = host::publish(&echo) {
            host::log(host::LogLevel::Info, &format!("echo refused: {e:?}"));
        }
    }
}

export!(Echo);
