//! Sluice's integration tests: one binary, each module a concern. Every test
//! starts a real broker on 127.0.0.1 with an ephemeral port (or runs the real
//! `sluice` executable) and talks to it over real sockets.

mod support;

/// The broker's counting allocator, as the `sluice` executable has it, so
/// that in-process brokers see their heap use too.
#[global_allocator]
static ALLOCATOR: sluice_broker::memory::CountingAllocator =
    sluice_broker::memory::CountingAllocator;

/// The HTTP admin endpoint.
mod admin;
/// The `sluice` executable: flags, config errors, signals.
mod cli;
/// Nodes in a cluster over NATS.
mod cluster;
/// The configuration file: errors naming the key and the line.
mod config;
/// CONNECT rules.
mod connect;
/// Hostile clients: limits, memory bounds, stuck clients, lingering
/// closes (issue 13).
mod hostile;
/// Several listeners with their own settings and limits.
mod listeners;
/// MQTT 5 features.
mod mqtt5;
/// Overload: publishers held while their subscribers catch up.
mod overload;
/// The durable store: sessions, queues, QoS state, retained messages,
/// Wills and plugin data across restarts and crashes; damaged stores.
mod persistence;
/// The wasm plugin host.
mod plugins;
/// QoS flows.
mod publish;
/// mosquitto-clients and Paho Python against the broker.
mod real_clients;
/// Hostile and broken clients.
mod robustness;
/// Persistent sessions, wills, expiry.
mod sessions;
/// Wildcards, retained messages, unsubscribe.
mod subscribe;
/// TLS listeners: certificates, client certificates, reload.
mod tls;
/// WebSocket listeners (`ws`, `wss`).
mod websocket;
