//! The soak's hostile clients: what a buggy or malicious client does to a
//! broker, all at once, bounded in count and rate, on a thread and runtime
//! of their own so that the normal clients keep theirs. Everything stops at
//! the deadline: the runtime is dropped, which closes every socket.
//!
//! - retained amplification: `RETAINED` small retained messages on
//!   `amp/...`, then `AMP_CLIENTS` clients that each send one SUBSCRIBE of
//!   `AMP_COPIES` copies of `amp/#` every `AMP_EVERY`, never reading;
//! - deep topics: a SUBSCRIBE and a retained PUBLISH of `DEEP_LEVELS`
//!   levels every `DEEP_EVERY`, each on a new topic;
//! - stuck subscribers taken over: `STUCK` client ids, each held by a
//!   connection with a small receive buffer subscribed to `#` (QoS 0, so
//!   that deliveries stream into its socket without waiting for acks) that never
//!   reads, and taken over every `STUCK_HOLD` by a new one that does the
//!   same (the time to CONNACK is measured), while a flood publisher sends
//!   `FLOOD_SIZE`-byte messages `FLOOD_RATE` times a second;
//! - slowloris: `SILENT` connections that never send CONNECT, and
//!   `DRIBBLERS` connections that send a CONNECT, or a PUBLISH after their
//!   CONNECT, one byte a second; each reconnects when the broker closes it;
//! - CONNECT floods: `FLOODERS` loops of CONNECT → CONNACK → close without
//!   DISCONNECT, persistent sessions over `FLOOD_IDS` client ids each, and
//!   `WILLERS` such loops in MQTT 5 with a session expiry and a delayed Will;
//! - garbage: `GARBLERS` loops of a connection sending one malformed input
//!   (random bytes, bad lengths, bad flags, bad UTF-8...) and waiting a
//!   second for the broker to close it.
//!
//! `--hostile 1` (or `all`) runs them all; a comma-separated list of
//! `amp`, `deep`, `stuck`, `slow`, `connect`, `garbage` runs only those.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinSet;

use crate::wire;

const RETAINED: usize = 2000;
const AMP_CLIENTS: usize = 2;
const AMP_COPIES: usize = 5000;
const AMP_EVERY: Duration = Duration::from_secs(2);
const DEEP_LEVELS: usize = 3000;
const DEEP_EVERY: Duration = Duration::from_millis(100);
const STUCK: usize = 4;
const STUCK_HOLD: Duration = Duration::from_secs(2);
const FLOOD_SIZE: usize = 16_384;
const FLOOD_RATE: u64 = 200;
const SILENT: usize = 300;
const DRIBBLERS: usize = 100;
const FLOODERS: usize = 2;
/// Minimum time between two connects of one flooder (500 a second).
const FLOOD_PACE: Duration = Duration::from_millis(2);
const FLOOD_IDS: u64 = 2500;
const WILLERS: usize = 2;
const WILL_PACE: Duration = Duration::from_millis(10);
const WILL_IDS: u64 = 250;
const GARBLERS: usize = 4;
/// Minimum time between two malformed inputs of one garbler (50 a second).
const GARBAGE_PACE: Duration = Duration::from_millis(20);
/// Receive buffer of the clients that do not read.
const SMALL_RCVBUF: u32 = 4096;
/// How long a hostile client waits for a CONNACK.
const CONNACK_WAIT: Duration = Duration::from_secs(5);

/// Which kinds of hostile clients run (bits of `KINDS`).
#[derive(Clone, Copy)]
pub struct Kinds(u8);

const KINDS: [&str; 6] = ["amp", "deep", "stuck", "slow", "connect", "garbage"];

impl Kinds {
    /// `0`: none; `1` or `all`: every kind; else a comma-separated list.
    pub fn parse(s: &str) -> Result<Kinds> {
        match s {
            "0" => return Ok(Kinds(0)),
            "1" | "all" => return Ok(Kinds((1 << KINDS.len()) - 1)),
            _ => {}
        }
        let mut bits = 0;
        for k in s.split(',') {
            let Some(i) = KINDS.iter().position(|n| *n == k) else {
                bail!("--hostile: unknown kind {k} (0, 1, all, or some of {KINDS:?})");
            };
            bits |= 1 << i;
        }
        Ok(Kinds(bits))
    }

