//! The stuck-plugin scenario (`loadgen stuckplugin`), for a broker whose
//! `auth-on-publish` plugin spins on topics under `spin/` (the `spinner`
//! test fixture) and accepts every other topic at once.
//!
//! - `stuck` clients (MQTT 5, so that a refusal is a PUBACK reason code,
//!   not a disconnect) each publish QoS 1 to `spin/{i}` in a loop: one
//!   message, wait for its PUBACK (or the connection's end, or `ANSWER_WAIT`),
//!   the next. Each answer is recorded with its code and how long it took;
//!   an accepted one that took `late_ms` or more is "late" (the plugin was
//!   allowed to run past the deadline).
//! - `clients` unrelated clients (MQTT 5) each subscribe to their own topic
//!   `rt/{i}` and publish QoS 1 to it at `rate` msg/s: the round trip is
//!   from the send to the message coming back (each message carries its
//!   send time). A client with `WINDOW` messages unacknowledged sends
//!   nothing until PUBACKs come, then catches up in a burst: `rt_sent`
//!   below `rt_target` says how far behind the broker held it. After the
//!   sending time they wait for the rest until nothing has arrived for
//!   `IDLE` (at most `DRAIN`); an accepted message that has not come back
//!   by then is lost.
//!
//! Everything ends by itself: the sending time, then bounded waits.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::io::AsyncWriteExt;
use tokio::task::JoinSet;

use crate::client::Conn;
use crate::scenarios::Outcome;
use crate::wire;

/// Unacknowledged QoS 1 messages an unrelated client may have (below
/// Sluice's default `receive_maximum` of 32).
const WINDOW: u64 = 20;
/// After the sending time, an unrelated client that receives nothing for
/// this long stops waiting.
const IDLE: Duration = Duration::from_secs(2);
/// Unrelated clients stop waiting this long after the sending time at the
/// latest.
const DRAIN: Duration = Duration::from_secs(5);
/// How long a stuck client waits for one PUBACK.
const ANSWER_WAIT: Duration = Duration::from_secs(10);
/// Pause of a stuck client after a failed connect.
const RECONNECT_PAUSE: Duration = Duration::from_millis(100);

/// The scenario's settings.
pub struct Stuck {
    pub secs: f64,
    /// Clients keeping the plugin busy.
    pub stuck: usize,
    /// Unrelated clients.
    pub clients: usize,
    /// Messages per second per unrelated client.
    pub rate: u64,
    /// An accepted stuck call that took this long or more is late.
    pub late_ms: u64,
}

