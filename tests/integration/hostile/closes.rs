//! The lingering close: when the broker ends a connection whose client is
//! still writing (a DISCONNECT with a reason, a refused CONNECT), the
//! client's writes must keep succeeding for a moment and the client must
//! read the reason code and an orderly close, not a TCP reset.
//!
//! Each test writes more after the broker's answer has arrived, without
//! having read the close: a client whose writer runs ahead of its reader.
//! Without the lingering close, the broker's socket is gone by then, the
//! kernel answers the data with a reset, and the write fails (EPIPE or
//! ECONNRESET) — where a client library gives up without reading.

use tokio::io::AsyncWriteExt;

use super::{v4, v5};
use crate::support::packets::*;
use crate::support::{Raw, TestBroker};

/// Writes the client makes after the broker's answer, one packet each,
/// `WRITE_EVERY` apart: about 100 ms of writing (100 KiB), well inside
/// the lingering close's bounded drain (the broker must not close during
/// it), and long enough that a broker that closes at once does so while
/// the client is still writing.
const WRITES_AFTER: usize = 100;
const WRITE_EVERY: std::time::Duration = std::time::Duration::from_millis(1);

/// Writes `packet` `WRITES_AFTER` times, paced by `WRITE_EVERY` (the
/// client's pace, not a wait for a condition); the first failure ends it.
async fn keep_writing(raw: &mut Raw, packet: &[u8]) -> std::io::Result<()> {
    for _ in 0..WRITES_AFTER {
        raw.stream.write_all(packet).await?;
        tokio::time::sleep(WRITE_EVERY).await;
    }
    Ok(())
}

#[tokio::test]
async fn exceeding_receive_maximum_is_read_as_disconnect_0x93() {
    /// Far more than the broker's Receive Maximum (`mqtt.receive_maximum`,
    /// default 32), sent in one write without reading.
    const PUBLISHES: u16 = 200;
    let broker = TestBroker::start();
    let mut raw = Raw::handshake(broker.addr, &v5("greedy")).await;
    let payload = [b'p'; 1024];
    let mut burst = Vec::new();
    for pkid in 1..=PUBLISHES {
        burst.extend(publish_v5("greedy", 2, pkid, &payload, None));
    }
    raw.send(&burst).await;
    // PUBRECs for the first 32, then the reason.
    let disconnect = raw.recv_kind(14).await;
    assert_eq!(
        disconnect.disconnect_reason(),
        0x93,
        "Receive Maximum exceeded"
    );

    let more = publish_v5("greedy", 0, 0, &payload, None);
    let written = keep_writing(&mut raw, &more).await;
    let (frames, end) = raw.read_until_closed().await;
    assert!(
        written.is_ok(),
        "writing after the DISCONNECT failed: {written:?}"
    );
    assert!(
        frames.is_empty() && end.is_ok(),
        "expected an orderly close after the DISCONNECT; read {frames:?}, ended with {end:?}"
    );
}

/// A CONNECT refused (anonymous access off) with PUBLISHes pipelined
/// behind it, and more written after the CONNACK came: the client reads
/// the CONNACK's `code` and an orderly close.
async fn refused_connect_with_pipelined_input(connect: Vec<u8>, publish: Vec<u8>, code: u8) {
    /// PUBLISHes sent in the same write as the CONNECT.
    const PIPELINED: usize = 64 * 1024;
    let broker = TestBroker::with(|c| c.server.allow_anonymous = false);
    let mut raw = Raw::connect(broker.addr).await;
    let mut burst = connect;
    while burst.len() < PIPELINED {
        burst.extend_from_slice(&publish);
    }
    raw.send(&burst).await;
    assert_eq!(raw.recv().await.connack().1, code);

    let written = keep_writing(&mut raw, &publish).await;
    let (frames, end) = raw.read_until_closed().await;
    assert!(
        written.is_ok(),
        "writing after the CONNACK failed: {written:?}"
    );
    assert!(
        frames.is_empty() && end.is_ok(),
        "expected an orderly close after the CONNACK; read {frames:?}, ended with {end:?}"
    );
}

#[tokio::test]
async fn a_refused_connect_is_read_despite_pipelined_input() {
    let payload = [b'p'; 1024];
    // 0x87 Not authorized (MQTT 5), 0x05 (3.1.1).
    refused_connect_with_pipelined_input(
        v5("anon"),
        publish_v5("early", 1, 1, &payload, None),
        0x87,
    )
    .await;
    refused_connect_with_pipelined_input(
        v4("anon3"),
        publish_v4("early", 1, 1, &payload, false),
        0x05,
    )
    .await;
}
