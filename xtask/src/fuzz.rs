//! `cargo xtask fuzz [TARGET] [--secs N]`: builds the fuzz targets in
//! `fuzz/` (`decode`, `topic`, `config`; cargo-fuzz layout) and runs each
//! for N seconds (default 60) with libFuzzer, seeded from the committed
//! corpus in `fuzz/corpus/TARGET/`. New inputs go to a scratch corpus in
//! `target/fuzz/corpus/TARGET/`, so the committed one does not grow; crash
//! files go to `fuzz/artifacts/TARGET/`, and the run fails naming them.
//! `cargo xtask fuzz --seeds` rewrites the committed corpus (`seeds.rs`).
//!
//! How it builds, on the stable toolchain (no nightly can be installed
//! here): with cargo directly, not through cargo-fuzz. cargo-fuzz works on
//! stable with `--sanitizer none` (it then passes no `-Z` flag), but it
//! puts the coverage instrumentation and `-Ccodegen-units=1` in RUSTFLAGS,
//! for every crate, wasmtime and cranelift included, which the targets
//! never run, and the broker (with the wasmtime code it instantiates) then
//! builds on one core. Instead, the instrumentation (the flags cargo-fuzz
//! passes) is a per-package `rustflags` of the release profile, set only on
//! the crates whose code the targets exercise: the targets, the broker, and
//! the codec and TOML crates under it. That profile key is unstable
//! (`-Zprofile-rustflags`), hence `RUSTC_BOOTSTRAP=1`, which lets stable
//! cargo accept it; nothing else unstable is used, and cargo-fuzz need not
//! be installed. The broker keeps 16 codegen units (a rebuild of it takes
//! 2 minutes here), the crates not instrumented build at opt-level 1. A
//! cold build took 9 to 15 minutes here this way and 18 through
//! cargo-fuzz, on a 2-core machine busy with other builds. No sanitizer: the broker has no
//! unsafe code, and a panic (assertions, with overflow checks and debug
//! assertions on) is what the targets look for. libFuzzer itself is C++
//! built by `libfuzzer-sys`, so a C++ compiler is installed if missing.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::SystemTime;

use anyhow::{Context, Result, bail};

use crate::{cargo, succeeds, tools::apt_install};

mod seeds;

/// The fuzz targets, in the order they run.
pub const TARGETS: [&str; 3] = ["decode", "topic", "config"];

/// Seconds per target for `cargo xtask fuzz`, and in `cargo xtask test`.
const DEFAULT_SECS: u64 = 60;
pub const TEST_SECS: u64 = 20;

/// The crates built with coverage instrumentation: the targets, the broker,
/// and the crates that do the parsing under it (mqttbytes for PUBLISH and
/// the acks, the toml family for the configuration). The crates named here
/// must not have build scripts, which the profile's rustflags would reach.
const INSTRUMENTED: &[&str] = &[
    "sluice-fuzz",
    "sluice-broker",
    "mqttbytes",
    "bytes",
    "toml",
    "toml_parser",
    "toml_datetime",
    "toml_writer",
    "serde_spanned",
    "winnow",
];

/// libFuzzer's coverage instrumentation, as cargo-fuzz 0.13 passes it
/// (`--cfg fuzzing` included).
const SANCOV: &[&str] = &[
    "-Cpasses=sancov-module",
    "-Cllvm-args=-sanitizer-coverage-level=4",
    "-Cllvm-args=-sanitizer-coverage-inline-8bit-counters",
    "-Cllvm-args=-sanitizer-coverage-pc-table",
    "-Cllvm-args=-sanitizer-coverage-trace-compares",
    "-Cllvm-args=-sanitizer-coverage-stack-depth",
    "-Cllvm-args=-simplifycfg-branch-fold-threshold=0",
    "--cfg=fuzzing",
];

/// `cargo xtask fuzz [TARGET] [--secs N] | --seeds`.
pub fn run(root: &Path, args: &[String]) -> Result<()> {
    let usage = "usage: cargo xtask fuzz [decode|topic|config] [--secs N] | --seeds";
    let mut target = None;
    let mut secs = DEFAULT_SECS;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--secs" => {
                let n = args.next().with_context(|| usage.to_owned())?;
                secs = n.parse().with_context(|| format!("--secs {n}: {usage}"))?;
            }
            "--seeds" => {
                let count = seeds::write(root)?;
                eprintln!("xtask: wrote {count} seed files in fuzz/corpus/");
                return Ok(());
            }
            name if target.is_none() && TARGETS.contains(&name) => target = Some(name),
            _ => bail!("{usage}"),
        }
    }
    match target {
        Some(target) => fuzz(root, &[target], secs),
        None => fuzz(root, &TARGETS, secs),
    }
}

/// Builds the targets, then runs each for `secs` seconds; fails at the
/// first that finds a crash.
pub fn fuzz(root: &Path, targets: &[&str], secs: u64) -> Result<()> {
    build(root)?;
    for target in targets {
        run_target(root, target, secs)?;
    }
    Ok(())
}

