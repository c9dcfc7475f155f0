//! The durable store (`[persistence]`) through the real `sluice`
//! executable, stopped (SIGTERM) or killed (SIGKILL) and started again on
//! the same store: persistent sessions with their subscriptions, queues
//! and QoS 1/2 state on both sides, retained messages, Will Delay and
//! session expiry counted across the restart, acknowledged messages under
//! load, damaged store files, and the plugins' key-value data.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;

use crate::support::packets::*;
use crate::support::process::{SLUICE, Sluice};
use crate::support::raw::Frame;
use crate::support::{PATIENCE, PluginDir, Raw, TempDir, TestBroker, within};

/// A temporary directory for one test: the store, the configuration file,
/// and whatever the broker moves aside next to the store.
type Scratch = TempDir;

/// A broker configuration with its store in a scratch directory, started
/// as many times as a test restarts it (each start binds a new port).
struct Durable {
    scratch: Scratch,
    config: PathBuf,
}

impl Durable {
    /// `[persistence]` with `durability`, then the TOML `extra`.
    fn new(name: &str, durability: &str, extra: &str) -> Durable {
        let scratch = Scratch::new(name);
        let config = scratch.path.join("sluice.toml");
        let store = scratch.path.join("store");
        let text = format!(
            "[persistence]\ndir = {:?}\ndurability = \"{durability}\"\nsync_interval_ms = 50\n{extra}",
            store.to_str().expect("utf-8 temp path")
        );
        std::fs::write(&config, text).expect("write config");
        Durable { scratch, config }
    }

    fn store(&self) -> PathBuf {
        self.scratch.path.join("store")
    }

    fn args(&self) -> Vec<&str> {
        vec![
            "--config",
            self.config.to_str().expect("utf-8 temp path"),
            "--bind",
            "127.0.0.1:0",
            "--allow-anonymous",
        ]
    }

    /// Starts `sluice` on the store; returns it and its recovery log line
    /// (which comes before the listeners open).
    fn start(&self) -> (Sluice, String) {
        let mut sluice = Sluice::start(&self.args());
        let lines = sluice.wait_until_logged(&["recovered "]);
        let at = |needle: &str| lines.iter().position(|l| l.contains(needle));
        let (Some(recovered), Some(listening)) = (at("recovered "), at("listening on ")) else {
            panic!("no recovery line: {lines:#?}")
        };
        assert!(recovered < listening, "{lines:#?}");
        let line = lines[recovered].clone();
        let store = format!("store {} (durability ", self.store().display());
        assert!(line.contains(&store), "{line}");
        (sluice, line)
    }

    /// Directories the broker moved a damaged store to.
    fn moved_aside(&self) -> Vec<PathBuf> {
        std::fs::read_dir(&self.scratch.path)
            .expect("read scratch dir")
            .map(|e| e.expect("dir entry").path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("store.corrupt-"))
            })
            .collect()
    }
}

/// How a broker is stopped.
#[derive(Clone, Copy, Debug)]
enum Stop {
    /// SIGTERM: a graceful shutdown, which must exit successfully.
    Term,
    /// SIGKILL: a crash.
    Kill,
}

fn stop(sluice: &mut Sluice, how: Stop) {
    match how {
        Stop::Term => {
            sluice.signal("TERM");
            let status = sluice.wait();
            assert!(status.success(), "SIGTERM: exit status {status}");
        }
        Stop::Kill => sluice.kill(),
    }
}

/// The number right before `what` (its first occurrence) in the recovery
/// line, e.g. `" sessions,"` or `" sessions had expired"`.
fn reported(line: &str, what: &str) -> u64 {
    let at = line
        .find(what)
        .unwrap_or_else(|| panic!("no {what:?} in {line:?}"));
    line[..at]
        .split_whitespace()
        .last()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number before {what:?} in {line:?}"))
}

/// Runs `sluice` with `args` to its end (bounded: killed after
/// [`PATIENCE`]); its exit status, stdout and stderr.
fn run_sluice(scratch: &Scratch, args: &[&str]) -> (ExitStatus, String, String) {
    let out = scratch.path.join("run.out");
    let err = scratch.path.join("run.err");
    let mut child = Command::new(SLUICE)
        .args(args)
        .stdout(std::fs::File::create(&out).expect("stdout file"))
        .stderr(std::fs::File::create(&err).expect("stderr file"))
        .stdin(Stdio::null())
        .spawn()
        .expect("run sluice");
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("sluice {args:?} did not end");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    (status, read(&out), read(&err))
}

/// A PUBLISH as a client received it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Got {
    topic: String,
    payload: String,
    qos: u8,
    dup: bool,
    retain: bool,
    pkid: u16,
    /// Subscription identifiers (MQTT 5).
    ids: Vec<usize>,
}

impl Got {
    fn of(frame: &Frame, v5: bool) -> Got {
        if v5 {
            let p = frame.publish_v5();
            Got {
                topic: p.topic,
                payload: String::from_utf8_lossy(&p.payload).into_owned(),
                qos: p.qos as u8,
                dup: p.dup,
                retain: p.retain,
                pkid: p.pkid,
                ids: p
                    .properties
                    .map(|p| p.subscription_identifiers)
                    .unwrap_or_default(),
            }
        } else {
            let p = frame.publish_v4();
            Got {
                topic: p.topic,
                payload: String::from_utf8_lossy(&p.payload).into_owned(),
                qos: p.qos as u8,
                dup: p.dup,
                retain: p.retain,
                pkid: p.pkid,
                ids: Vec::new(),
            }
        }
    }
}

