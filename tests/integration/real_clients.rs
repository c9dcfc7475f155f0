//! Other people's clients against Sluice: Debian's mosquitto-clients
//! (`mosquitto_pub` / `mosquitto_sub`) and Eclipse Paho for Python, each in
//! MQTT 3.1.1 and 5. `cargo xtask test` installs both; run alone, these tests
//! fail with a message saying what is missing.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::support::rumqtt::V4;
use crate::support::{TestBroker, eventually};

fn tool(name: &str) -> String {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{name} is not installed: run the suite with `cargo xtask test`, which installs mosquitto-clients"
    );
    name.to_owned()
}

/// The Python with paho-mqtt that `cargo xtask test` installs.
pub(crate) fn python() -> String {
    // `cargo xtask test` sets SLUICE_PYTHON; after one such run, the
    // virtualenv it made also serves plain `cargo test`.
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/tools/venv/bin/python");
    let python = std::env::var("SLUICE_PYTHON").unwrap_or_else(|_| {
        if venv.exists() {
            venv.display().to_string()
        } else {
            "python3".to_owned()
        }
    });
    let ok = Command::new(&python)
        .args(["-c", "import paho.mqtt.client"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{python} cannot import paho-mqtt: run the suite with `cargo xtask test`, which installs it"
    );
    python
}

fn scenarios_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/clients/paho_scenarios.py")
}

/// Runs a command with a hard time limit.
async fn run(mut cmd: Command) -> Output {
    cmd.stdin(Stdio::null());
    let child = tokio::process::Command::from(cmd)
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(30), child)
        .await
        .expect("client finished in time")
        .expect("client ran")
}

/// Waits until the client `id` holds a subscription.
async fn subscribed(broker: &TestBroker, id: &str) {
    let id = sluice_broker::session::SubscriberId {
        mountpoint: "".into(),
        client_id: sluice_broker::topic::ClientId::new(id).expect("valid id"),
    };
    eventually("client subscribed", || {
        broker
            .ctx
            .registry
            .get(&id)
            .is_some_and(|s| !s.lock().subscriptions.is_empty())
    })
    .await;
}

fn version_flag(v5: bool) -> &'static str {
    if v5 { "mqttv5" } else { "mqttv311" }
}

/// `mosquitto_sub` in the background, waiting for `count` messages.
fn mosquitto_sub(port: u16, v5: bool, args: &[&str], count: usize) -> tokio::process::Child {
    let mut cmd = tokio::process::Command::new(tool("mosquitto_sub"));
    cmd.args([
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-V",
        version_flag(v5),
    ])
    .args(["-C", &count.to_string(), "-W", "20"])
    .args(args)
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    cmd.spawn().expect("start mosquitto_sub")
}

async fn mosquitto_pub(port: u16, v5: bool, args: &[&str]) {
    let mut cmd = Command::new(tool("mosquitto_pub"));
    cmd.args([
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-V",
        version_flag(v5),
    ])
    .args(args);
    let out = run(cmd).await;
    assert!(
        out.status.success(),
        "mosquitto_pub {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Waits (bounded) for a `mosquitto_sub` to exit successfully; its
/// output.
pub(crate) async fn finish(child: tokio::process::Child) -> String {
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("mosquitto_sub finished")
        .expect("mosquitto_sub ran");
    assert!(
        out.status.success(),
        "mosquitto_sub: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn mosquitto_clients_round_trip_at_each_qos() {
    let broker = TestBroker::start();
    for v5 in [false, true] {
        for qos in ["0", "1", "2"] {
            let topic = format!("mosq/{v5}/{qos}");
            let id = format!("mosq-sub-{v5}-{qos}");
            let sub = mosquitto_sub(broker.port(), v5, &["-i", &id, "-t", &topic, "-q", qos], 1);
            subscribed(&broker, &id).await;
            mosquitto_pub(broker.port(), v5, &["-t", &topic, "-q", qos, "-m", "hello"]).await;
            assert_eq!(finish(sub).await.trim(), "hello", "v5={v5} qos={qos}");
        }
    }
}

#[tokio::test]
async fn mosquitto_clients_retained_message() {
    let broker = TestBroker::start();
    for v5 in [false, true] {
        let topic = format!("mosq/retained/{v5}");
        mosquitto_pub(
            broker.port(),
            v5,
            &["-t", &topic, "-r", "-q", "1", "-m", "kept"],
        )
        .await;
        let sub = mosquitto_sub(
            broker.port(),
            v5,
            &["-t", &topic, "-q", "1", "-F", "%r %p"],
            1,
        );
        assert_eq!(
            finish(sub).await.trim(),
            "1 kept",
            "retained flag and payload"
        );
    }
}

#[tokio::test]
async fn mosquitto_clients_will_on_abrupt_disconnect() {
    let broker = TestBroker::start();
    let mut watcher = V4::connect(broker.addr, "watcher").await;
    watcher.subscribe("mosq/will/#", 1).await;
    for v5 in [false, true] {
        let topic = format!("mosq/will/{v5}");
        let before = broker.ctx.router.subscription_count();
        let mut victim = mosquitto_sub(
            broker.port(),
            v5,
            &[
                "-t",
                "mosq/nothing",
                "--will-topic",
                &topic,
                "--will-payload",
                "bye",
                "--will-qos",
                "1",
            ],
            1,
        );
        eventually("victim subscribed", || {
            broker.ctx.router.subscription_count() > before
        })
        .await;
        victim.start_kill().expect("kill mosquitto_sub");
        let _ = victim.wait().await;
        let p = watcher.next_publish().await;
        assert_eq!(
            (p.topic.as_str(), &p.payload[..]),
            (topic.as_str(), &b"bye"[..])
        );
    }
}

#[tokio::test]
async fn mosquitto_clients_persistent_session_gets_queued_messages() {
    let broker = TestBroker::start();
    for v5 in [false, true] {
        let id = format!("mosq-durable-{v5}");
        let topic = format!("mosq/queue/{v5}");
        let mut persist = vec!["-c", "-i", id.as_str(), "-t", topic.as_str(), "-q", "1"];
        if v5 {
            persist.extend(["-x", "60"]);
        }
        // Subscribe and leave (-E: exit once subscribed).
        let mut first: Vec<&str> = persist.clone();
        first.push("-E");
        let sub = mosquitto_sub(broker.port(), v5, &first, 1);
        finish(sub).await;
        for m in ["a", "b", "c"] {
            mosquitto_pub(broker.port(), v5, &["-t", &topic, "-q", "1", "-m", m]).await;
        }
        let sub = mosquitto_sub(broker.port(), v5, &persist, 3);
        let got = finish(sub).await;
        assert_eq!(got.lines().collect::<Vec<_>>(), ["a", "b", "c"], "v5={v5}");
    }
}

#[tokio::test]
async fn paho_python_scenarios() {
    let broker = TestBroker::start();
    let python = python();
    for version in ["311", "5"] {
        for scenario in ["roundtrip", "retained", "will", "persistent"] {
            let mut cmd = Command::new(&python);
            cmd.arg(scenarios_script())
                .args([&broker.port().to_string(), version, scenario]);
            let out = run(cmd).await;
            assert!(
                out.status.success(),
                "paho {scenario} v{version}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(
                String::from_utf8_lossy(&out.stdout).trim(),
                format!("ok {scenario}")
            );
        }
    }
}
