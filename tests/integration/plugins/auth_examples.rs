//! The example authentication plugins of `example-plugins/` in a real
//! broker, with real MQTT 3.1.1 and 5 clients: `password-file` (with a line
//! made by `cargo xtask passwd`), `jwt-auth` and `limits`.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac as _};
use sha2::Sha256;

use super::*;

/// CONNACK codes: MQTT 3.1.1 "bad user name or password" and "not
/// authorized"; MQTT 5 "bad user name or password".
const V4_BAD_CREDENTIALS: u8 = 4;
const V4_NOT_AUTHORIZED: u8 = 5;
const V5_BAD_CREDENTIALS: u8 = 0x86;

/// Made by `cargo xtask passwd --iterations 1000 FILE alice secret` (the
/// same line is checked by the plugin's and the xtask's unit tests).
const XTASK_LINE: &str = "alice:$pbkdf2-sha256$1000$VHMb3/XsuTvs5N41mdv/LA==$tKbsn9iCHoO3z+a6wrJcLC+590sy6S6LTxmdDR34W5k=";

/// `cargo xtask passwd`'s default iteration count
/// (`sluice_plugin_sdk::password::DEFAULT_ITERATIONS`).
const DEFAULT_ITERATIONS: u32 = 2_000;
/// The plugin's default `max_iterations` (users.rs).
const DEFAULT_MAX_ITERATIONS: u32 = 3_500;

/// A 5.0 CONNECT with a username and password.
pub(super) fn connect_v5_login(
    client: &str,
    clean: bool,
    user: &str,
    pass: &str,
    props: impl FnOnce(&mut mqttbytes::v5::ConnectProperties),
) -> Vec<u8> {
    let mut p = mqttbytes::v5::ConnectProperties {
        session_expiry_interval: None,
        receive_maximum: None,
        max_packet_size: None,
        topic_alias_max: None,
        request_response_info: None,
        request_problem_info: None,
        user_properties: Vec::new(),
        authentication_method: None,
        authentication_data: None,
    };
    props(&mut p);
    let c = mqttbytes::v5::Connect {
        protocol: mqttbytes::Protocol::V5,
        keep_alive: 60,
        client_id: client.to_owned(),
        clean_session: clean,
        last_will: None,
        login: Some(mqttbytes::v5::Login::new(user, pass)),
        properties: Some(p),
    };
    let mut b = BytesMut::new();
    c.write(&mut b).expect("encode");
    b.to_vec()
}

/// The CONNACK code for an MQTT 3.1.1 client.
async fn code_v4(broker: &TestBroker, client: &str, user: &str, pass: &str) -> u8 {
    connack(broker, &connect_v4_login(client, true, user, pass))
        .await
        .1
        .connack()
        .1
}

/// The CONNACK code for an MQTT 5 client.
async fn code_v5(broker: &TestBroker, client: &str, user: &str, pass: &str) -> u8 {
    connack(broker, &connect_v5_login(client, true, user, pass, |_| {}))
        .await
        .1
        .connack()
        .1
}

// ---- password-file ----

/// PBKDF2-HMAC-SHA256 with a 32-byte key (one block, RFC 8018 §5.2),
/// written out independently of the plugin's crates.
fn pbkdf2_sha256(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let mac = Hmac::<Sha256>::new_from_slice(password).expect("any key length");
    let mut m = mac.clone();
    m.update(salt);
    m.update(&1u32.to_be_bytes());
    let mut u: [u8; 32] = m.finalize().into_bytes().into();
    let mut t = u;
    for _ in 1..iterations {
        let mut m = mac.clone();
        m.update(&u);
        u = m.finalize().into_bytes().into();
        for (t, u) in t.iter_mut().zip(u) {
            *t ^= u;
        }
    }
    t
}

