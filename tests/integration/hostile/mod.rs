//! Hostile clients (issue 13): each hole a client could use to take the
//! broker down, tried through real sockets, with the bound or the exact
//! refusal the broker must answer with. `robustness.rs` holds the older
//! cases (garbage, oversized and trickled packets, a slow subscriber with a
//! small queue, a thousand clients); these are the ones that need the
//! `[limits]` section, the memory budget, kicks that reach stuck
//! connections and the lingering close.
//!
//! Tests that need non-default limits write them as TOML text
//! (`support::hostile::toml_broker` for an in-process broker,
//! `sluice_with_toml` for the real binary), so that the file compiles
//! against a broker that does not have the keys yet: there, the broker
//! refuses the configuration and the test fails on that.
//!
//! What each test defends:
//!
//! `amplification`: retained messages times repeated filters.
//! - `one_subscribe_of_repeated_filters_does_not_amplify_retained`: 5,000
//!   retained messages and one 3.1.1 SUBSCRIBE of 20,000 × `amp/#` keep
//!   RSS under +50 MB; SUBACK grants the first 256 filters; each retained
//!   message arrives at most once.
//! - `a_one_megabyte_subscribe_of_repeated_filters`: the same with an MQTT 5
//!   SUBSCRIBE just under the 1 MiB packet limit (131,071 filters).
//!
//! `topics`: topic depth and length, `$SYS`, variable byte integers.
//! - `deep_and_long_publish_topics_are_refused_on_mqtt5`: PUBACK/PUBREC
//!   0x90, QoS 0 dropped, the connection stays usable.
//! - `deep_and_long_publish_topics_close_an_mqtt3_connection`.
//! - `deep_and_long_filters_are_refused_in_suback`: 0x8F (5) / 0x80 (3.1.1).
//! - `deep_and_long_will_topics_are_refused_at_connect`: 0x90 / 0x05.
//! - `default_topic_limits_are_128_levels_and_4096_bytes`: the boundaries.
//! - `max_topic_levels_is_configurable`: 8 levels pass, 9 do not.
//! - `clients_cannot_publish_to_sys` /
//!   `an_mqtt3_publish_to_sys_closes_the_connection`.
//! - `non_minimal_variable_byte_integers_are_malformed`.
//!
//! `limits`: per-client and global counts, each from TOML.
//! - `filters_past_max_filters_per_subscribe_are_refused`.
//! - `subscriptions_past_max_subscriptions_per_client_are_refused`
//!   (replacing one is still allowed).
//! - `sessions_past_max_sessions_are_refused` (existing sessions still
//!   resume).
//! - `retained_messages_past_max_retained_messages_are_refused` and
//!   `retained_bytes_past_max_retained_bytes_are_refused` (replacing and
//!   clearing still work; a refused message is not delivered).
//! - `an_exchange_of_max_auth_rounds_is_allowed`.
//!
//! `memory`: the global budget.
//! - `a_hundred_clients_cannot_push_rss_past_the_memory_budget`: partial
//!   packets, stuck subscribers' queues and retained messages under
//!   `max_memory_mb = 64`; CONNACK 0x89 while over; recovery after.
//!
//! `stuck`: a subscriber that stops reading.
//! - `takeover_of_a_stuck_subscriber_answers_within_a_second`.
//! - `keep_alive_closes_a_stuck_subscriber`.
//! - `shutdown_is_not_held_up_by_a_stuck_subscriber`.
//! - `a_stuck_subscriber_queues_at_most_16_mib_by_default` and
//!   `a_stuck_subscriber_queues_at_most_max_queued_bytes`.
//!
//! `closes`: the lingering close.
//! - `exceeding_receive_maximum_is_read_as_disconnect_0x93`.
//! - `a_refused_connect_is_read_despite_pipelined_input`.
//!
//! `churn`: many connections, short ones and slow ones.
//! - `connect_disconnect_loops_do_not_leak_tasks` (the in-process runtime's
//!   task count) and `the_alive_tasks_metric_stays_flat_under_loops` (the
//!   real binary's `/metrics`).
//! - `ten_thousand_silent_connections`: RSS bounded, others served, all
//!   closed at the connect timeout.
//! - `a_connect_trickled_one_byte_a_second_is_closed_at_the_timeout`.
//! - `a_connect_flood_is_answered`.
//!
//! Not covered: a panic in a connection task releasing its session (issue
//! 13) — no client input is known to panic a connection task, so there is
//! no way to trigger one from outside.

mod amplification;
mod churn;
mod closes;
mod limits;
mod memory;
mod stuck;
mod topics;

use std::net::SocketAddr;

use crate::support::Raw;
use crate::support::packets::*;

/// An MQTT 5 CONNECT with a clean start and no properties.
fn v5(id: &str) -> Vec<u8> {
    connect_v5(id, true, 60, |_| {})
}

/// An MQTT 3.1.1 CONNECT with a clean session.
fn v4(id: &str) -> Vec<u8> {
    connect_v4(id, true, 60)
}

/// Proves `raw`'s connection still works: PINGREQ answered by PINGRESP.
async fn ping(raw: &mut Raw) {
    raw.send(&PINGREQ).await;
    assert_eq!(raw.recv().await.kind(), 13, "PINGRESP");
}

/// A subscriber and a publisher exchange a QoS 1 message: the broker
/// still serves new clients.
async fn still_serving(addr: SocketAddr, tag: &str) {
    let mut sub = Raw::handshake(addr, &v4(&format!("{tag}-sub"))).await;
    sub.send(&subscribe_v4(1, &format!("alive/{tag}"), 1)).await;
    assert_eq!(sub.recv_kind(9).await.ack_codes(false), [1]);
    let mut publisher = Raw::handshake(addr, &v4(&format!("{tag}-pub"))).await;
    publisher
        .send(&publish_v4(&format!("alive/{tag}"), 1, 1, b"yes", false))
        .await;
    assert_eq!(publisher.recv_kind(4).await.packet_id(), 1);
    let p = sub.recv_kind(3).await.publish_v4();
    assert_eq!(&p.payload[..], b"yes");
}

/// Expects the broker to close `raw`'s connection without sending
/// anything first (an MQTT 3.x refusal).
async fn closed_without_answer(raw: &mut Raw, what: &str) {
    if let Some(f) = raw.recv_within(crate::support::PATIENCE).await {
        panic!("{what}: expected the connection closed, got {f:?}");
    }
    assert!(raw.expect_closed().await.is_empty(), "{what}");
}

/// The topic of a PUBLISH frame (any protocol level).
fn topic_of(f: &crate::support::raw::Frame) -> String {
    assert_eq!(f.kind(), 3, "expected PUBLISH, got {f:?}");
    let len = usize::from(u16::from_be_bytes([f.body[0], f.body[1]]));
    String::from_utf8_lossy(&f.body[2..2 + len]).into_owned()
}

/// Publishes `payload` at QoS 1 from an MQTT 5 client (retained or not)
/// and returns the PUBACK reason.
async fn puback_v5(raw: &mut Raw, pkid: u16, topic: &str, payload: &[u8], retain: bool) -> u8 {
    let mut bytes = publish_v5(topic, 1, pkid, payload, None);
    if retain {
        bytes[0] |= 0x01;
    }
    raw.send(&bytes).await;
    let ack = raw.recv_kind(4).await;
    assert_eq!(ack.packet_id(), pkid);
    ack.ack_reason()
}

/// A PUBACK reason that accepts (0x00, or 0x10 "no matching subscribers").
fn accepted(code: u8) -> bool {
    code < 0x80
}
