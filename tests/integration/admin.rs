//! The admin endpoint: `GET /plugins` (JSON), `GET /metrics` (Prometheus
//! text), what it does with requests it does not serve, its bearer token
//! and its `Host` check.

use std::net::SocketAddr;

use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::packets::*;
use crate::support::{PluginDir, Raw, TestBroker, plugin_config, plugin_wasm, within};

/// An HTTP answer.
struct Answer {
    status: u16,
    head: String,
    body: String,
}

/// Parses what the endpoint sent before closing.
fn answer(bytes: &[u8]) -> Answer {
    let text = String::from_utf8_lossy(bytes);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in {text:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    assert!(head.contains("\r\nConnection: close"), "{head}");
    Answer {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

/// Sends `raw` on a new connection and reads the answer until the
/// endpoint closes.
async fn request(addr: SocketAddr, raw: &[u8]) -> Answer {
    within("an admin answer", async {
        let mut stream = TcpStream::connect(addr).await.expect("connect to admin");
        stream.write_all(raw).await.expect("send request");
        let mut bytes = Vec::new();
        stream.read_to_end(&mut bytes).await.expect("read answer");
        answer(&bytes)
    })
    .await
}

async fn get(addr: SocketAddr, path: &str) -> Answer {
    let raw = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: */*\r\n\r\n");
    request(addr, raw.as_bytes()).await
}

/// `GET /plugins`, parsed.
async fn plugins(addr: SocketAddr) -> Value {
    let a = get(addr, "/plugins").await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(
        a.head.contains("Content-Type: application/json"),
        "{}",
        a.head
    );
    serde_json::from_str(&a.body).expect("JSON")
}

fn names(status: &Value) -> Vec<String> {
    status["plugins"]
        .as_array()
        .expect("plugins array")
        .iter()
        .map(|p| p["name"].as_str().expect("name").to_owned())
        .collect()
}

/// A broker with its admin endpoint on an ephemeral port.
fn admin_broker(tweak: impl FnOnce(&mut sluice_broker::Config)) -> (TestBroker, SocketAddr) {
    let broker = TestBroker::with(|c| {
        c.admin.bind = Some("127.0.0.1:0".parse().expect("address"));
        tweak(c);
    });
    let admin = broker.admin.expect("admin endpoint bound");
    (broker, admin)
}

/// Two `trivial` plugins: `b` runs first (priority) and defers to `a`,
/// which accepts, so a CONNECT calls both.
fn two_plugins(dir: &PluginDir) -> (TestBroker, SocketAddr) {
    dir.add("a", "trivial").add("b", "trivial");
    admin_broker(|c| {
        dir.configure(c);
        plugin_config(c, "a", &[("verdict", "ok")]);
        plugin_config(c, "b", &[("verdict", "next")]);
        c.plugin.entry("b".into()).or_default().priority = Some(1);
    })
}

fn calls(status: &Value) -> Vec<u64> {
    status["plugins"]
        .as_array()
        .expect("plugins array")
        .iter()
        .map(|p| p["calls"].as_u64().expect("calls"))
        .collect()
}

#[tokio::test]
async fn plugins_are_listed_in_chain_order_with_their_counters() {
    let dir = PluginDir::new();
    let (broker, admin) = two_plugins(&dir);
    let before = plugins(admin).await;
    assert_eq!(names(&before), ["b", "a"], "chain order: priority first");
    let wasm = std::fs::read(plugin_wasm("trivial")).expect("read trivial.wasm");
    let sha256 = format!("{:x}", Sha256::digest(&wasm));
    for p in before["plugins"].as_array().expect("plugins") {
        let name = p["name"].as_str().expect("name");
        assert_eq!(p["sha256"], sha256.as_str(), "{p}");
        let file = p["file"].as_str().expect("file");
        assert!(file.ends_with(&format!("{name}.wasm")), "{p}");
        let hooks = p["hooks"].as_array().expect("hooks");
        assert!(hooks.iter().any(|h| h == "auth-on-register"), "{p}");
        assert_eq!(p["last_reload"]["result"], "loaded", "{p}");
        assert!(p["instances"].as_u64().expect("instances") >= 1, "{p}");
        for counter in ["errors", "failures", "traps"] {
            assert_eq!(p[counter], 0, "{counter}: {p}");
        }
    }
    assert_eq!(before["rejected"], serde_json::json!([]));

    let _client = Raw::handshake(broker.addr, &connect_v4("counted", true, 60)).await;
    let after = plugins(admin).await;
    let expected: Vec<u64> = calls(&before).iter().map(|c| c + 1).collect();
    assert_eq!(calls(&after), expected, "one auth-on-register call each");
    for p in after["plugins"].as_array().expect("plugins") {
        assert!(p["fuel_used"].as_u64().expect("fuel") > 0, "{p}");
    }
}

#[tokio::test]
async fn metrics_expose_broker_and_plugin_counters() {
    let dir = PluginDir::new();
    let (broker, admin) = two_plugins(&dir);
    let _client = Raw::handshake(broker.addr, &connect_v4("metered", true, 60)).await;
    let status = plugins(admin).await;
    let m = get(admin, "/metrics").await;
    assert_eq!(m.status, 200);
    assert!(
        m.head
            .contains("Content-Type: text/plain; version=0.0.4; charset=utf-8"),
        "{}",
        m.head
    );
    let lines: Vec<&str> = m.body.lines().collect();
    let has = |line: &str| lines.contains(&line);
    for (family, kind) in [
        ("sluice_plugin_calls_total", "counter"),
        ("sluice_plugin_errors_total", "counter"),
        ("sluice_plugin_failures_total", "counter"),
        ("sluice_plugin_traps_total", "counter"),
        ("sluice_plugin_fuel_used_total", "counter"),
        ("sluice_plugin_instances", "gauge"),
        ("sluice_plugin_reloads_total", "counter"),
        ("sluice_plugin_compiles_total", "counter"),
        ("sluice_plugins_rejected", "gauge"),
        ("sluice_messages_received_total", "counter"),
        ("sluice_clients_connected", "gauge"),
    ] {
        assert!(
            has(&format!("# TYPE {family} {kind}")),
            "{family}:\n{}",
            m.body
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("# HELP {family} "))),
            "{family}:\n{}",
            m.body
        );
    }
    for p in status["plugins"].as_array().expect("plugins") {
        let name = p["name"].as_str().expect("name");
        for (metric, field) in [
            ("sluice_plugin_calls_total", "calls"),
            ("sluice_plugin_errors_total", "errors"),
            ("sluice_plugin_failures_total", "failures"),
            ("sluice_plugin_traps_total", "traps"),
            ("sluice_plugin_fuel_used_total", "fuel_used"),
            ("sluice_plugin_instances", "instances"),
        ] {
            let line = format!("{metric}{{plugin=\"{name}\"}} {}", p[field]);
            assert!(has(&line), "{line} missing:\n{}", m.body);
        }
        assert!(p["calls"].as_u64().expect("calls") >= 1, "{p}");
    }
    for line in [
        "sluice_clients_connected 1",
        "sluice_plugins_loaded 2",
        "sluice_plugins_rejected 0",
        "sluice_plugin_reloads_total 0",
    ] {
        assert!(has(line), "{line} missing:\n{}", m.body);
    }
}

#[tokio::test]
async fn other_paths_methods_and_garbage_are_refused_and_serving_goes_on() {
    let (mut broker, admin) = admin_broker(|_| {});
    assert_eq!(get(admin, "/nope").await.status, 404);
    assert_eq!(get(admin, "/plugins/extra").await.status, 404);
    let post = request(
        admin,
        b"POST /plugins HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert_eq!(post.status, 405);
    assert!(post.head.contains("\r\nAllow: GET"), "{}", post.head);
    assert_eq!(
        request(admin, b"HEAD /metrics HTTP/1.0\r\n\r\n")
            .await
            .status,
        405
    );
    for garbage in [
        &b"hello\r\n\r\n"[..],
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
        b"GET /plugins HTTP/9.9\r\n\r\n",
        b"GET /plugins HTTP/1.1\r\nno header here\r\n\r\n",
        b"\r\n\r\n",
    ] {
        let a = request(admin, garbage).await;
        assert_eq!(a.status, 400, "{:?}", String::from_utf8_lossy(garbage));
    }
    // A head over 8 KiB.
    let mut big = b"GET /plugins HTTP/1.1\r\nX-Big: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 9000));
    big.extend_from_slice(b"\r\n\r\n");
    assert_eq!(request(admin, &big).await.status, 431);
    // Half a request, then the client stops sending.
    let half = within("an answer to half a request", async {
        let mut stream = TcpStream::connect(admin).await.expect("connect");
        stream.write_all(b"GET /plu").await.expect("send");
        stream.shutdown().await.expect("shutdown");
        let mut bytes = Vec::new();
        stream.read_to_end(&mut bytes).await.expect("read");
        answer(&bytes)
    })
    .await;
    assert_eq!(half.status, 400);
    // A connection that closes at once gets nothing, and harms nothing.
    drop(TcpStream::connect(admin).await.expect("connect"));

    let status = plugins(admin).await;
    assert_eq!(status["plugins"], serde_json::json!([]));
    assert_eq!(get(admin, "/metrics?x=1").await.status, 200);

    broker.shutdown();
    assert!(
        TcpStream::connect(admin).await.is_err(),
        "admin endpoint still open after shutdown"
    );
}

#[tokio::test]
async fn idle_connections_time_out_and_do_not_lock_the_endpoint() {
    let (_broker, admin) = admin_broker(|_| {});
    // As many idle connections as are served at once.
    let mut idle = Vec::new();
    for _ in 0..16 {
        idle.push(TcpStream::connect(admin).await.expect("connect"));
    }
    // Answered once the idle ones time out (5 s).
    assert_eq!(get(admin, "/plugins").await.status, 200);
    let mut bytes = Vec::new();
    within("idle connection closed", idle[0].read_to_end(&mut bytes))
        .await
        .expect("read");
    assert_eq!(answer(&bytes).status, 408);
}

#[test]
fn an_admin_address_in_use_refuses_to_start_and_names_it() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("address");
    let e = TestBroker::try_with(|c| c.admin.bind = Some(addr))
        .err()
        .expect("the broker must not start");
    assert!(e.contains("admin endpoint"), "{e}");
    assert!(e.contains(&addr.to_string()), "{e}");
}

/// The value of the sample `name{labels}` in a `/metrics` body.
fn sample(body: &str, name: &str, labels: &str) -> String {
    let prefix = format!("{name}{{{labels}}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {prefix} in:\n{body}"))
        .to_owned()
}

/// Real MQTT traffic through the example topic ACL: each PUBLISH of an
/// MQTT 5 client is one `auth-on-publish-m5` call (its cache off), answered
/// before the PUBACK. `/metrics` then has that hook's latency histogram
/// (cumulative buckets ending in `+Inf` = the count of calls, a sum) and
/// its calls under the outcome the plugin answered; `/plugins` agrees.
#[tokio::test]
async fn hook_latency_and_outcomes_are_metrics() {
    let dir = PluginDir::new();
    dir.add("acl", "topic-acl");
    let (broker, admin) = admin_broker(|c| {
        dir.configure(c);
        plugin_config(
            c,
            "acl",
            &[
                ("publish", "sensors/#"),
                ("deny_publish", "sensors/secret/#"),
                ("unmatched", "next"),
                ("cache_secs", "0"),
            ],
        );
    });
    let mut client = Raw::handshake(broker.addr, &connect_v5("metered", true, 60, |_| {})).await;
    // ok (routed, to no subscriber: 0x10), error (denied: 0x87), next (no
    // rule; the chain is exhausted, which refuses: 0x87).
    let plan = [
        ("sensors/a", 5, 0x10),
        ("sensors/secret/x", 2, 0x87),
        ("other/x", 3, 0x87),
    ];
    let mut pkid = 0;
    for (topic, times, code) in plan {
        for _ in 0..times {
            pkid += 1;
            client.send(&publish_v5(topic, 1, pkid, b"x", None)).await;
            let ack = client.recv_kind(4).await;
            assert_eq!(ack.packet_id(), pkid, "PUBACK for {topic}");
            assert_eq!(ack.ack_reason(), code, "{topic}");
        }
    }
    let calls = u64::from(pkid);

    let m = get(admin, "/metrics").await;
    assert_eq!(m.status, 200);
    let body = &m.body;
    for (family, kind) in [
        ("sluice_plugin_hook_duration_seconds", "histogram"),
        ("sluice_plugin_hook_calls_total", "counter"),
        ("sluice_plugin_hook_invalid_answers_total", "counter"),
    ] {
        assert!(
            body.contains(&format!("\n# TYPE {family} {kind}\n")),
            "{family}:\n{body}"
        );
    }
    let hook = r#"plugin="acl",hook="auth-on-publish-m5""#;
    let duration = "sluice_plugin_hook_duration_seconds";
    let bucket = format!("{duration}_bucket{{{hook},le=\"");
    let buckets: Vec<(String, u64)> = body
        .lines()
        .filter_map(|l| l.strip_prefix(&bucket))
        .map(|rest| {
            let (le, count) = rest.split_once("\"} ").expect("a bucket sample");
            (le.to_owned(), count.parse().expect("a count"))
        })
        .collect();
    assert!(buckets.len() > 10, "{buckets:?}");
    let (last, finite) = buckets.split_last().expect("buckets");
    assert_eq!(*last, ("+Inf".to_owned(), calls), "{buckets:?}");
    let bounds: Vec<f64> = finite
        .iter()
        .map(|(le, _)| le.parse().expect("le"))
        .collect();
    assert!(bounds.windows(2).all(|w| w[0] < w[1]), "{buckets:?}");
    assert!(
        buckets.windows(2).all(|w| w[0].1 <= w[1].1),
        "cumulative: {buckets:?}"
    );
    assert_eq!(
        sample(body, &format!("{duration}_count"), hook),
        calls.to_string()
    );
    let sum: f64 = sample(body, &format!("{duration}_sum"), hook)
        .parse()
        .expect("sum");
    assert!(sum > 0.0, "{sum}");
    let outcomes = "sluice_plugin_hook_calls_total";
    for (outcome, expected) in [
        ("ok", 5),
        ("error", 2),
        ("next", 3),
        ("trap", 0),
        ("fuel", 0),
        ("deadline", 0),
        ("busy", 0),
    ] {
        let labels = format!("{hook},outcome=\"{outcome}\"");
        assert_eq!(
            sample(body, outcomes, &labels),
            expected.to_string(),
            "{outcome}"
        );
    }
    // The other hooks it exports are there, uncalled.
    let v3 = r#"plugin="acl",hook="auth-on-publish""#;
    assert_eq!(sample(body, &format!("{duration}_count"), v3), "0");
    assert_eq!(sample(body, outcomes, &format!("{v3},outcome=\"ok\"")), "0");
    // The per-plugin families are still there and agree.
    assert_eq!(
        sample(body, "sluice_plugin_calls_total", r#"plugin="acl""#),
        calls.to_string()
    );
    assert_eq!(
        sample(body, "sluice_plugin_errors_total", r#"plugin="acl""#),
        "2"
    );

    let status = plugins(admin).await;
    let acl = &status["plugins"][0];
    let per_hook = acl["per_hook"].as_array().expect("per_hook");
    let m5 = per_hook
        .iter()
        .find(|h| h["hook"] == "auth-on-publish-m5")
        .unwrap_or_else(|| panic!("auth-on-publish-m5 in {acl}"));
    assert_eq!(m5["calls"], calls, "{m5}");
    assert_eq!(m5["outcomes"]["ok"], 5, "{m5}");
    assert_eq!(m5["outcomes"]["error"], 2, "{m5}");
    assert_eq!(m5["outcomes"]["next"], 3, "{m5}");
    let p50 = m5["p50_micros"].as_f64().expect("p50");
    let p99 = m5["p99_micros"].as_f64().expect("p99");
    assert!(0.0 < p50 && p50 <= p99, "{m5}");
    assert_eq!(
        acl["p99_micros"], m5["p99_micros"],
        "one hook called: {acl}"
    );
    let total: u64 = per_hook
        .iter()
        .map(|h| h["calls"].as_u64().expect("calls"))
        .sum();
    assert_eq!(total, acl["calls"].as_u64().expect("calls"), "{acl}");
}

/// `docs/metrics.md` lists every family `/metrics` emits with a store and
/// a plugin, with its type (the cluster's families need NATS and are not
/// checked here).
#[tokio::test]
async fn every_metric_family_is_documented() {
    let dir = PluginDir::new();
    dir.add("acl", "topic-acl");
    let store = dir.path.join("store");
    let (_broker, admin) = admin_broker(|c| {
        dir.configure(c);
        c.persistence.dir = Some(store.clone());
    });
    let docs = include_str!("../../docs/metrics.md");
    let m = get(admin, "/metrics").await;
    let mut families = 0;
    for line in m.body.lines() {
        let Some(typed) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let (name, kind) = typed.split_once(' ').expect("name and type");
        let row = docs
            .lines()
            .find(|l| {
                l.starts_with(&format!("| `{name}`")) || l.starts_with(&format!("| `{name}{{"))
            })
            .unwrap_or_else(|| panic!("{name} is not in docs/metrics.md"));
        assert!(
            row.contains(&format!("| {kind} |")),
            "{name} is a {kind}: {row}"
        );
        families += 1;
    }
    assert!(families > 50, "{families} families in:\n{}", m.body);
}

/// Every limit has its `sluice_limit_hits_total` sample, and a hit shows
/// in it; the memory gauges are there (the test binary counts its heap
/// like `sluice` does).
#[tokio::test]
async fn limit_hits_and_memory_are_metrics() {
    let (broker, admin) = admin_broker(|c| c.limits.max_topic_levels = 2);
    let mut raw = Raw::handshake(broker.addr, &connect_v5("deep", true, 60, |_| {})).await;
    raw.send(&publish_v5("a/b/c", 1, 1, b"x", None)).await;
    assert_eq!(raw.recv_kind(4).await.ack_reason(), 0x90);
    let a = get(admin, "/metrics").await;
    assert_eq!(a.status, 200);
    assert!(
        a.body.contains("# TYPE sluice_limit_hits_total counter"),
        "{}",
        a.body
    );
    for limit in sluice_broker::limits::Limit::ALL {
        let hits = u64::from(*limit == sluice_broker::limits::Limit::TopicLevels);
        let sample = format!(
            "sluice_limit_hits_total{{limit=\"{}\"}} {hits}\n",
            limit.label()
        );
        assert!(a.body.contains(&sample), "{sample} in {}", a.body);
    }
    let gauge = |name: &str| -> u64 {
        a.body
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in {}", a.body))
    };
    assert!(gauge("sluice_memory_allocated_bytes") > 0);
    assert!(gauge("sluice_memory_budget_bytes") >= 64 << 20);
    assert!(gauge("sluice_runtime_alive_tasks") > 0);
}

/// With a store, `/metrics` carries its figures: a persistent session's
/// SUBACK waits for a committed batch, which the counters show.
#[tokio::test]
async fn the_store_is_in_the_metrics() {
    // A temporary directory, removed when dropped.
    let scratch = PluginDir::new();
    let store = scratch.path.join("store");
    let (broker, admin) = admin_broker(|c| c.persistence.dir = Some(store.clone()));
    let mut raw = Raw::handshake(broker.addr, &connect_v4("kept", false, 60)).await;
    raw.send(&subscribe_v4(1, "a/#", 1)).await;
    assert_eq!(raw.recv_kind(9).await.ack_codes(false), [1]);
    let m = get(admin, "/metrics").await;
    let value = |name: &str| -> u64 {
        m.body
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in {}", m.body))
    };
    assert!(value("sluice_store_batches_total") >= 1);
    assert!(
        value("sluice_store_ops_total") >= 2,
        "session and subscription"
    );
    assert!(value("sluice_store_disk_bytes") > 0);
    assert_eq!(value("sluice_store_failures_total"), 0);
    assert!(
        m.body
            .contains("# TYPE sluice_store_commit_microseconds_total counter")
    );
}

/// `GET path` with `Host: host` and, if given, a bearer `token`.
async fn get_as(addr: SocketAddr, path: &str, host: &str, token: Option<&str>) -> Answer {
    let authorization = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let raw = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{authorization}\r\n");
    request(addr, raw.as_bytes()).await
}

#[tokio::test]
async fn with_a_token_file_every_request_needs_the_token() {
    let scratch = crate::support::TempDir::new("admin-token");
    let file = scratch.file("token");
    std::fs::write(&file, "s3cret-token-0123456789\n").expect("write token");
    let (_broker, admin) = admin_broker(|c| c.admin.token_file = Some(file.clone()));
    let host = admin.to_string();
    for path in ["/plugins", "/metrics", "/nowhere"] {
        let a = get_as(admin, path, &host, None).await;
        assert_eq!(a.status, 401, "{path}: {}", a.body);
        assert!(a.head.contains("WWW-Authenticate: Bearer"), "{}", a.head);
        assert!(!a.body.contains("sluice_"), "nothing leaks: {}", a.body);
        let wrong = get_as(admin, path, &host, Some("s3cret-token-012345678")).await;
        assert_eq!(wrong.status, 401, "{path}");
    }
    let ok = get_as(admin, "/metrics", &host, Some("s3cret-token-0123456789")).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert!(ok.body.contains("sluice_uptime_seconds"), "{}", ok.body);
    let ok = get_as(admin, "/plugins", &host, Some("s3cret-token-0123456789")).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
}

#[test]
fn a_token_file_that_is_missing_or_too_short_refuses_to_start() {
    let scratch = crate::support::TempDir::new("admin-token-bad");
    let short = scratch.file("short");
    std::fs::write(&short, "abc\n").expect("write token");
    for (file, why) in [
        (scratch.file("missing"), "cannot read the admin token file"),
        (short, "a token needs at least 16"),
    ] {
        let e = TestBroker::try_with(|c| {
            c.admin.bind = Some("127.0.0.1:0".parse().expect("address"));
            c.admin.token_file = Some(file.clone());
        })
        .err()
        .expect("the broker must not start");
        assert!(e.contains(why), "{e}");
    }
}

/// DNS rebinding: a page served from a name the attacker controls, which
/// resolves to the broker, sends that name as `Host`.
#[tokio::test]
async fn requests_for_unknown_host_names_are_refused() {
    let (_broker, admin) = admin_broker(|c| c.admin.hosts = vec!["broker.example".into()]);
    let port = admin.port();
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("broker.example:{port}"),
    ] {
        let a = get_as(admin, "/metrics", &host, None).await;
        assert_eq!(a.status, 200, "{host}: {}", a.body);
    }
    for host in [format!("rebind.attacker.example:{port}"), "evil".to_owned()] {
        let a = get_as(admin, "/plugins", &host, None).await;
        assert_eq!(a.status, 403, "{host}: {}", a.body);
        assert!(a.body.contains("[admin] hosts"), "{}", a.body);
    }
}
