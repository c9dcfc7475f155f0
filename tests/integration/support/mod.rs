//! Test fixtures: a real broker on 127.0.0.1:0, a raw-packet client for
//! what client libraries cannot express, and rumqttc wrappers.

#![allow(dead_code, reason = "each test module uses a different subset")]

pub mod packets;
pub mod raw;
pub mod rumqtt;

use std::future::Future;
use std::net::SocketAddr;
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
    pub ctx: Arc<Context>,
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
                    let server = Server::bind(config).await.expect("bind");
                    let addr = server.local_addrs()[0];
                    ready_tx
                        .send((addr, server.context().clone()))
                        .expect("test alive");
                    server
                        .run(async {
                            let _ = stop_rx.await;
                        })
                        .await;
                });
            })
            .expect("spawn broker thread");
        let (addr, ctx) = ready_rx.recv().expect("broker started");
        TestBroker {
            addr,
            ctx,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
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
