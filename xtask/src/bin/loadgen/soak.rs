//! The soak scenario: normal clients at a fixed rate for a fixed time, with
//! hostile clients beside them (`--hostile 1`, see `hostile.rs`) or
//! without, and the broker's peak resident memory.
//!
//! Normal clients are `pairs` publisher → subscriber pairs on
//! `soak/n/{i}`, QoS 1 both ways, each publisher sending `rate` msg/s
//! (at most `WINDOW` unacknowledged) with its send time in the first 8
//! bytes of the payload. Subscribers measure end-to-end latency and count
//! what arrives; after the sending time they wait for the rest until
//! nothing has arrived for `IDLE` (at most `DRAIN`). What has not arrived
//! by then is loss.
//!
//! A guard thread samples the broker's VmRSS (`--pid`) every 50 ms. Past
//! `--rss-limit-mb` it kills the broker (SIGKILL) and the scenario reports
//! where: a broker that cannot bound its memory must not take the machine
//! down with it. Hostile clients run only with the guard.

mod hostile;

pub use hostile::Kinds;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::io::AsyncWriteExt;
use tokio::task::JoinSet;

use crate::client::Conn;
use crate::scenarios::{Outcome, rss_kib};
use crate::wire;

/// Unacknowledged QoS 1 messages a normal publisher may have.
const WINDOW: u64 = 500;
/// After the sending time, a subscriber that receives nothing for this long
/// stops waiting.
const IDLE: Duration = Duration::from_secs(2);
/// Subscribers stop waiting this long after the sending time at the latest.
const DRAIN: Duration = Duration::from_secs(10);
/// How often the guard reads the broker's RSS.
const SAMPLE: Duration = Duration::from_millis(50);

/// The scenario's settings.
pub struct Soak {
    pub secs: f64,
    pub pairs: usize,
    /// Messages per second per publisher.
    pub rate: u64,
    pub size: usize,
    pub hostile: Kinds,
    /// The broker's process id (0: no memory figures and no guard).
    pub pid: u32,
    pub rss_limit_mb: u64,
}

pub async fn soak(addr: SocketAddr, p: Soak) -> Result<Outcome> {
    if p.hostile.any() && p.pid == 0 {
        bail!("soak --hostile 1 needs --pid: the RSS guard protects the machine");
    }
    let guard = Guard::start(p.pid, p.rss_limit_mb * 1024);
    let mut subs = Vec::new();
    for i in 0..p.pairs {
        let mut c = Conn::open(addr, &format!("soak-sub-{i}")).await?;
        c.subscribe(&format!("soak/n/{i}"), 1).await?;
        subs.push(c);
    }
    let mut pubs = Vec::new();
    for i in 0..p.pairs {
        pubs.push(Conn::open(addr, &format!("soak-pub-{i}")).await?);
    }
    let base = Instant::now();
    let deadline = base + Duration::from_secs_f64(p.secs);
    let stats = Arc::new(hostile::Stats::default());
    let hostile = p
        .hostile
        .any()
        .then(|| hostile::start(addr, p.hostile, deadline, stats.clone()));
    let mut counting = JoinSet::new();
    let mut sending = JoinSet::new();
    for (i, (s, c)) in subs.into_iter().zip(pubs).enumerate() {
        let sent = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicBool::new(false));
        counting.spawn(subscriber(s, base, deadline, sent.clone(), done.clone()));
        let topic = format!("soak/n/{i}");
        sending.spawn(publisher(
            c, topic, p.rate, p.size, base, deadline, sent, done,
        ));
    }
    let (mut sent, mut errors) = (0u64, 0u64);
    while let Some(r) = sending.join_next().await {
        let (n, error) = r.context("publisher task")?;
        sent += n;
        errors += u64::from(error.is_some());
    }
    let mut lat = Vec::new();
    while let Some(r) = counting.join_next().await {
        let (l, error) = r.context("subscriber task")?;
        lat.extend(l);
        errors += u64::from(error.is_some());
    }
    if let Some(h) = hostile {
        tokio::task::spawn_blocking(move || h.join())
            .await
            .context("hostile clients")?
            .map_err(|_| anyhow::anyhow!("the hostile clients' thread panicked"))?;
    }
    let memory = guard.stop();
    let received = lat.len() as u64;
    lat.sort_unstable();
    let pct = |q: f64| -> f64 {
        if lat.is_empty() {
            return f64::NAN;
        }
        let i = ((lat.len() as f64 - 1.0) * q).round() as usize;
        lat[i] as f64 / 1000.0
    };
    let mut figures = vec![
        ("msgs_per_sec", received as f64 / p.secs),
        ("sent", sent as f64),
        ("received", received as f64),
        ("loss", sent.saturating_sub(received) as f64),
        ("target", (p.rate as f64 * p.secs).floor() * p.pairs as f64),
        ("p50_us", pct(0.50)),
        ("p99_us", pct(0.99)),
        ("max_us", pct(1.0)),
        ("normal_errors", errors as f64),
        ("secs", p.secs),
        ("hostile", f64::from(u8::from(p.hostile.any()))),
        ("rss_start_kib", memory.start as f64),
        ("peak_rss_kib", memory.peak as f64),
        ("rss_end_kib", memory.end as f64),
        ("killed", f64::from(u8::from(memory.killed_at.is_some()))),
        ("killed_at_kib", memory.killed_at.unwrap_or(0) as f64),
        ("killed_after_secs", memory.killed_after.unwrap_or(0.0)),
        ("broker_gone", f64::from(u8::from(memory.gone))),
    ];
    if p.hostile.any() {
        figures.extend(stats.figures());
    }
    Ok(Outcome(figures))
}

