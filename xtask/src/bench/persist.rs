//! The durability runs of `cargo xtask bench` and the "Durability" section
//! of `BENCHMARKS.md`:
//!
//! - QoS 1 fan-in to a persistent session (`loadgen durable`): Sluice in
//!   memory and with `[persistence] durability` "none", "interval" and
//!   "always", mosquitto with persistence on and off, the same load side by
//!   side, interleaved over rounds, each run on a fresh broker and store;
//! - recovery: 100,000 persistent sessions with 10 queued messages each
//!   (`loadgen recovery --phase fill`), the broker stopped with SIGTERM,
//!   the store's size, then the time to start again with all of it, the
//!   memory that takes, and a sample of sessions checked
//!   (`--phase verify`).
//!
//! `cargo xtask bench --persist-only` runs only these and replaces that
//! section of an existing `BENCHMARKS.md`, leaving the rest as it is.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::report::{human, median, median_range, thousands};
use super::soak::{count, micros};
use super::{field, launcher, loadgen_on, status_kib, wait_listening};

/// The section's heading, which `report::splice` looks for.
pub const HEADING: &str = "## Durability";

/// Fan-in: messages per publisher and rounds (quick, full). In all they
/// stay within the 1,000,000 messages a client may have queued, so that
/// a subscriber that falls behind loses nothing to its queue's limit.
const MSGS: (u32, u32) = (50_000, 250_000);
const ROUNDS: (u32, u32) = (1, 3);
/// Fan-in: publishers stop sending after this many seconds, whatever is
/// left.
const SEND_LIMIT_SECS: u32 = 120;
/// Fan-in: publishers and their window of unacknowledged messages.
const PUBS: u32 = 4;
const WINDOW: u32 = 100;
/// Recovery: persistent sessions (quick, full) and messages queued for
/// each.
const SESSIONS: (u32, u32) = (10_000, 100_000);
const PER: u32 = 10;
/// Recovery: sessions created at once, and sessions checked after the
/// restart.
const CONC: u32 = 64;
const SAMPLE: u32 = 100;
/// Payload size everywhere.
const SIZE: u32 = 64;
/// How long a broker may take to start or to stop.
const START_LIMIT: Duration = Duration::from_secs(120);
const STOP_LIMIT: Duration = Duration::from_secs(120);

/// The brokers compared in the fan-in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Memory,
    None,
    Interval,
    Always,
    MosquittoPersistent,
    MosquittoMemory,
}

const TARGETS: [Target; 6] = [
    Target::Memory,
    Target::None,
    Target::Interval,
    Target::Always,
    Target::MosquittoPersistent,
    Target::MosquittoMemory,
];

impl Target {
    fn label(self) -> &'static str {
        match self {
            Target::Memory => "sluice, in memory",
            Target::None => "sluice, durability none",
            Target::Interval => "sluice, durability interval",
            Target::Always => "sluice, durability always",
            Target::MosquittoPersistent => "mosquitto, persistence true",
            Target::MosquittoMemory => "mosquitto, in memory",
        }
    }

    /// Its settings besides the common ones, for the table.
    fn setting(self) -> &'static str {
        match self {
            Target::Memory => "no `[persistence]`",
            Target::None => "`durability = \"none\"`",
            Target::Interval => "`durability = \"interval\"` (default), `sync_interval_ms = 1000`",
            Target::Always => "`durability = \"always\"`",
            Target::MosquittoPersistent => {
                "`persistence true`, `persistence_location` a fresh temporary \
                 directory; autosave settings default (`autosave_interval 1800`)"
            }
            Target::MosquittoMemory => "`persistence false`",
        }
    }

    fn durability(self) -> Option<&'static str> {
        match self {
            Target::None => Some("none"),
            Target::Interval => Some("interval"),
            Target::Always => Some("always"),
            _ => None,
        }
    }

    fn mosquitto(self) -> bool {
        matches!(self, Target::MosquittoPersistent | Target::MosquittoMemory)
    }

    fn port(self) -> u16 {
        18_911 + TARGETS.iter().position(|t| *t == self).unwrap_or(0) as u16
    }
}

/// Port of the recovery broker.
const RECOVERY_PORT: u16 = 18_919;

/// One fan-in run.
struct Run {
    target: Target,
    /// loadgen's JSON line, or why there is none.
    out: Result<String, String>,
    /// How the broker ended, if it did before it was stopped.
    exit: Option<String>,
    /// Broker CPU seconds over the run.
    cpu: f64,
    /// Bytes in the store (or mosquitto's persistence directory) after
    /// the broker stopped.
    stored: Option<u64>,
    /// Key writes that reached the store's engine over the run
    /// (`sluice_store_writes_total`; Sluice with a store only).
    writes: Option<f64>,
}

