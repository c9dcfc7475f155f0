//! Between the broker's types and the WIT types plugins see: building hook
//! arguments, and validating what plugins return (modifiers, reason codes)
//! into broker values. Every value a plugin returns passes through here; an
//! invalid one is an error naming the field, never silently ignored.

use std::net::SocketAddr;
use std::num::{NonZeroU16, NonZeroU32};

use super::bindings::sluice::plugin::types as wit;
use crate::codec::{self, ProtocolVersion};
use crate::config::Config;
use crate::listener::ClientCertificate;
use crate::reason::ReasonCode;
use crate::session::SubscriberId;
use crate::topic::ClientId;

/// Longest reason string passed on to a client.
const MAX_REASON_STRING: usize = 1024;

/// How a client reached the broker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListenerKind {
    Tcp,
    Tls,
    Ws,
    Wss,
}

/// Connection facts passed to authentication hooks, converted for the
/// plugins at most once per connection, and only if a hook is called
/// (formatting addresses is a visible part of a connect's cost).
#[derive(Clone, Debug)]
pub struct ConnectionInfo {
    pub peer: SocketAddr,
    pub listener: SocketAddr,
    pub kind: ListenerKind,
    /// The client's verified TLS certificate, on listeners that ask for
    /// one.
    pub certificate: Option<ClientCertificate>,
    wit: std::sync::OnceLock<wit::Connection>,
}

impl ConnectionInfo {
    /// The facts of one connection.
    pub fn new(peer: SocketAddr, listener: SocketAddr, kind: ListenerKind) -> Self {
        ConnectionInfo {
            wit: std::sync::OnceLock::new(),
            peer,
            listener,
            kind,
            certificate: None,
        }
    }

    /// These facts with the client's TLS certificate (`None`: it sent none,
    /// or the listener does not use TLS).
    pub fn with_certificate(mut self, certificate: Option<ClientCertificate>) -> Self {
        self.certificate = certificate;
        self.wit = std::sync::OnceLock::new();
        self
    }

    /// As the hooks see it.
    pub(super) fn wit(&self) -> &wit::Connection {
        self.wit.get_or_init(|| {
            let mut conn = connection(self.peer, self.listener, self.kind);
            conn.client_certificate = self.certificate.as_ref().map(client_certificate);
            conn
        })
    }
}

fn client_certificate(c: &ClientCertificate) -> wit::ClientCertificate {
    wit::ClientCertificate {
        subject: c.subject.clone(),
        subject_alt_names: c.subject_alt_names.clone(),
        sha256_fingerprint: c.sha256_fingerprint.clone(),
        der: c.der.clone(),
    }
}

pub fn peer(addr: SocketAddr) -> wit::Peer {
    wit::Peer {
        addr: addr.ip().to_string(),
        port: addr.port(),
    }
}

fn connection(peer_addr: SocketAddr, listener: SocketAddr, kind: ListenerKind) -> wit::Connection {
    wit::Connection {
        peer: peer(peer_addr),
        listener: wit::Listener {
            addr: listener.ip().to_string(),
            port: listener.port(),
            kind: match kind {
                ListenerKind::Tcp => wit::ListenerKind::Tcp,
                ListenerKind::Tls => wit::ListenerKind::Tls,
                ListenerKind::Ws => wit::ListenerKind::Ws,
                ListenerKind::Wss => wit::ListenerKind::Wss,
            },
        },
        client_certificate: None,
    }
}

pub fn subscriber_id(id: &SubscriberId) -> wit::SubscriberId {
    wit::SubscriberId {
        mountpoint: id.mountpoint.to_string(),
        client_id: id.client_id.as_str().to_owned(),
    }
}

