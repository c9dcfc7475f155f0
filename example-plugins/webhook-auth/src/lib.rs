//! Example plugin: authentication and publish authorization by an HTTP
//! service the operator already runs (EMQX's HTTP auth protocol, VerneMQ's
//! webhooks). Each CONNECT (and, with `publish_url`, each PUBLISH) is POSTed
//! as JSON; the answer allows, denies or passes to the next plugin.
//!
//! The broker grants the URLs (`http_allow` in `[plugin.webhook-auth]`),
//! caps every request's timeouts and response size, and suspends the hook
//! while the request is in flight: a slow service never blocks the broker,
//! and the hook's deadline (`deadline_ms`) still ends the call. Accepted
//! logins are cached in the key-value store and accepted publishes through
//! `cache-secs`, both for `cache_secs`.
//!
//! Settings (`[plugin.webhook-auth.config]`): `url` (required), `publish_url`,
//! `timeout_ms` (default 1000), `on_error` (`deny` or `next`, default
//! `deny`), `cache_secs` (default 0).

mod client;
mod decision;

use std::time::Duration;

use decision::{Decision, OnError};
use sha2::{Digest, Sha256};
use sluice_plugin_sdk::{Denial, FromConfig, Plugin, PublishModifiers, PublishRequest};
use sluice_plugin_sdk::{PublishVerdict, RegisterRequest, RegisterVerdict, SubscriberId};
use sluice_plugin_sdk::{Settings as Values, debug, kv, unix_time, warn};

struct Settings {
    url: String,
    publish_url: Option<String>,
    timeout: Duration,
    on_error: OnError,
    cache_secs: u32,
}

impl FromConfig for Settings {
    fn from_config(c: &Values) -> Result<Self, String> {
        Ok(Settings {
            url: c.require("url")?.to_owned(),
            publish_url: c.get("publish_url").map(str::to_owned),
            timeout: Duration::from_millis(c.parse("timeout_ms")?.unwrap_or(1000)),
            on_error: OnError::parse(c.get("on_error"))?,
            cache_secs: c.parse("cache_secs")?.unwrap_or(0),
        })
    }
}

/// Asks the service at `url` about `body`.
fn ask(s: &Settings, url: &str, body: &str) -> Decision {
    match client::post_json(url, body.as_bytes(), s.timeout) {
        Ok(r) => decision::decide(r.status, &r.body, s.on_error),
        Err(why) => {
            warn!("{url}: {why}");
            s.on_error
                .decide(format!("HTTP service unavailable: {why}"))
        }
    }
}

/// The key-value key of an accepted login (the password only as a hash).
fn login_key(id: &SubscriberId, username: Option<&str>, password: Option<&[u8]>) -> String {
    let mut h = Sha256::new();
    for part in [
        id.mountpoint.as_bytes(),
        id.client_id.as_bytes(),
        username.unwrap_or_default().as_bytes(),
        password.unwrap_or_default(),
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    let digest = h.finalize();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("login/{hex}")
}

fn cached_login(key: &str) -> bool {
    kv::get(key)
        .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
        .is_some_and(|until| u64::from_be_bytes(until) > unix_time())
}

struct WebhookAuth;

#[sluice_plugin_sdk::plugin]
impl Plugin for WebhookAuth {
    type Config = Settings;

    fn init(s: &Settings) -> Result<(), String> {
        debug!("webhook-auth asking {}", s.url);
        Ok(())
    }

    fn auth_on_register(s: &Settings, req: RegisterRequest) -> RegisterVerdict {
        let (id, username) = (&req.subscriber_id, req.username.as_deref());
        let key = login_key(id, username, req.password.as_deref());
        if s.cache_secs > 0 && cached_login(&key) {
            return RegisterVerdict::Ok(None);
        }
        let peer = format!("{}:{}", req.conn.peer.addr, req.conn.peer.port);
        let password = req.password.as_deref();
        let body =
            decision::register_body(&id.client_id, &id.mountpoint, username, password, &peer);
        match ask(s, &s.url, &body) {
            Decision::Allow => {
                if s.cache_secs > 0 {
                    let until = unix_time() + u64::from(s.cache_secs);
                    let _ = kv::set(&key, &until.to_be_bytes());
                }
                RegisterVerdict::Ok(None)
            }
            Decision::Deny(why) => RegisterVerdict::Error(Denial::InvalidCredentials(why)),
            Decision::Ignore => RegisterVerdict::Next,
        }
    }

    fn auth_on_publish(s: &Settings, req: PublishRequest<'_>) -> PublishVerdict {
        let Some(url) = &s.publish_url else {
            return PublishVerdict::Next;
        };
        let id = &req.subscriber_id;
        let body = decision::publish_body(
            &id.client_id,
            &id.mountpoint,
            req.username.as_deref(),
            &req.topic,
            u8::from(req.qos),
            req.retain,
        );
        match ask(s, url, &body) {
            Decision::Allow => PublishVerdict::Ok(
                (s.cache_secs > 0).then(|| PublishModifiers::new().cache_secs(s.cache_secs)),
            ),
            Decision::Deny(why) => PublishVerdict::Error(why),
            Decision::Ignore => PublishVerdict::Next,
        }
    }
}
