//! Client packets as bytes, built with mqttbytes (3.1.1 and 5) or by hand
//! (3.1 and deliberately broken ones).

use bytes::{Bytes, BytesMut};
use mqttbytes::QoS;
use mqttbytes::{v4, v5};

fn finish(write: impl FnOnce(&mut BytesMut)) -> Vec<u8> {
    let mut b = BytesMut::new();
    write(&mut b);
    b.to_vec()
}

pub fn qos(n: u8) -> QoS {
    mqttbytes::qos(n).expect("qos 0..=2")
}

/// MQTT 3.1.1 CONNECT.
pub fn connect_v4(id: &str, clean: bool, keep_alive: u16) -> Vec<u8> {
    let mut c = v4::Connect::new(id);
    c.clean_session = clean;
    c.keep_alive = keep_alive;
    finish(|b| {
        c.write(b).expect("encode");
    })
}

/// MQTT 3.1.1 CONNECT with a will.
pub fn connect_v4_will(
    id: &str,
    clean: bool,
    topic: &str,
    payload: &[u8],
    q: u8,
    retain: bool,
) -> Vec<u8> {
    let mut c = v4::Connect::new(id);
    c.clean_session = clean;
    c.keep_alive = 60;
    c.last_will = Some(v4::LastWill::new(topic, payload.to_vec(), qos(q), retain));
    finish(|b| {
        c.write(b).expect("encode");
    })
}

/// MQTT 5 CONNECT; `props` tweak the properties.
pub fn connect_v5(
    id: &str,
    clean: bool,
    keep_alive: u16,
    props: impl FnOnce(&mut v5::ConnectProperties),
) -> Vec<u8> {
    connect_v5_full(id, clean, keep_alive, props, None)
}

/// MQTT 5 CONNECT with an optional will.
pub fn connect_v5_full(
    id: &str,
    clean: bool,
    keep_alive: u16,
    props: impl FnOnce(&mut v5::ConnectProperties),
    will: Option<v5::LastWill>,
) -> Vec<u8> {
    let mut p = v5::ConnectProperties {
        session_expiry_interval: None,
        receive_maximum: None,
        max_packet_size: None,
        topic_alias_max: None,
        request_response_info: None,
        request_problem_info: None,
        user_properties: Vec::new(),
        authentication_method: None,
        authentication_data: None,
    };
    props(&mut p);
    let c = v5::Connect {
        protocol: mqttbytes::Protocol::V5,
        keep_alive,
        client_id: id.to_owned(),
        clean_session: clean,
        last_will: will,
        login: None,
        properties: Some(p),
    };
    finish(|b| {
        c.write(b).expect("encode");
    })
}

/// An MQTT 5 will.
pub fn will_v5(topic: &str, payload: &[u8], delay: Option<u32>) -> v5::LastWill {
    v5::LastWill {
        topic: topic.to_owned(),
        message: Bytes::copy_from_slice(payload),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Some(v5::WillProperties {
            delay_interval: delay,
            payload_format_indicator: None,
            message_expiry_interval: None,
            content_type: None,
            response_topic: None,
            correlation_data: None,
            user_properties: Vec::new(),
        }),
    }
}

/// MQTT 3.1 CONNECT (`MQIsdp`, level 3), written by hand since mqttbytes
/// refuses 3.1.
pub fn connect_v31(id: &str, clean: bool) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&[0, 6]);
    body.extend_from_slice(b"MQIsdp");
    body.push(3);
    body.push(if clean { 0x02 } else { 0 });
    body.extend_from_slice(&60u16.to_be_bytes());
    body.extend_from_slice(&(id.len() as u16).to_be_bytes());
    body.extend_from_slice(id.as_bytes());
    frame(0x10, &body)
}

/// A CONNECT with an arbitrary protocol name and level.
pub fn connect_raw(name: &str, level: u8, id: &str) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&(name.len() as u16).to_be_bytes());
    body.extend_from_slice(name.as_bytes());
    body.push(level);
    body.push(0x02);
    body.extend_from_slice(&60u16.to_be_bytes());
    if level == 5 {
        body.push(0);
    }
    body.extend_from_slice(&(id.len() as u16).to_be_bytes());
    body.extend_from_slice(id.as_bytes());
    frame(0x10, &body)
}