pub fn connect_properties(p: &codec::ConnectProperties) -> wit::ConnectProperties {
    wit::ConnectProperties {
        session_expiry_interval: p.session_expiry_interval,
        receive_maximum: p.receive_maximum,
        maximum_packet_size: p.maximum_packet_size,
        topic_alias_maximum: p.topic_alias_maximum,
        request_response_information: p.request_response_information,
        request_problem_information: p.request_problem_information,
        user_properties: p.user_properties.clone(),
        authentication_method: p.authentication_method.clone(),
        authentication_data: p.authentication_data.as_ref().map(|d| d.to_vec()),
    }
}

/// Validated registration modifiers: every field is in range and can be
/// honoured for this client.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Modifiers {
    pub subscriber_id: Option<SubscriberId>,
    pub username: Option<String>,
    pub clean_start: Option<bool>,
    pub session_expiry_interval: Option<u32>,
    pub max_packet_size: Option<u32>,
    pub max_message_rate: Option<NonZeroU32>,
    pub max_inflight_messages: Option<NonZeroU16>,
    pub receive_maximum: Option<NonZeroU16>,
    pub topic_alias_maximum: Option<u16>,
    pub upgrade_qos: Option<bool>,
    pub allow_publish: Option<bool>,
    pub allow_subscribe: Option<bool>,
    pub allow_unsubscribe: Option<bool>,
    pub max_online_messages: Option<NonZeroU32>,
    pub max_offline_messages: Option<u32>,
    pub max_connection_lifetime: Option<NonZeroU32>,
}

/// A modifier the broker refuses.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("modifier `{field}` {problem}")]
pub struct ModifierError {
    pub field: &'static str,
    pub problem: String,
}

pub(super) fn bad(field: &'static str, problem: impl Into<String>) -> ModifierError {
    ModifierError {
        field,
        problem: problem.into(),
    }
}

fn non_zero_u32(field: &'static str, v: Option<u32>) -> Result<Option<NonZeroU32>, ModifierError> {
    v.map(|v| NonZeroU32::new(v).ok_or_else(|| bad(field, "must be at least 1")))
        .transpose()
}

fn non_zero_u16(field: &'static str, v: Option<u16>) -> Result<Option<NonZeroU16>, ModifierError> {
    v.map(|v| NonZeroU16::new(v).ok_or_else(|| bad(field, "must be at least 1")))
        .transpose()
}