    pub fn any(self) -> bool {
        self.0 != 0
    }

    fn has(self, kind: &str) -> bool {
        KINDS
            .iter()
            .position(|n| *n == kind)
            .is_some_and(|i| self.0 & (1 << i) != 0)
    }
}

/// What the hostile clients did and saw.
#[derive(Default)]
pub struct Stats {
    conns: AtomicU64,
    connect_failures: AtomicU64,
    amp_subscribes: AtomicU64,
    deep_packets: AtomicU64,
    /// Times to CONNACK of takeovers of a stuck client, in ms (refused and
    /// timed-out ones included).
    takeover_ms: Mutex<Vec<f64>>,
    takeover_failures: AtomicU64,
    flood_msgs: AtomicU64,
    slow_closed: AtomicU64,
    flood_connects: AtomicU64,
    will_connects: AtomicU64,
    refused: AtomicU64,
    garbage: AtomicU64,
    garbage_closed: AtomicU64,
}

impl Stats {
    fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn figures(&self) -> Vec<(&'static str, f64)> {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed) as f64;
        let mut takeovers = self
            .takeover_ms
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default();
        takeovers.sort_by(f64::total_cmp);
        let at = |q: f64| -> f64 {
            if takeovers.is_empty() {
                return 0.0;
            }
            takeovers[((takeovers.len() as f64 - 1.0) * q).round() as usize]
        };
        vec![
            ("hostile_conns", get(&self.conns)),
            ("hostile_connect_failures", get(&self.connect_failures)),
            ("amp_subscribes", get(&self.amp_subscribes)),
            ("deep_packets", get(&self.deep_packets)),
            ("takeovers", takeovers.len() as f64),
            ("takeover_failures", get(&self.takeover_failures)),
            ("takeover_p50_ms", at(0.5)),
            ("takeover_max_ms", at(1.0)),
            ("flood_msgs", get(&self.flood_msgs)),
            ("slow_closed", get(&self.slow_closed)),
            ("flood_connects", get(&self.flood_connects)),
            ("will_connects", get(&self.will_connects)),
            ("connects_refused", get(&self.refused)),
            ("garbage", get(&self.garbage)),
            ("garbage_closed", get(&self.garbage_closed)),
        ]
    }
}

/// Starts the hostile clients on their own thread; it ends at `deadline`.
pub fn start(
    addr: SocketAddr,
    kinds: Kinds,
    deadline: Instant,
    stats: Arc<Stats>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            eprintln!("loadgen: no runtime for the hostile clients");
            return;
        };
        let h = Hostile {
            addr,
            kinds,
            deadline,
            stats,
        };
        rt.block_on(async {
            let _ = tokio::time::timeout_at(deadline.into(), h.run()).await;
        });
        // Dropping the runtime cancels every client still running.
    })
}

#[derive(Clone)]
struct Hostile {
    addr: SocketAddr,
    kinds: Kinds,
    deadline: Instant,
    stats: Arc<Stats>,
}

impl Hostile {
    fn live(&self) -> bool {
        Instant::now() < self.deadline
    }

    async fn run(self) {
        let mut all = JoinSet::new();
        let k = self.kinds;
        if k.has("amp") {
            all.spawn(self.clone().amplification());
        }
        if k.has("deep") {
            all.spawn(self.clone().deep());
        }
        if k.has("stuck") {
            for i in 0..STUCK {
                all.spawn(self.clone().stuck(i));
            }
            all.spawn(self.clone().flood());
        }
        if k.has("slow") {
            for i in 0..SILENT {
                all.spawn(self.clone().silent(i));
            }
            for i in 0..DRIBBLERS {
                all.spawn(self.clone().dribble(i));
            }
        }
        if k.has("connect") {
            for w in 0..FLOODERS {
                all.spawn(self.clone().connect_flood(w));
            }
            for w in 0..WILLERS {
                all.spawn(self.clone().delayed_wills(w));
            }
        }
        if k.has("garbage") {
            for w in 0..GARBLERS {
                all.spawn(self.clone().garbage(w));
            }
        }
        while all.join_next().await.is_some() {}
    }

