//! The sandbox: hostile plugins contained, the circuit breaker, plugins
//! refused at load (the compiled-artifact cache is in `cache.rs`).

use super::*;

#[tokio::test]
async fn hostile_plugins_are_contained() {
    let dir = PluginDir::new();
    dir.add("hostile", "hostile");
    // Something the sandbox could connect to, were it allowed to.
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("probe listener");
    let probe_port = probe.local_addr().expect("address").port().to_string();
    let broker = broker_with(&dir, |c| {
        let p = c.plugin.entry("hostile".into()).or_default();
        p.memory_mb = Some(16);
        p.deadline_ms = Some(200);
        p.breaker_failures = Some(0);
        plugin_config(c, "hostile", &[("probe_port", &probe_port)]);
    });
    let plugin = broker.ctx.plugins.get("hostile").expect("loaded").clone();
    for (user, code, reason_contains) in [
        ("loop", 0x87, None),
        ("alloc", 0x87, None),
        ("recurse", 0x87, None),
        ("panic", 0x87, None),
        ("huge-id", 0x80, None),
        ("huge-reason", 0x87, Some("yyyy")),
        ("file", 0x87, Some("file access failed")),
        ("net", 0x87, Some("network access failed")),
        ("env", 0x87, Some("no environment visible")),
    ] {
        let created = plugin
            .stats
            .instances_created
            .load(std::sync::atomic::Ordering::Relaxed);
        let started = Instant::now();
        let (_, ack) = connack(
            &broker,
            &connect_v5_user(&format!("victim-{user}"), user, |_| {}),
        )
        .await;
        let took = started.elapsed();
        let ack = ack.connack_v5();
        assert_eq!(ack.code as u8, code, "{user}");
        assert!(
            took < Duration::from_secs(3),
            "{user} refused within the deadline, took {took:?}"
        );
        if let Some(text) = reason_contains {
            let reason = ack
                .properties
                .and_then(|p| p.reason_string)
                .unwrap_or_default();
            assert!(reason.contains(text), "{user}: {reason}");
            assert!(reason.len() <= 1024, "{user}: reason strings are bounded");
        }
        // Everyone else carries on, and a trapped instance was replaced.
        let (_, ok) = connack(
            &broker,
            &connect_v5_user(&format!("fine-after-{user}"), "ok", |_| {}),
        )
        .await;
        assert_eq!(ok.connack().1, 0, "after {user}");
        if code == 0x87 && reason_contains.is_none() {
            assert!(
                plugin
                    .stats
                    .instances_created
                    .load(std::sync::atomic::Ordering::Relaxed)
                    > created,
                "{user}: the instance was replaced"
            );
        }
    }
    assert!(
        plugin
            .stats
            .failures
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 4
    );
    // The broker itself is fine.
    let mut sub = V4::connect_with(broker.addr, "sub", |o| {
        o.set_credentials("ok", "");
    })
    .await;
    sub.subscribe("still/up", 0).await;
}

#[tokio::test]
async fn a_plugin_that_keeps_crashing_is_disabled_for_a_while() {
    let dir = PluginDir::new();
    dir.add("hostile", "hostile");
    let broker = broker_with(&dir, |c| {
        let p = c.plugin.entry("hostile".into()).or_default();
        p.breaker_failures = Some(3);
        p.breaker_backoff_secs = Some(1);
    });
    for i in 0..3 {
        let (_, ack) = connack(
            &broker,
            &connect_v4_login(&format!("crash{i}"), true, "panic", ""),
        )
        .await;
        assert_eq!(ack.connack().1, 5);
    }
    let calls_before = broker
        .ctx
        .plugins
        .get("hostile")
        .expect("loaded")
        .stats
        .instances_created
        .load(std::sync::atomic::Ordering::Relaxed);
    // Disabled: even a client it would accept is refused (fail closed),
    // without running the plugin.
    let (_, ack) = connack(&broker, &connect_v4_login("meanwhile", true, "ok", "")).await;
    assert_eq!(ack.connack().1, 5);
    assert_eq!(
        broker
            .ctx
            .plugins
            .get("hostile")
            .expect("loaded")
            .stats
            .instances_created
            .load(std::sync::atomic::Ordering::Relaxed),
        calls_before
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (_, ack) = connack(&broker, &connect_v4_login("later", true, "ok", "")).await;
    assert_eq!(ack.connack().1, 0, "back after the back-off");
}

#[tokio::test]
async fn broken_plugins_are_refused_at_startup_with_a_clear_error() {
    let dir = PluginDir::new();
    dir.add("good", "policy")
        .write("corrupt", b"\0asm\x01\0\0\0garbage");
    let e = TestBroker::try_with(|c| dir.configure(c))
        .err()
        .expect("refused");
    assert!(
        e.contains("corrupt.wasm") && e.contains("not a valid WebAssembly component"),
        "{e}"
    );

    let dir = PluginDir::new();
    dir.add("good", "policy").add("bad", "bad-import");
    let e = TestBroker::try_with(|c| dir.configure(c))
        .err()
        .expect("refused");
    assert!(
        e.contains("bad.wasm") && e.contains("fixtures:bogus/teleport"),
        "{e}"
    );

    let dir = PluginDir::new();
    dir.add("picky", "policy");
    let e = TestBroker::try_with(|c| {
        dir.configure(c);
        plugin_config(c, "picky", &[("fail_init", "yes")]);
    })
    .err()
    .expect("refused");
    assert!(
        e.contains("picky.wasm") && e.contains("init refused by configuration"),
        "{e}"
    );

    // Hidden files and disabled plugins are skipped.
    let dir = PluginDir::new();
    dir.add("good", "policy")
        .write(".partial", b"not yet")
        .write("off", b"junk");
    let broker = TestBroker::with(|c| {
        dir.configure(c);
        c.plugin.entry("off".into()).or_default().enabled = Some(false);
    });
    assert_eq!(broker.ctx.plugins.list().len(), 1);
}