fn payloads(got: &[Got]) -> Vec<&str> {
    got.iter().map(|g| g.payload.as_str()).collect()
}

/// A raw client that acknowledges what it receives as an MQTT client must,
/// QoS 2 included: a QoS 2 message is delivered when its packet id is new;
/// a resend of an id it answered PUBREC for and has not seen PUBREL for
/// is answered again and not delivered twice. That state is kept across
/// reconnections, as a client's session state is.
struct Client {
    raw: Raw,
    v5: bool,
    /// QoS 2 packet ids received and waiting for PUBREL.
    pending: HashSet<u16>,
    /// Messages received while waiting for something else.
    inbox: VecDeque<Got>,
}

impl Client {
    /// Connects with `connect`; the client and CONNACK's Session Present.
    async fn connect(addr: std::net::SocketAddr, connect: &[u8], v5: bool) -> (Client, bool) {
        let client = Client {
            raw: Raw::connect(addr).await,
            v5,
            pending: HashSet::new(),
            inbox: VecDeque::new(),
        };
        client.handshake(connect).await
    }

    /// Connects again (to `addr`, a restarted broker's), keeping the QoS 2
    /// state.
    async fn resume(self, addr: std::net::SocketAddr, connect: &[u8]) -> (Client, bool) {
        let client = Client {
            raw: Raw::connect(addr).await,
            inbox: VecDeque::new(),
            ..self
        };
        client.handshake(connect).await
    }

    async fn handshake(mut self, connect: &[u8]) -> (Client, bool) {
        self.raw.send(connect).await;
        let (present, code) = self.raw.recv().await.connack();
        assert_eq!(code, 0, "CONNACK refused");
        (self, present)
    }

    /// Writes `bytes`; false if the connection is gone.
    async fn send(&mut self, bytes: &[u8]) -> bool {
        self.raw.stream.write_all(bytes).await.is_ok()
    }

    /// Reads one packet (within `wait`) and answers it: a PUBLISH is
    /// acknowledged and, unless it is a QoS 2 resend, put in the inbox; a
    /// PUBREL is answered. None: the connection ended, or nothing came.
    async fn pump(&mut self, wait: Duration) -> Option<Frame> {
        let frame = self.raw.recv_within(wait).await?;
        match frame.kind() {
            3 => {
                let got = Got::of(&frame, self.v5);
                let new = match got.qos {
                    0 => true,
                    1 => {
                        self.send(&puback(got.pkid)).await;
                        true
                    }
                    _ => {
                        let new = self.pending.insert(got.pkid);
                        self.send(&pubrec(got.pkid)).await;
                        new
                    }
                };
                if new {
                    self.inbox.push_back(got);
                }
            }
            6 => {
                let pid = frame.packet_id();
                self.pending.remove(&pid);
                self.send(&pubcomp(pid)).await;
            }
            _ => {}
        }
        Some(frame)
    }

    /// The next message delivered, or None if the connection ended or
    /// nothing came within `wait`.
    async fn try_next(&mut self, wait: Duration) -> Option<Got> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(got) = self.inbox.pop_front() {
                return Some(got);
            }
            self.pump(deadline.saturating_duration_since(Instant::now()))
                .await?;
        }
    }

    /// The next message delivered (bounded).
    async fn next(&mut self) -> Got {
        self.try_next(PATIENCE)
            .await
            .expect("a message from the broker")
    }

    /// The messages delivered before the first on `marker` (which is
    /// consumed).
    async fn until(&mut self, marker: &str) -> Vec<Got> {
        let mut got = Vec::new();
        loop {
            let g = self.next().await;
            if g.topic == marker {
                return got;
            }
            got.push(g);
        }
    }

    /// The next packet of `kind` (bounded), handling others on the way.
    async fn expect(&mut self, kind: u8) -> Frame {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let frame = self
                .pump(left)
                .await
                .unwrap_or_else(|| panic!("no packet of kind {kind} from the broker"));
            if frame.kind() == kind {
                return frame;
            }
        }
    }

    /// Sends the PUBLISH `bytes` (QoS `qos`, packet id `pid`) and completes
    /// its flow (PUBACK; PUBREC, PUBREL, PUBCOMP), checking the reason
    /// codes of MQTT 5.
    async fn publish(&mut self, bytes: &[u8], qos: u8, pid: u16) {
        self.raw.send(bytes).await;
        let ack = match qos {
            0 => return,
            1 => self.expect(4).await,
            _ => {
                let rec = self.expect(5).await;
                assert_eq!(rec.packet_id(), pid, "PUBREC");
                assert!(rec.ack_reason() < 0x80, "PUBREC refused: {rec:?}");
                self.raw.send(&pubrel(pid)).await;
                self.expect(7).await
            }
        };
        assert_eq!(ack.packet_id(), pid, "acknowledgement of {pid}: {ack:?}");
        assert!(ack.ack_reason() < 0x80, "refused: {ack:?}");
    }

    /// Sends DISCONNECT and waits for the broker to close.
    async fn disconnect(&mut self) {
        let bytes = if self.v5 {
            disconnect_v5(0, None)
        } else {
            DISCONNECT.to_vec()
        };
        self.raw.send(&bytes).await;
        self.raw.expect_closed().await;
    }
}

/// A clean MQTT 3.1.1 client that publishes.
async fn publisher(addr: std::net::SocketAddr, id: &str) -> Client {
    Client::connect(addr, &connect_v4(id, true, 60), false)
        .await
        .0
}

