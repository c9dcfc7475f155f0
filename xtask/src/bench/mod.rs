//! `cargo xtask bench`: Sluice (without plugins, with a 3-plugin wasm
//! authentication chain, and with the topic-acl plugin on every publish)
//! side by side with two peers, mosquitto (Debian's) and rumqttd (the
//! release pinned in `tools.rs`, built into `target/tools`; its settings
//! and overload policy in `rumqttd.rs`), under the same `loadgen`
//! scenarios, interleaved over several rounds, counting each broker's
//! lost messages; then the criterion
//! micro-benchmarks, among them the hot-reload time (a new plugin file
//! written → the new version active); the soak (`soak.rs`): normal
//! clients without and with hostile ones beside them; and the stuck plugin
//! (`stuck.rs`): unrelated clients' round trips without and with clients
//! keeping a plugin spinning; and durability (`persist.rs`): QoS 1 fan-in
//! to a persistent session with each durability setting beside mosquitto,
//! and recovery of 100,000 sessions holding 1,000,000 messages; and the
//! cluster (`cluster.rs`): publisher on one node and subscriber on another
//! over NATS against both on one node. Writes the tables into
//! `BENCHMARKS.md`; `--soak-only`, `--stuck-only`, `--persist-only` and
//! `--cluster-only` run only the soak, the stuck plugin, durability or the
//! cluster and replace only its section. `--acl-deliver-only` measures the
//! delivery-time ACL (`acl.rs`: fan-out with topic-acl's read check) and
//! `--webhook-only` the webhook-auth plugin's decisions (`webhook.rs`:
//! fan-in and reconnects against a local HTTP service), each replacing only
//! its section; the full run leaves those sections as they are. The burst
//! (`burst.rs`: a QoS 0 fan-in burst with every broker's default settings,
//! counting loss, with Sluice, mosquitto and rumqttd) runs in the full run
//! and alone with `--burst-only`.
//!
//! Each broker runs pinned to CPU 1 and the load generator to CPU 0 (when
//! the machine has two or more CPUs); in the cluster runs both nodes and
//! nats-server share CPU 1. Brokers are restarted for every round,
//! and the idle-memory scenario runs first on a fresh broker.

mod acl;
mod burst;
mod cluster;
mod persist;
mod report;
mod rumqttd;
mod soak;
mod stuck;
mod webhook;

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::tools::{build_plugins, install_mosquitto, install_rumqttd, rumqttd_bin};
use crate::{cargo, sh};

/// The brokers compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Broker {
    Sluice,
    SluiceChain,
    Mosquitto,
    /// rumqttd with its shipped settings (`rumqttd.rs`).
    Rumqttd,
    /// With the topic-acl example plugin on `auth-on-publish`, its
    /// acceptances cached per connection.
    SluiceAcl,
    /// The same, with caching off: every message goes through wasm.
    SluiceAclUncached,
    /// With the `spinner` test fixture on `auth-on-publish` (the stuck
    /// plugin runs).
    SluiceSpinner,
    /// With the topic-acl example plugin under the rules of
    /// `config/sluice.toml`: its `auth-on-deliver` read check runs for
    /// every delivery.
    SluiceAclRead,
    /// With the webhook-auth example plugin asking an HTTP service, its
    /// answers cached (`cache_secs`).
    SluiceWebhook,
    /// The same, every CONNECT and PUBLISH an HTTP request.
    SluiceWebhookUncached,
    /// With `[session] overload = "drop"` (the burst).
    SluiceDrop,
}

