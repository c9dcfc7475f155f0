//! The `sluice` executable: flags, config errors, signals.

use std::net::SocketAddr;
use std::process::Command;

use crate::support::Raw;
use crate::support::packets::*;
use crate::support::process::{SLUICE, Sluice};

#[tokio::test]
async fn sigterm_and_sigint_shut_down_gracefully() {
    for signal in ["TERM", "INT"] {
        let mut sluice = Sluice::start(&["--bind", "127.0.0.1:0", "--allow-anonymous"]);
        let mut v5 = Raw::handshake(sluice.addr, &connect_v5("graceful", true, 60, |_| {})).await;
        let mut v4 = Raw::handshake(sluice.addr, &connect_v4("graceful4", true, 60)).await;
        sluice.signal(signal);
        let frames = v5.expect_closed().await;
        assert_eq!(frames.last().map(|f| f.disconnect_reason()), Some(0x8B));
        assert!(v4.expect_closed().await.is_empty());
        let status = sluice.wait();
        assert!(status.success(), "SIG{signal}: exit status {status}");
        let log = sluice.lines().to_vec();
        assert!(
            log.iter().any(|l| l.contains("shutdown complete")),
            "{log:?}"
        );
    }
}

#[test]
fn invalid_config_is_refused_with_the_key_named() {
    let scratch = Scratch::new("cli");
    let dir = &scratch.path;
    for (text, needle) in [
        ("[mqtt]\nreceive_maximum = 0\n", "mqtt.receive_maximum"),
        ("[mqtt]\nmax_packet_sise = 1\n", "max_packet_sise"),
        ("[server]\nbind = \"nope\"\n", "bind"),
        ("[session]\noverflow = 3\n", "overflow"),
    ] {
        let path = dir.join("bad.toml");
        std::fs::write(&path, text).expect("write config");
        let out = Command::new(SLUICE)
            .arg("--config")
            .arg(&path)
            .output()
            .expect("run sluice");
        assert!(!out.status.success(), "{text}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(needle), "{needle} not in {stderr}");
    }
    let out = Command::new(SLUICE)
        .args(["--config", "/nonexistent/sluice.toml"])
        .output()
        .expect("run sluice");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/sluice.toml"));
}

#[tokio::test]
async fn flags_override_the_config_file() {
    let scratch = Scratch::new("flags");
    let dir = &scratch.path;
    let path = dir.join("sluice.toml");
    std::fs::write(
        &path,
        "[server]\nbind = [\"127.0.0.1:1\"]\nallow_anonymous = false\n",
    )
    .expect("write config");
    let config = path.to_str().expect("utf-8 path");
    let sluice = Sluice::start(&[
        "--config",
        config,
        "--bind",
        "127.0.0.1:0",
        "--allow-anonymous",
    ]);
    // Bound where the flag said, and anonymous clients are let in.
    Raw::handshake(sluice.addr, &connect_v4("flagged", true, 60)).await;
}

#[tokio::test]
async fn plugin_output_goes_to_the_broker_log() {
    let dir = crate::support::PluginDir::new();
    dir.add("noisy", "hostile");
    let plugins = dir.path.to_str().expect("utf-8 path");
    let mut sluice = Sluice::start(&["--bind", "127.0.0.1:0", "--plugins", plugins]);
    let mut connect = mqttbytes::v4::Connect::new("talker");
    connect.set_login("print", "");
    let mut bytes = bytes::BytesMut::new();
    connect.write(&mut bytes).expect("encode");
    Raw::handshake(sluice.addr, &bytes).await;
    let seen = sluice.wait_until_logged(&["hello from the sandbox", "complaint from the sandbox"]);
    let line = seen
        .iter()
        .find(|l| l.contains("hello from the sandbox"))
        .expect("stdout line");
    assert!(
        line.contains("INFO") && line.contains("plugin=\"noisy\""),
        "{line}"
    );
    let line = seen
        .iter()
        .find(|l| l.contains("complaint from the sandbox"))
        .expect("stderr line");
    assert!(line.contains("WARN"), "{line}");
}

/// What `cargo xtask run` starts: the shipped `config/sluice.toml` with the
/// example plugins as `acl.wasm` and `stamp.wasm`. The ACL refuses
/// `private/` and grants `#` (whose messages it checks one by one), and
/// JSON under `json/` is stamped with the subscriber.
#[tokio::test]
async fn shipped_config_runs_with_the_example_plugins() {
    let plugins = crate::support::PluginDir::new();
    plugins
        .add("acl", "topic-acl")
        .add("stamp", "payload-transform");
    // The shipped admin port, moved to an ephemeral one.
    let shipped = include_str!("../../config/sluice.toml");
    let admin = "bind = \"127.0.0.1:8888\"";
    assert!(
        shipped.contains(admin),
        "the shipped config enables the admin endpoint"
    );
    let store = "dir = \"target/sluice-store\"";
    assert!(
        shipped.contains(store),
        "the shipped config stores sessions under target/"
    );
    let scratch = Scratch::new("shipped");
    let config = scratch.file("sluice.toml");
    let store_dir = scratch.file("store");
    let text = shipped.replace(admin, "bind = \"127.0.0.1:0\"").replace(
        store,
        &format!("dir = {:?}", store_dir.to_str().expect("utf-8 path")),
    );
    std::fs::write(&config, text).expect("write config");
    let dir = plugins.path.to_str().expect("utf-8 path").to_owned();
    let sluice = Sluice::start(&[
        "--config",
        config.to_str().expect("utf-8 path"),
        "--plugins",
        &dir,
        "--bind",
        "127.0.0.1:0",
    ]);
    let mut sub = Raw::handshake(sluice.addr, &connect_v4("dashboard", true, 60)).await;
    sub.send(&subscribe_v4(1, "json/#", 0)).await;
    assert_eq!(sub.recv_kind(9).await.ack_codes(false), [0]);
    let mut publisher = Raw::handshake(sluice.addr, &connect_v4("sensor", true, 60)).await;
    publisher
        .send(&publish_v4("json/room1", 0, 0, br#"{"temp":21}"#, false))
        .await;
    let got = sub.recv_kind(3).await.publish_v4();
    assert_eq!(
        &got.payload[..],
        br#"{"temp":21,"delivered_to":"dashboard"}"#
    );
    sub.send(&subscribe_v4(2, "private/#", 0)).await;
    assert_eq!(sub.recv_kind(9).await.ack_codes(false), [0x80]);
    // `mosquitto_sub -t '#'`: granted, and it gets what is published
    // outside private/ (stamped when it is JSON under json/).
    let mut all = Raw::handshake(sluice.addr, &connect_v4("everything", true, 60)).await;
    all.send(&subscribe_v4(1, "#", 0)).await;
    assert_eq!(all.recv_kind(9).await.ack_codes(false), [0]);
    publisher
        .send(&publish_v4("public/a", 0, 0, b"hello", false))
        .await;
    publisher
        .send(&publish_v4("json/room2", 0, 0, br#"{"temp":22}"#, false))
        .await;
    let got = all.recv_kind(3).await.publish_v4();
    assert_eq!(
        (&got.topic[..], &got.payload[..]),
        ("public/a", &b"hello"[..])
    );
    let got = all.recv_kind(3).await.publish_v4();
    assert_eq!(
        (&got.topic[..], &got.payload[..]),
        (
            "json/room2",
            &br#"{"temp":22,"delivered_to":"everything"}"#[..]
        )
    );
    publisher
        .send(&publish_v4("private/x", 0, 0, b"nope", false))
        .await;
    assert!(publisher.expect_closed().await.is_empty());
}

/// A scratch directory for one test, removed when dropped.
type Scratch = crate::support::TempDir;

/// The `[plugins]` section for `dir`, with the compile cache the other
/// tests share.
fn plugins_section(dir: &crate::support::PluginDir) -> String {
    let cache = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/test-plugin-cache");
    format!(
        "[plugins]\ndir = {:?}\ncache_dir = {cache:?}\n",
        dir.path.to_str().expect("utf-8 path")
    )
}

fn sluice_plugins(args: &[&str]) -> std::process::Output {
    Command::new(SLUICE)
        .arg("plugins")
        .args(args)
        .output()
        .expect("run sluice plugins")
}

/// `sluice plugins --config` sends the token of the configuration's
/// `admin.token_file`; without it the endpoint refuses.
#[test]
fn plugins_subcommand_sends_the_configured_token() {
    let scratch = Scratch::new("plugins-token");
    let token = scratch.file("admin-token");
    std::fs::write(&token, "0123456789abcdef-token\n").expect("write token");
    let config = scratch.file("sluice.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nbind = [\"127.0.0.1:0\"]\n[admin]\nbind = \"127.0.0.1:0\"\ntoken_file = {:?}\n",
            token.to_str().expect("utf-8 path")
        ),
    )
    .expect("write config");
    let mut sluice = Sluice::start(&["--config", config.to_str().expect("utf-8 path")]);
    let admin = sluice.admin_addr().to_string();
    let config = config.to_str().expect("utf-8 path");
    let out = sluice_plugins(&["--admin", &admin, "--config", config, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert!(status["plugins"].is_array(), "{status}");
    let out = sluice_plugins(&["--admin", &admin]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("401"), "{stderr}");
}

#[test]
fn plugins_subcommand_prints_the_chain_as_a_table_and_as_json() {
    let plugins = crate::support::PluginDir::new();
    plugins.add("a", "trivial").add("b", "trivial");
    let scratch = Scratch::new("plugins-cmd");
    let config = scratch.file("sluice.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nbind = [\"127.0.0.1:0\"]\n[admin]\nbind = \"127.0.0.1:0\"\n{}\
             [plugin.b]\npriority = 1\n[plugin.b.config]\nverdict = \"next\"\n",
            plugins_section(&plugins)
        ),
    )
    .expect("write config");
    let mut sluice = Sluice::start(&["--config", config.to_str().expect("utf-8 path")]);
    let admin = sluice.admin_addr().to_string();

    let out = sluice_plugins(&["--admin", &admin]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    let heading: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        heading,
        [
            "NAME",
            "FILE",
            "SHA256",
            "HOOKS",
            "CALLS",
            "ERRORS",
            "FAILURES",
            "TRAPS",
            "P99",
            "FUEL",
            "USED",
            "INSTANCES",
            "LAST",
            "RELOAD"
        ],
        "{stdout}"
    );
    let first_words: Vec<&str> = lines[1..3]
        .iter()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(first_words, ["b", "a"], "chain order:\n{stdout}");
    for line in &lines[1..3] {
        assert!(line.contains("auth-on-register"), "{stdout}");
        assert!(line.ends_with("loaded"), "{stdout}");
        let sha = line.split_whitespace().nth(2).expect("sha256 column");
        assert_eq!(sha.len(), 12, "{stdout}");
    }

    let out = sluice_plugins(&["--admin", &admin, "--json"]);
    assert!(out.status.success());
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let names: Vec<&str> = status["plugins"]
        .as_array()
        .expect("plugins")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(names, ["b", "a"]);
    assert_eq!(
        status["plugins"][0]["sha256"].as_str().map(str::len),
        Some(64)
    );
}

#[test]
fn plugins_subcommand_without_a_broker_says_where_it_looked() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let admin = format!("127.0.0.1:{port}");
    let out = sluice_plugins(&["--admin", &admin]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot reach the admin endpoint at {admin}")),
        "{stderr}"
    );
    assert!(stderr.contains("[admin] bind"), "{stderr}");
    assert!(out.stdout.is_empty());
}

/// A `sluice` with `auth.wasm` (trivial) answering `verdict`.
fn hup_config(plugins: &crate::support::PluginDir, verdict: &str) -> String {
    format!(
        "[server]\nbind = [\"127.0.0.1:0\"]\n{}[plugin.auth.config]\nverdict = \"{verdict}\"\n",
        plugins_section(plugins)
    )
}

/// The CONNACK return code a new MQTT 3.1.1 client gets.
async fn connack_code(addr: SocketAddr, client: &str) -> u8 {
    let mut raw = Raw::connect(addr).await;
    raw.send(&connect_v4(client, true, 60)).await;
    raw.recv().await.connack().1
}

#[tokio::test]
async fn sighup_reloads_the_config_file_and_keeps_it_when_the_new_one_is_invalid() {
    let plugins = crate::support::PluginDir::new();
    plugins.add("auth", "trivial");
    let scratch = Scratch::new("sighup");
    let config = scratch.file("sluice.toml");
    std::fs::write(&config, hup_config(&plugins, "ok")).expect("write config");
    let mut sluice = Sluice::start(&["--config", config.to_str().expect("utf-8 path")]);
    assert_eq!(connack_code(sluice.addr, "before").await, 0);

    std::fs::write(&config, hup_config(&plugins, "deny")).expect("write config");
    sluice.signal("HUP");
    sluice.wait_for("received SIGHUP");
    let line = sluice.wait_for("configuration reloaded");
    assert!(line.contains("plugin chain changed"), "{line}");
    // 5: not authorized.
    assert_eq!(connack_code(sluice.addr, "after").await, 5);

    std::fs::write(&config, "[server\nbind = nope\n").expect("write config");
    sluice.signal("HUP");
    let line = sluice.wait_for("configuration reload failed");
    assert!(line.contains("keeping the running configuration"), "{line}");
    assert!(
        line.contains("sluice.toml"),
        "the reason names the file: {line}"
    );
    assert_eq!(connack_code(sluice.addr, "still").await, 5);
}

#[tokio::test]
async fn sighup_without_a_config_file_reloads_the_plugin_directory() {
    let plugins = crate::support::PluginDir::new();
    let dir = plugins.path.to_str().expect("utf-8 path").to_owned();
    let mut sluice = Sluice::start(&["--bind", "127.0.0.1:0", "--plugins", &dir]);
    // No authentication plugin and anonymous clients not allowed: refused.
    assert_ne!(connack_code(sluice.addr, "before").await, 0);
    plugins.add("auth", "trivial");
    sluice.signal("HUP");
    sluice.wait_for("received SIGHUP");
    sluice.wait_for("plugin directory reloaded");
    assert_eq!(connack_code(sluice.addr, "after").await, 0);
}

/// The repository's example configuration, what `cargo xtask run` uses.
const SHIPPED_CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/sluice.toml");

fn check_config(file: &std::path::Path) -> std::process::Output {
    Command::new(SLUICE)
        .arg("check-config")
        .arg(file)
        // Errors are printed as their message even so.
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("run sluice check-config")
}

#[test]
fn check_config_prints_the_shipped_config_as_toml_that_reads_back_the_same() {
    let path = std::path::Path::new(SHIPPED_CONFIG);
    let out = check_config(path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let printed = sluice_broker::Config::parse(&stdout).expect("the output is a valid config");
    let loaded = sluice_broker::Config::load(path).expect("the shipped config is valid");
    assert_eq!(printed, loaded, "{stdout}");
    assert!(
        stdout.contains("[plugin.acl.config]") && stdout.contains("bind = \"127.0.0.1:8888\""),
        "{stdout}"
    );
    assert!(stderr.contains("valid"), "{stderr}");
}

#[test]
fn check_config_fills_in_the_defaults() {
    let scratch = Scratch::new("check-config");
    let path = scratch.file("small.toml");
    std::fs::write(
        &path,
        "[mqtt]\nmax_inflight = 7\n[[listener]]\nkind = \"ws\"\nbind = \"127.0.0.1:8080\"\n",
    )
    .expect("write config");
    let out = check_config(&path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "[server]",
        "bind = [\"127.0.0.1:1883\"]",
        "allow_anonymous = false",
        "connect_timeout_secs = 10",
        "max_inflight = 7",
        "receive_maximum = 32",
        "max_session_expiry_secs = 4294967295",
        "overflow = \"drop_newest\"",
        "level = \"info\"",
        "fuel = 50000000",
        "on_failure = \"deny\"",
        "watch = \"auto\"",
        "[[listener]]",
        "kind = \"ws\"",
        "bind = \"127.0.0.1:8080\"",
        "path = \"/mqtt\"",
        "protocol_versions = [3, 4, 5]",
    ] {
        assert!(
            stdout.lines().any(|l| l == line),
            "{line:?} not printed:\n{stdout}"
        );
    }
    let printed = sluice_broker::Config::parse(&stdout).expect("valid output");
    assert_eq!(
        printed,
        sluice_broker::Config::load(&path).expect("valid config")
    );
}

#[test]
fn check_config_and_the_broker_refuse_a_bad_file_with_the_same_message() {
    let scratch = Scratch::new("check-config-bad");
    let path = scratch.file("bad.toml");
    for (text, expected) in [
        (
            "[server]\nbind = [\"127.0.0.1:0\"]\n\n[mqtt]\nreceive_maximum = 0\n",
            format!(
                "invalid config file {}, line 5: `mqtt.receive_maximum` must be between 1 and 65535",
                path.display()
            ),
        ),
        (
            "[server]\nbind = []\n[[listener]]\nkind = \"tls\"\nbind = \"127.0.0.1:0\"\n",
            format!(
                "invalid config file {}, line 3: `listener[0].tls` a tls listener needs a \
                 [listener.tls] section with cert and key",
                path.display()
            ),
        ),
        (
            "[mqtt]\nmax_packet_sise = 100\n",
            format!(
                "invalid config file {}, line 2, column 1: `mqtt.max_packet_sise`: unknown field",
                path.display()
            ),
        ),
    ] {
        std::fs::write(&path, text).expect("write config");
        let check = check_config(&path);
        let broker = Command::new(SLUICE)
            .arg("--config")
            .arg(&path)
            .env("RUST_BACKTRACE", "1")
            .output()
            .expect("run sluice");
        for (what, out) in [("check-config", &check), ("the broker", &broker)] {
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{what} accepted:\n{text}");
            assert_ne!(out.status.code(), Some(0), "{what}");
            assert!(
                stderr.contains(&expected),
                "{what}: {expected:?} not in {stderr:?}"
            );
            // The message on one line, not a Debug dump or a backtrace.
            assert!(
                stderr.starts_with("error: invalid config file"),
                "{what}: {stderr}"
            );
            assert_eq!(stderr.lines().count(), 1, "{what}: {stderr}");
            assert!(out.stdout.is_empty(), "{what} printed on stdout");
        }
    }
    let missing = scratch.file("missing.toml");
    let out = check_config(&missing);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains(&format!("cannot read config file {}", missing.display())),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `sluice store`: refused while the broker holds the store; after a
/// graceful stop, `stats` counts and `dump` lists what a persistent
/// session left (its subscription, a queued message, a retained one).
#[tokio::test]
async fn store_subcommand_inspects_a_stopped_brokers_store() {
    let scratch = Scratch::new("store-cli");
    let dir = scratch.file("store");
    let dir_arg = dir.to_str().expect("utf-8 path").to_owned();
    let config = scratch.file("sluice.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nbind = [\"127.0.0.1:0\"]\nallow_anonymous = true\n\
             [persistence]\ndir = {dir_arg:?}\n"
        ),
    )
    .expect("write config");
    let mut sluice = Sluice::start(&["--config", config.to_str().expect("utf-8 path")]);
    let mut sub = Raw::handshake(sluice.addr, &connect_v4("keeper", false, 60)).await;
    sub.send(&subscribe_v4(1, "kept/#", 1)).await;
    assert_eq!(sub.recv_kind(9).await.ack_codes(false), [1]);
    drop(sub);
    let mut publisher = Raw::handshake(sluice.addr, &connect_v4("pub", true, 60)).await;
    publisher
        .send(&publish_v4("kept/a", 1, 1, b"hello", false))
        .await;
    publisher.recv_kind(4).await;
    publisher
        .send(&publish_v4("kept/r", 1, 2, b"retained", true))
        .await;
    publisher.recv_kind(4).await;

    let store = |action: &str| {
        Command::new(SLUICE)
            .args(["store", action, "--dir", &dir_arg])
            .output()
            .expect("run sluice store")
    };
    let busy = store("stats");
    assert!(!busy.status.success());
    assert!(
        String::from_utf8_lossy(&busy.stderr).contains("in use by another process"),
        "{}",
        String::from_utf8_lossy(&busy.stderr)
    );

    sluice.signal("TERM");
    assert!(sluice.wait().success());
    let stats = store("stats");
    assert!(stats.status.success(), "{stats:?}");
    let text = String::from_utf8_lossy(&stats.stdout);
    let entries = |space: &str| -> u64 {
        text.lines()
            .find(|l| l.starts_with(space))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {space} line in {text}"))
    };
    assert_eq!(entries("sessions"), 1, "{text}");
    assert_eq!(entries("subscriptions"), 1, "{text}");
    // The message to `kept/r` was queued for the session too.
    assert_eq!(entries("queue"), 2, "{text}");
    assert_eq!(entries("retained"), 1, "{text}");
    let dump = store("dump");
    assert!(dump.status.success(), "{dump:?}");
    let text = String::from_utf8_lossy(&dump.stdout);
    for needle in [
        "session \"keeper\"",
        "subscription kept/# qos 1",
        "queued qos 1 kept/a (5 bytes)",
        "retained \"\"kept/r (8 bytes)",
    ] {
        assert!(text.contains(needle), "{needle:?} not in {text}");
    }
    let missing = Command::new(SLUICE)
        .args(["store", "stats", "--dir", &format!("{dir_arg}-none")])
        .output()
        .expect("run sluice store");
    assert!(!missing.status.success());
}
