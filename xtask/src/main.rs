//! `cargo xtask`: the project's build system (cargo-xtask pattern).
//!
//! - `cargo xtask run [-- ARGS]`: build the broker in release mode and run it
//!   with `config/sluice.toml` (extra arguments go to `sluice`).
//! - `cargo xtask test`: install what the tests need (Debian's
//!   mosquitto-clients, paho-mqtt in a project-local virtualenv), then check
//!   formatting and lints and run the whole test suite.
//!
//! Both work on a fresh machine: every tool they need is installed here,
//! nowhere else.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};

const USAGE: &str = "usage: cargo xtask <run [-- ARGS...] | test>";

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