/// Persistent sessions of MQTT 3.1.1 (clean session 0) and MQTT 5 (expiry
/// 3600) and a retained message, across a SIGTERM and a SIGKILL (with
/// `durability = "interval"`, whose writes survive a process crash, and
/// `"always"`): the sessions are resumed (Session Present), get every
/// QoS 1/2 message queued while offline in order, at their subscription's
/// QoS and with their subscription identifier, and keep their
/// subscriptions (No Local included); the retained message is there.
#[tokio::test]
async fn sessions_and_retained_messages_survive_a_restart_and_a_crash() {
    for (how, durability) in [
        (Stop::Term, "interval"),
        (Stop::Kill, "interval"),
        (Stop::Kill, "always"),
    ] {
        sessions_survive(how, durability).await;
    }
}

async fn sessions_survive(how: Stop, durability: &str) {
    let what = format!("{how:?} with durability {durability}");
    let durable = Durable::new("sessions", durability, "");
    let (mut sluice, recovered) = durable.start();
    assert_eq!(reported(&recovered, " sessions,"), 0, "{recovered}");

    // An MQTT 3.1.1 session subscribed at QoS 1, an MQTT 5 one at QoS 2
    // with a subscription identifier and No Local; both go offline.
    let connect4 = connect_v4("sub4", false, 60);
    let connect5 = connect_v5("sub5", false, 60, |p| {
        p.session_expiry_interval = Some(3600);
    });
    let (mut sub4, present) = Client::connect(sluice.addr, &connect4, false).await;
    assert!(!present);
    sub4.raw.send(&subscribe_v4(1, "offline/#", 1)).await;
    assert_eq!(sub4.expect(9).await.ack_codes(false), [1]);
    let (mut sub5, present) = Client::connect(sluice.addr, &connect5, true).await;
    assert!(!present);
    let mut filter = filter_v5("offline/#", 2);
    filter.nolocal = true;
    sub5.raw
        .send(&subscribe_v5(1, vec![filter], Some(42)))
        .await;
    assert_eq!(sub5.expect(9).await.ack_codes(true), [2]);
    sub4.disconnect().await;
    sub5.disconnect().await;

    // Published while they are offline, and a retained message.
    let sent = [(1u8, "m1"), (2, "m2"), (1, "m3"), (2, "m4")];
    let mut publishing = publisher(sluice.addr, "pub").await;
    for (i, (qos, payload)) in (1u16..).zip(sent) {
        let topic = format!("offline/{i}");
        let bytes = publish_v4(&topic, qos, i, payload.as_bytes(), false);
        publishing.publish(&bytes, qos, i).await;
    }
    let retained = publish_v4("retained/r", 1, 10, b"kept", true);
    publishing.publish(&retained, 1, 10).await;
    publishing.disconnect().await;

    stop(&mut sluice, how);
    let (sluice, recovered) = durable.start();
    for (count, n) in [
        (" sessions,", 2),
        (" subscriptions,", 2),
        (" queued and", 8),
        (" messages,", 4),
        (" retained messages", 1),
        (" damaged", 0),
    ] {
        assert_eq!(reported(&recovered, count), n, "{what}: {recovered}");
    }

    // Every offline message, in order, at the subscription's QoS, with
    // the subscription identifier for MQTT 5.
    let (mut sub4, present) = Client::connect(sluice.addr, &connect4, false).await;
    assert!(present, "{what}: MQTT 3.1.1 session present");
    let mut got4 = Vec::new();
    for _ in 0..sent.len() {
        got4.push(sub4.next().await);
    }
    assert_eq!(payloads(&got4), ["m1", "m2", "m3", "m4"], "{what}");
    assert!(
        got4.iter().all(|g| g.qos == 1 && !g.retain),
        "{what}: {got4:?}"
    );
    let (mut sub5, present) = Client::connect(sluice.addr, &connect5, true).await;
    assert!(present, "{what}: MQTT 5 session present");
    let mut got5 = Vec::new();
    for _ in 0..sent.len() {
        got5.push(sub5.next().await);
    }
    assert_eq!(payloads(&got5), ["m1", "m2", "m3", "m4"], "{what}");
    assert_eq!(
        got5.iter().map(|g| g.qos).collect::<Vec<_>>(),
        [1, 2, 1, 2],
        "{what}"
    );
    assert!(got5.iter().all(|g| g.ids == [42]), "{what}: {got5:?}");

    // The subscriptions themselves came back: new messages reach both,
    // and No Local still keeps sub5's own message from it.
    sub5.publish(&publish_v5("offline/self", 1, 1, b"self", None), 1, 1)
        .await;
    let mut publishing = publisher(sluice.addr, "pub").await;
    publishing
        .publish(&publish_v4("offline/after", 1, 1, b"after", false), 1, 1)
        .await;
    let next = sub5.next().await;
    assert_eq!(
        (next.payload.as_str(), next.ids.as_slice()),
        ("after", &[42][..]),
        "{what}: No Local and the identifier after the restart"
    );
    assert_eq!(sub4.next().await.payload, "self", "{what}");
    assert_eq!(sub4.next().await.payload, "after", "{what}");

    // The retained message, to a new subscriber.
    let (mut late, _) = Client::connect(sluice.addr, &connect_v4("late", true, 60), false).await;
    late.raw.send(&subscribe_v4(1, "retained/#", 1)).await;
    let kept = late.next().await;
    assert_eq!(
        (kept.topic.as_str(), kept.payload.as_str(), kept.retain),
        ("retained/r", "kept", true),
        "{what}"
    );
}

