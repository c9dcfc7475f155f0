//! The durability scenarios (`cargo xtask bench --persist-only`).
//!
//! - `durable`: `pubs` publishers (clean sessions) send QoS 1 to
//!   `bench/{i}` with at most `window` messages unacknowledged each, for
//!   `secs` seconds or `msgs` messages each, whichever comes first; one
//!   subscriber with a persistent session (MQTT 3.1.1, clean session 0)
//!   subscribed to `bench/#` at QoS 1 reads and acknowledges everything.
//!   Each payload carries its publisher and sequence number, so that loss
//!   is exact: a message the broker acknowledged (PUBACK) and the
//!   subscriber never received. Publisher acknowledgement latency runs
//!   from the write of a PUBLISH to the read of its PUBACK.
//! - `recovery --phase fill`: `sessions` persistent sessions (MQTT 3.1.1,
//!   clean session 0, client id `rs-{i}`), each subscribed to `r/{i}` at
//!   QoS 1 and then disconnected; then `per` QoS 1 messages to each
//!   `r/{i}` from `pubs` windowed publishers, every one acknowledged.
//! - `recovery --phase verify`: `sample` of those sessions, spread evenly,
//!   reconnect (clean session 0) and must get their `per` messages back,
//!   each payload naming its session and number.
//!
//! Every wait is bounded.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::io::AsyncWriteExt;
use tokio::task::JoinSet;

use crate::client::Conn;
use crate::scenarios::Outcome;
use crate::wire;

/// After the sending time, publishers wait at most this long for their
/// last PUBACKs.
const ACK_WAIT: Duration = Duration::from_secs(30);
/// After the publishers are done, the subscriber stops when nothing has
/// arrived for this long...
const IDLE: Duration = Duration::from_secs(2);
/// ... or this long after they are done at the latest.
const DRAIN: Duration = Duration::from_secs(60);
/// Read buffer of the connections that only create or check a session.
const SMALL_BUF: usize = 4096;

/// A set of sequence numbers below a bound.
struct Bits(Vec<u64>);

impl Bits {
    fn new(n: usize) -> Self {
        Bits(vec![0; n.div_ceil(64)])
    }

    /// Sets `i`; whether it was set before (`None` when out of range).
    fn set(&mut self, i: usize) -> Option<bool> {
        let word = self.0.get_mut(i / 64)?;
        let bit = 1u64 << (i % 64);
        let was = *word & bit != 0;
        *word |= bit;
        Some(was)
    }

    fn count(&self) -> u64 {
        self.0.iter().map(|w| u64::from(w.count_ones())).sum()
    }

    /// Members of `self` that are not in `other`.
    fn missing_from(&self, other: &Bits) -> u64 {
        self.0
            .iter()
            .zip(&other.0)
            .map(|(a, b)| u64::from((a & !b).count_ones()))
            .sum()
    }
}

/// The `durable` scenario's settings.
pub struct Durable {
    pub pubs: usize,
    pub secs: f64,
    /// Messages per publisher at most.
    pub msgs: usize,
    pub size: usize,
    pub window: usize,
}

/// What one publisher did.
struct Published {
    sent: u64,
    acked: Bits,
    /// Send → PUBACK, µs, one per acknowledged message.
    latencies: Vec<u32>,
    /// When its last PUBACK came.
    last_ack: Instant,
    /// PUBACKs for no message in flight.
    stray: u64,
}

/// What the subscriber received.
struct Received {
    /// Per publisher.
    seen: Vec<Bits>,
    duplicates: u64,
    /// Payloads naming no message sent.
    foreign: u64,
    last: Instant,
}