/// The recovery run.
struct Recovery {
    sessions: u32,
    /// `loadgen recovery --phase fill`.
    fill: Result<String, String>,
    /// Broker RSS after the fill, KiB.
    rss_filled: Option<u64>,
    /// SIGTERM → exit, and how it exited.
    shutdown: Option<(Duration, String)>,
    /// Store after the stop: (allocated bytes, apparent bytes, files).
    disk: Option<(u64, u64, u64)>,
    /// Process start → "listening on".
    listening: Option<Duration>,
    /// The "recovered ..." part of the broker's line, and when it came
    /// after the process started.
    recovered: Option<String>,
    recovered_at: Option<Duration>,
    /// Broker RSS at "listening on" and 2 s later, KiB.
    rss_recovered: Option<(u64, u64)>,
    /// `loadgen recovery --phase verify`.
    verify: Result<String, String>,
    /// Whatever went wrong outside the loadgen runs.
    problems: Vec<String>,
    /// The whole scenario.
    took: Duration,
}

/// Everything the section reports.
pub struct Outcome {
    runs: Vec<Run>,
    recovery: Recovery,
    fs: String,
    /// Load averages before and after, and how long it all took.
    load: (String, String),
    took: Duration,
}

/// Runs the fan-in rounds, then the recovery.
pub fn run(root: &Path, quick: bool, pin: bool) -> Result<Outcome> {
    let started = Instant::now();
    let load_before = super::report::loadavg();
    let dir = root.join("target/bench/persist");
    std::fs::create_dir_all(&dir)?;
    let fs = filesystem(&dir);
    let (msgs, rounds) = if quick {
        (MSGS.0, ROUNDS.0)
    } else {
        (MSGS.1, ROUNDS.1)
    };
    let mut runs = Vec::new();
    for round in 1..=rounds {
        for target in TARGETS {
            eprintln!(
                "xtask: durability fan-in, round {round}/{rounds} ({PUBS} × {msgs} messages): {}",
                target.label()
            );
            runs.push(fan_in(root, &dir, target, msgs, pin)?);
        }
    }
    let sessions = if quick { SESSIONS.0 } else { SESSIONS.1 };
    eprintln!(
        "xtask: recovery: {sessions} persistent sessions × {PER} messages, durability interval"
    );
    // The stores are removed after each run; the logs stay in `dir`.
    let recovery = recovery(root, &dir, sessions, pin);
    Ok(Outcome {
        runs,
        recovery,
        fs,
        load: (load_before, super::report::loadavg()),
        took: started.elapsed(),
    })
}

/// One fan-in run on a fresh broker and store.
fn fan_in(root: &Path, dir: &Path, target: Target, msgs: u32, pin: bool) -> Result<Run> {
    let port = target.port();
    let store = if target == Target::MosquittoPersistent {
        std::env::temp_dir().join(format!("sluice-bench-mosquitto-{}", std::process::id()))
    } else {
        dir.join(format!("store-{port}"))
    };
    fresh_dir(&store)?;
    let log = dir.join(format!("fanin-{port}.log"));
    let mut cmd = launcher(pin.then_some(1));
    let mut admin_port = None;
    if target.mosquitto() {
        let config = dir.join(format!("mosquitto-{port}.conf"));
        let mut text = format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 1000000\n\
             log_type error\n"
        );
        if target == Target::MosquittoPersistent {
            // mosquitto started as root runs as the `mosquitto` user, which
            // must be able to write there.
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o777))?;
            let _ = writeln!(
                text,
                "persistence true\npersistence_location {}/",
                store.display()
            );
        } else {
            text.push_str("persistence false\n");
        }
        std::fs::write(&config, text)?;
        cmd.arg(mosquitto_bin()).arg("-c").arg(&config);
    } else {
        let config = dir.join(format!("sluice-{port}.toml"));
        let mut text = sluice_config(port, "warn", target.durability().map(|d| (d, &*store)));
        if target.durability().is_some() {
            let admin = super::cluster::free_port()?;
            let _ = write!(text, "[admin]\nbind = \"127.0.0.1:{admin}\"\n");
            admin_port = Some(admin);
        }
        std::fs::write(&config, text)?;
        cmd.arg(root.join("target/release/sluice"))
            .arg("--config")
            .arg(&config);
    }
    let mut child = spawn(&mut cmd, &log, target.label())?;
    wait_listening(&mut child, port, target.label(), Duration::from_secs(30))?;
    let writes = |admin: Option<u16>| {
        let text = super::cluster::http_get(admin?, "/metrics").ok()?;
        super::cluster::prometheus(&text, "sluice_store_writes_total")
    };
    let writes_before = writes(admin_port);
    let cpu_before = super::cpu_secs(child.id()).unwrap_or(0.0);
    let args = format!(
        "--pubs {PUBS} --secs {SEND_LIMIT_SECS} --msgs {msgs} --size {SIZE} --window {WINDOW}"
    );
    let out =
        loadgen_on(root, "durable", port, target.label(), &args, pin).map_err(|e| format!("{e:#}"));
    if let Ok(line) = &out {
        eprintln!("xtask:   durable      {line}");
    }
    let cpu = super::cpu_secs(child.id()).unwrap_or(0.0) - cpu_before;
    let writes = writes(admin_port).zip(writes_before).map(|(a, b)| a - b);
    let exit = match child.try_wait() {
        Ok(Some(status)) => Some(status.to_string()),
        _ => None,
    };
    let _ = stop(&mut child, STOP_LIMIT);
    let stored = (target.durability().is_some() || target == Target::MosquittoPersistent)
        .then(|| disk_usage(&store).1);
    let _ = std::fs::remove_dir_all(&store);
    Ok(Run {
        target,
        out,
        exit,
        cpu,
        stored,
        writes,
    })
}

