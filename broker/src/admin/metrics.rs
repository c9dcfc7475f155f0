//! `GET /metrics`: the broker's, the store's, the cluster's and the
//! plugins' counters, gauges and per-hook histograms, written in the
//! Prometheus text format by `exposition.rs`. Every family is listed in
//! `docs/metrics.md`.

use std::sync::atomic::AtomicU64;

use super::exposition::{Exposition, Kind, labels};
use crate::context::Context;
use crate::limits::Limit;
use crate::metrics::Metrics;
use crate::plugins::{PluginStatus, Status};

/// A count as a sample value.
fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// `GET /metrics`.
pub(super) fn metrics_text(ctx: &Context) -> String {
    let mut out = Exposition::default();
    broker_metrics(&mut out, ctx);
    plugin_metrics(
        &mut out,
        &ctx.plugins.status(),
        ctx.plugins.dropped_events(),
    );
    out.into_text()
}

fn broker_metrics(out: &mut Exposition, ctx: &Context) {
    use Kind::{Counter, Gauge};
    let m = &ctx.metrics;
    let get = |c: &AtomicU64| Metrics::get(c);
    let families = [
        (
            "sluice_uptime_seconds",
            Gauge,
            "Seconds since the broker started.",
            ctx.started.elapsed().as_secs(),
        ),
        (
            "sluice_clients_connected",
            Gauge,
            "Clients connected now.",
            get(&m.clients_connected),
        ),
        (
            "sluice_sessions",
            Gauge,
            "Sessions: connected clients and persistent sessions of disconnected ones.",
            count(ctx.registry.len()),
        ),
        (
            "sluice_connections_total",
            Counter,
            "Client connections accepted.",
            get(&m.connections_total),
        ),
        (
            "sluice_connections_refused_limit_total",
            Counter,
            "Connections closed at accept because their listener's max_connections was reached.",
            get(&m.connections_refused_limit),
        ),
        (
            "sluice_connections_refused_rate_total",
            Counter,
            "Connections closed at accept because their listener's max_connection_rate was exceeded.",
            get(&m.connections_refused_rate),
        ),
        (
            "sluice_messages_received_total",
            Counter,
            "PUBLISH packets received from clients.",
            get(&m.messages_received),
        ),
        (
            "sluice_messages_sent_total",
            Counter,
            "PUBLISH packets sent to clients.",
            get(&m.messages_sent),
        ),
        (
            "sluice_messages_dropped_total",
            Counter,
            "Messages dropped (full queues, expiry, refusals).",
            get(&m.messages_dropped),
        ),
        (
            "sluice_publishers_held_total",
            Counter,
            "Times the broker stopped reading from a publisher until the queues its messages went to drained (session.overload).",
            get(&m.publishers_held),
        ),
        (
            "sluice_bytes_received_total",
            Counter,
            "Bytes received from clients.",
            get(&m.bytes_received),
        ),
        (
            "sluice_bytes_sent_total",
            Counter,
            "Bytes sent to clients.",
            get(&m.bytes_sent),
        ),
        (
            "sluice_subscriptions",
            Gauge,
            "Subscriptions across all sessions.",
            count(ctx.router.subscription_count()),
        ),
        (
            "sluice_retained_messages",
            Gauge,
            "Retained messages.",
            count(ctx.router.retained_count()),
        ),
        (
            "sluice_retained_bytes",
            Gauge,
            "Bytes of retained messages, as limits.max_retained_bytes counts them.",
            count(ctx.router.retained_bytes()),
        ),
        (
            "sluice_session_timers",
            Gauge,
            "Scheduled session expiries and delayed Wills.",
            count(ctx.registry.timer_count()),
        ),
        (
            "sluice_memory_allocated_bytes",
            Gauge,
            "Heap bytes in use, as the memory budget counts them.",
            count(crate::memory::allocated()),
        ),
        (
            "sluice_memory_budget_bytes",
            Gauge,
            "The memory budget (limits.max_memory_mb).",
            count(ctx.memory.limit()),
        ),
        (
            "sluice_runtime_alive_tasks",
            Gauge,
            "Tasks alive in the broker's runtime (connections, timers, plugin dispatch).",
            count(
                tokio::runtime::Handle::current()
                    .metrics()
                    .num_alive_tasks(),
            ),
        ),
    ];
    for (name, kind, help, value) in families {
        out.single(name, kind, help, value);
    }
    if let Some(store) = &ctx.store {
        store_metrics(out, store);
    }
    if let Some(cluster) = ctx.router.cluster() {
        cluster_metrics(out, cluster);
    }
    let hits = "sluice_limit_hits_total";
    out.family(
        hits,
        Counter,
        "Times a client ran into a limit (limit: which one; see docs/config.md).",
    );
    for limit in Limit::ALL {
        out.labelled(hits, "limit", limit.label(), m.limits.count(*limit));
    }
}

