//! Tools the other commands need, installed on demand: the wasm target,
//! Debian packages, a Python virtualenv, rumqttd (built with cargo into
//! `target/tools`); and the plugin build.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

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

/// The rumqttd release (bytebeamio/rumqtt) the benchmarks run beside Sluice.
pub const RUMQTTD: &str = "0.20.0";

/// rumqttd's own `Cargo.lock` pins metrics 0.22.1, which current Rust
/// refuses (E0521, a raw-pointer cast that extended a lifetime,
/// rust-lang/rust#141402); this patch release of the same line builds.
/// The only change made to that lock: `cargo update --precise` moves
/// metrics, and the ahash and zerocopy it needs (0.8.12 and 0.8.27 when
/// this was written); every other version stays as rumqttd locked it.
const RUMQTTD_METRICS: &str = "0.22.4";

/// rumqttd [`RUMQTTD`] in `target/tools/bin` (unless it is there already):
/// its crate source, its own `Cargo.lock` with metrics at
/// [`RUMQTTD_METRICS`], `cargo install --locked` with its default
/// features. Returns the binary.
pub fn install_rumqttd(root: &Path) -> Result<PathBuf> {
    let tools = root.join("target/tools");
    let bin = rumqttd_bin(root);
    let installed = Command::new(&bin).arg("--version").output();
    if installed
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == format!("rumqttd {RUMQTTD}"))
    {
        return Ok(bin);
    }
    eprintln!(
        "xtask: installing rumqttd {RUMQTTD} into {}",
        tools.display()
    );
    let source = rumqttd_source(&tools)?;
    let manifest = source.join("Cargo.toml");
    sh(cargo()
        .args([
            "update",
            "--package",
            "metrics",
            "--precise",
            RUMQTTD_METRICS,
        ])
        .arg("--manifest-path")
        .arg(&manifest))?;
    sh(cargo()
        .args(["install", "--locked", "--path"])
        .arg(&source)
        .arg("--root")
        .arg(&tools)
        .arg("--target-dir")
        .arg(tools.join("build")))
    .with_context(|| format!("cannot build rumqttd {RUMQTTD}"))?;
    Ok(bin)
}

/// Where [`install_rumqttd`] puts rumqttd.
pub fn rumqttd_bin(root: &Path) -> PathBuf {
    root.join("target/tools/bin/rumqttd")
}

/// A copy of rumqttd's published crate (with its `Cargo.lock`) in
/// `target/tools/src`: cargo downloads it as the dependency of a
/// throwaway manifest, and `cargo metadata` says where it put it. The copy
/// is made a workspace of its own, so that the project's workspace around
/// it does not claim it.
fn rumqttd_source(tools: &Path) -> Result<PathBuf> {
    let fetch = tools.join("rumqttd-fetch");
    std::fs::create_dir_all(fetch.join("src")).context("cannot create target/tools")?;
    std::fs::write(
        fetch.join("Cargo.toml"),
        format!(
            "[package]\nname = \"rumqttd-fetch\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\n\
             [dependencies]\nrumqttd = \"={RUMQTTD}\"\n\n[workspace]\n"
        ),
    )?;
    std::fs::write(fetch.join("src/lib.rs"), "")?;
    let out = cargo()
        .args(["metadata", "--format-version", "1", "--manifest-path"])
        .arg(fetch.join("Cargo.toml"))
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("cannot run cargo metadata")?;
    if !out.status.success() {
        bail!("cargo metadata could not fetch rumqttd {RUMQTTD}");
    }
    let json = String::from_utf8_lossy(&out.stdout);
    let wanted = format!("/rumqttd-{RUMQTTD}/Cargo.toml");
    let manifest = json
        .split("\"manifest_path\":\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .find(|path| path.ends_with(&wanted))
        .with_context(|| format!("cargo metadata does not list rumqttd {RUMQTTD}"))?;
    let from = Path::new(manifest).parent().context("no crate directory")?;
    let to = tools.join(format!("src/rumqttd-{RUMQTTD}"));
    let _ = std::fs::remove_dir_all(&to);
    std::fs::create_dir_all(tools.join("src"))?;
    sh(Command::new("cp").arg("-R").arg(from).arg(&to))?;
    let mut text = std::fs::read_to_string(to.join("Cargo.toml"))?;
    text.push_str("\n[workspace]\n");
    std::fs::write(to.join("Cargo.toml"), text)?;
    Ok(to)
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