    /// A TCP connection, with a small receive buffer if asked.
    async fn raw(&self, small: bool) -> Result<TcpStream> {
        let socket = if self.addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if small {
            socket.set_recv_buffer_size(SMALL_RCVBUF)?;
        }
        let stream = tokio::time::timeout(CONNACK_WAIT, socket.connect(self.addr)).await;
        match stream {
            Ok(Ok(s)) => {
                s.set_nodelay(true)?;
                Stats::add(&self.stats.conns);
                Ok(s)
            }
            Ok(Err(e)) => {
                Stats::add(&self.stats.connect_failures);
                Err(e.into())
            }
            Err(_) => {
                Stats::add(&self.stats.connect_failures);
                bail!("connect timed out")
            }
        }
    }

    /// Retained messages on `amp/...`, then SUBSCRIBEs of thousands of
    /// `amp/#` from clients that never read.
    async fn amplification(self) {
        if self.retain_set().await.is_err() {
            eprintln!("loadgen: could not store the retained messages for amplification");
        }
        let mut clients = JoinSet::new();
        for w in 0..AMP_CLIENTS {
            let h = self.clone();
            clients.spawn(async move {
                let packet = [
                    wire::connect(&format!("soak-amp-{w}"), true, 0),
                    wire::subscribe_many(1, "amp/#", AMP_COPIES, 0),
                ]
                .concat();
                while h.live() {
                    let next = Instant::now() + AMP_EVERY;
                    if let Ok(mut s) = h.raw(true).await
                        && s.write_all(&packet).await.is_ok()
                    {
                        Stats::add(&h.stats.amp_subscribes);
                        tokio::time::sleep_until(next.into()).await;
                    } else {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            });
        }
        while clients.join_next().await.is_some() {}
    }

    async fn retain_set(&self) -> Result<()> {
        let mut s = self.raw(false).await?;
        let mut out = wire::connect("soak-amp-retainer", true, 0);
        for i in 0..RETAINED {
            let mut p = wire::publish(&format!("amp/{i}"), 0, 0, b"0123456789abcdef");
            p[0] |= 1;
            out.extend_from_slice(&p);
        }
        out.extend_from_slice(&wire::PINGREQ);
        s.write_all(&out).await?;
        // CONNACK, then PINGRESP once every PUBLISH before it is handled.
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        while !got.ends_with(&[0xD0, 0]) {
            let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
                .await
                .context("no PINGRESP")??;
            if n == 0 {
                bail!("closed");
            }
            got.extend_from_slice(&buf[..n]);
        }
        s.write_all(&wire::DISCONNECT).await?;
        Ok(())
    }

    /// SUBSCRIBEs and retained PUBLISHes thousands of levels deep, each on
    /// a new topic; reconnects when the broker closes the connection.
    async fn deep(self) {
        let tail = "/x".repeat(DEEP_LEVELS);
        let mut n = 0u64;
        while self.live() {
            let Ok(mut s) = self.raw(true).await else {
                tokio::time::sleep(DEEP_EVERY).await;
                continue;
            };
            if s.write_all(&wire::connect("soak-deep", true, 0))
                .await
                .is_err()
            {
                tokio::time::sleep(DEEP_EVERY).await;
                continue;
            }
            while self.live() {
                n += 1;
                let id = (n % 65_535 + 1) as u16;
                let mut publish = wire::publish(&format!("deept/{n}{tail}"), 0, 0, b"deep");
                publish[0] |= 1;
                let packets =
                    [wire::subscribe(id, &format!("deepf/{n}{tail}"), 0), publish].concat();
                if s.write_all(&packets).await.is_err() {
                    break;
                }
                self.stats.deep_packets.fetch_add(2, Ordering::Relaxed);
                tokio::time::sleep(DEEP_EVERY).await;
            }
            tokio::time::sleep(DEEP_EVERY).await;
        }
    }

    /// One client id held by a connection that subscribed to `#` and never
    /// reads, taken over every `STUCK_HOLD` by a new one.
    async fn stuck(self, i: usize) {
        let id = format!("soak-stuck-{i}");
        let mut holder: Option<TcpStream> = None;
        while self.live() {
            let takeover = holder.is_some();
            let started = Instant::now();
            let attempt = async {
                let mut s = self.raw(true).await?;
                s.write_all(&wire::connect(&id, true, 0)).await?;
                let code = connack(&mut s).await?;
                anyhow::Ok((s, code))
            }
            .await;
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            if takeover && let Ok(mut v) = self.stats.takeover_ms.lock() {
                v.push(ms);
            }
            match attempt {
                Ok((mut s, 0)) => {
                    // The old holder goes now; the new one subscribes and
                    // stops reading.
                    if s.write_all(&wire::subscribe(1, "#", 0)).await.is_ok() {
                        holder = Some(s);
                    } else {
                        holder = None;
                    }
                }
                Ok(_) | Err(_) => {
                    // Refused or no answer: keep the stuck holder, retry.
                    if takeover {
                        Stats::add(&self.stats.takeover_failures);
                    } else {
                        Stats::add(&self.stats.refused);
                    }
                }
            }
            tokio::time::sleep(STUCK_HOLD).await;
        }
    }

    /// Big QoS 0 messages for the stuck subscribers to fall behind on.
    async fn flood(self) {
        let packet = wire::publish("flood/a", 0, 0, &vec![b'f'; FLOOD_SIZE]);
        let mut tick = tokio::time::interval(Duration::from_secs(1) / FLOOD_RATE as u32);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        while self.live() {
            let Ok(mut s) = self.raw(false).await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            if s.write_all(&wire::connect("soak-flood", true, 0))
                .await
                .is_err()
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            while self.live() {
                tick.tick().await;
                if s.write_all(&packet).await.is_err() {
                    break;
                }
                Stats::add(&self.stats.flood_msgs);
            }
        }
    }

    /// A connection that never sends a byte; a new one when the broker
    /// closes it.
    async fn silent(self, i: usize) {
        // Spread the connects over the first three seconds.
        tokio::time::sleep(Duration::from_millis(10) * i as u32).await;
        while self.live() {
            if let Ok(mut s) = self.raw(true).await {
                until_closed(&mut s).await;
                Stats::add(&self.stats.slow_closed);
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// One byte a second: half of them of a CONNECT, the other half of
    /// PUBLISHes after a whole CONNECT; a new connection when the broker
    /// closes one.
    async fn dribble(self, i: usize) {
        tokio::time::sleep(Duration::from_millis(30) * i as u32).await;
        let hello = wire::connect(&format!("soak-slow-{i}"), true, 0);
        let publish = wire::publish("soak/slow", 0, 0, &[b's'; 64]);
        while self.live() {
            if let Ok(mut s) = self.raw(true).await {
                if i.is_multiple_of(2) {
                    if slowly(&mut s, &hello).await {
                        until_closed(&mut s).await;
                    }
                } else if s.write_all(&hello).await.is_ok() {
                    while slowly(&mut s, &publish).await {}
                }
                Stats::add(&self.stats.slow_closed);
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// CONNECT → CONNACK → close without DISCONNECT, as fast as the pace
    /// allows, with persistent sessions over a bounded set of client ids.
    async fn connect_flood(self, w: usize) {
        let mut n = 0u64;
        while self.live() {
            let next = Instant::now() + FLOOD_PACE;
            n += 1;
            let id = format!("soak-flood-{w}-{}", n % FLOOD_IDS);
            self.connect_once(&wire::connect(&id, false, 30), &self.stats.flood_connects)
                .await;
            tokio::time::sleep_until(next.into()).await;
        }
    }

    /// The same in MQTT 5, with a session expiry and a Will delayed past
    /// the end of the run: every close leaves a pending Will and an expiry.
    async fn delayed_wills(self, w: usize) {
        let mut n = 0u64;
        while self.live() {
            let next = Instant::now() + WILL_PACE;
            n += 1;
            let k = n % WILL_IDS;
            let packet = wire::connect_v5_will(
                &format!("soak-will-{w}-{k}"),
                600,
                &format!("soak/will/{w}/{k}"),
                300,
                b"gone",
            );
            self.connect_once(&packet, &self.stats.will_connects).await;
            tokio::time::sleep_until(next.into()).await;
        }
    }

    async fn connect_once(&self, connect: &[u8], counter: &AtomicU64) {
        let Ok(mut s) = self.raw(false).await else {
            return;
        };
        if s.write_all(connect).await.is_err() {
            return;
        }
        match connack(&mut s).await {
            Ok(0) => Stats::add(counter),
            _ => Stats::add(&self.stats.refused),
        }
        // Dropped without DISCONNECT.
    }

    /// Malformed inputs, one per connection.
    async fn garbage(self, w: usize) {
        let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ (w as u64 + 1);
        let mut n = w;
        while self.live() {
            let next = Instant::now() + GARBAGE_PACE;
            n += GARBLERS;
            let input = malformed(n, &mut rng);
            if let Ok(mut s) = self.raw(false).await
                && s.write_all(&input).await.is_ok()
            {
                Stats::add(&self.stats.garbage);
                let closed = tokio::time::timeout(Duration::from_secs(1), until_closed(&mut s))
                    .await
                    .is_ok();
                if closed {
                    Stats::add(&self.stats.garbage_closed);
                }
            }
            tokio::time::sleep_until(next.into()).await;
        }
    }
}

/// Writes `bytes` one a second; false when the connection fails.
async fn slowly(s: &mut TcpStream, bytes: &[u8]) -> bool {
    for b in bytes {
        if s.write_all(&[*b]).await.is_err() {
            return false;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    true
}

/// Reads and discards until the broker closes the connection.
async fn until_closed(s: &mut TcpStream) {
    let mut buf = [0u8; 256];
    while let Ok(n) = s.read(&mut buf).await {
        if n == 0 {
            return;
        }
    }
}

/// Reads a CONNACK; returns its return (reason) code.
async fn connack(s: &mut TcpStream) -> Result<u8> {
    tokio::time::timeout(CONNACK_WAIT, async {
        let mut head = [0u8; 2];
        s.read_exact(&mut head).await?;
        if head[0] != 0x20 || head[1] < 2 || head[1] >= 0x80 {
            bail!("not a CONNACK: {head:?}");
        }
        let mut body = vec![0u8; usize::from(head[1])];
        s.read_exact(&mut body).await?;
        Ok(body[1])
    })
    .await
    .context("no CONNACK")?
}

/// The `n`th malformed input: a CONNECT (or not) followed by something no
/// broker may accept.
fn malformed(n: usize, rng: &mut u64) -> Vec<u8> {
    let hello = wire::connect(&format!("soak-garbage-{}", n % 100), true, 0);
    let after = |bad: &[u8]| [hello.as_slice(), bad].concat();
    match n % 12 {
        // Random bytes.
        0 => (0..256)
            .map(|_| {
                *rng ^= *rng << 13;
                *rng ^= *rng >> 7;
                *rng ^= *rng << 17;
                *rng as u8
            })
            .collect(),
        // Protocol name "MQTX".
        1 => {
            let mut c = hello.clone();
            c[7] = b'X';
            c
        }
        // A remaining length of five bytes.
        2 => after(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]),
        // A non-minimal remaining length (0 in two bytes).
        3 => after(&[0xC0, 0x80, 0x00]),
        // SUBSCRIBE asking for QoS 3.
        4 => after(&wire::subscribe(1, "a/b", 3)),
        // PUBLISH to a topic with invalid UTF-8.
        5 => after(&[0x30, 0x06, 0x00, 0x03, b'a', b'/', 0xFF, b'x']),
        // PUBLISH to a topic with a wildcard.
        6 => after(&wire::publish("a/#", 0, 0, b"x")),
        // Packet types 0 and 15 (reserved / MQTT 5 only).
        7 => after(&[0x00, 0x00]),
        8 => after(&[0xF0, 0x00]),
        // A second CONNECT.
        9 => after(&hello),
        // A CONNECT that announces 200 MB and sends a few bytes.
        10 => vec![0x10, 0x80, 0x80, 0xE8, 0x5F, 0, 4, b'M', b'Q'],
        // PUBLISH with QoS 3.
        _ => after(&[0x36, 0x05, 0x00, 0x01, b'a', 0x00, 0x01]),
    }
}
