//! SUBSCRIBE and UNSUBSCRIBE decoding.
//!
//! Filters are checked to be non-empty UTF-8 without U+0000, not for wildcard
//! syntax: the broker answers a bad filter in SUBACK / UNSUBACK instead of
//! closing the connection. SUBSCRIBE (3.x and 5) and 3.x UNSUBSCRIBE are
//! validated here and then decoded by mqttbytes; v5 UNSUBSCRIBE has its own
//! parser because mqttbytes 0.6 prints a `dbg!` to stderr for each one.

use bytes::Bytes;
use mqttbytes::{v4, v5};

use super::decode::{from_mqttbytes, non_zero_packet_id, packet_id, qos_from_mqttbytes};
use super::framing::FixedHeader;
use super::properties::{self, read_properties};
use super::reader::{Reader, malformed, protocol};
use super::{
    DecodeError, ProtocolVersion, RetainHandling, Subscribe, SubscriptionOptions, Unsubscribe,
};

/// Reads one topic filter.
fn filter<'a>(r: &mut Reader<'a>) -> Result<&'a str, DecodeError> {
    let filter = r.string("topic filter")?;
    if filter.is_empty() {
        return Err(malformed("empty topic filter"));
    }
    Ok(filter)
}

/// Checks a subscription options byte.
fn check_options(v: ProtocolVersion, options: u8) -> Result<(), DecodeError> {
    let reserved = if v.is_v5() { 0b1100_0000 } else { 0b1111_1100 };
    if options & reserved != 0 {
        return Err(malformed(format!(
            "reserved bits set in subscription options {options:08b}"
        )));
    }
    if options & 0b11 == 3 {
        return Err(malformed("subscription with QoS 3"));
    }
    if v.is_v5() && (options >> 4) & 0b11 == 3 {
        return Err(protocol("subscription with Retain Handling 3"));
    }
    Ok(())
}

pub(crate) fn subscribe(
    v: ProtocolVersion,
    header: FixedHeader,
    frame: &Bytes,
    body: &[u8],
) -> Result<Subscribe, DecodeError> {
    let mut r = Reader::new(body);
    packet_id(&mut r, "SUBSCRIBE")?;
    if v.is_v5() {
        read_properties(&mut r, properties::SUBSCRIBE)?;
    }
    let mut count = 0usize;
    while !r.is_empty() {
        filter(&mut r)?;
        check_options(v, r.u8("subscription options")?)?;
        count += 1;
    }
    if count == 0 {
        return Err(protocol("SUBSCRIBE without topic filters"));
    }

    let err = |e| from_mqttbytes("SUBSCRIBE", e);
    if !v.is_v5() {
        let s = v4::Subscribe::read(header.to_mqttbytes(), frame.clone()).map_err(err)?;
        return Ok(Subscribe {
            packet_id: non_zero_packet_id(s.pkid, "SUBSCRIBE")?,
            filters: s
                .filters
                .into_iter()
                .map(|f| (f.path, SubscriptionOptions::v3(qos_from_mqttbytes(f.qos))))
                .collect(),
            subscription_identifier: None,
            user_properties: Vec::new(),
        });
    }
    let s = v5::Subscribe::read(header.to_mqttbytes(), frame.clone()).map_err(err)?;
    let (id, user_properties) = match s.properties {
        Some(p) => (p.id, p.user_properties),
        None => (None, Vec::new()),
    };
    let subscription_identifier = id
        .map(u32::try_from)
        .transpose()
        .map_err(|_| malformed("Subscription Identifier out of range"))?;
    let filters = s
        .filters
        .into_iter()
        .map(|f| {
            let retain_handling = match f.retain_forward_rule {
                v5::RetainForwardRule::OnEverySubscribe => RetainHandling::OnSubscribe,
                v5::RetainForwardRule::OnNewSubscribe => RetainHandling::OnNewSubscribe,
                v5::RetainForwardRule::Never => RetainHandling::Never,
            };
            let options = SubscriptionOptions {
                qos: qos_from_mqttbytes(f.qos),
                no_local: f.nolocal,
                retain_as_published: f.preserve_retain,
                retain_handling,
            };
            (f.path, options)
        })
        .collect();
    Ok(Subscribe {
        packet_id: non_zero_packet_id(s.pkid, "SUBSCRIBE")?,
        filters,
        subscription_identifier,
        user_properties,
    })
}

pub(crate) fn unsubscribe(
    v: ProtocolVersion,
    header: FixedHeader,
    frame: &Bytes,
    body: &[u8],
) -> Result<Unsubscribe, DecodeError> {
    let mut r = Reader::new(body);
    let packet_id = packet_id(&mut r, "UNSUBSCRIBE")?;
    if v.is_v5() {
        // Own parser: mqttbytes 0.6 `dbg!`s every v5 UNSUBSCRIBE to stderr.
        let props = read_properties(&mut r, properties::UNSUBSCRIBE)?;
        let mut filters = Vec::new();
        while !r.is_empty() {
            filters.push(filter(&mut r)?.to_owned());
        }
        if filters.is_empty() {
            return Err(protocol("UNSUBSCRIBE without topic filters"));
        }
        return Ok(Unsubscribe {
            packet_id,
            filters,
            user_properties: props.owned_user_properties(),
        });
    }
    if r.is_empty() {
        return Err(protocol("UNSUBSCRIBE without topic filters"));
    }
    while !r.is_empty() {
        filter(&mut r)?;
    }
    let u = v4::Unsubscribe::read(header.to_mqttbytes(), frame.clone())
        .map_err(|e| from_mqttbytes("UNSUBSCRIBE", e))?;
    Ok(Unsubscribe {
        packet_id: non_zero_packet_id(u.pkid, "UNSUBSCRIBE")?,
        filters: u.topics,
        user_properties: Vec::new(),
    })
}
