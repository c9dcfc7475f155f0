//! MQTT 5 properties: identifiers, which packet may carry which, and the one
//! property reader every packet decoder uses.
//!
//! The reader enforces the rules common to all packets: the block ends
//! exactly at its declared length, an unknown identifier is Malformed, a known
//! property in the wrong packet or a repeated non-repeatable one is a
//! Protocol Error, strings are UTF-8 without U+0000, and values the
//! specification restricts (0/1 flags, non-zero maxima, identifiers, aliases,
//! response topics) are checked. Values are borrowed from the frame.

use bytes::Bytes;

use super::reader::{Reader, malformed, protocol};
use super::{DecodeError, MessageProperties, UserProperty};
use crate::topic::TopicName;

pub(crate) const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
pub(crate) const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
pub(crate) const CONTENT_TYPE: u8 = 0x03;
pub(crate) const RESPONSE_TOPIC: u8 = 0x08;
pub(crate) const CORRELATION_DATA: u8 = 0x09;
pub(crate) const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
pub(crate) const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
pub(crate) const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
pub(crate) const SERVER_KEEP_ALIVE: u8 = 0x13;
pub(crate) const AUTHENTICATION_METHOD: u8 = 0x15;
pub(crate) const AUTHENTICATION_DATA: u8 = 0x16;
pub(crate) const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
pub(crate) const WILL_DELAY_INTERVAL: u8 = 0x18;
pub(crate) const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
pub(crate) const RESPONSE_INFORMATION: u8 = 0x1A;
pub(crate) const SERVER_REFERENCE: u8 = 0x1C;
pub(crate) const REASON_STRING: u8 = 0x1F;
pub(crate) const RECEIVE_MAXIMUM: u8 = 0x21;
pub(crate) const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
pub(crate) const TOPIC_ALIAS: u8 = 0x23;
pub(crate) const MAXIMUM_QOS: u8 = 0x24;
pub(crate) const RETAIN_AVAILABLE: u8 = 0x25;
pub(crate) const USER_PROPERTY: u8 = 0x26;
pub(crate) const MAXIMUM_PACKET_SIZE: u8 = 0x27;
pub(crate) const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
pub(crate) const SUBSCRIPTION_IDENTIFIERS_AVAILABLE: u8 = 0x29;
pub(crate) const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;

/// The specification's name of a property, `None` for a byte that is not a
/// property identifier at all.
fn name(id: u8) -> Option<&'static str> {
    Some(match id {
        PAYLOAD_FORMAT_INDICATOR => "Payload Format Indicator",
        MESSAGE_EXPIRY_INTERVAL => "Message Expiry Interval",
        CONTENT_TYPE => "Content Type",
        RESPONSE_TOPIC => "Response Topic",
        CORRELATION_DATA => "Correlation Data",
        SUBSCRIPTION_IDENTIFIER => "Subscription Identifier",
        SESSION_EXPIRY_INTERVAL => "Session Expiry Interval",
        ASSIGNED_CLIENT_IDENTIFIER => "Assigned Client Identifier",
        SERVER_KEEP_ALIVE => "Server Keep Alive",
        AUTHENTICATION_METHOD => "Authentication Method",
        AUTHENTICATION_DATA => "Authentication Data",
        REQUEST_PROBLEM_INFORMATION => "Request Problem Information",
        WILL_DELAY_INTERVAL => "Will Delay Interval",
        REQUEST_RESPONSE_INFORMATION => "Request Response Information",
        RESPONSE_INFORMATION => "Response Information",
        SERVER_REFERENCE => "Server Reference",
        REASON_STRING => "Reason String",
        RECEIVE_MAXIMUM => "Receive Maximum",
        TOPIC_ALIAS_MAXIMUM => "Topic Alias Maximum",
        TOPIC_ALIAS => "Topic Alias",
        MAXIMUM_QOS => "Maximum QoS",
        RETAIN_AVAILABLE => "Retain Available",
        USER_PROPERTY => "User Property",
        MAXIMUM_PACKET_SIZE => "Maximum Packet Size",
        WILDCARD_SUBSCRIPTION_AVAILABLE => "Wildcard Subscription Available",
        SUBSCRIPTION_IDENTIFIERS_AVAILABLE => "Subscription Identifier Available",
        SHARED_SUBSCRIPTION_AVAILABLE => "Shared Subscription Available",
        _ => return None,
    })
}

/// The properties one kind of client packet may carry. Only User Property
/// may repeat: the one other repeatable property, Subscription Identifier,
/// repeats only in a server's PUBLISH.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Allowed {
    /// For error messages.
    pub(crate) packet: &'static str,
    pub(crate) ids: &'static [u8],
}

