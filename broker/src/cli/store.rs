//! `sluice store stats|dump|compact`: a stopped broker's store, printed
//! (see `sluice_broker::store::inspect`).

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context as _;
use sluice_broker::Config;

/// `sluice store`.
#[derive(Debug, clap::Args)]
pub(crate) struct StoreArgs {
    #[arg(value_enum)]
    action: StoreAction,
    /// The broker's configuration file, to read `persistence.dir` from.
    #[arg(long, value_name = "FILE", conflicts_with = "dir")]
    config: Option<PathBuf>,
    /// The store directory.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum StoreAction {
    Stats,
    Dump,
    Compact,
}

/// `sluice store stats|dump|compact`.
pub(crate) fn run(args: &StoreArgs) -> anyhow::Result<()> {
    use sluice_broker::store::inspect;
    let dir = match (&args.dir, &args.config) {
        (Some(dir), _) => dir.clone(),
        (None, Some(file)) => Config::load(file)?
            .persistence
            .dir
            .with_context(|| format!("{} has no persistence.dir", file.display()))?,
        (None, None) => anyhow::bail!("give the store with --dir DIR or --config FILE"),
    };
    let mut out = std::io::stdout().lock();
    match args.action {
        StoreAction::Stats => {
            let stats = inspect::stats(&dir)?;
            writeln!(out, "store {} (format {})", dir.display(), stats.format)?;
            writeln!(
                out,
                "{:<16} {:>10} {:>14} {:>14}",
                "keyspace", "entries", "key bytes", "value bytes"
            )?;
            for (space, s) in &stats.spaces {
                writeln!(
                    out,
                    "{:<16} {:>10} {:>14} {:>14}",
                    space.name(),
                    s.entries,
                    s.key_bytes,
                    s.value_bytes
                )?;
            }
            writeln!(out, "on disk: {} bytes", stats.disk_bytes)?;
        }
        StoreAction::Dump => inspect::dump(&dir, &mut out)?,
        StoreAction::Compact => {
            let (before, after) = inspect::compact(&dir)?;
            writeln!(
                out,
                "compacted {}: {before} bytes before, {after} after",
                dir.display()
            )?;
        }
    }
    out.flush()?;
    Ok(())
}
