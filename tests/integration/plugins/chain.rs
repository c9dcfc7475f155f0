//! The authentication chain and notifications: verdicts, order,
//! priorities, reason codes, failure policies, the MQTT 3.x fallback.

use super::*;

#[tokio::test]
async fn ok_error_and_next() {
    for (verdict, v4_code, v5_code) in [("ok", 0, 0), ("deny", 4, 0x86), ("next", 5, 0x87)] {
        let dir = PluginDir::new();
        dir.add("auth", "policy");
        let broker = broker_with(&dir, |c| plugin_config(c, "auth", &[("verdict", verdict)]));
        let (_, ack) = connack(&broker, &connect_v4_login("c4", true, "u", "p")).await;
        assert_eq!(ack.connack().1, v4_code, "{verdict}");
        let (_, ack) = connack(&broker, &connect_v5("c5", true, 60, |_| {})).await;
        assert_eq!(ack.connack().1, v5_code, "{verdict} (v5)");
    }
}

#[tokio::test]
async fn chain_runs_in_order_and_stops_at_the_first_answer() {
    let dir = PluginDir::new();
    dir.add("a", "policy").add("b", "policy").add("c", "policy");
    // a and b defer, c accepts: next-next-ok.
    let broker = broker_with(&dir, |c| {
        plugin_config(c, "a", &[("verdict", "next")]);
        plugin_config(c, "b", &[("verdict", "next")]);
    });
    let names: Vec<String> = broker
        .ctx
        .plugins
        .list()
        .iter()
        .map(|p| p.name.to_string())
        .collect();
    assert_eq!(names, ["a", "b", "c"], "file-name order");
    let (_, ack) = connack(&broker, &connect_v4_login("x", true, "u", "p")).await;
    assert_eq!(ack.connack().1, 0);
    for p in ["a", "b", "c"] {
        assert_eq!(
            calls(&broker, p, "x")[0],
            "auth-on-register",
            "{p} was asked"
        );
    }
    drop(broker);

    // A priority moves c first: it accepts and a, b are never asked.
    let broker = broker_with(&dir, |c| {
        plugin_config(c, "a", &[("verdict", "deny")]);
        plugin_config(c, "b", &[("verdict", "deny")]);
        c.plugin.entry("c".into()).or_default().priority = Some(1);
    });
    let names: Vec<String> = broker
        .ctx
        .plugins
        .list()
        .iter()
        .map(|p| p.name.to_string())
        .collect();
    assert_eq!(names, ["c", "a", "b"]);
    let (_, ack) = connack(&broker, &connect_v4_login("y", true, "u", "p")).await;
    assert_eq!(ack.connack().1, 0);
    assert!(
        calls(&broker, "a", "y")
            .iter()
            .all(|c| !c.starts_with("auth"))
    );
    assert!(
        calls(&broker, "b", "y")
            .iter()
            .all(|c| !c.starts_with("auth"))
    );

    // An error stops the chain too.
    let broker = broker_with(&dir, |c| {
        plugin_config(c, "a", &[("verdict", "deny")]);
    });
    let (_, ack) = connack(&broker, &connect_v4_login("z", true, "u", "p")).await;
    assert_eq!(ack.connack().1, 4);
    assert!(calls(&broker, "b", "z").is_empty());
}

#[tokio::test]
async fn plugin_reason_codes_and_reason_strings_reach_mqtt5_clients() {
    let dir = PluginDir::new();
    dir.add("auth", "policy");
    let broker = broker_with(&dir, |c| {
        plugin_config(
            c,
            "auth",
            &[
                ("verdict", "deny"),
                ("reason_code", "156"),
                ("server_reference", "other.example:1883"),
            ],
        );
    });
    let (_, ack) = connack(&broker, &connect_v5("moved", true, 60, |_| {})).await;
    let ack = ack.connack_v5();
    assert_eq!(ack.code as u8, 0x9C, "use another server");
    let props = ack.properties.expect("properties");
    assert_eq!(
        props.server_reference.as_deref(),
        Some("other.example:1883")
    );
    assert_eq!(
        props.reason_string.as_deref(),
        Some("denied by configuration")
    );

    // A code that cannot refuse a CONNECT is itself an error.
    let broker = broker_with(&dir, |c| {
        plugin_config(c, "auth", &[("verdict", "deny"), ("reason_code", "16")]);
    });
    let (_, ack) = connack(&broker, &connect_v5("bad-code", true, 60, |_| {})).await;
    assert_eq!(ack.connack().1, 0x80);
}

#[tokio::test]
async fn allow_anonymous_does_not_bypass_authentication_plugins() {
    let dir = PluginDir::new();
    dir.add("auth", "policy");
    let broker = broker_with(&dir, |c| {
        c.server.allow_anonymous = true;
        plugin_config(c, "auth", &[("verdict", "deny")]);
    });
    let (_, ack) = connack(&broker, &connect_v4("anon", true, 60)).await;
    assert_eq!(ack.connack().1, 4);
}