/// Checks the modifiers a plugin returned for a client of `version`.
pub fn modifiers(
    m: wit::RegisterModifiers,
    version: ProtocolVersion,
    config: &Config,
) -> Result<Modifiers, ModifierError> {
    let v5_only = |field: &'static str, present: bool| {
        if present && !version.is_v5() {
            Err(bad(field, "cannot be honoured for an MQTT 3.x client"))
        } else {
            Ok(())
        }
    };
    v5_only("receive-maximum", m.receive_maximum.is_some())?;
    v5_only("topic-alias-maximum", m.topic_alias_maximum.is_some())?;

    let subscriber_id = match m.subscriber_id {
        None => None,
        Some(id) => {
            let max = if version == ProtocolVersion::V3_1 {
                23
            } else {
                usize::from(config.mqtt.max_client_id_len)
            };
            if id.client_id.len() > max {
                return Err(bad(
                    "subscriber-id",
                    format!("has a client id longer than {max} bytes"),
                ));
            }
            let client_id = ClientId::new(&id.client_id)
                .map_err(|e| bad("subscriber-id", format!("has an invalid client id: {e}")))?;
            Some(SubscriberId {
                mountpoint: super::messages::mountpoint("subscriber-id", &id.mountpoint)?,
                client_id,
            })
        }
    };
    if let Some(u) = &m.username {
        if u.len() > usize::from(u16::MAX) || u.contains('\0') {
            return Err(bad("username", "must be at most 65535 bytes without NUL"));
        }
    }
    if let Some(e) = m.session_expiry_interval {
        let max = config.session.max_session_expiry_secs;
        if e > max {
            return Err(bad(
                "session-expiry-interval",
                format!("{e} exceeds the broker's maximum of {max}"),
            ));
        }
    }
    if let Some(size) = m.max_packet_size {
        let max = config.mqtt.max_packet_size;
        if !(64..=max).contains(&size) {
            return Err(bad(
                "max-packet-size",
                format!("{size} is outside 64..={max}"),
            ));
        }
    }
    // A plugin may lower the operator's limits for a client, never raise
    // them.
    let at_most = |field: &'static str, value: Option<u64>, key: &str, max: u64| match value {
        Some(v) if v > max => Err(bad(
            field,
            format!("{v} exceeds the broker's {key} of {max}"),
        )),
        _ => Ok(()),
    };
    let s = &config.session;
    let q = &config.mqtt;
    at_most(
        "max-online-messages",
        m.max_online_messages.map(u64::from),
        "session.max_queued_messages",
        u64::from(s.max_queued_messages),
    )?;
    at_most(
        "max-offline-messages",
        m.max_offline_messages.map(u64::from),
        "session.max_offline_messages",
        u64::from(s.max_offline_messages),
    )?;
    at_most(
        "receive-maximum",
        m.receive_maximum.map(u64::from),
        "mqtt.receive_maximum",
        u64::from(q.receive_maximum),
    )?;
    at_most(
        "topic-alias-maximum",
        m.topic_alias_maximum.map(u64::from),
        "mqtt.topic_alias_maximum",
        u64::from(q.topic_alias_maximum),
    )?;
    at_most(
        "max-inflight-messages",
        m.max_inflight_messages.map(u64::from),
        "mqtt.max_inflight",
        u64::from(q.max_inflight),
    )?;
    Ok(Modifiers {
        subscriber_id,
        username: m.username,
        clean_start: m.clean_start,
        session_expiry_interval: m.session_expiry_interval,
        max_packet_size: m.max_packet_size,
        max_message_rate: non_zero_u32("max-message-rate", m.max_message_rate)?,
        max_inflight_messages: non_zero_u16("max-inflight-messages", m.max_inflight_messages)?,
        receive_maximum: non_zero_u16("receive-maximum", m.receive_maximum)?,
        topic_alias_maximum: m.topic_alias_maximum,
        upgrade_qos: m.upgrade_qos,
        allow_publish: m.allow_publish,
        allow_subscribe: m.allow_subscribe,
        allow_unsubscribe: m.allow_unsubscribe,
        max_online_messages: non_zero_u32("max-online-messages", m.max_online_messages)?,
        max_offline_messages: m.max_offline_messages,
        max_connection_lifetime: non_zero_u32(
            "max-connection-lifetime",
            m.max_connection_lifetime,
        )?,
    })
}

/// A reason string as the broker passes it on: bounded in length.
pub fn reason_string(s: Option<String>) -> Option<String> {
    s.map(|mut s| {
        if s.len() > MAX_REASON_STRING {
            let mut end = MAX_REASON_STRING;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s.truncate(end);
        }
        s
    })
}

/// Whether `code` may refuse a CONNECT (MQTT 5 §3.2.2.2).
pub fn is_connack_refusal(code: ReasonCode) -> bool {
    matches!(
        code.0,
        0x80..=0x8A | 0x8C | 0x90 | 0x95 | 0x97 | 0x99..=0x9D | 0x9F
    )
}