pub(crate) const CONNECT: Allowed = Allowed {
    packet: "CONNECT",
    ids: &[
        SESSION_EXPIRY_INTERVAL,
        RECEIVE_MAXIMUM,
        MAXIMUM_PACKET_SIZE,
        TOPIC_ALIAS_MAXIMUM,
        REQUEST_RESPONSE_INFORMATION,
        REQUEST_PROBLEM_INFORMATION,
        USER_PROPERTY,
        AUTHENTICATION_METHOD,
        AUTHENTICATION_DATA,
    ],
};

pub(crate) const WILL: Allowed = Allowed {
    packet: "the will properties",
    ids: &[
        WILL_DELAY_INTERVAL,
        PAYLOAD_FORMAT_INDICATOR,
        MESSAGE_EXPIRY_INTERVAL,
        CONTENT_TYPE,
        RESPONSE_TOPIC,
        CORRELATION_DATA,
        USER_PROPERTY,
    ],
};

pub(crate) const PUBLISH: Allowed = Allowed {
    packet: "PUBLISH",
    ids: &[
        PAYLOAD_FORMAT_INDICATOR,
        MESSAGE_EXPIRY_INTERVAL,
        TOPIC_ALIAS,
        RESPONSE_TOPIC,
        CORRELATION_DATA,
        USER_PROPERTY,
        CONTENT_TYPE,
    ],
};

/// PUBACK, PUBREC, PUBREL and PUBCOMP (named by the caller).
pub(crate) const ACK_IDS: &[u8] = &[REASON_STRING, USER_PROPERTY];

pub(crate) const SUBSCRIBE: Allowed = Allowed {
    packet: "SUBSCRIBE",
    ids: &[SUBSCRIPTION_IDENTIFIER, USER_PROPERTY],
};

pub(crate) const UNSUBSCRIBE: Allowed = Allowed {
    packet: "UNSUBSCRIBE",
    ids: &[USER_PROPERTY],
};

pub(crate) const DISCONNECT: Allowed = Allowed {
    packet: "DISCONNECT",
    ids: &[
        SESSION_EXPIRY_INTERVAL,
        REASON_STRING,
        USER_PROPERTY,
        SERVER_REFERENCE,
    ],
};

pub(crate) const AUTH: Allowed = Allowed {
    packet: "AUTH",
    ids: &[
        AUTHENTICATION_METHOD,
        AUTHENTICATION_DATA,
        REASON_STRING,
        USER_PROPERTY,
    ],
};

/// Every property a client packet can carry, borrowed from the frame. A
/// packet decoder reads the fields its [`Allowed`] set admits.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Properties<'a> {
    pub(crate) payload_format_indicator: Option<u8>,
    pub(crate) message_expiry_interval: Option<u32>,
    pub(crate) content_type: Option<&'a str>,
    pub(crate) response_topic: Option<&'a str>,
    pub(crate) correlation_data: Option<&'a [u8]>,
    pub(crate) subscription_identifier: Option<u32>,
    pub(crate) session_expiry_interval: Option<u32>,
    pub(crate) authentication_method: Option<&'a str>,
    pub(crate) authentication_data: Option<&'a [u8]>,
    pub(crate) request_problem_information: Option<u8>,
    pub(crate) will_delay_interval: Option<u32>,
    pub(crate) request_response_information: Option<u8>,
    pub(crate) server_reference: Option<&'a str>,
    pub(crate) reason_string: Option<&'a str>,
    pub(crate) receive_maximum: Option<u16>,
    pub(crate) topic_alias_maximum: Option<u16>,
    pub(crate) topic_alias: Option<u16>,
    pub(crate) maximum_packet_size: Option<u32>,
    pub(crate) user_properties: Vec<(&'a str, &'a str)>,
}

/// Reads a property block (its Variable Byte Integer length, then exactly
/// that many bytes of properties) at the front of `r`.
pub(crate) fn read_properties<'a>(
    r: &mut Reader<'a>,
    allowed: Allowed,
) -> Result<Properties<'a>, DecodeError> {
    let len = r.varint("property length")?;
    let mut block = r.sub(len as usize, "property length")?;
    let mut props = Properties::default();
    let mut seen = 0u64;
    while !block.is_empty() {
        let id = block.u8("property identifier")?;
        let Some(name) = name(id) else {
            return Err(malformed(format!(
                "0x{id:02X} is not a property identifier"
            )));
        };
        if !allowed.ids.contains(&id) {
            return Err(protocol(format!(
                "{name} (0x{id:02X}) is not allowed in {}",
                allowed.packet
            )));
        }
        if id != USER_PROPERTY {
            // Every identifier is below 64.
            let bit = 1u64 << id;
            if seen & bit != 0 {
                return Err(protocol(format!(
                    "{name} appears twice in {}",
                    allowed.packet
                )));
            }
            seen |= bit;
        }
        read_value(&mut block, id, name, &mut props)?;
    }
    Ok(props)
}