pub async fn stuck_plugin(addr: SocketAddr, p: Stuck) -> Result<Outcome> {
    let mut clients = Vec::new();
    for i in 0..p.clients {
        let mut c = Conn::open_v5(addr, &format!("rt-{i}")).await?;
        c.subscribe_v5(&format!("rt/{i}"), 1).await?;
        clients.push(c);
    }
    let base = Instant::now();
    let deadline = base + Duration::from_secs_f64(p.secs);
    // The stuck clients run on a thread and runtime of their own, so that
    // their answers, fast or slow, do not delay the unrelated clients'.
    let stuck_count = p.stuck;
    let stuck = std::thread::spawn(move || -> Result<Vec<StuckCalls>> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            let mut clients = JoinSet::new();
            for i in 0..stuck_count {
                clients.spawn(stuck_client(addr, i, deadline));
            }
            let mut calls = Vec::new();
            while let Some(r) = clients.join_next().await {
                calls.push(r.context("stuck client task")?);
            }
            Ok(calls)
        })
    });
    let mut normal = JoinSet::new();
    for (i, c) in clients.into_iter().enumerate() {
        normal.spawn(round_trips(c, format!("rt/{i}"), p.rate, base, deadline));
    }
    let mut rt = RoundTrips::default();
    while let Some(r) = normal.join_next().await {
        let one = r.context("unrelated client task")?;
        rt.lat.extend(one.lat);
        rt.sent += one.sent;
        rt.accepted += one.accepted;
        rt.refused += one.refused;
        rt.errors += one.errors;
    }
    let mut answers = Vec::new();
    let (mut closed, mut timeouts, mut connect_failures) = (Vec::new(), 0u64, 0u64);
    let stuck = tokio::task::spawn_blocking(move || stuck.join())
        .await
        .context("stuck clients")?
        .map_err(|_| anyhow::anyhow!("the stuck clients' thread panicked"))??;
    for one in stuck {
        answers.extend(one.answers);
        closed.extend(one.closed);
        timeouts += one.timeouts;
        connect_failures += one.connect_failures;
    }
    let received = rt.lat.len() as u64;
    rt.lat.sort_unstable();
    let late = Duration::from_millis(p.late_ms);
    let accepted: Vec<Duration> = answers
        .iter()
        .filter(|(code, _)| *code < 0x80)
        .map(|(_, t)| *t)
        .collect();
    let refused: Vec<Duration> = answers
        .iter()
        .filter(|(code, _)| *code >= 0x80)
        .map(|(_, t)| *t)
        .collect();
    let count = |code: u8| answers.iter().filter(|(c, _)| *c == code).count() as f64;
    let other_code = answers
        .iter()
        .map(|(c, _)| *c)
        .rfind(|c| *c >= 0x80 && *c != 0x87)
        .map_or(0.0, f64::from);
    let mut all: Vec<Duration> = answers.iter().map(|(_, t)| *t).collect();
    all.extend(&closed);
    let ns = |d: &Duration| d.as_nanos() as u64;
    let ms = |v: &[Duration], q: f64| {
        let mut v: Vec<u64> = v.iter().map(ns).collect();
        v.sort_unstable();
        percentile(&v, q) / 1e6
    };
    Ok(Outcome(vec![
        ("secs", p.secs),
        ("clients", p.clients as f64),
        ("rate", p.rate as f64),
        (
            "rt_target",
            (p.rate as f64 * p.secs).floor() * p.clients as f64,
        ),
        ("rt_sent", rt.sent as f64),
        ("rt_accepted", rt.accepted as f64),
        ("rt_refused", rt.refused as f64),
        ("rt_received", received as f64),
        ("rt_lost", rt.accepted.saturating_sub(received) as f64),
        ("rt_p50_us", percentile(&rt.lat, 0.50) / 1e3),
        ("rt_p99_us", percentile(&rt.lat, 0.99) / 1e3),
        ("rt_max_us", percentile(&rt.lat, 1.0) / 1e3),
        ("rt_errors", rt.errors as f64),
        ("stuck", p.stuck as f64),
        ("late_ms", p.late_ms as f64),
        (
            "stuck_calls",
            (answers.len() + closed.len()) as f64 + timeouts as f64,
        ),
        ("stuck_accepted", accepted.len() as f64),
        (
            "stuck_accepted_late",
            accepted.iter().filter(|t| **t >= late).count() as f64,
        ),
        ("stuck_code_00", count(0x00)),
        ("stuck_code_10", count(0x10)),
        ("stuck_refused", refused.len() as f64),
        ("stuck_code_87", count(0x87)),
        ("stuck_other_code", other_code),
        ("stuck_disconnects", closed.len() as f64),
        ("stuck_timeouts", timeouts as f64),
        ("stuck_connect_failures", connect_failures as f64),
        ("stuck_p50_ms", ms(&all, 0.50)),
        ("stuck_max_ms", ms(&all, 1.0)),
        ("stuck_accepted_p50_ms", ms(&accepted, 0.50)),
        ("stuck_accepted_max_ms", ms(&accepted, 1.0)),
        ("stuck_refused_p50_ms", ms(&refused, 0.50)),
        ("stuck_refused_max_ms", ms(&refused, 1.0)),
    ]))
}

/// The value at quantile `q` of sorted `v` (NaN if empty).
fn percentile(v: &[u64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() as f64 - 1.0) * q).round() as usize] as f64
}

/// What the unrelated clients saw.
#[derive(Default)]
struct RoundTrips {
    /// Round trips, in nanoseconds.
    lat: Vec<u64>,
    sent: u64,
    /// PUBACKs with a success code, and with a refusal.
    accepted: u64,
    refused: u64,
    /// Connections that failed.
    errors: u64,
}

