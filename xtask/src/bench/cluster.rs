//! The cluster runs of `cargo xtask bench` and the "Cluster" section of
//! `BENCHMARKS.md` (issue 16): a publisher on node A and a subscriber on
//! node B of a two-node cluster over one nats-server, against the same
//! load on one Sluice node without `[cluster]`:
//!
//! - QoS 0 and QoS 1 throughput, one publisher → one subscriber
//!   (`loadgen pairs --pairs 1`): delivered msg/s, loss, and CPU seconds
//!   per 100,000 delivered messages of each server process;
//! - latency at a fixed 10,000 msg/s (`loadgen latency`): p50, p99 and
//!   max from send times in the payloads.
//!
//! In the cluster the load generator's subscriber connects to node B
//! (`--sub-addr`), and before each measured run the publisher on node A
//! sends probe messages until the subscriber has one, so the subscription
//! has reached NATS (no sleeping). Each round starts every process afresh
//! on free loopback ports: nats-server with JetStream and an empty store,
//! then the nodes. After each run the nodes' `/metrics` (cluster counters)
//! and nats-server's `/varz` are read, to tell where messages were lost.
//!
//! `cargo xtask bench --cluster-only` runs only these and replaces that
//! section of an existing `BENCHMARKS.md`, leaving the rest as it is.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::report::{self, Machine, human, median, median_range};
use super::soak::{count, micros};
use super::{cpu_secs, field, launcher, stop_within, wait_listening};
use crate::tools::install_nats_server;

/// The section's heading, which `report::splice` looks for.
pub const HEADING: &str = "## Cluster";

/// Rounds (quick, full).
const ROUNDS: (u32, u32) = (1, 3);
/// Messages of the QoS 0 and QoS 1 throughput runs (quick, full).
const QOS0_MSGS: (u32, u32) = (200_000, 1_000_000);
const QOS1_MSGS: (u32, u32) = (50_000, 200_000);
/// The latency run: seconds (quick, full) at `RATE` messages per second.
const LATENCY_SECS: (u32, u32) = (2, 5);
const RATE: u32 = 10_000;
/// Payload size everywhere.
const SIZE: u32 = 64;
/// How long a server may take to start listening, and to stop after
/// SIGTERM before it is killed.
const START_LIMIT: Duration = Duration::from_secs(30);
const STOP_LIMIT: Duration = Duration::from_secs(10);
/// How long one loadgen run may take before it is killed.
const LOADGEN_LIMIT: Duration = Duration::from_secs(300);
/// Goals of issue 16.
const GOAL_RATIO: f64 = 0.5;
const GOAL_P99_US: f64 = 5_000.0;

/// One node alone, or publisher and subscriber on two nodes of a cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Setup {
    Single,
    Cluster,
}

const SETUPS: [Setup; 2] = [Setup::Single, Setup::Cluster];

impl Setup {
    fn label(self) -> &'static str {
        match self {
            Setup::Single => "one node",
            Setup::Cluster => "cross-node (A → NATS → B)",
        }
    }
}

/// The loads, each run on both setups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Load {
    Qos0,
    Qos1,
    Latency,
}

const LOADS: [Load; 3] = [Load::Qos0, Load::Qos1, Load::Latency];

impl Load {
    fn label(self) -> &'static str {
        match self {
            Load::Qos0 => "QoS 0",
            Load::Qos1 => "QoS 1",
            Load::Latency => "latency",
        }
    }

    /// The loadgen scenario and its arguments.
    fn loadgen(self, quick: bool) -> (&'static str, String) {
        let pick = |(q, f): (u32, u32)| if quick { q } else { f };
        match self {
            Load::Qos0 => (
                "pairs",
                format!("--pairs 1 --msgs {} --size {SIZE} --qos 0", pick(QOS0_MSGS)),
            ),
            Load::Qos1 => (
                "pairs",
                format!("--pairs 1 --msgs {} --size {SIZE} --qos 1", pick(QOS1_MSGS)),
            ),
            Load::Latency => (
                "latency",
                format!("--rate {RATE} --secs {} --size {SIZE}", pick(LATENCY_SECS)),
            ),
        }
    }

    /// loadgen's figure of messages sent.
    fn sent_key(self) -> &'static str {
        match self {
            Load::Latency => "sent",
            _ => "expected",
        }
    }

    /// loadgen's figure of messages delivered.
    fn delivered_key(self) -> &'static str {
        match self {
            Load::Latency => "received",
            _ => "delivered",
        }
    }
}

