//! `cargo xtask`: the project's build system (cargo-xtask pattern).
//!
//! - `cargo xtask run [-- ARGS]`: build the plugins and the broker (release)
//!   and run it with `config/sluice.toml` and the example plugins
//!   `topic-acl` and `payload-transform` loaded from `target/run-plugins/`
//!   (extra arguments go to `sluice`).
//! - `cargo xtask build-plugins`: build the wasm plugins (test fixtures in
//!   `tests/plugins`, examples in `example-plugins`) for wasm32-wasip2 into
//!   `target/plugins/`, installing
//!   the target if missing. Incremental: unchanged plugins are not rebuilt.
//! - `cargo xtask test`: install what the tests need (the wasm target,
//!   Debian's mosquitto-clients, paho-mqtt in a project-local virtualenv),
//!   build the plugins, then check formatting and lints and run the whole
//!   test suite (and the example plugins' unit tests on the host), then
//!   each fuzz target for 20 seconds.
//! - `cargo xtask fuzz [decode|topic|config] [--secs N]`: build the fuzz
//!   targets in `fuzz/` and run one (or each) for N seconds (default 60)
//!   from the committed seed corpus; fails naming the crash file if one is
//!   found. `--seeds` rewrites the seed corpus.
//!
//! - `cargo xtask bench [--quick]`: Sluice side by side with mosquitto
//!   and rumqttd under the `loadgen` scenarios (and the default-settings
//!   burst), the soak (normal clients without and
//!   with hostile ones), the stuck plugin, then the criterion
//!   micro-benchmarks; writes
//!   `BENCHMARKS.md`. `--quick` runs short scenarios and skips criterion
//!   (about three minutes); `--soak-only` runs only the soak and
//!   replaces only its section of `BENCHMARKS.md`; `--stuck-only` does the
//!   same for the stuck plugin (unrelated clients' round trips while
//!   clients keep a plugin spinning), `--persist-only` for durability (QoS
//!   1 fan-in to a persistent session with each `[persistence] durability`
//!   beside mosquitto; recovery of 100,000 sessions holding 1,000,000
//!   messages), `--cluster-only` for the cluster (publisher on one node,
//!   subscriber on another, against one node).
//!
//! - `cargo xtask passwd [--iterations N] FILE USER [PASSWORD]`: adds or
//!   updates USER's line in the password file FILE of the `password-file`
//!   example plugin (password from standard input when not given).
//! - `cargo xtask new-plugin NAME [--lang rust|python|js|c] [--dir DIR]`: a
//!   ready-to-build plugin in `example-plugins/NAME/` from the templates in
//!   `xtask/templates/`, or with `--dir` a standalone project in DIR with
//!   its own `build.sh`.
//! - `cargo xtask sync-wit [--check]`: copies `wit/` into the plugin SDK's
//!   crates (`plugin-sdk/wit/`, `plugin-sdk/macros/wit/`), which build from
//!   their own copy; `--check` fails on a difference instead.
//!
//! All of them work on a fresh machine: every tool they need is installed here,
//! nowhere else.

#![allow(
    clippy::print_stdout,
    reason = "xtask reports its results on the terminal"
)]

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};

mod bench;
mod cluster;
mod fuzz;
mod langs;
mod new_plugin;
mod passwd;
mod sync_wit;
mod tools;

use tools::{build_plugins, install_mosquitto_clients, install_nats_server, python_with_paho};

const USAGE: &str = "usage: cargo xtask <run [-- ARGS...] | cluster [N] | test | fuzz [TARGET] [--secs N] | build-plugins | bench [--quick] [--micro-only | --soak-only | --stuck-only | --persist-only | --cluster-only | --acl-deliver-only | --webhook-only | --burst-only] | passwd [--iterations N] FILE USER [PASSWORD] | new-plugin NAME [--lang rust|python|js|c] [--dir DIR] | sync-wit [--check]>";

