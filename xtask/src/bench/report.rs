//! Turning measurements into the `BENCHMARKS.md` tables, and the criterion
//! micro-benchmarks with their summary.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

use super::{Broker, COMPARED, Losses, Results, SCENARIOS, rumqttd};
use crate::{cargo, sh};

/// What the numbers were measured on.
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub kernel: String,
    pub date: String,
}

impl Machine {
    pub fn probe() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
            .unwrap_or_else(|| "unknown".into());
        let output = |cmd: &str, args: &[&str]| -> String {
            Command::new(cmd)
                .args(args)
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
                .unwrap_or_default()
        };
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            kernel: output("uname", &["-sr"]),
            date: output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        }
    }
}

/// What a section measured, for sections that may be newer than the rest
/// of the file: " (Sluice at `REV`)", or nothing outside a git checkout.
pub fn revision(root: &Path) -> String {
    Command::new("git")
        .arg("-C")
        .arg(root)
        .args(["describe", "--always", "--dirty"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            format!(
                " (Sluice at `{}`)",
                String::from_utf8_lossy(&o.stdout).trim()
            )
        })
        .unwrap_or_default()
}

/// The 1/5/15-minute load averages.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

pub(super) fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

pub(super) fn human(v: f64) -> String {
    if !v.is_finite() {
        "—".into()
    } else if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn cell(values: Option<&Vec<f64>>) -> String {
    match values {
        None => "—".into(),
        Some(v) if v.is_empty() => "—".into(),
        Some(v) => {
            let min = v.iter().copied().fold(f64::INFINITY, f64::min);
            let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            format!("{} ({}–{})", human(median(v)), human(min), human(max))
        }
    }
}

/// The whole `BENCHMARKS.md`.
#[expect(
    clippy::too_many_arguments,
    reason = "one argument per part of the file"
)]
pub fn markdown(
    machine: &Machine,
    command: &str,
    load: (&str, &str),
    took: Duration,
    results: &Results,
    losses: &Losses,
    soak: Option<&str>,
    stuck: Option<&str>,
    persist: Option<&str>,
    micro: Option<&Micro>,
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Benchmarks\n");
    let _ = writeln!(
        s,
        "Measured {} on {} CPUs ({}), {}, with `{command}` \
         (took {:.0} s; load average {} before, {} after).\n",
        machine.date,
        machine.cpus,
        machine.cpu_model,
        machine.kernel,
        took.as_secs_f64(),
        load.0,
        load.1
    );
    if !results.is_empty() {
        let _ = writeln!(
            s,
            "Each broker runs alone, pinned to CPU 1; the load generator \
             (`xtask/src/bin/loadgen`) is pinned to CPU 0. Brokers restart every \
             round and the rounds interleave (Sluice, mosquitto, rumqttd, Sluice \
             with a 3-plugin wasm authentication chain, Sluice with the topic-acl \
             plugin on every publish, cached and uncached); cells are the median \
             of 3 rounds with (min–max). Sluice and mosquitto queue up to \
             1,000,000 messages per client; mosquitto 2 from Debian runs with \
             persistence off; rumqttd {} from crates.io (built by the harness \
             into `target/tools`): {} Messages are 64 bytes, QoS 0 unless \
             stated.\n",
            crate::tools::RUMQTTD,
            rumqttd::SETTINGS
        );
        let _ = writeln!(
            s,
            "| scenario | figure | sluice | sluice + chain | mosquitto | rumqttd \
             | sluice / mosquitto | sluice / rumqttd |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
        for sc in SCENARIOS {
            for (key, label, higher) in sc.figures {
                let get = |b: Broker| results.get(&(b, sc.name, *key));
                if get(Broker::Sluice).is_none() {
                    continue;
                }
                let ratio = |peer: Broker| match (get(Broker::Sluice), get(peer)) {
                    (Some(a), Some(b)) if median(b) > 0.0 => {
                        let r = median(a) / median(b);
                        format!("{r:.2}×{}", if *higher { "" } else { " (lower is better)" })
                    }
                    _ => "—".into(),
                };
                let _ = writeln!(
                    s,
                    "| {} | {label} | {} | {} | {} | {} | {} | {} |",
                    sc.name,
                    cell(get(Broker::Sluice)),
                    cell(get(Broker::SluiceChain)),
                    cell(get(Broker::Mosquitto)),
                    cell(get(Broker::Rumqttd)),
                    ratio(Broker::Mosquitto),
                    ratio(Broker::Rumqttd),
                );
            }
        }
        hook_cost(&mut s, results);
        let _ = writeln!(s, "\n{}\n", lost(losses));
        let _ = writeln!(
            s,
            "What each broker does with a subscriber slower than its publishers \
             (with the limits above no scenario should reach a drop; the loss \
             line says whether one did): \
             Sluice with its default `overload = \"backpressure\"` stops reading \
             from the publishers while the subscriber's queue is above half of \
             its limit, for at most `overload_wait_ms` per episode, then drops \
             for that subscriber alone (docs/config.md, \"Overload\"); mosquitto \
             drops QoS 0 messages past `max_queued_messages`, and its single \
             thread reads the publishers no faster than it writes to the \
             subscribers. {}\n",
            rumqttd::OVERLOAD
        );
        let _ = writeln!(
            s,
            "Scenarios (`loadgen SCENARIO`): `idle` opens 10,000 connections that \
             only CONNECT and reads the broker's RSS before and after; `fanin` is 4 \
             publishers → 1 subscriber; `fanout` 1 → 8; `pairs` 4 independent \
             pairs; `shared` 4 publishers → a 4-member shared subscription; \
             `connect-N` is N clients in a CONNECT → CONNACK → DISCONNECT loop \
             (the second figure divides connects by the broker's CPU time, since a \
             single load-generator core limits the rate itself); `latency` sends \
             10,000 msg/s from one publisher to one subscriber with send times in \
             the payloads.\n"
        );
    }
    if let Some(soak) = soak {
        s.push_str(soak);
    }
    if let Some(stuck) = stuck {
        s.push_str(stuck);
    }
    if let Some(persist) = persist {
        s.push_str(persist);
    }
    if let Some(m) = micro {
        let _ = writeln!(s, "## Micro-benchmarks (criterion)\n\n{}", m.table);
        let _ = writeln!(s, "## Hot reload: write → active\n\n{}", m.reload);
    }
    s
}

/// "Messages lost over all rounds": each compared broker's losses by
/// scenario, or none, then those of any other broker that lost some; and
/// the messages delivered more than once.
fn lost(losses: &Losses) -> String {
    let mut brokers = COMPARED.to_vec();
    for &(b, _) in losses.keys() {
        if !brokers.contains(&b) {
            brokers.push(b);
        }
    }
    let parts: Vec<String> = brokers
        .into_iter()
        .filter_map(|b| {
            let lost: Vec<String> = losses
                .iter()
                .filter(|((x, _), l)| *x == b && (l.lost > 0.0 || l.extra > 0.0))
                .map(|((_, sc), l)| {
                    let mut s = format!("{sc} {}", thousands(l.lost as u64));
                    if l.extra > 0.0 {
                        let extra = thousands(l.extra as u64);
                        s.push_str(&format!(" ({extra} delivered more than once)"));
                    }
                    s
                })
                .collect();
            if !lost.is_empty() {
                Some(format!("{}: {}", b.label(), lost.join(", ")))
            } else {
                COMPARED
                    .contains(&b)
                    .then(|| format!("{}: none", b.label()))
            }
        })
        .collect();
    let mut s = format!("Messages lost over all rounds: {}.", parts.join("; "));
    if losses.values().any(|l| l.extra > 0.0) {
        s.push_str(
            " The members of a shared subscription count what they receive \
             together, and the payloads do not tell messages apart: a message \
             delivered more than once hides a lost one.",
        );
    }
    s
}

/// The cost of a per-message hook: Sluice with the topic-acl plugin on
/// `auth-on-publish` against Sluice without plugins.
fn hook_cost(s: &mut String, results: &Results) {
    let rows: Vec<&str> = SCENARIOS
        .iter()
        .filter(|sc| sc.also.contains(&Broker::SluiceAcl))
        .map(|sc| sc.name)
        .filter(|name| results.contains_key(&(Broker::SluiceAcl, *name, "msgs_per_sec")))
        .collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "\n### Cost of an `auth-on-publish` plugin\n\n\
         The topic-acl example plugin allows `bench/#`. Cached: its answers \
         carry `cache-secs`, so each connection asks once per topic; every \
         message: caching off, each PUBLISH is a wasm call.\n"
    );
    let _ = writeln!(
        s,
        "| scenario | sluice | + topic-acl (cached) | ratio | + topic-acl (every message) | ratio |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|");
    for name in rows {
        let get = |b: Broker| results.get(&(b, name, "msgs_per_sec"));
        let ratio = |b: Broker| match (get(b), get(Broker::Sluice)) {
            (Some(a), Some(base)) if median(base) > 0.0 => {
                format!("{:.2}×", median(a) / median(base))
            }
            _ => "—".into(),
        };
        let _ = writeln!(
            s,
            "| {name} (msg/s) | {} | {} | {} | {} | {} |",
            cell(get(Broker::Sluice)),
            cell(get(Broker::SluiceAcl)),
            ratio(Broker::SluiceAcl),
            cell(get(Broker::SluiceAclUncached)),
            ratio(Broker::SluiceAclUncached),
        );
    }
}