/// Reads the value of property `id` into `props`, checking the restrictions
/// the specification puts on it.
fn read_value<'a>(
    r: &mut Reader<'a>,
    id: u8,
    name: &'static str,
    props: &mut Properties<'a>,
) -> Result<(), DecodeError> {
    match id {
        PAYLOAD_FORMAT_INDICATOR => {
            props.payload_format_indicator = Some(zero_or_one(r.u8(name)?, name)?);
        }
        MESSAGE_EXPIRY_INTERVAL => props.message_expiry_interval = Some(r.u32(name)?),
        CONTENT_TYPE => props.content_type = Some(r.string(name)?),
        RESPONSE_TOPIC => {
            let topic = r.string(name)?;
            if TopicName::new(topic).is_err() {
                return Err(protocol(format!(
                    "{name} {topic:?} is not a valid topic name"
                )));
            }
            props.response_topic = Some(topic);
        }
        CORRELATION_DATA => props.correlation_data = Some(r.binary(name)?),
        SUBSCRIPTION_IDENTIFIER => {
            props.subscription_identifier = Some(non_zero(r.varint(name)?, name)?);
        }
        SESSION_EXPIRY_INTERVAL => props.session_expiry_interval = Some(r.u32(name)?),
        AUTHENTICATION_METHOD => props.authentication_method = Some(r.string(name)?),
        AUTHENTICATION_DATA => props.authentication_data = Some(r.binary(name)?),
        REQUEST_PROBLEM_INFORMATION => {
            props.request_problem_information = Some(zero_or_one(r.u8(name)?, name)?);
        }
        WILL_DELAY_INTERVAL => props.will_delay_interval = Some(r.u32(name)?),
        REQUEST_RESPONSE_INFORMATION => {
            props.request_response_information = Some(zero_or_one(r.u8(name)?, name)?);
        }
        SERVER_REFERENCE => props.server_reference = Some(r.string(name)?),
        REASON_STRING => props.reason_string = Some(r.string(name)?),
        RECEIVE_MAXIMUM => props.receive_maximum = Some(non_zero(r.u16(name)?, name)?),
        TOPIC_ALIAS_MAXIMUM => props.topic_alias_maximum = Some(r.u16(name)?),
        TOPIC_ALIAS => props.topic_alias = Some(non_zero(r.u16(name)?, name)?),
        MAXIMUM_PACKET_SIZE => {
            props.maximum_packet_size = Some(non_zero(r.u32(name)?, name)?);
        }
        USER_PROPERTY => {
            let key = r.string(name)?;
            let value = r.string(name)?;
            props.user_properties.push((key, value));
        }
        // Server-only properties are in no client packet's allowed set.
        _ => return Err(protocol(format!("{name} is only sent by servers"))),
    }
    Ok(())
}

fn zero_or_one(v: u8, name: &str) -> Result<u8, DecodeError> {
    if v > 1 {
        return Err(protocol(format!("{name} must be 0 or 1, not {v}")));
    }
    Ok(v)
}

fn non_zero<T: Default + PartialEq>(v: T, name: &str) -> Result<T, DecodeError> {
    if v == T::default() {
        return Err(protocol(format!("{name} must not be 0")));
    }
    Ok(v)
}

impl Properties<'_> {
    /// The user properties as owned strings.
    pub(crate) fn owned_user_properties(&self) -> Vec<UserProperty> {
        self.user_properties
            .iter()
            .map(|&(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    /// The properties an application message carries. `frame` is the packet
    /// the values borrow from, so binary data is sliced, not copied.
    pub(crate) fn message_properties(&self, frame: &Bytes) -> MessageProperties {
        MessageProperties {
            payload_format_indicator: self.payload_format_indicator,
            content_type: self.content_type.map(str::to_owned),
            response_topic: self.response_topic.map(str::to_owned),
            correlation_data: self.correlation_data.map(|d| frame.slice_ref(d)),
            user_properties: self.owned_user_properties(),
        }
    }
}
