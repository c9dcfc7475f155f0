//! The load scenarios. Each is closed-loop and bounded: publishers send a
//! fixed number of messages (QoS 0 with a PINGREQ barrier every few
//! thousand, QoS 1 with a window of unacknowledged messages), subscribers
//! count what arrives and give up after two seconds without progress, which
//! is reported as loss.
//!
//! `fanin`, `fanout`, `pairs` and `latency` may have their subscribers on
//! another node of a cluster (`--sub-addr`) than their publishers
//! (`--addr`). A subscription made on one node reaches the others a little
//! later, so before such a run the publishers send probe messages until
//! every subscriber has received one (bounded in time); the measured run
//! starts after that, and probes that arrive late are not counted.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::io::AsyncWriteExt;
use tokio::task::JoinSet;

use crate::client::Conn;
use crate::wire;

/// QoS 0 publishers wait for the broker every this many messages.
const BARRIER_EVERY: usize = 2000;
/// QoS 1 publishers keep at most this many messages unacknowledged.
const WINDOW: usize = 100;
/// Messages per write.
const BATCH: usize = 100;
/// A subscriber that receives nothing for this long stops counting.
const IDLE: Duration = Duration::from_secs(2);
/// Members of a shared subscription that together have everything go on
/// counting until nothing arrives for this long: what comes then was
/// delivered twice.
const DRAIN: Duration = Duration::from_millis(500);
/// The payload of a probe message (the measured messages' payloads are
/// never exactly this).
const PROBE: &[u8] = b"lg-probe";
/// Publishers send a probe this often until every subscriber has one...
const PROBE_EVERY: Duration = Duration::from_millis(10);
/// ...for at most this long.
const PROBE_LIMIT: Duration = Duration::from_secs(10);

/// Where the clients connect: publishers to `publish`, subscribers to
/// `subscribe` (the same broker, or another node of its cluster).
#[derive(Clone, Copy, Debug)]
pub struct Addrs {
    pub publish: SocketAddr,
    pub subscribe: SocketAddr,
}

impl Addrs {
    /// Whether subscribers and publishers are on different nodes, so that
    /// subscriptions must be seen to reach the publishers' node first.
    fn apart(&self) -> bool {
        self.publish != self.subscribe
    }
}

/// What waiting for the subscriptions to reach the publishers' node took:
/// probes sent, and the time until every subscriber had one.
struct Probed {
    sent: u64,
    took: Duration,
}

impl Probed {
    fn figures(probed: Option<&Probed>) -> Vec<(&'static str, f64)> {
        probed.map_or_else(Vec::new, |p| {
            vec![
                ("probes", p.sent as f64),
                ("probe_ms", p.took.as_secs_f64() * 1e3),
            ]
        })
    }
}

/// Sends a QoS 0 probe on each publisher's topic every [`PROBE_EVERY`]
/// until every subscriber has received one; fails after [`PROBE_LIMIT`].
/// Every subscriber must match at least one publisher's topic.
async fn probe(
    addrs: Addrs,
    publishers: &mut [(&mut Conn, &str)],
    subscribers: &mut [&mut Conn],
) -> Result<Probed> {
    let started = Instant::now();
    let mut ready = vec![false; subscribers.len()];
    let mut sent = 0u64;
    while ready.contains(&false) {
        if started.elapsed() > PROBE_LIMIT {
            bail!(
                "{} of {} subscribers on {} received none of the {sent} probe messages \
                 published on {} within {PROBE_LIMIT:?}: their subscriptions did not reach \
                 the publishers' node",
                ready.iter().filter(|r| !**r).count(),
                ready.len(),
                addrs.subscribe,
                addrs.publish
            );
        }
        for (conn, topic) in publishers.iter_mut() {
            conn.stream
                .write_all(&wire::publish(topic, 0, 0, PROBE))
                .await?;
            sent += 1;
        }
        let round = Instant::now();
        for (conn, ready) in subscribers.iter_mut().zip(ready.iter_mut()) {
            while !*ready {
                let Some(left) = PROBE_EVERY.checked_sub(round.elapsed()) else {
                    break;
                };
                let read = tokio::time::timeout(
                    left,
                    conn.read_some(|buf, f| {
                        *ready |= f.kind() == 3 && wire::publish_parts(buf, f).2 == PROBE;
                    }),
                )
                .await;
                match read {
                    Ok(r) => r?,
                    Err(_) => break,
                }
            }
        }
        if let Some(left) = PROBE_EVERY.checked_sub(round.elapsed()) {
            tokio::time::sleep(left).await;
        }
    }
    Ok(Probed {
        sent,
        took: started.elapsed(),
    })
}

