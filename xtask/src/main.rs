//! `cargo xtask`: the project's build system (cargo-xtask pattern).
//!
//! - `cargo xtask run [-- ARGS]`: build the broker in release mode and run it
//!   with `config/sluice.toml` (extra arguments go to `sluice`).
//! - `cargo xtask build-plugins`: build the wasm plugins (test fixtures in
//!   `tests/plugins`) for wasm32-wasip2 into `target/plugins/`, installing
//!   the target if missing. Incremental: unchanged plugins are not rebuilt.
//! - `cargo xtask test`: install what the tests need (the wasm target,
//!   Debian's mosquitto-clients, paho-mqtt in a project-local virtualenv),
//!   build the plugins, then check formatting and lints and run the whole
//!   test suite.
//!
//! - `cargo xtask bench`: the criterion benchmarks (plugin hook cost,
//!   connect rate with and without a plugin chain, plugin start-up), then a
//!   summary of the figures the project's goals refer to.
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

const USAGE: &str = "usage: cargo xtask <run [-- ARGS...] | test | build-plugins | bench>";

/// Cargo workspaces of wasm plugins, built for wasm32-wasip2.
const PLUGIN_WORKSPACES: &[&str] = &["tests/plugins"];

/// paho-mqtt version the Python client tests use.
const PAHO: &str = "paho-mqtt==2.1.0";

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
    env::set_current_dir(&root).context("cannot enter the project root")?;
    match args.next().as_deref() {
        Some("run") => {
            let rest: Vec<String> = args.skip_while(|a| a == "--").collect();
            run(&root, &rest)
        }
        Some("test") => test(&root),
        Some("build-plugins") => build_plugins(&root),
        Some("bench") => bench(&root),
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
fn sh(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn cargo() -> Command {
    Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()))
}

fn run(root: &Path, args: &[String]) -> Result<()> {
    sh(cargo().args([
        "build",
        "--release",
        "--package",
        "sluice-broker",
        "--bin",
        "sluice",
    ]))?;
    let config = root.join("config/sluice.toml");
    eprintln!("xtask: starting sluice with {}", config.display());
    sh(Command::new(root.join("target/release/sluice"))
        .arg("--config")
        .arg(&config)
        .args(args))
}

fn test(root: &Path) -> Result<()> {
    install_mosquitto_clients()?;
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
    sh(cargo()
        .args(["test", "--workspace"])
        .env("SLUICE_PYTHON", &python))?;
    Ok(())
}

fn bench(root: &Path) -> Result<()> {
    build_plugins(root)?;
    sh(cargo().args(["bench", "-p", "sluice-broker", "--bench", "hooks"]))?;
    let median = |name: &str| -> Result<f64> {
        let path = root.join(format!("target/criterion/{name}/new/estimates.json"));
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        // {"mean":{...},"median":{"confidence_interval":{...},"point_estimate":N,...
        let at = text.find("\"median\"").context("no median in estimates")?;
        let rest = &text[at..];
        let p = rest
            .find("\"point_estimate\":")
            .context("no point estimate")?;
        let num: String = rest[p + 17..]
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == 'e' || *c == '-')
            .collect();
        Ok(num.parse::<f64>()? / 1000.0)
    };
    let trivial = median("hook/trivial")?;
    let chain5 = median("hook/chain-5")?;
    let none = median("connect/no-plugins")?;
    let chain3 = median("connect/chain-3")?;
    let load = median("load/20-cached")?;
    println!();
    println!("| measurement | median | goal |");
    println!("|---|---|---|");
    println!("| trivial hook through the chain | {trivial:.2} µs | ≤ 1 µs |");
    println!("| 5-plugin chain (4 × next, ok) | {chain5:.2} µs | — |");
    println!(
        "| CONNECT→CONNACK, no plugins | {none:.1} µs ({:.0}/s) | — |",
        1e6 / none
    );
    println!(
        "| CONNECT→CONNACK, 3-plugin chain | {chain3:.1} µs ({:.0}/s) | — |",
        1e6 / chain3
    );
    println!(
        "| connect rate, chain / none | {:.2} | ≥ 0.9 |",
        none / chain3
    );
    println!(
        "| start-up, 20 cached plugins | {:.1} ms | milliseconds |",
        load / 1000.0
    );
    Ok(())
}