/// One unrelated client: `rate` QoS 1 messages a second to `topic`, to
/// which it is subscribed, until `deadline`; then the rest back.
async fn round_trips(
    mut conn: Conn,
    topic: String,
    rate: u64,
    base: Instant,
    deadline: Instant,
) -> RoundTrips {
    let mut rt = RoundTrips::default();
    let payload = [b'x'; 16];
    let one = wire::publish_v5(&topic, 1, 1, &payload);
    let stamp_at = one.len() - payload.len();
    // The packet id comes before the (empty) properties.
    let id_at = stamp_at - 3;
    let mut acks = Vec::new();
    let mut buf = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last = Instant::now();
    let outcome: Result<()> = async {
        loop {
            let now = Instant::now();
            let sending = now < deadline;
            let answered = rt.accepted + rt.refused;
            let finished = !sending && answered == rt.sent && rt.lat.len() as u64 >= rt.accepted;
            let stalled = !sending && now - last.max(deadline) > IDLE;
            if finished || stalled || now > deadline + DRAIN {
                return Ok(());
            }
            tokio::select! {
                _ = tick.tick(), if sending => {
                    let due = ((now - base).as_secs_f64() * rate as f64) as u64;
                    buf.clear();
                    while rt.sent < due && rt.sent - (rt.accepted + rt.refused) < WINDOW {
                        let at = buf.len();
                        buf.extend_from_slice(&one);
                        let id = (rt.sent % 60_000 + 1) as u16;
                        buf[at + id_at..at + id_at + 2].copy_from_slice(&id.to_be_bytes());
                        let sent = base.elapsed().as_nanos() as u64;
                        buf[at + stamp_at..at + stamp_at + 8].copy_from_slice(&sent.to_be_bytes());
                        rt.sent += 1;
                    }
                    if !buf.is_empty() {
                        conn.stream.write_all(&buf).await?;
                    }
                }
                r = tokio::time::timeout(Duration::from_millis(250), conn.read_some(|b, f| match f.kind() {
                    4 => {
                        if wire::puback_code(&b[f.start..f.end]) < 0x80 {
                            rt.accepted += 1;
                        } else {
                            rt.refused += 1;
                        }
                    }
                    3 => {
                        if let Some((id, payload)) = wire::publish_parts_v5(b, f) {
                            if let Some(id) = id {
                                acks.extend_from_slice(&wire::puback(id));
                            }
                            if let Some(stamp) = payload.get(..8) {
                                let mut ns = [0u8; 8];
                                ns.copy_from_slice(stamp);
                                let now = base.elapsed().as_nanos() as u64;
                                rt.lat.push(now.saturating_sub(u64::from_be_bytes(ns)));
                            }
                        }
                    }
                    _ => {}
                })) => {
                    if let Ok(r) = r {
                        r?;
                        last = Instant::now();
                    }
                    if !acks.is_empty() {
                        conn.stream.write_all(&acks).await?;
                        acks.clear();
                    }
                }
            }
        }
    }
    .await;
    rt.errors = u64::from(outcome.is_err());
    if let Err(e) = outcome {
        eprintln!("loadgen: unrelated client on {topic}: {e:#}");
    }
    rt
}

/// What one stuck client got.
#[derive(Default)]
struct StuckCalls {
    /// PUBACK reason code and time to it.
    answers: Vec<(u8, Duration)>,
    /// Times to the connection's end, for calls answered that way.
    closed: Vec<Duration>,
    /// Calls without an answer within `ANSWER_WAIT`.
    timeouts: u64,
    connect_failures: u64,
}

/// One stuck client: QoS 1 messages to `spin/{i}`, one at a time, until
/// `deadline`; reconnects when the broker closes its connection.
async fn stuck_client(addr: SocketAddr, i: usize, deadline: Instant) -> StuckCalls {
    let mut calls = StuckCalls::default();
    let topic = format!("spin/{i}");
    let mut conn: Option<Conn> = None;
    let mut id = 0u16;
    while Instant::now() < deadline {
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match Conn::open_v5(addr, &format!("stuck-{i}")).await {
                Ok(c) => conn.insert(c),
                Err(_) => {
                    calls.connect_failures += 1;
                    tokio::time::sleep(RECONNECT_PAUSE).await;
                    continue;
                }
            },
        };
        id = id % 60_000 + 1;
        let started = Instant::now();
        let mut code = None;
        let answer = tokio::time::timeout(ANSWER_WAIT, async {
            c.stream
                .write_all(&wire::publish_v5(&topic, 1, id, b"spin"))
                .await?;
            while code.is_none() {
                c.read_some(|b, f| {
                    let body = &b[f.start..f.end];
                    if f.kind() == 4 && body.get(..2) == Some(&id.to_be_bytes()[..]) {
                        code = Some(wire::puback_code(body));
                    }
                })
                .await?;
            }
            anyhow::Ok(())
        })
        .await;
        match (answer, code) {
            (Ok(Ok(())), Some(code)) => calls.answers.push((code, started.elapsed())),
            (Ok(_), _) => {
                calls.closed.push(started.elapsed());
                conn = None;
            }
            (Err(_), _) => {
                calls.timeouts += 1;
                conn = None;
            }
        }
    }
    calls
}
