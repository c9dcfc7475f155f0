//! PUBLISH: QoS 0/1/2 in both directions, the QoS 2 state machines, the
//! inflight window, redelivery on reconnect.

use std::time::Duration;

use crate::support::packets::*;
use crate::support::rumqtt::{V4, V5};
use crate::support::{Raw, TestBroker};

#[tokio::test]
async fn every_qos_both_directions_v311() {
    let broker = TestBroker::start();
    let mut sub = V4::connect(broker.addr, "sub").await;
    sub.subscribe("q/#", 2).await;
    let publisher = V4::connect(broker.addr, "pub").await;
    for qos in 0..=2u8 {
        publisher
            .publish(&format!("q/{qos}"), qos, false, &[qos])
            .await;
        let p = sub.next_publish().await;
        assert_eq!(p.topic, format!("q/{qos}"));
        assert_eq!(p.qos as u8, qos, "delivered at the publish QoS");
        assert_eq!(&p.payload[..], &[qos]);
    }
}

#[tokio::test]
async fn every_qos_both_directions_v5() {
    let broker = TestBroker::start();
    let mut sub = V5::connect(broker.addr, "sub5").await;
    sub.subscribe("q/#", 2).await;
    let publisher = V5::connect(broker.addr, "pub5").await;
    for qos in 0..=2u8 {
        publisher
            .publish(&format!("q/{qos}"), qos, false, &[qos])
            .await;
        let p = sub.next_publish().await;
        assert_eq!(&p.topic[..], format!("q/{qos}").as_bytes());
        assert_eq!(p.qos as u8, qos);
    }
}

#[tokio::test]
async fn subscription_qos_caps_delivery_qos() {
    let broker = TestBroker::start();
    let mut sub = V4::connect(broker.addr, "low").await;
    sub.subscribe("cap", 1).await;
    let publisher = V4::connect(broker.addr, "pub").await;
    publisher.publish("cap", 2, false, b"x").await;
    assert_eq!(sub.next_publish().await.qos as u8, 1);
}

#[tokio::test]
async fn qos2_inbound_is_delivered_exactly_once() {
    let broker = TestBroker::start();
    let mut sub = V4::connect(broker.addr, "sub").await;
    sub.subscribe("once", 0).await;
    let mut raw = Raw::handshake(broker.addr, &connect_v4("q2", true, 60)).await;
    raw.send(&publish_v4("once", 2, 7, b"a", false)).await;
    let rec = raw.recv().await;
    assert_eq!((rec.kind(), rec.packet_id()), (5, 7), "PUBREC");
    // A resend (DUP) before PUBREL must not be routed again.
    let mut dup = publish_v4("once", 2, 7, b"a", false);
    dup[0] |= 0x08;
    raw.send(&dup).await;
    assert_eq!(raw.recv().await.kind(), 5);
    raw.send(&pubrel(7)).await;
    let comp = raw.recv().await;
    assert_eq!((comp.kind(), comp.packet_id()), (7, 7), "PUBCOMP");
    assert_eq!(&sub.next_publish().await.payload[..], b"a");
    sub.no_publish_within(Duration::from_millis(300)).await;
    // The id is free again: a new message with it is routed.
    raw.send(&publish_v4("once", 2, 7, b"b", false)).await;
    assert_eq!(raw.recv().await.kind(), 5);
    raw.send(&pubrel(7)).await;
    assert_eq!(raw.recv().await.kind(), 7);
    assert_eq!(&sub.next_publish().await.payload[..], b"b");
}

#[tokio::test]
async fn qos2_outbound_flow() {
    let broker = TestBroker::start();
    let mut raw = Raw::handshake(broker.addr, &connect_v4("q2out", true, 60)).await;
    raw.send(&subscribe_v4(1, "out", 2)).await;
    assert_eq!(raw.recv().await.ack_codes(false), [2]);
    let publisher = V4::connect(broker.addr, "pub").await;
    publisher.publish("out", 2, false, b"x").await;
    let p = raw.recv_kind(3).await;
    assert_eq!(p.byte1 & 0x06, 0x04, "QoS 2");
    let id = p.publish_v4().pkid;
    assert_ne!(id, 0);
    raw.send(&pubrec(id)).await;
    let rel = raw.recv().await;
    assert_eq!((rel.byte1, rel.packet_id()), (0x62, id), "PUBREL");
    raw.send(&pubcomp(id)).await;
    raw.send(&PINGREQ).await;
    assert_eq!(raw.recv().await.kind(), 13, "nothing else pending");
}