/// The recovery scenario; what failed is recorded, not returned.
fn recovery(root: &Path, dir: &Path, sessions: u32, pin: bool) -> Recovery {
    let started = Instant::now();
    let mut r = Recovery {
        sessions,
        fill: Err("not run".into()),
        rss_filled: None,
        shutdown: None,
        disk: None,
        listening: None,
        recovered: None,
        recovered_at: None,
        rss_recovered: None,
        verify: Err("not run".into()),
        problems: Vec::new(),
        took: Duration::ZERO,
    };
    if let Err(e) = recovery_steps(root, dir, pin, &mut r) {
        r.problems.push(format!("{e:#}"));
    }
    let _ = std::fs::remove_dir_all(dir.join("store-recovery"));
    r.took = started.elapsed();
    r
}

fn recovery_steps(root: &Path, dir: &Path, pin: bool, r: &mut Recovery) -> Result<()> {
    let port = RECOVERY_PORT;
    let store = dir.join("store-recovery");
    fresh_dir(&store)?;
    let config = dir.join("sluice-recovery.toml");
    let label = "sluice (recovery)";
    let sluice = |level: &str| -> Result<Command> {
        std::fs::write(
            &config,
            sluice_config(port, level, Some(("interval", &*store))),
        )?;
        let mut cmd = launcher(pin.then_some(1));
        cmd.arg(root.join("target/release/sluice"))
            .arg("--config")
            .arg(&config);
        Ok(cmd)
    };
    // Fill.
    let mut child = spawn(&mut sluice("warn")?, &dir.join("recovery-fill.log"), label)?;
    wait_listening(&mut child, port, label, START_LIMIT)?;
    let args = format!(
        "--phase fill --sessions {} --per {PER} --size {SIZE} --conc {CONC} --pubs {PUBS} \
         --window {WINDOW}",
        r.sessions
    );
    r.fill = loadgen_on(root, "recovery", port, label, &args, pin).map_err(|e| format!("{e:#}"));
    if let Ok(line) = &r.fill {
        eprintln!("xtask:   fill         {line}");
    }
    r.rss_filled = status_kib(child.id(), "VmRSS");
    if let Ok(Some(status)) = child.try_wait() {
        bail!("the broker exited while the sessions were filled ({status})");
    }
    let (took, status) = stop(&mut child, STOP_LIMIT);
    r.shutdown = Some((took, status_text(status, took)));
    r.disk = Some(disk_usage(&store));
    // Restart: the time to "listening on", read from the broker's stderr.
    let log = dir.join("recovery-restart.log");
    let (tx, rx) = mpsc::channel();
    let mut cmd = sluice("info")?;
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    let spawned = Instant::now();
    let mut child = cmd.spawn().context("cannot start the broker again")?;
    let stderr = child.stderr.take().context("no stderr")?;
    let mut file = std::fs::File::create(&log)?;
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let at = Instant::now();
            let _ = writeln!(file, "{line}");
            if line.contains("listening on") || line.contains("recovered") {
                let _ = tx.send((at, line));
            }
        }
    });
    let deadline = spawned + START_LIMIT;
    while r.listening.is_none() {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok((at, line)) => {
                if let Some(at_word) = line.find("recovered ") {
                    r.recovered = Some(line[at_word..].to_owned());
                    r.recovered_at = Some(at.duration_since(spawned));
                } else if line.contains("listening on") {
                    r.listening = Some(at.duration_since(spawned));
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = child.wait()?;
                bail!(
                    "the broker exited while it recovered ({status}); see {}",
                    log.display()
                );
            }
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "no \"listening on\" within {START_LIMIT:?} of the restart; see {}",
                log.display()
            );
        }
    }
    let at_listen = status_kib(child.id(), "VmRSS");
    std::thread::sleep(Duration::from_secs(2));
    let settled = status_kib(child.id(), "VmRSS");
    if let (Some(a), Some(b)) = (at_listen, settled) {
        r.rss_recovered = Some((a, b));
    }
    wait_listening(&mut child, port, label, Duration::from_secs(10))?;
    let args = format!(
        "--phase verify --sessions {} --per {PER} --sample {SAMPLE}",
        r.sessions
    );
    r.verify = loadgen_on(root, "recovery", port, label, &args, pin).map_err(|e| format!("{e:#}"));
    if let Ok(line) = &r.verify {
        eprintln!("xtask:   verify       {line}");
    }
    if let Ok(Some(status)) = child.try_wait() {
        r.problems
            .push(format!("the broker exited after the restart ({status})"));
    }
    let _ = stop(&mut child, STOP_LIMIT);
    Ok(())
}