/// Whether `code` may end a connection in a server DISCONNECT.
pub fn is_disconnect_reason(code: ReasonCode) -> bool {
    matches!(code.0, 0x80..=0x83 | 0x87 | 0x89 | 0x8B..=0x90 | 0x93..=0xA2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none() -> wit::RegisterModifiers {
        wit::RegisterModifiers {
            subscriber_id: None,
            username: None,
            clean_start: None,
            session_expiry_interval: None,
            max_packet_size: None,
            max_message_rate: None,
            max_inflight_messages: None,
            receive_maximum: None,
            topic_alias_maximum: None,
            upgrade_qos: None,
            allow_publish: None,
            allow_subscribe: None,
            allow_unsubscribe: None,
            max_online_messages: None,
            max_offline_messages: None,
            max_connection_lifetime: None,
        }
    }

    fn check(m: wit::RegisterModifiers, v: ProtocolVersion) -> Result<Modifiers, ModifierError> {
        modifiers(m, v, &Config::default())
    }

    #[test]
    fn hooks_see_the_client_certificate() {
        let peer = "127.0.0.1:50000".parse().unwrap();
        let listener = "127.0.0.1:8883".parse().unwrap();
        let plain = ConnectionInfo::new(peer, listener, ListenerKind::Tls);
        assert!(plain.wit().client_certificate.is_none());
        assert!(matches!(plain.wit().listener.kind, wit::ListenerKind::Tls));
        assert_eq!(plain.wit().listener.port, 8883);
        let cert = ClientCertificate {
            subject: "CN=device-17,O=Acme".into(),
            subject_alt_names: vec!["device-17.example".into()],
            sha256_fingerprint: "ab".repeat(32),
            der: vec![1, 2, 3],
        };
        let info = plain.with_certificate(Some(cert));
        let seen = info.wit().client_certificate.as_ref().expect("certificate");
        assert_eq!(seen.subject, "CN=device-17,O=Acme");
        assert_eq!(seen.subject_alt_names, ["device-17.example"]);
        assert_eq!(seen.sha256_fingerprint, "ab".repeat(32));
        assert_eq!(seen.der, [1, 2, 3]);
    }

    #[test]
    fn empty_modifiers_are_fine() {
        assert_eq!(
            check(none(), ProtocolVersion::V3_1_1),
            Ok(Modifiers::default())
        );
    }

    #[test]
    fn out_of_range_values_name_the_field() {
        let cases: Vec<(wit::RegisterModifiers, &str)> = vec![
            (
                wit::RegisterModifiers {
                    max_inflight_messages: Some(0),
                    ..none()
                },
                "max-inflight-messages",
            ),
            (
                wit::RegisterModifiers {
                    max_packet_size: Some(10),
                    ..none()
                },
                "max-packet-size",
            ),
            (
                wit::RegisterModifiers {
                    subscriber_id: Some(wit::SubscriberId {
                        mountpoint: String::new(),
                        client_id: String::new(),
                    }),
                    ..none()
                },
                "subscriber-id",
            ),
            (
                wit::RegisterModifiers {
                    subscriber_id: Some(wit::SubscriberId {
                        mountpoint: "a/#".into(),
                        client_id: "c".into(),
                    }),
                    ..none()
                },
                "subscriber-id",
            ),
            (
                wit::RegisterModifiers {
                    max_connection_lifetime: Some(0),
                    ..none()
                },
                "max-connection-lifetime",
            ),
        ];
        for (m, field) in cases {
            assert_eq!(check(m, ProtocolVersion::V5).unwrap_err().field, field);
        }
    }

    #[test]
    fn mqtt5_limits_cannot_be_honoured_for_mqtt3() {
        let m = wit::RegisterModifiers {
            receive_maximum: Some(5),
            ..none()
        };
        assert_eq!(
            check(m.clone(), ProtocolVersion::V3_1_1).unwrap_err().field,
            "receive-maximum"
        );
        assert!(check(m, ProtocolVersion::V5).is_ok());
    }

    #[test]
    fn reason_strings_are_bounded() {
        let long = reason_string(Some("é".repeat(2000))).unwrap();
        assert!(long.len() <= MAX_REASON_STRING);
        assert!(is_connack_refusal(ReasonCode::NOT_AUTHORIZED));
        assert!(!is_connack_refusal(ReasonCode::SUCCESS));
        assert!(!is_connack_refusal(ReasonCode(0x8E)));
    }
}