#[tokio::test]
async fn qos1_ack_and_no_matching_subscribers_in_v5() {
    let broker = TestBroker::start();
    let mut raw = Raw::handshake(broker.addr, &connect_v5("acker", true, 60, |_| {})).await;
    raw.send(&publish_v5("nobody/here", 1, 3, b"x", None)).await;
    let ack = raw.recv().await;
    assert_eq!(
        (ack.kind(), ack.packet_id(), ack.ack_reason()),
        (4, 3, 0x10)
    );
    raw.send(&subscribe_v5(1, vec![filter_v5("some/one", 1)], None))
        .await;
    raw.recv_kind(9).await;
    raw.send(&publish_v5("some/one", 1, 4, b"x", None)).await;
    let ack = raw.recv_kind(4).await;
    assert_eq!((ack.packet_id(), ack.ack_reason()), (4, 0));
}

#[tokio::test]
async fn inflight_window_follows_client_receive_maximum() {
    let broker = TestBroker::start();
    let mut raw = Raw::handshake(
        broker.addr,
        &connect_v5("narrow", true, 60, |p| p.receive_maximum = Some(2)),
    )
    .await;
    raw.send(&subscribe_v5(1, vec![filter_v5("w", 1)], None))
        .await;
    raw.recv_kind(9).await;
    let publisher = V4::connect(broker.addr, "pub").await;
    for i in 0..5u8 {
        publisher.publish("w", 1, false, &[i]).await;
    }
    let a = raw.recv_kind(3).await.publish_v5();
    let b = raw.recv_kind(3).await.publish_v5();
    assert_eq!((&a.payload[..], &b.payload[..]), (&[0u8][..], &[1u8][..]));
    raw.expect_silence(Duration::from_millis(300)).await;
    raw.send(&puback(a.pkid)).await;
    let c = raw.recv_kind(3).await.publish_v5();
    assert_eq!(&c.payload[..], &[2]);
    raw.expect_silence(Duration::from_millis(300)).await;
    raw.send(&puback(b.pkid)).await;
    raw.send(&puback(c.pkid)).await;
    let d = raw.recv_kind(3).await.publish_v5();
    let e = raw.recv_kind(3).await.publish_v5();
    assert_eq!((&d.payload[..], &e.payload[..]), (&[3u8][..], &[4u8][..]));
}

#[tokio::test]
async fn unacknowledged_messages_are_resent_with_dup_on_reconnect() {
    let broker = TestBroker::start();
    let connect = connect_v4("resume", false, 60);
    let mut raw = Raw::handshake(broker.addr, &connect).await;
    raw.send(&subscribe_v4(1, "r/+", 2)).await;
    raw.recv_kind(9).await;
    let publisher = V4::connect(broker.addr, "pub").await;
    publisher.publish("r/1", 1, false, b"one").await;
    publisher.publish("r/2", 2, false, b"two").await;
    publisher.publish("r/3", 2, false, b"three").await;
    let one = raw.recv_kind(3).await.publish_v4();
    let two = raw.recv_kind(3).await.publish_v4();
    let three = raw.recv_kind(3).await.publish_v4();
    // Acknowledge only the PUBREC of "three": it then waits for PUBCOMP.
    raw.send(&pubrec(three.pkid)).await;
    assert_eq!(raw.recv().await.byte1, 0x62);
    drop(raw);

    let mut raw = Raw::connect(broker.addr).await;
    raw.send(&connect).await;
    assert_eq!(raw.recv().await.connack(), (true, 0));
    let f1 = raw.recv().await;
    let f2 = raw.recv().await;
    let f3 = raw.recv().await;
    assert_eq!(f1.byte1 & 0x08, 0x08, "DUP set");
    let r1 = f1.publish_v4();
    assert_eq!((r1.pkid, &r1.payload[..]), (one.pkid, &b"one"[..]));
    let r2 = f2.publish_v4();
    assert!(r2.dup);
    assert_eq!((r2.pkid, &r2.payload[..]), (two.pkid, &b"two"[..]));
    assert_eq!(
        (f3.byte1, f3.packet_id()),
        (0x62, three.pkid),
        "PUBREL resent"
    );
}