/// What a server process is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Single,
    NodeA,
    NodeB,
    Nats,
}

/// The columns of CPU figures: the publisher's node (or the single
/// node), the subscriber's node, nats-server.
const CPU_COLUMNS: [&[Role]; 3] = [&[Role::Single, Role::NodeA], &[Role::NodeB], &[Role::Nats]];

impl Role {
    fn label(self) -> &'static str {
        match self {
            Role::Single => "sluice",
            Role::NodeA => "node A",
            Role::NodeB => "node B",
            Role::Nats => "nats-server",
        }
    }

    /// File name part for its configuration and log.
    fn file(self) -> &'static str {
        match self {
            Role::Single => "single",
            Role::NodeA => "node-a",
            Role::NodeB => "node-b",
            Role::Nats => "nats",
        }
    }

    /// The counters read from it after every run: (key, name in its
    /// `/metrics` or `/varz`).
    fn counters(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Role::Single => &[],
            Role::NodeA => &[
                ("a_forwarded", "sluice_cluster_forwarded_total"),
                ("a_dropped", "sluice_cluster_dropped_total"),
            ],
            Role::NodeB => &[
                ("b_received", "sluice_cluster_received_total"),
                ("b_dropped", "sluice_cluster_dropped_total"),
            ],
            Role::Nats => &[
                ("nats_in", "in_msgs"),
                ("nats_out", "out_msgs"),
                ("nats_slow", "slow_consumers"),
            ],
        }
    }
}

/// One running server: its role, process, and HTTP port (Sluice's admin
/// endpoint, nats-server's monitoring).
struct Server {
    role: Role,
    child: Child,
    http: u16,
}

/// The processes of one setup, stopped (SIGTERM, then SIGKILL) when
/// dropped, on errors too.
struct Servers {
    list: Vec<Server>,
    /// MQTT ports of the publisher's and the subscriber's node.
    publish: u16,
    subscribe: u16,
}

impl Drop for Servers {
    fn drop(&mut self) {
        // The nodes before their nats-server.
        for server in self.list.iter_mut().rev() {
            stop_within(&mut server.child, STOP_LIMIT);
        }
    }
}

impl Servers {
    /// Every counter of [`Role::counters`] that could be read, by key.
    fn counters(&self) -> Vec<(&'static str, f64)> {
        let mut out = Vec::new();
        for server in &self.list {
            let wanted = server.role.counters();
            if wanted.is_empty() {
                continue;
            }
            let path = if server.role == Role::Nats {
                "/varz"
            } else {
                "/metrics"
            };
            let Ok(text) = http_get(server.http, path) else {
                continue;
            };
            for (key, name) in wanted {
                let value = if server.role == Role::Nats {
                    field(&text, name).ok()
                } else {
                    prometheus(&text, name)
                };
                if let Some(v) = value {
                    out.push((*key, v));
                }
            }
        }
        out
    }
}

