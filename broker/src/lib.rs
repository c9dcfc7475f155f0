//! Sluice: an MQTT 3.1 / 3.1.1 / 5.0 broker.
//!
//! # Layout
//!
//! - [`codec`]: bytes ⇄ packets, no IO.
//! - [`topic`]: validated topic names, filters, client and packet ids.
//! - [`subscriptions`], [`retain`]: tries that find subscriptions and
//!   retained messages for a topic or filter.
//! - [`session`]: per-client state that outlives connections (queue, QoS
//!   state); [`registry`] creates, takes over and ends sessions.
//! - [`router`]: publish → matching sessions.
//! - `connection`: the task that owns one socket.
//! - [`plugins`]: the wasm plugin host (the only module that touches
//!   wasmtime).
//! - [`listener`]: the MQTT listeners (tcp, tls, ws, wss), their accept
//!   loops and per-listener limits; [`server`]: start-up and graceful
//!   shutdown.
//! - [`limits`]: what a client may make the broker hold; [`memory`]: the
//!   memory budget and the allocator that counts it.
//! - [`store`]: persistent sessions, queues, retained messages and plugin
//!   key-value data on disk (`[persistence]`).
//! - [`config`], [`metrics`], `sys` (`$SYS` topics).
//! - [`admin`]: the read-only HTTP admin endpoint (`/plugins`, `/metrics`).

pub mod admin;
pub mod cluster;
pub mod codec;
pub mod config;
mod connection;
pub mod context;
pub mod keepalive;
pub mod limits;
pub mod listener;
pub mod memory;
pub mod message;
pub mod metrics;
pub mod plugins;
mod publications;
pub mod reason;
pub mod registry;
pub mod retain;
pub mod router;
pub mod server;
pub mod session;
pub mod store;
pub mod subscriptions;
mod sys;
pub mod topic;

pub use config::Config;
pub use server::Server;
