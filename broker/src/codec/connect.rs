//! CONNECT decoding for MQTT 3.1, 3.1.1 and 5, in one parser.
//!
//! mqttbytes is not used here: it refuses MQTT 3.1 (`MQIsdp`), types the
//! password as a UTF-8 string although it is binary in every version, and
//! skips the checks on the connect flags. The protocol version is recorded in
//! the decoder as soon as a valid protocol name and level are read, so that a
//! later error in the same CONNECT can be answered with a CONNACK in the
//! client's format.

use bytes::Bytes;

use super::properties::{self, Properties, read_properties};
use super::reader::{Reader, malformed, protocol};
use super::{Connect, ConnectProperties, DecodeError, Packet, ProtocolVersion, QoS, Will};
use crate::topic::TopicName;

const RESERVED: u8 = 0x01;
const CLEAN_START: u8 = 0x02;
const WILL_FLAG: u8 = 0x04;
const WILL_RETAIN: u8 = 0x20;
const PASSWORD: u8 = 0x40;
const USERNAME: u8 = 0x80;

/// Decodes CONNECT. `body` is the frame after the fixed header and borrows
/// from `frame`. `version` is the decoder's: set here by a first CONNECT; a
/// further CONNECT must speak the version already established.
pub(crate) fn decode(
    version: &mut Option<ProtocolVersion>,
    frame: &Bytes,
    body: &[u8],
) -> Result<Packet, DecodeError> {
    let mut r = Reader::new(body);
    let name = r.string("protocol name")?;
    let level = r.u8("protocol level")?;
    let v = match (name, level) {
        ("MQTT", 4) => ProtocolVersion::V3_1_1,
        ("MQTT", 5) => ProtocolVersion::V5,
        ("MQIsdp", 3) => ProtocolVersion::V3_1,
        _ if version.is_some() => {
            return Err(protocol(format!(
                "further CONNECT with protocol {name:?} level {level}"
            )));
        }
        _ => {
            return Err(DecodeError::UnsupportedProtocol {
                name: name.to_owned(),
                level,
            });
        }
    };
    match *version {
        None => *version = Some(v),
        Some(established) if established != v => {
            return Err(protocol(format!(
                "further CONNECT with protocol level {level} on a level {} connection",
                established.level()
            )));
        }
        Some(_) => {}
    }

    let flags = r.u8("connect flags")?;
    if flags & RESERVED != 0 {
        return Err(malformed("the reserved connect flag is set"));
    }
    let will_flag = flags & WILL_FLAG != 0;
    let will_qos = (flags >> 3) & 0b11;
    let will_retain = flags & WILL_RETAIN != 0;
    if !will_flag && (will_qos != 0 || will_retain) {
        return Err(malformed(
            "will QoS or will retain set without the will flag",
        ));
    }
    let will_qos = QoS::from_u8(will_qos).ok_or_else(|| malformed("will QoS 3"))?;
    let username_flag = flags & USERNAME != 0;
    let password_flag = flags & PASSWORD != 0;
    if password_flag && !username_flag && !v.is_v5() {
        return Err(malformed("password flag set without the user name flag"));
    }
    let keep_alive = r.u16("keep alive")?;

    let properties = if v.is_v5() {
        connect_properties(&read_properties(&mut r, properties::CONNECT)?, frame)?
    } else {
        ConnectProperties::default()
    };

    let client_id = r.string("client identifier")?.to_owned();
    let will = if will_flag {
        Some(read_will(&mut r, frame, v, will_qos, will_retain)?)
    } else {
        None
    };
    let username = if username_flag {
        Some(r.string("user name")?.to_owned())
    } else {
        None
    };
    let password = if password_flag {
        Some(frame.slice_ref(r.binary("password")?))
    } else {
        None
    };
    if !r.is_empty() {
        return Err(malformed(format!(
            "{} bytes after the CONNECT payload",
            r.remaining()
        )));
    }

    Ok(Packet::Connect(Box::new(Connect {
        version: v,
        clean_start: flags & CLEAN_START != 0,
        keep_alive,
        client_id,
        will,
        username,
        password,
        properties,
    })))
}

fn connect_properties(p: &Properties<'_>, frame: &Bytes) -> Result<ConnectProperties, DecodeError> {
    if p.authentication_data.is_some() && p.authentication_method.is_none() {
        return Err(protocol(
            "Authentication Data without Authentication Method in CONNECT",
        ));
    }
    Ok(ConnectProperties {
        session_expiry_interval: p.session_expiry_interval,
        receive_maximum: p.receive_maximum,
        maximum_packet_size: p.maximum_packet_size,
        topic_alias_maximum: p.topic_alias_maximum,
        request_response_information: p.request_response_information.map(|b| b == 1),
        request_problem_information: p.request_problem_information.map(|b| b == 1),
        user_properties: p.owned_user_properties(),
        authentication_method: p.authentication_method.map(str::to_owned),
        authentication_data: p.authentication_data.map(|d| frame.slice_ref(d)),
    })
}

/// Reads the will part of the payload: MQTT 5 will properties, topic and
/// payload.
fn read_will(
    r: &mut Reader<'_>,
    frame: &Bytes,
    v: ProtocolVersion,
    qos: QoS,
    retain: bool,
) -> Result<Will, DecodeError> {
    let props = if v.is_v5() {
        read_properties(r, properties::WILL)?
    } else {
        Properties::default()
    };
    let topic = r.string("will topic")?;
    TopicName::new(topic).map_err(|e| malformed(format!("will topic {topic:?}: {e}")))?;
    let payload = frame.slice_ref(r.binary("will payload")?);
    Ok(Will {
        topic: topic.to_owned(),
        payload,
        qos,
        retain,
        delay_interval: props.will_delay_interval,
        message_expiry_interval: props.message_expiry_interval,
        properties: props.message_properties(frame),
    })
}