impl Broker {
    pub fn label(self) -> &'static str {
        match self {
            Broker::Sluice => "sluice",
            Broker::SluiceChain => "sluice + 3-plugin chain",
            Broker::Mosquitto => "mosquitto",
            Broker::Rumqttd => "rumqttd",
            Broker::SluiceAcl => "sluice + topic-acl (cached)",
            Broker::SluiceAclUncached => "sluice + topic-acl (every message)",
            Broker::SluiceSpinner => "sluice + spinner",
            Broker::SluiceAclRead => "sluice + topic-acl (shipped rules)",
            Broker::SluiceWebhook => "sluice + webhook-auth (cached)",
            Broker::SluiceWebhookUncached => "sluice + webhook-auth (every decision)",
            Broker::SluiceDrop => "sluice, overload = \"drop\"",
        }
    }

    fn port(self) -> u16 {
        match self {
            Broker::Sluice => 18_901,
            Broker::SluiceChain => 18_902,
            Broker::Mosquitto => 18_903,
            Broker::SluiceAcl => 18_904,
            Broker::SluiceAclUncached => 18_905,
            Broker::SluiceSpinner => 18_906,
            Broker::SluiceAclRead => 18_907,
            Broker::SluiceWebhook => 18_908,
            Broker::SluiceWebhookUncached => 18_909,
            Broker::SluiceDrop => 18_910,
            Broker::Rumqttd => 18_911,
        }
    }

    /// The keep alive loadgen's clients ask this broker for (0: none).
    fn keep_alive(self) -> u16 {
        match self {
            Broker::Rumqttd => rumqttd::KEEP_ALIVE,
            _ => 0,
        }
    }
}

/// The brokers compared in every scenario of the main table.
pub const COMPARED: [Broker; 3] = [Broker::Sluice, Broker::Mosquitto, Broker::Rumqttd];

/// One load scenario.
pub struct Scenario {
    pub name: &'static str,
    /// `loadgen` arguments after the scenario name (quick, full).
    args: (&'static str, &'static str),
    /// Figures reported: (key in the loadgen output, label, higher is better).
    pub figures: &'static [(&'static str, &'static str, bool)],
    /// Which brokers besides the [`COMPARED`] ones run it.
    also: &'static [Broker],
}

const CHAIN: &[Broker] = &[Broker::SluiceChain];
const PUBLISH_HOOK: &[Broker] = &[
    Broker::SluiceChain,
    Broker::SluiceAcl,
    Broker::SluiceAclUncached,
];

const THROUGHPUT: &[(&str, &str, bool)] = &[("msgs_per_sec", "msg/s", true)];
const CONNECTS: &[(&str, &str, bool)] = &[
    ("connects_per_sec", "connects/s", true),
    ("per_cpu_sec", "connects per broker CPU-second", true),
];

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "idle",
        args: ("--conns 10000", "--conns 10000"),
        figures: &[("bytes_per_conn", "bytes per idle connection", false)],
        also: &[],
    },
    Scenario {
        name: "fanin",
        args: (
            "--pubs 4 --msgs 100000 --size 64 --qos 0",
            "--pubs 4 --msgs 250000 --size 64 --qos 0",
        ),
        figures: THROUGHPUT,
        also: PUBLISH_HOOK,
    },
    Scenario {
        name: "fanin-qos1",
        args: (
            "--pubs 4 --msgs 25000 --size 64 --qos 1",
            "--pubs 4 --msgs 100000 --size 64 --qos 1",
        ),
        figures: THROUGHPUT,
        also: &[Broker::SluiceAcl, Broker::SluiceAclUncached],
    },
    Scenario {
        name: "fanout",
        args: (
            "--subs 8 --msgs 25000 --size 64 --qos 0",
            "--subs 8 --msgs 100000 --size 64 --qos 0",
        ),
        figures: THROUGHPUT,
        also: &[],
    },
    Scenario {
        name: "pairs",
        args: (
            "--pairs 4 --msgs 50000 --size 64 --qos 0",
            "--pairs 4 --msgs 200000 --size 64 --qos 0",
        ),
        figures: THROUGHPUT,
        also: &[],
    },
    Scenario {
        name: "shared",
        args: (
            "--pubs 4 --subs 4 --msgs 50000 --size 64 --qos 0",
            "--pubs 4 --subs 4 --msgs 200000 --size 64 --qos 0",
        ),
        figures: THROUGHPUT,
        also: &[],
    },
    Scenario {
        name: "connect-1",
        args: ("--workers 1 --secs 1", "--workers 1 --secs 3"),
        figures: CONNECTS,
        also: CHAIN,
    },
    Scenario {
        name: "connect-8",
        args: ("--workers 8 --secs 1", "--workers 8 --secs 3"),
        figures: CONNECTS,
        also: CHAIN,
    },
    Scenario {
        name: "connect-32",
        args: ("--workers 32 --secs 1", "--workers 32 --secs 3"),
        figures: CONNECTS,
        also: CHAIN,
    },
    Scenario {
        name: "latency",
        args: (
            "--rate 10000 --secs 2 --size 64",
            "--rate 10000 --secs 5 --size 64",
        ),
        figures: &[
            ("p50_us", "p50 µs at 10k msg/s", false),
            ("p99_us", "p99 µs at 10k msg/s", false),
            ("max_us", "max µs at 10k msg/s", false),
        ],
        also: &[],
    },
];