/// The store's metrics (`[persistence]`).
fn store_metrics(out: &mut Exposition, store: &crate::store::Store) {
    use Kind::{Counter, Gauge};
    let s = store.stats();
    let get = |c: &AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    let families = [
        (
            "sluice_store_disk_bytes",
            Gauge,
            "Bytes the store occupies on disk.",
            store.disk_bytes(),
        ),
        (
            "sluice_store_messages",
            Gauge,
            "Messages held in the store by queued or in-flight deliveries.",
            count(store.held_messages()),
        ),
        (
            "sluice_store_batches_total",
            Counter,
            "Batches committed by the store's writer (group commit).",
            get(&s.batches),
        ),
        (
            "sluice_store_ops_total",
            Counter,
            "Changes submitted to the store.",
            get(&s.ops),
        ),
        (
            "sluice_store_writes_total",
            Counter,
            "Key writes (puts and deletes) that reached the engine; the rest of \
             sluice_store_ops_total folded away in its batch (a delivery acknowledged \
             before its batch was written is never written).",
            get(&s.writes),
        ),
        (
            "sluice_store_written_bytes_total",
            Counter,
            "Key and value bytes written by committed batches.",
            get(&s.bytes),
        ),
        (
            "sluice_store_syncs_total",
            Counter,
            "fsyncs of the store.",
            get(&s.syncs),
        ),
        (
            "sluice_store_failures_total",
            Counter,
            "Batches or fsyncs that failed.",
            get(&s.failures),
        ),
        (
            "sluice_store_commit_microseconds_total",
            Counter,
            "Time spent committing batches (fsync included with durability = always).",
            get(&s.commit_micros),
        ),
        (
            "sluice_store_commit_microseconds_max",
            Gauge,
            "Longest batch commit since start.",
            get(&s.commit_micros_max),
        ),
        (
            "sluice_store_backlog_bytes",
            Gauge,
            "Bytes of changes submitted and not yet taken by the writer.",
            count(store.backlog()),
        ),
    ];
    for (name, kind, help, value) in families {
        out.single(name, kind, help, value);
    }
}

/// The cluster's metrics (`[cluster]`).
fn cluster_metrics(out: &mut Exposition, cluster: &crate::cluster::Cluster) {
    use Kind::{Counter, Gauge};
    let s = cluster.stats();
    let get = |c: &AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    for (name, kind, help, value) in [
        (
            "sluice_cluster_forwarded_total",
            Counter,
            "Messages published here and sent to NATS for the other nodes.",
            get(&s.forwarded),
        ),
        (
            "sluice_cluster_received_total",
            Counter,
            "Messages other nodes published, received from NATS.",
            get(&s.received),
        ),
        (
            "sluice_cluster_dropped_total",
            Counter,
            "Messages not sent to NATS (its queue full, or NATS refused) or not understood.",
            get(&s.dropped),
        ),
        (
            "sluice_cluster_subscriptions",
            Gauge,
            "NATS subscriptions this node holds for its clients' filters.",
            get(&s.subscriptions),
        ),
        (
            "sluice_cluster_retained_applied_total",
            Counter,
            "Retained messages set or cleared here from the cluster's bucket.",
            get(&s.retained_applied),
        ),
        (
            "sluice_cluster_retained_failed_total",
            Counter,
            "Retained messages not written to the cluster's bucket, or refused here by a limit.",
            get(&s.retained_failed),
        ),
        (
            "sluice_cluster_sessions_handed_out_total",
            Counter,
            "Sessions handed to another node whose client connected there.",
            get(&s.handed_out),
        ),
        (
            "sluice_cluster_sessions_handed_in_total",
            Counter,
            "Sessions handed over by another node to a client connecting here.",
            get(&s.handed_in),
        ),
        (
            "sluice_cluster_nodes_declared_dead_total",
            Counter,
            "Nodes this node found without a heartbeat for node_timeout and declared dead.",
            get(&s.dead_nodes),
        ),
        (
            "sluice_cluster_dead_nodes_handled_total",
            Counter,
            "Dead nodes whose sessions this node tried to take over.",
            get(&s.dead_handled),
        ),
        (
            "sluice_cluster_sessions_inherited_total",
            Counter,
            "Sessions of dead nodes this node took over (their Wills sent here).",
            get(&s.inherited),
        ),
    ] {
        out.single(name, kind, help, value);
    }
}

/// One per-plugin metric family: name, type, help, and its value.
type PluginFamily = (&'static str, Kind, &'static str, fn(&PluginStatus) -> u64);

