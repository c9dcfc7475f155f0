//! The cost of the webhook-auth example plugin's decisions, `cargo xtask
//! bench --webhook-only`: Sluice without plugins, with webhook-auth caching
//! its answers (`cache_secs`), and with webhook-auth asking its HTTP
//! service for every CONNECT and every PUBLISH. The service is a small
//! HTTP/1.1 server in this process on 127.0.0.1 that allows everything and
//! counts the requests it answers. Writes the "Webhook decisions" section
//! of `BENCHMARKS.md`.

use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};

use super::report::{human, median, median_range};
use super::{Broker, cpu_secs, field, loadgen, start, stop};

/// The section's heading, which `report::splice` looks for.
pub const HEADING: &str = "## Webhook decisions";

/// The HTTP service's port.
const SERVICE_PORT: u16 = 18_950;
/// Rounds, interleaved.
const ROUNDS: usize = 3;
/// `fanin` messages per publisher (quick, full); 4 publishers.
const MSGS: (usize, usize) = (5_000, 25_000);
/// `connect` seconds (quick, full), 8 workers reconnecting with their ids.
const CONNECT_SECS: (u32, u32) = (1, 3);

/// The brokers, in table order.
const BROKERS: [Broker; 3] = [
    Broker::Sluice,
    Broker::SluiceWebhook,
    Broker::SluiceWebhookUncached,
];

/// One broker's figures in one round.
#[derive(Clone, Copy, Debug, Default)]
pub struct Figures {
    msgs_per_sec: f64,
    /// Broker CPU seconds per 100,000 messages.
    cpu_per_100k_msgs: f64,
    /// HTTP requests per message.
    requests_per_msg: f64,
    lost: f64,
    connects_per_sec: f64,
    connects_per_cpu_sec: f64,
    requests_per_connect: f64,
}

/// Per broker (as `BROKERS`), one value per round.
pub type Outcome = Vec<Vec<Figures>>;

/// The `[plugins]` section and webhook-auth's configuration for `broker`
/// (`dir`: the bench's working directory).
pub fn config(root: &Path, dir: &Path, broker: Broker) -> Result<String> {
    let cache_secs = if broker == Broker::SluiceWebhook {
        60
    } else {
        0
    };
    let plugins = dir.join(format!("webhook-{}", broker.port()));
    let _ = std::fs::remove_dir_all(&plugins);
    std::fs::create_dir_all(&plugins)?;
    std::fs::copy(
        root.join("target/plugins/webhook-auth.wasm"),
        plugins.join("webhook-auth.wasm"),
    )
    .context("webhook-auth.wasm (cargo xtask build-plugins)")?;
    let base = format!("http://127.0.0.1:{SERVICE_PORT}");
    Ok(format!(
        "[plugins]\ndir = \"{}\"\ncache_dir = \"{}\"\n\
         [plugin.webhook-auth]\nhttp_allow = [\"{base}/*\"]\n\
         [plugin.webhook-auth.config]\nurl = \"{base}/connect\"\n\
         publish_url = \"{base}/publish\"\ncache_secs = \"{cache_secs}\"\n",
        plugins.display(),
        dir.join("plugin-cache").display()
    ))
}

pub fn run(root: &Path, quick: bool, pin: bool) -> Result<Outcome> {
    let dir = root.join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let requests = serve()?;
    let msgs = if quick { MSGS.0 } else { MSGS.1 };
    let secs = if quick {
        CONNECT_SECS.0
    } else {
        CONNECT_SECS.1
    };
    let mut outcome = vec![Vec::new(); BROKERS.len()];
    for round in 1..=ROUNDS {
        for (i, broker) in BROKERS.iter().enumerate() {
            eprintln!("xtask: round {round}/{ROUNDS}: {}", broker.label());
            let mut child = start(root, &dir, *broker, pin, None)?;
            let measured = (|| -> Result<Figures> {
                let asked = requests.load(Ordering::Relaxed);
                let cpu = cpu_secs(child.id())?;
                let args = format!("--pubs 4 --msgs {msgs} --size 64 --qos 0");
                let out = loadgen(root, "fanin", *broker, &args, child.id(), pin)?;
                let cpu = cpu_secs(child.id())? - cpu;
                let delivered = field(&out, "delivered")?;
                let sent = (4 * msgs) as f64;
                let mut f = Figures {
                    msgs_per_sec: field(&out, "msgs_per_sec")?,
                    cpu_per_100k_msgs: cpu / delivered.max(1.0) * 1e5,
                    requests_per_msg: (requests.load(Ordering::Relaxed) - asked) as f64 / sent,
                    lost: field(&out, "loss")?,
                    ..Figures::default()
                };
                let asked = requests.load(Ordering::Relaxed);
                let cpu = cpu_secs(child.id())?;
                let args = format!("--workers 8 --secs {secs} --ids reused");
                let out = loadgen(root, "connect-8", *broker, &args, child.id(), pin)?;
                let cpu = cpu_secs(child.id())? - cpu;
                let connects = field(&out, "connects")?;
                f.connects_per_sec = field(&out, "connects_per_sec")?;
                f.connects_per_cpu_sec = connects / cpu.max(1e-9);
                f.requests_per_connect =
                    (requests.load(Ordering::Relaxed) - asked) as f64 / connects.max(1.0);
                Ok(f)
            })();
            stop(&mut child);
            outcome[i].push(measured?);
        }
    }
    Ok(outcome)
}

