//! Test fixtures: a real broker on 127.0.0.1:0, a raw-packet client for
//! what client libraries cannot express, and rumqttc wrappers.

#![allow(dead_code, reason = "each test module uses a different subset")]

pub mod hostile;
pub mod http;
pub mod nats;
pub mod packets;
pub mod process;
pub mod raw;
pub mod rumqtt;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sluice_broker::context::Context;
use sluice_broker::{Config, Server};

pub use raw::Raw;

/// Upper bound for anything a test waits for.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A broker running on its own runtime thread, shut down gracefully when
/// dropped.
pub struct TestBroker {
    pub addr: SocketAddr,
    /// Every listener's address, in `Config::listeners` order (`addr` is
    /// the first).
    pub addrs: Vec<SocketAddr>,
    /// The admin endpoint's address, when `admin.bind` is set.
    pub admin: Option<SocketAddr>,
    pub ctx: Arc<Context>,
    /// The broker's runtime (for its task count).
    pub runtime: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The configuration tests start from: one listener on an ephemeral port,
/// anonymous clients allowed, no `$SYS`.
pub fn test_config() -> Config {
    let mut config = Config::default();
    config.server.bind = vec!["127.0.0.1:0".parse().expect("address")];
    config.server.allow_anonymous = true;
    config.server.sys_interval_secs = 0;
    config.server.shutdown_timeout_secs = 3;
    config
}

impl TestBroker {
    /// A broker with [`test_config`].
    pub fn start() -> Self {
        Self::with(|_| {})
    }

    /// A broker with [`test_config`] changed by `tweak`.
    pub fn with(tweak: impl FnOnce(&mut Config)) -> Self {
        match Self::try_with(tweak) {
            Ok(b) => b,
            Err(e) => panic!("broker failed to start: {e}"),
        }
    }

    /// Like [`TestBroker::with`], returning the startup error instead of
    /// panicking (for plugins that must be refused).
    pub fn try_with(tweak: impl FnOnce(&mut Config)) -> Result<Self, String> {
        let mut config = test_config();
        tweak(&mut config);
        config.validate().expect("test config is valid");
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("test-broker".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async move {
                    let server = match Server::bind(config).await {
                        Ok(s) => s,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e.to_string()));
                            return;
                        }
                    };
                    let addrs = server.local_addrs();
                    let admin = server.admin_addr();
                    let handle = tokio::runtime::Handle::current();
                    ready_tx
                        .send(Ok((addrs, admin, server.context().clone(), handle)))
                        .expect("test alive");
                    server
                        .run(async {
                            let _ = stop_rx.await;
                        })
                        .await;
                });
            })
            .expect("spawn broker thread");
        let (addrs, admin, ctx, runtime) = match ready_rx.recv().expect("broker thread answered") {
            Ok(started) => started,
            Err(e) => {
                let _ = thread.join();
                return Err(e);
            }
        };
        Ok(TestBroker {
            addr: addrs[0],
            addrs,
            admin,
            ctx,
            runtime,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Stops the broker and waits for its shutdown to complete.
    pub fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Polls `check` until it holds, panicking with `what` after [`PATIENCE`].
/// For state that has no event to await (counters, registry contents).
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Awaits `fut` for at most [`PATIENCE`].
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(PATIENCE, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out: {what}"),
    }
}

/// The workspace's `target/` directory.
fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target")
}

/// A plugin built by `cargo xtask build-plugins`.
pub fn plugin_wasm(name: &str) -> PathBuf {
    let path = std::env::var_os("SLUICE_PLUGINS")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("plugins"))
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run `cargo xtask build-plugins` (or `cargo xtask test`)",
        path.display()
    );
    path
}

/// A fresh temporary directory, removed when dropped (a panicking test
/// included).
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    /// `sluice-{label}-{pid}-{n}` in the system's temporary directory.
    pub fn new(label: &str) -> Self {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("sluice-{label}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create a temporary directory");
        TempDir { path }
    }

    /// The path of `name` in the directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A temporary plugin directory, removed when dropped.
pub struct PluginDir {
    pub path: PathBuf,
    _dir: TempDir,
}

impl PluginDir {
    pub fn new() -> Self {
        let dir = TempDir::new("plugins");
        PluginDir {
            path: dir.path.clone(),
            _dir: dir,
        }
    }

    /// Copies the built plugin `plugin` in as `file.wasm`.
    pub fn add(&self, file: &str, plugin: &str) -> &Self {
        std::fs::copy(plugin_wasm(plugin), self.path.join(format!("{file}.wasm")))
            .expect("copy plugin");
        self
    }

    /// Writes arbitrary bytes as `file.wasm`.
    pub fn write(&self, file: &str, bytes: &[u8]) -> &Self {
        std::fs::write(self.path.join(format!("{file}.wasm")), bytes).expect("write plugin");
        self
    }

    /// Points `config` at this directory (with a compile cache shared by
    /// all tests).
    pub fn configure(&self, config: &mut Config) {
        config.plugins.dir = Some(self.path.clone());
        config.plugins.cache_dir = Some(target_dir().join("test-plugin-cache"));
    }
}

/// Sets `[plugin.NAME.config]` entries.
pub fn plugin_config(config: &mut Config, name: &str, pairs: &[(&str, &str)]) {
    let section = config.plugin.entry(name.to_owned()).or_default();
    for (k, v) in pairs {
        section.config.insert(
            (*k).to_owned(),
            sluice_broker::config::ConfigValue::Text((*v).to_owned()),
        );
    }
}
