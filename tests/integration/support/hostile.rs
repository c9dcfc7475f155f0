//! Helpers for the hostile-client tests: brokers configured from TOML text
//! (so a test can name keys such as `[limits]` without the Rust `Config`
//! having the field), RSS watching of the real binary, deep topics,
//! SUBSCRIBE packets of many filters, `/metrics` scraping, and sockets that
//! stop reading.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::process::Sluice;
use super::{PATIENCE, Raw, TestBroker, test_config, within};
use sluice_broker::Config;

/// `text` parsed as a configuration file, with the test defaults of
/// [`test_config`] for the listener, anonymous access, `$SYS` and the
/// shutdown timeout on top. Panics (naming the key) if the broker refuses
/// the file: on a broker without a key the test names, that is the test's
/// failure.
pub fn toml_config(text: &str) -> Config {
    let mut config = Config::parse(text)
        .unwrap_or_else(|e| panic!("the broker refused the configuration {text:?}: {e}"));
    let defaults = test_config();
    config.server.bind = defaults.server.bind;
    config.server.allow_anonymous = defaults.server.allow_anonymous;
    config.server.sys_interval_secs = defaults.server.sys_interval_secs;
    config.server.shutdown_timeout_secs = defaults.server.shutdown_timeout_secs;
    config
}

/// An in-process broker configured by the TOML `text` (see
/// [`toml_config`]), then changed by `tweak`.
pub fn toml_broker(text: &str, tweak: impl FnOnce(&mut Config)) -> TestBroker {
    let mut parsed = toml_config(text);
    tweak(&mut parsed);
    TestBroker::with(move |c| *c = parsed)
}

/// A configuration file in the temporary directory, removed when dropped.
pub struct ConfigFile {
    pub path: PathBuf,
}

impl ConfigFile {
    pub fn new(text: &str) -> ConfigFile {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("sluice-hostile-{}-{n}.toml", std::process::id()));
        std::fs::write(&path, text).expect("write config file");
        ConfigFile { path }
    }

    pub fn arg(&self) -> &str {
        self.path.to_str().expect("utf-8 temp path")
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The real `sluice` binary with the configuration file `text`, bound to
/// 127.0.0.1:0 with anonymous clients allowed (flags override the file).
/// A file the broker refuses makes `Sluice::start` panic with its log.
pub fn sluice_with_toml(text: &str) -> (Sluice, ConfigFile) {
    let file = ConfigFile::new(text);
    let sluice = Sluice::start(&[
        "--config",
        file.arg(),
        "--bind",
        "127.0.0.1:0",
        "--allow-anonymous",
    ]);
    (sluice, file)
}

/// The real `sluice` binary with default settings, bound to 127.0.0.1:0,
/// anonymous clients allowed.
pub fn sluice_default() -> Sluice {
    Sluice::start(&["--bind", "127.0.0.1:0", "--allow-anonymous"])
}

/// Resident set size of process `pid` in KiB, from /proc (None once it
/// is gone).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
}

/// If a broker under test grows past this, the watcher kills it: a test
/// of a memory hole must not take the machine down with it.
const KILL_ABOVE_KIB: u64 = 2 * 1024 * 1024;

/// How often the watcher samples RSS.
const SAMPLE_EVERY: Duration = Duration::from_millis(10);