const PLUGIN_FAMILIES: [PluginFamily; 13] = [
    (
        "sluice_plugin_calls_total",
        Kind::Counter,
        "Hook calls into the plugin's loaded version.",
        |p| p.calls,
    ),
    (
        "sluice_plugin_errors_total",
        Kind::Counter,
        "Hook calls the plugin answered with an error.",
        |p| p.errors,
    ),
    (
        "sluice_plugin_failures_total",
        Kind::Counter,
        "Hook calls that failed (trap, memory, fuel, deadline, busy, disabled).",
        |p| p.failures,
    ),
    (
        "sluice_plugin_traps_total",
        Kind::Counter,
        "Hook calls that trapped.",
        |p| p.traps,
    ),
    (
        "sluice_plugin_deadlines_total",
        Kind::Counter,
        "Hook calls cut at their deadline.",
        |p| p.deadlines,
    ),
    (
        "sluice_plugin_out_of_fuel_total",
        Kind::Counter,
        "Hook calls that ran out of fuel.",
        |p| p.out_of_fuel,
    ),
    (
        "sluice_plugin_invalid_answers_total",
        Kind::Counter,
        "Answers refused as invalid (a modifier out of range or past the operator's limits).",
        |p| p.invalid,
    ),
    (
        "sluice_plugin_busy_total",
        Kind::Counter,
        "Hook calls that found no free instance within the deadline.",
        |p| p.busy,
    ),
    (
        "sluice_plugin_fuel_used_total",
        Kind::Counter,
        "Fuel the plugin's hook calls used.",
        |p| p.fuel_used,
    ),
    (
        "sluice_plugin_instances",
        Kind::Gauge,
        "Live instances of the plugin.",
        |p| count(p.instances),
    ),
    (
        "sluice_plugin_published_total",
        Kind::Counter,
        "Messages the plugin published (host function publish) that were queued.",
        |p| p.published,
    ),
    (
        "sluice_plugin_publish_refused_total",
        Kind::Counter,
        "Publish calls refused at once: publishing off, rate, topic, size or queue full.",
        |p| p.publish_refused,
    ),
    (
        "sluice_plugin_publications_denied_total",
        Kind::Counter,
        "Queued publications of the plugin that other plugins or the broker's limits refused.",
        |p| p.publications_denied,
    ),
];

fn plugin_metrics(out: &mut Exposition, status: &Status, dropped_events: u64) {
    use Kind::{Counter, Gauge};
    for (name, kind, help, value) in PLUGIN_FAMILIES {
        out.family(name, kind, help);
        for p in &status.plugins {
            out.plugin_sample(name, &p.name, value(p));
        }
    }
    hook_metrics(out, status);
    let totals = [
        (
            "sluice_plugins_loaded",
            Gauge,
            "Plugins in the chain.",
            count(status.plugins.len()),
        ),
        (
            "sluice_plugins_rejected",
            Gauge,
            "Plugin files that failed to load at their last attempt.",
            count(status.rejected.len()),
        ),
        (
            "sluice_plugins_ignored",
            Gauge,
            "Plugin files not tried: disabled in the configuration, or not a readable file (dangling symlink, symlink loop, directory).",
            count(status.ignored.len()),
        ),
        (
            "sluice_plugin_reloads_total",
            Counter,
            "Reloads that changed the plugin chain.",
            status.reloads,
        ),
        (
            "sluice_plugin_compiles_total",
            Counter,
            "Plugins compiled to machine code (compile-cache misses).",
            status.compiles,
        ),
        (
            "sluice_plugins_required_missing",
            Gauge,
            "Required plugins not loaded: the hooks they served refuse every client.",
            count(status.required_missing.len()),
        ),
        (
            "sluice_plugin_cache_refused_total",
            Counter,
            "Cached compiled plugins refused (failed their ownership or authentication checks) and compiled again.",
            status.cache_refused,
        ),
        (
            "sluice_plugin_events_dropped_total",
            Counter,
            "Plugin notifications dropped because their dispatcher fell behind.",
            dropped_events,
        ),
    ];
    for (name, kind, help, value) in totals {
        out.single(name, kind, help, value);
    }
}

/// Per plugin and hook it exports: the latency histogram, the calls by
/// outcome and the invalid answers.
fn hook_metrics(out: &mut Exposition, status: &Status) {
    let each = || {
        status.plugins.iter().flat_map(|p| {
            p.per_hook
                .iter()
                .map(|h| (labels(&[("plugin", &p.name), ("hook", h.hook)]), h))
        })
    };
    let duration = "sluice_plugin_hook_duration_seconds";
    out.family(
        duration,
        Kind::Histogram,
        "Wall time of the plugin's hook calls, waiting for a free instance included.",
    );
    for (labels, h) in each() {
        out.histogram(duration, &labels, &h.latency);
    }
    let calls = "sluice_plugin_hook_calls_total";
    out.family(
        calls,
        Kind::Counter,
        "Hook calls by outcome: the plugin answered (ok, next, error) or the call failed (trap, memory, fuel, deadline, busy, disabled).",
    );
    for (labels, h) in each() {
        for (outcome, n) in h.outcomes.iter() {
            let outcome = outcome.label();
            out.sample(calls, &format!("{labels},outcome=\"{outcome}\""), n);
        }
    }
    let invalid = "sluice_plugin_hook_invalid_answers_total";
    out.family(
        invalid,
        Kind::Counter,
        "Answers counted as ok that the broker then refused as invalid (a modifier out of range or past the operator's limits).",
    );
    for (labels, h) in each() {
        out.sample(invalid, &labels, h.invalid);
    }
}