/// Measured values: (broker, scenario, figure) → one value per round.
pub type Results = BTreeMap<(Broker, &'static str, &'static str), Vec<f64>>;

/// Loss seen per (broker, scenario), summed over rounds.
pub type Losses = BTreeMap<(Broker, &'static str), Loss>;

/// Messages of one broker and scenario not delivered, and delivered beyond
/// what was sent (a shared subscription's duplicates, loadgen's `extra`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Loss {
    pub lost: f64,
    pub extra: f64,
}

pub fn run(root: &Path, args: &[String]) -> Result<()> {
    let quick = args.iter().any(|a| a == "--quick");
    let micro_only = args.iter().any(|a| a == "--micro-only");
    let soak_only = args.iter().any(|a| a == "--soak-only");
    let stuck_only = args.iter().any(|a| a == "--stuck-only");
    let persist_only = args.iter().any(|a| a == "--persist-only");
    let cluster_only = args.iter().any(|a| a == "--cluster-only");
    let acl_only = args.iter().any(|a| a == "--acl-deliver-only");
    let webhook_only = args.iter().any(|a| a == "--webhook-only");
    let burst_only = args.iter().any(|a| a == "--burst-only");
    if let Some(unknown) = args.iter().find(|a| {
        !matches!(
            a.as_str(),
            "--quick"
                | "--micro-only"
                | "--soak-only"
                | "--stuck-only"
                | "--persist-only"
                | "--cluster-only"
                | "--acl-deliver-only"
                | "--webhook-only"
                | "--burst-only"
        )
    }) {
        bail!("unknown bench option {unknown}");
    }
    let onlys = [
        ("--micro-only", micro_only),
        ("--soak-only", soak_only),
        ("--stuck-only", stuck_only),
        ("--persist-only", persist_only),
        ("--cluster-only", cluster_only),
        ("--acl-deliver-only", acl_only),
        ("--webhook-only", webhook_only),
        ("--burst-only", burst_only),
    ];
    if onlys.iter().filter(|(_, o)| *o).count() > 1 {
        bail!(
            "--micro-only, --soak-only, --stuck-only, --persist-only, --cluster-only, \
             --acl-deliver-only, --webhook-only and --burst-only exclude each other"
        );
    }
    // Only one of the scenarios besides the main table.
    let one_only = soak_only || stuck_only || persist_only || cluster_only;
    if !micro_only {
        sh(cargo().args([
            "build",
            "--release",
            "-p",
            "sluice-broker",
            "--bin",
            "sluice",
            "-p",
            "xtask",
            "--bin",
            "loadgen",
        ]))?;
        if !stuck_only && !cluster_only && !acl_only && !webhook_only {
            install_mosquitto()?;
        }
        // The main table and the burst.
        if !one_only && !acl_only && !webhook_only {
            install_rumqttd(root)?;
        }
        if !soak_only && !persist_only && !cluster_only && !burst_only {
            build_plugins(root)?;
        }
    }
    if webhook_only {
        return section_only(root, quick, "--webhook-only", webhook::HEADING, |machine| {
            let outcome = webhook::run(root, quick, machine.cpus >= 2)?;
            Ok(Box::new(move |date, command, revision| {
                webhook::section(&outcome, date, command, revision, quick)
            }))
        });
    }
    if burst_only {
        return section_only(root, quick, "--burst-only", burst::HEADING, |machine| {
            let outcome = burst::run(root, machine.cpus >= 2)?;
            Ok(Box::new(move |date, command, revision| {
                burst::section(&outcome, date, command, revision)
            }))
        });
    }
    if acl_only {
        return section_only(root, quick, "--acl-deliver-only", acl::HEADING, |machine| {
            let outcome = acl::run(root, quick, machine.cpus >= 2)?;
            Ok(Box::new(move |date, command, revision| {
                acl::section(&outcome, date, command, revision, quick)
            }))
        });
    }
    // Measurement time, after the builds.
    let started = Instant::now();
    let machine = report::Machine::probe();
    let load_before = report::loadavg();
    let pin = machine.cpus >= 2;
    let (results, losses) = if micro_only || one_only {
        (Results::new(), Losses::new())
    } else {
        side_by_side(root, quick, pin)?
    };
    let command = format!(
        "cargo xtask bench{}{}",
        onlys
            .iter()
            .find(|(_, o)| *o)
            .map_or(String::new(), |(flag, _)| format!(" {flag}")),
        if quick { " --quick" } else { "" }
    );
    let command = command.as_str();
    let burst = if micro_only || one_only {
        None
    } else {
        let outcome = burst::run(root, pin)?;
        Some(burst::section(
            &outcome,
            &machine.date,
            command,
            &report::revision(root),
        ))
    };
    let soak = if micro_only || stuck_only || persist_only || cluster_only {
        None
    } else {
        let runs = soak::run(root, quick, pin)?;
        Some(soak::section(root, &runs, &machine.date, command, quick))
    };
    let stuck = if micro_only || soak_only || persist_only || cluster_only {
        None
    } else {
        let runs = stuck::run(root, quick, pin)?;
        Some(stuck::section(
            &runs,
            &machine.date,
            command,
            &report::revision(root),
            quick,
            pin,
            machine.cpus,
        ))
    };
    let persist = if micro_only || soak_only || stuck_only || cluster_only {
        None
    } else {
        let outcome = persist::run(root, quick, pin)?;
        Some(persist::section(
            &outcome,
            &machine,
            command,
            &report::revision(root),
            quick,
            pin,
        ))
    };
    let cluster = if micro_only || soak_only || stuck_only || persist_only {
        None
    } else {
        let outcome = cluster::run(root, quick, pin)?;
        Some(cluster::section(
            &outcome,
            &machine,
            command,
            &report::revision(root),
            quick,
            pin,
        ))
    };
    let micro = if quick || one_only {
        None
    } else {
        Some(report::micro(root)?)
    };
    let load_after = report::loadavg();
    let path = root.join("BENCHMARKS.md");
    let only = match (&soak, &stuck, &persist, &cluster) {
        (Some(section), None, None, None) if soak_only => Some((soak::HEADING, section, "soak")),
        (None, Some(section), None, None) if stuck_only => {
            Some((stuck::HEADING, section, "stuck plugin"))
        }
        (None, None, Some(section), None) if persist_only => {
            Some((persist::HEADING, section, "durability"))
        }
        (None, None, None, Some(section)) if cluster_only => {
            Some((cluster::HEADING, section, "cluster"))
        }
        _ => None,
    };
    if let Some((heading, section, what)) = only {
        // Only this section changes; the other figures stay.
        println!("{section}");
        let old = std::fs::read_to_string(&path).unwrap_or_default();
        std::fs::write(&path, report::splice(&old, heading, section))
            .context("cannot write BENCHMARKS.md")?;
        eprintln!("xtask: updated the {what} section of BENCHMARKS.md");
        return Ok(());
    }
    let text = report::markdown(
        &machine,
        command,
        (&load_before, &load_after),
        started.elapsed(),
        &results,
        &losses,
        soak.as_deref(),
        stuck.as_deref(),
        persist.as_deref(),
        micro.as_ref(),
    );
    // The cluster section goes after durability, before the
    // micro-benchmarks.
    let text = match &cluster {
        Some(section) => report::splice(&text, cluster::HEADING, section),
        None => text,
    };
    let text = match &burst {
        Some(section) => report::splice(&text, burst::HEADING, section),
        None => text,
    };
    println!("{text}");
    if !micro_only {
        std::fs::write(&path, &text).context("cannot write BENCHMARKS.md")?;
        eprintln!("xtask: wrote BENCHMARKS.md");
    }
    Ok(())
}

