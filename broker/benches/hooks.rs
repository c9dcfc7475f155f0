//! Plugin hook cost: one trivial hook through the chain, a 5-plugin chain,
//! `auth-on-publish` of the topic-acl example plugin with a small and a
//! large payload (which it does not read), and the CONNECT → CONNACK rate
//! of a real broker with a 3-plugin wasm authentication chain against none.
//!
//! Needs the plugins built by `cargo xtask build-plugins`; run through
//! `cargo xtask bench`, which prints the figures the goals refer to.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use sluice_broker::codec::{ConnectProperties, MessageProperties, ProtocolVersion, QoS};
use sluice_broker::config::{Config, ConfigValue};
use sluice_broker::limits::MessageLimits;
use sluice_broker::plugins::{
    ConnectionInfo, ListenerKind, Plugins, PublishOutcome, PublishRequest, RegisterOutcome,
    RegisterRequest,
};
use sluice_broker::session::SubscriberId;
use sluice_broker::topic::{ClientId, TopicName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A plugin directory with `chain` (file name, plugin, verdict), and the
/// config that loads it.
fn chain_config(tag: &str, chain: &[(&str, &str, &str)]) -> Config {
    let dir = std::env::temp_dir().join(format!("sluice-bench-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench plugin dir");
    let mut config = Config::default();
    for (file, plugin, verdict) in chain {
        let src = workspace().join(format!("target/plugins/{plugin}.wasm"));
        assert!(src.exists(), "run `cargo xtask build-plugins` first");
        std::fs::copy(&src, dir.join(format!("{file}.wasm"))).expect("copy plugin");
        config
            .plugin
            .entry((*file).to_owned())
            .or_default()
            .config
            .extend([
                ("verdict".to_owned(), ConfigValue::Text((*verdict).into())),
                ("record".to_owned(), ConfigValue::Text("off".into())),
            ]);
    }
    config.plugins.dir = Some(dir);
    config.plugins.cache_dir = Some(workspace().join("target/bench-plugin-cache"));
    config.server.bind = vec!["127.0.0.1:0".parse().expect("address")];
    config.server.sys_interval_secs = 0;
    config.log.level = "error".into();
    config
}

fn hooks(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let conn = ConnectionInfo::new(
        "127.0.0.1:50000".parse().expect("address"),
        "127.0.0.1:1883".parse().expect("address"),
        ListenerKind::Tcp,
    );
    let id = SubscriberId {
        mountpoint: "".into(),
        client_id: ClientId::new("bench-client").expect("id"),
    };
    let props = ConnectProperties::default();
    let request = RegisterRequest {
        conn: &conn,
        id: &id,
        version: ProtocolVersion::V3_1_1,
        username: Some("user"),
        password: Some(b"secret"),
        clean_start: true,
        properties: &props,
    };
    let mut group = c.benchmark_group("hook");
    for (name, chain) in [
        ("trivial", vec![("a", "trivial", "ok")]),
        (
            "chain-5",
            vec![
                ("a", "trivial", "next"),
                ("b", "trivial", "next"),
                ("c", "trivial", "next"),
                ("d", "trivial", "next"),
                ("e", "trivial", "ok"),
            ],
        ),
    ] {
        let config = chain_config(name, &chain);
        let plugins = rt.block_on(Plugins::load(&config)).expect("plugins load");
        // Many calls per timed batch, so the executor's per-batch cost does
        // not count as hook cost.
        group.bench_function(name, |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let (plugins, request, config) = (&plugins, &request, &config);
                async move {
                    let started = Instant::now();
                    for _ in 0..iters {
                        let outcome = plugins.authenticate(request, config).await;
                        assert!(matches!(outcome, RegisterOutcome::Accepted { .. }));
                    }
                    started.elapsed()
                }
            })
        });
    }
    group.finish();
}