#[tokio::test]
async fn outgoing_qos_1_and_2_in_flight_survive_a_crash() {
    for wait_for_pubrel in [true, false] {
        outgoing_in_flight(wait_for_pubrel).await;
    }
}

/// A subscriber takes a QoS 1 message without PUBACK and a QoS 2 one with
/// PUBREC; the broker is killed (once its PUBREL came, when
/// `wait_for_pubrel`). After the restart, the QoS 1 message is resent
/// with DUP and its packet id, and the QoS 2 flow goes on where it was:
/// PUBREL for the id (or, when the broker may not have stored the PUBREC
/// yet, the PUBLISH again with DUP and the same id), never a new message.
async fn outgoing_in_flight(wait_for_pubrel: bool) {
    let what = format!("waiting for PUBREL: {wait_for_pubrel}");
    let durable = Durable::new("outgoing", "always", "");
    let (mut sluice, _) = durable.start();
    let connect = connect_v4("inflight", false, 60);
    let mut sub = Raw::handshake(sluice.addr, &connect).await;
    sub.send(&subscribe_v4(1, "inflight/#", 2)).await;
    sub.recv_kind(9).await;
    let mut publishing = publisher(sluice.addr, "pub").await;
    publishing
        .publish(&publish_v4("inflight/1", 1, 1, b"one", false), 1, 1)
        .await;
    publishing
        .publish(&publish_v4("inflight/2", 2, 2, b"two", false), 2, 2)
        .await;
    let one = Got::of(&sub.recv_kind(3).await, false);
    assert_eq!((one.payload.as_str(), one.qos, one.dup), ("one", 1, false));
    let two = Got::of(&sub.recv_kind(3).await, false);
    assert_eq!((two.payload.as_str(), two.qos, two.dup), ("two", 2, false));
    sub.send(&pubrec(two.pkid)).await;
    if wait_for_pubrel {
        assert_eq!(sub.recv_kind(6).await.packet_id(), two.pkid);
    }

    stop(&mut sluice, Stop::Kill);
    drop(sub);
    let (sluice, recovered) = durable.start();
    assert_eq!(reported(&recovered, " in-flight"), 2, "{what}: {recovered}");

    let mut sub = Raw::connect(sluice.addr).await;
    sub.send(&connect).await;
    assert_eq!(sub.recv().await.connack(), (true, 0), "{what}");
    // Resent in their original order: the QoS 1 PUBLISH first.
    let again = Got::of(&sub.recv().await, false);
    assert_eq!(
        (again.payload.as_str(), again.qos, again.dup, again.pkid),
        ("one", 1, true, one.pkid),
        "{what}: the QoS 1 message resent with DUP and its packet id"
    );
    let next = sub.recv().await;
    match next.kind() {
        6 => assert_eq!(next.packet_id(), two.pkid, "{what}: PUBREL"),
        3 if !wait_for_pubrel => {
            let resent = Got::of(&next, false);
            assert_eq!(
                (resent.payload.as_str(), resent.qos, resent.dup, resent.pkid),
                ("two", 2, true, two.pkid),
                "{what}: the QoS 2 message resent with DUP and its packet id"
            );
            sub.send(&pubrec(two.pkid)).await;
            let rel = sub.recv().await;
            assert_eq!((rel.kind(), rel.packet_id()), (6, two.pkid), "{what}");
        }
        _ => panic!("{what}: expected PUBREL {}, got {next:?}", two.pkid),
    }
    sub.send(&puback(one.pkid)).await;
    sub.send(&pubcomp(two.pkid)).await;

    // Nothing else is resent: the next PUBLISH is a new message.
    let mut publishing = publisher(sluice.addr, "pub").await;
    publishing
        .publish(&publish_v4("inflight/3", 1, 1, b"three", false), 1, 1)
        .await;
    let three = Got::of(&sub.recv().await, false);
    assert_eq!(
        (three.payload.as_str(), three.dup),
        ("three", false),
        "{what}"
    );
}

/// A publisher's QoS 2 message got PUBREC; the broker is killed. The
/// publisher resumes its session and resends the PUBLISH (DUP, same id):
/// the broker answers PUBREC and does not route it again; PUBREL gets
/// PUBCOMP with success (the id was kept).
#[tokio::test]
async fn incoming_qos_2_resent_after_a_crash_is_routed_once() {
    let durable = Durable::new("incoming", "always", "");
    let (mut sluice, _) = durable.start();
    let sub_connect = connect_v4("exactly-sub", false, 60);
    let (mut sub, _) = Client::connect(sluice.addr, &sub_connect, false).await;
    sub.raw.send(&subscribe_v4(1, "exactly/#", 2)).await;
    sub.expect(9).await;
    sub.disconnect().await;

    let pub_connect = connect_v5("exactly-pub", false, 60, |p| {
        p.session_expiry_interval = Some(600);
    });
    let publish = publish_v5("exactly/once", 2, 7, b"once", None);
    let mut publishing = Raw::handshake(sluice.addr, &pub_connect).await;
    publishing.send(&publish).await;
    let rec = publishing.recv().await;
    assert_eq!((rec.kind(), rec.packet_id(), rec.ack_reason()), (5, 7, 0));

    stop(&mut sluice, Stop::Kill);
    drop(publishing);
    let (sluice, recovered) = durable.start();
    assert_eq!(reported(&recovered, " incoming QoS 2"), 1, "{recovered}");

    let mut publishing = Raw::connect(sluice.addr).await;
    publishing.send(&pub_connect).await;
    assert_eq!(publishing.recv().await.connack(), (true, 0));
    let mut dup = publish.clone();
    dup[0] |= 0x08;
    publishing.send(&dup).await;
    let rec = publishing.recv().await;
    assert_eq!(
        (rec.kind(), rec.packet_id(), rec.ack_reason()),
        (5, 7, 0),
        "PUBREC for the resent PUBLISH"
    );
    publishing.send(&pubrel(7)).await;
    let comp = publishing.recv().await;
    assert_eq!(
        (comp.kind(), comp.packet_id(), comp.ack_reason()),
        (7, 7, 0),
        "PUBCOMP with success: the packet id was known"
    );
    publishing
        .send(&publish_v5("exactly/marker", 1, 8, b"marker", None))
        .await;
    let ack = publishing.recv().await;
    assert_eq!((ack.kind(), ack.packet_id()), (4, 8));

    let (mut sub, present) = Client::resume(sub, sluice.addr, &sub_connect).await;
    assert!(present);
    let got = sub.until("exactly/marker").await;
    assert_eq!(payloads(&got), ["once"], "delivered exactly once");
}

