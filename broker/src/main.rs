//! The `sluice` executable: command line, logging, signals (SIGTERM and
//! SIGINT shut down, SIGHUP reloads), `sluice plugins`, a client of a
//! running broker's admin endpoint, `sluice check-config`, and `sluice
//! store` (a stopped broker's store).

use std::future::Future;
use std::io::{IsTerminal, Read as _, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs as _};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use serde::Deserialize;
use sluice_broker::context::Context;
use sluice_broker::{Config, Server};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

mod cli {
    pub(crate) mod store;
}

/// Heap use is counted so that the broker can keep within its memory
/// budget (`limits.max_memory_mb`).
#[global_allocator]
static ALLOCATOR: sluice_broker::memory::CountingAllocator =
    sluice_broker::memory::CountingAllocator;

/// Sluice: an MQTT 3.1/3.1.1/5.0 broker with sandboxed WebAssembly plugins.
///
/// With no subcommand, runs the broker. SIGHUP re-reads --config (and the
/// flags) and applies the plugin settings; without --config it reloads the
/// plugin directory.
#[derive(Debug, Parser)]
#[command(version, about, args_conflicts_with_subcommands = true)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// TOML configuration file (see docs/config.md for every key). Flags
    /// below override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on; repeat for several. Default 127.0.0.1:1883.
    #[arg(long, value_name = "ADDR:PORT")]
    bind: Vec<SocketAddr>,
    /// Let clients connect when no authentication plugin is loaded.
    #[arg(long)]
    allow_anonymous: bool,
    /// Directory of `.wasm` plugins.
    #[arg(long, value_name = "DIR")]
    plugins: Option<PathBuf>,
    /// Log filter: error, warn, info, debug, trace, or per target
    /// ("info,sluice_broker=debug").
    #[arg(long, value_name = "FILTER")]
    log_level: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show a running broker's plugins: chain order, counters, last reload
    /// result, rejected and ignored files (read from its admin endpoint).
    Plugins(PluginsArgs),
    /// Validate a configuration file and print the effective configuration
    /// (every key, defaults filled in) as TOML; on an invalid file, print
    /// the error (naming the key and the line) and exit non-zero.
    CheckConfig(CheckConfigArgs),
    /// Look into a stopped broker's store (`[persistence] dir`): `stats`
    /// (entries and bytes per keyspace), `dump` (sessions, queues,
    /// retained topics, plugin keys, as text), `compact` (reclaim the
    /// space of deleted entries). Only `compact` writes.
    Store(cli::store::StoreArgs),
}

/// `sluice check-config`.
#[derive(Debug, clap::Args)]
struct CheckConfigArgs {
    /// The TOML configuration file to check.
    #[arg(value_name = "FILE")]
    file: PathBuf,
}

/// `sluice plugins`.
#[derive(Debug, clap::Args)]
struct PluginsArgs {
    /// Admin endpoint address. Default: `admin.bind` from --config, else
    /// 127.0.0.1:8888.
    #[arg(long, value_name = "ADDR:PORT")]
    admin: Option<String>,
    /// The broker's configuration file, to read `admin.bind` and
    /// `admin.token_file` from.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// A file holding the endpoint's bearer token. Default:
    /// `admin.token_file` from --config.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Print the JSON the endpoint serves instead of a table.
    #[arg(long)]
    json: bool,
}

fn load_config(args: &Args) -> anyhow::Result<Config> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if !args.bind.is_empty() {
        config.server.bind = args.bind.clone();
    }
    if args.allow_anonymous {
        config.server.allow_anonymous = true;
    }
    if let Some(dir) = &args.plugins {
        config.plugins.dir = Some(dir.clone());
    }
    if let Some(level) = &args.log_level {
        config.log.level = level.clone();
    }
    config.validate()?;
    Ok(config)
}

fn init_logging(filter: &str) -> anyhow::Result<()> {
    let targets: Targets = filter
        .parse()
        .with_context(|| format!("invalid log filter {filter:?}"))?;
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal()),
        )
        .with(targets)
        .try_init()
        .context("cannot install the logger")?;
    Ok(())
}

/// SIGTERM or SIGINT, whichever comes first. The handlers are installed
/// when this is called, not when the future is first polled: from then on
/// the signals' default action (ending the process at once) no longer
/// applies.
fn shutdown_signal() -> impl Future<Output = ()> {
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        let (Ok(mut term), Ok(mut int)) = handlers else {
            tracing::error!("cannot install signal handlers; stop with SIGKILL");
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("received SIGTERM"),
            _ = int.recv() => tracing::info!("received SIGINT"),
        }
    }
}