/// A Sluice configuration: loopback `port`, anonymous clients, no `$SYS`,
/// queues raised as in the main table (messages and bytes), and the store
/// (durability, directory) if given.
fn sluice_config(port: u16, level: &str, store: Option<(&str, &Path)>) -> String {
    let mut text = format!(
        "[server]\nbind = [\"127.0.0.1:{port}\"]\nallow_anonymous = true\n\
         sys_interval_secs = 0\n\
         [session]\nmax_queued_messages = 1000000\nmax_queued_bytes = 0\n\
         [log]\nlevel = \"{level}\"\n"
    );
    if let Some((durability, dir)) = store {
        let _ = write!(
            text,
            "[persistence]\ndir = \"{}\"\ndurability = \"{durability}\"\n",
            dir.display()
        );
    }
    text
}

fn mosquitto_bin() -> PathBuf {
    if Path::new("/usr/sbin/mosquitto").exists() {
        PathBuf::from("/usr/sbin/mosquitto")
    } else {
        PathBuf::from("mosquitto")
    }
}

/// Starts `cmd` with its stderr in `log`.
fn spawn(cmd: &mut Command, log: &Path, label: &str) -> Result<Child> {
    let file =
        std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    cmd.stdout(Stdio::null())
        .stderr(Stdio::from(file))
        .spawn()
        .with_context(|| format!("cannot start {label}"))
}

/// SIGTERM, then SIGKILL after `limit`: how long it took to exit, and how.
fn stop(child: &mut Child, limit: Duration) -> (Duration, Option<ExitStatus>) {
    let started = Instant::now();
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    while started.elapsed() < limit {
        if let Ok(Some(status)) = child.try_wait() {
            return (started.elapsed(), Some(status));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    (started.elapsed(), None)
}

fn status_text(status: Option<ExitStatus>, took: Duration) -> String {
    match status {
        Some(s) if s.success() => "exit 0".into(),
        Some(s) => s.to_string(),
        None => format!("still running after {took:.0?}: killed"),
    }
}

/// An empty directory at `path`.
fn fresh_dir(path: &Path) -> Result<()> {
    let _ = std::fs::remove_dir_all(path);
    std::fs::create_dir_all(path).with_context(|| format!("cannot create {}", path.display()))
}

/// (allocated bytes as `du` counts them, apparent bytes, files) under
/// `path`.
fn disk_usage(path: &Path) -> (u64, u64, u64) {
    use std::os::unix::fs::MetadataExt as _;
    let mut total = (0, 0, 0);
    let Ok(entries) = std::fs::read_dir(path) else {
        return total;
    };
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            let (a, b, c) = disk_usage(&entry.path());
            total = (total.0 + a, total.1 + b, total.2 + c);
        } else {
            total = (
                total.0 + meta.blocks() * 512,
                total.1 + meta.len(),
                total.2 + 1,
            );
        }
    }
    total
}

/// The filesystem `path` is on: "ext4 on /dev/vda".
fn filesystem(path: &Path) -> String {
    Command::new("df")
        .args(["--output=fstype,source"])
        .arg(path)
        .output()
        .ok()
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            let line = text.lines().nth(1)?.to_owned();
            let mut words = line.split_whitespace();
            Some(format!("{} on {}", words.next()?, words.next()?))
        })
        .unwrap_or_else(|| "an unknown filesystem".into())
}