/// A client connected when the broker is killed has its Will published
/// after its Will Delay counted from the restart, once. A session whose
/// expiry passes while the broker is down is gone at the restart; one
/// with a long expiry is not.
#[tokio::test]
async fn will_delay_and_session_expiry_count_across_a_crash() {
    let durable = Durable::new("wills", "always", "");
    let (mut sluice, _) = durable.start();
    let watcher_connect = connect_v4("will-watcher", false, 60);
    let (mut watcher, _) = Client::connect(sluice.addr, &watcher_connect, false).await;
    watcher.raw.send(&subscribe_v4(1, "will/#", 1)).await;
    watcher.expect(9).await;
    watcher.disconnect().await;

    let expiring =
        |id: &str, secs: u32| connect_v5(id, false, 60, |p| p.session_expiry_interval = Some(secs));
    let (mut long, _) = Client::connect(sluice.addr, &expiring("long-lived", 3600), true).await;
    long.disconnect().await;
    // Last before the crash, so that its second does not run out before.
    let (mut short, _) = Client::connect(sluice.addr, &expiring("short-lived", 1), true).await;
    short.disconnect().await;
    let short_gone = Instant::now();
    // Its CONNACK waits for its session (and Will) to be stored, after
    // the sessions before it (whose disconnections went to the store before
    // their sockets closed).
    let dying = Raw::handshake(
        sluice.addr,
        &connect_v5_full(
            "will-client",
            false,
            60,
            |p| p.session_expiry_interval = Some(60),
            Some(will_v5("will/gone", b"gone", Some(1))),
        ),
    )
    .await;

    stop(&mut sluice, Stop::Kill);
    drop(dying);
    // The short session's expiry passes while the broker is down.
    tokio::time::sleep_until((short_gone + Duration::from_millis(1200)).into()).await;
    let restarted = Instant::now();
    let (mut sluice, recovered) = durable.start();
    assert_eq!(reported(&recovered, " sessions,"), 4, "{recovered}");
    assert_eq!(
        reported(&recovered, " sessions had expired"),
        1,
        "{recovered}"
    );

    let (mut short, present) =
        Client::connect(sluice.addr, &expiring("short-lived", 1), true).await;
    assert!(
        !present,
        "the short session expired while the broker was down"
    );
    let (mut long, present) =
        Client::connect(sluice.addr, &expiring("long-lived", 3600), true).await;
    assert!(present, "the long session is still there");
    let (mut watcher, present) = Client::resume(watcher, sluice.addr, &watcher_connect).await;
    assert!(present);
    let will = watcher.next().await;
    assert_eq!(
        (will.topic.as_str(), will.payload.as_str()),
        ("will/gone", "gone")
    );
    assert!(
        restarted.elapsed() >= Duration::from_millis(900),
        "the Will waited for its delay after the restart ({:?})",
        restarted.elapsed()
    );
    // Once: the next message is one published now.
    let mut publishing = publisher(sluice.addr, "pub").await;
    publishing
        .publish(&publish_v4("will/marker", 1, 1, b"marker", false), 1, 1)
        .await;
    assert_eq!(watcher.next().await.topic, "will/marker");
    short.disconnect().await;
    long.disconnect().await;

    // And the stored session no longer holds it.
    stop(&mut sluice, Stop::Term);
    let store = durable.store();
    let (status, dump, err) = run_sluice(
        &durable.scratch,
        &[
            "store",
            "dump",
            "--dir",
            store.to_str().expect("utf-8 path"),
        ],
    );
    assert!(status.success(), "store dump: {err}");
    let line = dump
        .lines()
        .find(|l| l.contains("\"will-client\""))
        .unwrap_or_else(|| panic!("no will-client session in {dump}"));
    assert!(line.ends_with("will none"), "{line}");
}

/// What the publishers were told the broker has (by payload): PUBACK for
/// QoS 1, PUBREC for QoS 2 (from then on the message is the broker's).
#[derive(Debug, Default)]
struct Acked {
    qos1: BTreeSet<String>,
    qos2: BTreeSet<String>,
}