pub async fn durable(addr: SocketAddr, p: Durable) -> Result<Outcome> {
    if p.size < 8 {
        bail!("--size must be at least 8 (the payload carries its publisher and number)");
    }
    let window = p.window.clamp(1, 60_000);
    let (mut sub, _) = Conn::open_session(addr, "lg-durable-sub", false, 256 * 1024).await?;
    sub.subscribe("bench/#", 1).await?;
    let mut pubs = Vec::new();
    for i in 0..p.pubs {
        pubs.push(Conn::open(addr, &format!("lg-durable-pub-{i}")).await?);
    }
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(p.secs);
    let done = Arc::new(AtomicBool::new(false));
    let target = Arc::new(AtomicU64::new(u64::MAX));
    let subscriber = {
        let (done, target) = (done.clone(), target.clone());
        let (pubs, msgs) = (p.pubs, p.msgs);
        tokio::spawn(async move { subscribe_count(sub, pubs, msgs, &done, &target).await })
    };
    let mut sending = JoinSet::new();
    for (i, conn) in pubs.into_iter().enumerate() {
        let (msgs, size) = (p.msgs, p.size);
        sending.spawn(async move { publish_windowed(conn, i, msgs, size, window, deadline).await });
    }
    let mut published = Vec::new();
    while let Some(r) = sending.join_next().await {
        published.push(r.context("publisher task")??);
    }
    published.sort_by_key(|(i, _)| *i);
    let published: Vec<Published> = published.into_iter().map(|(_, p)| p).collect();
    let acked: u64 = published.iter().map(|p| p.acked.count()).sum();
    target.store(acked, Ordering::Relaxed);
    done.store(true, Ordering::Relaxed);
    let received = subscriber.await.context("subscriber task")??;
    let delivered: u64 = received.seen.iter().map(Bits::count).sum();
    let loss: u64 = published
        .iter()
        .zip(&received.seen)
        .map(|(p, seen)| p.acked.missing_from(seen))
        .sum();
    let sent: u64 = published.iter().map(|p| p.sent).sum();
    let stray: u64 = published.iter().map(|p| p.stray).sum();
    let last_ack = published
        .iter()
        .map(|p| p.last_ack)
        .max()
        .unwrap_or(started);
    let mut lat: Vec<u32> = published.into_iter().flat_map(|p| p.latencies).collect();
    lat.sort_unstable();
    let secs = received
        .last
        .duration_since(started)
        .as_secs_f64()
        .max(1e-9);
    let pub_secs = last_ack.duration_since(started).as_secs_f64().max(1e-9);
    Ok(Outcome(vec![
        ("msgs_per_sec", delivered as f64 / secs),
        ("delivered", delivered as f64),
        ("sent", sent as f64),
        ("acked", acked as f64),
        ("unacked", (sent - acked.min(sent)) as f64),
        ("loss", loss as f64),
        ("duplicates", received.duplicates as f64),
        ("foreign", received.foreign as f64),
        ("stray_acks", stray as f64),
        ("acked_per_sec", acked as f64 / pub_secs),
        ("ack_p50_us", percentile(&lat, 0.50)),
        ("ack_p99_us", percentile(&lat, 0.99)),
        ("ack_max_us", percentile(&lat, 1.0)),
        ("secs", secs),
        ("pub_secs", pub_secs),
        ("pubs", p.pubs as f64),
        ("window", window as f64),
    ]))
}

/// A percentile of sorted microseconds.
fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i])
}

/// One publisher of `durable`: QoS 1 to `bench/{index}`, at most `window`
/// unacknowledged, until `deadline` or `msgs`; then waits for the last
/// PUBACKs (at most [`ACK_WAIT`]).
async fn publish_windowed(
    mut conn: Conn,
    index: usize,
    msgs: usize,
    size: usize,
    window: usize,
    deadline: Instant,
) -> Result<(usize, Published)> {
    let mut payload = vec![b'x'; size];
    payload[..4].copy_from_slice(&(index as u32).to_be_bytes());
    let one = wire::publish(&format!("bench/{index}"), 1, 1, &payload);
    // The packet id sits right after the topic, the payload after it.
    let id_at = one.len() - payload.len() - 2;
    let seq_at = one.len() - payload.len() + 4;
    // Sequence number and send time of each packet id in flight.
    let mut flight: Vec<Option<(u32, Instant)>> = vec![None; 65_536];
    let mut out = Published {
        sent: 0,
        acked: Bits::new(msgs),
        latencies: Vec::new(),
        last_ack: Instant::now(),
        stray: 0,
    };
    let mut inflight = 0usize;
    let mut next = 0usize;
    let mut buf = Vec::with_capacity(one.len() * window);
    let give_up = deadline + ACK_WAIT;
    loop {
        let now = Instant::now();
        buf.clear();
        if now < deadline {
            while next < msgs && inflight < window {
                let start = buf.len();
                buf.extend_from_slice(&one);
                let id = (next % 65_535 + 1) as u16;
                buf[start + id_at..start + id_at + 2].copy_from_slice(&id.to_be_bytes());
                buf[start + seq_at..start + seq_at + 4]
                    .copy_from_slice(&(next as u32).to_be_bytes());
                flight[usize::from(id)] = Some((next as u32, now));
                next += 1;
                inflight += 1;
            }
        }
        if !buf.is_empty() {
            conn.stream.write_all(&buf).await?;
        }
        if inflight == 0 && (now >= deadline || next >= msgs) {
            break;
        }
        let wait = give_up.saturating_duration_since(Instant::now());
        let mut acks = Vec::new();
        match tokio::time::timeout(
            wait,
            conn.read_some(|b, f| {
                if f.kind() == 4 && f.end - f.start >= 2 {
                    acks.push(u16::from_be_bytes([b[f.start], b[f.start + 1]]));
                }
            }),
        )
        .await
        {
            Ok(r) => r?,
            Err(_) => break,
        }
        let at = Instant::now();
        for id in acks {
            match flight[usize::from(id)].take() {
                Some((seq, sent)) => {
                    inflight -= 1;
                    out.acked.set(seq as usize);
                    let us = at.duration_since(sent).as_micros();
                    out.latencies.push(u32::try_from(us).unwrap_or(u32::MAX));
                    out.last_ack = at;
                }
                None => out.stray += 1,
            }
        }
    }
    out.sent = next as u64;
    Ok((index, out))
}