/// One run of one load on one setup.
struct Run {
    setup: Setup,
    load: Load,
    /// loadgen's JSON line, or why there is none.
    out: Result<String, String>,
    /// CPU seconds of each server over the run.
    cpu: Vec<(Role, f64)>,
    /// Counters over the run (after − before), by key.
    counters: Vec<(&'static str, f64)>,
    /// Servers that ended during the run, and how.
    exits: Vec<String>,
}

impl Run {
    fn figure(&self, key: &str) -> Option<f64> {
        self.out.as_ref().ok().and_then(|o| field(o, key).ok())
    }
}

/// Everything the section reports.
pub struct Outcome {
    runs: Vec<Run>,
    rounds: u32,
    nats_version: String,
    /// Load averages before and after, and how long it all took.
    load: (String, String),
    took: Duration,
}

/// Runs every load on both setups, `rounds` times, the setups interleaved.
pub fn run(root: &Path, quick: bool, pin: bool) -> Result<Outcome> {
    install_nats_server()?;
    let started = Instant::now();
    let load_before = report::loadavg();
    let dir = root.join("target/bench/cluster");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let rounds = if quick { ROUNDS.0 } else { ROUNDS.1 };
    let mut runs = Vec::new();
    for round in 1..=rounds {
        for setup in SETUPS {
            eprintln!("xtask: cluster, round {round}/{rounds}: {}", setup.label());
            let mut servers = start(root, &dir, setup, round, pin)?;
            for load in LOADS {
                runs.push(measure(root, &mut servers, setup, load, quick, pin));
            }
            // Dropping `servers` stops them.
        }
    }
    let _ = std::fs::remove_dir_all(dir.join("nats-store"));
    Ok(Outcome {
        runs,
        rounds,
        nats_version: nats_version(),
        load: (load_before, report::loadavg()),
        took: started.elapsed(),
    })
}

/// One loadgen run on running servers, with their CPU time and counters.
fn measure(
    root: &Path,
    servers: &mut Servers,
    setup: Setup,
    load: Load,
    quick: bool,
    pin: bool,
) -> Run {
    let (name, args) = load.loadgen(quick);
    let pids: Vec<(Role, u32)> = servers
        .list
        .iter()
        .map(|s| (s.role, s.child.id()))
        .collect();
    let cpu_of = |pid: u32| cpu_secs(pid).unwrap_or(f64::NAN);
    let cpu_before: Vec<f64> = pids.iter().map(|(_, pid)| cpu_of(*pid)).collect();
    let before = servers.counters();
    let out = loadgen(root, name, servers.publish, servers.subscribe, &args, pin)
        .map_err(|e| format!("{e:#}"));
    if let Ok(line) = &out {
        eprintln!("xtask:   {:<12} {line}", load.label());
    }
    let cpu = pids
        .iter()
        .zip(cpu_before)
        .map(|((role, pid), b)| (*role, cpu_of(*pid) - b))
        .collect();
    let counters = servers
        .counters()
        .into_iter()
        .filter_map(|(key, after)| {
            let (_, b) = before.iter().find(|(k, _)| *k == key)?;
            Some((key, after - b))
        })
        .collect();
    let exits = servers
        .list
        .iter_mut()
        .filter_map(|s| match s.child.try_wait() {
            Ok(Some(status)) => Some(format!(
                "{} exited during the run ({status})",
                s.role.label()
            )),
            _ => None,
        })
        .collect();
    Run {
        setup,
        load,
        out,
        cpu,
        counters,
        exits,
    }
}

/// Starts the servers of `setup` on free loopback ports and waits until
/// they listen.
fn start(root: &Path, dir: &Path, setup: Setup, round: u32, pin: bool) -> Result<Servers> {
    let mut servers = Servers {
        list: Vec::new(),
        publish: 0,
        subscribe: 0,
    };
    match setup {
        Setup::Single => {
            let port = start_sluice(root, dir, &mut servers, Role::Single, None, round, pin)?;
            servers.publish = port;
            servers.subscribe = port;
        }
        Setup::Cluster => {
            let nats = start_nats(dir, &mut servers, round, pin)?;
            servers.publish =
                start_sluice(root, dir, &mut servers, Role::NodeA, Some(nats), round, pin)?;
            servers.subscribe =
                start_sluice(root, dir, &mut servers, Role::NodeB, Some(nats), round, pin)?;
        }
    }
    Ok(servers)
}

/// nats-server with JetStream, its store in a fresh directory; returns its
/// client port.
fn start_nats(dir: &Path, servers: &mut Servers, round: u32, pin: bool) -> Result<u16> {
    let (port, http) = (free_port()?, free_port()?);
    let store = dir.join("nats-store");
    let _ = std::fs::remove_dir_all(&store);
    std::fs::create_dir_all(&store)
        .with_context(|| format!("cannot create {}", store.display()))?;
    let mut cmd = launcher(pin.then_some(1));
    cmd.arg(nats_bin()).args([
        "-a",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-m",
        &http.to_string(),
        "-js",
        "-sd",
    ]);
    cmd.arg(&store);
    let log = dir.join(format!("r{round}-nats.log"));
    let child = spawn(&mut cmd, &log, "nats-server")?;
    servers.list.push(Server {
        role: Role::Nats,
        child,
        http,
    });
    if let Some(s) = servers.list.last_mut() {
        wait_listening(&mut s.child, port, "nats-server", START_LIMIT)
            .with_context(|| format!("see {}", log.display()))?;
    }
    Ok(port)
}

/// A Sluice node (in the cluster of the nats-server at `nats`, if given);
/// returns its MQTT port.
fn start_sluice(
    root: &Path,
    dir: &Path,
    servers: &mut Servers,
    role: Role,
    nats: Option<u16>,
    round: u32,
    pin: bool,
) -> Result<u16> {
    let (port, admin) = (free_port()?, free_port()?);
    let config = dir.join(format!("{}.toml", role.file()));
    let node = nats.map(|nats| (nats, role.file()));
    std::fs::write(&config, sluice_config(port, admin, node))
        .with_context(|| format!("cannot write {}", config.display()))?;
    let mut cmd = launcher(pin.then_some(1));
    cmd.arg(root.join("target/release/sluice"))
        .arg("--config")
        .arg(&config);
    let log = dir.join(format!("r{round}-{}.log", role.file()));
    let child = spawn(&mut cmd, &log, role.label())?;
    servers.list.push(Server {
        role,
        child,
        http: admin,
    });
    if let Some(s) = servers.list.last_mut() {
        wait_listening(&mut s.child, port, role.label(), START_LIMIT)
            .with_context(|| format!("see {}", log.display()))?;
    }
    Ok(port)
}

/// A Sluice configuration: loopback `port`, anonymous clients, no `$SYS`,
/// queues raised as in the other sections, the admin endpoint on `admin`
/// (for the cluster counters), and `[cluster]` with (NATS port, node name)
/// if given.
fn sluice_config(port: u16, admin: u16, cluster: Option<(u16, &str)>) -> String {
    let mut text = format!(
        "[server]\nbind = [\"127.0.0.1:{port}\"]\nallow_anonymous = true\n\
         sys_interval_secs = 0\n\
         [session]\nmax_queued_messages = 1000000\nmax_queued_bytes = 0\n\
         [log]\nlevel = \"warn\"\n\
         [admin]\nbind = \"127.0.0.1:{admin}\"\n"
    );
    if let Some((nats, node)) = cluster {
        let _ = write!(
            text,
            "[cluster]\nnats = [\"nats://127.0.0.1:{nats}\"]\nnode = \"{node}\"\n"
        );
    }
    text
}

/// A loopback port free right now.
pub(super) fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")
        .context("cannot find a free loopback port")?
        .local_addr()?
        .port())
}

