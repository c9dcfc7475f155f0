//! The hot path's pure parts: PUBLISH decode and encode (MQTT 3.1.1 and 5),
//! and matching a topic against 10k and 100k subscriptions with mixed
//! wildcards.

use std::hint::black_box;
use std::time::Instant;

use bytes::BytesMut;
use criterion::{Criterion, criterion_group, criterion_main};
use sluice_broker::codec::{
    Decoder, MessageProperties, OutgoingPublish, Packet, ProtocolVersion, QoS,
};
use sluice_broker::subscriptions::SubscriptionTree;
use sluice_broker::topic::{PacketId, TopicFilter, TopicName};

const TOPIC: &str = "sensors/site-17/device-42/temperature";

fn connect(level: u8) -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', level, 0x02, 0, 60];
    if level == 5 {
        body.push(0);
    }
    body.extend_from_slice(&[0, 1, b'c']);
    let mut p = vec![0x10, body.len() as u8];
    p.extend_from_slice(&body);
    p
}

fn publish_bytes(version: ProtocolVersion, props: &MessageProperties) -> Vec<u8> {
    let mut buf = BytesMut::new();
    sluice_broker::codec::encode_publish(
        &mut buf,
        version,
        &OutgoingPublish {
            topic: TOPIC,
            qos: QoS::AtLeastOnce,
            retain: false,
            dup: false,
            packet_id: PacketId::new(7),
            payload: &[0x42; 64],
            properties: Some(props),
            message_expiry_interval: None,
            topic_alias: None,
            subscription_identifiers: &[],
        },
    );
    buf.to_vec()
}

fn props() -> MessageProperties {
    MessageProperties {
        content_type: Some("application/json".into()),
        user_properties: vec![("unit".into(), "celsius".into())],
        ..MessageProperties::default()
    }
}

fn codec(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec");
    for (name, version, level) in [
        ("decode-publish-v3", ProtocolVersion::V3_1_1, 4),
        ("decode-publish-v5", ProtocolVersion::V5, 5),
    ] {
        let one = publish_bytes(version, &props());
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut decoder = Decoder::new(1 << 20);
                let mut buf = BytesMut::from(&connect(level)[..]);
                assert!(matches!(
                    decoder.decode(&mut buf),
                    Ok(Some(Packet::Connect(_)))
                ));
                let batch: Vec<u8> = one.iter().copied().cycle().take(one.len() * 1024).collect();
                let mut total = std::time::Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let n = left.min(1024);
                    let mut buf = BytesMut::from(&batch[..one.len() * n as usize]);
                    let started = Instant::now();
                    for _ in 0..n {
                        black_box(decoder.decode(&mut buf).ok().flatten());
                    }
                    total += started.elapsed();
                    left -= n;
                }
                total
            })
        });
    }
    for (name, version) in [
        ("encode-publish-v3", ProtocolVersion::V3_1_1),
        ("encode-publish-v5", ProtocolVersion::V5),
    ] {
        let props = props();
        let payload = [0x42u8; 64];
        let mut buf = BytesMut::with_capacity(1 << 20);
        group.bench_function(name, |b| {
            b.iter(|| {
                if buf.len() > (1 << 20) - 256 {
                    buf.clear();
                }
                sluice_broker::codec::encode_publish(
                    &mut buf,
                    version,
                    &OutgoingPublish {
                        topic: black_box(TOPIC),
                        qos: QoS::AtLeastOnce,
                        retain: false,
                        dup: false,
                        packet_id: PacketId::new(7),
                        payload: &payload,
                        properties: Some(&props),
                        message_expiry_interval: None,
                        topic_alias: None,
                        subscription_identifiers: &[],
                    },
                );
            })
        });
    }
    group.finish();
}

/// `n` subscriptions: 60% exact device topics, 20% `+` over devices, 10%
/// `#` over a site, 10% `+/+/+/temperature`-style; the topic matched hits a
/// handful of them.
fn tree(n: usize) -> SubscriptionTree<u32> {
    let mut tree = SubscriptionTree::new();
    for i in 0..n {
        let site = i % 1000;
        let device = i / 1000;
        let filter = match i % 10 {
            0..=5 => format!("sensors/site-{site}/device-{device}/temperature"),
            6 | 7 => format!("sensors/site-{site}/+/temperature"),
            8 => format!("sensors/site-{site}/#"),
            _ => format!("+/site-{site}/+/+"),
        };
        let filter = TopicFilter::new(&filter).expect("valid filter");
        tree.insert(&filter, i as u64, i as u32);
    }
    tree
}

fn matching(c: &mut Criterion) {
    let topic = TopicName::new(TOPIC).expect("valid topic");
    let mut group = c.benchmark_group("match");
    for (name, n) in [("10k", 10_000), ("100k", 100_000)] {
        let tree = tree(n);
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut hits = 0usize;
                tree.for_each_match(black_box(&topic), |m| {
                    hits += m.plain.len() + m.shared.len()
                });
                black_box(hits)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, codec, matching);
criterion_main!(benches);
