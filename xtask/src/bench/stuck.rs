//! The stuck-plugin runs of `cargo xtask bench`: Sluice with the `spinner`
//! test fixture as its `auth-on-publish` plugin, unrelated clients doing
//! QoS 1 round trips without and with clients that keep the plugin spinning
//! (`loadgen stuckplugin`), and the "Stuck plugin" section of
//! `BENCHMARKS.md`.
//!
//! `cargo xtask bench --stuck-only` runs only these and replaces that
//! section of an existing `BENCHMARKS.md`, leaving the rest as it is.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Result;

use super::soak::{count, micros, millis};
use super::{Broker, field, loadgen, start, stop};

/// Seconds per run (quick, full).
const SECS: (u32, u32) = (8, 20);
/// Clients keeping the plugin spinning in the second run.
const STUCK: u32 = 4;
/// Unrelated clients and the messages per second each sends.
const CLIENTS: u32 = 4;
const RATE: u32 = 100;
/// How long the plugin spins for a message under `spin/`.
pub const SPIN_MS: u32 = 250;
/// The plugins' deadline (Sluice's default).
pub const DEADLINE_MS: u32 = 100;
/// The spinner's fuel per call: enough for seconds of spinning, so that the
/// deadline, not fuel, is what can end a call (with the default 50,000,000
/// it runs out after about 40 ms of spinning here).
pub const SPINNER_FUEL: u64 = 10_000_000_000;

/// The section's heading, which `report::splice` looks for.
pub const HEADING: &str = "## Stuck plugin";

/// One run.
pub struct Run {
    stuck: u32,
    /// loadgen's JSON line, or why there is none.
    out: Result<String, String>,
    /// How the broker ended, if it did before it was stopped.
    exit: Option<String>,
    /// The broker's log (warnings and errors).
    log: PathBuf,
}

/// Runs the scenario without and with stuck clients, each on a fresh
/// broker.
pub fn run(root: &Path, quick: bool, pin: bool) -> Result<Vec<Run>> {
    let dir = root.join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let secs = if quick { SECS.0 } else { SECS.1 };
    let broker = Broker::SluiceSpinner;
    let mut runs = Vec::new();
    for stuck in [0, STUCK] {
        eprintln!(
            "xtask: stuck plugin ({secs} s): {}, {stuck} stuck clients",
            broker.label()
        );
        let log = dir.join(format!("stuck-{}-{stuck}.log", broker.port()));
        let mut child = start(root, &dir, broker, pin, Some(&log))?;
        let args = format!(
            "--secs {secs} --stuck {stuck} --clients {CLIENTS} --rate {RATE} \
             --late-ms {DEADLINE_MS}"
        );
        let out = loadgen(root, "stuckplugin", broker, &args, child.id(), pin)
            .map_err(|e| format!("{e:#}"));
        let exit = match child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            _ => None,
        };
        stop(&mut child);
        runs.push(Run {
            stuck,
            out,
            exit,
            log,
        });
    }
    Ok(runs)
}

/// How many lines of the broker's log contain `text`.
fn log_lines(log: &Path, text: &str) -> usize {
    std::fs::read_to_string(log)
        .map(|s| s.lines().filter(|l| l.contains(text)).count())
        .unwrap_or(0)
}