/// Checks what a subscriber received against what was acknowledged:
/// every acknowledged message at least once, and no QoS 2 message (a
/// payload starting `q2-`) more than once.
fn check_delivery(acked: &Acked, received: &[Got]) -> Result<(), String> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for g in received {
        *counts.entry(g.payload.as_str()).or_default() += 1;
    }
    let lost: Vec<&String> = acked
        .qos1
        .iter()
        .chain(&acked.qos2)
        .filter(|p| !counts.contains_key(p.as_str()))
        .collect();
    let twice: Vec<(&str, usize)> = counts
        .iter()
        .filter(|(p, n)| p.starts_with("q2-") && **n > 1)
        .map(|(p, n)| (*p, *n))
        .collect();
    let mut errors = Vec::new();
    if !lost.is_empty() {
        errors.push(format!(
            "{} acknowledged messages never delivered: {lost:?}",
            lost.len()
        ));
    }
    if !twice.is_empty() {
        errors.push(format!(
            "QoS 2 messages delivered more than once: {twice:?}"
        ));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

#[test]
fn the_delivery_check_finds_a_lost_and_a_duplicated_message() {
    let got = |p: &str| Got {
        topic: "load/x".into(),
        payload: p.into(),
        qos: if p.starts_with("q2-") { 2 } else { 1 },
        dup: false,
        retain: false,
        pkid: 1,
        ids: Vec::new(),
    };
    let acked = Acked {
        qos1: ["q1-a-0", "q1-a-1"].map(String::from).into(),
        qos2: ["q2-b-0"].map(String::from).into(),
    };
    let complete = [got("q1-a-0"), got("q1-a-1"), got("q1-a-1"), got("q2-b-0")];
    assert_eq!(check_delivery(&acked, &complete), Ok(()));
    let lost = [got("q1-a-0"), got("q2-b-0")];
    let e = check_delivery(&acked, &lost).expect_err("a lost QoS 1 message");
    assert!(e.contains("q1-a-1"), "{e}");
    let lost = [got("q1-a-0"), got("q1-a-1")];
    let e = check_delivery(&acked, &lost).expect_err("a lost QoS 2 message");
    assert!(e.contains("q2-b-0"), "{e}");
    let twice = [got("q1-a-0"), got("q1-a-1"), got("q2-b-0"), got("q2-b-0")];
    let e = check_delivery(&acked, &twice).expect_err("a QoS 2 message twice");
    assert!(e.contains("more than once") && e.contains("q2-b-0"), "{e}");
}

/// Messages each load publisher sends.
const PER_PUBLISHER: usize = 500;
/// Unacknowledged messages a load publisher keeps going.
const WINDOW: usize = 16;
/// Acknowledgements (of all publishers) after which the broker is killed.
const KILL_AFTER: usize = 600;

/// Publishes `PER_PUBLISHER` numbered messages at `qos`, keeping up to
/// `WINDOW` unacknowledged, until done or the connection is lost; returns
/// the payloads the broker acknowledged (counted in `total` as they come).
async fn publish_numbered(
    addr: std::net::SocketAddr,
    id: String,
    qos: u8,
    total: Arc<AtomicUsize>,
) -> Vec<String> {
    let mut raw = Raw::handshake(addr, &connect_v4(&id, true, 60)).await;
    let mut acked = Vec::new();
    let mut unacked = BTreeMap::new();
    let mut releasing = HashSet::new();
    let mut next = 0;
    loop {
        while next < PER_PUBLISHER && unacked.len() + releasing.len() < WINDOW {
            let pid = u16::try_from(next + 1).expect("packet id");
            let payload = format!("q{qos}-{id}-{next}");
            let bytes = publish_v4("load/x", qos, pid, payload.as_bytes(), false);
            if raw.stream.write_all(&bytes).await.is_err() {
                return acked;
            }
            unacked.insert(pid, payload);
            next += 1;
        }
        if next == PER_PUBLISHER && unacked.is_empty() && releasing.is_empty() {
            return acked;
        }
        let Some(frame) = raw.recv_within(PATIENCE).await else {
            return acked;
        };
        let pid = frame.packet_id();
        match frame.kind() {
            4 | 5 => {
                let payload = unacked.remove(&pid).expect("an ack of a sent packet id");
                acked.push(payload);
                total.fetch_add(1, Ordering::Relaxed);
                if frame.kind() == 5 {
                    releasing.insert(pid);
                    if raw.stream.write_all(&pubrel(pid)).await.is_err() {
                        return acked;
                    }
                }
            }
            7 => {
                releasing.remove(&pid);
            }
            _ => panic!("{id}: unexpected {frame:?}"),
        }
    }
}

/// With `durability = "always"`, publishers at QoS 1 and 2 send numbered
/// messages to a persistent subscriber (reading as they come) and the
/// broker is killed mid-stream. After the restart the subscriber resumes
/// and drains: every message a publisher had acknowledged arrives at
/// least once, and no QoS 2 message twice.
#[tokio::test]
async fn acknowledged_messages_survive_a_crash_under_load() {
    let durable = Durable::new(
        "load",
        "always",
        "[session]\nmax_queued_messages = 100000\nmax_offline_messages = 100000\n",
    );
    let (mut sluice, _) = durable.start();
    let sub_connect = connect_v4("load-sub", false, 60);
    let (mut sub, _) = Client::connect(sluice.addr, &sub_connect, false).await;
    sub.raw.send(&subscribe_v4(1, "load/#", 2)).await;
    sub.expect(9).await;
    let subscriber = tokio::spawn(async move {
        let mut received = Vec::new();
        while let Some(got) = sub.try_next(PATIENCE).await {
            received.push(got);
        }
        (sub, received)
    });

    let total = Arc::new(AtomicUsize::new(0));
    let publishers: Vec<_> = [(1, "a"), (1, "b"), (2, "c"), (2, "d")]
        .into_iter()
        .map(|(qos, name)| {
            let (addr, total) = (sluice.addr, total.clone());
            let task = tokio::spawn(publish_numbered(addr, format!("pub-{name}"), qos, total));
            (qos, task)
        })
        .collect();
    let deadline = Instant::now() + PATIENCE;
    while total.load(Ordering::Relaxed) < KILL_AFTER {
        assert!(
            Instant::now() < deadline,
            "only {} acknowledgements in {PATIENCE:?}",
            total.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    stop(&mut sluice, Stop::Kill);

    let mut acked = Acked::default();
    for (qos, task) in publishers {
        let payloads = within("a publisher to stop", task)
            .await
            .expect("publisher task");
        match qos {
            1 => acked.qos1.extend(payloads),
            _ => acked.qos2.extend(payloads),
        }
    }
    let sent = 4 * PER_PUBLISHER;
    let n_acked = acked.qos1.len() + acked.qos2.len();
    assert!(
        (KILL_AFTER..sent).contains(&n_acked),
        "the broker was killed mid-stream: {n_acked} of {sent} acknowledged"
    );
    let (sub, mut received) = within("the subscriber to stop", subscriber)
        .await
        .expect("subscriber task");

    let (sluice, recovered) = durable.start();
    let (mut sub, present) = Client::resume(sub, sluice.addr, &sub_connect).await;
    assert!(present, "{recovered}");
    let mut publishing = publisher(sluice.addr, "marker").await;
    publishing
        .publish(&publish_v4("load/marker", 1, 1, b"marker", false), 1, 1)
        .await;
    let before = received.len();
    received.extend(sub.until("load/marker").await);
    if let Err(e) = check_delivery(&acked, &received) {
        panic!(
            "{e}\n({n_acked} acknowledged, {before} received before the crash, {} after; {recovered})",
            received.len() - before
        );
    }

    // The check fails when one acknowledged message is missing.
    let first = acked
        .qos1
        .iter()
        .next()
        .expect("a QoS 1 message acknowledged");
    let mut damaged = received.clone();
    damaged.retain(|g| &g.payload != first);
    assert!(check_delivery(&acked, &damaged).is_err());
}

/// The newest journal file of the store in `dir`.
fn newest_journal(dir: &Path) -> PathBuf {
    std::fs::read_dir(dir)
        .expect("read store dir")
        .map(|e| e.expect("dir entry").path())
        .filter_map(|p| {
            let n: u64 = p
                .file_name()?
                .to_str()?
                .strip_suffix(".jnl")?
                .parse()
                .ok()?;
            Some((n, p))
        })
        .max()
        .map(|(_, p)| p)
        .unwrap_or_else(|| panic!("no journal file in {}", dir.display()))
}

/// The journal's bytes up to the end of what was written: the file is
/// preallocated with zeros past it, so it is read up to the first block
/// of zeros (no record of these tests holds that many) and the zeros
/// before it are cut.
fn journal_data(path: &Path) -> Vec<u8> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).expect("open journal");
    let mut data = Vec::new();
    let mut block = vec![0; 1 << 16];
    loop {
        let n = file.read(&mut block).expect("read journal");
        if block[..n].iter().all(|&b| b == 0) {
            break;
        }
        data.extend_from_slice(&block[..n]);
    }
    let end = data.iter().rposition(|&b| b != 0).map_or(0, |at| at + 1);
    assert!(end > 0, "{} is empty", path.display());
    data.truncate(end);
    data
}

/// A persistent subscriber "keeper" on `kept/#` and the QoS 1 messages
/// `payloads` queued for it while it is offline, each acknowledged (so
/// each committed in a batch of its own, in order); then the broker is
/// killed.
async fn keep_and_kill(durable: &Durable, payloads: &[&str]) {
    let (mut sluice, _) = durable.start();
    let (mut keeper, _) =
        Client::connect(sluice.addr, &connect_v4("keeper", false, 60), false).await;
    keeper.raw.send(&subscribe_v4(1, "kept/#", 1)).await;
    keeper.expect(9).await;
    keeper.disconnect().await;
    let mut publishing = publisher(sluice.addr, "pub").await;
    for (i, payload) in (1u16..).zip(payloads) {
        let bytes = publish_v4(&format!("kept/{i}"), 1, i, payload.as_bytes(), false);
        publishing.publish(&bytes, 1, i).await;
    }
    stop(&mut sluice, Stop::Kill);
}

/// The keeper's messages, drained up to one published now (so the broker
/// serves); a keeper whose session is gone subscribes again first.
async fn keeper_drains(sluice: &Sluice) -> (bool, Vec<Got>) {
    let (mut keeper, present) =
        Client::connect(sluice.addr, &connect_v4("keeper", false, 60), false).await;
    if !present {
        keeper.raw.send(&subscribe_v4(1, "kept/#", 1)).await;
        keeper.expect(9).await;
    }
    let mut publishing = publisher(sluice.addr, "pub").await;
    publishing
        .publish(&publish_v4("kept/marker", 1, 1, b"marker", false), 1, 1)
        .await;
    (present, keeper.until("kept/marker").await)
}

/// The tail of the journal is cut (a crash in the middle of a write): the
/// broker starts, recovers every batch before the damage, and serves.
#[tokio::test]
async fn a_truncated_journal_keeps_what_came_before_the_damage() {
    let durable = Durable::new("truncated", "always", "");
    let sent = ["c1", "c2", "c3", "c4", "c5"];
    keep_and_kill(&durable, &sent).await;
    let journal = newest_journal(&durable.store());
    let end = journal_data(&journal).len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&journal)
        .and_then(|f| f.set_len(end as u64 - 10))
        .expect("truncate the journal");

    let (mut sluice, recovered) = durable.start();
    assert!(
        durable.moved_aside().is_empty(),
        "a cut tail is not a damaged store: {:#?}",
        sluice.lines()
    );
    assert_eq!(reported(&recovered, " sessions,"), 1, "{recovered}");
    let (present, got) = keeper_drains(&sluice).await;
    assert!(present);
    // The last batch (c5's) was cut; those before it are whole.
    let got = payloads(&got);
    assert!(
        got.len() >= 4 && got[..] == sent[..got.len()],
        "recovered {got:?} of {sent:?}"
    );
}