/// The criterion benchmarks' summaries.
pub struct Micro {
    /// Medians of the micro-benchmarks.
    pub table: String,
    /// The hot-reload benchmarks (`benches/reload.rs`).
    pub reload: String,
}

/// Runs the criterion benchmarks and summarises their medians.
pub fn micro(root: &Path) -> Result<Micro> {
    crate::tools::build_plugins(root)?;
    sh(cargo().args([
        "bench",
        "-p",
        "sluice-broker",
        "--",
        "--warm-up-time",
        "1",
        "--measurement-time",
        "3",
    ]))?;
    let median_ns = |name: &str| -> Result<f64> {
        let path = root.join(format!("target/criterion/{name}/new/estimates.json"));
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let at = text.find("\"median\"").context("no median in estimates")?;
        super::field(&text[at + 9..], "point_estimate")
    };
    let mut s = String::from("| benchmark | median | goal |\n|---|---|---|\n");
    let rows: &[(&str, &str, &str)] = &[
        (
            "codec/decode-publish-v3",
            "decode a 64-byte PUBLISH (MQTT 3.1.1)",
            "",
        ),
        (
            "codec/decode-publish-v5",
            "decode a 64-byte PUBLISH with properties (MQTT 5)",
            "",
        ),
        (
            "codec/encode-publish-v3",
            "encode a 64-byte PUBLISH (MQTT 3.1.1)",
            "",
        ),
        (
            "codec/encode-publish-v5",
            "encode a 64-byte PUBLISH with properties (MQTT 5)",
            "",
        ),
        (
            "match/10k",
            "match a topic against 10k subscriptions (mixed wildcards)",
            "",
        ),
        (
            "match/100k",
            "match a topic against 100k subscriptions (mixed wildcards)",
            "",
        ),
        (
            "hook/trivial",
            "one trivial hook through the plugin chain",
            "≤ 1 µs",
        ),
        ("hook/chain-5", "5-plugin chain (4 × next, then ok)", ""),
        (
            "publish-hook/acl-64B",
            "auth-on-publish, topic-acl, 64-byte payload (not read)",
            "",
        ),
        (
            "publish-hook/acl-64KiB",
            "auth-on-publish, topic-acl, 64-KiB payload (not read)",
            "same as 64 B",
        ),
        (
            "connect/no-plugins",
            "CONNECT→CONNACK, in-process, no plugins",
            "",
        ),
        (
            "connect/chain-3",
            "CONNECT→CONNACK, in-process, 3-plugin chain",
            "",
        ),
        (
            "load/20-cached",
            "start-up of 20 plugins from the artifact cache",
            "milliseconds",
        ),
    ];
    for (name, label, goal) in rows {
        let ns = median_ns(name)?;
        let value = if ns >= 1e6 {
            format!("{:.2} ms", ns / 1e6)
        } else if ns >= 1e3 {
            format!("{:.2} µs", ns / 1e3)
        } else {
            format!("{ns:.0} ns")
        };
        let _ = writeln!(s, "| {label} (`{name}`) | {value} | {goal} |");
    }
    Ok(Micro {
        table: s,
        reload: reload_table(root)?,
    })
}