/// The persistent subscriber of `durable`: counts and acknowledges until
/// the publishers are `done` and it has `target` messages, or nothing
/// arrived for [`IDLE`] after they were done ([`DRAIN`] at most).
async fn subscribe_count(
    mut conn: Conn,
    pubs: usize,
    msgs: usize,
    done: &AtomicBool,
    target: &AtomicU64,
) -> Result<Received> {
    let mut r = Received {
        seen: (0..pubs).map(|_| Bits::new(msgs)).collect(),
        duplicates: 0,
        foreign: 0,
        last: Instant::now(),
    };
    let mut distinct = 0u64;
    let mut acks: Vec<u8> = Vec::new();
    let mut done_at = None;
    loop {
        if done.load(Ordering::Relaxed) {
            let at = *done_at.get_or_insert_with(Instant::now);
            if distinct >= target.load(Ordering::Relaxed) || at.elapsed() > DRAIN {
                break;
            }
        }
        let wait = if done_at.is_some() {
            IDLE
        } else {
            Duration::from_millis(200)
        };
        let read = tokio::time::timeout(
            wait,
            conn.read_some(|b, f| {
                if f.kind() != 3 {
                    return;
                }
                let (_, id, payload) = wire::publish_parts(b, f);
                if let Some(id) = id {
                    acks.extend_from_slice(&wire::puback(id));
                }
                let word = |at: usize| {
                    payload
                        .get(at..at + 4)
                        .map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]) as usize)
                };
                match (word(0), word(4)) {
                    (Some(p), Some(seq)) => match r.seen.get_mut(p).and_then(|s| s.set(seq)) {
                        Some(true) => r.duplicates += 1,
                        Some(false) => distinct += 1,
                        None => r.foreign += 1,
                    },
                    _ => r.foreign += 1,
                }
            }),
        )
        .await;
        match read {
            Ok(res) => res?,
            Err(_) if done_at.is_some() => break,
            Err(_) => continue,
        }
        r.last = Instant::now();
        if !acks.is_empty() {
            conn.stream.write_all(&acks).await?;
            acks.clear();
        }
    }
    Ok(r)
}

/// The `recovery --phase fill` settings.
pub struct Fill {
    pub sessions: usize,
    pub per: usize,
    pub size: usize,
    /// Sessions created at once.
    pub conc: usize,
    pub pubs: usize,
    pub window: usize,
}