/// `auth-on-publish` through the topic-acl plugin with its cache off (so
/// every call reaches wasm), for a 64-byte and a 64-KiB payload: the
/// payload is lent as a handle, so a plugin that does not read it costs the
/// same for both.
fn publish_hook(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = std::env::temp_dir().join(format!("sluice-bench-acl-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench plugin dir");
    let src = workspace().join("target/plugins/topic-acl.wasm");
    assert!(src.exists(), "run `cargo xtask build-plugins` first");
    std::fs::copy(&src, dir.join("acl.wasm")).expect("copy plugin");
    let mut config = Config::default();
    config
        .plugin
        .entry("acl".to_owned())
        .or_default()
        .config
        .extend([
            ("publish".to_owned(), ConfigValue::Text("bench/#".into())),
            ("cache_secs".to_owned(), ConfigValue::Text("0".into())),
        ]);
    config.plugins.dir = Some(dir);
    config.plugins.cache_dir = Some(workspace().join("target/bench-plugin-cache"));
    config.log.level = "error".into();
    let plugins = rt.block_on(Plugins::load(&config)).expect("plugins load");
    let id = SubscriberId {
        mountpoint: "".into(),
        client_id: ClientId::new("bench-client").expect("id"),
    };
    let topic = TopicName::new("bench/1").expect("topic");
    let props = MessageProperties::default();
    let limits = MessageLimits::from_config(&config);
    let mut group = c.benchmark_group("publish-hook");
    for (name, size) in [("acl-64B", 64), ("acl-64KiB", 64 * 1024)] {
        let payload = Bytes::from(vec![b'x'; size]);
        let request = PublishRequest {
            id: &id,
            username: Some("user"),
            version: ProtocolVersion::V3_1_1,
            topic: &topic,
            payload: &payload,
            qos: QoS::AtMostOnce,
            retain: false,
            properties: &props,
            expiry: None,
            is_will: false,
            from_plugin: None,
            limits: &limits,
        };
        group.bench_function(name, |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let (plugins, request) = (&plugins, &request);
                async move {
                    let started = Instant::now();
                    for _ in 0..iters {
                        let outcome = plugins.authorize_publish(request).await;
                        assert!(matches!(outcome, PublishOutcome::Accepted { .. }));
                    }
                    started.elapsed()
                }
            })
        });
    }
    group.finish();
}

/// CONNECT (3.1.1, clean) → CONNACK → DISCONNECT, from `workers`
/// concurrent clients.
async fn connect_loop(addr: SocketAddr, iters: u64, workers: u64) -> Duration {
    /// CONNECT with client id "c" + 8 hex digits (unique per connect, so no
    /// connect is a takeover of the previous one).
    fn connect(n: u64) -> Vec<u8> {
        let id = format!("c{n:08x}");
        let mut p = vec![
            0x10,
            12 + id.len() as u8,
            0,
            4,
            b'M',
            b'Q',
            b'T',
            b'T',
            4,
            0x02,
            0,
            60,
        ];
        p.extend_from_slice(&(id.len() as u16).to_be_bytes());
        p.extend_from_slice(id.as_bytes());
        p
    }
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..workers {
        let n = iters / workers + u64::from(w < iters % workers);
        tasks.spawn(async move {
            for i in 0..n {
                let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
                s.set_nodelay(true).expect("nodelay");
                s.write_all(&connect(w << 32 | i))
                    .await
                    .expect("send CONNECT");
                let mut ack = [0u8; 4];
                s.read_exact(&mut ack).await.expect("CONNACK");
                assert_eq!(ack, [0x20, 2, 0, 0], "accepted");
                s.write_all(&[0xE0, 0]).await.expect("DISCONNECT");
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("worker");
    }
    started.elapsed()
}

fn connect_rate(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut group = c.benchmark_group("connect");
    group.sample_size(20);
    for (name, chain) in [
        ("no-plugins", vec![]),
        (
            "chain-3",
            vec![
                ("a", "trivial", "next"),
                ("b", "trivial", "next"),
                ("c", "trivial", "ok"),
            ],
        ),
    ] {
        let mut config = chain_config(&format!("connect-{name}"), &chain);
        config.server.allow_anonymous = chain.is_empty();
        let (addr, stop) = rt.block_on(async {
            let server = sluice_broker::Server::bind(config).await.expect("bind");
            let addr = server.local_addrs()[0];
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            tokio::spawn(server.run(async {
                let _ = rx.await;
            }));
            (addr, tx)
        });
        let addr = Arc::new(addr);
        group.bench_function(name, |b| {
            b.to_async(&rt)
                .iter_custom(|iters| connect_loop(*addr, iters, 4))
        });
        let _ = stop.send(());
    }
    group.finish();
}

/// Startup cost of 20 plugins whose compiled form is cached: read, hash,
/// deserialize, link, instantiate and `init` each.
fn load_cached(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let names: Vec<String> = (0..20).map(|i| format!("p{i:02}")).collect();
    let chain: Vec<(&str, &str, &str)> =
        names.iter().map(|n| (n.as_str(), "policy", "ok")).collect();
    let config = chain_config("load-20", &chain);
    // The first load fills the cache.
    rt.block_on(Plugins::load(&config)).expect("plugins load");
    let mut group = c.benchmark_group("load");
    group.sample_size(10);
    group.bench_function("20-cached", |b| {
        b.to_async(&rt).iter(|| async {
            let plugins = Plugins::load(&config).await.expect("plugins load");
            assert!(plugins.list().iter().all(|p| p.cached));
        })
    });
    group.finish();
}

criterion_group!(benches, hooks, publish_hook, connect_rate, load_cached);
criterion_main!(benches);