/// The plugins `benches/reload.rs` replaces: (benchmark, built plugin,
/// what is swapped in).
const RELOADS: &[(&str, &str, &str)] = &[
    (
        "reload/rust-small",
        "topic-acl",
        "Rust (topic-acl), new version: compiled",
    ),
    (
        "reload/rust-small-cached",
        "topic-acl",
        "Rust (topic-acl), version in the artifact cache",
    ),
    (
        "reload/python",
        "python-allowlist",
        "Python (python-allowlist), new version: compiled",
    ),
];

/// The hot-reload table: every criterion sample of `benches/reload.rs` is
/// one reload, so the samples give the median and the range.
fn reload_table(root: &Path) -> Result<String> {
    let mut s = String::from(
        "Time from renaming a new version of a plugin into the watched plugin \
         directory to that version answering calls (`broker/benches/reload.rs`, \
         in-process, default watch settings: inotify, 100 ms debounce, which \
         every reload includes). A new version is the plugin with a custom \
         section holding a nonce, so it is compiled by Cranelift unless cached; \
         each sample is one reload.\n\n\
         | plugin | size | reloads | median | min–max | goal |\n|---|---|---|---|---|---|\n",
    );
    for (name, plugin, label) in RELOADS {
        let path = root.join(format!("target/criterion/{name}/new/sample.json"));
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let iters = json_numbers(&text, "iters")?;
        let times = json_numbers(&text, "times")?;
        let per_reload: Vec<f64> = times
            .iter()
            .zip(&iters)
            .map(|(t, n)| t / n.max(1.0))
            .collect();
        let min = per_reload.iter().copied().fold(f64::INFINITY, f64::min);
        let max = per_reload.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let wasm = root.join(format!("target/plugins/{plugin}.wasm"));
        let size = std::fs::metadata(&wasm)
            .with_context(|| format!("cannot read {}", wasm.display()))?
            .len();
        let goal = if size <= 1 << 20 {
            if max <= 1e9 {
                "≤ 1 s: met"
            } else {
                "≤ 1 s: missed"
            }
        } else {
            "none (> 1 MiB)"
        };
        let _ = writeln!(
            s,
            "| {label} (`{name}`) | {} | {} | {} | {}–{} | {goal} |",
            megabytes(size),
            iters.iter().sum::<f64>(),
            duration(median(&per_reload)),
            duration(min),
            duration(max),
        );
    }
    Ok(s)
}

