//! Tools the other commands need, installed on demand: the wasm target,
//! Debian packages, a Python virtualenv; and the plugin build.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::{cargo, sh, succeeds};

/// Cargo workspaces of wasm plugins, built for wasm32-wasip2.
const PLUGIN_WORKSPACES: &[&str] = &["tests/plugins", "example-plugins"];

/// paho-mqtt version the Python client tests use.
const PAHO: &str = "paho-mqtt==2.1.0";

/// Builds every plugin workspace and copies the components to
/// `target/plugins/NAME.wasm` (crate name, `_` as `-`).
pub fn build_plugins(root: &Path) -> Result<()> {
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
    count += crate::langs::build_all(root, &out)?;
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
pub fn install_mosquitto_clients() -> Result<()> {
    if succeeds(
        Command::new("sh").args(["-c", "command -v mosquitto_sub && command -v mosquitto_pub"]),
    ) {
        return Ok(());
    }
    apt_install(&["mosquitto-clients"])
}

pub fn apt_install(packages: &[&str]) -> Result<()> {
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
pub fn python_with_paho(root: &Path) -> Result<PathBuf> {
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

/// Debian's mosquitto broker, for the side-by-side benchmarks.
pub fn install_mosquitto() -> Result<()> {
    if succeeds(
        Command::new("sh").args(["-c", "command -v mosquitto || test -x /usr/sbin/mosquitto"]),
    ) {
        return Ok(());
    }
    apt_install(&["mosquitto"])
}

/// nats-server (Debian's), for the cluster tests.
pub fn install_nats_server() -> Result<()> {
    if succeeds(Command::new("sh").args(["-c", "command -v nats-server"])) {
        return Ok(());
    }
    apt_install(&["nats-server"])
}

/// The inputs of a non-Rust example plugin whose sources are in `dir`: the
/// files directly in it (not its Markdown, nor generated directories such
/// as `__pycache__`) and every file of the WIT package in `wit/`.
pub fn plugin_inputs(root: &Path, dir: &Path) -> Result<Vec<PathBuf>> {
    let mut inputs = Vec::new();
    for d in [dir, &root.join("wit")] {
        for entry in std::fs::read_dir(d).with_context(|| format!("cannot read {}", d.display()))? {
            let path = entry
                .with_context(|| format!("cannot read {}", d.display()))?
                .path();
            if path.is_file() && path.extension().is_none_or(|e| e != "md") {
                inputs.push(path);
            }
        }
    }
    Ok(inputs)
}

/// Whether `output` exists and is newer than every one of `inputs`.
pub fn up_to_date(output: &Path, inputs: &[PathBuf]) -> Result<bool> {
    let Ok(built) = std::fs::metadata(output).and_then(|m| m.modified()) else {
        return Ok(false);
    };
    for input in inputs {
        let changed = std::fs::metadata(input)
            .and_then(|m| m.modified())
            .with_context(|| format!("cannot read the time of {}", input.display()))?;
        if changed >= built {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Prints the size of a freshly built plugin and how long it took.
pub fn report_built(path: &Path, started: std::time::Instant) -> Result<()> {
    let size = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    eprintln!(
        "xtask: built {} ({:.1} MB) in {:.1} s",
        path.display(),
        size as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
