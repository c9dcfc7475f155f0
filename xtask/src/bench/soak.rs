//! The soak runs of `cargo xtask bench`: normal clients for a fixed time
//! against Sluice and mosquitto, each with its default settings, without
//! and with hostile clients beside them (`loadgen soak`), and the
//! "Soak: hostile clients" section of `BENCHMARKS.md`.
//!
//! `cargo xtask bench --soak-only` runs only these and replaces that
//! section of an existing `BENCHMARKS.md`, leaving the rest as it is.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;

use super::{Broker, field, loadgen, start, stop};

/// Seconds per run (quick, full).
const SECS: (u32, u32) = (10, 30);
/// The load generator kills a broker whose RSS passes this, so that one
/// that cannot bound its memory does not take the machine with it.
const RSS_LIMIT_MB: u32 = 3072;
/// Normal clients: publisher → subscriber pairs, messages per second per
/// publisher.
const PAIRS: u32 = 4;
const RATE: u32 = 1000;

/// The section's heading, which `report::splice` looks for.
pub const HEADING: &str = "## Soak: hostile clients";

/// One soak run.
pub struct Run {
    broker: Broker,
    hostile: bool,
    /// loadgen's JSON line, or why there is none.
    out: Result<String, String>,
    /// How the broker ended, if it did before it was stopped.
    exit: Option<String>,
}

/// Runs the soak against Sluice and mosquitto, without hostile clients and
/// with them, each on a fresh broker.
pub fn run(root: &Path, quick: bool, pin: bool) -> Result<Vec<Run>> {
    let dir = root.join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let secs = if quick { SECS.0 } else { SECS.1 };
    let mut runs = Vec::new();
    for broker in [Broker::Sluice, Broker::Mosquitto] {
        for hostile in [false, true] {
            let what = if hostile { "hostile" } else { "calm" };
            eprintln!("xtask: soak ({secs} s): {}, {what}", broker.label());
            let log = dir.join(format!("soak-{}-{what}.log", broker.port()));
            let mut child = start(root, &dir, broker, pin, Some(&log))?;
            let args = format!(
                "--secs {secs} --pairs {PAIRS} --rate {RATE} --size 64 --hostile {} \
                 --rss-limit-mb {RSS_LIMIT_MB}",
                u8::from(hostile)
            );
            let out =
                loadgen(root, "soak", broker, &args, child.id(), pin).map_err(|e| format!("{e:#}"));
            let exit = match child.try_wait() {
                Ok(Some(status)) => Some(status.to_string()),
                _ => None,
            };
            stop(&mut child);
            runs.push(Run {
                broker,
                hostile,
                out,
                exit,
            });
        }
    }
    Ok(runs)
}