fn build(root: &Path) -> Result<()> {
    if !succeeds(Command::new("c++").arg("--version")) {
        apt_install(&["g++"])?;
    }
    let started = std::time::Instant::now();
    let mut cmd = cargo();
    cmd.env("RUSTC_BOOTSTRAP", "1")
        .args(["build", "-Zprofile-rustflags", "--release", "--bins"])
        .arg("--manifest-path")
        .arg(root.join("fuzz/Cargo.toml"))
        .arg("--target-dir")
        .arg(root.join("fuzz/target"));
    let sancov = format!("[{}]", quoted(SANCOV));
    let mut config = vec![
        // Assertions and overflow checks in the code under test.
        "profile.release.debug-assertions=true".to_owned(),
        "profile.release.overflow-checks=true".to_owned(),
        "profile.release.debug=\"line-tables-only\"".to_owned(),
        // What the targets do not run is built quickly.
        "profile.release.package.\"*\".opt-level=1".to_owned(),
    ];
    for package in INSTRUMENTED {
        let key = format!("profile.release.package.{package}");
        config.push(format!("{key}.rustflags={sancov}"));
        config.push(format!("{key}.opt-level=3"));
        // One codegen unit, as cargo-fuzz has it (with more, the coverage
        // pass keeps ThinLTO from inlining across units), except for the
        // broker, by far the largest: the targets ran at similar speeds.
        if *package != "sluice-broker" {
            config.push(format!("{key}.codegen-units=1"));
        }
    }
    for c in config {
        cmd.arg("--config").arg(c);
    }
    crate::sh(&mut cmd).context("cannot build the fuzz targets")?;
    eprintln!(
        "xtask: fuzz targets built in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `"a","b"`: TOML strings for an array.
fn quoted(items: &[&str]) -> String {
    items
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(",")
}

/// Runs one target for `secs` seconds. Its output goes to
/// `target/fuzz/TARGET.log`; a summary is printed, and on a crash the end
/// of the log and the crash files.
fn run_target(root: &Path, target: &str, secs: u64) -> Result<()> {
    let binary = root.join("fuzz/target/release").join(target);
    let seeds = root.join("fuzz/corpus").join(target);
    let scratch = root.join("target/fuzz/corpus").join(target);
    let artifacts = root.join("fuzz/artifacts").join(target);
    let log_path = root.join("target/fuzz").join(format!("{target}.log"));
    for dir in [&scratch, &artifacts] {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("cannot create {}", log_path.display()))?;
    eprintln!("xtask: fuzzing {target} for {secs} s");
    let started = SystemTime::now();
    // New inputs are written to the first corpus directory only.
    let status = Command::new(&binary)
        .arg(&scratch)
        .arg(&seeds)
        .arg(format!("-max_total_time={secs}"))
        // An input that takes over 10 s is a hang.
        .arg("-timeout=10")
        .arg("-rss_limit_mb=2048")
        .arg("-print_final_stats=1")
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .stdout(Stdio::null())
        .stderr(log)
        .status()
        .with_context(|| format!("cannot run {}", binary.display()))?;
    let output = std::fs::read_to_string(&log_path).unwrap_or_default();
    if status.success() {
        eprintln!("xtask: fuzz {target}: {}", summary(&output));
        return Ok(());
    }
    let tail: Vec<&str> = output.lines().rev().take(40).collect();
    for line in tail.iter().rev() {
        eprintln!("{line}");
    }
    let found = new_files(&artifacts, started)?;
    if found.is_empty() {
        bail!(
            "fuzz target {target} failed ({status}) without a crash file; log: {}",
            log_path.display()
        );
    }
    let names: Vec<String> = found.iter().map(|p| p.display().to_string()).collect();
    bail!(
        "fuzz target {target} found a crash: {} (reproduce: {} FILE; log: {})",
        names.join(", "),
        binary.display(),
        log_path.display()
    )
}

/// Runs, speed, coverage and new inputs from libFuzzer's final lines.
fn summary(output: &str) -> String {
    let stat = |name: &str| {
        output
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| "?".to_owned())
    };
    // `#N DONE cov: C ft: F corp: ...`
    let coverage = output
        .lines()
        .rev()
        .find_map(|l| l.split_once(" cov: "))
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .unwrap_or("?");
    format!(
        "{} runs ({}/s), coverage {coverage}, {} new inputs, no crash",
        stat("stat::number_of_executed_units:"),
        stat("stat::average_exec_per_sec:"),
        stat("stat::new_units_added:"),
    )
}

/// Files in `dir` modified since `since`.
fn new_files(dir: &Path, since: SystemTime) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let entry = entry.with_context(|| format!("cannot read {}", dir.display()))?;
        let modified = entry.metadata().and_then(|m| m.modified());
        if modified.is_ok_and(|m| m >= since) {
            found.push(entry.path());
        }
    }
    Ok(found)
}
