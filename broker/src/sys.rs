//! `$SYS/broker/...` statistics, published as retained messages every
//! `server.sys_interval_secs` (names follow mosquitto's, so existing
//! dashboards work).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use bytes::Bytes;

use crate::codec::{MessageProperties, QoS};
use crate::context::Context;
use crate::message::Message;
use crate::metrics::Metrics;
use crate::topic::TopicName;

/// Publishes the statistics until the task is dropped.
pub async fn run(ctx: Arc<Context>) {
    let secs = ctx.config.server.sys_interval_secs;
    if secs == 0 {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_secs(u64::from(secs)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let publisher = ctx.registry.next_key();
    loop {
        tick.tick().await;
        publish_all(&ctx, publisher);
    }
}

fn publish_all(ctx: &Context, publisher: u64) {
    let m = &ctx.metrics;
    let counter = |c: &AtomicU64| Metrics::get(c).to_string();
    let stats = [
        (
            "$SYS/broker/version",
            format!("sluice {}", env!("CARGO_PKG_VERSION")),
        ),
        (
            "$SYS/broker/uptime",
            format!("{} seconds", ctx.started.elapsed().as_secs()),
        ),
        (
            "$SYS/broker/clients/connected",
            counter(&m.clients_connected),
        ),
        ("$SYS/broker/clients/total", ctx.registry.len().to_string()),
        (
            "$SYS/broker/messages/received",
            counter(&m.messages_received),
        ),
        ("$SYS/broker/messages/sent", counter(&m.messages_sent)),
        ("$SYS/broker/messages/dropped", counter(&m.messages_dropped)),
        ("$SYS/broker/bytes/received", counter(&m.bytes_received)),
        ("$SYS/broker/bytes/sent", counter(&m.bytes_sent)),
        (
            "$SYS/broker/subscriptions/count",
            ctx.router.subscription_count().to_string(),
        ),
        (
            "$SYS/broker/retained messages/count",
            ctx.router.retained_count().to_string(),
        ),
    ];
    let mountpoint = crate::session::default_mountpoint();
    for (topic, value) in stats {
        let Ok(topic) = TopicName::new(topic) else {
            continue;
        };
        let message = Arc::new(Message {
            topic,
            payload: Bytes::from(value),
            qos: QoS::AtMostOnce,
            retain: true,
            properties: MessageProperties::default(),
            expires_at: None,
        });
        // The broker's own statistics replace themselves: a full retained
        // store only leaves them out.
        let _ = ctx.router.retain(&mountpoint, &message);
        ctx.router.publish(&mountpoint, Some(publisher), &message);
    }
}