/// The "Soak: hostile clients" section.
pub fn section(root: &Path, runs: &[Run], date: &str, command: &str, quick: bool) -> String {
    let secs = if quick { SECS.0 } else { SECS.1 };
    let revision = super::report::revision(root);
    let mut s = String::new();
    let _ = writeln!(s, "{HEADING}\n");
    let _ = writeln!(
        s,
        "Measured {date} with `{command}`{revision}: {secs} s per run, a fresh broker for each, \
         Sluice and mosquitto with their default settings (not the raised queue limit \
         above), pinned as above.\n"
    );
    let _ = writeln!(
        s,
        "Normal clients: {PAIRS} publisher → subscriber pairs, QoS 1, {RATE} msg/s \
         each, 64-byte payloads carrying their send time. Hostile clients beside \
         them (`loadgen soak --hostile 1`, bounded in count): 2,000 retained \
         messages, then SUBSCRIBEs of 5,000 × `amp/#` every 2 s from clients that \
         never read; SUBSCRIBEs and retained PUBLISHes 3,000 levels deep; 4 \
         subscribers to `#` that never read, each taken over every 2 s by a new one, \
         under a flood of 16 KB messages (200/s); 300 connections that never send \
         CONNECT and 100 that send one byte a second; CONNECT → close loops (1,000/s \
         with persistent sessions, 200/s in MQTT 5 with delayed Wills); malformed \
         packets. The load generator kills a broker whose RSS passes \
         {RSS_LIMIT_MB} MB.\n"
    );
    let _ = writeln!(
        s,
        "| broker | hostile clients | normal msg/s (of {}) | p50 | p99 | max | lost | \
         broker peak RSS | takeover → CONNACK: p50 / max | broker |",
        PAIRS * RATE
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|");
    let mut notes = Vec::new();
    for r in runs {
        let hostile = if r.hostile { "yes" } else { "none" };
        let out = match &r.out {
            Ok(out) => out,
            Err(e) => {
                let _ = writeln!(
                    s,
                    "| {} | {hostile} | — | — | — | — | — | — | — | run failed: {} |",
                    r.broker.label(),
                    e.replace('|', "/").replace('\n', " ")
                );
                continue;
            }
        };
        let f = |key: &str| field(out, key).unwrap_or(f64::NAN);
        let takeover = if r.hostile {
            let failed = match f("takeover_failures") {
                0.0 => "none".to_owned(),
                n => n.to_string(),
            };
            format!(
                "{} / {} ({failed} failed)",
                millis(f("takeover_p50_ms")),
                millis(f("takeover_max_ms")),
            )
        } else {
            "—".into()
        };
        let mut fate = if f("killed") > 0.0 {
            format!(
                "killed at {} after {:.1} s",
                memory(f("killed_at_kib")),
                f("killed_after_secs")
            )
        } else if f("broker_gone") > 0.0 {
            "exited during the run".to_owned()
        } else {
            "ran through".to_owned()
        };
        if let Some(exit) = &r.exit
            && f("killed") == 0.0
        {
            fate = format!("{fate} ({exit})");
        }
        let errors = f("normal_errors");
        if errors > 0.0 {
            fate = format!("{fate}; {errors} normal connections failed");
        }
        let _ = writeln!(
            s,
            "| {} | {hostile} | {} | {} | {} | {} | {} | {} | {takeover} | {fate} |",
            r.broker.label(),
            count(f("msgs_per_sec")),
            micros(f("p50_us")),
            micros(f("p99_us")),
            micros(f("max_us")),
            lost(f("loss"), f("sent")),
            memory(f("peak_rss_kib")),
        );
        if r.hostile {
            notes.push(format!(
                "{}: {} hostile connections, {} amplification SUBSCRIBEs, {} deep \
                 packets, {} takeovers, {} flood CONNECTs and {} with delayed Wills \
                 accepted, {} CONNECTs refused, {} slow connections closed by the \
                 broker, {} of {} malformed inputs closed within 1 s",
                r.broker.label(),
                f("hostile_conns"),
                f("amp_subscribes"),
                f("deep_packets"),
                f("takeovers"),
                f("flood_connects"),
                f("will_connects"),
                f("connects_refused"),
                f("slow_closed"),
                f("garbage_closed"),
                f("garbage"),
            ));
        }
    }
    if !notes.is_empty() {
        let _ = writeln!(s, "\nWhat the hostile clients did: {}.", notes.join("; "));
    }
    let _ = writeln!(
        s,
        "\nLatency is end to end, from the publisher's write to the subscriber's \
         read; the load generator's one core also runs the hostile clients, so \
         part of the difference with them is the load generator's. `lost`: sent \
         and not received when the run ended (2 s without a message after the \
         sending time, 10 s at most).\n"
    );
    s
}

pub(super) fn count(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.0}")
    } else {
        "—".into()
    }
}

pub(super) fn micros(us: f64) -> String {
    if !us.is_finite() {
        "—".into()
    } else if us >= 1e6 {
        format!("{:.2} s", us / 1e6)
    } else if us >= 1e3 {
        format!("{:.1} ms", us / 1e3)
    } else {
        format!("{us:.0} µs")
    }
}

pub(super) fn millis(ms: f64) -> String {
    micros(ms * 1000.0)
}

fn memory(kib: f64) -> String {
    if !kib.is_finite() || kib <= 0.0 {
        "—".into()
    } else if kib >= 1024.0 * 1024.0 {
        format!("{:.2} GB", kib / 1048576.0)
    } else {
        format!("{:.0} MB", kib / 1024.0)
    }
}

fn lost(loss: f64, sent: f64) -> String {
    if !loss.is_finite() {
        "—".into()
    } else if loss == 0.0 {
        "0".into()
    } else {
        format!("{loss:.0} of {sent:.0}")
    }
}