/// Creates the persistent sessions, then queues `per` messages for each.
pub async fn fill(addr: SocketAddr, p: Fill) -> Result<Outcome> {
    if p.size < 8 {
        bail!("--size must be at least 8 (the payload carries its session and number)");
    }
    let started = Instant::now();
    let mut workers = JoinSet::new();
    let conc = p.conc.clamp(1, p.sessions.max(1));
    for w in 0..conc {
        let (sessions, conc) = (p.sessions, conc);
        workers.spawn(async move {
            let mut i = w;
            while i < sessions {
                create_session(addr, i).await?;
                i += conc;
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = workers.join_next().await {
        r.context("session worker")??;
    }
    let sessions_secs = started.elapsed().as_secs_f64();
    eprintln!(
        "loadgen: {} persistent sessions in {sessions_secs:.1} s",
        p.sessions
    );
    let publishing = Instant::now();
    let mut pubs = JoinSet::new();
    let window = p.window.clamp(1, 60_000);
    for k in 0..p.pubs.max(1) {
        let conn = Conn::open(addr, &format!("lg-fill-pub-{k}")).await?;
        let (sessions, per, size, stride) = (p.sessions, p.per, p.size, p.pubs.max(1));
        pubs.spawn(async move {
            let topics: Vec<usize> = (k..sessions).step_by(stride).collect();
            fill_publisher(conn, &topics, per, size, window).await
        });
    }
    let mut acked = 0u64;
    while let Some(r) = pubs.join_next().await {
        acked += r.context("fill publisher")??;
    }
    let publish_secs = publishing.elapsed().as_secs_f64();
    eprintln!("loadgen: {acked} messages acknowledged in {publish_secs:.1} s");
    let expected = (p.sessions * p.per) as u64;
    Ok(Outcome(vec![
        ("sessions", p.sessions as f64),
        ("sessions_secs", sessions_secs),
        (
            "sessions_per_sec",
            p.sessions as f64 / sessions_secs.max(1e-9),
        ),
        ("expected", expected as f64),
        ("acked", acked as f64),
        ("publish_secs", publish_secs),
        ("publish_per_sec", acked as f64 / publish_secs.max(1e-9)),
        ("secs", started.elapsed().as_secs_f64()),
    ]))
}

/// CONNECT (clean session 0) as `rs-{i}`, SUBSCRIBE `r/{i}` at QoS 1,
/// DISCONNECT, and wait for the broker to close (so that the session is
/// offline before the next step).
async fn create_session(addr: SocketAddr, i: usize) -> Result<()> {
    let (mut conn, _) = Conn::open_session(addr, &format!("rs-{i}"), false, SMALL_BUF).await?;
    conn.subscribe(&format!("r/{i}"), 1).await?;
    conn.stream.write_all(&wire::DISCONNECT).await?;
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while conn.read_some(|_, _| {}).await.is_ok() {}
    })
    .await;
    Ok(())
}

/// Publishes `per` rounds of one message to each `r/{i}` of `topics`, at
/// most `window` unacknowledged; returns how many were acknowledged.
async fn fill_publisher(
    mut conn: Conn,
    topics: &[usize],
    per: usize,
    size: usize,
    window: usize,
) -> Result<u64> {
    let total = topics.len() * per;
    let (mut next, mut acked) = (0usize, 0u64);
    let mut inflight = 0usize;
    let mut payload = vec![b'x'; size];
    let mut buf = Vec::new();
    while (acked as usize) < total {
        buf.clear();
        while next < total && inflight < window {
            let (round, t) = (next / topics.len(), next % topics.len());
            let i = topics[t];
            payload[..4].copy_from_slice(&(i as u32).to_be_bytes());
            payload[4..8].copy_from_slice(&(round as u32).to_be_bytes());
            let id = (next % 65_535 + 1) as u16;
            buf.extend_from_slice(&wire::publish(&format!("r/{i}"), 1, id, &payload));
            next += 1;
            inflight += 1;
        }
        if !buf.is_empty() {
            conn.stream.write_all(&buf).await?;
        }
        let mut n = 0usize;
        tokio::time::timeout(
            ACK_WAIT,
            conn.read_some(|_, f| {
                if f.kind() == 4 {
                    n += 1;
                }
            }),
        )
        .await
        .context("no PUBACK for 30 s")??;
        inflight -= n.min(inflight);
        acked += n as u64;
    }
    Ok(acked)
}

/// The `recovery --phase verify` settings.
pub struct Verify {
    pub sessions: usize,
    pub per: usize,
    pub sample: usize,
}

/// Reconnects `sample` sessions spread over the `sessions` and checks
/// that each gets its `per` messages (`VERIFY_CONC` at a time).
pub async fn verify(addr: SocketAddr, p: Verify) -> Result<Outcome> {
    let started = Instant::now();
    let sample = p.sample.clamp(1, p.sessions.max(1));
    let mut tasks = JoinSet::new();
    for w in 0..VERIFY_CONC.min(sample) {
        let (sessions, per) = (p.sessions, p.per);
        tasks.spawn(async move {
            let mut total = Checked::default();
            for j in (w..sample).step_by(VERIFY_CONC) {
                let c = check_session(addr, j * sessions / sample, per).await?;
                total.add(&c);
            }
            anyhow::Ok(total)
        });
    }
    let mut t = Checked::default();
    while let Some(r) = tasks.join_next().await {
        t.add(&r.context("verify task")??);
    }
    Ok(Outcome(vec![
        ("sampled", sample as f64),
        ("present", t.present as f64),
        ("complete", t.complete as f64),
        ("received", t.received as f64),
        ("missing", t.missing as f64),
        ("wrong", t.wrong as f64),
        ("duplicates", t.duplicates as f64),
        ("secs", started.elapsed().as_secs_f64()),
    ]))
}

/// Sessions checked at once by `verify`.
const VERIFY_CONC: usize = 10;

/// What `verify` found, summed over sessions.
#[derive(Default)]
struct Checked {
    present: u64,
    complete: u64,
    received: u64,
    missing: u64,
    wrong: u64,
    duplicates: u64,
}

impl Checked {
    fn add(&mut self, o: &Checked) {
        self.present += o.present;
        self.complete += o.complete;
        self.received += o.received;
        self.missing += o.missing;
        self.wrong += o.wrong;
        self.duplicates += o.duplicates;
    }
}

/// The messages one session gets back.
struct Check {
    topic: Vec<u8>,
    session: usize,
    got: Bits,
    count: usize,
    acks: Vec<u8>,
    out: Checked,
}

impl Check {
    fn frame(&mut self, b: &[u8], f: &wire::Frame) {
        if f.kind() != 3 {
            return;
        }
        let (topic, id, payload) = wire::publish_parts(b, f);
        if let Some(id) = id {
            self.acks.extend_from_slice(&wire::puback(id));
        }
        self.out.received += 1;
        let word = |at: usize| {
            payload
                .get(at..at + 4)
                .map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]) as usize)
        };
        let ours = topic == self.topic && word(0) == Some(self.session);
        match word(4).filter(|_| ours).and_then(|k| self.got.set(k)) {
            Some(false) => self.count += 1,
            Some(true) => self.out.duplicates += 1,
            None => self.out.wrong += 1,
        }
    }
}