/// Runs every scenario against every broker, interleaved, `rounds` times.
fn side_by_side(root: &Path, quick: bool, pin: bool) -> Result<(Results, Losses)> {
    let dir = root.join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let rounds = 3;
    let mut results = Results::new();
    let mut losses = Losses::new();
    for round in 1..=rounds {
        for broker in [
            Broker::Sluice,
            Broker::Mosquitto,
            Broker::Rumqttd,
            Broker::SluiceChain,
            Broker::SluiceAcl,
            Broker::SluiceAclUncached,
        ] {
            eprintln!("xtask: round {round}/{rounds}: {}", broker.label());
            let mut running = start(root, &dir, broker, pin, None)?;
            let outcome = (|| -> Result<()> {
                for s in SCENARIOS {
                    if !COMPARED.contains(&broker) && !s.also.contains(&broker) {
                        continue;
                    }
                    let args = if quick { s.args.0 } else { s.args.1 };
                    let cpu_before = cpu_secs(running.id())?;
                    let out = loadgen(root, s.name, broker, args, running.id(), pin)?;
                    let cpu = cpu_secs(running.id())? - cpu_before;
                    for (key, _, _) in s.figures {
                        let value = if *key == "per_cpu_sec" {
                            field(&out, "connects")? / cpu.max(1e-9)
                        } else {
                            field(&out, key)?
                        };
                        results
                            .entry((broker, s.name, key))
                            .or_default()
                            .push(value);
                    }
                    if let Ok(lost) = field(&out, "loss") {
                        let loss = losses.entry((broker, s.name)).or_default();
                        loss.lost += lost;
                        loss.extra += field(&out, "extra").unwrap_or(0.0);
                    }
                }
                Ok(())
            })();
            stop(&mut running);
            outcome?;
        }
    }
    Ok((results, losses))
}

