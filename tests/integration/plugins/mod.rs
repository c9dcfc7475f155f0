//! The plugin host through the real broker: real `.wasm` plugins (built from
//! `tests/plugins/`), real clients.

mod acl_delivery;
mod auth_examples;
mod cache;
mod chain;
mod enhanced_auth;
mod examples;
mod lang_c;
mod languages;
mod m5_only;
mod modifiers;
mod new_plugin;
mod overload;
mod publishing;
mod pubsub;
mod reload;
mod sandbox;
mod sdk;
mod webhook;

use std::time::{Duration, Instant};

use bytes::BytesMut;
use sluice_broker::Config;
use sluice_broker::session::SubscriberId;
use sluice_broker::topic::ClientId;

use crate::support::packets::*;
use crate::support::rumqtt::V4;
use crate::support::{PluginDir, Raw, TestBroker, eventually, plugin_config};

fn id(mountpoint: &str, client: &str) -> SubscriberId {
    SubscriberId {
        mountpoint: mountpoint.into(),
        client_id: ClientId::new(client).expect("valid id"),
    }
}

/// A 3.1.1 CONNECT with credentials.
fn connect_v4_login(client: &str, clean: bool, user: &str, pass: &str) -> Vec<u8> {
    let mut c = mqttbytes::v4::Connect::new(client);
    c.clean_session = clean;
    c.keep_alive = 60;
    c.set_login(user, pass);
    let mut b = BytesMut::new();
    c.write(&mut b).expect("encode");
    b.to_vec()
}

/// A 5.0 CONNECT with a username.
fn connect_v5_user(
    client: &str,
    user: &str,
    props: impl FnOnce(&mut mqttbytes::v5::ConnectProperties),
) -> Vec<u8> {
    let mut bytes = connect_v5(client, true, 60, props);
    // Set the username flag and append the username: CONNECT's payload ends
    // with the client id when there is no will, username or password.
    let flags_at = bytes
        .windows(6)
        .position(|w| w == b"\x00\x04MQTT")
        .expect("protocol name")
        + 7;
    bytes[flags_at] |= 0x80;
    bytes.extend_from_slice(&(user.len() as u16).to_be_bytes());
    bytes.extend_from_slice(user.as_bytes());
    // Re-frame with the new remaining length.
    let (n, _) = crate::support::raw::varint(&bytes[1..]);
    frame(0x10, &bytes[1 + n..])
}

/// Sends a CONNECT and returns the CONNACK frame.
async fn connack(broker: &TestBroker, connect: &[u8]) -> (Raw, crate::support::raw::Frame) {
    let mut raw = Raw::connect(broker.addr).await;
    raw.send(connect).await;
    let ack = raw.recv().await;
    (raw, ack)
}

/// The hook calls a `policy` plugin recorded, for one client id.
fn calls(broker: &TestBroker, plugin: &str, client: &str) -> Vec<String> {
    let raw = broker
        .ctx
        .plugins
        .kv_get(plugin, "calls")
        .unwrap_or_default();
    String::from_utf8_lossy(&raw)
        .lines()
        .filter_map(|l| l.strip_suffix(&format!(":{client}")).map(str::to_owned))
        .collect()
}

/// Waits until `plugin` recorded `expected` for `client`, then checks the
/// exact sequence.
async fn expect_calls(broker: &TestBroker, plugin: &str, client: &str, expected: &[&str]) {
    eventually("hook calls recorded", || {
        calls(broker, plugin, client).len() >= expected.len()
    })
    .await;
    assert_eq!(
        calls(broker, plugin, client),
        expected,
        "{plugin} / {client}"
    );
}

fn broker_with(dir: &PluginDir, tweak: impl FnOnce(&mut Config)) -> TestBroker {
    TestBroker::with(|c| {
        dir.configure(c);
        tweak(c);
    })
}