fn nats_bin() -> PathBuf {
    if Path::new("/usr/sbin/nats-server").exists() {
        PathBuf::from("/usr/sbin/nats-server")
    } else {
        PathBuf::from("nats-server")
    }
}

/// "2.9.10", from `nats-server --version`.
fn nats_version() -> String {
    Command::new(nats_bin())
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .map(|v| {
            v.rsplit(' ')
                .next()
                .unwrap_or(&v)
                .trim_start_matches('v')
                .to_owned()
        })
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "of unknown version".into())
}

/// Starts `cmd` with its output in `log`.
fn spawn(cmd: &mut Command, log: &Path, label: &str) -> Result<Child> {
    let file =
        std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    cmd.stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()
        .with_context(|| format!("cannot start {label}"))
}

/// Runs `loadgen NAME --addr 127.0.0.1:PUBLISH [--sub-addr
/// 127.0.0.1:SUBSCRIBE] ARGS` (pinned to CPU 0 with `pin`), killed after
/// [`LOADGEN_LIMIT`]; returns its JSON line, or fails with its error
/// line on stderr.
fn loadgen(
    root: &Path,
    name: &str,
    publish: u16,
    subscribe: u16,
    args: &str,
    pin: bool,
) -> Result<String> {
    let mut cmd = launcher(pin.then_some(0));
    cmd.arg(root.join("target/release/loadgen"))
        .arg(name)
        .args(["--addr", &format!("127.0.0.1:{publish}")]);
    if subscribe != publish {
        cmd.args(["--sub-addr", &format!("127.0.0.1:{subscribe}")]);
    }
    let mut child = cmd
        .args(args.split_whitespace())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run loadgen")?;
    let mut stdout = child.stdout.take().context("no stdout")?;
    let stderr = child.stderr.take().context("no stderr")?;
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    // The error line (not a backtrace after it), else the last line.
    let err = std::thread::spawn(move || {
        let (mut error, mut last) = (None, String::new());
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("{line}");
            if error.is_none() && line.starts_with("Error: ") {
                error = Some(line.clone());
            }
            if !line.trim().is_empty() {
                last = line;
            }
        }
        error.unwrap_or(last)
    });
    let deadline = Instant::now() + LOADGEN_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = out.join().unwrap_or_default();
    let last = err.join().unwrap_or_default();
    match status {
        None => bail!("loadgen {name} was still running after {LOADGEN_LIMIT:?}: killed"),
        Some(s) if !s.success() => bail!("loadgen {name} failed ({s}): {last}"),
        Some(_) => Ok(out.trim().to_owned()),
    }
}