/// Samples a process's RSS on a thread and keeps the maximum, so that a
/// peak between two steps of a test is not missed.
pub struct RssWatch {
    pid: u32,
    max: Arc<AtomicU64>,
    killed: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssWatch {
    pub fn start(pid: u32) -> RssWatch {
        let max = Arc::new(AtomicU64::new(rss_kib(pid).unwrap_or(0)));
        let killed = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (max, killed, stop) = (max.clone(), killed.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Some(now) = rss_kib(pid) else { return };
                    max.fetch_max(now, Ordering::Relaxed);
                    if now > KILL_ABOVE_KIB && !killed.swap(true, Ordering::Relaxed) {
                        let _ = std::process::Command::new("kill")
                            .args(["-KILL", &pid.to_string()])
                            .status();
                    }
                    std::thread::sleep(SAMPLE_EVERY);
                }
            })
        };
        RssWatch {
            pid,
            max,
            killed,
            stop,
            thread: Some(thread),
        }
    }

    /// The current RSS in KiB.
    pub fn now_kib(&self) -> u64 {
        rss_kib(self.pid).unwrap_or(0)
    }

    /// The largest RSS seen since the start or the last [`RssWatch::reset`].
    pub fn max_kib(&self) -> u64 {
        self.max.load(Ordering::Relaxed)
    }

    /// Forgets the peak so far; returns the current RSS (a baseline).
    pub fn reset(&self) -> u64 {
        let now = self.now_kib();
        self.max.store(now, Ordering::Relaxed);
        now
    }

    /// Panics if the peak went past `bound_kib`.
    pub fn check(&self, bound_kib: u64, what: &str) {
        let max = self.max_kib();
        assert!(
            max <= bound_kib,
            "{what}: broker RSS peaked at {} (bound {}){}",
            mib(max),
            mib(bound_kib),
            if self.killed.load(Ordering::Relaxed) {
                "; the watcher killed it"
            } else {
                ""
            }
        );
    }

    /// Runs `fut`, panicking as soon as the peak RSS goes past
    /// `bound_kib` (instead of when `fut` ends, which a broker that is
    /// busy allocating gigabytes may take long to let happen).
    pub async fn guard<T>(&self, bound_kib: u64, what: &str, fut: impl Future<Output = T>) -> T {
        let started = std::time::Instant::now();
        let over = async {
            while self.max_kib() <= bound_kib {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::select! {
            v = fut => {
                self.check(bound_kib, what);
                v
            }
            () = over => {
                let what = format!("{what} (within {:?})", started.elapsed());
                self.check(bound_kib, &what);
                unreachable!("the check above fails")
            }
        }
    }
}

impl Drop for RssWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// KiB as "12.3 MiB" for messages.
pub fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// A topic (or filter) of `n` levels: `l/l/.../l`.
pub fn levels(n: usize) -> String {
    vec!["l"; n].join("/")
}

/// An MQTT 3.1.1 SUBSCRIBE (QoS 0) of `filter` repeated `count` times.
pub fn subscribe_v4_repeated(pkid: u16, filter: &str, count: usize) -> Vec<u8> {
    subscribe_repeated(pkid, filter, count, false)
}

/// An MQTT 5 SUBSCRIBE (QoS 0, no properties) of `filter` repeated
/// `count` times.
pub fn subscribe_v5_repeated(pkid: u16, filter: &str, count: usize) -> Vec<u8> {
    subscribe_repeated(pkid, filter, count, true)
}

fn subscribe_repeated(pkid: u16, filter: &str, count: usize, v5: bool) -> Vec<u8> {
    let len = u16::try_from(filter.len()).expect("filter fits a string");
    let mut body = Vec::with_capacity(3 + count * (filter.len() + 3));
    body.extend_from_slice(&pkid.to_be_bytes());
    if v5 {
        body.push(0);
    }
    for _ in 0..count {
        body.extend_from_slice(&len.to_be_bytes());
        body.extend_from_slice(filter.as_bytes());
        body.push(0);
    }
    super::packets::frame(0x82, &body)
}

/// The value of the unlabelled sample `name` in the admin endpoint's
/// `GET /metrics`, or None if it is not there.
pub async fn metric(admin: SocketAddr, name: &str) -> Option<f64> {
    let text = within("GET /metrics", async {
        let mut stream = TcpStream::connect(admin).await.expect("connect to admin");
        stream
            .write_all(format!("GET /metrics HTTP/1.1\r\nHost: {admin}\r\n\r\n").as_bytes())
            .await
            .expect("send request");
        let mut bytes = Vec::new();
        stream.read_to_end(&mut bytes).await.expect("read answer");
        String::from_utf8_lossy(&bytes).into_owned()
    })
    .await;
    text.lines().find_map(|l| {
        l.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}

/// The soft limit on open files of this process (RLIMIT_NOFILE), from
/// /proc. Tests that open thousands of sockets stay under it.
pub fn open_files_limit() -> u64 {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            limits.lines().find_map(|l| {
                l.strip_prefix("Max open files")
                    .and_then(|rest| rest.split_whitespace().next())
                    .and_then(|soft| soft.parse().ok())
            })
        })
        .unwrap_or(1024)
}

/// Receive buffer of a client that stops reading: small, so that the
/// broker's output backs up after little data.
pub const SMALL_RCVBUF: u32 = 4096;

/// Connects with a small receive buffer and sends `connect`; returns the
/// client after its CONNACK (which must accept).
pub async fn stalled_client(addr: SocketAddr, connect: &[u8]) -> Raw {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(SMALL_RCVBUF).expect("rcvbuf");
    let stream = within("connect", socket.connect(addr))
        .await
        .expect("connect to broker");
    stream.set_nodelay(true).expect("nodelay");
    let mut raw = Raw::from_stream(stream);
    raw.send(connect).await;
    assert_eq!(raw.recv().await.connack().1, 0, "CONNACK refused");
    raw
}

/// Connects, sends `connect` and returns the first packet the broker
/// answers with (and the client), without judging it.
pub async fn connect_answer(addr: SocketAddr, connect: &[u8]) -> (Raw, super::raw::Frame) {
    let mut raw = Raw::connect(addr).await;
    raw.send(connect).await;
    let answer = raw
        .recv_within(PATIENCE)
        .await
        .expect("the broker answers a CONNECT");
    (raw, answer)
}