/// Bits flipped in the middle of the journal: the broker says so, keeps a
/// copy of the damaged store for inspection, cuts the journal at the
/// damaged batch, and recovers everything committed before it (the
/// session, its subscription, the first message), nothing after it.
#[tokio::test]
async fn a_journal_damaged_in_the_middle_keeps_what_came_before() {
    let durable = Durable::new("damaged", "always", "");
    keep_and_kill(
        &durable,
        &[
            "damaged-payload-1",
            "damaged-payload-2",
            "damaged-payload-3",
        ],
    )
    .await;
    let journal = newest_journal(&durable.store());
    let data = journal_data(&journal);
    let at = data
        .windows(17)
        .position(|w| w == b"damaged-payload-2")
        .expect("the middle message in the journal");
    let flipped: Vec<u8> = data[at..at + 17].iter().map(|b| b ^ 0x55).collect();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&journal)
        .and_then(|f| std::os::unix::fs::FileExt::write_all_at(&f, &flipped, at as u64))
        .expect("flip bits in the journal");

    let (mut sluice, recovered) = durable.start();
    assert_eq!(reported(&recovered, " sessions,"), 1, "{recovered}");
    sluice.wait_until_logged(&["is cut at its damaged batch", "copied to"]);
    assert_eq!(durable.moved_aside().len(), 1, "the damaged store is kept");
    let (present, got) = keeper_drains(&sluice).await;
    assert!(present);
    assert_eq!(payloads(&got), ["damaged-payload-1"]);
}