#[tokio::test]
async fn a_plugin_with_only_the_v3_hook_serves_mqtt5_clients() {
    let dir = PluginDir::new();
    dir.add("v3", "policy-v3");
    let broker = broker_with(&dir, |c| plugin_config(c, "v3", &[("only_user", "alice")]));
    let (_, ack) = connack(&broker, &connect_v5_user("m5", "alice", |_| {})).await;
    assert_eq!(ack.connack().1, 0);
    assert_eq!(calls(&broker, "v3", "m5"), ["auth-on-register"]);
    let (_, ack) = connack(&broker, &connect_v5_user("m5b", "mallory", |_| {})).await;
    assert_eq!(
        ack.connack().1,
        0x87,
        "only plugin said next: not authorized"
    );

    for (deny_as, code) in [("invalid-credentials", 0x86), ("not-authorized", 0x87)] {
        let broker = broker_with(&dir, |c| {
            plugin_config(c, "v3", &[("verdict", "deny"), ("deny_as", deny_as)]);
        });
        let (_, ack) = connack(&broker, &connect_v5("m5c", true, 60, |_| {})).await;
        assert_eq!(ack.connack().1, code, "{deny_as}");
    }
}

#[tokio::test]
async fn failures_fail_closed_or_open_by_policy() {
    let dir = PluginDir::new();
    dir.add("10-hostile", "hostile").add("20-auth", "policy");
    let broker = broker_with(&dir, |_| {});
    let (_, ack) = connack(&broker, &connect_v4_login("p1", true, "panic", "")).await;
    assert_eq!(
        ack.connack().1,
        5,
        "a trap refuses the client (fail closed)"
    );
    assert!(
        calls(&broker, "20-auth", "p1").is_empty(),
        "the chain stopped"
    );

    let broker = broker_with(&dir, |c| {
        c.plugin.entry("10-hostile".into()).or_default().on_failure =
            Some(sluice_broker::config::FailurePolicy::Next);
    });
    let (_, ack) = connack(&broker, &connect_v4_login("p2", true, "panic", "")).await;
    assert_eq!(ack.connack().1, 0, "fail open: the next plugin decided");
    // (Notifications may follow the authentication call.)
    assert_eq!(calls(&broker, "20-auth", "p2")[0], "auth-on-register");
}

#[tokio::test]
async fn notifications_arrive_in_order() {
    let dir = PluginDir::new();
    dir.add("rec", "policy");
    let broker = broker_with(&dir, |_| {});

    // Clean session: connect, DISCONNECT.
    let mut raw = Raw::handshake(broker.addr, &connect_v4_login("clean", true, "u1", "")).await;
    raw.send(&DISCONNECT).await;
    raw.expect_closed().await;
    expect_calls(
        &broker,
        "rec",
        "clean",
        &[
            "auth-on-register",
            "on-client-wakeup",
            "on-register[u1]",
            "on-client-gone",
        ],
    )
    .await;

    // Persistent session: connection lost, session lives on.
    let raw = Raw::handshake(broker.addr, &connect_v4_login("durable", false, "u2", "")).await;
    drop(raw);
    expect_calls(
        &broker,
        "rec",
        "durable",
        &[
            "auth-on-register",
            "on-client-wakeup",
            "on-register[u2]",
            "on-client-offline",
        ],
    )
    .await;

    // Takeover: the old connection goes offline before the new one wakes.
    let mut first = Raw::handshake(broker.addr, &connect_v4_login("taken", false, "u3", "")).await;
    expect_calls(
        &broker,
        "rec",
        "taken",
        &["auth-on-register", "on-client-wakeup", "on-register[u3]"],
    )
    .await;
    let _second = Raw::handshake(broker.addr, &connect_v4_login("taken", false, "u3", "")).await;
    first.expect_closed().await;
    expect_calls(
        &broker,
        "rec",
        "taken",
        &[
            "auth-on-register",
            "on-client-wakeup",
            "on-register[u3]",
            "auth-on-register",
            "on-client-offline",
            "on-client-wakeup",
            "on-register[u3]",
        ],
    )
    .await;

    // MQTT 5 with a short session expiry: offline, then expired.
    let raw = Raw::handshake(
        broker.addr,
        &connect_v5("expiring", false, 60, |p| {
            p.session_expiry_interval = Some(1)
        }),
    )
    .await;
    drop(raw);
    expect_calls(
        &broker,
        "rec",
        "expiring",
        &[
            "auth-on-register-m5",
            "on-client-wakeup",
            "on-register-m5[]",
            "on-client-offline",
            "on-session-expired",
        ],
    )
    .await;
}
