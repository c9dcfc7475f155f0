//! Many connections, short ones and slow ones: connect/disconnect loops
//! must not leave tasks behind, silent and trickling connections are
//! closed at the connect timeout while others are served, and a CONNECT
//! flood is answered without the broker growing.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use super::{still_serving, v4};
use crate::support::hostile::*;
use crate::support::packets::*;
use crate::support::{PATIENCE, Raw, TestBroker, within};

/// Connect/disconnect cycles per loop test.
const CYCLES: usize = 2_000;

/// Tasks the broker may have beyond its count before the loops: a
/// connection task still finishing, a timer in flight. A leak is one (or
/// two) per cycle.
const TASK_SLACK: f64 = 16.0;

/// A persistent MQTT 5 session (expiry 3600 s) with a Will delayed by
/// 3600 s: each disconnect arms the session's expiry and the delayed Will.
fn persistent_with_will() -> Vec<u8> {
    connect_v5_full(
        "looper",
        false,
        60,
        |p| p.session_expiry_interval = Some(3600),
        Some(will_v5("loop/will", b"gone", Some(3600))),
    )
}

/// One CONNECT; then a DISCONNECT 0x04 (with Will) and the broker's
/// close when `clean`, else the socket dropped.
async fn cycle(addr: SocketAddr, clean: bool) {
    let mut raw = Raw::handshake(addr, &persistent_with_will()).await;
    if clean {
        raw.send(&disconnect_v5(0x04, None)).await;
        raw.expect_closed().await;
    }
}

/// `n` cycles alternating clean and dropped, ending with a clean one.
async fn cycles(addr: SocketAddr, n: usize) {
    for i in 0..n {
        cycle(addr, i % 2 == 0).await;
    }
    cycle(addr, true).await;
}