/// Builds every plugin workspace and copies the components to
/// `target/plugins/NAME.wasm` (crate name, `_` as `-`).
fn build_plugins(root: &Path) -> Result<()> {
    ensure_wasm_target()?;
    let wasm_target = root.join("target/wasm");
    let out = root.join("target/plugins");
    std::fs::create_dir_all(&out).context("cannot create target/plugins")?;
    for ws in PLUGIN_WORKSPACES {
        sh(cargo()
            .args([
                "build",
                "--release",
                "--target",
                "wasm32-wasip2",
                "--manifest-path",
            ])
            .arg(root.join(ws).join("Cargo.toml"))
            .env("CARGO_TARGET_DIR", &wasm_target))
        .with_context(|| format!("cannot build the plugins in {ws}"))?;
    }
    let built = wasm_target.join("wasm32-wasip2/release");
    let mut count = 0;
    for entry in
        std::fs::read_dir(&built).with_context(|| format!("cannot read {}", built.display()))?
    {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if let Some(stem) = name.strip_suffix(".wasm") {
            let dest = out.join(format!("{}.wasm", stem.replace('_', "-")));
            copy_if_changed(&path, &dest)?;
            count += 1;
        }
    }
    eprintln!("xtask: {count} plugins in {}", out.display());
    Ok(())
}

fn copy_if_changed(from: &Path, to: &Path) -> Result<()> {
    let new = std::fs::read(from).with_context(|| format!("cannot read {}", from.display()))?;
    if std::fs::read(to).is_ok_and(|old| old == new) {
        return Ok(());
    }
    std::fs::write(to, new).with_context(|| format!("cannot write {}", to.display()))
}

/// The wasm32-wasip2 standard library, through rustup.
fn ensure_wasm_target() -> Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("rustup is needed to add the wasm32-wasip2 target")?;
    if String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|l| l.trim() == "wasm32-wasip2")
    {
        return Ok(());
    }
    eprintln!("xtask: installing the wasm32-wasip2 target");
    sh(Command::new("rustup").args(["target", "add", "wasm32-wasip2"]))
}

/// Debian's mosquitto-clients (`mosquitto_pub`, `mosquitto_sub`).
fn install_mosquitto_clients() -> Result<()> {
    if succeeds(
        Command::new("sh").args(["-c", "command -v mosquitto_sub && command -v mosquitto_pub"]),
    ) {
        return Ok(());
    }
    apt_install(&["mosquitto-clients"])
}

fn apt_install(packages: &[&str]) -> Result<()> {
    eprintln!(
        "xtask: installing {} from Debian's packages",
        packages.join(" ")
    );
    let root = succeeds(Command::new("sh").args(["-c", "[ \"$(id -u)\" = 0 ]"]));
    let sudo: &[&str] = if root { &[] } else { &["sudo"] };
    let apt = |args: &[&str]| {
        let mut all: Vec<&str> = sudo.to_vec();
        all.push("apt-get");
        all.extend_from_slice(args);
        let mut cmd = Command::new(all[0]);
        cmd.args(&all[1..]).env("DEBIAN_FRONTEND", "noninteractive");
        cmd
    };
    sh(&mut apt(&["update", "-qq"]))?;
    let mut install = vec!["install", "-y", "-qq", "--no-install-recommends"];
    install.extend_from_slice(packages);
    sh(&mut apt(&install)).with_context(|| format!("cannot install {}", packages.join(" ")))
}

/// A project-local virtualenv with paho-mqtt; returns its python.
fn python_with_paho(root: &Path) -> Result<PathBuf> {
    let venv = root.join("target/tools/venv");
    let python = venv.join("bin/python");
    if !python.exists() {
        eprintln!("xtask: creating {}", venv.display());
        sh(Command::new("python3").args(["-m", "venv"]).arg(&venv))
            .context("cannot create a Python virtualenv (is python3-venv installed?)")?;
    }
    if !succeeds(Command::new(&python).args(["-c", "import paho.mqtt.client"])) {
        eprintln!("xtask: installing {PAHO}");
        sh(Command::new(&python).args(["-m", "pip", "install", "--quiet", PAHO]))?;
    }
    Ok(python)
}