/// The numbers of the array `key` in a flat JSON object.
fn json_numbers(json: &str, key: &str) -> Result<Vec<f64>> {
    let pat = format!("\"{key}\":[");
    let at = json
        .find(&pat)
        .with_context(|| format!("no {key} in {json}"))?
        + pat.len();
    let end = json[at..]
        .find(']')
        .with_context(|| format!("unterminated {key}"))?;
    json[at..at + end]
        .split(',')
        .map(|n| {
            n.trim()
                .parse()
                .with_context(|| format!("bad {key} in {json}"))
        })
        .collect()
}

fn megabytes(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
    } else {
        format!("{} KiB", bytes.div_ceil(1024))
    }
}

/// Nanoseconds as ms (below 1 s) or s.
fn duration(ns: f64) -> String {
    if ns >= 1e9 {
        format!("{:.2} s", ns / 1e9)
    } else {
        format!("{:.0} ms", ns / 1e6)
    }
}

/// Replaces the section of `markdown` that starts with `heading` (up to the
/// next `## ` heading) with `section`, or adds it before the
/// micro-benchmarks (or at the end).
pub fn splice(markdown: &str, heading: &str, section: &str) -> String {
    let (before, after) = match markdown.find(heading) {
        Some(at) => {
            let rest = &markdown[at + heading.len()..];
            let end = rest
                .find("\n## ")
                .map_or(markdown.len(), |i| at + heading.len() + i + 1);
            (&markdown[..at], &markdown[end..])
        }
        None => match markdown.find("## Micro-benchmarks") {
            Some(at) => (&markdown[..at], &markdown[at..]),
            None => (markdown, ""),
        },
    };
    let mut s = before.to_owned();
    if !s.is_empty() && !s.ends_with("\n\n") {
        s.push_str(if s.ends_with('\n') { "\n" } else { "\n\n" });
    }
    s.push_str(section);
    s.push_str(after);
    s
}