/// What writes a section from the date, the command line and the revision.
type Writer = Box<dyn FnOnce(&str, &str, &str) -> String>;

/// Measures and writes one section of `BENCHMARKS.md` by itself (`flag`
/// run alone): `measure` runs the benchmark and returns its [`Writer`].
fn section_only(
    root: &Path,
    quick: bool,
    flag: &str,
    heading: &str,
    measure: impl FnOnce(&report::Machine) -> Result<Writer>,
) -> Result<()> {
    let machine = report::Machine::probe();
    let write = measure(&machine)?;
    let command = format!(
        "cargo xtask bench {flag}{}",
        if quick { " --quick" } else { "" }
    );
    let section = write(&machine.date, &command, &report::revision(root));
    println!("{section}");
    let path = root.join("BENCHMARKS.md");
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    std::fs::write(&path, report::splice(&old, heading, &section))
        .context("cannot write BENCHMARKS.md")?;
    eprintln!("xtask: updated the section {heading:?} of BENCHMARKS.md");
    Ok(())
}

/// Starts `broker` on its port and waits until it accepts connections.
/// With `log`, the broker keeps its default queue limits (the other
/// scenarios raise them to 1,000,000 messages) and logs into that file
/// (the soak, the stuck plugin, the burst).
fn start(root: &Path, dir: &Path, broker: Broker, pin: bool, log: Option<&Path>) -> Result<Child> {
    let port = broker.port();
    let mut cmd = launcher(pin.then_some(1));
    let queue = log.is_none();
    match broker {
        Broker::Sluice
        | Broker::SluiceChain
        | Broker::SluiceAcl
        | Broker::SluiceAclUncached
        | Broker::SluiceSpinner
        | Broker::SluiceAclRead
        | Broker::SluiceWebhook
        | Broker::SluiceWebhookUncached
        | Broker::SluiceDrop => {
            let config = dir.join(format!("sluice-{port}.toml"));
            let mut text = format!(
                "[server]\nbind = [\"127.0.0.1:{port}\"]\nallow_anonymous = {}\n\
                 sys_interval_secs = 0\n\
                 {}\
                 [log]\nlevel = \"warn\"\n",
                broker != Broker::SluiceChain,
                if queue {
                    "[session]\nmax_queued_messages = 1000000\n"
                } else {
                    ""
                }
            );
            if queue && broker == Broker::SluiceAclRead {
                // Its subscribers, slower than the publisher, queue more
                // than the default 16 MiB: no byte limit, only the count
                // (as for mosquitto), so that the run loses nothing.
                text = text.replace("[session]\n", "[session]\nmax_queued_bytes = 0\n");
            }
            if broker == Broker::SluiceDrop {
                let drop = "[session]\noverload = \"drop\"\n";
                text = if text.contains("[session]\n") {
                    text.replace("[session]\n", drop)
                } else {
                    text + drop
                };
            }
            if let Broker::SluiceAcl | Broker::SluiceAclUncached = broker {
                let plugins = dir.join(format!("acl-{port}"));
                let _ = std::fs::remove_dir_all(&plugins);
                std::fs::create_dir_all(&plugins)?;
                std::fs::copy(
                    root.join("target/plugins/topic-acl.wasm"),
                    plugins.join("acl.wasm"),
                )?;
                let cache_secs = if broker == Broker::SluiceAcl { 60 } else { 0 };
                text.push_str(&format!(
                    "[plugins]\ndir = \"{}\"\ncache_dir = \"{}\"\n\
                     [plugin.acl.config]\npublish = \"bench/#\"\nsubscribe = \"bench/#\"\n\
                     cache_secs = \"{cache_secs}\"\n",
                    plugins.display(),
                    dir.join("plugin-cache").display()
                ));
            }
            if broker == Broker::SluiceAclRead {
                let plugins = dir.join(format!("acl-{port}"));
                let _ = std::fs::remove_dir_all(&plugins);
                std::fs::create_dir_all(&plugins)?;
                std::fs::copy(
                    root.join("target/plugins/topic-acl.wasm"),
                    plugins.join("acl.wasm"),
                )?;
                text.push_str(&format!(
                    "[plugins]\ndir = \"{}\"\ncache_dir = \"{}\"\n\
                     [plugin.acl.config]\npublish = \"#\"\nsubscribe = \"#, $SYS/#\"\n\
                     deny_publish = \"private/#\"\ndeny_subscribe = \"private/#\"\n",
                    plugins.display(),
                    dir.join("plugin-cache").display()
                ));
            }
            if let Broker::SluiceWebhook | Broker::SluiceWebhookUncached = broker {
                text.push_str(&webhook::config(root, dir, broker)?);
            }
            if broker == Broker::SluiceSpinner {
                let plugins = dir.join(format!("spinner-{port}"));
                let _ = std::fs::remove_dir_all(&plugins);
                std::fs::create_dir_all(&plugins)?;
                std::fs::copy(
                    root.join("target/plugins/spinner.wasm"),
                    plugins.join("spinner.wasm"),
                )?;
                text.push_str(&format!(
                    "[plugins]\ndir = \"{}\"\ncache_dir = \"{}\"\ndeadline_ms = {}\n\
                     [plugin.spinner]\nfuel = {}\n\
                     [plugin.spinner.config]\nspin_ms = \"{}\"\n",
                    plugins.display(),
                    dir.join("plugin-cache").display(),
                    stuck::DEADLINE_MS,
                    stuck::SPINNER_FUEL,
                    stuck::SPIN_MS,
                ));
            }
            if broker == Broker::SluiceChain {
                let plugins = dir.join("chain");
                let _ = std::fs::remove_dir_all(&plugins);
                std::fs::create_dir_all(&plugins)?;
                for (file, verdict) in [("10-a", "next"), ("20-b", "next"), ("30-c", "ok")] {
                    std::fs::copy(
                        root.join("target/plugins/trivial.wasm"),
                        plugins.join(format!("{file}.wasm")),
                    )?;
                    text.push_str(&format!(
                        "[plugin.{file}.config]\nverdict = \"{verdict}\"\n"
                    ));
                }
                text.push_str(&format!(
                    "[plugins]\ndir = \"{}\"\ncache_dir = \"{}\"\n",
                    plugins.display(),
                    dir.join("plugin-cache").display()
                ));
            }
            std::fs::write(&config, text)?;
            cmd.arg(root.join("target/release/sluice"))
                .arg("--config")
                .arg(&config);
        }
        Broker::Mosquitto => {
            let config = dir.join("mosquitto.conf");
            std::fs::write(
                &config,
                format!(
                    "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
                     {}log_type error\n",
                    if queue {
                        "max_queued_messages 1000000\n"
                    } else {
                        ""
                    }
                ),
            )?;
            let bin = if Path::new("/usr/sbin/mosquitto").exists() {
                PathBuf::from("/usr/sbin/mosquitto")
            } else {
                PathBuf::from("mosquitto")
            };
            cmd.arg(bin).arg("-c").arg(&config);
        }
        Broker::Rumqttd => {
            let config = dir.join(format!("rumqttd-{port}.toml"));
            std::fs::write(&config, rumqttd::config(port))?;
            cmd.arg(rumqttd_bin(root))
                .arg("--quiet")
                .arg("--config")
                .arg(&config);
        }
    }
    // rumqttd logs to standard output, the others to standard error.
    let (stdout, stderr) = match log {
        Some(log) => {
            let file = std::fs::File::create(log)
                .with_context(|| format!("cannot create {}", log.display()))?;
            (Stdio::from(file.try_clone()?), Stdio::from(file))
        }
        None => (Stdio::null(), Stdio::inherit()),
    };
    let mut child = cmd
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .with_context(|| format!("cannot start {}", broker.label()))?;
    wait_listening(&mut child, port, broker.label(), Duration::from_secs(30))?;
    Ok(child)
}

