//! The delivery-time ACL of `cargo xtask bench --acl-deliver-only`: fan-out
//! (1 publisher → 8 subscribers) on Sluice without plugins and with the
//! topic-acl example plugin under the rules `cargo xtask run` ships, whose
//! `auth-on-deliver` read check runs for every delivery; its subscribers
//! on the exact topic, or on `#` (a filter that only overlaps the denied
//! `private/#`, whose messages are what the check is for). Writes the
//! "Delivery-time ACL" section of `BENCHMARKS.md`.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;

use super::report::{human, median, median_range};
use super::{Broker, field, loadgen, start, stop};

/// The section's heading, which `report::splice` looks for.
pub const HEADING: &str = "## Delivery-time ACL";

/// Rounds, interleaved.
const ROUNDS: usize = 3;
/// Subscribers, and messages the publisher sends (quick, full).
const SUBS: usize = 8;
const MSGS: (usize, usize) = (25_000, 100_000);

/// The runs: (broker, subscribers' filter).
const RUNS: [(Broker, &str); 3] = [
    (Broker::Sluice, "bench/out"),
    (Broker::SluiceAclRead, "bench/out"),
    (Broker::SluiceAclRead, "#"),
];

/// Deliveries per second of each run, one value per round.
pub type Outcome = Vec<Vec<f64>>;

pub fn run(root: &Path, quick: bool, pin: bool) -> Result<Outcome> {
    let dir = root.join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let msgs = if quick { MSGS.0 } else { MSGS.1 };
    let mut outcome = vec![Vec::new(); RUNS.len()];
    for round in 1..=ROUNDS {
        for (i, (broker, filter)) in RUNS.iter().enumerate() {
            eprintln!(
                "xtask: round {round}/{ROUNDS}: {}, subscribers on {filter}",
                broker.label()
            );
            let mut child = start(root, &dir, *broker, pin, None)?;
            let args = format!("--subs {SUBS} --msgs {msgs} --size 64 --qos 0 --filter {filter}");
            let out = loadgen(root, "fanout", *broker, &args, child.id(), pin);
            stop(&mut child);
            let out = out?;
            if field(&out, "loss")? > 0.0 {
                anyhow::bail!("{} lost messages: {out}", broker.label());
            }
            outcome[i].push(field(&out, "msgs_per_sec")?);
        }
    }
    Ok(outcome)
}

/// The "Delivery-time ACL" section.
pub fn section(
    outcome: &Outcome,
    date: &str,
    command: &str,
    revision: &str,
    quick: bool,
) -> String {
    let msgs = if quick { MSGS.0 } else { MSGS.1 };
    let base = outcome.first().map_or(f64::NAN, |v| median(v));
    let mut s = String::new();
    let _ = writeln!(s, "{HEADING}\n");
    let _ = writeln!(
        s,
        "Measured {date} with `{command}`{revision}: fan-out, 1 publisher → {SUBS} \
         subscribers, {msgs} messages of 64 bytes at QoS 0, {ROUNDS} interleaved \
         rounds (median, min–max), a fresh broker for each, pinned as above.\n"
    );
    let _ = writeln!(
        s,
        "With topic-acl loaded under the rules of `config/sluice.toml` (`publish = \
         \"#\"`, `subscribe = \"#, $SYS/#\"`, both denying `private/#`), every \
         delivery passes its `auth-on-deliver` read check: `#` only overlaps \
         `private/#`, so it is granted and checked per message, and the exact \
         topic the same way. The plugin's acceptances carry `cache-secs`, so each \
         subscriber's connection calls it once per topic and then reuses the \
         answer (as the publisher's `auth-on-publish` acceptance is reused); what \
         is left is the delivery hooks' path in the broker.\n"
    );
    let _ = writeln!(
        s,
        "| broker | subscribers on | deliveries/s | ratio | per delivery |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|");
    for ((broker, filter), values) in RUNS.iter().zip(outcome) {
        let m = median(values);
        // The time a delivery costs on top of one without plugins.
        let extra = if *broker == Broker::Sluice {
            "—".to_owned()
        } else {
            format!("+{:.2} µs", (1.0 / m - 1.0 / base) * 1e6)
        };
        let _ = writeln!(
            s,
            "| {} | `{filter}` | {} | {:.2}× | {extra} |",
            broker.label(),
            median_range(values, human),
            m / base,
        );
    }
    let _ = writeln!(
        s,
        "\n`per delivery`: 1 / rate with the plugin minus 1 / rate without it, \
         the broker's extra time per delivered message on its one core.\n"
    );
    s
}
