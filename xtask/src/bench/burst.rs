//! The burst of `cargo xtask bench` (and `--burst-only`): 4 publishers
//! send 50,000 QoS 0 messages of 64 bytes each as fast as the socket takes
//! them to one subscriber, every broker with its default settings (queues
//! of 1,000 messages; rumqttd has none, see `rumqttd.rs`): Sluice with its
//! default overload policy (backpressure), Sluice with `overload = "drop"`,
//! mosquitto and rumqttd. Counts what the subscriber received, the rate and
//! the broker's peak RSS.
//! Writes the "Burst with default settings" section of `BENCHMARKS.md`.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;

use super::report::{human, median_range, thousands};
use super::{Broker, field, loadgen, rumqttd, start, status_kib, stop};

/// The section's heading, which `report::splice` looks for.
pub const HEADING: &str = "## Burst with default settings";

/// Rounds, interleaved.
const ROUNDS: usize = 3;
const PUBS: usize = 4;
/// Messages per publisher.
const MSGS: usize = 50_000;

const BROKERS: [Broker; 4] = [
    Broker::Sluice,
    Broker::SluiceDrop,
    Broker::Mosquitto,
    Broker::Rumqttd,
];

/// One broker's rounds.
#[derive(Default)]
pub struct Runs {
    delivered: Vec<f64>,
    rate: Vec<f64>,
    /// RSS once listening and the peak, MiB.
    rss_start: Vec<f64>,
    rss_peak: Vec<f64>,
}

pub type Outcome = Vec<Runs>;

pub fn run(root: &Path, pin: bool) -> Result<Outcome> {
    let dir = root.join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let mut outcome: Outcome = BROKERS.iter().map(|_| Runs::default()).collect();
    for round in 1..=ROUNDS {
        for (broker, runs) in BROKERS.iter().zip(&mut outcome) {
            eprintln!("xtask: burst round {round}/{ROUNDS}: {}", broker.label());
            let log = dir.join(format!("burst-{}.log", broker.port()));
            let mut child = start(root, &dir, *broker, pin, Some(&log))?;
            let mib = |key| status_kib(child.id(), key).map_or(f64::NAN, |k| k as f64 / 1024.0);
            let rss_start = mib("VmRSS");
            let args = format!("--pubs {PUBS} --msgs {MSGS} --size 64 --qos 0");
            let out = loadgen(root, "fanin", *broker, &args, child.id(), pin);
            let rss_peak = mib("VmHWM");
            stop(&mut child);
            let out = out?;
            runs.delivered.push(field(&out, "delivered")?);
            runs.rate.push(field(&out, "msgs_per_sec")?);
            runs.rss_start.push(rss_start);
            runs.rss_peak.push(rss_peak);
        }
    }
    Ok(outcome)
}

/// The "Burst with default settings" section.
pub fn section(outcome: &Outcome, date: &str, command: &str, revision: &str) -> String {
    let total = (PUBS * MSGS) as u64;
    let mut s = String::new();
    let _ = writeln!(s, "{HEADING}\n");
    let _ = writeln!(
        s,
        "Measured {date} with `{command}`{revision}: {PUBS} publishers × {} QoS 0 \
         messages of 64 bytes → 1 subscriber (`loadgen fanin`: each publisher writes \
         100 messages per write, with a PINGREQ round trip every 2,000), {ROUNDS} \
         interleaved rounds (median, min–max), a fresh broker for each, pinned as \
         above. Every broker keeps its default settings: queues of 1,000 messages \
         per client for Sluice and mosquitto; Sluice's default `overload = \
         \"backpressure\"` stops reading from the publishers while the \
         subscriber's queue is above half of it (docs/config.md, \"Overload\"); \
         with `overload = \"drop\"` the queue drops what does not fit, as VerneMQ \
         does; mosquitto drops QoS 0 messages past its queue limit too, but its \
         single thread reads the publishers no faster than it writes to the \
         subscriber. rumqttd {} runs the settings it ships (as in the main \
         table, its clients' keep alive 60 s): {}\n",
        thousands(MSGS as u64),
        crate::tools::RUMQTTD,
        rumqttd::OVERLOAD
    );
    let _ = writeln!(
        s,
        "| broker | delivered of {} | loss | msg/s | RSS at start (MiB) | peak RSS (MiB) |",
        thousands(total)
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|");
    for (broker, runs) in BROKERS.iter().zip(outcome) {
        let lost: f64 = runs.delivered.iter().map(|d| total as f64 - d).sum();
        let rounds = runs.delivered.len().max(1) as f64;
        let _ = writeln!(
            s,
            "| {} | {} | {:.1} % | {} | {} | {} |",
            broker.label(),
            median_range(&runs.delivered, |v| thousands(v as u64)),
            100.0 * lost / (total as f64 * rounds),
            median_range(&runs.rate, human),
            median_range(&runs.rss_start, |v| format!("{v:.1}")),
            median_range(&runs.rss_peak, |v| format!("{v:.1}")),
        );
    }
    let _ = writeln!(
        s,
        "\n`loss`: messages not delivered over all rounds. The subscriber stops \
         counting after 2 s without a message.\n"
    );
    s
}
