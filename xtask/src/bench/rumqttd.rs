//! rumqttd (bytebeamio/rumqtt), the second peer beside mosquitto: its
//! configuration in the benchmarks and what the report says about it. The
//! release is [`crate::tools::RUMQTTD`], built into `target/tools` by
//! [`crate::tools::install_rumqttd`]; file names below are of its crate.

/// The keep alive loadgen's clients ask rumqttd for, in seconds: rumqttd
/// refuses a CONNECT with keep alive 0 (`link/remote.rs`,
/// `Error::ZeroKeepAlive`), which the clients send the other brokers. No
/// run lasts as long.
pub const KEEP_ALIVE: u16 = 60;

/// rumqttd's configuration: the `[router]` and `[v4.1]` sections of the
/// `rumqttd.toml` it ships (and runs with when given no `--config`), as
/// they are, with the listener on 127.0.0.1:`port`. Every field of these
/// sections is required (`Config` in `lib.rs` has no defaults). Left out:
/// the shipped file's other listeners (MQTT 5 on 1884, websocket on 8083),
/// its Prometheus exporter and its HTTP console, none of which the
/// benchmarks use. The same for the main table and the burst: rumqttd has
/// no per-client queue limit to raise (see [`OVERLOAD`]).
pub fn config(port: u16) -> String {
    format!(
        "id = 0\n\n\
         [router]\n\
         max_connections = 10010\n\
         max_outgoing_packet_count = 200\n\
         max_segment_size = 104857600\n\
         max_segment_count = 10\n\n\
         [v4.1]\n\
         name = \"v4-1\"\n\
         listen = \"127.0.0.1:{port}\"\n\
         next_connection_delay_ms = 1\n\
         [v4.1.connections]\n\
         connection_timeout_ms = 60000\n\
         max_payload_size = 20480\n\
         max_inflight_count = 100\n\
         dynamic_filters = true\n"
    )
}

/// What the report says of rumqttd's settings.
pub const SETTINGS: &str = "rumqttd runs the `[router]` and MQTT 3.1.1 \
    (`[v4.1]`) sections of its shipped `rumqttd.toml` unchanged (its other \
    listeners, Prometheus exporter and console left out), with its default \
    features and logging (warnings and errors, to standard output). It has no per-client queue limit, so nothing stands for \
    the 1,000,000 messages; its per-filter log (below) holds over 13 \
    million of these messages. Its shipped `next_connection_delay_ms = 1` \
    sleeps 1 ms after each accepted connection, which caps `connect-N` \
    under 1,000 connects/s whatever the CPU (not the connects per CPU \
    second) and slows the 10,000 connections of `idle`. It \
    refuses a CONNECT with keep alive 0, which loadgen's clients send the \
    other brokers, so against it they ask for 60 s, longer than any run.";

/// rumqttd's overload policy, from its source (rumqttd 0.20.0).
pub const OVERLOAD: &str = "rumqttd never holds a publisher for a slow \
    subscriber and has no per-client queue: every PUBLISH is appended to an \
    in-memory commit log per subscription filter (`router/logs.rs`, \
    `segments/mod.rs`) of at most `max_segment_count` (10) segments of \
    `max_segment_size` (100 MB, counting 4 + topic + payload bytes per \
    message), kept whether delivered or not. Each subscriber reads the log \
    at its own cursor into an outgoing buffer of 200 messages \
    (`MAX_CHANNEL_CAPACITY`, `router/mod.rs`); a subscriber whose buffer is \
    full is paused until its connection has written it out \
    (`ConsumeStatus::BufferFull`, `router/routing.rs`), and QoS 1 has 100 in \
    flight (`MAX_INFLIGHT`, `router/iobufs.rs`; the setting \
    `max_inflight_count` is, despite its name, how many packets one read \
    from a client hands to the router, `link/network.rs`). Publishers are \
    read as fast as the router takes their data (a channel of 1,000 \
    events). Once a log \
    is full its oldest segment is dropped (`CommitLog::apply_retention`), \
    and a subscriber still reading it jumps to the oldest message kept \
    (\"Read cursor start jumped\", a warning and a cursor-jump alert): what \
    it skipped is lost, and the client is not told.";