/// Waits until `child` accepts connections on `port` (killing it after
/// `limit`).
fn wait_listening(child: &mut Child, port: u16, label: &str, limit: Duration) -> Result<()> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + limit;
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if let Some(status) = child.try_wait()? {
            bail!("{label} exited at start ({status})");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{label} did not start listening on {addr}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn stop(child: &mut Child) {
    stop_within(child, Duration::from_secs(10));
}

/// SIGTERM, then SIGKILL after `limit`.
fn stop_within(child: &mut Child, limit: Duration) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A command that runs its arguments as a program with the open-files limit
/// raised to the hard limit (10,000 idle connections need more than the
/// usual soft limit of 1,024), pinned to `cpu` if given. The program keeps
/// the command's pid.
fn launcher(cpu: Option<usize>) -> Command {
    let mut c = Command::new("sh");
    c.args([
        "-c",
        "ulimit -n \"$(ulimit -Hn)\" 2>/dev/null; exec \"$@\"",
        "sh",
    ]);
    if let Some(cpu) = cpu {
        c.args(["taskset", "-c", &cpu.to_string()]);
    }
    c
}

/// CPU seconds (user + system) process `pid` has used.
fn cpu_secs(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields overall.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields
        .get(11..13)
        .context("short /proc stat")?
        .iter()
        .map(|f| f.parse::<f64>().unwrap_or(0.0))
        .sum();
    Ok(ticks / 100.0)
}

/// Runs one loadgen scenario; returns its JSON line.
fn loadgen(
    root: &Path,
    scenario: &str,
    broker: Broker,
    args: &str,
    pid: u32,
    pin: bool,
) -> Result<String> {
    let name = scenario.split('-').next().unwrap_or(scenario);
    let name = if scenario == "fanin-qos1" {
        "fanin"
    } else {
        name
    };
    let mut args = args.to_owned();
    if name == "idle" || name == "soak" {
        args.push_str(&format!(" --pid {pid}"));
    }
    if broker.keep_alive() > 0 {
        args.push_str(&format!(" --keep-alive {}", broker.keep_alive()));
    }
    let line = loadgen_on(root, name, broker.port(), broker.label(), &args, pin)?;
    eprintln!("xtask:   {scenario:<12} {line}");
    Ok(line)
}

/// Runs `loadgen NAME --addr 127.0.0.1:PORT ARGS` (pinned to CPU 0 with
/// `pin`); returns its JSON line.
fn loadgen_on(
    root: &Path,
    name: &str,
    port: u16,
    label: &str,
    args: &str,
    pin: bool,
) -> Result<String> {
    let mut cmd = launcher(pin.then_some(0));
    cmd.arg(root.join("target/release/loadgen"));
    cmd.arg(name)
        .args(["--addr", &format!("127.0.0.1:{port}")])
        .args(args.split_whitespace());
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run loadgen")?;
    if !out.status.success() {
        bail!("loadgen {name} against {label} failed");
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// A memory figure of process `pid` from `/proc/PID/status` (`VmRSS`,
/// `VmHWM`: the peak), KiB.
fn status_kib(pid: u32, key: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// A number from a flat JSON object.
fn field(json: &str, key: &str) -> Result<f64> {
    let pat = format!("\"{key}\":");
    let at = json
        .find(&pat)
        .with_context(|| format!("no {key} in {json}"))?
        + pat.len();
    json[at..]
        .chars()
        .take_while(|c| !matches!(c, ',' | '}'))
        .collect::<String>()
        .trim()
        .parse()
        .with_context(|| format!("bad {key} in {json}"))
}