/// A scenario's result: named figures.
pub struct Outcome(pub Vec<(&'static str, f64)>);

impl Outcome {
    pub fn json(&self, scenario: &str) -> String {
        let fields: Vec<String> = self.0.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
        format!("{{\"scenario\":\"{scenario}\",{}}}", fields.join(","))
    }
}

/// Counts PUBLISH frames until `expected` arrive or the flow stalls;
/// acknowledges QoS 1; probes (QoS 0) are not counted. Returns (received,
/// time of the last one).
async fn count(mut conn: Conn, expected: u64) -> Result<(u64, Instant)> {
    let mut received = 0u64;
    let mut last = Instant::now();
    let mut acks: Vec<u8> = Vec::new();
    while received < expected {
        let read = tokio::time::timeout(
            IDLE,
            conn.read_some(|buf, f| {
                if f.kind() == 3 {
                    let (_, id, payload) = wire::publish_parts(buf, f);
                    if payload == PROBE {
                        return;
                    }
                    received += 1;
                    if let Some(id) = id {
                        acks.extend_from_slice(&wire::puback(id));
                    }
                }
            }),
        )
        .await;
        match read {
            Ok(r) => r?,
            Err(_) => break,
        }
        last = Instant::now();
        if !acks.is_empty() {
            conn.stream.write_all(&acks).await?;
            acks.clear();
        }
    }
    Ok((received, last))
}

/// Sends `msgs` messages on `topic`.
async fn publish(mut conn: Conn, topic: String, msgs: usize, size: usize, qos: u8) -> Result<()> {
    let payload = vec![b'x'; size];
    let one = wire::publish(&topic, qos, 1, &payload);
    if qos == 0 {
        let batch: Vec<u8> = one
            .iter()
            .copied()
            .cycle()
            .take(one.len() * BATCH)
            .collect();
        let mut sent = 0;
        while sent < msgs {
            let n = BATCH.min(msgs - sent);
            conn.stream.write_all(&batch[..one.len() * n]).await?;
            sent += n;
            if sent % BARRIER_EVERY < n || sent == msgs {
                conn.barrier().await?;
            }
        }
        return Ok(());
    }
    // QoS 1: the packet id sits right after the topic.
    let id_at = one.len() - payload.len() - 2;
    let (mut sent, mut acked) = (0usize, 0usize);
    let mut buf = Vec::with_capacity(one.len() * WINDOW);
    while acked < msgs {
        buf.clear();
        while sent < msgs && sent - acked < WINDOW {
            let start = buf.len();
            buf.extend_from_slice(&one);
            let id = (sent % 60_000 + 1) as u16;
            buf[start + id_at..start + id_at + 2].copy_from_slice(&id.to_be_bytes());
            sent += 1;
        }
        if !buf.is_empty() {
            conn.stream.write_all(&buf).await?;
        }
        let mut n = 0;
        conn.read_some(|_, f| {
            if f.kind() == 4 {
                n += 1;
            }
        })
        .await?;
        acked += n;
    }
    Ok(())
}

/// Publishers (topic of each) and subscribers (filter and expected count
/// of each): runs the flow and measures delivered messages per second.
async fn flow(
    addrs: Addrs,
    publishers: Vec<String>,
    subscribers: Vec<(String, u64)>,
    msgs: usize,
    size: usize,
    qos: u8,
) -> Result<Outcome> {
    let mut subs = Vec::new();
    for (i, (filter, expected)) in subscribers.iter().enumerate() {
        let mut c = Conn::open(addrs.subscribe, &format!("lg-sub-{i}")).await?;
        c.subscribe(filter, qos).await?;
        subs.push((c, *expected));
    }
    let mut pubs = Vec::new();
    for (i, topic) in publishers.iter().enumerate() {
        pubs.push((
            Conn::open(addrs.publish, &format!("lg-pub-{i}")).await?,
            topic.clone(),
        ));
    }
    let probed = if addrs.apart() {
        let mut p: Vec<(&mut Conn, &str)> = pubs.iter_mut().map(|(c, t)| (c, t.as_str())).collect();
        let mut s: Vec<&mut Conn> = subs.iter_mut().map(|(c, _)| c).collect();
        Some(probe(addrs, &mut p, &mut s).await?)
    } else {
        None
    };
    let expected: u64 = subscribers.iter().map(|(_, e)| e).sum();
    let started = Instant::now();
    let mut counting = JoinSet::new();
    for (c, e) in subs {
        counting.spawn(count(c, e));
    }
    let mut sending = JoinSet::new();
    for (c, topic) in pubs {
        sending.spawn(publish(c, topic, msgs, size, qos));
    }
    while let Some(r) = sending.join_next().await {
        r.context("publisher task")??;
    }
    let (mut received, mut last) = (0u64, started);
    while let Some(r) = counting.join_next().await {
        let (n, at) = r.context("subscriber task")??;
        received += n;
        last = last.max(at);
    }
    let secs = last.duration_since(started).as_secs_f64().max(1e-9);
    let mut figures = vec![
        ("msgs_per_sec", received as f64 / secs),
        ("delivered", received as f64),
        ("expected", expected as f64),
        ("loss", (expected - received.min(expected)) as f64),
        ("secs", secs),
    ];
    figures.extend(Probed::figures(probed.as_ref()));
    Ok(Outcome(figures))
}

/// N publishers → 1 subscriber on `bench/#`.
pub async fn fanin(
    addrs: Addrs,
    pubs: usize,
    msgs: usize,
    size: usize,
    qos: u8,
) -> Result<Outcome> {
    let topics = (0..pubs).map(|i| format!("bench/{i}")).collect();
    let subs = vec![("bench/#".to_owned(), (pubs * msgs) as u64)];
    flow(addrs, topics, subs, msgs, size, qos).await
}

/// 1 publisher on `bench/out` → N subscribers on `filter` (which must
/// match it).
pub async fn fanout(
    addrs: Addrs,
    subs: usize,
    filter: &str,
    msgs: usize,
    size: usize,
    qos: u8,
) -> Result<Outcome> {
    let subscribers = (0..subs)
        .map(|_| (filter.to_owned(), msgs as u64))
        .collect();
    flow(
        addrs,
        vec!["bench/out".into()],
        subscribers,
        msgs,
        size,
        qos,
    )
    .await
}

/// N independent publisher → subscriber pairs.
pub async fn pairs(
    addrs: Addrs,
    pairs: usize,
    msgs: usize,
    size: usize,
    qos: u8,
) -> Result<Outcome> {
    let topics: Vec<String> = (0..pairs).map(|i| format!("bench/p2p/{i}")).collect();
    let subs = topics.iter().map(|t| (t.clone(), msgs as u64)).collect();
    flow(addrs, topics, subs, msgs, size, qos).await
}

/// N publishers → a shared subscription of `subs` members.
pub async fn shared(
    addr: SocketAddr,
    pubs: usize,
    subs: usize,
    msgs: usize,
    size: usize,
    qos: u8,
) -> Result<Outcome> {
    let topics: Vec<String> = (0..pubs).map(|i| format!("bench/{i}")).collect();
    // Each member gets an unknown share: count the total against the sum.
    let total = (pubs * msgs) as u64;
    let members: Vec<(String, u64)> = (0..subs)
        .map(|_| ("$share/lg/bench/#".to_owned(), total))
        .collect();
    let mut outcome = flow_shared(addr, topics, members, msgs, size, qos, total).await?;
    outcome.0.push(("members", subs as f64));
    Ok(outcome)
}

/// Like [`flow`], for a shared subscription: members stop when the group
/// as a whole has received everything and then nothing for [`DRAIN`] (or
/// nothing for [`IDLE`] before). Messages beyond the total are `extra`:
/// delivered more than once, which hides as many lost ones, since the
/// payloads do not tell the messages apart.
async fn flow_shared(
    addr: SocketAddr,
    publishers: Vec<String>,
    members: Vec<(String, u64)>,
    msgs: usize,
    size: usize,
    qos: u8,
    total: u64,
) -> Result<Outcome> {
    let received = Arc::new(AtomicU64::new(0));
    let mut subs = Vec::new();
    for (i, (filter, _)) in members.iter().enumerate() {
        let mut c = Conn::open(addr, &format!("lg-member-{i}")).await?;
        c.subscribe(filter, qos).await?;
        subs.push(c);
    }
    let mut pubs = Vec::new();
    for (i, topic) in publishers.iter().enumerate() {
        pubs.push((
            Conn::open(addr, &format!("lg-pub-{i}")).await?,
            topic.clone(),
        ));
    }
    let started = Instant::now();
    let mut counting = JoinSet::new();
    for mut c in subs {
        let received = received.clone();
        counting.spawn(async move {
            let mut last = Instant::now();
            let mut acks = Vec::new();
            loop {
                let wait = if received.load(Ordering::Relaxed) < total {
                    IDLE
                } else {
                    DRAIN
                };
                let read = tokio::time::timeout(
                    wait,
                    c.read_some(|buf, f| {
                        if f.kind() == 3 {
                            received.fetch_add(1, Ordering::Relaxed);
                            if let (_, Some(id), _) = wire::publish_parts(buf, f) {
                                acks.extend_from_slice(&wire::puback(id));
                            }
                        }
                    }),
                )
                .await;
                match read {
                    Ok(r) => r?,
                    Err(_) => break,
                }
                last = Instant::now();
                if !acks.is_empty() {
                    c.stream.write_all(&acks).await?;
                    acks.clear();
                }
            }
            anyhow::Ok(last)
        });
    }
    let mut sending = JoinSet::new();
    for (c, topic) in pubs {
        sending.spawn(publish(c, topic, msgs, size, qos));
    }
    while let Some(r) = sending.join_next().await {
        r.context("publisher task")??;
    }
    let mut last = started;
    while let Some(r) = counting.join_next().await {
        last = last.max(r.context("member task")??);
    }
    let got = received.load(Ordering::Relaxed);
    let secs = last.duration_since(started).as_secs_f64().max(1e-9);
    Ok(Outcome(vec![
        ("msgs_per_sec", got.min(total) as f64 / secs),
        ("delivered", got as f64),
        ("expected", total as f64),
        ("loss", (total - got.min(total)) as f64),
        ("extra", got.saturating_sub(total) as f64),
        ("secs", secs),
    ]))
}

/// CONNECT → CONNACK → DISCONNECT in a loop from `workers` clients for
/// `secs` seconds; each CONNECT with a new client id, or with `reuse` the
/// worker's own one every time.
pub async fn connects(addr: SocketAddr, workers: usize, secs: f64, reuse: bool) -> Result<Outcome> {
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for w in 0..workers {
        tasks.spawn(async move {
            let mut n = 0u64;
            while Instant::now() < until {
                let id = if reuse {
                    format!("lgc-{w}")
                } else {
                    format!("lgc-{w}-{n}")
                };
                let mut c = Conn::open(addr, &id).await?;
                c.stream.write_all(&wire::DISCONNECT).await?;
                n += 1;
            }
            anyhow::Ok(n)
        });
    }
    let mut total = 0;
    while let Some(r) = tasks.join_next().await {
        total += r.context("connect worker")??;
    }
    let secs = started.elapsed().as_secs_f64();
    Ok(Outcome(vec![
        ("connects_per_sec", total as f64 / secs),
        ("connects", total as f64),
        ("workers", workers as f64),
    ]))
}

/// One publisher at a fixed `rate` for `secs`, one subscriber: end-to-end
/// latency percentiles from timestamps in the payloads.
pub async fn latency(addrs: Addrs, rate: u64, secs: f64, size: usize) -> Result<Outcome> {
    let mut sub = Conn::open(addrs.subscribe, "lg-lat-sub").await?;
    sub.subscribe("bench/lat", 0).await?;
    let mut publisher = Conn::open(addrs.publish, "lg-lat-pub").await?;
    let probed = if addrs.apart() {
        Some(probe(addrs, &mut [(&mut publisher, "bench/lat")], &mut [&mut sub]).await?)
    } else {
        None
    };
    let base = Instant::now();
    let total = (rate as f64 * secs) as u64;
    let counter = tokio::spawn(async move {
        let mut lat = Vec::with_capacity(total as usize);
        while (lat.len() as u64) < total {
            let read = tokio::time::timeout(
                IDLE,
                sub.read_some(|buf, f| {
                    if f.kind() == 3 {
                        let (_, _, payload) = wire::publish_parts(buf, f);
                        // A late probe, or no send time: not measured.
                        let Some(stamp) = payload.get(..8).filter(|_| payload != PROBE) else {
                            return;
                        };
                        let mut ns = [0u8; 8];
                        ns.copy_from_slice(stamp);
                        let sent = u64::from_be_bytes(ns);
                        let now = base.elapsed().as_nanos() as u64;
                        lat.push(now.saturating_sub(sent));
                    }
                }),
            )
            .await;
            match read {
                Ok(r) => r?,
                Err(_) => break,
            }
        }
        anyhow::Ok(lat)
    });
    let per_tick = (rate / 1000).max(1);
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut payload = vec![b'x'; size.max(8)];
    let mut sent = 0u64;
    let mut buf = Vec::new();
    while sent < total {
        tick.tick().await;
        buf.clear();
        for _ in 0..per_tick.min(total - sent) {
            let ns = base.elapsed().as_nanos() as u64;
            payload[..8].copy_from_slice(&ns.to_be_bytes());
            buf.extend_from_slice(&wire::publish("bench/lat", 0, 0, &payload));
            sent += 1;
        }
        publisher.stream.write_all(&buf).await?;
    }
    let mut lat = counter.await.context("latency subscriber")??;
    lat.sort_unstable();
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return f64::NAN;
        }
        let i = ((lat.len() as f64 - 1.0) * p).round() as usize;
        lat[i] as f64 / 1000.0
    };
    let mut figures = vec![
        ("p50_us", pct(0.50)),
        ("p99_us", pct(0.99)),
        ("max_us", pct(1.0)),
        ("sent", sent as f64),
        ("received", lat.len() as f64),
        ("loss", (sent - (lat.len() as u64).min(sent)) as f64),
        ("rate", rate as f64),
    ];
    figures.extend(Probed::figures(probed.as_ref()));
    Ok(Outcome(figures))
}

/// Resident memory of process `pid`, in KiB.
pub(crate) fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read the status of process {pid}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS")
}

/// Broker memory per idle connection: RSS before and after `conns`
/// connections that only said CONNECT.
pub async fn idle_memory(addr: SocketAddr, pid: u32, conns: usize) -> Result<Outcome> {
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib(pid)?;
    let mut open = Vec::with_capacity(conns);
    let mut tasks = JoinSet::new();
    for chunk in (0..conns).collect::<Vec<_>>().chunks(200) {
        for &i in chunk {
            tasks.spawn(
                async move { Conn::open_with_buffer(addr, &format!("lg-idle-{i}"), 64).await },
            );
        }
        while let Some(r) = tasks.join_next().await {
            open.push(r.context("idle client")??);
        }
    }
    // Let the broker settle (buffers released after the handshake).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss_kib(pid)?;
    let per = (after.saturating_sub(before) as f64 * 1024.0) / conns as f64;
    drop(open);
    Ok(Outcome(vec![
        ("bytes_per_conn", per),
        ("rss_before_kib", before as f64),
        ("rss_after_kib", after as f64),
        ("conns", conns as f64),
    ]))
}
