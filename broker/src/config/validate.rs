//! The checks serde cannot make: values out of range, and values that
//! conflict (listeners sharing a port, the admin endpoint on an MQTT port).

use std::net::SocketAddr;

use super::error::{ConfigError, Key};
use super::{Config, MIN_MEMORY_MB, MQTT_MAX_PACKET_SIZE};

impl Config {
    /// The first value out of range or in conflict, if any.
    pub(super) fn check(&self) -> Result<(), Problem> {
        fn invalid(key: Key, problem: impl Into<String>) -> Result<(), Problem> {
            Err(Problem {
                key,
                problem: problem.into(),
            })
        }
        let at_least_one = "must be at least 1";
        if self.server.bind.is_empty() && self.listener.is_empty() {
            return invalid(
                Key::of(["server", "bind"]),
                "must list at least one address (or add a [[listener]])",
            );
        }
        for (i, l) in self.listener.iter().enumerate() {
            if let Some((key, problem)) = l.problem() {
                return invalid(Key::of(["listener"]).index(i).then(key.split('.')), problem);
            }
        }
        let listeners = self.listeners();
        for (i, a) in listeners.iter().enumerate() {
            if let Some(b) = listeners[..i]
                .iter()
                .find(|b| same_socket(&a.bind, &b.bind))
            {
                return invalid(
                    self.listener_key(i),
                    format!(
                        "{} would share a port with the listener on {}",
                        a.bind, b.bind
                    ),
                );
            }
        }
        if self.server.connect_timeout_secs == 0 {
            return invalid(Key::of(["server", "connect_timeout_secs"]), at_least_one);
        }
        // The smallest useful packet: a CONNECT with a short client id.
        if self.mqtt.max_packet_size < 64 || self.mqtt.max_packet_size > MQTT_MAX_PACKET_SIZE {
            return invalid(
                Key::of(["mqtt", "max_packet_size"]),
                format!("must be between 64 and {MQTT_MAX_PACKET_SIZE}"),
            );
        }
        if self.mqtt.receive_maximum == 0 {
            return invalid(
                Key::of(["mqtt", "receive_maximum"]),
                "must be between 1 and 65535",
            );
        }
        if self.mqtt.max_inflight == 0 {
            return invalid(
                Key::of(["mqtt", "max_inflight"]),
                "must be between 1 and 65535",
            );
        }
        if self.mqtt.max_client_id_len < 23 {
            return invalid(
                Key::of(["mqtt", "max_client_id_len"]),
                "must be at least 23 (MQTT requires servers to accept 23-character ids)",
            );
        }
        if self.session.max_queued_messages == 0 {
            return invalid(Key::of(["session", "max_queued_messages"]), at_least_one);
        }
        if !(1..=60_000).contains(&self.session.overload_wait_ms) {
            return invalid(
                Key::of(["session", "overload_wait_ms"]),
                "must be between 1 and 60000",
            );
        }
        if !(1..=self.session.overload_wait_ms).contains(&self.session.overload_stall_ms) {
            return invalid(
                Key::of(["session", "overload_stall_ms"]),
                "must be between 1 and overload_wait_ms",
            );
        }
        if self.persistence.sync_interval_ms == 0 {
            return invalid(Key::of(["persistence", "sync_interval_ms"]), at_least_one);
        }
        for url in &self.cluster.nats {
            if !url.starts_with("nats://") && !url.starts_with("tls://") {
                return invalid(
                    Key::of(["cluster", "nats"]),
                    "holds URLs of NATS servers: nats://host:port or tls://host:port",
                );
            }
        }
        if let Some(node) = &self.cluster.node {
            if node.is_empty()
                || node.len() > 64
                || !node
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return invalid(
                    Key::of(["cluster", "node"]),
                    "must be 1 to 64 letters, digits, '-' or '_'",
                );
            }
        }
        let c = &self.cluster;
        if !(1..=5).contains(&c.replicas) {
            return invalid(Key::of(["cluster", "replicas"]), "must be 1 to 5");
        }
        if !(2..=300).contains(&c.node_timeout) {
            return invalid(
                Key::of(["cluster", "node_timeout"]),
                "must be 2 to 300 seconds",
            );
        }
        if c.user.is_some() != c.password_file.is_some() {
            return invalid(
                Key::of(["cluster", "password_file"]),
                "goes with cluster.user (both or neither)",
            );
        }
        if c.user.is_some() && c.token_file.is_some() {
            return invalid(
                Key::of(["cluster", "token_file"]),
                "excludes cluster.user: NATS takes a user and password or a token",
            );
        }
        if c.tls_cert.is_some() != c.tls_key.is_some() {
            return invalid(
                Key::of(["cluster", "tls_key"]),
                "goes with cluster.tls_cert (both or neither)",
            );
        }
        let limits = Key::of(["limits"]);
        let l = &self.limits;
        for (key, value) in [
            ("max_topic_levels", l.max_topic_levels),
            ("max_filters_per_subscribe", l.max_filters_per_subscribe),
            ("max_auth_rounds", l.max_auth_rounds),
        ] {
            if value == 0 {
                return invalid(limits.then([key]), at_least_one);
            }
        }
        if l.max_topic_length == 0 || l.max_topic_length > u32::from(u16::MAX) {
            return invalid(
                limits.then(["max_topic_length"]),
                "must be between 1 and 65535",
            );
        }
        if l.max_memory_mb.is_some_and(|mb| mb < MIN_MEMORY_MB) {
            return invalid(
                limits.then(["max_memory_mb"]),
                format!("must be at least {MIN_MEMORY_MB}"),
            );
        }
        if let Some(admin) = self.admin.bind {
            if let Some(mqtt) = listeners.iter().find(|l| same_socket(&l.bind, &admin)) {
                return invalid(
                    Key::of(["admin", "bind"]),
                    format!(
                        "{admin} would share a port with the MQTT listener on {}",
                        mqtt.bind
                    ),
                );
            }
        }
        if self.log.level.trim().is_empty() {
            return invalid(Key::of(["log", "level"]), "must not be empty");
        }
        if let Err(e) = self
            .log
            .level
            .parse::<tracing_subscriber::filter::Targets>()
        {
            return invalid(
                Key::of(["log", "level"]),
                format!(
                    "is not a log filter ({e}): use error, warn, info, debug or trace, \
                     optionally per target (\"info,sluice_broker::connection=debug\")"
                ),
            );
        }
        let plugins = Key::of(["plugins"]);
        if self.plugins.memory_mb == 0 {
            return invalid(plugins.then(["memory_mb"]), at_least_one);
        }
        if self.plugins.deadline_ms == 0 {
            return invalid(plugins.then(["deadline_ms"]), at_least_one);
        }
        if self.plugins.poll_interval_ms == 0 {
            return invalid(plugins.then(["poll_interval_ms"]), at_least_one);
        }
        if self.plugins.fuel == 0 {
            return invalid(plugins.then(["fuel"]), at_least_one);
        }
        for (name, p) in &self.plugin {
            let plugin = Key::of(["plugin", name.as_str()]);
            if p.memory_mb == Some(0) {
                return invalid(plugin.then(["memory_mb"]), at_least_one);
            }
            if p.deadline_ms == Some(0) {
                return invalid(plugin.then(["deadline_ms"]), at_least_one);
            }
            if p.fuel == Some(0) {
                return invalid(plugin.then(["fuel"]), at_least_one);
            }
            for pattern in &p.http_allow {
                if let Err(e) = crate::plugins::UrlPattern::parse(pattern) {
                    return invalid(plugin.then(["http_allow"]), e);
                }
            }
            if let Some(file) = &p.http_ca_file {
                if let Err(e) = crate::plugins::check_ca_file(file) {
                    return invalid(plugin.then(["http_ca_file"]), e);
                }
            }
            if p.http_timeout_ms == Some(0) {
                return invalid(plugin.then(["http_timeout_ms"]), at_least_one);
            }
            if let Some(m) = &p.mountpoint {
                if m.len() > 256 || m.contains(['\0', '+', '#']) {
                    return invalid(
                        plugin.then(["mountpoint"]),
                        "must be at most 256 bytes, without NUL, '+' or '#'",
                    );
                }
            }
        }
        Ok(())
    }

    /// The configuration key of listener `i` of [`Config::listeners`].
    fn listener_key(&self, i: usize) -> Key {
        match i.checked_sub(self.server.bind.len()) {
            None => Key::of(["server", "bind"]),
            Some(j) => Key::of(["listener"]).index(j).then(["bind"]),
        }
    }
}