/// A password file line.
fn passwd_line(user: &str, password: &str, iterations: u32) -> String {
    let salt = b"sluice-test-salt";
    format!(
        "{user}:$pbkdf2-sha256${iterations}${}${}",
        STANDARD.encode(salt),
        STANDARD.encode(pbkdf2_sha256(password.as_bytes(), salt, iterations))
    )
}

/// A broker with `password-file` loaded as `pw`.
fn password_broker(pairs: &[(&str, &str)]) -> (TestBroker, PluginDir) {
    let dir = PluginDir::new();
    dir.add("pw", "password-file");
    let broker = broker_with(&dir, |c| plugin_config(c, "pw", pairs));
    (broker, dir)
}

#[tokio::test]
async fn password_file_checks_passwords_v4_and_v5() {
    let users = format!(
        "{XTASK_LINE}\n{}\n",
        passwd_line("bob", "bob-pw", DEFAULT_ITERATIONS)
    );
    let (broker, _dir) = password_broker(&[("file", &users)]);
    // The line from `cargo xtask passwd`, and one made here.
    assert_eq!(code_v4(&broker, "a4", "alice", "secret").await, 0);
    assert_eq!(code_v5(&broker, "a5", "alice", "secret").await, 0);
    assert_eq!(code_v4(&broker, "b4", "bob", "bob-pw").await, 0);
    // Connected (the session lives as long as the connection).
    let (b5, ack) = connack(
        &broker,
        &connect_v5_login("b5", true, "bob", "bob-pw", |_| {}),
    )
    .await;
    assert_eq!(ack.connack().1, 0);
    assert!(broker.ctx.registry.get(&id("", "b5")).is_some());
    drop(b5);
    // Wrong passwords.
    assert_eq!(
        code_v4(&broker, "w4", "alice", "Secret").await,
        V4_BAD_CREDENTIALS
    );
    let (_, ack) = connack(
        &broker,
        &connect_v5_login("w5", true, "bob", "alice-pw", |_| {}),
    )
    .await;
    let ack = ack.connack_v5();
    assert_eq!(ack.code as u8, V5_BAD_CREDENTIALS);
    assert_eq!(
        ack.properties.and_then(|p| p.reason_string).as_deref(),
        Some("bad user name or password")
    );
    assert!(broker.ctx.registry.get(&id("", "w5")).is_none());
    // A known user without a password is refused too.
    let (_, ack) = connack(&broker, &connect_v5_user("np", "alice", |_| {})).await;
    assert_eq!(ack.connack().1, V5_BAD_CREDENTIALS);
}

#[tokio::test]
async fn password_file_unknown_users_go_to_the_next_plugin_or_are_denied() {
    // unknown = "next" (default): the next plugin decides; here a second
    // password file knows the user.
    let dir = PluginDir::new();
    dir.add("10-pw", "password-file")
        .add("20-pw", "password-file");
    let broker = broker_with(&dir, |c| {
        plugin_config(c, "10-pw", &[("users", XTASK_LINE)]);
        plugin_config(
            c,
            "20-pw",
            &[("users", &passwd_line("carol", "carol-pw", 10))],
        );
    });
    let second = broker.ctx.plugins.get("20-pw").expect("loaded").clone();
    assert_eq!(code_v4(&broker, "c4", "carol", "carol-pw").await, 0);
    assert_eq!(code_v5(&broker, "c5", "carol", "carol-pw").await, 0);
    let asked = second.stats.calls.load(Relaxed);
    assert_eq!(
        code_v4(&broker, "a4", "alice", "wrong").await,
        V4_BAD_CREDENTIALS,
        "a wrong password is final"
    );
    assert_eq!(second.stats.calls.load(Relaxed), asked);
    // No username: every plugin says next, and the chain refuses.
    let (_, ack) = connack(&broker, &connect_v4("anon", true, 60)).await;
    assert_ne!(ack.connack().1, 0);
    assert_eq!(second.stats.calls.load(Relaxed), asked + 1);

    // unknown = "deny".
    let (broker, _dir) = password_broker(&[("users", XTASK_LINE), ("unknown", "deny")]);
    assert_eq!(
        code_v4(&broker, "u4", "mallory", "x").await,
        V4_BAD_CREDENTIALS
    );
    assert_eq!(
        code_v5(&broker, "u5", "mallory", "x").await,
        V5_BAD_CREDENTIALS
    );
    assert_eq!(code_v5(&broker, "a5", "alice", "secret").await, 0);
}

