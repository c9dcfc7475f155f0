//! The configuration file: every refused file names the key and, where the
//! key is in the file, its line (a table of invalid files); valid edge
//! cases are accepted.

use std::net::SocketAddr;

use sluice_broker::Config;
use sluice_broker::config::{ClientAuth, ListenerKind, OverflowPolicy};

/// One invalid file: its text, the key the error must name, the line it
/// must give (None: no line, the key is not in the file), and words the
/// message must contain.
struct Invalid {
    text: &'static str,
    key: Option<&'static str>,
    line: Option<usize>,
    says: &'static str,
}

const fn bad(text: &'static str, key: &'static str, line: usize, says: &'static str) -> Invalid {
    Invalid {
        text,
        key: Some(key),
        line: Some(line),
        says,
    }
}

const INVALID: &[Invalid] = &[
    // Unknown keys, anywhere.
    bad(
        "[mqtt]\nmax_inflight = 8\nmax_packet_sise = 10\n",
        "mqtt.max_packet_sise",
        3,
        "unknown field `max_packet_sise`",
    ),
    bad(
        "[server]\nbind = []\n\n[nope]\nx = 1\n",
        "nope",
        4,
        "unknown field `nope`",
    ),
    bad(
        "# a comment\nport = 1883\n",
        "port",
        2,
        "unknown field `port`",
    ),
    bad(
        "[admin]\nport = 8888\n",
        "admin.port",
        2,
        "unknown field `port`",
    ),
    bad(
        "[[listener]]\nbind = \"127.0.0.1:1884\"\nport = 3\n",
        "listener[0].port",
        3,
        "unknown field `port`",
    ),
    bad(
        "[[listener]]\nbind = \"127.0.0.1:1884\"\n[[listener]]\nbind = \"127.0.0.1:1885\"\nkind = \"tls\"\n\
         [listener.tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\npassword = \"x\"\n",
        "listener[1].tls.password",
        9,
        "unknown field `password`",
    ),
    bad(
        "[plugin.acl]\npriority = 1\nfule = 3\n",
        "plugin.acl.fule",
        3,
        "unknown field `fule`",
    ),
    // Values of the wrong type.
    bad(
        "[mqtt]\nreceive_maximum = \"many\"\n",
        "mqtt.receive_maximum",
        2,
        "invalid type",
    ),
    bad(
        "[server]\nallow_anonymous = \"yes\"\n",
        "server.allow_anonymous",
        2,
        "invalid type",
    ),
    bad(
        "[server]\nbind = \"127.0.0.1:1883\"\n",
        "server.bind",
        2,
        "invalid type",
    ),
    bad(
        "[server]\nbind = [\n  \"127.0.0.1:1883\",\n  \"localhost:1884\",\n]\n",
        "server.bind[1]",
        4,
        "socket address",
    ),
    bad(
        "[admin]\nbind = \"localhost\"\n",
        "admin.bind",
        2,
        "socket address",
    ),
    bad(
        "[session]\noverflow = \"drop_all\"\n",
        "session.overflow",
        2,
        "unknown variant `drop_all`",
    ),
    bad(
        "[session]\noverflow = 3\n",
        "session.overflow",
        2,
        "wanted string",
    ),
    bad(
        "[plugins]\non_failure = \"maybe\"\n",
        "plugins.on_failure",
        2,
        "unknown variant `maybe`",
    ),
    bad(
        "[plugins]\nwatch = \"inotify\"\n",
        "plugins.watch",
        2,
        "unknown variant `inotify`",
    ),
    bad(
        "[plugins]\npublish_refusal_v3 = \"ignore\"\n",
        "plugins.publish_refusal_v3",
        2,
        "unknown variant `ignore`",
    ),
    bad(
        "[plugin.acl]\non_failure = \"open\"\n",
        "plugin.acl.on_failure",
        2,
        "unknown variant `open`",
    ),
    bad(
        "[plugin.acl.config]\nusers = [\"alice\", \"bob\"]\n",
        "plugin.acl.config.users",
        2,
        "invalid type: sequence, expected a string, integer, float or boolean",
    ),
    bad("[plugins]\ndir = 3\n", "plugins.dir", 2, "invalid type"),
    // Integers that do not fit the key's type.
    bad(
        "[server]\nconnect_timeout_secs = -1\n",
        "server.connect_timeout_secs",
        2,
        "invalid value",
    ),
    bad(
        "[mqtt]\nreceive_maximum = 70000\n",
        "mqtt.receive_maximum",
        2,
        "invalid value",
    ),
    bad(
        "[[listener]]\nbind = \"127.0.0.1:1884\"\nprotocol_versions = [4, 300]\n",
        "listener[0].protocol_versions[1]",
        3,
        "invalid value",
    ),
    // [[listener]] fields that are required or of a fixed set.
    bad(
        "[server]\nbind = []\n[[listener]]\nkind = \"tcp\"\n",
        "listener[0]",
        3,
        "missing field `bind`",
    ),
    bad(
        "[[listener]]\nbind = \"127.0.0.1:1884\"\nkind = \"quic\"\n",
        "listener[0].kind",
        3,
        "unknown variant `quic`",
    ),
    bad(
        "[[listener]]\nkind = \"tls\"\nbind = \"127.0.0.1:8883\"\n[listener.tls]\ncert = \"c.pem\"\n",
        "listener[0].tls",
        4,
        "missing field `key`",
    ),
    bad(
        "[[listener]]\nkind = \"tls\"\nbind = \"127.0.0.1:8883\"\n[listener.tls]\ncert = \"c.pem\"\n\
         key = \"k.pem\"\nclient_auth = \"sometimes\"\n",
        "listener[0].tls.client_auth",
        7,
        "unknown variant `sometimes`",
    ),
    // Values out of range, one per validated key.
    bad(
        "[server]\nbind = []\n",
        "server.bind",
        2,
        "at least one address",
    ),
    bad(
        "[server]\nconnect_timeout_secs = 0\n",
        "server.connect_timeout_secs",
        2,
        "must be at least 1",
    ),
    bad(
        "[mqtt]\nmax_packet_size = 63\n",
        "mqtt.max_packet_size",
        2,
        "must be between 64 and 268435460",
    ),
    bad(
        "[mqtt]\nmax_packet_size = 268435461\n",
        "mqtt.max_packet_size",
        2,
        "must be between 64 and 268435460",
    ),
    bad(
        "[server]\nallow_anonymous = true\n\n[mqtt]\nmax_inflight = 16\nreceive_maximum = 0\n",
        "mqtt.receive_maximum",
        6,
        "must be between 1 and 65535",
    ),
    bad(
        "mqtt = { receive_maximum = 0 }\n",
        "mqtt.receive_maximum",
        1,
        "must be between 1 and 65535",
    ),
    bad(
        "mqtt.max_inflight = 0\n",
        "mqtt.max_inflight",
        1,
        "must be between 1 and 65535",
    ),
    bad(
        "[mqtt]\nmax_client_id_len = 22\n",
        "mqtt.max_client_id_len",
        2,
        "must be at least 23",
    ),
    bad(
        "[session]\nmax_queued_messages = 0\n",
        "session.max_queued_messages",
        2,
        "must be at least 1",
    ),
    bad(
        "[log]\nlevel = \" \"\n",
        "log.level",
        2,
        "must not be empty",
    ),
    bad(
        "[log]\nlevel = \"info,sluice_broker=loud\"\n",
        "log.level",
        2,
        "is not a log filter",
    ),
    bad(
        "[plugins]\nmemory_mb = 0\n",
        "plugins.memory_mb",
        2,
        "must be at least 1",
    ),
    bad(
        "[plugins]\ndeadline_ms = 0\n",
        "plugins.deadline_ms",
        2,
        "must be at least 1",
    ),
    bad(
        "[plugins]\npoll_interval_ms = 0\n",
        "plugins.poll_interval_ms",
        2,
        "must be at least 1",
    ),
    bad(
        "[plugins]\nfuel = 0\n",
        "plugins.fuel",
        2,
        "must be at least 1",
    ),
    bad(
        "[plugin.acl]\npriority = 1\nmemory_mb = 0\n",
        "plugin.acl.memory_mb",
        3,
        "must be at least 1",
    ),
    bad(
        "[plugin.acl]\ndeadline_ms = 0\n",
        "plugin.acl.deadline_ms",
        2,
        "must be at least 1",
    ),
    bad(
        "[plugin.\"geo.v2\"]\nfuel = 0\n",
        "plugin.\"geo.v2\".fuel",
        2,
        "must be at least 1",
    ),
    // [[listener]] problems.
    bad(
        "[server]\nbind = []\n\n[[listener]]\nkind = \"tls\"\nbind = \"0.0.0.0:8883\"\n",
        "listener[0].tls",
        4,
        "needs a [listener.tls] section",
    ),
    bad(
        "[[listener]]\nbind = \"127.0.0.1:8080\"\nkind = \"ws\"\n[[listener]]\nkind = \"wss\"\n\
         bind = \"127.0.0.1:8443\"\n",
        "listener[1].tls",
        4,
        "a wss listener needs a [listener.tls] section",
    ),
    bad(
        "[[listener]]\nbind = \"127.0.0.1:1884\"\n[listener.tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n",
        "listener[0].tls",
        3,
        "does not use TLS",
    ),
    bad(
        "[[listener]]\nkind = \"tls\"\nbind = \"127.0.0.1:8883\"\n[listener.tls]\ncert = \"c.pem\"\n\
         key = \"k.pem\"\nclient_auth = \"required\"\n",
        "listener[0].tls.client_ca",
        4,
        "client_ca` is required",
    ),
    bad(
        "[[listener]]\nkind = \"wss\"\nbind = \"127.0.0.1:8883\"\n[listener.tls]\ncert = \"c.pem\"\n\
         key = \"k.pem\"\nclient_auth = \"optional\"\n",
        "listener[0].tls.client_ca",
        4,
        "client_ca` is required",
    ),
    bad(
        "[[listener]]\nbind = \"127.0.0.1:1884\"\nprotocol_versions = []\n",
        "listener[0].protocol_versions",
        3,
        "at least one of 3, 4, 5",
    ),
    bad(
        "[[listener]]\nbind = \"127.0.0.1:1884\"\nprotocol_versions = [4, 6]\n",
        "listener[0].protocol_versions",
        3,
        "6 is not an MQTT protocol level",
    ),
    bad(
        "[[listener]]\nbind = \"127.0.0.1:1884\"\nmax_packet_size = 10\n",
        "listener[0].max_packet_size",
        3,
        "must be between 64 and 268435460",
    ),
    bad(
        "[[listener]]\nbind = \"127.0.0.1:1884\"\nmountpoint = \"tenant/#\"\n",
        "listener[0].mountpoint",
        3,
        "must not contain",
    ),
    bad(
        "[[listener]]\nbind = \"127.0.0.1:8080\"\nkind = \"ws\"\npath = \"mqtt\"\n",
        "listener[0].path",
        4,
        "must start with '/'",
    ),
    // Two listeners on one port.
    bad(
        "[server]\nbind = [\"127.0.0.1:1884\", \"127.0.0.1:1884\"]\n",
        "server.bind",
        2,
        "would share a port",
    ),
    bad(
        "[server]\nbind = [\"127.0.0.1:1883\"]\n[[listener]]\nbind = \"0.0.0.0:1883\"\n",
        "listener[0].bind",
        4,
        "0.0.0.0:1883 would share a port with the listener on 127.0.0.1:1883",
    ),
    bad(
        "[server]\nbind = []\n[[listener]]\nbind = \"[::]:8883\"\n[[listener]]\nkind = \"ws\"\n\
         bind = \"[::1]:8883\"\n",
        "listener[1].bind",
        7,
        "would share a port",
    ),
    // The admin endpoint on an MQTT port: the default one, one of
    // server.bind, one of [[listener]].
    bad(
        "[admin]\nbind = \"127.0.0.1:1883\"\n",
        "admin.bind",
        2,
        "would share a port with the MQTT listener on 127.0.0.1:1883",
    ),
    bad(
        "[server]\nbind = [\"0.0.0.0:1884\"]\n[admin]\nbind = \"127.0.0.1:1884\"\n",
        "admin.bind",
        4,
        "would share a port",
    ),
    bad(
        "[admin]\nbind = \"0.0.0.0:8883\"\n[[listener]]\nkind = \"tcp\"\nbind = \"127.0.0.1:8883\"\n",
        "admin.bind",
        2,
        "would share a port with the MQTT listener on 127.0.0.1:8883",
    ),
    // Not TOML at all: the line and column, no key.
    Invalid {
        text: "[server]\nallow_anonymous = true\n[mqtt\n",
        key: None,
        line: Some(3),
        says: "unclosed table",
    },
    Invalid {
        text: "[mqtt]\nmax_inflight = 1\nmax_inflight = 2\n",
        key: None,
        line: Some(3),
        says: "duplicate key",
    },
    Invalid {
        text: "[server]\nbind = [\"127.0.0.1:1883\"\n",
        key: None,
        line: Some(2),
        says: "",
    },
];

