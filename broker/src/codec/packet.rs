//! The packet model: what the decoder produces from client bytes and what the
//! encoder turns into server bytes. One model serves MQTT 3.1, 3.1.1 and 5.0;
//! fields that only MQTT 5 carries are empty for older clients.

use bytes::Bytes;

use crate::reason::ReasonCode;
use crate::topic::PacketId;

/// The protocol level a client speaks, fixed by its CONNECT.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProtocolVersion {
    /// MQTT 3.1 (`MQIsdp`, level 3).
    V3_1,
    /// MQTT 3.1.1 (`MQTT`, level 4).
    V3_1_1,
    /// MQTT 5.0 (`MQTT`, level 5).
    V5,
}

impl ProtocolVersion {
    /// The protocol level byte of CONNECT.
    pub fn level(self) -> u8 {
        match self {
            ProtocolVersion::V3_1 => 3,
            ProtocolVersion::V3_1_1 => 4,
            ProtocolVersion::V5 => 5,
        }
    }

    /// Whether this is MQTT 5.
    pub fn is_v5(self) -> bool {
        self == ProtocolVersion::V5
    }
}

/// Quality of service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum QoS {
    AtMostOnce = 0,
    AtLeastOnce = 1,
    ExactlyOnce = 2,
}

impl QoS {
    /// `None` for 3, which is malformed.
    pub fn from_u8(v: u8) -> Option<QoS> {
        match v {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }
}

/// A user property (MQTT 5): a name/value pair of UTF-8 strings.
pub type UserProperty = (String, String);

/// The properties an application message carries from publisher to
/// subscriber unchanged (MQTT 5 §3.3.2.3). Message expiry is kept apart
/// because the broker counts it down.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MessageProperties {
    pub payload_format_indicator: Option<u8>,
    pub content_type: Option<String>,
    pub response_topic: Option<String>,
    pub correlation_data: Option<Bytes>,
    pub user_properties: Vec<UserProperty>,
}

impl MessageProperties {
    /// Bytes these properties hold: their strings and binary data, and a
    /// pair of strings per user property.
    pub fn size(&self) -> usize {
        let len = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        len(&self.content_type)
            + len(&self.response_topic)
            + self.correlation_data.as_ref().map_or(0, Bytes::len)
            + self
                .user_properties
                .iter()
                .map(|p| size_of::<UserProperty>() + p.0.len() + p.1.len())
                .sum::<usize>()
    }

    /// True when there is nothing to encode.
    pub fn is_empty(&self) -> bool {
        self.payload_format_indicator.is_none()
            && self.content_type.is_none()
            && self.response_topic.is_none()
            && self.correlation_data.is_none()
            && self.user_properties.is_empty()
    }
}

/// A packet sent by a client.
#[derive(Clone, Debug, PartialEq)]
pub enum Packet {
    Connect(Box<Connect>),
    Publish(Publish),
    PubAck(Ack),
    PubRec(Ack),
    PubRel(Ack),
    PubComp(Ack),
    Subscribe(Subscribe),
    Unsubscribe(Unsubscribe),
    PingReq,
    Disconnect(Disconnect),
    Auth(Auth),
}

impl Packet {
    /// The packet's name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Packet::Connect(_) => "CONNECT",
            Packet::Publish(_) => "PUBLISH",
            Packet::PubAck(_) => "PUBACK",
            Packet::PubRec(_) => "PUBREC",
            Packet::PubRel(_) => "PUBREL",
            Packet::PubComp(_) => "PUBCOMP",
            Packet::Subscribe(_) => "SUBSCRIBE",
            Packet::Unsubscribe(_) => "UNSUBSCRIBE",
            Packet::PingReq => "PINGREQ",
            Packet::Disconnect(_) => "DISCONNECT",
            Packet::Auth(_) => "AUTH",
        }
    }
}

/// CONNECT.
#[derive(Clone, Debug, PartialEq)]
pub struct Connect {
    pub version: ProtocolVersion,
    /// Clean Session (3.x) / Clean Start (5).
    pub clean_start: bool,
    pub keep_alive: u16,
    /// As sent; may be empty (the CONNECT rules decide what that means).
    pub client_id: String,
    pub will: Option<Will>,
    pub username: Option<String>,
    /// Binary in every version.
    pub password: Option<Bytes>,
    pub properties: ConnectProperties,
}

/// CONNECT properties (MQTT 5 only; all empty for 3.x).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConnectProperties {
    pub session_expiry_interval: Option<u32>,
    pub receive_maximum: Option<u16>,
    pub maximum_packet_size: Option<u32>,
    pub topic_alias_maximum: Option<u16>,
    pub request_response_information: Option<bool>,
    pub request_problem_information: Option<bool>,
    pub user_properties: Vec<UserProperty>,
    pub authentication_method: Option<String>,
    pub authentication_data: Option<Bytes>,
}

/// The Will message of a CONNECT.
#[derive(Clone, Debug, PartialEq)]
pub struct Will {
    /// Validated as a topic name by the decoder (no wildcards, not empty).
    pub topic: String,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// Will Delay Interval in seconds (MQTT 5).
    pub delay_interval: Option<u32>,
    pub message_expiry_interval: Option<u32>,
    pub properties: MessageProperties,
}

/// PUBLISH from a client.
#[derive(Clone, Debug, PartialEq)]
pub struct Publish {
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    /// Validated (no wildcards, no NUL). Empty only in MQTT 5 with a topic
    /// alias, which the connection resolves.
    pub topic: String,
    /// Present exactly when `qos` > 0.
    pub packet_id: Option<PacketId>,
    pub payload: Bytes,
    pub message_expiry_interval: Option<u32>,
    pub topic_alias: Option<u16>,
    pub properties: MessageProperties,
}