fn main() -> ExitCode {
    match try_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn try_main() -> Result<()> {
    let mut args = env::args().skip(1);
    let root = project_root();
    // Where `cargo xtask` was run: `passwd` resolves its FILE from there.
    let invoked_in = env::current_dir().unwrap_or_else(|_| root.clone());
    env::set_current_dir(&root).context("cannot enter the project root")?;
    match args.next().as_deref() {
        Some("run") => {
            let rest: Vec<String> = args.skip_while(|a| a == "--").collect();
            run(&root, &rest)
        }
        Some("cluster") => cluster::run(&root, &args.collect::<Vec<_>>()),
        Some("test") => test(&root),
        Some("fuzz") => fuzz::run(&root, &args.collect::<Vec<_>>()),
        Some("build-plugins") => build_plugins(&root),
        Some("bench") => bench::run(&root, &args.collect::<Vec<_>>()),
        Some("passwd") => passwd::run(&invoked_in, &args.collect::<Vec<_>>()),
        Some("new-plugin") => new_plugin::run(&root, &invoked_in, &args.collect::<Vec<_>>()),
        Some("sync-wit") => sync_wit::run(&root, &args.collect::<Vec<_>>()),
        _ => bail!("{USAGE}"),
    }
}

fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Runs a command, failing with its command line if it fails.
pub(crate) fn sh(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

pub(crate) fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub(crate) fn cargo() -> Command {
    Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()))
}

/// The example plugins `cargo xtask run` loads, as (built file, name in
/// the plugin directory); `config/sluice.toml` configures them by name.
const RUN_PLUGINS: &[(&str, &str)] = &[("topic-acl", "acl"), ("payload-transform", "stamp")];

/// Builds `target/release/sluice`.
pub(crate) fn build_sluice() -> Result<()> {
    sh(cargo().args([
        "build",
        "--release",
        "--package",
        "sluice-broker",
        "--bin",
        "sluice",
    ]))
}

fn run(root: &Path, args: &[String]) -> Result<()> {
    build_plugins(root)?;
    let plugins = root.join("target/run-plugins");
    let _ = std::fs::remove_dir_all(&plugins);
    std::fs::create_dir_all(&plugins).context("cannot create target/run-plugins")?;
    for (built, name) in RUN_PLUGINS {
        std::fs::copy(
            root.join(format!("target/plugins/{built}.wasm")),
            plugins.join(format!("{name}.wasm")),
        )
        .with_context(|| format!("cannot copy {built}.wasm"))?;
    }
    build_sluice()?;
    let config = root.join("config/sluice.toml");
    eprintln!(
        "xtask: starting sluice with {} and the example plugins in {}",
        config.display(),
        plugins.display()
    );
    sh(Command::new(root.join("target/release/sluice"))
        .arg("--config")
        .arg(&config)
        .arg("--plugins")
        .arg(&plugins)
        .args(args))
}

fn test(root: &Path) -> Result<()> {
    // The plugin SDK builds from its own copy of the WIT: it must be wit/.
    sync_wit::run(root, &["--check".to_owned()])?;
    install_mosquitto_clients()?;
    install_nats_server()?;
    let python = python_with_paho(root)?;
    build_plugins(root)?;
    sh(cargo().args(["fmt", "--all", "--", "--check"]))?;
    sh(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    // SLUICE_XTASK: the integration tests run `new-plugin` with this binary.
    sh(cargo()
        .args(["test", "--workspace"])
        .env("SLUICE_PYTHON", &python)
        .env(
            "SLUICE_XTASK",
            env::current_exe().context("cannot find the xtask binary")?,
        ))?;
    // The example plugins' pure logic, unit-tested on the host.
    sh(cargo()
        .arg("test")
        .arg("--manifest-path")
        .arg(root.join("example-plugins/Cargo.toml"))
        .env("CARGO_TARGET_DIR", root.join("target/example-plugins-host")))?;
    // A short run of each fuzz target, from the committed seeds.
    fuzz::fuzz(root, &fuzz::TARGETS, fuzz::TEST_SECS)?;
    Ok(())
}