/// Reconnects session `rs-{i}` and reads its messages until it has `per`
/// or nothing came for [`IDLE`].
async fn check_session(addr: SocketAddr, i: usize, per: usize) -> Result<Checked> {
    let (mut conn, present) =
        Conn::open_session(addr, &format!("rs-{i}"), false, SMALL_BUF).await?;
    let mut c = Check {
        topic: format!("r/{i}").into_bytes(),
        session: i,
        got: Bits::new(per),
        count: 0,
        acks: Vec::new(),
        out: Checked {
            present: u64::from(present),
            ..Checked::default()
        },
    };
    conn.buffered(|b, f| c.frame(b, f));
    loop {
        if !c.acks.is_empty() {
            conn.stream.write_all(&c.acks).await?;
            c.acks.clear();
        }
        if c.count >= per {
            break;
        }
        match tokio::time::timeout(IDLE, conn.read_some(|b, f| c.frame(b, f))).await {
            Ok(r) => r?,
            Err(_) => break,
        }
    }
    conn.stream.write_all(&wire::DISCONNECT).await?;
    let mut out = c.out;
    out.complete = u64::from(c.count == per);
    out.missing = (per - c.count.min(per)) as u64;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::Bits;

    #[test]
    fn bits() {
        let mut a = Bits::new(130);
        assert_eq!(a.set(3), Some(false));
        assert_eq!(a.set(3), Some(true));
        assert_eq!(a.set(129), Some(false));
        assert_eq!(a.set(192), None);
        let mut b = Bits::new(130);
        b.set(3);
        assert_eq!(
            (a.count(), a.missing_from(&b), b.missing_from(&a)),
            (2, 1, 0)
        );
    }
}
