//! The `webhook-auth` example against a real HTTP service on 127.0.0.1:
//! logins and publishes allowed and denied by the service, a failing and a
//! slow service and an oversized answer (fail closed), a URL outside
//! `http_allow`, and the caches that keep the service off the hot path.

use std::time::Duration;

use super::*;
use crate::support::http::{HttpServer, Reply, Request};

/// The service: by username, allow `ann`, deny `bob`, fail for `err`, be
/// slow for `slow`; publishes allowed under `ok/`.
fn service(r: &Request) -> Reply {
    if r.body["action"] == "publish" {
        let topic = r.body["topic"].as_str().unwrap_or_default();
        return Reply::result(
            200,
            if topic.starts_with("ok/") {
                "allow"
            } else {
                "deny"
            },
        );
    }
    match r.body["username"].as_str() {
        Some("ann") => Reply::result(200, "allow"),
        Some("err") => Reply::result(500, "allow"),
        // An allowing answer past http_max_response_bytes.
        Some("big") => Reply {
            body: serde_json::json!({ "result": "allow", "pad": "x".repeat(8192) }).to_string(),
            ..Reply::result(200, "allow")
        },
        Some("slow") => Reply {
            delay: Duration::from_secs(10),
            ..Reply::result(200, "allow")
        },
        _ => Reply::result(200, "deny"),
    }
}

/// A broker with webhook-auth asking `server` (granted `allow`), with
/// `pairs` as its configuration.
fn webhook_broker(dir: &PluginDir, allow: Vec<String>, pairs: &[(&str, &str)]) -> TestBroker {
    webhook_broker_with(dir, allow, pairs, |_| {})
}

/// [`webhook_broker`], with `tweak` applied to the plugin's section.
fn webhook_broker_with(
    dir: &PluginDir,
    allow: Vec<String>,
    pairs: &[(&str, &str)],
    tweak: impl FnOnce(&mut sluice_broker::config::PluginConfig),
) -> TestBroker {
    dir.add("webhook-auth", "webhook-auth");
    broker_with(dir, |c| {
        let section = c.plugin.entry("webhook-auth".into()).or_default();
        section.http_allow = allow;
        section.http_timeout_ms = Some(300);
        section.http_max_response_bytes = Some(4096);
        // Room for a real request in a debug build; the slow service is cut
        // by http_timeout_ms long before.
        section.deadline_ms = Some(5_000);
        tweak(section);
        plugin_config(c, "webhook-auth", pairs);
    })
}

/// The CONNACK code for an MQTT 3.1.1 login.
async fn login(broker: &TestBroker, client: &str, user: &str) -> u8 {
    connack(broker, &connect_v4_login(client, true, user, "pw"))
        .await
        .1
        .connack()
        .1
}

fn count(server: &HttpServer, action: &str) -> usize {
    server
        .requests()
        .iter()
        .filter(|r| r.body["action"] == action)
        .count()
}

#[tokio::test]
async fn logins_follow_the_http_service_and_fail_closed() {
    let server = HttpServer::start(service).await;
    let dir = PluginDir::new();
    let url = server.url("/mqtt/auth");
    let broker = webhook_broker(&dir, vec![server.url("/mqtt/*")], &[("url", &url)]);

    assert_eq!(login(&broker, "c-ann", "ann").await, 0);
    let asked = server.requests();
    assert_eq!(asked[0].path, "/mqtt/auth");
    assert_eq!(
        (
            asked[0].body["client_id"].as_str(),
            asked[0].body["password"].as_str()
        ),
        (Some("c-ann"), Some("pw"))
    );
    assert_eq!(login(&broker, "c-bob", "bob").await, 4, "denied");
    assert_eq!(login(&broker, "c-err", "err").await, 4, "500: fail closed");
    assert_eq!(login(&broker, "c-big", "big").await, 4, "answer too large");
    let started = Instant::now();
    assert_eq!(
        login(&broker, "c-slow", "slow").await,
        4,
        "timed out: fail closed"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "cut by http_timeout_ms, not by the service ({:?})",
        started.elapsed()
    );
    // The broker served others meanwhile and still does.
    assert_eq!(login(&broker, "c-ann2", "ann").await, 0);
    assert_eq!(count(&server, "connect"), 6);
}

#[tokio::test]
async fn urls_outside_http_allow_are_refused_before_any_request() {
    let server = HttpServer::start(service).await;
    let dir = PluginDir::new();
    let url = server.url("/mqtt/auth");
    // Granted another path only.
    let broker = webhook_broker(&dir, vec![server.url("/other")], &[("url", &url)]);
    assert_eq!(login(&broker, "c-ann", "ann").await, 4);
    // And nothing at all without http_allow.
    let dir2 = PluginDir::new();
    let bare = webhook_broker(&dir2, Vec::new(), &[("url", &url)]);
    assert_eq!(login(&bare, "c-ann", "ann").await, 4);
    assert!(server.requests().is_empty(), "{:?}", server.requests());
    // A pattern that is not a URL is a configuration error, with its key
    // and line.
    let err = Config::parse("[plugin.webhook-auth]\nhttp_allow = [\"ftp://x/\"]\n")
        .expect_err("refused")
        .to_string();
    assert!(
        err.contains("http_allow") && err.contains("http or https"),
        "{err}"
    );
}