/// The body of `GET path` from 127.0.0.1:`port` (HTTP/1.0, bounded in
/// time).
pub(super) fn http_get(port: u16, path: &str) -> Result<String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    let (head, body) = text.split_once("\r\n\r\n").context("no HTTP head")?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        bail!(
            "GET {path} on {addr}: {}",
            head.lines().next().unwrap_or("")
        );
    }
    Ok(body.to_owned())
}

/// The value of an unlabelled metric in the Prometheus text format.
pub(super) fn prometheus(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// An integer with thousands separators: 1,000,000.
fn thousands(n: f64) -> String {
    // Counts read as floats: whole, and never negative.
    report::thousands(n.max(0.0).round() as u64)
}

fn cpu_text(v: f64) -> String {
    format!("{v:.2}")
}

fn ms_text(v: f64) -> String {
    format!("{v:.0} ms")
}

/// The runs of one load on one setup.
fn runs_of(runs: &[Run], setup: Setup, load: Load) -> Vec<&Run> {
    runs.iter()
        .filter(|r| r.setup == setup && r.load == load)
        .collect()
}

/// One figure of each run.
fn figures(runs: &[&Run], key: &str) -> Vec<f64> {
    runs.iter().filter_map(|r| r.figure(key)).collect()
}

/// CPU seconds per 100,000 delivered messages of the servers in `roles`,
/// per run.
fn cpu_per_100k(runs: &[&Run], load: Load, roles: &[Role]) -> Vec<f64> {
    runs.iter()
        .filter_map(|r| {
            let delivered = r.figure(load.delivered_key())?;
            let cpu: Vec<f64> = r
                .cpu
                .iter()
                .filter(|(role, _)| roles.contains(role))
                .map(|(_, c)| *c)
                .collect();
            (delivered > 0.0 && !cpu.is_empty()).then(|| cpu.iter().sum::<f64>() / delivered * 1e5)
        })
        .collect()
}

/// The CPU cells of a row: publisher's node, subscriber's node,
/// nats-server, all of them.
fn cpu_cells(runs: &[&Run], load: Load) -> String {
    let mut cells: Vec<String> = CPU_COLUMNS
        .iter()
        .map(|roles| median_range(&cpu_per_100k(runs, load, roles), cpu_text))
        .collect();
    cells.push(median_range(
        &cpu_per_100k(
            runs,
            load,
            &[Role::Single, Role::NodeA, Role::NodeB, Role::Nats],
        ),
        cpu_text,
    ));
    cells.join(" | ")
}

/// Lost messages over the runs: "0", or "**N** of M (P %)".
fn lost_cell(runs: &[&Run], load: Load) -> String {
    let sent: f64 = figures(runs, load.sent_key()).iter().sum();
    let lost: f64 = figures(runs, "loss").iter().sum();
    if figures(runs, "loss").is_empty() {
        "—".into()
    } else if lost == 0.0 {
        format!("0 of {}", thousands(sent))
    } else {
        format!(
            "**{}** of {} ({:.2} %)",
            thousands(lost),
            thousands(sent),
            lost / sent.max(1.0) * 100.0
        )
    }
}

/// The "Cluster" section.
pub fn section(
    o: &Outcome,
    machine: &Machine,
    command: &str,
    revision: &str,
    quick: bool,
    pin: bool,
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{HEADING}\n");
    let pinned = if pin {
        "every server pinned to CPU 1 (the single node; or both nodes and \
         nats-server together, so that the cross-node figures have three processes \
         sharing the one CPU the single node has to itself) and the load generator \
         to CPU 0"
    } else {
        "nothing pinned (fewer than 2 CPUs)"
    };
    let _ = writeln!(
        s,
        "Measured {} on {} CPUs ({}), {}, with `{command}`{revision}, which took {:.0} s \
         (load average {} before, {} after); nats-server {} with JetStream on (`-js`, \
         its store in a fresh directory under `target/bench/cluster/`); {pinned}. Goals \
         (issue 16): cross-node QoS 0 throughput at least {GOAL_RATIO}× one node's, and \
         a p99 latency under 5 ms at 10,000 msg/s across nodes.\n",
        machine.date,
        machine.cpus,
        machine.cpu_model,
        machine.kernel,
        o.took.as_secs_f64(),
        o.load.0,
        o.load.1,
        o.nats_version,
    );
    if quick {
        let _ = writeln!(
            s,
            "**Quick run**: one round and fewer messages; the full run is \
             `cargo xtask bench --cluster-only`.\n"
        );
    }
    let rounds_text = if o.rounds == 1 {
        "one round".to_owned()
    } else {
        format!(
            "{} rounds, the setups interleaved; cells are the median with (min–max) \
             over the rounds",
            o.rounds
        )
    };
    let pick = |(q, f): (u32, u32)| f64::from(if quick { q } else { f });
    let _ = writeln!(
        s,
        "Setups: **one node**, a Sluice node without `[cluster]`, publisher and \
         subscriber both connected to it; **cross-node**, two Sluice nodes (`node-a`, \
         `node-b`) with `[cluster] nats` naming the one nats-server, the publisher \
         connected to node A and the subscriber to node B, so every message goes node \
         A → nats-server → node B. Settings, the same on every node: \
         `sys_interval_secs = 0` and queues raised to 1,000,000 messages per client \
         (`[session] max_queued_messages = 1000000`, `max_queued_bytes = 0`) as in the \
         other sections, and `[admin] bind` on a loopback port, read only between runs \
         for the counters below; everything else default. Every process is started \
         afresh each round on free loopback ports; {rounds_text}.\n"
    );
    let _ = writeln!(
        s,
        "Loads: `loadgen pairs --pairs 1` (with `--sub-addr` node B across nodes): one \
         publisher (MQTT 3.1.1, clean session) sends {} (QoS 0) or {} (QoS 1) \
         {SIZE}-byte messages to `bench/p2p/0`, one subscriber holds that topic at the \
         same QoS; the QoS 0 publisher waits for a PINGRESP every 2,000 messages, the \
         QoS 1 one keeps at most 100 unacknowledged. `delivered msg/s`: messages the \
         subscriber received over the time from the start of publishing to the last \
         delivery; it stops after 2 s without a message, and what it did not get by \
         then is `lost`. `loadgen latency`: one QoS 0 publisher at {} msg/s for {} s, \
         its send time in each payload, read by the subscriber in the same process \
         (one clock). Before each cross-node run the publisher sends a QoS 0 probe \
         message every 10 ms until the subscriber on node B has received one (at most \
         10 s), so that node B's subscription is in NATS before measuring; probes are \
         not counted. CPU: user + system time of each server process over the run, \
         per 100,000 delivered messages (where messages were lost, the publisher's node \
         also handled those, so its figure is per message delivered, not handled).\n",
        thousands(pick(QOS0_MSGS)),
        thousands(pick(QOS1_MSGS)),
        thousands(f64::from(RATE)),
        pick(LATENCY_SECS),
    );
    throughput_table(&mut s, &o.runs);
    latency_table(&mut s, &o.runs);
    goals(&mut s, &o.runs, quick);
    counters_table(&mut s, &o.runs);
    notes(&mut s, &o.runs);
    s
}

fn throughput_table(s: &mut String, runs: &[Run]) {
    let _ = writeln!(s, "### Throughput: 1 publisher → 1 subscriber\n");
    let _ = writeln!(
        s,
        "| QoS | setup | delivered msg/s | cross-node ÷ one node | lost (all rounds) | \
         CPU s per 100k: node A / the one node | node B | nats-server | all servers |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|");
    for load in [Load::Qos0, Load::Qos1] {
        let base = median(&figures(
            &runs_of(runs, Setup::Single, load),
            "msgs_per_sec",
        ));
        for setup in SETUPS {
            let ours = runs_of(runs, setup, load);
            let rate = figures(&ours, "msgs_per_sec");
            let ratio = match setup {
                Setup::Single => "—".to_owned(),
                Setup::Cluster if base > 0.0 && !rate.is_empty() => {
                    format!("{:.2}×", median(&rate) / base)
                }
                Setup::Cluster => "—".to_owned(),
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {ratio} | {} | {} |",
                load.label(),
                setup.label(),
                median_range(&rate, human),
                lost_cell(&ours, load),
                cpu_cells(&ours, load),
            );
        }
    }
    s.push('\n');
}

fn latency_table(s: &mut String, runs: &[Run]) {
    let _ = writeln!(
        s,
        "### Latency at {} msg/s (QoS 0)\n",
        thousands(f64::from(RATE))
    );
    let _ = writeln!(
        s,
        "| setup | p50 | p99 | max | lost (all rounds) | CPU s per 100k: node A / the one \
         node | node B | nats-server | all servers |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|");
    for setup in SETUPS {
        let ours = runs_of(runs, setup, Load::Latency);
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} |",
            setup.label(),
            median_range(&figures(&ours, "p50_us"), micros),
            median_range(&figures(&ours, "p99_us"), micros),
            median_range(&figures(&ours, "max_us"), micros),
            lost_cell(&ours, Load::Latency),
            cpu_cells(&ours, Load::Latency),
        );
    }
    s.push('\n');
}