/// PUBACK, PUBREC, PUBREL and PUBCOMP share one shape.
#[derive(Clone, Debug, PartialEq)]
pub struct Ack {
    pub packet_id: PacketId,
    /// `SUCCESS` when absent on the wire.
    pub reason: ReasonCode,
    pub reason_string: Option<String>,
    pub user_properties: Vec<UserProperty>,
}

impl Ack {
    /// A success acknowledgement without properties.
    pub fn new(packet_id: PacketId) -> Self {
        Ack {
            packet_id,
            reason: ReasonCode::SUCCESS,
            reason_string: None,
            user_properties: Vec::new(),
        }
    }
}

/// Retain Handling subscription option (MQTT 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RetainHandling {
    /// 0: send retained messages at the time of the subscribe.
    #[default]
    OnSubscribe,
    /// 1: only if the subscription did not exist.
    OnNewSubscribe,
    /// 2: never.
    Never,
}

/// Subscription options of one filter in SUBSCRIBE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubscriptionOptions {
    pub qos: QoS,
    pub no_local: bool,
    pub retain_as_published: bool,
    pub retain_handling: RetainHandling,
}

impl SubscriptionOptions {
    /// The options an MQTT 3.x subscription implies.
    pub fn v3(qos: QoS) -> Self {
        SubscriptionOptions {
            qos,
            no_local: false,
            retain_as_published: false,
            retain_handling: RetainHandling::OnSubscribe,
        }
    }
}

/// SUBSCRIBE. Filters are checked to be non-empty UTF-8 without NUL; their
/// wildcard syntax is checked by the broker so that a bad filter fails on its
/// own (SUBACK 0x8F / 0x80) instead of ending the connection.
#[derive(Clone, Debug, PartialEq)]
pub struct Subscribe {
    pub packet_id: PacketId,
    /// At least one.
    pub filters: Vec<(String, SubscriptionOptions)>,
    /// 1..=268_435_455.
    pub subscription_identifier: Option<u32>,
    pub user_properties: Vec<UserProperty>,
}

/// UNSUBSCRIBE.
#[derive(Clone, Debug, PartialEq)]
pub struct Unsubscribe {
    pub packet_id: PacketId,
    /// At least one.
    pub filters: Vec<String>,
    pub user_properties: Vec<UserProperty>,
}

/// DISCONNECT (in either direction).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Disconnect {
    pub reason: ReasonCode,
    pub session_expiry_interval: Option<u32>,
    pub reason_string: Option<String>,
    pub user_properties: Vec<UserProperty>,
    pub server_reference: Option<String>,
}

impl Default for ReasonCode {
    fn default() -> Self {
        ReasonCode::SUCCESS
    }
}

/// AUTH (MQTT 5, in either direction).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Auth {
    /// SUCCESS, CONTINUE_AUTHENTICATION or REAUTHENTICATE.
    pub reason: ReasonCode,
    pub method: Option<String>,
    pub data: Option<Bytes>,
    pub reason_string: Option<String>,
    pub user_properties: Vec<UserProperty>,
}

/// CONNACK properties (MQTT 5 only; ignored for 3.x).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConnAckProperties {
    pub session_expiry_interval: Option<u32>,
    pub receive_maximum: Option<u16>,
    pub maximum_qos: Option<u8>,
    pub retain_available: Option<bool>,
    pub maximum_packet_size: Option<u32>,
    pub assigned_client_identifier: Option<String>,
    pub topic_alias_maximum: Option<u16>,
    pub reason_string: Option<String>,
    pub user_properties: Vec<UserProperty>,
    pub wildcard_subscription_available: Option<bool>,
    pub subscription_identifiers_available: Option<bool>,
    pub shared_subscription_available: Option<bool>,
    pub server_keep_alive: Option<u16>,
    pub response_information: Option<String>,
    pub server_reference: Option<String>,
    pub authentication_method: Option<String>,
    pub authentication_data: Option<Bytes>,
}

/// CONNACK.
#[derive(Clone, Debug, PartialEq)]
pub struct ConnAck {
    pub session_present: bool,
    /// MQTT 5 code; converted with [`ReasonCode::to_v3_connack`] for 3.x.
    pub reason: ReasonCode,
    pub properties: ConnAckProperties,
}

/// An outgoing PUBLISH, borrowed from the queued message so that encoding
/// costs no allocation.
#[derive(Clone, Copy, Debug)]
pub struct OutgoingPublish<'a> {
    /// Empty when `topic_alias` refers to an alias the client already knows.
    pub topic: &'a str,
    pub qos: QoS,
    pub retain: bool,
    pub dup: bool,
    /// Present exactly when `qos` > 0.
    pub packet_id: Option<PacketId>,
    pub payload: &'a [u8],
    /// MQTT 5 only.
    pub properties: Option<&'a MessageProperties>,
    /// Remaining expiry in seconds (MQTT 5 only).
    pub message_expiry_interval: Option<u32>,
    /// MQTT 5 only.
    pub topic_alias: Option<u16>,
    /// MQTT 5 only.
    pub subscription_identifiers: &'a [u32],
}

/// SUBACK / UNSUBACK payload and properties.
#[derive(Clone, Debug, PartialEq)]
pub struct SubAck {
    pub packet_id: PacketId,
    /// One code per filter. For 3.x SUBACK any failure is sent as 0x80; for
    /// 3.x UNSUBACK the codes are not sent.
    pub reasons: Vec<ReasonCode>,
    pub reason_string: Option<String>,
    pub user_properties: Vec<UserProperty>,
}