/// Sends `rate` QoS 1 messages a second on `topic` until `deadline` (at
/// most `WINDOW` unacknowledged; behind schedule, it catches up in bursts),
/// each stamped with its send time. Returns the number sent and the error
/// that ended it early, if any.
#[expect(clippy::too_many_arguments, reason = "one task's whole setup")]
async fn publisher(
    mut conn: Conn,
    topic: String,
    rate: u64,
    size: usize,
    base: Instant,
    deadline: Instant,
    sent: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
) -> (u64, Option<anyhow::Error>) {
    let payload = vec![b'x'; size.max(8)];
    let one = wire::publish(&topic, 1, 1, &payload);
    let stamp_at = one.len() - payload.len();
    let id_at = stamp_at - 2;
    let (mut n, mut acked) = (0u64, 0u64);
    let mut buf = Vec::with_capacity(one.len() * 64);
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let outcome = async {
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Ok(());
                    }
                    let due = ((now - base).as_secs_f64() * rate as f64) as u64;
                    let room = WINDOW.saturating_sub(n - acked);
                    buf.clear();
                    for _ in 0..due.saturating_sub(n).min(room) {
                        let at = buf.len();
                        buf.extend_from_slice(&one);
                        let id = (n % 60_000 + 1) as u16;
                        buf[at + id_at..at + stamp_at].copy_from_slice(&id.to_be_bytes());
                        let ns = base.elapsed().as_nanos() as u64;
                        buf[at + stamp_at..at + stamp_at + 8].copy_from_slice(&ns.to_be_bytes());
                        n += 1;
                    }
                    if !buf.is_empty() {
                        conn.stream.write_all(&buf).await?;
                        sent.store(n, Ordering::Relaxed);
                    }
                }
                r = conn.read_some(|_, f| acked += u64::from(f.kind() == 4)) => r?,
            }
        }
    }
    .await;
    sent.store(n, Ordering::Relaxed);
    done.store(true, Ordering::Release);
    (n, outcome.err())
}

/// Receives one publisher's messages: their latencies in nanoseconds, and
/// the error that ended it early, if any.
async fn subscriber(
    mut conn: Conn,
    base: Instant,
    deadline: Instant,
    sent: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
) -> (Vec<u64>, Option<anyhow::Error>) {
    let mut lat = Vec::new();
    let mut acks = Vec::new();
    let mut last = Instant::now();
    loop {
        let now = Instant::now();
        let finished =
            done.load(Ordering::Acquire) && lat.len() as u64 >= sent.load(Ordering::Relaxed);
        // Quiet for IDLE since the sending time ended (or since the last
        // message, if later).
        let stalled = now > deadline && now - last.max(deadline) > IDLE;
        if finished || stalled || now > deadline + DRAIN {
            return (lat, None);
        }
        let read = tokio::time::timeout(
            Duration::from_millis(250),
            conn.read_some(|buf, f| {
                if f.kind() == 3 {
                    let (_, id, payload) = wire::publish_parts(buf, f);
                    if let Some(id) = id {
                        acks.extend_from_slice(&wire::puback(id));
                    }
                    if let Some(stamp) = payload.get(..8) {
                        let mut ns = [0u8; 8];
                        ns.copy_from_slice(stamp);
                        let now = base.elapsed().as_nanos() as u64;
                        lat.push(now.saturating_sub(u64::from_be_bytes(ns)));
                    }
                }
            }),
        )
        .await;
        match read {
            Err(_) => continue,
            Ok(Err(e)) => return (lat, Some(e)),
            Ok(Ok(())) => last = Instant::now(),
        }
        if !acks.is_empty() {
            if let Err(e) = conn.stream.write_all(&acks).await {
                return (lat, Some(e.into()));
            }
            acks.clear();
        }
    }
}

/// The broker's memory over the run.
#[derive(Default)]
struct Memory {
    start: u64,
    peak: u64,
    end: u64,
    /// RSS (KiB) at which the guard killed the broker.
    killed_at: Option<u64>,
    /// Seconds into the run when it did.
    killed_after: Option<f64>,
    /// The broker process went away (killed, or exited by itself).
    gone: bool,
}

/// The thread that samples the broker's RSS and kills it past the limit.
struct Guard {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Memory>>,
}

impl Guard {
    fn start(pid: u32, limit_kib: u64) -> Guard {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = (pid != 0).then(|| {
            let stop = stop.clone();
            std::thread::spawn(move || watch(pid, limit_kib, &stop))
        });
        Guard { stop, thread }
    }

    fn stop(self) -> Memory {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.and_then(|t| t.join().ok()).unwrap_or_default()
    }
}

fn watch(pid: u32, limit_kib: u64, stop: &AtomicBool) -> Memory {
    let started = Instant::now();
    let mut m = Memory::default();
    loop {
        match rss_kib(pid) {
            Ok(rss) => {
                if m.start == 0 {
                    m.start = rss;
                }
                m.peak = m.peak.max(rss);
                m.end = rss;
                if rss > limit_kib && m.killed_at.is_none() {
                    let _ = Command::new("kill")
                        .args(["-KILL", &pid.to_string()])
                        .status();
                    m.killed_at = Some(rss);
                    m.killed_after = Some(started.elapsed().as_secs_f64());
                    eprintln!(
                        "loadgen: broker RSS {:.2} GB passed the {:.2} GB limit: killed it",
                        rss as f64 / 1048576.0,
                        limit_kib as f64 / 1048576.0
                    );
                }
            }
            Err(_) => {
                m.gone = true;
                return m;
            }
        }
        if stop.load(Ordering::Relaxed) {
            return m;
        }
        std::thread::sleep(SAMPLE);
    }
}