#[tokio::test]
async fn password_file_bad_configuration_refuses_the_plugin() {
    let dir = PluginDir::new();
    dir.add("pw", "password-file");
    let err = TestBroker::try_with(|c| {
        dir.configure(c);
        plugin_config(c, "pw", &[("users", "alice:$md5$1$c2FsdHNhbHQ$AAAA")]);
    })
    .err()
    .expect("refused at load");
    assert!(err.contains("unsupported hash scheme"), "{err}");
    let err = TestBroker::try_with(|c| {
        dir.configure(c);
        plugin_config(
            c,
            "pw",
            &[
                ("users", &passwd_line("big", "x", 2)),
                ("max_iterations", "1"),
            ],
        );
    })
    .err()
    .expect("refused at load");
    assert!(err.contains("max_iterations"), "{err}");
}

/// Fuel and time of one verification in the broker, at the default
/// iteration count and at the default `max_iterations`; both must fit the
/// default budget of a call (50,000,000 fuel, 100 ms).
#[tokio::test]
async fn password_file_verification_fits_the_default_budget() {
    for iterations in [1_000, DEFAULT_ITERATIONS, DEFAULT_MAX_ITERATIONS] {
        let (broker, _dir) =
            password_broker(&[("users", &passwd_line("dave", "dave-pw", iterations))]);
        let plugin = broker.ctx.plugins.get("pw").expect("loaded").clone();
        // Warm up an instance (init, first call).
        assert_eq!(code_v4(&broker, "warm", "dave", "dave-pw").await, 0);
        let fuel_before = plugin.stats.fuel_used.load(Relaxed);
        let started = Instant::now();
        assert_eq!(code_v4(&broker, "d4", "dave", "dave-pw").await, 0);
        let took = started.elapsed();
        let fuel = plugin.stats.fuel_used.load(Relaxed) - fuel_before;
        eprintln!(
            "password-file: {iterations} iterations: {fuel} fuel, CONNECT to CONNACK {took:?}"
        );
        assert!(fuel < 50_000_000, "{iterations} iterations: {fuel} fuel");
        assert_eq!(plugin.stats.failures.load(Relaxed), 0);
    }
}

// ---- jwt-auth ----

const JWT_SECRET: &str = "integration-test-secret-0123456789abcdef";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// An HS256 token with these claims, signed with `secret`.
fn jwt(claims: &serde_json_like::Claims, secret: &str) -> String {
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.0.as_bytes());
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("{header}.{payload}").as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{header}.{payload}.{signature}")
}

/// JSON claims, written by hand (the broker's tests have no JSON crate).
mod serde_json_like {
    pub struct Claims(pub String);