#[test]
fn invalid_configs_name_the_key_and_the_line() {
    let mut failures = Vec::new();
    for case in INVALID {
        let error = match Config::parse(case.text) {
            Ok(_) => {
                failures.push(format!("accepted:\n{}", case.text));
                continue;
            }
            Err(e) => e,
        };
        let message = error.to_string();
        let mut wrong = Vec::new();
        if error.key() != case.key {
            wrong.push(format!("key {:?}, expected {:?}", error.key(), case.key));
        }
        if let Some(key) = case.key {
            if !message.contains(&format!("`{key}`")) {
                wrong.push(format!("the message does not name `{key}`"));
            }
        }
        if error.line() != case.line {
            wrong.push(format!("line {:?}, expected {:?}", error.line(), case.line));
        }
        if let Some(line) = case.line {
            let (a, b) = (format!(", line {line}:"), format!(", line {line},"));
            if !message.contains(&a) && !message.contains(&b) {
                wrong.push(format!("the message does not say line {line}"));
            }
        }
        if !message.contains(case.says) {
            wrong.push(format!("the message does not say {:?}", case.says));
        }
        if message.contains('\n') {
            wrong.push("the message is not one line".to_owned());
        }
        if !wrong.is_empty() {
            failures.push(format!(
                "{}\n  for:\n{}\n  message: {message}",
                wrong.join("; "),
                case.text
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases wrong:\n\n{}",
        failures.len(),
        INVALID.len(),
        failures.join("\n\n")
    );
}

#[test]
fn a_file_error_names_the_file_then_the_line_then_the_key() {
    let scratch = crate::support::TempDir::new("config");
    let dir = &scratch.path;
    let path = dir.join("sluice.toml");
    std::fs::write(
        &path,
        "# Broker settings.\n[server]\nallow_anonymous = true\n\n[mqtt]\nreceive_maximum = 0\n",
    )
    .expect("write config");
    let e = Config::load(&path).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "invalid config file {}, line 6: `mqtt.receive_maximum` must be between 1 and 65535",
            path.display()
        )
    );
    std::fs::write(&path, "[session]\n\noverflow = \"drop_all\"\n").expect("write config");
    let e = Config::load(&path).unwrap_err().to_string();
    let start = format!(
        "invalid config file {}, line 3, column 12: `session.overflow`: unknown variant `drop_all`",
        path.display()
    );
    assert!(e.starts_with(&start), "{e}");
    let missing = dir.join("missing.toml");
    let e = Config::load(&missing).unwrap_err();
    assert!(
        e.to_string()
            .starts_with(&format!("cannot read config file {}: ", missing.display())),
        "{e}"
    );
}

#[test]
fn validating_without_the_text_names_the_key_but_no_line() {
    let mut config = Config::default();
    config.mqtt.receive_maximum = 0;
    let e = config.validate().unwrap_err();
    assert_eq!(e.line(), None);
    assert_eq!(
        e.to_string(),
        "invalid config: `mqtt.receive_maximum` must be between 1 and 65535"
    );
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

#[test]
fn valid_edge_cases_are_accepted() {
    // Nothing, or only comments: the defaults.
    assert_eq!(Config::parse("").unwrap(), Config::default());
    assert_eq!(
        Config::parse("# nothing here\n\n   # at all\n").unwrap(),
        Config::default()
    );
    // Empty sections are the defaults too.
    assert_eq!(
        Config::parse("[server]\n[mqtt]\n[session]\n[log]\n[plugins]\n[admin]\n").unwrap(),
        Config::default()
    );

    // The bounds of every range.
    let c = Config::parse(
        "[server]\nconnect_timeout_secs = 1\nsys_interval_secs = 0\nshutdown_timeout_secs = 0\n\
         [mqtt]\nmax_packet_size = 64\nreceive_maximum = 1\nmax_inflight = 65535\n\
         max_client_id_len = 23\nmax_keepalive = 65535\ntopic_alias_maximum = 0\n\
         [session]\nmax_queued_messages = 1\nmax_offline_messages = 0\n\
         max_session_expiry_secs = 4294967295\n\
         [plugins]\nfuel = 1\nmemory_mb = 1\ndeadline_ms = 1\npoll_interval_ms = 1\n\
         breaker_failures = 0\ninstances = 0\n",
    )
    .unwrap();
    assert_eq!(c.mqtt.max_packet_size, 64);
    assert_eq!(c.mqtt.max_client_id_len, 23);
    let c =
        Config::parse("[mqtt]\nmax_packet_size = 268435460\nreceive_maximum = 65535\n").unwrap();
    assert_eq!(c.mqtt.max_packet_size, 268_435_460);
    assert_eq!(c.mqtt.receive_maximum, 65535);

    // Dotted keys and inline tables.
    let c = Config::parse(
        "mqtt.max_inflight = 5\nsession = { overflow = \"drop_oldest\" }\n\
         plugin.acl.config.users = \"alice\"\n",
    )
    .unwrap();
    assert_eq!(c.mqtt.max_inflight, 5);
    assert_eq!(c.session.overflow, OverflowPolicy::DropOldest);
    assert_eq!(c.plugin["acl"].config["users"].to_string(), "alice");

    // Only [[listener]] sections, of every kind; TLS without client
    // authentication needs no CA; IPv6.
    let c = Config::parse(
        "[server]\nbind = []\n\
         [[listener]]\nbind = \"[::1]:1883\"\n\
         [[listener]]\nkind = \"tls\"\nbind = \"127.0.0.1:8883\"\n\
         [listener.tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n\
         [[listener]]\nkind = \"ws\"\nbind = \"127.0.0.1:8080\"\npath = \"/\"\nmountpoint = \"web/\"\n\
         [[listener]]\nkind = \"wss\"\nbind = \"127.0.0.1:8443\"\nprotocol_versions = [5]\n\
         [listener.tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\nclient_auth = \"required\"\n\
         client_ca = \"ca.pem\"\n",
    )
    .unwrap();
    let kinds: Vec<ListenerKind> = c.listeners().iter().map(|l| l.kind).collect();
    assert_eq!(
        kinds,
        [
            ListenerKind::Tcp,
            ListenerKind::Tls,
            ListenerKind::Ws,
            ListenerKind::Wss
        ]
    );
    assert_eq!(c.listener[0].protocol_versions, [3, 4, 5]);
    assert_eq!(c.listener[0].path, "/mqtt");
    assert_eq!(
        c.listener[3].tls.as_ref().map(|t| t.client_auth),
        Some(ClientAuth::Required)
    );

    // server.bind and [[listener]] together, in that order.
    let c = Config::parse(
        "[server]\nbind = [\"127.0.0.1:1883\"]\n[[listener]]\nbind = \"127.0.0.1:1884\"\n",
    )
    .unwrap();
    let binds: Vec<SocketAddr> = c.listeners().iter().map(|l| l.bind).collect();
    assert_eq!(binds, [addr("127.0.0.1:1883"), addr("127.0.0.1:1884")]);

    // The same port on different addresses, and ephemeral ports, do not
    // clash; nor does the admin endpoint on its own port.
    Config::parse(
        "[server]\nbind = [\"127.0.0.1:1883\", \"127.0.0.2:1883\", \"[::1]:1883\"]\n\
         [admin]\nbind = \"127.0.0.3:1883\"\n",
    )
    .unwrap();
    Config::parse(
        "[server]\nbind = [\"127.0.0.1:0\", \"0.0.0.0:0\"]\n[[listener]]\nbind = \"0.0.0.0:0\"\n\
         [admin]\nbind = \"127.0.0.1:0\"\n",
    )
    .unwrap();

    // Log filters per target; plugin names that need quotes; every kind of
    // plugin value.
    let c = Config::parse(
        "[log]\nlevel = \"warn,sluice_broker::connection=trace\"\n\
         [plugin.\"geo.v2\"]\npriority = -5\n\
         [plugin.\"geo.v2\".config]\ns = \"x\"\ni = -1\nf = 0.5\nb = false\n",
    )
    .unwrap();
    let values: Vec<String> = c.plugin["geo.v2"]
        .config
        .values()
        .map(ToString::to_string)
        .collect();
    assert_eq!(values, ["false", "0.5", "-1", "x"]);
}