/// The "Stuck plugin" section.
pub fn section(
    runs: &[Run],
    date: &str,
    command: &str,
    revision: &str,
    quick: bool,
    pin: bool,
    cpus: usize,
) -> String {
    let secs = if quick { SECS.0 } else { SECS.1 };
    let instances = if pin { 1 } else { cpus };
    let mut s = String::new();
    let _ = writeln!(s, "{HEADING}\n");
    let _ = writeln!(
        s,
        "Measured {date} with `{command}`{revision}: {secs} s per run, a fresh broker \
         for each, pinned as above.\n"
    );
    let _ = writeln!(
        s,
        "Sluice with one plugin, `tests/plugins/spinner` on `auth-on-publish` and \
         `auth-on-publish-m5`: a message to a topic under `spin/` makes it spin \
         {SPIN_MS} ms by its own clock (the WASI monotonic clock) and then accept; \
         any other topic it accepts at once, without `cache-secs`, so every message \
         is a plugin call. Settings: `[plugins] deadline_ms = {DEADLINE_MS}` (the \
         default) and `instances = 0` (the default: one per CPU the broker may run \
         on, so {instances} here); `[plugin.spinner] fuel = {SPINNER_FUEL}`, so \
         that the deadline, not fuel, is what can end its calls (with the default \
         50,000,000 a spin runs out of fuel after about 40 ms); everything else \
         default (`on_failure = \"deny\"`, the circuit breaker after 5 \
         consecutive failures for 10 s, doubling).\n"
    );
    let _ = writeln!(
        s,
        "Unrelated clients: {CLIENTS} MQTT 5 clients, each subscribed to its own \
         topic and publishing QoS 1 to it at {RATE} msg/s; a round trip is from \
         the PUBLISH to the message coming back. A client with 20 messages \
         unacknowledged sends nothing until PUBACKs come, then catches up: `sent` \
         below `due` is how far behind the broker held it. Stuck \
         clients: {STUCK} MQTT 5 clients, each publishing QoS 1 to its own topic \
         under `spin/` and waiting for the PUBACK before the next. Goal (issue \
         14): the unrelated p99 under 50 ms with the stuck clients, and no stuck \
         call accepted after the deadline.\n"
    );
    let _ = writeln!(
        s,
        "| stuck clients | unrelated round trips / sent (of due) | p50 | p99 | max | \
         refused | lost | stuck calls | accepted | accepted after ≥ {DEADLINE_MS} ms | \
         refused | stuck: time to answer p50 / max | broker |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut notes = Vec::new();
    for r in runs {
        let out = match &r.out {
            Ok(out) => out,
            Err(e) => {
                let _ = writeln!(
                    s,
                    "| {} | — | — | — | — | — | — | — | — | — | — | — | run failed: {} |",
                    r.stuck,
                    e.replace('|', "/").replace('\n', " ")
                );
                continue;
            }
        };
        let f = |key: &str| field(out, key).unwrap_or(f64::NAN);
        let mut fate = match &r.exit {
            Some(exit) => format!("exited during the run ({exit})"),
            None => "ran through".to_owned(),
        };
        let errors = f("rt_errors");
        if errors > 0.0 {
            fate = format!("{fate}; {errors} unrelated connections failed");
        }
        let trips = log_lines(&r.log, "plugin disabled for");
        if trips > 0 {
            fate = format!("{fate}; breaker tripped {trips}×");
        }
        let (calls, accepted, late, refused, times) = if r.stuck == 0 {
            ("—".into(), "—".into(), "—".into(), "—".into(), "—".into())
        } else {
            let mut refused = count(f("stuck_refused"));
            if f("stuck_code_87") == f("stuck_refused") && f("stuck_refused") > 0.0 {
                refused = format!("{refused} (0x87)");
            }
            (
                count(f("stuck_calls")),
                count(f("stuck_accepted")),
                count(f("stuck_accepted_late")),
                refused,
                format!(
                    "{} / {}",
                    millis(f("stuck_p50_ms")),
                    millis(f("stuck_max_ms"))
                ),
            )
        };
        let _ = writeln!(
            s,
            "| {} | {} / {} ({}) | {} | {} | {} | {} | {} | {calls} | {accepted} | {late} | \
             {refused} | {times} | {fate} |",
            r.stuck,
            count(f("rt_received")),
            count(f("rt_sent")),
            count(f("rt_target")),
            micros(f("rt_p50_us")),
            micros(f("rt_p99_us")),
            micros(f("rt_max_us")),
            count(f("rt_refused")),
            count(f("rt_lost")),
        );
        if r.stuck > 0 {
            let mut note = format!(
                "with {} stuck clients, accepted calls took {} / {} (p50 / max), \
                 refused ones {} / {}",
                r.stuck,
                millis(f("stuck_accepted_p50_ms")),
                millis(f("stuck_accepted_max_ms")),
                millis(f("stuck_refused_p50_ms")),
                millis(f("stuck_refused_max_ms")),
            );
            let other = f("stuck_other_code");
            if other > 0.0 {
                let _ = write!(
                    note,
                    "; refusal codes other than 0x87 seen (e.g. 0x{:02X})",
                    other as u8
                );
            }
            for (key, what) in [
                ("stuck_disconnects", "connections closed by the broker"),
                ("stuck_timeouts", "calls unanswered after 10 s"),
                ("stuck_connect_failures", "failed reconnects"),
            ] {
                if f(key) > 0.0 {
                    let _ = write!(note, "; {} {what}", count(f(key)));
                }
            }
            notes.push(note);
        }
    }
    if !notes.is_empty() {
        let _ = writeln!(s, "\nStuck calls: {}.", notes.join("; "));
    }
    let _ = writeln!(
        s,
        "\n`refused`: PUBACK with a reason code of 0x80 or more; `lost`: accepted and \
         not back when the run ended (2 s without a message after the sending time, \
         5 s at most); a stuck call's time runs from its PUBLISH to its PUBACK. \
         `breaker tripped`: lines `plugin disabled for …` in the broker's log \
         (a late success closes the breaker again).\n"
    );
    s
}