    /// `{"exp": now + exp_in, ...extra}`; `extra` is a JSON fragment.
    pub fn claims(exp_in: i64, extra: &str) -> Claims {
        let exp = super::now() as i64 + exp_in;
        if extra.is_empty() {
            Claims(format!(r#"{{"exp":{exp}}}"#))
        } else {
            Claims(format!(r#"{{"exp":{exp},{extra}}}"#))
        }
    }
}
use serde_json_like::claims;

fn jwt_broker(extra: &[(&str, &str)]) -> (TestBroker, PluginDir) {
    let dir = PluginDir::new();
    dir.add("jwt", "jwt-auth");
    let broker = broker_with(&dir, |c| {
        plugin_config(c, "jwt", &[("secret", JWT_SECRET)]);
        plugin_config(c, "jwt", extra);
    });
    (broker, dir)
}

#[tokio::test]
async fn jwt_valid_expired_tampered_and_early_tokens() {
    let (broker, _dir) = jwt_broker(&[]);
    let valid = jwt(&claims(600, ""), JWT_SECRET);
    assert_eq!(code_v4(&broker, "v4", "anyone", &valid).await, 0);
    assert_eq!(code_v5(&broker, "v5", "anyone", &valid).await, 0);

    // Expired (beyond the 30 s leeway).
    let expired = jwt(&claims(-120, ""), JWT_SECRET);
    assert_eq!(
        code_v4(&broker, "e4", "anyone", &expired).await,
        V4_BAD_CREDENTIALS
    );
    let (_, ack) = connack(
        &broker,
        &connect_v5_login("e5", true, "anyone", &expired, |_| {}),
    )
    .await;
    let ack = ack.connack_v5();
    assert_eq!(ack.code as u8, V5_BAD_CREDENTIALS);
    assert_eq!(
        ack.properties.and_then(|p| p.reason_string).as_deref(),
        Some("token expired")
    );
    // Within the leeway: still accepted.
    let just = jwt(&claims(-10, ""), JWT_SECRET);
    assert_eq!(code_v5(&broker, "l5", "anyone", &just).await, 0);

    // Not valid before an hour from now.
    let early = jwt(
        &claims(7200, &format!(r#""nbf":{}"#, now() + 3600)),
        JWT_SECRET,
    );
    assert_eq!(
        code_v4(&broker, "n4", "anyone", &early).await,
        V4_BAD_CREDENTIALS
    );
    assert_eq!(
        code_v5(&broker, "n5", "anyone", &early).await,
        V5_BAD_CREDENTIALS
    );

    // Tampered: a claim added after signing; signed with another key.
    let mut parts: Vec<String> = valid.split('.').map(str::to_owned).collect();
    parts[1] = URL_SAFE_NO_PAD.encode(claims(600, r#""mountpoint":"admin""#).0);
    let tampered = parts.join(".");
    assert_eq!(
        code_v4(&broker, "t4", "anyone", &tampered).await,
        V4_BAD_CREDENTIALS
    );
    assert_eq!(
        code_v5(&broker, "t5", "anyone", &tampered).await,
        V5_BAD_CREDENTIALS
    );
    let forged = jwt(&claims(600, ""), "not-the-secret");
    assert_eq!(
        code_v5(&broker, "f5", "anyone", &forged).await,
        V5_BAD_CREDENTIALS
    );
    // alg "none" is refused.
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
        URL_SAFE_NO_PAD.encode(claims(600, "").0)
    );
    assert_eq!(
        code_v4(&broker, "x4", "anyone", &none).await,
        V4_BAD_CREDENTIALS
    );
    for client in ["e4", "e5", "n4", "n5", "t4", "t5", "f5", "x4"] {
        assert!(
            broker.ctx.registry.get(&id("", client)).is_none(),
            "{client}"
        );
    }
}

#[tokio::test]
async fn jwt_without_a_token_goes_to_the_next_plugin() {
    let dir = PluginDir::new();
    dir.add("10-jwt", "jwt-auth").add("20-pw", "password-file");
    let broker = broker_with(&dir, |c| {
        plugin_config(c, "10-jwt", &[("secret", JWT_SECRET)]);
        plugin_config(c, "20-pw", &[("users", XTASK_LINE)]);
    });
    // A plain password is not a token: password-file decides.
    assert_eq!(code_v4(&broker, "p4", "alice", "secret").await, 0);
    assert_eq!(code_v5(&broker, "p5", "alice", "secret").await, 0);
    assert_eq!(
        code_v5(&broker, "w5", "alice", "wrong").await,
        V5_BAD_CREDENTIALS
    );
    // No password at all: next, then refused by the end of the chain.
    let (_, ack) = connack(&broker, &connect_v4("anon", true, 60)).await;
    assert_ne!(ack.connack().1, 0);
}

#[tokio::test]
async fn jwt_issuer_and_audience() {
    let (broker, _dir) = jwt_broker(&[("issuer", "auth.example"), ("audience", "sluice")]);
    let good = jwt(
        &claims(600, r#""iss":"auth.example","aud":["x","sluice"]"#),
        JWT_SECRET,
    );
    assert_eq!(code_v4(&broker, "g4", "u", &good).await, 0);
    let other = jwt(
        &claims(600, r#""iss":"auth.example","aud":"elsewhere""#),
        JWT_SECRET,
    );
    assert_eq!(code_v4(&broker, "o4", "u", &other).await, V4_NOT_AUTHORIZED);
    assert_eq!(code_v5(&broker, "o5", "u", &other).await, 0x87);
}

#[tokio::test]
async fn jwt_claims_move_the_client_and_restrict_it() {
    let (broker, _dir) = jwt_broker(&[]);
    // client_id: same mountpoint, new id.
    let t = jwt(&claims(600, r#""client_id":"jwt-device""#), JWT_SECRET);
    let _a = Raw::handshake(broker.addr, &connect_v4_login("asked", true, "u", &t)).await;
    eventually("session under the token's client id", || {
        broker.ctx.registry.get(&id("", "jwt-device")).is_some()
    })
    .await;
    assert!(broker.ctx.registry.get(&id("", "asked")).is_none());

    // mountpoint (and client id): an isolated topic tree.
    let t = jwt(
        &claims(600, r#""client_id":"m-dev","mountpoint":"tenant-a""#),
        JWT_SECRET,
    );
    let mut tenant = Raw::handshake(
        broker.addr,
        &connect_v5_login("asked2", true, "u", &t, |_| {}),
    )
    .await;
    eventually("session in the token's mountpoint", || {
        broker.ctx.registry.get(&id("tenant-a", "m-dev")).is_some()
    })
    .await;
    let t = jwt(&claims(600, r#""mountpoint":"tenant-a""#), JWT_SECRET);
    let _m = Raw::handshake(broker.addr, &connect_v4_login("keep-id", true, "u", &t)).await;
    eventually("mountpoint only: the client id is kept", || {
        broker
            .ctx
            .registry
            .get(&id("tenant-a", "keep-id"))
            .is_some()
    })
    .await;
    tenant
        .send(&subscribe_v5(1, vec![filter_v5("news", 0)], None))
        .await;
    tenant.recv_kind(9).await;
    let t = jwt(&claims(600, ""), JWT_SECRET);
    let mut outsider =
        Raw::handshake(broker.addr, &connect_v4_login("outsider", true, "u", &t)).await;
    outsider
        .send(&publish_v4("news", 0, 0, b"default tree", false))
        .await;
    tenant.expect_silence(Duration::from_millis(300)).await;

    // can_publish false, can_subscribe true.
    let t = jwt(
        &claims(600, r#""can_publish":false,"can_subscribe":true"#),
        JWT_SECRET,
    );
    let mut ro = Raw::handshake(broker.addr, &connect_v5_login("ro", true, "u", &t, |_| {})).await;
    raw_publish_refused(&mut ro).await;
    ro.send(&subscribe_v5(2, vec![filter_v5("t", 0)], None))
        .await;
    assert_eq!(ro.recv_kind(9).await.ack_codes(true), [0]);
    // can_subscribe false.
    let t = jwt(&claims(600, r#""can_subscribe":false"#), JWT_SECRET);
    let mut ns = Raw::handshake(broker.addr, &connect_v5_login("ns", true, "u", &t, |_| {})).await;
    ns.send(&subscribe_v5(1, vec![filter_v5("t", 0)], None))
        .await;
    assert_eq!(ns.recv_kind(9).await.ack_codes(true), [0x87]);
}

/// A QoS 1 PUBLISH refused with PUBACK 0x87.
async fn raw_publish_refused(raw: &mut Raw) {
    raw.send(&publish_v5("t", 1, 7, b"x", None)).await;
    let ack = raw.recv_kind(4).await;
    assert_eq!((ack.packet_id(), ack.ack_reason()), (7, 0x87));
}

// ---- limits ----

fn limits_broker(pairs: &[(&str, &str)]) -> (TestBroker, PluginDir) {
    let dir = PluginDir::new();
    dir.add("limits", "limits");
    let broker = broker_with(&dir, |c| plugin_config(c, "limits", pairs));
    (broker, dir)
}

#[tokio::test]
async fn limits_message_rate_per_user() {
    let (broker, _dir) = limits_broker(&[
        ("max_message_rate", "10"),
        ("user.bulk.max_message_rate", "100000"),
    ]);
    let mut sub = V4::connect(broker.addr, "sub").await;
    sub.subscribe("rate/#", 0).await;
    let run = |client: &'static str, user: &'static str| {
        let addr = broker.addr;
        async move {
            let mut raw = Raw::handshake(addr, &connect_v4_login(client, true, user, "")).await;
            for i in 0..25u8 {
                raw.send(&publish_v4(&format!("rate/{client}"), 0, 0, &[i], false))
                    .await;
            }
            raw
        }
    };
    // The default: a burst of 10, then 10 per second.
    let started = Instant::now();
    let _slow = run("slow", "someone").await;
    for i in 0..25u8 {
        assert_eq!(&sub.next_publish().await.payload[..], &[i]);
    }
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(1300), "throttled: {took:?}");
    // The per-user override.
    let started = Instant::now();
    let _fast = run("fast", "bulk").await;
    for i in 0..25u8 {
        assert_eq!(&sub.next_publish().await.payload[..], &[i]);
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(1000),
        "not throttled: {took:?}"
    );
}

#[tokio::test]
async fn limits_inflight_and_mqtt5_only_limits() {
    let (broker, _dir) = limits_broker(&[
        ("max_inflight", "1"),
        ("receive_maximum", "2"),
        ("topic_alias_maximum", "3"),
    ]);
    // MQTT 5: the MQTT 5 limits are told in CONNACK.
    let (mut raw, ack) = connack(
        &broker,
        &connect_v5_login("l5", true, "u", "", |p| p.receive_maximum = Some(10)),
    )
    .await;
    let props = ack.connack_v5().properties.expect("properties");
    assert_eq!(props.receive_max, Some(2));
    assert_eq!(props.topic_alias_max, Some(3));
    // MQTT 3.1.1: accepted (no MQTT 5 limit for it), max-inflight 1.
    let mut v4 = Raw::handshake(broker.addr, &connect_v4_login("l4", true, "u", "")).await;
    raw.send(&subscribe_v5(1, vec![filter_v5("w", 1)], None))
        .await;
    raw.recv_kind(9).await;
    v4.send(&subscribe_v4(1, "w", 1)).await;
    v4.recv_kind(9).await;
    let publisher = V4::connect(broker.addr, "pub").await;
    publisher.publish("w", 1, false, b"1").await;
    publisher.publish("w", 1, false, b"2").await;
    // One unacknowledged message at a time, for both.
    let first = raw.recv_kind(3).await.publish_v5();
    let first_v4 = v4.recv_kind(3).await.publish_v4();
    raw.expect_silence(Duration::from_millis(300)).await;
    v4.expect_silence(Duration::from_millis(1)).await;
    raw.send(&puback(first.pkid)).await;
    v4.send(&puback(first_v4.pkid)).await;
    assert_eq!(&raw.recv_kind(3).await.publish_v5().payload[..], b"2");
    assert_eq!(&v4.recv_kind(3).await.publish_v4().payload[..], b"2");
}

#[tokio::test]
async fn limits_cap_session_expiry() {
    let (broker, _dir) = limits_broker(&[
        ("session_expiry_cap", "1"),
        ("user.keeper.session_expiry_cap", "3600"),
    ]);
    // MQTT 5: the cap is told in CONNACK; below the cap is left alone.
    let (_, ack) = connack(
        &broker,
        &connect_v5_login("s5", false, "u", "", |p| {
            p.session_expiry_interval = Some(86_400)
        }),
    )
    .await;
    let props = ack.connack_v5().properties.expect("properties");
    assert_eq!(props.session_expiry_interval, Some(1));
    let (_, ack) = connack(
        &broker,
        &connect_v5_login("k5", false, "keeper", "", |p| {
            p.session_expiry_interval = Some(60)
        }),
    )
    .await;
    assert_eq!(
        ack.connack_v5()
            .properties
            .and_then(|p| p.session_expiry_interval),
        None
    );
    // MQTT 3.1.1 persistent session: expires after the cap.
    let raw = Raw::handshake(broker.addr, &connect_v4_login("s4", false, "u", "")).await;
    eventually("session", || {
        broker.ctx.registry.get(&id("", "s4")).is_some()
    })
    .await;
    drop(raw);
    eventually("the capped 3.1.1 session expired", || {
        broker.ctx.registry.get(&id("", "s4")).is_none()
    })
    .await;
}

#[tokio::test]
async fn limits_after_password_file_with_on_success_next() {
    let dir = PluginDir::new();
    dir.add("10-pw", "password-file").add("20-limits", "limits");
    let broker = broker_with(&dir, |c| {
        plugin_config(
            c,
            "10-pw",
            &[
                ("users", XTASK_LINE),
                ("unknown", "deny"),
                ("on_success", "next"),
            ],
        );
        plugin_config(c, "20-limits", &[("topic_alias_maximum", "4")]);
    });
    let (_, ack) = connack(
        &broker,
        &connect_v5_login("a5", true, "alice", "secret", |_| {}),
    )
    .await;
    let ack = ack.connack_v5();
    assert_eq!(ack.code as u8, 0);
    assert_eq!(ack.properties.and_then(|p| p.topic_alias_max), Some(4));
    assert_eq!(
        code_v5(&broker, "w5", "alice", "nope").await,
        V5_BAD_CREDENTIALS
    );
    assert_eq!(
        code_v5(&broker, "m5", "mallory", "x").await,
        V5_BAD_CREDENTIALS
    );
    assert_eq!(code_v4(&broker, "a4", "alice", "secret").await, 0);
}

/// A hash too expensive for the default fuel fails the call (the client is
/// refused); raising the plugin's fuel and deadline makes it work.
#[tokio::test]
async fn password_file_expensive_hashes_need_more_fuel() {
    let line = passwd_line("erin", "erin-pw", 20_000);
    let pairs = [("users", line.as_str()), ("max_iterations", "20000")];
    let (broker, _dir) = password_broker(&pairs);
    let plugin = broker.ctx.plugins.get("pw").expect("loaded").clone();
    assert_ne!(code_v4(&broker, "e4", "erin", "erin-pw").await, 0);
    assert_eq!(plugin.stats.failures.load(Relaxed), 1);

    let dir = PluginDir::new();
    dir.add("pw", "password-file");
    let broker = broker_with(&dir, |c| {
        plugin_config(c, "pw", &pairs);
        let section = c.plugin.entry("pw".to_owned()).or_default();
        section.fuel = Some(1_000_000_000);
        section.deadline_ms = Some(1_000);
    });
    let plugin = broker.ctx.plugins.get("pw").expect("loaded").clone();
    let started = Instant::now();
    assert_eq!(code_v4(&broker, "e4", "erin", "erin-pw").await, 0);
    eprintln!(
        "password-file: 20000 iterations: {} fuel (with init), CONNECT to CONNACK {:?}",
        plugin.stats.fuel_used.load(Relaxed),
        started.elapsed()
    );
    assert_eq!(plugin.stats.failures.load(Relaxed), 0);
}