fn goals(s: &mut String, runs: &[Run], quick: bool) {
    let verdict = |ok: bool| if ok { "met" } else { "**missed**" };
    let mut goals = Vec::new();
    let rate = |setup| median(&figures(&runs_of(runs, setup, Load::Qos0), "msgs_per_sec"));
    let ratio = rate(Setup::Cluster) / rate(Setup::Single);
    if ratio.is_finite() {
        goals.push(format!(
            "cross-node QoS 0 throughput {} against one node's {} = {ratio:.2}× (goal ≥ \
             {GOAL_RATIO}×): {}",
            human(rate(Setup::Cluster)),
            human(rate(Setup::Single)),
            verdict(ratio >= GOAL_RATIO)
        ));
    }
    let p99 = median(&figures(
        &runs_of(runs, Setup::Cluster, Load::Latency),
        "p99_us",
    ));
    if p99.is_finite() {
        goals.push(format!(
            "cross-node p99 latency at {} msg/s {} (goal < 5 ms): {}",
            thousands(f64::from(RATE)),
            micros(p99),
            verdict(p99 < GOAL_P99_US)
        ));
    }
    if !goals.is_empty() {
        let _ = writeln!(
            s,
            "Goals{}: {}.\n",
            if quick { " (on this quick run)" } else { "" },
            goals.join("; ")
        );
    }
}

