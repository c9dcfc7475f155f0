//! Retained amplification: one SUBSCRIBE naming the same filter many times
//! must not make the broker deliver (or collect) every retained message
//! once per copy. Run on the real binary with default settings, so its RSS
//! is the broker's alone.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use super::{topic_of, v4, v5};
use crate::support::hostile::*;
use crate::support::packets::*;
use crate::support::{PATIENCE, Raw};

/// The issue's bound for the amplification scenario: broker RSS grows by
/// at most 50 MB over its baseline (taken with the retained messages
/// already stored).
const GROWTH_BOUND_KIB: u64 = 50 * 1024;

/// `limits.max_filters_per_subscribe` default: the filters of a SUBSCRIBE
/// that are handled; every further one is refused.
const MAX_FILTERS: usize = 256;

/// `mqtt.max_packet_size` default, fixed header included.
const MAX_PACKET: usize = 1024 * 1024;

/// Once the SUBACK is in, the subscriber reads until nothing has come for
/// this long (the count it asserts is an upper bound, so a quiet period
/// is enough to end on).
const QUIET: Duration = Duration::from_secs(2);

/// RSS is watched for at least this long after the SUBSCRIBE is sent,
/// however fast the deliveries end.
const WATCH_FOR: Duration = Duration::from_secs(3);

/// Stores `n` one-byte retained messages at `prefix/0..n` (QoS 1,
/// pipelined) and waits for every PUBACK.
async fn store_retained(addr: SocketAddr, prefix: &str, n: usize) {
    let mut raw = Raw::handshake(addr, &v4(&format!("{prefix}-retainer"))).await;
    let mut burst = Vec::new();
    for i in 0..n {
        let pkid = u16::try_from(i + 1).expect("fits a packet id");
        burst.extend(publish_v4(&format!("{prefix}/{i}"), 1, pkid, b"r", true));
    }
    raw.send(&burst).await;
    for _ in 0..n {
        assert_eq!(raw.recv().await.kind(), 4, "PUBACK");
    }
}

/// What a subscriber read after its SUBSCRIBE.
#[derive(Debug, Default)]
struct Received {
    suback: Option<Vec<u8>>,
    publishes: usize,
    duplicates: usize,
}

/// Reads until the SUBACK has come and then nothing for [`QUIET`] (or the
/// connection closes).
async fn read_deliveries(mut raw: Raw, v5: bool) -> Received {
    let mut r = Received::default();
    let mut topics = HashSet::new();
    loop {
        let wait = if r.suback.is_none() { PATIENCE } else { QUIET };
        let Some(f) = raw.recv_within(wait).await else {
            return r;
        };
        match f.kind() {
            9 => r.suback = Some(f.ack_codes(v5)),
            3 => {
                r.publishes += 1;
                if !topics.insert(topic_of(&f)) {
                    r.duplicates += 1;
                }
            }
            _ => {}
        }
    }
}

/// Sends `subscribe` from `raw` and reads what follows while watching the
/// broker's RSS against `GROWTH_BOUND_KIB` over `baseline`.
async fn subscribe_watched(
    watch: &RssWatch,
    mut raw: Raw,
    subscribe: &[u8],
    v5: bool,
    baseline: u64,
) -> Received {
    let started = tokio::time::Instant::now();
    raw.send(subscribe).await;
    let reader = tokio::spawn(read_deliveries(raw, v5));
    watch
        .guard(
            baseline + GROWTH_BOUND_KIB,
            "RSS growth after one SUBSCRIBE of repeated filters",
            async {
                let received = reader.await.expect("reader task");
                // A measurement window, not a wait for a condition.
                tokio::time::sleep_until(started + WATCH_FOR).await;
                received
            },
        )
        .await
}

/// Asserts the SUBACK: `MAX_FILTERS` granted (QoS 0), every further
/// filter `refused`.
fn assert_suback(received: &Received, filters: usize, refused: u8) {
    let codes = received.suback.as_ref().expect("a SUBACK");
    assert_eq!(codes.len(), filters, "one code per filter");
    assert!(
        codes[..MAX_FILTERS].iter().all(|&c| c == 0x00),
        "the first {MAX_FILTERS} filters are granted"
    );
    let wrong = codes[MAX_FILTERS..]
        .iter()
        .filter(|&&c| c != refused)
        .count();
    assert_eq!(
        wrong, 0,
        "every filter past {MAX_FILTERS} is refused with {refused:#04x}"
    );
}

#[tokio::test]
async fn one_subscribe_of_repeated_filters_does_not_amplify_retained() {
    /// The issue's scenario: 5,000 retained messages, 20,000 copies of a
    /// filter matching them all in one 3.1.1 SUBSCRIBE (about 160 KB).
    const RETAINED: usize = 5_000;
    const COPIES: usize = 20_000;
    let sluice = sluice_default();
    store_retained(sluice.addr, "amp", RETAINED).await;
    let watch = RssWatch::start(sluice.pid());
    let baseline = watch.reset();

    let sub = Raw::handshake(sluice.addr, &v4("amp-sub")).await;
    let subscribe = subscribe_v4_repeated(1, "amp/#", COPIES);
    let received = subscribe_watched(&watch, sub, &subscribe, false, baseline).await;

    assert_suback(&received, COPIES, 0x80);
    // The repeated filter is one subscription: each retained message is
    // sent once, however many copies named it (and the subscriber's queue
    // limits may drop some).
    assert!(
        received.publishes <= RETAINED,
        "{} retained PUBLISHes for {RETAINED} retained messages",
        received.publishes
    );
    assert_eq!(received.duplicates, 0, "a retained message sent twice");
    Raw::handshake(sluice.addr, &v4("amp-fresh")).await;
    watch.check(baseline + GROWTH_BOUND_KIB, "RSS growth, in the end");
}

#[tokio::test]
async fn a_one_megabyte_subscribe_of_repeated_filters() {
    const RETAINED: usize = 1_000;
    /// `big/#` takes 8 bytes in an MQTT 5 SUBSCRIBE (length, filter,
    /// options); the packet also has a 4-byte fixed header, the packet id
    /// and an empty property length.
    const FILTER: &str = "big/#";
    const COPIES: usize = (MAX_PACKET - 4 - 3) / (FILTER.len() + 3);
    let subscribe = subscribe_v5_repeated(1, FILTER, COPIES);
    assert!(
        subscribe.len() < MAX_PACKET && subscribe.len() > MAX_PACKET - 16,
        "just under 1 MiB: {}",
        subscribe.len()
    );
    let sluice = sluice_default();
    store_retained(sluice.addr, "big", RETAINED).await;
    let watch = RssWatch::start(sluice.pid());
    let baseline = watch.reset();

    let sub = Raw::handshake(sluice.addr, &v5("big-sub")).await;
    let received = subscribe_watched(&watch, sub, &subscribe, true, baseline).await;

    // MQTT 5: the filters past the limit get 0x97 Quota exceeded.
    assert_suback(&received, COPIES, 0x97);
    assert!(
        received.publishes <= RETAINED,
        "{} retained PUBLISHes for {RETAINED} retained messages",
        received.publishes
    );
    assert_eq!(received.duplicates, 0, "a retained message sent twice");
    Raw::handshake(sluice.addr, &v4("big-fresh")).await;
}