/// A packet from a first byte and a body.
pub fn frame(byte1: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![byte1];
    let mut len = body.len();
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

/// MQTT 3.1.1 PUBLISH.
pub fn publish_v4(topic: &str, q: u8, pkid: u16, payload: &[u8], retain: bool) -> Vec<u8> {
    let mut p = v4::Publish::new(topic, qos(q), payload.to_vec());
    p.pkid = pkid;
    p.retain = retain;
    finish(|b| {
        p.write(b).expect("encode");
    })
}

/// MQTT 5 PUBLISH; `props` are its properties (None for none).
pub fn publish_v5(
    topic: &str,
    q: u8,
    pkid: u16,
    payload: &[u8],
    props: Option<v5::PublishProperties>,
) -> Vec<u8> {
    let mut p = v5::Publish::new(topic, qos(q), payload.to_vec());
    p.pkid = pkid;
    p.properties = props;
    finish(|b| {
        p.write(b).expect("encode");
    })
}

/// Empty MQTT 5 PUBLISH properties to fill in.
pub fn publish_props() -> v5::PublishProperties {
    v5::PublishProperties {
        payload_format_indicator: None,
        message_expiry_interval: None,
        topic_alias: None,
        response_topic: None,
        correlation_data: None,
        user_properties: Vec::new(),
        subscription_identifiers: Vec::new(),
        content_type: None,
    }
}

/// MQTT 3.1.1 SUBSCRIBE of one filter.
pub fn subscribe_v4(pkid: u16, filter: &str, q: u8) -> Vec<u8> {
    let mut s = v4::Subscribe::new(filter, qos(q));
    s.pkid = pkid;
    finish(|b| {
        s.write(b).expect("encode");
    })
}

/// MQTT 5 SUBSCRIBE with options for each filter and an optional
/// subscription identifier.
pub fn subscribe_v5(pkid: u16, filters: Vec<v5::SubscribeFilter>, id: Option<usize>) -> Vec<u8> {
    let mut s = v5::Subscribe::new_many(filters);
    s.pkid = pkid;
    s.properties = id.map(|id| v5::SubscribeProperties {
        id: Some(id),
        user_properties: Vec::new(),
    });
    finish(|b| {
        s.write(b).expect("encode");
    })
}

/// One MQTT 5 subscription filter.
pub fn filter_v5(path: &str, q: u8) -> v5::SubscribeFilter {
    v5::SubscribeFilter::new(path.to_owned(), qos(q))
}

/// UNSUBSCRIBE of one filter (3.1.1 layout; `v5` adds the empty property
/// length).
pub fn unsubscribe(pkid: u16, filter: &str, v5: bool) -> Vec<u8> {
    let mut body = pkid.to_be_bytes().to_vec();
    if v5 {
        body.push(0);
    }
    body.extend_from_slice(&(filter.len() as u16).to_be_bytes());
    body.extend_from_slice(filter.as_bytes());
    frame(0xA2, &body)
}

pub fn puback(pkid: u16) -> Vec<u8> {
    frame(0x40, &pkid.to_be_bytes())
}
pub fn pubrec(pkid: u16) -> Vec<u8> {
    frame(0x50, &pkid.to_be_bytes())
}
pub fn pubrel(pkid: u16) -> Vec<u8> {
    frame(0x62, &pkid.to_be_bytes())
}
pub fn pubcomp(pkid: u16) -> Vec<u8> {
    frame(0x70, &pkid.to_be_bytes())
}
pub const PINGREQ: [u8; 2] = [0xC0, 0x00];
pub const DISCONNECT: [u8; 2] = [0xE0, 0x00];

/// MQTT 5 DISCONNECT with a reason and an optional session expiry.
pub fn disconnect_v5(reason: u8, session_expiry: Option<u32>) -> Vec<u8> {
    let mut body = vec![reason];
    match session_expiry {
        Some(e) => {
            body.push(5);
            body.push(0x11);
            body.extend_from_slice(&e.to_be_bytes());
        }
        None => body.push(0),
    }
    frame(0xE0, &body)
}

/// MQTT 3.1.1 SUBSCRIBE of several filters (filter, QoS).
pub fn subscribe_v4_many(pkid: u16, filters: &[(&str, u8)]) -> Vec<u8> {
    let mut s = v4::Subscribe::new_many(
        filters
            .iter()
            .map(|(f, q)| v4::SubscribeFilter::new((*f).to_owned(), qos(*q))),
    );
    s.pkid = pkid;
    finish(|b| {
        s.write(b).expect("encode");
    })
}

/// MQTT 5 SUBSCRIBE with an optional subscription identifier and user
/// properties.
pub fn subscribe_v5_props(
    pkid: u16,
    filters: Vec<v5::SubscribeFilter>,
    id: Option<usize>,
    user_properties: &[(&str, &str)],
) -> Vec<u8> {
    let mut s = v5::Subscribe::new_many(filters);
    s.pkid = pkid;
    s.properties = Some(v5::SubscribeProperties {
        id,
        user_properties: user_properties
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect(),
    });
    finish(|b| {
        s.write(b).expect("encode");
    })
}

/// UNSUBSCRIBE of several filters (3.1.1 layout; `v5` adds the empty
/// property length).
pub fn unsubscribe_many(pkid: u16, filters: &[&str], v5: bool) -> Vec<u8> {
    let mut body = pkid.to_be_bytes().to_vec();
    if v5 {
        body.push(0);
    }
    for filter in filters {
        body.extend_from_slice(&(filter.len() as u16).to_be_bytes());
        body.extend_from_slice(filter.as_bytes());
    }
    frame(0xA2, &body)
}