/// A duration as the broker's log prints it (`{:.1?}`: "3.2s",
/// "845.1ms", "12.0µs"), in seconds.
fn debug_secs(text: &str) -> Option<f64> {
    let text = text.trim();
    let (number, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = text.strip_suffix("µs") {
        (n, 1e-6)
    } else if let Some(n) = text.strip_suffix("ns") {
        (n, 1e-9)
    } else {
        (text.strip_suffix('s')?, 1.0)
    };
    number.parse::<f64>().ok().map(|n| n * scale)
}

/// The elapsed figure of the broker's "recovered ... in X; ..." line.
fn recovered_in(line: &str) -> Option<&str> {
    let at = line.find("plugin entries in ")? + "plugin entries in ".len();
    let rest = &line[at..];
    Some(rest[..rest.find(';').unwrap_or(rest.len())].trim())
}

/// A number after `word` in the recovered line: "100000 sessions".
fn recovered_count(line: &str, word: &str) -> Option<f64> {
    let at = line.find(word)?;
    line[..at].split_whitespace().last()?.parse().ok()
}

fn seconds(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 1.0 {
        format!("{s:.2} s")
    } else {
        format!("{:.0} ms", s * 1e3)
    }
}

fn mib(kib: u64) -> String {
    format!("{:.0} MiB", kib as f64 / 1024.0)
}

fn bytes(b: u64) -> String {
    if b >= 1 << 20 {
        format!("{:.1} MiB", b as f64 / f64::from(1 << 20))
    } else if b >= 1024 {
        format!("{:.1} KiB", b as f64 / 1024.0)
    } else {
        format!("{b} bytes")
    }
}

/// The "Durability" section.
pub fn section(
    o: &Outcome,
    machine: &super::report::Machine,
    command: &str,
    revision: &str,
    quick: bool,
    pin: bool,
) -> String {
    let (msgs, rounds) = if quick {
        (MSGS.0, ROUNDS.0)
    } else {
        (MSGS.1, ROUNDS.1)
    };
    let mut s = String::new();
    let _ = writeln!(s, "{HEADING}\n");
    let pinned = if pin {
        "each broker pinned to CPU 1 and the load generator to CPU 0 (Sluice's store \
         writer thread shares CPU 1 with the broker)"
    } else {
        "nothing pinned (fewer than 2 CPUs)"
    };
    let _ = writeln!(
        s,
        "Measured {} on {} CPUs ({}), {}, with `{command}`{revision}, which took {:.0} s \
         (load average {} before, {} after); stores and mosquitto's persistence \
         directory on {}; {pinned}. Goals (issue 15): \
         `interval` within 0.8× of in-memory QoS 1 throughput; `always` ahead of \
         mosquitto's in-memory QoS 1 throughput thanks to group commit; recovery of \
         the 100k sessions / 1M messages case in under 10 s.\n",
        machine.date,
        machine.cpus,
        machine.cpu_model,
        machine.kernel,
        o.took.as_secs_f64(),
        o.load.0,
        o.load.1,
        o.fs
    );
    fan_in_table(&mut s, &o.runs, msgs, rounds);
    recovery_table(&mut s, &o.recovery, quick);
    s
}

fn fan_in_table(s: &mut String, runs: &[Run], msgs: u32, rounds: u32) {
    let total = u64::from(PUBS) * u64::from(msgs);
    let rounds_text = if rounds == 1 {
        "one round".to_owned()
    } else {
        format!(
            "{rounds} rounds, the brokers interleaved; cells are the median with \
             (min–max) over the rounds"
        )
    };
    let _ = writeln!(
        s,
        "### QoS 1 fan-in to a persistent session\n\n\
         `loadgen durable`: {PUBS} publishers (MQTT 3.1.1, clean sessions) each send \
         {} {SIZE}-byte QoS 1 messages to `bench/{{i}}` ({} in all), with at most \
         {WINDOW} unacknowledged each; one subscriber with a persistent session \
         (MQTT 3.1.1, clean session 0, so that Sluice stores every delivery) holds \
         `bench/#` at QoS 1 and reads and acknowledges everything. A fresh broker \
         and an empty store for each run; {rounds_text}. Settings changed for \
         both brokers: up to 1,000,000 queued messages per client (Sluice \
         `[session] max_queued_messages = 1000000`, `max_queued_bytes = 0`; \
         mosquitto `max_queued_messages 1000000`) as in the main table, since \
         with the defaults (1,000 messages) a subscriber that falls behind \
         the publishers has messages dropped, which would count here as lost; \
         Sluice `sys_interval_secs = 0` as in the main table, and with a store \
         `[admin] bind` on a loopback port, read before and after each run for \
         `sluice_store_writes_total`; everything else default, besides the \
         settings below.\n",
        thousands(u64::from(msgs)),
        thousands(total),
    );
    let _ = writeln!(
        s,
        "| broker | settings | delivered msg/s | vs sluice in memory | acked msg/s \
         (publishers) | publisher ack p50 | ack p99 | lost (acked, not delivered) | \
         broker CPU s per 100k msgs | writes per message |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|");
    let figure = |target: Target, key: &str| -> Vec<f64> {
        runs.iter()
            .filter(|r| r.target == target)
            .filter_map(|r| r.out.as_ref().ok())
            .filter_map(|out| field(out, key).ok())
            .collect()
    };
    let base = median(&figure(Target::Memory, "msgs_per_sec"));
    let mut notes = Vec::new();
    for target in TARGETS {
        let ours: Vec<&Run> = runs.iter().filter(|r| r.target == target).collect();
        for r in &ours {
            if let Err(e) = &r.out {
                notes.push(format!(
                    "{}: run failed: {}",
                    target.label(),
                    e.replace('|', "/").replace('\n', " ")
                ));
            }
            if let Some(exit) = &r.exit {
                notes.push(format!(
                    "{}: the broker exited during the run ({exit})",
                    target.label()
                ));
            }
        }
        let stored: Vec<u64> = ours.iter().filter_map(|r| r.stored).collect();
        if let (Some(min), Some(max)) = (stored.iter().min(), stored.iter().max()) {
            notes.push(format!(
                "{}: {} on disk after the stop",
                target.label(),
                if min == max {
                    bytes(*min)
                } else {
                    format!("{}–{}", bytes(*min), bytes(*max))
                }
            ));
        }
        let rate = figure(target, "msgs_per_sec");
        let ratio = if base > 0.0 && !rate.is_empty() {
            format!("{:.2}×", median(&rate) / base)
        } else {
            "—".into()
        };
        let losses = figure(target, "loss");
        let loss: f64 = losses.iter().sum();
        let acked: f64 = figure(target, "acked").iter().sum();
        let lost = if losses.is_empty() {
            "—".into()
        } else if loss == 0.0 {
            "0".into()
        } else {
            format!("**{loss:.0}** of {acked:.0}")
        };
        let cpu: Vec<f64> = ours
            .iter()
            .filter_map(|r| {
                let out = r.out.as_ref().ok()?;
                let delivered = field(out, "delivered").ok()?;
                (delivered > 0.0).then(|| r.cpu / delivered * 1e5)
            })
            .collect();
        let writes: Vec<f64> = ours
            .iter()
            .filter_map(|r| {
                let delivered = field(r.out.as_ref().ok()?, "delivered").ok()?;
                (delivered > 0.0).then_some(r.writes? / delivered)
            })
            .collect();
        let writes = if writes.is_empty() {
            "—".into()
        } else {
            median_range(&writes, |v| format!("{v:.2}"))
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {ratio} | {} | {} | {} | {lost} | {} | {writes} |",
            target.label(),
            target.setting(),
            median_range(&rate, human),
            median_range(&figure(target, "acked_per_sec"), human),
            median_range(&figure(target, "ack_p50_us"), micros),
            median_range(&figure(target, "ack_p99_us"), micros),
            median_range(&cpu, |v| format!("{v:.2}")),
        );
        let short: f64 = figure(target, "sent")
            .iter()
            .map(|sent| total as f64 - sent)
            .sum();
        if short > 0.0 {
            notes.push(format!(
                "{}: {short:.0} messages not sent within the {SEND_LIMIT_SECS} s limit",
                target.label()
            ));
        }
        for (key, what) in [
            ("duplicates", "duplicates delivered"),
            ("unacked", "messages sent and never acknowledged"),
            ("foreign", "deliveries naming no message sent"),
            ("stray_acks", "PUBACKs for no message in flight"),
        ] {
            let n: f64 = figure(target, key).iter().sum();
            if n > 0.0 {
                notes.push(format!("{}: {n:.0} {what}", target.label()));
            }
        }
    }
    let verdict = |ok: bool| if ok { "met" } else { "**missed**" };
    let of = |target: Target, key: &str| median(&figure(target, key));
    let mut goals = Vec::new();
    for (key, what) in [
        ("msgs_per_sec", "delivered msg/s"),
        ("acked_per_sec", "acked msg/s"),
    ] {
        let interval = of(Target::Interval, key) / of(Target::Memory, key);
        let (always, mosquitto) = (of(Target::Always, key), of(Target::MosquittoMemory, key));
        if !interval.is_finite() || !(always / mosquitto).is_finite() {
            continue;
        }
        goals.push(format!(
            "on {what}, `interval` at {interval:.2}× of Sluice in memory (goal ≥ 0.8×): \
             {}; `always` at {} against mosquitto in memory at {} ({:.2}×, goal > 1×): {}",
            verdict(interval >= 0.8),
            human(always),
            human(mosquitto),
            always / mosquitto,
            verdict(always > mosquitto),
        ));
    }
    if !goals.is_empty() {
        let _ = writeln!(s, "\nGoals: {}.", goals.join("; "));
    }
    if !notes.is_empty() {
        let _ = writeln!(s, "\nNotes: {}.", notes.join("; "));
    }
    let _ = writeln!(
        s,
        "\n`delivered msg/s`: distinct messages the subscriber received over the \
         time from the first PUBLISH to the last delivery (it reads until it has \
         every acknowledged message, or nothing came for 2 s); `acked msg/s`: \
         PUBACKs the publishers received over the time to the last one. A broker \
         that acknowledges faster than it delivers builds a queue for the \
         subscriber, which it drains after the publishers are done. Ack latency: \
         from the write of a PUBLISH to the read of its PUBACK, over every \
         acknowledged message, as the load generator's single core sees it; with \
         {WINDOW} messages in flight per publisher it is mostly queueing. `lost`: \
         acknowledged to the publisher and never delivered, summed over the \
         rounds (each payload names its publisher and number). `broker CPU s`: \
         user + system time of the broker process over the run, per 100,000 \
         delivered messages. mosquitto's persistence writes its database only \
         every `autosave_interval` (1800 s by default) and at exit, never per \
         message, so its two rows do the same work; Sluice's \"none\" does not \
         wait for the store, \"interval\" waits for the batch's write() to the \
         operating system (fsync every second), \"always\" for the batch's \
         fsync; in every mode a PUBACK also goes as soon as the subscriber has \
         acknowledged the message, which is then never written (the writer lets \
         a busy batch of deliveries to connected clients gather up to 10 ms for \
         that; docs/persistence.md). `writes per message`: key writes that \
         reached fjall (`sluice_store_writes_total`) per delivered message.\n"
    );
}

fn recovery_table(s: &mut String, r: &Recovery, quick: bool) {
    let messages = u64::from(r.sessions) * u64::from(PER);
    let _ = writeln!(
        s,
        "### Recovery: {} persistent sessions, {} queued messages\n",
        thousands(u64::from(r.sessions)),
        thousands(messages)
    );
    if quick {
        let _ = writeln!(
            s,
            "**Quick run: a tenth of the goal's scale** ({} sessions and {} messages, \
             not 100,000 and 1,000,000); the goal is for the full run \
             (`cargo xtask bench --persist-only`).\n",
            thousands(u64::from(r.sessions)),
            thousands(messages)
        );
    }
    let _ = writeln!(
        s,
        "Sluice with `[persistence] durability = \"interval\"` (default), the same \
         settings as above. `loadgen recovery --phase fill`: {} MQTT 3.1.1 \
         clients with clean session 0 (`rs-{{i}}`, {CONC} at a time) each subscribe \
         to `r/{{i}}` at QoS 1 and disconnect; then {PUBS} publishers (window \
         {WINDOW}) send {PER} {SIZE}-byte QoS 1 messages to every `r/{{i}}`, each \
         one a distinct message stored for one session, all acknowledged. Then \
         SIGTERM, the store's size, and a start again: time from spawning the \
         process to its `listening on` log line, and its RSS (VmRSS). Last, \
         `--phase verify` reconnects {SAMPLE} of the sessions, spread evenly, and \
         checks that each gets its {PER} messages.\n",
        thousands(u64::from(r.sessions))
    );
    let _ = writeln!(s, "| step | figure |\n|---|---|");
    let fill = r.fill.as_ref().ok();
    let ff = |key: &str| fill.and_then(|out| field(out, key).ok());
    match (&r.fill, ff("sessions_secs"), ff("publish_secs")) {
        (Ok(_), Some(sessions), Some(publish)) => {
            let _ = writeln!(
                s,
                "| create {} sessions (CONNECT, SUBSCRIBE, DISCONNECT) | {sessions:.1} s \
                 ({} sessions/s) |",
                thousands(u64::from(r.sessions)),
                count(ff("sessions_per_sec").unwrap_or(f64::NAN))
            );
            let _ = writeln!(
                s,
                "| publish {} messages, all acknowledged | {publish:.1} s ({} msg/s; {} \
                 of {} acknowledged) |",
                thousands(messages),
                count(ff("publish_per_sec").unwrap_or(f64::NAN)),
                ff("acked").map_or("—".into(), |n| thousands(n as u64)),
                thousands(messages)
            );
        }
        (Err(e), ..) => {
            let _ = writeln!(
                s,
                "| fill | failed: {} |",
                e.replace('|', "/").replace('\n', " ")
            );
        }
        _ => {
            let _ = writeln!(s, "| fill | no figures |");
        }
    }
    if let Some(kib) = r.rss_filled {
        let _ = writeln!(s, "| broker RSS, filled, before the stop | {} |", mib(kib));
    }
    if let Some((took, how)) = &r.shutdown {
        let _ = writeln!(s, "| SIGTERM → exit | {} ({how}) |", seconds(*took));
    }
    if let Some((allocated, apparent, files)) = r.disk {
        let per = allocated as f64 / messages.max(1) as f64;
        let _ = writeln!(
            s,
            "| store on disk after the stop (`du`) | {} ({} apparent, {files} files) → \
             **{per:.0} bytes per queued message** ({:.0} apparent) |",
            bytes(allocated),
            bytes(apparent),
            apparent as f64 / messages.max(1) as f64
        );
    }
    let in_log = r.recovered.as_deref().and_then(recovered_in);
    if let Some(listening) = r.listening {
        let goal = if quick {
            "the goal (< 10 s) is for 100k/1M".to_owned()
        } else {
            format!(
                "goal < 10 s: {}",
                if listening < Duration::from_secs(10) {
                    "met"
                } else {
                    "**missed**"
                }
            )
        };
        let _ = writeln!(
            s,
            "| restart: process start → `listening on` | **{}** ({goal}) |",
            seconds(listening)
        );
    }
    if let Some(at) = r.recovered_at {
        let _ = writeln!(
            s,
            "| of which: process start → the `recovered` line (store opened and read, \
             sessions restored) | {} |",
            seconds(at)
        );
    }
    if let Some(text) = in_log {
        let parsed = debug_secs(text).map_or(String::new(), |v| format!(" = {v:.2} s"));
        let _ = writeln!(
            s,
            "| of which: reading the store (the `recovered` line's own figure) | \
             {text}{parsed} |"
        );
    }
    if let Some((at, later)) = r.rss_recovered {
        let _ = writeln!(
            s,
            "| broker RSS after recovery: at `listening on` / 2 s later | {} / {} |",
            mib(at),
            mib(later)
        );
    }
    match &r.verify {
        Ok(out) => {
            let f = |key: &str| field(out, key).unwrap_or(f64::NAN);
            let mut text = format!(
                "{} of {} sessions got all {PER} messages ({} present in CONNACK; {} \
                 messages received, {} missing",
                count(f("complete")),
                count(f("sampled")),
                count(f("present")),
                count(f("received")),
                count(f("missing")),
            );
            for (key, what) in [("duplicates", "duplicates"), ("wrong", "wrong")] {
                if f(key) > 0.0 {
                    let _ = write!(text, ", {} {what}", count(f(key)));
                }
            }
            let _ = writeln!(s, "| sample of sessions after the restart | {text}) |");
        }
        Err(e) => {
            let _ = writeln!(
                s,
                "| sample of sessions after the restart | failed: {} |",
                e.replace('|', "/").replace('\n', " ")
            );
        }
    }
    let _ = writeln!(s, "| the whole scenario | {} |", seconds(r.took));
    if let Some(line) = &r.recovered {
        let expected_ok = recovered_count(line, "sessions,") == Some(f64::from(r.sessions))
            && recovered_count(line, "queued") == Some(messages as f64);
        let _ = writeln!(
            s,
            "\nThe broker's line: `{line}`{}",
            if expected_ok {
                "."
            } else {
                " — **not the sessions and queued messages created**."
            }
        );
    }
    if !r.problems.is_empty() {
        let _ = writeln!(s, "\nProblems: {}.", r.problems.join("; "));
    }
    s.push('\n');
}

#[cfg(test)]
mod tests {
    use super::{debug_secs, recovered_count, recovered_in, thousands};

    #[test]
    fn recovered_line() {
        let line = "recovered 100000 sessions, 100000 subscriptions, 1000000 queued and 0 \
                    in-flight deliveries of 1000000 messages, 0 incoming QoS 2 ids, 0 \
                    retained messages, 0 plugin entries in 3.2s; 0 damaged and 0 orphaned \
                    entries dropped; 0 sessions had expired";
        assert_eq!(recovered_in(line), Some("3.2s"));
        assert_eq!(recovered_count(line, "sessions,"), Some(100_000.0));
        assert_eq!(recovered_count(line, "queued"), Some(1_000_000.0));
        assert_eq!(debug_secs("3.2s"), Some(3.2));
        assert_eq!(debug_secs("845.5ms"), Some(0.8455));
        assert_eq!(debug_secs("12.0µs"), Some(12e-6));
        assert_eq!(debug_secs("soon"), None);
        assert_eq!(thousands(1_000_000), "1,000,000");
        assert_eq!(thousands(10_000), "10,000");
        assert_eq!(thousands(999), "999");
    }
}
