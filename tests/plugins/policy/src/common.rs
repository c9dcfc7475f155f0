// Shared by the `policy` and `policy-v3` fixtures (included with
// `include!`): configuration parsing, the MQTT 3.x verdict, call recording.

use sluice::plugin::host;
use sluice::plugin::types::{Connection, Denial, RegisterModifiers, SubscriberId};

fn setting(name: &str) -> Option<String> {
    host::config()
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

fn number<T: std::str::FromStr>(name: &str) -> Option<T> {
    setting(name).and_then(|v| v.parse().ok())
}

/// Appends "hook:client-id" to the `calls` key, so tests can read the order
/// in which hooks were called (unless `record = "off"`, for benchmarks).
fn record(hook: &str, id: &SubscriberId) {
    if setting("record").as_deref() == Some("off") {
        return;
    }
    let mut calls = host::kv_get("calls").unwrap_or_default();
    calls.extend_from_slice(format!("{hook}:{}\n", id.client_id).as_bytes());
    let _ = host::kv_set("calls", &calls);
}

/// What the configuration says to answer for this client.
enum Decision {
    Ok(Option<RegisterModifiers>),
    Next,
    Deny(String),
}

/// For clients of TLS and WebSocket listeners (TCP clients cost nothing
/// more): stores what the connection looked like under the key
/// `conn:CLIENT-ID` (unless `record = "off"`): "kind=tls;port=8883;
/// subject=CN=x,O=y;sans=a,b;sha256=HEX" (subject, sans and sha256 empty
/// without a certificate). With `deny_subject = SUBJECT`, a client whose
/// certificate has that subject is refused.
fn check_connection(conn: &Connection, id: &SubscriberId) -> Option<String> {
    use sluice::plugin::types::ListenerKind;
    let kind = match conn.listener.kind {
        ListenerKind::Tcp => return None,
        ListenerKind::Tls => "tls",
        ListenerKind::Ws => "ws",
        ListenerKind::Wss => "wss",
    };
    let cert = conn.client_certificate.as_ref();
    let subject = cert.map(|c| c.subject.as_str()).unwrap_or_default();
    if setting("record").as_deref() != Some("off") {
        let facts = format!(
            "kind={kind};port={};subject={subject};sans={};sha256={}",
            conn.listener.port,
            cert.map(|c| c.subject_alt_names.join(","))
                .unwrap_or_default(),
            cert.map(|c| c.sha256_fingerprint.as_str())
                .unwrap_or_default(),
        );
        let _ = host::kv_set(&format!("conn:{}", id.client_id), facts.as_bytes());
    }
    match setting("deny_subject") {
        Some(denied) if cert.is_some() && denied == subject => {
            Some(format!("certificate subject {subject} is not allowed"))
        }
        _ => None,
    }
}

fn decide(
    conn: &Connection,
    id: &SubscriberId,
    username: Option<&str>,
    password: Option<&[u8]>,
) -> Decision {
    if let Some(why) = check_connection(conn, id) {
        return Decision::Deny(why);
    }
    if let Some(only) = setting("only_user") {
        if username != Some(only.as_str()) {
            return Decision::Next;
        }
    }
    if let Some(expected) = setting("password") {
        if password != Some(expected.as_bytes()) {
            return Decision::Deny(format!("bad password for {username:?}"));
        }
    }
    match setting("verdict").as_deref().unwrap_or("ok") {
        "next" => Decision::Next,
        "deny" => Decision::Deny("denied by configuration".into()),
        _ => Decision::Ok(modifiers(id, username)),
    }
}

fn modifiers(id: &SubscriberId, username: Option<&str>) -> Option<RegisterModifiers> {
    let mountpoint = if setting("mountpoint_from_username").is_some() {
        username.map(str::to_owned)
    } else {
        setting("mountpoint")
    };
    let client_id = setting("client_id_prefix").map(|p| format!("{p}{}", id.client_id));
    let subscriber_id = if mountpoint.is_some() || client_id.is_some() {
        Some(SubscriberId {
            mountpoint: mountpoint.unwrap_or_else(|| id.mountpoint.clone()),
            client_id: client_id.unwrap_or_else(|| id.client_id.clone()),
        })
    } else {
        setting("client_id").map(|c| SubscriberId {
            mountpoint: id.mountpoint.clone(),
            client_id: c,
        })
    };
    let m = RegisterModifiers {
        subscriber_id,
        username: setting("set_username"),
        clean_start: setting("clean_start").map(|v| v == "true"),
        session_expiry_interval: number("session_expiry"),
        max_packet_size: number("max_packet_size"),
        max_message_rate: number("max_message_rate"),
        max_inflight_messages: number("max_inflight"),
        receive_maximum: number("receive_maximum"),
        topic_alias_maximum: number("topic_alias_maximum"),
        upgrade_qos: setting("upgrade_qos").map(|v| v == "true"),
        allow_publish: setting("allow_publish").map(|v| v == "true"),
        allow_subscribe: setting("allow_subscribe").map(|v| v == "true"),
        allow_unsubscribe: setting("allow_unsubscribe").map(|v| v == "true"),
        max_online_messages: number("max_online"),
        max_offline_messages: number("max_offline"),
        max_connection_lifetime: number("lifetime"),
    };
    Some(m)
}

struct Policy;

impl exports::sluice::plugin::lifecycle::Guest for Policy {
    fn init() -> Result<(), String> {
        if setting("fail_init").is_some() {
            return Err("init refused by configuration".into());
        }
        host::log(host::LogLevel::Debug, "policy fixture ready");
        Ok(())
    }
}

impl exports::sluice::plugin::auth_on_register::Guest for Policy {
    fn auth_on_register(
        conn: Connection,
        subscriber_id: SubscriberId,
        username: Option<String>,
        password: Option<Vec<u8>>,
        _clean_session: bool,
    ) -> exports::sluice::plugin::auth_on_register::RegisterVerdict {
        use exports::sluice::plugin::auth_on_register::RegisterVerdict;
        record("auth-on-register", &subscriber_id);
        match decide(
            &conn,
            &subscriber_id,
            username.as_deref(),
            password.as_deref(),
        ) {
            Decision::Ok(m) => RegisterVerdict::Ok(m),
            Decision::Next => RegisterVerdict::Next,
            Decision::Deny(why) => {
                if setting("deny_as").as_deref() == Some("not-authorized") {
                    RegisterVerdict::Error(Denial::NotAuthorized(why))
                } else {
                    RegisterVerdict::Error(Denial::InvalidCredentials(why))
                }
            }
        }
    }
}
