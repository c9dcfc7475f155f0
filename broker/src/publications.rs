//! Messages the plugins publish (the host function `publish`, queued by
//! `plugins::outbox`), routed as a client's PUBLISH would be: through the
//! *other* plugins' `auth-on-publish(-m5)` (with their changes), into the
//! retained store, to the subscribers here and, in a cluster, on the other
//! nodes, and told to the other plugins' `on-publish(-m5)`.
//!
//! The publisher is the session `plugin:NAME` in the plugin's mountpoint,
//! with no username, speaking MQTT 5 (its properties reach the hooks). One
//! task takes the queue in order; a refusal is logged and counted
//! (`sluice_plugin_publications_denied_total`), never retried.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::codec::{ProtocolVersion, QoS};
use crate::context::Context;
use crate::limits::Limit;
use crate::memory::Pressure;
use crate::message::Draft;
use crate::plugins::{Event, Hook, Publication, PublishOutcome, PublishRequest};
use crate::session::SubscriberId;
use crate::topic::ClientId;

/// Routes the plugins' publications until the queue closes.
pub(crate) async fn run(ctx: Arc<Context>, mut queue: mpsc::Receiver<Publication>) {
    while let Some(p) = queue.recv().await {
        route(&ctx, p).await;
    }
}

/// Routes one publication.
async fn route(ctx: &Context, p: Publication) {
    let Ok(client_id) = ClientId::new(&format!("plugin:{}", p.plugin)) else {
        return;
    };
    let id = SubscriberId {
        mountpoint: p.mountpoint.clone(),
        client_id,
    };
    let refuse = |why: &str| {
        tracing::warn!(plugin = %p.plugin, topic = %p.topic, "publication refused: {why}");
        ctx.plugins.publication_denied(&p.plugin);
    };
    match (p.qos, ctx.memory.pressure()) {
        (QoS::AtMostOnce, Pressure::High | Pressure::Over) | (_, Pressure::Over) => {
            ctx.metrics
                .limits
                .hit(Limit::Memory, &id, &"plugin publication dropped");
            refuse("the broker is short of memory");
            return;
        }
        _ => {}
    }
    let mut changes = None;
    if ctx.plugins.checks_publish() {
        let request = PublishRequest {
            id: &id,
            username: None,
            version: ProtocolVersion::V5,
            topic: &p.topic,
            payload: &p.payload,
            qos: p.qos,
            retain: p.retain,
            properties: &p.properties,
            expiry: p.expiry,
            is_will: false,
            from_plugin: Some(&p.plugin),
            limits: &ctx.limits,
        };
        match ctx.plugins.authorize_publish(&request).await {
            PublishOutcome::Accepted { changes: c, .. } => changes = c,
            PublishOutcome::Refused { cause, .. } => {
                refuse(&cause);
                return;
            }
        }
    }
    let mut message = Draft {
        topic: p.topic.clone(),
        payload: p.payload.clone(),
        qos: p.qos,
        retain: p.retain,
        properties: p.properties.clone(),
        expiry: p.expiry,
    };
    let mut mountpoint = p.mountpoint.clone();
    if let Some(c) = changes {
        c.apply(&mut message);
        mountpoint = c.mountpoint.unwrap_or(mountpoint);
    }
    let message = Arc::new(message.into_message());
    if message.retain {
        if let Err(limit) = ctx.router.retain(&mountpoint, &message) {
            ctx.metrics
                .limits
                .hit(limit, &id, &"retained plugin publication refused");
            refuse(&format!("{limit} reached (retained)"));
            return;
        }
    }
    ctx.router.publish_everywhere(&mountpoint, None, &message);
    let plugins = &ctx.plugins;
    if plugins.implements(Hook::OnPublish) || plugins.implements(Hook::OnPublishM5) {
        plugins.notify(Event::Published {
            username: None,
            id,
            message,
            v5: true,
            from_plugin: Some(p.plugin.clone()),
        });
    }
}