/// Where messages went in the cross-node runs, summed over the rounds.
fn counters_table(s: &mut String, runs: &[Run]) {
    let _ = writeln!(
        s,
        "Where the cross-node messages went, summed over the rounds (probes \
         included, so the counters may exceed the messages sent by a few): node A's \
         `sluice_cluster_forwarded_total` (sent to NATS) and `sluice_cluster_dropped_total` \
         (its queue to NATS full), nats-server's `in_msgs`, `out_msgs` and \
         `slow_consumers` (`/varz`), node B's `sluice_cluster_received_total` (taken \
         from NATS and delivered to its router).\n"
    );
    let _ = writeln!(
        s,
        "| load | published | node A → NATS | node A dropped | nats-server in / out | \
         slow consumers | node B ← NATS | subscriber got |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
    for load in LOADS {
        let ours = runs_of(runs, Setup::Cluster, load);
        let sum = |key: &str| -> String {
            let v: Vec<f64> = ours
                .iter()
                .flat_map(|r| {
                    r.counters
                        .iter()
                        .filter(|(k, _)| *k == key)
                        .map(|(_, v)| *v)
                })
                .collect();
            if v.is_empty() {
                "—".into()
            } else {
                thousands(v.iter().sum())
            }
        };
        let total = |key: &str| -> String {
            let v = figures(&ours, key);
            if v.is_empty() {
                "—".into()
            } else {
                thousands(v.iter().sum())
            }
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} / {} | {} | {} | {} |",
            load.label(),
            total(load.sent_key()),
            sum("a_forwarded"),
            sum("a_dropped"),
            sum("nats_in"),
            sum("nats_out"),
            sum("nats_slow"),
            sum("b_received"),
            total(load.delivered_key()),
        );
    }
    s.push('\n');
    let stages: Vec<String> = LOADS
        .iter()
        .filter_map(|load| loss_stages(&runs_of(runs, Setup::Cluster, *load), *load))
        .collect();
    if !stages.is_empty() {
        let _ = writeln!(
            s,
            "Where the lost messages were lost (from the counters, give or take the few \
             probes): {}.\n",
            stages.join("; ")
        );
    }
}

