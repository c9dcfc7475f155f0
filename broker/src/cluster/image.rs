//! A session as bytes, for the cluster: the owner record kept in the
//! session bucket (owner node plus the session's card: record and
//! subscriptions) and the full image one node hands another at a takeover
//! (the card plus queue, in-flight QoS state and incoming QoS 2 ids).
//!
//! Built from the store's record codec ([`crate::store::records`]), so a
//! session is written the same way on disk and on the wire. A value that
//! does not decode is refused, never trusted.

use std::sync::Arc;

use crate::message::Delivery;
use crate::registry::Card;
use crate::session::{OutState, SubscriberId};
use crate::store::records::{self, Malformed, Reader, Writer};
use crate::topic::{ClientId, PacketId, Subscription};

/// What the session bucket holds for a client id.
#[derive(Debug)]
pub(crate) struct Owned {
    /// The node holding the session.
    pub owner: String,
    /// The session, for a persistent one (written by its node as it
    /// changes).
    pub card: Option<Card>,
}

/// The bucket's value: `owner`, and `card` if any.
pub(crate) fn encode_owned(owner: &str, card: Option<&Card>) -> Vec<u8> {
    let mut w = Writer::new();
    w.bytes(owner.as_bytes());
    match card {
        Some(c) => {
            w.u8(1);
            put_image(&mut w, c, false);
        }
        None => {
            w.u8(0);
        }
    }
    w.finish()
}

/// Reads a bucket value (a bare node name is an owner without a card).
pub(crate) fn decode_owned(v: &[u8]) -> Result<Owned, Malformed> {
    if v.first() != Some(&records::RECORD_FORMAT) {
        let owner = std::str::from_utf8(v).map_err(|_| Malformed("owner not UTF-8"))?;
        return Ok(Owned {
            owner: owner.to_owned(),
            card: None,
        });
    }
    let mut r = Reader::new(v)?;
    let owner = r.string()?;
    let card = if r.u8()? == 1 {
        Some(get_image(&mut r, false)?)
    } else {
        None
    };
    r.end()?;
    Ok(Owned { owner, card })
}

/// A full session image.
pub(crate) fn encode_image(image: &Card) -> Vec<u8> {
    let mut w = Writer::new();
    put_image(&mut w, image, true);
    w.finish()
}

