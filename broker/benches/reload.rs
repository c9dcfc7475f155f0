//! Hot reload: the time from a new version of a plugin being renamed into
//! the watched plugin directory to that version answering calls, for a
//! small Rust plugin (the topic-acl example) and for the Python example
//! plugin (python-allowlist, an 18 MB component carrying an interpreter).
//!
//! Each iteration writes `.p.wasm.tmp` (a hidden file, which the watcher
//! ignores), starts the clock, renames it to `p.wasm`, and polls every
//! millisecond until `Plugins::get("p")` has the new file's SHA-256. The
//! watcher runs with its default settings (inotify, 100 ms debounce, then
//! 100 ms of stable size and mtime), so a reload costs at least the
//! debounce. Every new version is the original bytes plus a component
//! custom section holding a nonce: a file never seen before, so the
//! artifact cache (a fresh directory per run) misses and Cranelift compiles
//! it, except in `reload/rust-small-cached`, which switches between two
//! versions already compiled.
//!
//! Every sample is one reload (flat sampling, a tiny measurement time), so
//! criterion's samples are the individual reload times and its "Unable to
//! complete N samples" warning is expected. Between reloads the bench waits
//! for the watcher to go idle, outside the timing.
//!
//! Needs the plugins built by `cargo xtask build-plugins`; run through
//! `cargo xtask bench`, which puts the figures in BENCHMARKS.md.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use sha2::{Digest, Sha256};
use sluice_broker::config::{Config, ConfigValue};
use sluice_broker::plugins::Plugins;

/// How long one reload may take before the bench gives up.
const TIMEOUT: Duration = Duration::from_secs(300);

/// Pause after each reload, outside the timing, so that the watcher is idle
/// (no debounce running, no trailing reload) when the next file arrives.
const SETTLE: Duration = Duration::from_millis(300);