/// The stages at which a load's cross-node runs lost messages, from the
/// counters; `None` without loss or counters.
fn loss_stages(runs: &[&Run], load: Load) -> Option<String> {
    let sum = |key: &str| -> Option<f64> {
        let v: Vec<f64> = runs
            .iter()
            .flat_map(|r| {
                r.counters
                    .iter()
                    .filter(|(k, _)| *k == key)
                    .map(|(_, v)| *v)
            })
            .collect();
        (!v.is_empty()).then(|| v.iter().sum())
    };
    let total = |key: &str| -> f64 { figures(runs, key).iter().sum() };
    let lost = total("loss");
    if lost <= 0.0 {
        return None;
    }
    let (a_dropped, nats_in, nats_out, slow, b_received) = (
        sum("a_dropped")?,
        sum("nats_in")?,
        sum("nats_out")?,
        sum("nats_slow")?,
        sum("b_received")?,
    );
    let probes = total("probes");
    let mut parts = Vec::new();
    if a_dropped > 0.0 {
        parts.push(format!(
            "{} dropped by node A, its queue to NATS full",
            thousands(a_dropped)
        ));
    }
    if nats_in > nats_out {
        parts.push(format!(
            "{} taken in by nats-server and not sent on",
            thousands(nats_in - nats_out)
        ));
    }
    let after_nats = nats_out - b_received;
    if after_nats > probes {
        parts.push(format!(
            "{} sent on by nats-server ({}) and never taken by node B{}",
            thousands(after_nats),
            if slow > 0.0 {
                format!("which counted {} slow consumers", thousands(slow))
            } else {
                "which counted no slow consumer".to_owned()
            },
            if slow > 0.0 {
                ""
            } else {
                ": dropped inside node B's NATS client, whose buffer for a \
                 subscription (`SUBSCRIPTION_BUFFER` in `broker/src/cluster/mod.rs`) \
                 drops what comes while it is full; node B counts those \
                 slow-consumer events in `sluice_cluster_dropped_total` and logs them \
                 (QoS 0 only: QoS 1/2 cross through JetStream consumers, pulled at \
                 node B's pace)"
            }
        ));
    }
    let in_b = b_received - probes - total(load.delivered_key());
    if in_b > 0.0 {
        parts.push(format!(
            "{} taken by node B and not delivered to the subscriber",
            thousands(in_b)
        ));
    }
    Some(format!(
        "{}: {} lost{}, {}",
        load.label(),
        thousands(lost),
        if load == Load::Qos1 {
            " (every one acknowledged to the publisher with a PUBACK: loadgen's \
             publisher ends only when all are)"
        } else {
            ""
        },
        if parts.is_empty() {
            "no stage accounts for it".to_owned()
        } else {
            parts.join(", ")
        }
    ))
}

fn notes(s: &mut String, runs: &[Run]) {
    let mut notes = Vec::new();
    let probe: Vec<f64> = runs
        .iter()
        .filter(|r| r.setup == Setup::Cluster)
        .filter_map(|r| r.figure("probe_ms"))
        .collect();
    if !probe.is_empty() {
        let probes: Vec<f64> = runs
            .iter()
            .filter(|r| r.setup == Setup::Cluster)
            .filter_map(|r| r.figure("probes"))
            .collect();
        notes.push(format!(
            "a subscription on node B reached node A's publisher within {} of the first \
             probe ({} probes per run)",
            median_range(&probe, ms_text),
            median_range(&probes, count)
        ));
    }
    for r in runs {
        let what = format!("{}, {}", r.setup.label(), r.load.label());
        if let Err(e) = &r.out {
            notes.push(format!(
                "{what}: run failed: {}",
                e.replace('|', "/").replace('\n', " ")
            ));
        }
        for exit in &r.exits {
            notes.push(format!("{what}: {exit}"));
        }
    }
    if !notes.is_empty() {
        let _ = writeln!(s, "Notes: {}.\n", notes.join("; "));
    }
}

#[cfg(test)]
mod tests {
    use super::{prometheus, sluice_config, thousands};

    #[test]
    fn metrics_and_config() {
        let text = "# HELP sluice_cluster_forwarded_total Messages.\n\
                    # TYPE sluice_cluster_forwarded_total counter\n\
                    sluice_cluster_forwarded_total 1234\n\
                    sluice_cluster_forwarded_total_other 9\n";
        assert_eq!(
            prometheus(text, "sluice_cluster_forwarded_total"),
            Some(1234.0)
        );
        assert_eq!(prometheus(text, "sluice_cluster_dropped_total"), None);
        assert_eq!(thousands(1_000_000.0), "1,000,000");
        assert_eq!(thousands(999.0), "999");
        let config = sluice_config(1883, 8888, Some((4222, "node-a")));
        assert!(config.contains("nats = [\"nats://127.0.0.1:4222\"]\nnode = \"node-a\""));
        assert!(!sluice_config(1883, 8888, None).contains("[cluster]"));
    }
}