/// Reloads on every SIGHUP until the task is dropped.
async fn reload_on_hangup(mut hangups: Signal, args: Args, ctx: Arc<Context>) {
    while hangups.recv().await.is_some() {
        match &args.config {
            Some(path) => {
                tracing::info!(
                    "received SIGHUP; reloading the configuration from {}",
                    path.display()
                );
                reload_config(&args, &ctx).await;
            }
            None => {
                tracing::info!("received SIGHUP; no --config file, reloading the plugin directory");
                let changed = ctx.plugins.reload().await;
                tracing::info!(
                    "plugin directory reloaded; plugin chain {}",
                    if changed { "changed" } else { "unchanged" }
                );
            }
        }
    }
}

/// Re-reads the configuration exactly as at start (file, flags,
/// validation) and applies it; a configuration that does not load leaves
/// the running one in place.
async fn reload_config(args: &Args, ctx: &Context) {
    let config = match load_config(args) {
        Ok(config) => config,
        Err(e) => {
            tracing::error!(
                "configuration reload failed; keeping the running configuration: {e:#}"
            );
            return;
        }
    };
    ctx.reload(&config).await;
}

/// Runs the broker until SIGTERM or SIGINT.
async fn serve(args: Args, config: Config) -> anyhow::Result<()> {
    // Installed before the listeners: the signals' default actions would
    // end the process (a client that connects and signals at once).
    let hangups = signal(SignalKind::hangup())
        .inspect_err(|e| tracing::error!("cannot handle SIGHUP ({e}); reloading needs a restart"))
        .ok();
    let shutdown = shutdown_signal();
    let server = Server::bind(config).await?;
    let reloads =
        hangups.map(|h| tokio::spawn(reload_on_hangup(h, args, server.context().clone())));
    server.run(shutdown).await;
    if let Some(task) = reloads {
        task.abort();
    }
    Ok(())
}

/// Runs [`run`]; an error is printed as its message (with its causes, on
/// one line: no backtrace, whatever `RUST_BACKTRACE` says) and the exit
/// code is 1.
fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The subcommand, or the broker.
fn run() -> anyhow::Result<()> {
    let mut args = Args::parse();
    match args.command.take() {
        Some(Command::Plugins(plugins)) => return plugins_command(&plugins),
        Some(Command::CheckConfig(check)) => return check_config_command(&check),
        Some(Command::Store(store)) => return cli::store::run(&store),
        None => {}
    }
    let config = load_config(&args)?;
    init_logging(&config.log.level)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(args, config))
}

/// `sluice check-config FILE`: loads and validates the file as the broker
/// does, then prints the effective configuration as TOML on stdout.
fn check_config_command(args: &CheckConfigArgs) -> anyhow::Result<()> {
    let config = Config::load(&args.file)?;
    let text = config
        .to_toml()
        .context("cannot print the configuration as TOML")?;
    // The name goes into a TOML comment, where control characters (line
    // breaks among them) are not allowed.
    let file: String = args
        .file
        .display()
        .to_string()
        .chars()
        .map(|c| if c.is_control() && c != '\t' { ' ' } else { c })
        .collect();
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "# Effective configuration of {file}: every key, defaults filled in.\n\
         # Optional keys that are unset (e.g. plugins.dir, admin.bind) are left out.\n"
    )?;
    out.write_all(text.as_bytes())?;
    if !text.ends_with('\n') {
        writeln!(out)?;
    }
    out.flush()?;
    eprintln!("{file}: valid");
    Ok(())
}

/// Where `sluice plugins` looks when neither --admin nor the config says.
const DEFAULT_ADMIN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8888);
/// Connect, read and write timeout of `sluice plugins`.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest answer `sluice plugins` reads.
const MAX_RESPONSE: u64 = 16 * 1024 * 1024;

/// `sluice plugins`: fetches `/plugins` and prints it.
fn plugins_command(args: &PluginsArgs) -> anyhow::Result<()> {
    let addr = admin_address(args)?;
    let token = admin_token(args)?;
    let body = fetch(&addr, "/plugins", token.as_deref())?;
    let mut out = std::io::stdout().lock();
    if args.json {
        // Checked, then printed as served (which keeps the field order).
        serde_json::from_str::<serde::de::IgnoredAny>(&body)
            .with_context(|| format!("the admin endpoint at {addr} sent invalid JSON"))?;
        writeln!(out, "{}", body.trim_end())?;
    } else {
        let status: StatusView = serde_json::from_str(&body).with_context(|| {
            format!("the admin endpoint at {addr} sent an unexpected plugin status")
        })?;
        write_status(&mut out, &status)?;
    }
    out.flush()?;
    Ok(())
}

