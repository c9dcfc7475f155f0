//! A message on NATS: the store's message record behind a small binary
//! envelope naming the origin node and the origin's number for the
//! message. (NATS headers would cost a header block to write, and a
//! header map to parse, for every message on every node.)
//!
//! Layout: version (1 byte, [`VERSION`]), the origin's name length (u16,
//! big-endian) and name (UTF-8), the number (u64, big-endian), then the
//! record (`crate::store::records`).

use bytes::{BufMut, Bytes, BytesMut};

use crate::message::Message;
use crate::store::records;

/// The envelope's version; another is refused.
const VERSION: u8 = 1;

/// What an envelope says besides the record.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Envelope<'a> {
    pub(super) origin: &'a str,
    pub(super) id: u64,
    pub(super) record: &'a [u8],
}

/// `message` from `origin`, numbered `id`, as it goes on NATS.
pub(super) fn wrap(origin: &str, id: u64, message: &Message) -> Bytes {
    let record = records::encode_message(message);
    // Node names are short; one longer than a u16 would be cut here and
    // refused by every receiver.
    let name = &origin.as_bytes()[..origin.len().min(usize::from(u16::MAX))];
    let mut out = BytesMut::with_capacity(1 + 2 + name.len() + 8 + record.len());
    out.put_u8(VERSION);
    out.put_u16(name.len() as u16);
    out.put_slice(name);
    out.put_u64(id);
    out.put_slice(&record);
    out.freeze()
}

/// The envelope of a NATS message's payload (`None`: not one).
pub(super) fn open(payload: &[u8]) -> Option<Envelope<'_>> {
    let (&version, rest) = payload.split_first()?;
    if version != VERSION {
        return None;
    }
    let (len, rest) = rest.split_first_chunk::<2>()?;
    let len = usize::from(u16::from_be_bytes(*len));
    if rest.len() < len {
        return None;
    }
    let (origin, rest) = rest.split_at(len);
    let origin = std::str::from_utf8(origin).ok()?;
    let (id, record) = rest.split_first_chunk::<8>()?;
    Some(Envelope {
        origin,
        id: u64::from_be_bytes(*id),
        record,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{MessageProperties, QoS};
    use crate::topic::TopicName;

    #[test]
    fn what_is_wrapped_opens_and_anything_short_or_foreign_does_not() {
        let m = Message {
            topic: TopicName::new("a/b").expect("topic"),
            payload: Bytes::from_static(b"payload"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: MessageProperties::default(),
            expires_at: None,
        };
        let wire = wrap("node-a", 42, &m);
        let e = open(&wire).expect("opens");
        assert_eq!((e.origin, e.id), ("node-a", 42));
        let back = records::decode_message(e.record).expect("record");
        assert_eq!(back.topic.as_str(), "a/b");
        assert_eq!(&back.payload[..], b"payload");
        for cut in 0..1 + 2 + 6 + 8 {
            assert_eq!(open(&wire[..cut]), None, "cut at {cut}");
        }
        let mut foreign = wire.to_vec();
        foreign[0] = 2;
        assert_eq!(open(&foreign), None, "another version");
        assert_eq!(open(b"garbage"), None);
    }
}