/// Whether two listeners would need the same port: same non-zero port, and
/// the same address or a wildcard on either side.
fn same_socket(a: &SocketAddr, b: &SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// A value [`Config::check`] refuses.
pub(super) struct Problem {
    pub(super) key: Key,
    problem: String,
}

impl Problem {
    pub(super) fn into_error(self, line: Option<usize>) -> ConfigError {
        ConfigError::Invalid {
            path: None,
            line,
            key: self.key.to_string(),
            problem: self.problem,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use crate::config::Config;

    fn error_of(text: &str) -> String {
        Config::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn overload_times_are_bounded_and_the_stall_within_the_wait() {
        let c = Config::parse("[session]\noverload = \"drop\"\n").unwrap();
        assert_eq!(c.session.overload, super::super::OverloadPolicy::Drop);
        for bad in [
            "overload_wait_ms = 0",
            "overload_wait_ms = 60001",
            "overload_stall_ms = 0",
            "overload_wait_ms = 50",
            "overload = \"sometimes\"",
        ] {
            let e = error_of(&format!("[session]\n{bad}\n"));
            assert!(e.contains("session.overload"), "{bad}: {e}");
        }
    }

    #[test]
    fn admin_endpoint_is_off_by_default_and_must_not_share_an_mqtt_address() {
        assert_eq!(Config::default().admin.bind, None);
        let c = Config::parse("[admin]\nbind = \"127.0.0.1:8888\"\n").unwrap();
        assert_eq!(c.admin.bind, Some(SocketAddr::from(([127, 0, 0, 1], 8888))));
        let e = error_of("[admin]\nbind = \"127.0.0.1:1883\"\n");
        assert!(e.contains("admin.bind"), "{e}");
        let e =
            error_of("[server]\nbind = [\"0.0.0.0:1884\"]\n[admin]\nbind = \"127.0.0.1:1884\"\n");
        assert!(e.contains("admin.bind"), "{e}");
        let c =
            Config::parse("[server]\nbind = [\"127.0.0.1:0\"]\n[admin]\nbind = \"127.0.0.1:0\"\n");
        assert!(c.is_ok(), "ephemeral ports never clash");
    }
}
