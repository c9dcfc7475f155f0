//! The `sluice` executable: flags, config errors, signals.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::packets::*;
use crate::support::{PATIENCE, Raw};

const SLUICE: &str = env!("CARGO_BIN_EXE_sluice");

/// A running `sluice` process and the address it reported.
struct Process {
    child: Child,
    addr: SocketAddr,
    log: std::sync::mpsc::Receiver<String>,
}

impl Process {
    /// Starts `sluice` with `args` and waits for its "listening on" line.
    fn start(args: &[&str]) -> Process {
        let mut child = Command::new(SLUICE)
            .args(args)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("start sluice");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let addr = loop {
            let line = rx
                .recv_timeout(PATIENCE)
                .expect("sluice reported its address");
            if let Some(rest) = line.split("listening on ").nth(1) {
                let addr = rest.split_whitespace().next().expect("address");
                break addr.parse().expect("socket address");
            }
        };
        Process {
            child,
            addr,
            log: rx,
        }
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits for the process to exit.
    fn wait(&mut self) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(std::time::Instant::now() < deadline, "sluice did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn sigterm_and_sigint_shut_down_gracefully() {
    for signal in ["TERM", "INT"] {
        let mut sluice = Process::start(&["--bind", "127.0.0.1:0", "--allow-anonymous"]);
        let mut v5 = Raw::handshake(sluice.addr, &connect_v5("graceful", true, 60, |_| {})).await;
        let mut v4 = Raw::handshake(sluice.addr, &connect_v4("graceful4", true, 60)).await;
        sluice.signal(signal);
        let frames = v5.expect_closed().await;
        assert_eq!(frames.last().map(|f| f.disconnect_reason()), Some(0x8B));
        assert!(v4.expect_closed().await.is_empty());
        let status = sluice.wait();
        assert!(status.success(), "SIG{signal}: exit status {status}");
        let log: Vec<String> = sluice.log.try_iter().collect();
        assert!(
            log.iter().any(|l| l.contains("shutdown complete")),
            "{log:?}"
        );
    }
}

#[test]
fn invalid_config_is_refused_with_the_key_named() {
    let dir = std::env::temp_dir().join(format!("sluice-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
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
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn flags_override_the_config_file() {
    let dir = std::env::temp_dir().join(format!("sluice-flags-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("sluice.toml");
    std::fs::write(
        &path,
        "[server]\nbind = [\"127.0.0.1:1\"]\nallow_anonymous = false\n",
    )
    .expect("write config");
    let config = path.to_str().expect("utf-8 path");
    let sluice = Process::start(&[
        "--config",
        config,
        "--bind",
        "127.0.0.1:0",
        "--allow-anonymous",
    ]);
    // Bound where the flag said, and anonymous clients are let in.
    Raw::handshake(sluice.addr, &connect_v4("flagged", true, 60)).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn plugin_output_goes_to_the_broker_log() {
    let dir = crate::support::PluginDir::new();
    dir.add("noisy", "hostile");
    let plugins = dir.path.to_str().expect("utf-8 path");
    let sluice = Process::start(&["--bind", "127.0.0.1:0", "--plugins", plugins]);
    let mut connect = mqttbytes::v4::Connect::new("talker");
    connect.set_login("print", "");
    let mut bytes = bytes::BytesMut::new();
    connect.write(&mut bytes).expect("encode");
    Raw::handshake(sluice.addr, &bytes).await;
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + PATIENCE;
    while !(seen
        .iter()
        .any(|l: &String| l.contains("hello from the sandbox"))
        && seen
            .iter()
            .any(|l| l.contains("complaint from the sandbox")))
    {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match sluice.log.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => panic!("plugin output not logged: {seen:#?}"),
        }
    }
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
/// `private/`, and JSON under `json/` is stamped with the subscriber.
#[tokio::test]
async fn shipped_config_runs_with_the_example_plugins() {
    let plugins = crate::support::PluginDir::new();
    plugins
        .add("acl", "topic-acl")
        .add("stamp", "payload-transform");
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/sluice.toml");
    let dir = plugins.path.to_str().expect("utf-8 path").to_owned();
    let sluice = Process::start(&[
        "--config",
        config,
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
    publisher
        .send(&publish_v4("private/x", 0, 0, b"nope", false))
        .await;
    assert!(publisher.expect_closed().await.is_empty());
}
