//! The plugin host through the real broker: real `.wasm` plugins (built from
//! `tests/plugins/`), real clients.

use std::time::Duration;

use crate::support::packets::*;
use crate::support::rumqtt::{V4, V5};
use crate::support::{PluginDir, Raw, TestBroker, eventually, plugin_config};

/// Connects with a username (and password), returns the CONNACK code.
async fn connack_v4(broker: &TestBroker, id: &str, user: Option<&str>, pass: Option<&str>) -> u8 {
    let mut c = mqttbytes::v4::Connect::new(id);
    if let Some(u) = user {
        c.set_login(u, pass.unwrap_or(""));
    }
    let mut b = bytes::BytesMut::new();
    c.write(&mut b).expect("encode");
    let mut raw = Raw::connect(broker.addr).await;
    raw.send(&b).await;
    raw.recv().await.connack().1
}

#[tokio::test]
async fn ok_error_and_next() {
    for (verdict, v4_code) in [("ok", 0), ("deny", 4), ("next", 5)] {
        let dir = PluginDir::new();
        dir.add("auth", "policy");
        let broker = TestBroker::with(|c| {
            dir.configure(c);
            plugin_config(c, "auth", &[("verdict", verdict)]);
        });
        assert_eq!(
            connack_v4(&broker, "c4", Some("u"), None).await,
            v4_code,
            "{verdict}"
        );
        let mut raw = Raw::connect(broker.addr).await;
        raw.send(&connect_v5("c5", true, 60, |_| {})).await;
        let ack = raw.recv().await;
        let v5_code = match verdict {
            "ok" => 0,
            "deny" => 0x86,
            _ => 0x87,
        };
        assert_eq!(ack.connack().1, v5_code, "{verdict} (v5)");
    }
}