pub(crate) fn decode_image(v: &[u8]) -> Result<Card, Malformed> {
    let mut r = Reader::new(v)?;
    let image = get_image(&mut r, true)?;
    r.end()?;
    Ok(image)
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn put_image(w: &mut Writer, c: &Card, full: bool) {
    w.bytes(c.id.mountpoint.as_bytes())
        .bytes(c.id.client_id.as_str().as_bytes())
        .bytes(&records::encode_session(&c.record))
        .u32(count(c.subscriptions.len()));
    for (s, options, identifier) in &c.subscriptions {
        w.bytes(s.to_string().as_bytes())
            .bytes(&records::encode_subscription(options, *identifier));
    }
    if !full {
        return;
    }
    w.u32(count(c.queued.len()));
    for d in &c.queued {
        put_delivery(w, d);
    }
    w.u32(count(c.inflight.len()));
    for (pid, d, state) in &c.inflight {
        w.u16(pid.get()).u8(match state {
            OutState::AwaitingPubAck => 1,
            OutState::AwaitingPubRec => 2,
            OutState::AwaitingPubComp => 3,
        });
        put_delivery(w, d);
    }
    w.u32(count(c.incoming_qos2.len()));
    for pid in &c.incoming_qos2 {
        w.u16(pid.get());
    }
}

fn get_image(r: &mut Reader<'_>, full: bool) -> Result<Card, Malformed> {
    let mountpoint = r.string()?;
    let client_id = ClientId::new(&r.string()?).map_err(|_| Malformed("invalid client id"))?;
    let record = records::decode_session(r.bytes()?)?;
    let mut subscriptions = Vec::new();
    for _ in 0..r.u32()? {
        let s = Subscription::parse(&r.string()?).map_err(|_| Malformed("invalid subscription"))?;
        let (options, identifier) = records::decode_subscription(r.bytes()?)?;
        subscriptions.push((s, options, identifier));
    }
    let mut card = Card {
        id: SubscriberId {
            mountpoint: Arc::from(mountpoint),
            client_id,
        },
        record,
        subscriptions,
        queued: Vec::new(),
        inflight: Vec::new(),
        incoming_qos2: Vec::new(),
    };
    if !full {
        return Ok(card);
    }
    for _ in 0..r.u32()? {
        card.queued.push(get_delivery(r)?);
    }
    for _ in 0..r.u32()? {
        let pid = PacketId::new(r.u16()?).ok_or(Malformed("packet id 0"))?;
        let state = match r.u8()? {
            1 => OutState::AwaitingPubAck,
            2 => OutState::AwaitingPubRec,
            3 => OutState::AwaitingPubComp,
            _ => return Err(Malformed("bad delivery state")),
        };
        card.inflight.push((pid, get_delivery(r)?, state));
    }
    for _ in 0..r.u32()? {
        card.incoming_qos2
            .push(PacketId::new(r.u16()?).ok_or(Malformed("packet id 0"))?);
    }
    Ok(card)
}

fn put_delivery(w: &mut Writer, d: &Delivery) {
    w.bytes(&records::encode_message(&d.message))
        .u8(d.qos as u8 | u8::from(d.retain) << 2)
        .u32(count(d.subscription_ids.len()));
    for id in &d.subscription_ids {
        w.u32(*id);
    }
}

fn get_delivery(r: &mut Reader<'_>) -> Result<Delivery, Malformed> {
    let message = records::decode_message(r.bytes()?)?;
    let flags = r.u8()?;
    let n = r.u32()?;
    let mut subscription_ids = Vec::with_capacity((n as usize).min(64));
    for _ in 0..n {
        subscription_ids.push(r.u32()?);
    }
    Ok(Delivery {
        message: Arc::new(message),
        qos: records::qos(flags & 3)?,
        retain: flags & 4 != 0,
        subscription_ids,
        shared: None,
        stored: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{MessageProperties, QoS, RetainHandling, SubscriptionOptions};
    use crate::message::{Message, Will};
    use crate::store::SessionRecord;
    use crate::topic::TopicName;

    fn message(topic: &str) -> Message {
        Message {
            topic: TopicName::new(topic).unwrap(),
            payload: bytes::Bytes::from_static(b"p"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: MessageProperties::default(),
            expires_at: None,
        }
    }

    fn delivery(topic: &str) -> Delivery {
        Delivery {
            message: Arc::new(message(topic)),
            qos: QoS::AtLeastOnce,
            retain: true,
            subscription_ids: vec![3],
            shared: None,
            stored: None,
        }
    }

    fn image() -> Card {
        Card {
            id: SubscriberId {
                mountpoint: Arc::from("m/"),
                client_id: ClientId::new("c1").unwrap(),
            },
            record: SessionRecord {
                level: 5,
                expiry_interval: 600,
                disconnected_at: 0,
                will: Some(Will {
                    message: message("w"),
                    delay_interval: 2,
                    expiry_interval: None,
                    mountpoint: None,
                }),
                will_due: 0,
            },
            subscriptions: vec![(
                Subscription::parse("$share/g/a/+").unwrap(),
                SubscriptionOptions {
                    qos: QoS::ExactlyOnce,
                    no_local: true,
                    retain_as_published: false,
                    retain_handling: RetainHandling::Never,
                },
                Some(4),
            )],
            queued: vec![delivery("a/1"), delivery("a/2")],
            inflight: vec![(
                PacketId::new(7).unwrap(),
                delivery("a/0"),
                OutState::AwaitingPubComp,
            )],
            incoming_qos2: vec![PacketId::new(9).unwrap()],
        }
    }

    #[test]
    fn images_round_trip() {
        let back = decode_image(&encode_image(&image())).unwrap();
        assert_eq!(back.id, image().id);
        assert_eq!(back.record.expiry_interval, 600);
        assert_eq!(back.record.will.unwrap().delay_interval, 2);
        assert_eq!(back.subscriptions, image().subscriptions);
        let topics: Vec<_> = back
            .queued
            .iter()
            .map(|d| d.message.topic.as_str())
            .collect();
        assert_eq!(topics, ["a/1", "a/2"]);
        assert!(back.queued[0].retain);
        assert_eq!(back.queued[0].subscription_ids, [3]);
        assert_eq!(back.inflight[0].0.get(), 7);
        assert_eq!(back.inflight[0].2, OutState::AwaitingPubComp);
        assert_eq!(back.incoming_qos2[0].get(), 9);
    }

    #[test]
    fn owner_records_round_trip_and_bare_names_are_owners() {
        let v = encode_owned("node-a", Some(&image()));
        let back = decode_owned(&v).unwrap();
        assert_eq!(back.owner, "node-a");
        let card = back.card.unwrap();
        assert_eq!(card.subscriptions.len(), 1);
        assert!(card.queued.is_empty(), "a card carries no queue");
        let bare = decode_owned(b"node-b").unwrap();
        assert_eq!((bare.owner.as_str(), bare.card.is_none()), ("node-b", true));
        assert!(
            decode_owned(&encode_owned("n", None))
                .unwrap()
                .card
                .is_none()
        );
    }

    #[test]
    fn damaged_images_are_refused() {
        let v = encode_image(&image());
        for cut in 1..v.len() {
            assert!(decode_image(&v[..cut]).is_err(), "cut at {cut}");
        }
    }
}