/// A store whose format mark is newer than the broker's is refused before
/// any listener opens, and left as it is.
#[tokio::test]
async fn a_store_of_a_newer_format_is_refused_and_left_alone() {
    use sluice_broker::store::FORMAT;
    use sluice_broker::store::backend::{Backend, Batch, Fjall, Space};

    let durable = Durable::new("newer", "always", "");
    keep_and_kill(&durable, &["k1"]).await;
    let mark = |format: u32| {
        let backend = Fjall::open(&durable.store()).expect("open the store");
        let mut batch = Batch::new();
        // A record: its version byte (1), then the format.
        let mut value = vec![1u8];
        value.extend_from_slice(&format.to_be_bytes());
        batch.insert((Space::Meta, b"format".to_vec()), Some(value));
        backend.apply(&batch, true).expect("write the format mark");
    };
    mark(FORMAT + 1);

    let (status, _, err) = run_sluice(&durable.scratch, &durable.args());
    assert!(!status.success(), "a newer store must be refused: {err}");
    assert!(
        err.contains("newer") && err.contains(&format!("format {}", FORMAT + 1)),
        "{err}"
    );
    assert!(!err.contains("listening on"), "{err}");
    assert!(durable.moved_aside().is_empty(), "{err}");

    // Untouched: with its mark back, everything is there.
    mark(FORMAT);
    let (sluice, recovered) = durable.start();
    assert_eq!(reported(&recovered, " sessions,"), 1, "{recovered}");
    let (present, got) = keeper_drains(&sluice).await;
    assert!(present);
    assert_eq!(payloads(&got), ["k1"]);
}

/// A plugin's key-value data (the `policy` fixture appends each hook call
/// to its `calls` key) survives a crash of the real broker, and the
/// plugin goes on from it: its next call appends to what was restored.
#[tokio::test]
async fn plugin_key_value_data_survives_a_crash() {
    let plugins = PluginDir::new();
    plugins.add("rec", "policy");
    let cache = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-plugin-cache");
    let durable = Durable::new(
        "plugin-kv",
        "always",
        &format!(
            "[plugins]\ndir = {:?}\ncache_dir = {:?}\n",
            plugins.path.to_str().expect("utf-8 path"),
            cache.to_str().expect("utf-8 path")
        ),
    );
    let (mut sluice, _) = durable.start();
    // The plugin records auth-on-register before the session is stored,
    // and CONNACK waits for the session: the record is committed.
    let before = Raw::handshake(sluice.addr, &connect_v4("kv-before", false, 60)).await;
    stop(&mut sluice, Stop::Kill);
    drop(before);

    let broker = TestBroker::with(|c| {
        plugins.configure(c);
        c.persistence.dir = Some(durable.store());
    });
    let calls = || -> Vec<String> {
        let raw = broker
            .ctx
            .plugins
            .kv_get("rec", "calls")
            .unwrap_or_default();
        String::from_utf8_lossy(&raw)
            .lines()
            .map(str::to_owned)
            .collect()
    };
    let restored = calls();
    let first = restored
        .iter()
        .position(|c| c == "auth-on-register:kv-before")
        .unwrap_or_else(|| panic!("restored calls: {restored:?}"));
    Raw::handshake(broker.addr, &connect_v4("kv-after", true, 60)).await;
    let now = calls();
    let second = now
        .iter()
        .position(|c| c == "auth-on-register:kv-after")
        .unwrap_or_else(|| panic!("calls: {now:?}"));
    assert!(first < second, "{now:?}");
    assert_eq!(now[..restored.len()], restored[..], "appended to");
}