/// An integer with thousands separators: 1,000,000.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A median with its range over rounds: `m (min–max)`, the value alone
/// for one round, `—` for none.
pub fn median_range(values: &[f64], show: fn(f64) -> String) -> String {
    let v: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if v.is_empty() {
        return "—".into();
    }
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if v.len() == 1 {
        show(v[0])
    } else {
        format!("{} ({}–{})", show(median(&v)), show(min), show(max))
    }
}

#[cfg(test)]
mod tests {
    use super::super::Loss;
    use super::{Broker, Losses, duration, json_numbers, lost, megabytes, splice};

    #[test]
    fn losses_are_stated_for_every_compared_broker() {
        let mut losses = Losses::new();
        assert_eq!(
            lost(&losses),
            "Messages lost over all rounds: sluice: none; mosquitto: none; rumqttd: none."
        );
        let loss = |lost, extra| Loss { lost, extra };
        losses.insert((Broker::Sluice, "fanin"), loss(0.0, 0.0));
        losses.insert((Broker::Rumqttd, "fanout"), loss(12_345.0, 0.0));
        losses.insert((Broker::Rumqttd, "latency"), loss(3.0, 0.0));
        losses.insert((Broker::SluiceAcl, "fanin"), loss(7.0, 0.0));
        losses.insert((Broker::SluiceChain, "fanin"), loss(0.0, 0.0));
        assert_eq!(
            lost(&losses),
            "Messages lost over all rounds: sluice: none; mosquitto: none; \
             rumqttd: fanout 12,345, latency 3; sluice + topic-acl (cached): fanin 7."
        );
        losses.insert((Broker::Rumqttd, "shared"), loss(0.0, 26.0));
        assert!(lost(&losses).contains(
            "rumqttd: fanout 12,345, latency 3, shared 0 (26 delivered more than once); "
        ));
        assert!(lost(&losses).ends_with("a message delivered more than once hides a lost one."));
    }

    #[test]
    fn criterion_samples_parse() {
        let json = r#"{"sampling_mode":"Flat","iters":[1.0,2.0],"times":[194000000.0,6.5e9]}"#;
        assert_eq!(json_numbers(json, "iters").unwrap(), [1.0, 2.0]);
        assert_eq!(json_numbers(json, "times").unwrap(), [1.94e8, 6.5e9]);
        assert!(json_numbers(json, "other").is_err());
        assert_eq!(duration(1.94e8), "194 ms");
        assert_eq!(duration(6.5e9), "6.50 s");
        assert_eq!(megabytes(111_193), "109 KiB");
        assert_eq!(megabytes(18_470_390), "17.6 MiB");
    }

    #[test]
    fn splice_replaces_only_its_section() {
        const HEADING: &str = "## Soak: hostile clients";
        let new = format!("{HEADING}\n\nnew\n\n");
        let doc = "# Benchmarks\n\ntable\n\n## Micro-benchmarks (criterion)\n\nmicro\n";
        let once = splice(doc, HEADING, &new);
        assert_eq!(
            once,
            format!("# Benchmarks\n\ntable\n\n{new}## Micro-benchmarks (criterion)\n\nmicro\n")
        );
        let newer = format!("{HEADING}\n\nnewer\n\n");
        assert_eq!(
            splice(&once, HEADING, &newer),
            once.replace("new\n", "newer\n")
        );
        let last = "# Benchmarks\n\ntable\n";
        assert_eq!(splice(last, HEADING, &new), format!("{last}\n{new}"));
        assert_eq!(
            splice(&splice(last, HEADING, &new), HEADING, &new),
            format!("{last}\n{new}")
        );
        // A second section goes in beside the first, and each is replaced
        // on its own.
        let stuck = "## Stuck plugin\n\nstuck\n\n";
        let both = splice(&once, "## Stuck plugin", stuck);
        assert_eq!(
            both,
            format!(
                "# Benchmarks\n\ntable\n\n{new}{stuck}## Micro-benchmarks (criterion)\n\nmicro\n"
            )
        );
        assert_eq!(
            splice(&both, HEADING, &newer),
            both.replace("new\n", "newer\n")
        );
    }
}