/// Starts the HTTP service on `SERVICE_PORT`: every POST is answered
/// `200 {"result":"allow"}`, on kept-alive connections too. Returns the
/// count of answered requests. It runs until the process ends.
fn serve() -> Result<Arc<AtomicU64>> {
    let listener = TcpListener::bind(("127.0.0.1", SERVICE_PORT))
        .with_context(|| format!("cannot listen on 127.0.0.1:{SERVICE_PORT}"))?;
    let requests = Arc::new(AtomicU64::new(0));
    let count = requests.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let count = count.clone();
            std::thread::spawn(move || {
                let _ = answer(stream, &count);
            });
        }
    });
    Ok(requests)
}

/// Answers the requests of one connection until it closes.
fn answer(stream: TcpStream, count: &AtomicU64) -> std::io::Result<()> {
    const BODY: &str = r#"{"result":"allow"}"#;
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    loop {
        let mut length = 0usize;
        let mut close = false;
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            let lower = header.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            } else if lower.starts_with("connection:") && lower.contains("close") {
                close = true;
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        write!(
            writer,
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{BODY}",
            BODY.len()
        )?;
        count.fetch_add(1, Ordering::Relaxed);
        if close {
            return Ok(());
        }
    }
}

/// The "Webhook decisions" section.
pub fn section(
    outcome: &Outcome,
    date: &str,
    command: &str,
    revision: &str,
    quick: bool,
) -> String {
    let msgs = if quick { MSGS.0 } else { MSGS.1 };
    let secs = if quick {
        CONNECT_SECS.0
    } else {
        CONNECT_SECS.1
    };
    let values = |i: usize, f: fn(&Figures) -> f64| -> Vec<f64> {
        outcome
            .get(i)
            .map_or_else(Vec::new, |r| r.iter().map(f).collect())
    };
    let mut s = String::new();
    let _ = writeln!(s, "{HEADING}\n");
    let _ = writeln!(
        s,
        "Measured {date} with `{command}`{revision}: {ROUNDS} interleaved rounds \
         (median, min–max), a fresh broker for each, pinned as above; the HTTP \
         service (in the xtask process, not pinned) allows everything. Messages: \
         `loadgen fanin`, 4 publishers × {msgs} messages of 64 bytes at QoS 0 → 1 \
         subscriber. Connects: `loadgen connect --workers 8 --secs {secs} --ids \
         reused`, 8 clients each reconnecting with its own client id (as devices \
         do), CONNECT → CONNACK → DISCONNECT.\n"
    );
    let _ = writeln!(
        s,
        "webhook-auth (cached) has `cache_secs = 60`: the broker reuses an accepted \
         publish for that client, topic, QoS and RETAIN flag, and the plugin keeps \
         accepted logins in its key-value store, so the service is asked once per \
         client and topic; (every decision) has no caching, so every CONNECT and \
         every PUBLISH is an HTTP request from the plugin, suspended in the broker \
         while it runs.\n"
    );
    let _ = writeln!(
        s,
        "| broker | msg/s | per message | broker CPU s per 100k msgs | requests per message | lost | connects/s | connects per broker CPU-second | requests per connect |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|");
    let base = median(&values(0, |f| f.msgs_per_sec));
    for (i, broker) in BROKERS.iter().enumerate() {
        let rate = values(i, |f| f.msgs_per_sec);
        let extra = if i == 0 {
            "—".to_owned()
        } else {
            format!("{:+.2} µs", (1.0 / median(&rate) - 1.0 / base) * 1e6)
        };
        let lost: f64 = values(i, |f| f.lost).iter().sum();
        let _ = writeln!(
            s,
            "| {} | {} | {extra} | {:.2} | {:.4} | {lost} | {} | {} | {:.2} |",
            broker.label(),
            median_range(&rate, human),
            median(&values(i, |f| f.cpu_per_100k_msgs)),
            median(&values(i, |f| f.requests_per_msg)),
            median_range(&values(i, |f| f.connects_per_sec), human),
            median_range(&values(i, |f| f.connects_per_cpu_sec), human),
            median(&values(i, |f| f.requests_per_connect)),
        );
    }
    let _ = writeln!(
        s,
        "\n`per message`: 1 / rate with the plugin minus 1 / rate without it. \
         `lost`: messages sent and not delivered, summed over the rounds. \
         `requests`: HTTP requests the service answered, per message sent or per \
         connect. Each request opens a new TCP connection to the service \
         (wasmtime-wasi-http's client keeps no connection pool), which is most of \
         the uncached case's broker CPU.\n"
    );
    s
}