/// Polls `count` until it is at most `limit`, or fails after [`PATIENCE`]
/// with the last value.
async fn settles_at_most(what: &str, limit: f64, mut count: impl AsyncFnMut() -> f64) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let now = count().await;
        if now <= limit {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: {now} after {CYCLES} connect/disconnect cycles (at most {limit})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn connect_disconnect_loops_do_not_leak_tasks() {
    let broker = TestBroker::start();
    let alive = || broker.runtime.metrics().num_alive_tasks() as f64;
    cycles(broker.addr, 10).await;
    let before = alive();
    cycles(broker.addr, CYCLES).await;
    settles_at_most("alive tasks", before + TASK_SLACK, async || alive()).await;
}

#[tokio::test]
async fn the_alive_tasks_metric_stays_flat_under_loops() {
    let (mut sluice, _file) = sluice_with_toml("[admin]\nbind = \"127.0.0.1:0\"\n");
    let admin = sluice.admin_addr();
    let alive = async || {
        metric(admin, "sluice_runtime_alive_tasks")
            .await
            .expect("sluice_runtime_alive_tasks in GET /metrics")
    };
    cycles(sluice.addr, 10).await;
    let before = alive().await;
    cycles(sluice.addr, CYCLES).await;
    settles_at_most("sluice_runtime_alive_tasks", before + TASK_SLACK, alive).await;
}

#[tokio::test]
async fn ten_thousand_silent_connections() {
    /// The scenario's size, unless this process may not open that many
    /// files (it keeps 4,000 for the tests running beside it).
    const WANTED: usize = 10_000;
    /// Connections opened at once.
    const BATCH: usize = 500;
    /// Short enough to keep the test short, long enough to open them all
    /// (well under a second here) before the first is closed.
    const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
    /// Measured here (the debug build the tests run): 10.6 KiB of RSS per
    /// connection waiting for its CONNECT (12.5 MiB idle, 116 MiB with
    /// 10,000). The bound holds that cost, with room for a slower
    /// machine; it is not a target.
    const RSS_PER_CONNECTION_KIB: u64 = 16;
    /// How late after the connect timeout the last close may come.
    const CLOSE_MARGIN: Duration = Duration::from_secs(5);

    let n = WANTED.min(
        usize::try_from(open_files_limit())
            .unwrap_or(0)
            .saturating_sub(4_000),
    );
    assert!(
        n >= 1_000,
        "open files limit {} is too low",
        open_files_limit()
    );
    let (sluice, _file) = sluice_with_toml(&format!(
        "[server]\nconnect_timeout_secs = {}\n",
        CONNECT_TIMEOUT.as_secs()
    ));
    let addr = sluice.addr;
    let watch = RssWatch::start(sluice.pid());
    let baseline = watch.reset();

    let mut silent = Vec::with_capacity(n);
    while silent.len() < n {
        let mut batch = JoinSet::new();
        for _ in 0..BATCH.min(n - silent.len()) {
            batch.spawn(TcpStream::connect(addr));
        }
        for stream in within("a batch of connections", batch.join_all()).await {
            silent.push(stream.expect("connect"));
        }
    }
    let opened = Instant::now();

    // A normal client is served meanwhile.
    let started = Instant::now();
    still_serving(addr, "beside-silent").await;
    let served_in = started.elapsed();
    let bound = baseline + RSS_PER_CONNECTION_KIB * n as u64;
    watch.check(
        bound,
        &format!("RSS with {n} silent connections (served a client in {served_in:?})"),
    );

    // Every one is closed at the connect timeout, without a word.
    let mut closes = JoinSet::new();
    for mut stream in silent {
        closes.spawn(async move {
            let mut buf = [0u8; 16];
            matches!(stream.read(&mut buf).await, Ok(0) | Err(_))
        });
    }
    let deadline = CONNECT_TIMEOUT + CLOSE_MARGIN;
    let left = deadline.saturating_sub(opened.elapsed());
    let closed = tokio::time::timeout(left, closes.join_all())
        .await
        .unwrap_or_else(|_| {
            panic!("not all {n} silent connections were closed within {deadline:?}")
        });
    assert!(
        closed.iter().all(|&c| c),
        "the broker sent bytes to a silent connection"
    );
}

#[tokio::test]
async fn a_connect_trickled_one_byte_a_second_is_closed_at_the_timeout() {
    const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
    /// How late the close may come (scheduling on a loaded machine).
    const LATE: Duration = Duration::from_secs(2);
    /// Timers are not exact to the millisecond either way.
    const EARLY: Duration = Duration::from_millis(100);
    let broker = TestBroker::with(|c| c.server.connect_timeout_secs = 2);
    let stream = TcpStream::connect(broker.addr).await.expect("connect");
    let started = Instant::now();
    let (mut rd, mut wr) = stream.into_split();
    let connect = v4("slowloris");
    let trickle = tokio::spawn(async move {
        for b in connect {
            if wr.write_all(&[b]).await.is_err() {
                return;
            }
            // The pace of the attack, not a wait for a condition.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    let closed = async {
        let mut buf = [0u8; 16];
        let read = rd.read(&mut buf).await;
        (read.map_or(0, |n| n), started.elapsed())
    };
    let ((sent, took), ()) = tokio::join!(
        within("the slow connection closed", closed),
        still_serving(broker.addr, "beside-slowloris")
    );
    trickle.abort();
    assert_eq!(sent, 0, "the broker answered an incomplete CONNECT");
    assert!(
        took + EARLY >= CONNECT_TIMEOUT && took <= CONNECT_TIMEOUT + LATE,
        "closed after {took:?}, connect timeout {CONNECT_TIMEOUT:?}"
    );
}

#[tokio::test]
async fn a_connect_flood_is_answered() {
    const FLOOD: usize = 2_000;
    const TASKS: usize = 4;
    /// Connections each task has open at once.
    const IN_FLIGHT: usize = 50;
    /// Measured here: the flood's peak is 4.5 to 6.5 MiB over the idle
    /// broker; 32 MiB leaves room for a slower machine with more at once.
    const GROWTH_BOUND_KIB: u64 = 32 * 1024;
    let sluice = sluice_default();
    let addr = sluice.addr;
    let watch = RssWatch::start(sluice.pid());
    let baseline = watch.reset();

    let mut tasks = JoinSet::new();
    for t in 0..TASKS {
        tasks.spawn(async move {
            let mut answered = 0;
            let mut clients = JoinSet::new();
            for j in 0..FLOOD / TASKS {
                if clients.len() >= IN_FLIGHT {
                    answered += usize::from(
                        clients
                            .join_next()
                            .await
                            .expect("a client")
                            .expect("client"),
                    );
                }
                clients.spawn(async move {
                    let mut raw = Raw::connect(addr).await;
                    raw.send(&v4(&format!("flood-{t}-{j}"))).await;
                    raw.recv_within(PATIENCE)
                        .await
                        .is_some_and(|f| f.kind() == 2)
                });
            }
            for ok in clients.join_all().await {
                answered += usize::from(ok);
            }
            answered
        });
    }
    let answered: usize = watch
        .guard(
            baseline + GROWTH_BOUND_KIB,
            "RSS during a CONNECT flood",
            within("the flood answered", tasks.join_all()),
        )
        .await
        .into_iter()
        .sum();
    assert_eq!(answered, FLOOD, "CONNECTs answered with a CONNACK");
    still_serving(addr, "after-flood").await;
    watch.check(baseline + GROWTH_BOUND_KIB, "RSS after a CONNECT flood");
}