/// The admin address: --admin, else `admin.bind` of --config (a wildcard
/// address is reached through loopback), else [`DEFAULT_ADMIN`].
fn admin_address(args: &PluginsArgs) -> anyhow::Result<String> {
    if let Some(addr) = &args.admin {
        return Ok(addr.clone());
    }
    let configured = match &args.config {
        Some(path) => Config::load(path)?.admin.bind,
        None => None,
    };
    let mut addr = configured.unwrap_or(DEFAULT_ADMIN);
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    Ok(addr.to_string())
}

/// The bearer token: from --token-file, else `admin.token_file` of
/// --config; none without either.
fn admin_token(args: &PluginsArgs) -> anyhow::Result<Option<String>> {
    let file = match (&args.token_file, &args.config) {
        (Some(file), _) => Some(file.clone()),
        (None, Some(config)) => Config::load(config)?.admin.token_file,
        (None, None) => None,
    };
    file.map(|f| {
        std::fs::read_to_string(&f)
            .map(|t| t.trim().to_owned())
            .with_context(|| format!("cannot read the admin token file {}", f.display()))
    })
    .transpose()
}

/// `GET path` from the admin endpoint at `addr` (with a bearer `token`):
/// the body of a 200 answer.
fn fetch(addr: &str, path: &str, token: Option<&str>) -> anyhow::Result<String> {
    let mut stream = connect(addr)?;
    stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    let authorization = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{authorization}Connection: close\r\n\r\n");
    let mut raw = Vec::new();
    stream
        .write_all(request.as_bytes())
        .and_then(|()| stream.take(MAX_RESPONSE).read_to_end(&mut raw))
        .with_context(|| format!("no answer from the admin endpoint at {addr}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .with_context(|| format!("the admin endpoint at {addr} sent a malformed answer"))?;
    let status_line = head.lines().next().unwrap_or_default();
    if status_line.split(' ').nth(1) != Some("200") {
        anyhow::bail!(
            "the admin endpoint at {addr} answered {status_line:?}: {}",
            body.trim()
        );
    }
    Ok(body.to_owned())
}

/// Connects to the first address `addr` resolves to that answers.
fn connect(addr: &str) -> anyhow::Result<TcpStream> {
    let unreachable = |reason: String| {
        anyhow::anyhow!(
            "cannot reach the admin endpoint at {addr}: {reason}\n\
             Is the broker running with its admin endpoint enabled? Set \
             `[admin] bind = \"{addr}\"` in its configuration file, or point \
             `sluice plugins` at it with --admin ADDR:PORT or --config FILE."
        )
    };
    let targets = addr
        .to_socket_addrs()
        .map_err(|e| unreachable(e.to_string()))?;
    let mut last = None;
    for target in targets {
        match TcpStream::connect_timeout(&target, CLIENT_TIMEOUT) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(e),
        }
    }
    Err(unreachable(last.map_or_else(
        || "the address resolves to nothing".to_owned(),
        |e| e.to_string(),
    )))
}

/// `GET /plugins` as `sluice plugins` reads it (see
/// `sluice_broker::plugins::Status`).
#[derive(Debug, Deserialize)]
struct StatusView {
    #[serde(default)]
    plugins: Vec<PluginView>,
    #[serde(default)]
    rejected: Vec<RejectedView>,
    #[serde(default)]
    ignored: Vec<IgnoredView>,
    #[serde(default)]
    reloads: u64,
    #[serde(default)]
    compiles: u64,
}

#[derive(Debug, Deserialize)]
struct PluginView {
    name: String,
    file: String,
    sha256: String,
    hooks: Vec<String>,
    calls: u64,
    errors: u64,
    failures: u64,
    traps: u64,
    /// The 99th percentile of its calls' wall time (none before a call,
    /// or from a broker that does not send it).
    #[serde(default)]
    p99_micros: Option<f64>,
    fuel_used: u64,
    instances: u64,
    last_reload: Option<ReloadView>,
}

#[derive(Debug, Deserialize)]
struct RejectedView {
    name: String,
    file: String,
    last_reload: ReloadView,
}

#[derive(Debug, Deserialize)]
struct IgnoredView {
    name: String,
    file: String,
    reason: String,
}

#[derive(Debug, Deserialize)]
struct ReloadView {
    result: String,
    #[serde(default)]
    error: Option<String>,
}

impl ReloadView {
    /// `loaded`, `replaced`, `reconfigured`, `unchanged`, or `failed: ERROR`.
    fn describe(&self) -> String {
        match &self.error {
            Some(error) => format!("{}: {}", self.result, one_line(error)),
            None => self.result.clone(),
        }
    }
}

/// `text` on one line, runs of white space (line breaks included) as one
/// space, for a table cell.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Prints the plugin table, then the rejected and the ignored files.
fn write_status(out: &mut impl Write, status: &StatusView) -> std::io::Result<()> {
    if status.plugins.is_empty() {
        writeln!(out, "no plugins loaded")?;
    } else {
        let rows: Vec<Vec<String>> = status.plugins.iter().map(plugin_row).collect();
        write_table(out, &PLUGIN_COLUMNS, &rows)?;
    }
    if !status.rejected.is_empty() {
        writeln!(out, "\nrejected files (not loaded):")?;
        let rows: Vec<Vec<String>> = status
            .rejected
            .iter()
            .map(|r| vec![r.name.clone(), r.file.clone(), r.last_reload.describe()])
            .collect();
        write_table(out, &REJECTED_COLUMNS, &rows)?;
    }
    if !status.ignored.is_empty() {
        writeln!(out, "\nignored files (not tried):")?;
        let rows: Vec<Vec<String>> = status
            .ignored
            .iter()
            .map(|i| vec![i.name.clone(), i.file.clone(), one_line(&i.reason)])
            .collect();
        write_table(out, &IGNORED_COLUMNS, &rows)?;
    }
    writeln!(
        out,
        "\nreloads: {}, compiles: {}",
        status.reloads, status.compiles
    )
}

/// A column: its heading and whether it holds numbers (right-aligned).
type Column = (&'static str, bool);

const PLUGIN_COLUMNS: [Column; 12] = [
    ("NAME", false),
    ("FILE", false),
    ("SHA256", false),
    ("HOOKS", false),
    ("CALLS", true),
    ("ERRORS", true),
    ("FAILURES", true),
    ("TRAPS", true),
    ("P99", true),
    ("FUEL USED", true),
    ("INSTANCES", true),
    ("LAST RELOAD", false),
];

const REJECTED_COLUMNS: [Column; 3] = [("NAME", false), ("FILE", false), ("ERROR", false)];

const IGNORED_COLUMNS: [Column; 3] = [("NAME", false), ("FILE", false), ("REASON", false)];

fn plugin_row(p: &PluginView) -> Vec<String> {
    vec![
        p.name.clone(),
        p.file.clone(),
        p.sha256.get(..12).unwrap_or(&p.sha256).to_owned(),
        hooks_cell(&p.hooks),
        p.calls.to_string(),
        p.errors.to_string(),
        p.failures.to_string(),
        p.traps.to_string(),
        p.p99_micros.map_or_else(|| "-".to_owned(), duration_cell),
        p.fuel_used.to_string(),
        p.instances.to_string(),
        p.last_reload
            .as_ref()
            .map_or_else(|| "-".to_owned(), ReloadView::describe),
    ]
}

/// A duration in microseconds, in the unit that suits it: `12.3µs`,
/// `4.56ms`, `1.20s`.
fn duration_cell(micros: f64) -> String {
    if micros < 1_000.0 {
        format!("{micros:.1}µs")
    } else if micros < 1_000_000.0 {
        format!("{:.2}ms", micros / 1_000.0)
    } else {
        format!("{:.2}s", micros / 1_000_000.0)
    }
}

/// The hooks, with a hook and its MQTT 5 variant shown once:
/// `auth-on-publish(-m5)`.
fn hooks_cell(hooks: &[String]) -> String {
    let has = |name: &str| hooks.iter().any(|h| h == name);
    hooks
        .iter()
        .filter_map(|h| match h.strip_suffix("-m5") {
            Some(base) if has(base) => None,
            _ if has(&format!("{h}-m5")) => Some(format!("{h}(-m5)")),
            _ => Some(h.clone()),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Writes `rows` under `columns`, each column as wide as its widest cell,
/// two spaces apart; the last column is not padded.
fn write_table(
    out: &mut impl Write,
    columns: &[Column],
    rows: &[Vec<String>],
) -> std::io::Result<()> {
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, (heading, _))| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .chain([heading.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let headings: Vec<String> = columns.iter().map(|(h, _)| (*h).to_owned()).collect();
    for row in std::iter::once(&headings).chain(rows) {
        let mut line = String::new();
        for (i, ((_, numeric), width)) in columns.iter().zip(&widths).enumerate() {
            let cell = row.get(i).map_or("", String::as_str);
            if i > 0 {
                line.push_str("  ");
            }
            let last = i + 1 == columns.len();
            match (numeric, last) {
                (true, _) => line.push_str(&format!("{cell:>width$}")),
                (false, true) => line.push_str(cell),
                (false, false) => line.push_str(&format!("{cell:<width$}")),
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_subcommand_runs_the_broker_with_its_flags() {
        let args =
            Args::try_parse_from(["sluice", "--bind", "127.0.0.1:0", "--allow-anonymous"]).unwrap();
        assert!(args.command.is_none());
        assert!(args.allow_anonymous);
        let args = Args::try_parse_from(["sluice", "plugins", "--admin", "127.0.0.1:9", "--json"])
            .unwrap();
        let Some(Command::Plugins(p)) = args.command else {
            panic!("not the plugins subcommand");
        };
        assert_eq!(p.admin.as_deref(), Some("127.0.0.1:9"));
        assert!(p.json);
        let args = Args::try_parse_from(["sluice", "check-config", "sluice.toml"]).unwrap();
        let Some(Command::CheckConfig(c)) = args.command else {
            panic!("not the check-config subcommand");
        };
        assert_eq!(c.file, PathBuf::from("sluice.toml"));
        assert!(Args::try_parse_from(["sluice", "check-config"]).is_err());
    }

    #[test]
    fn the_admin_address_defaults_to_loopback_8888() {
        let args = PluginsArgs {
            admin: None,
            config: None,
            token_file: None,
            json: false,
        };
        assert_eq!(admin_address(&args).unwrap(), "127.0.0.1:8888");
    }

    #[test]
    fn durations_are_shown_in_their_unit() {
        assert_eq!(duration_cell(12.345), "12.3µs");
        assert_eq!(duration_cell(4_560.0), "4.56ms");
        assert_eq!(duration_cell(1_200_000.0), "1.20s");
    }

    #[test]
    fn mqtt5_variants_share_a_cell_entry() {
        let hooks: Vec<String> = [
            "auth-on-publish",
            "auth-on-publish-m5",
            "on-deliver-m5",
            "auth-on-register",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            hooks_cell(&hooks),
            "auth-on-publish(-m5),on-deliver-m5,auth-on-register"
        );
    }

    #[test]
    fn the_table_is_aligned() {
        let status: StatusView = serde_json::from_str(
            r#"{"plugins":[
                {"name":"auth","file":"/p/auth.wasm","sha256":"0123456789abcdef0123",
                 "hooks":["auth-on-register"],"calls":12,"errors":0,"failures":1,
                 "traps":0,"p99_micros":12.34,"fuel_used":3456,"instances":2,
                 "last_reload":{"result":"failed","error":"bad\nwasm","at":1}},
                {"name":"acl","file":"/p/acl.wasm","sha256":"ff","hooks":[],
                 "calls":3,"errors":0,"failures":0,"traps":0,"fuel_used":0,
                 "instances":1,"last_reload":null}],
              "rejected":[{"name":"x","file":"/p/x.wasm",
                 "last_reload":{"result":"failed","error":"not a component","at":2}}],
              "ignored":[{"name":"ghost","file":"/p/ghost.wasm",
                 "reason":"a dangling symlink: its target /b/ghost.wasm does not exist","at":3}],
              "reloads":4,"compiles":5}"#,
        )
        .unwrap();
        let mut out = Vec::new();
        write_status(&mut out, &status).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("NAME  FILE"), "{text}");
        assert!(
            lines[1].starts_with("auth  /p/auth.wasm  0123456789ab  "),
            "{text}"
        );
        assert!(lines[1].ends_with("failed: bad wasm"), "{text}");
        assert!(lines[2].starts_with("acl   /p/acl.wasm   ff  "), "{text}");
        // Numbers are right-aligned under their heading.
        let calls_end = lines[0].find("CALLS").unwrap() + "CALLS".len();
        assert_eq!(&lines[1][calls_end - 2..calls_end], "12");
        assert_eq!(&lines[2][calls_end - 1..calls_end], "3");
        // The 99th percentile in its unit, or a dash before any call.
        let p99_end = lines[0].find("P99").unwrap() + "P99".len();
        let chars = |line: &str| line.chars().take(p99_end).collect::<String>();
        assert!(chars(lines[1]).ends_with(" 12.3µs"), "{text}");
        assert!(chars(lines[2]).ends_with(" -"), "{text}");
        assert!(
            text.contains("x     /p/x.wasm  failed: not a component"),
            "{text}"
        );
        assert!(
            text.contains(
                "ignored files (not tried):\nNAME   FILE           REASON\n\
                 ghost  /p/ghost.wasm  a dangling symlink: its target /b/ghost.wasm does not exist\n"
            ),
            "{text}"
        );
        assert!(text.ends_with("reloads: 4, compiles: 5\n"), "{text}");
    }
}