/// python-allowlist's users: alice / "secret", bob / "hunter2".
const USERS: &str = "alice:pepper:744a9101f7182a6ae0d978121ff74e33cac8d2832579c0637c1c37e9bbb6c065, \
                     bob:s2:f6d3aad70dc81be193d9e4e4b48abe8719f8dfea1ab7186589495656e050f650";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn leb128(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// `wasm` with a custom section `sluice-bench` holding `nonce` appended (a
/// component may end with custom sections): same code, new hash.
fn with_nonce(wasm: &[u8], nonce: &str) -> Vec<u8> {
    let name = b"sluice-bench";
    let mut body = Vec::new();
    leb128(name.len(), &mut body);
    body.extend_from_slice(name);
    body.extend_from_slice(nonce.as_bytes());
    let mut out = wasm.to_vec();
    out.push(0);
    leb128(body.len(), &mut out);
    out.extend_from_slice(&body);
    out
}

/// One watched plugin directory holding `p.wasm`, and its plugins.
struct Reloading {
    rt: tokio::runtime::Runtime,
    plugins: Arc<Plugins>,
    root: PathBuf,
    dir: PathBuf,
    cache: PathBuf,
    original: Vec<u8>,
    tag: String,
    versions: u64,
}

impl Reloading {
    /// Loads the built `plugin` as `p` with `config`, from a new directory
    /// and with a new (empty) artifact cache, watching the directory.
    fn new(tag: &str, plugin: &str, config: &[(&str, &str)]) -> Self {
        let src = workspace().join(format!("target/plugins/{plugin}.wasm"));
        let original = std::fs::read(&src).expect("run `cargo xtask build-plugins` first");
        let root =
            std::env::temp_dir().join(format!("sluice-bench-reload-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let (dir, cache) = (root.join("plugins"), root.join("cache"));
        std::fs::create_dir_all(&dir).expect("bench plugin dir");
        std::fs::write(dir.join("p.wasm"), &original).expect("write plugin");
        let mut c = Config::default();
        c.plugin.entry("p".to_owned()).or_default().config.extend(
            config
                .iter()
                .map(|(k, v)| ((*k).to_owned(), ConfigValue::Text((*v).into()))),
        );
        c.plugins.dir = Some(dir.clone());
        c.plugins.cache_dir = Some(cache.clone());
        c.log.level = "error".into();
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let plugins = rt.block_on(Plugins::load(&c)).expect("plugins load");
        eprintln!(
            "reload/{tag}: {plugin}.wasm, {} bytes (+{} bytes of custom section per version)",
            original.len(),
            with_nonce(&[], &format!("{}-{:019}-{:03}", std::process::id(), 0, 0)).len()
        );
        Reloading {
            rt,
            plugins,
            root,
            dir,
            cache,
            original,
            tag: tag.to_owned(),
            versions: 0,
        }
    }

    /// A version of the plugin never written before.
    fn new_version(&mut self) -> Vec<u8> {
        self.versions += 1;
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        with_nonce(
            &self.original,
            &format!("{}-{now:019}-{:03}", std::process::id(), self.versions),
        )
    }

    fn compiles(&self) -> u64 {
        self.plugins.status().compiles
    }

    /// Writes `wasm` as the plugin and returns the time from the rename
    /// into place to its being active; then waits for the watcher to go
    /// idle.
    fn swap_in(&self, wasm: &[u8]) -> Duration {
        let hash = sha256_hex(wasm);
        let tmp = self.dir.join(".p.wasm.tmp");
        std::fs::write(&tmp, wasm).expect("write new version");
        let started = Instant::now();
        std::fs::rename(&tmp, self.dir.join("p.wasm")).expect("rename into place");
        let took = self.rt.block_on(async {
            loop {
                if self.plugins.get("p").is_some_and(|p| p.hash == hash) {
                    return started.elapsed();
                }
                assert!(
                    started.elapsed() < TIMEOUT,
                    "reload/{}: the new version was not active after {TIMEOUT:?}: {:?}",
                    self.tag,
                    self.plugins.status().rejected
                );
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        std::thread::sleep(SETTLE);
        took
    }

    /// Deletes the compiled artifacts (those of a large plugin fill the
    /// disk quickly); every version is new anyway.
    fn clear_cache(&self) {
        if let Ok(entries) = std::fs::read_dir(&self.cache) {
            for e in entries.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

impl Drop for Reloading {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Times `iters` reloads of never-compiled versions, checking that each
/// one compiled.
fn uncached(r: &mut Reloading, iters: u64, clear: bool) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let wasm = r.new_version();
        let before = r.compiles();
        total += r.swap_in(&wasm);
        assert_eq!(r.compiles(), before + 1, "a new version compiles once");
        if clear {
            r.clear_cache();
        }
    }
    total
}

fn reload(c: &mut Criterion) {
    let mut group = c.benchmark_group("reload");
    group.sampling_mode(SamplingMode::Flat);
    // One warm-up reload, then one reload per sample.
    group.warm_up_time(Duration::from_millis(1));
    group.measurement_time(Duration::from_millis(1));

    let mut small = Reloading::new("rust-small", "topic-acl", &[("publish", "bench/#")]);
    group.sample_size(20);
    group.bench_function("rust-small", |b| {
        b.iter_custom(|iters| uncached(&mut small, iters, false))
    });
    // Two versions in the artifact cache, swapped in turn.
    let versions = [small.new_version(), small.new_version()];
    for v in &versions {
        small.swap_in(v);
    }
    let mut next = 0;
    group.bench_function("rust-small-cached", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let before = small.compiles();
                total += small.swap_in(&versions[next]);
                assert_eq!(
                    small.compiles(),
                    before,
                    "a cached version compiles nothing"
                );
                next = 1 - next;
            }
            total
        })
    });
    drop(small);

    let mut python = Reloading::new("python", "python-allowlist", &[("users", USERS)]);
    python.clear_cache();
    group.sample_size(10);
    group.bench_function("python", |b| {
        b.iter_custom(|iters| uncached(&mut python, iters, true))
    });
    drop(python);
    group.finish();
}

criterion_group!(benches, reload);
criterion_main!(benches);
