//! The `sluice` executable: command line, logging, signals.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use sluice_broker::{Config, Server};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Sluice: an MQTT 3.1/3.1.1/5.0 broker with sandboxed WebAssembly plugins.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// TOML configuration file (see README.md for every key). Flags below
    /// override it.
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

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("received SIGTERM"),
        _ = int.recv() => tracing::info!("received SIGINT"),
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = load_config(&args)?;
    init_logging(&config.log.level)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let server = Server::bind(config).await?;
        server.run(shutdown_signal()).await;
        anyhow::Ok(())
    })
}