#[tokio::test]
async fn publishes_are_authorized_and_decisions_cached() {
    let server = HttpServer::start(service).await;
    let dir = PluginDir::new();
    let (url, publish_url) = (server.url("/auth"), server.url("/acl"));
    let broker = webhook_broker(
        &dir,
        vec![server.url("/*")],
        &[
            ("url", &url),
            ("publish_url", &publish_url),
            ("cache_secs", "60"),
        ],
    );
    let mut watch = V4::connect_with(broker.addr, "watcher", |o| {
        o.set_credentials("ann", "pw");
    })
    .await;
    watch.subscribe("#", 1).await;
    // The same client and password again: from the login cache.
    let again = || {
        V4::connect_with(broker.addr, "again", |o| {
            o.set_credentials("ann", "pw");
        })
    };
    again().await.disconnect().await;
    let logins = count(&server, "connect");
    again().await.disconnect().await;
    assert_eq!(count(&server, "connect"), logins, "second login cached");

    let mut raw = Raw::handshake(broker.addr, &connect_v5_user("pub5", "ann", |_| {})).await;
    for pkid in 1..=3 {
        raw.send(&publish_v5("ok/a", 1, pkid, b"x", None)).await;
        assert_eq!(raw.recv_kind(4).await.ack_reason(), 0);
        assert_eq!(watch.next_publish().await.topic, "ok/a");
    }
    raw.send(&publish_v5("no/a", 1, 9, b"x", None)).await;
    assert_eq!(raw.recv_kind(4).await.ack_reason(), 0x87);
    // Three messages to ok/a, one question: the acceptance was cached.
    assert_eq!(count(&server, "publish"), 2, "{:?}", server.requests());
    watch.no_publish_within(Duration::from_millis(300)).await;
}

/// Many requests from one instance: each leaves nothing behind in the
/// instance's resource table (wasmtime-wasi-http 48 kept every request's
/// options there, so that after 4,096 requests every call trapped; see
/// `plugins/http_link.rs`).
#[tokio::test]
async fn thousands_of_requests_from_one_instance_leave_nothing_behind() {
    const N: u16 = 4_500;
    let server = HttpServer::start(service).await;
    let dir = PluginDir::new();
    let (url, publish_url) = (server.url("/auth"), server.url("/acl"));
    let broker = webhook_broker(
        &dir,
        vec![server.url("/*")],
        &[("url", &url), ("publish_url", &publish_url)],
    );
    // One publisher, one message at a time: one instance answers them all.
    let mut raw = Raw::handshake(broker.addr, &connect_v5_user("many", "ann", |_| {})).await;
    for pkid in 1..=N {
        raw.send(&publish_v5("ok/many", 1, pkid, b"x", None)).await;
        assert_eq!(raw.recv_kind(4).await.ack_reason(), 0x10, "message {pkid}");
    }
    assert_eq!(count(&server, "publish"), usize::from(N));
    // And the instance still serves the next login.
    assert_eq!(login(&broker, "after", "ann").await, 0);
}

/// An HTTPS service whose certificate a private CA signed: trusted with
/// `http_ca_file`, refused (fail closed) without it; a CA file that is not
/// one is a configuration error naming the key.
#[tokio::test]
async fn https_services_are_trusted_through_http_ca_file() {
    let pki = crate::tls::Pki::new("webhook CA");
    let cert = pki.server("service");
    let server = HttpServer::start_tls(&cert.cert, &cert.key, service).await;
    let url = server.url("/mqtt/auth");
    assert!(url.starts_with("https://"), "{url}");
    let with_ca = |ca: Option<std::path::PathBuf>| {
        let dir = PluginDir::new();
        let broker =
            webhook_broker_with(&dir, vec![server.url("/mqtt/*")], &[("url", &url)], |s| {
                s.http_ca_file = ca;
            });
        (broker, dir)
    };
    let (trusting, _dir) = with_ca(Some(pki.ca_file.clone()));
    assert_eq!(login(&trusting, "tls-ann", "ann").await, 0);
    assert_eq!(login(&trusting, "tls-bob", "bob").await, 4, "denied");
    assert_eq!(count(&server, "connect"), 2);
    // Without the CA the service's certificate is unknown: no request
    // reaches it, and the login is refused.
    let (strict, _dir2) = with_ca(None);
    assert_eq!(login(&strict, "tls-ann2", "ann").await, 4);
    assert_eq!(count(&server, "connect"), 2);
    // A file that holds no certificate.
    let err = Config::parse(&format!(
        "[plugin.webhook-auth]\nhttp_ca_file = \"{}\"\n",
        cert.key.display()
    ))
    .expect_err("refused")
    .to_string();
    assert!(
        err.contains("http_ca_file") && err.contains("no certificate"),
        "{err}"
    );
}
