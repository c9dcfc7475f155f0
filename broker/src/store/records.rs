//! The store's values, as bytes (the keys are in `keys.rs`).
//!
//! Values start with a format byte ([`RECORD_FORMAT`]); a value that does
//! not decode is skipped at recovery and counted, never trusted.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::time::Instant;

use crate::codec::{MessageProperties, QoS, RetainHandling, SubscriptionOptions};
use crate::message::{Message, Will};
use crate::session::OutState;
use crate::topic::{PacketId, TopicName};

/// First byte of every value.
pub(crate) const RECORD_FORMAT: u8 = 1;

/// A value that did not decode.
#[derive(Debug, thiserror::Error)]
#[error("malformed record: {0}")]
pub struct Malformed(pub &'static str);

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The wall-clock time (ms since the epoch) of a monotonic instant.
pub(crate) fn wall_of(at: Instant) -> u64 {
    let now = Instant::now();
    let wall = now_ms();
    if at >= now {
        wall.saturating_add(u64::try_from((at - now).as_millis()).unwrap_or(u64::MAX))
    } else {
        wall.saturating_sub(u64::try_from((now - at).as_millis()).unwrap_or(u64::MAX))
    }
}

/// The monotonic instant of a wall-clock time (ms since the epoch); a time
/// in the past is now.
pub(crate) fn instant_of(wall: u64) -> Instant {
    let now = Instant::now();
    now + Duration::from_millis(wall.saturating_sub(now_ms()))
}

/// Builds a value.
#[derive(Default)]
pub(crate) struct Writer(Vec<u8>);

impl Writer {
    pub(crate) fn new() -> Self {
        Writer(vec![RECORD_FORMAT])
    }
    pub(crate) fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    pub(crate) fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub(crate) fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub(crate) fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub(crate) fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.u32(u32::try_from(v.len()).unwrap_or(u32::MAX));
        self.0.extend_from_slice(v);
        self
    }
    pub(crate) fn opt_bytes(&mut self, v: Option<&[u8]>) -> &mut Self {
        match v {
            Some(v) => self.u8(1).bytes(v),
            None => self.u8(0),
        }
    }
    pub(crate) fn opt_u32(&mut self, v: Option<u32>) -> &mut Self {
        match v {
            Some(v) => self.u8(1).u32(v),
            None => self.u8(0),
        }
    }
    pub(crate) fn finish(self) -> Vec<u8> {
        self.0
    }
}

/// Reads a value.
pub(crate) struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    /// Checks the format byte.
    pub(crate) fn new(v: &'a [u8]) -> Result<Self, Malformed> {
        match v.split_first() {
            Some((&RECORD_FORMAT, rest)) => Ok(Reader(rest)),
            Some(_) => Err(Malformed("unknown record format")),
            None => Err(Malformed("empty record")),
        }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if self.0.len() < n {
            return Err(Malformed("truncated"));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    pub(crate) fn u8(&mut self) -> Result<u8, Malformed> {
        Ok(self.take(1)?[0])
    }
    pub(crate) fn u16(&mut self) -> Result<u16, Malformed> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    pub(crate) fn u32(&mut self) -> Result<u32, Malformed> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub(crate) fn u64(&mut self) -> Result<u64, Malformed> {
        let mut a = [0; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(a))
    }
    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], Malformed> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    pub(crate) fn string(&mut self) -> Result<String, Malformed> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| Malformed("string not UTF-8"))
    }
    fn flag(&mut self) -> Result<bool, Malformed> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(Malformed("bad flag")),
        }
    }
    pub(crate) fn opt_bytes(&mut self) -> Result<Option<&'a [u8]>, Malformed> {
        Ok(if self.flag()? {
            Some(self.bytes()?)
        } else {
            None
        })
    }
    pub(crate) fn opt_string(&mut self) -> Result<Option<String>, Malformed> {
        Ok(if self.flag()? {
            Some(self.string()?)
        } else {
            None
        })
    }
    pub(crate) fn opt_u32(&mut self) -> Result<Option<u32>, Malformed> {
        Ok(if self.flag()? {
            Some(self.u32()?)
        } else {
            None
        })
    }
    /// The value must end here.
    pub(crate) fn end(&self) -> Result<(), Malformed> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Malformed("trailing bytes"))
        }
    }
}

pub(crate) fn qos(v: u8) -> Result<QoS, Malformed> {
    QoS::from_u8(v).ok_or(Malformed("bad QoS"))
}

/// A message as stored: its expiry as wall-clock time.
pub(crate) fn put_message(w: &mut Writer, m: &Message) {
    w.bytes(m.topic.as_str().as_bytes())
        .bytes(&m.payload)
        .u8(m.qos as u8 | u8::from(m.retain) << 2)
        .u64(m.expires_at.map_or(0, wall_of));
    let p = &m.properties;
    w.u8(p.payload_format_indicator.map_or(0xff, |v| v))
        .opt_bytes(p.content_type.as_deref().map(str::as_bytes))
        .opt_bytes(p.response_topic.as_deref().map(str::as_bytes))
        .opt_bytes(p.correlation_data.as_deref())
        .u32(u32::try_from(p.user_properties.len()).unwrap_or(u32::MAX));
    for (k, v) in &p.user_properties {
        w.bytes(k.as_bytes()).bytes(v.as_bytes());
    }
}

/// Reads what [`put_message`] wrote.
pub(crate) fn get_message(r: &mut Reader<'_>) -> Result<Message, Malformed> {
    let topic = TopicName::new(&r.string()?).map_err(|_| Malformed("invalid topic"))?;
    let payload = Bytes::copy_from_slice(r.bytes()?);
    let flags = r.u8()?;
    let expires = r.u64()?;
    let format = r.u8()?;
    let content_type = r.opt_bytes()?.map(utf8).transpose()?;
    let response_topic = r.opt_bytes()?.map(utf8).transpose()?;
    let correlation_data = r.opt_bytes()?.map(Bytes::copy_from_slice);
    let n = r.u32()?;
    let mut user_properties = Vec::with_capacity((n as usize).min(64));
    for _ in 0..n {
        user_properties.push((r.string()?, r.string()?));
    }
    Ok(Message {
        topic,
        payload,
        qos: qos(flags & 3)?,
        retain: flags & 4 != 0,
        properties: MessageProperties {
            payload_format_indicator: (format != 0xff).then_some(format),
            content_type,
            response_topic,
            correlation_data,
            user_properties,
        },
        expires_at: (expires != 0).then(|| instant_of(expires)),
    })
}

fn utf8(b: &[u8]) -> Result<String, Malformed> {
    String::from_utf8(b.to_vec()).map_err(|_| Malformed("string not UTF-8"))
}

/// Whether a stored message's expiry (as read back) has passed.
pub(crate) fn expired(m: &Message) -> bool {
    m.is_expired(Instant::now())
}

/// A message value (`msgs` and `retained`).
pub(crate) fn encode_message(m: &Message) -> Vec<u8> {
    let mut w = Writer::new();
    put_message(&mut w, m);
    w.finish()
}

pub(crate) fn decode_message(v: &[u8]) -> Result<Message, Malformed> {
    let mut r = Reader::new(v)?;
    let m = get_message(&mut r)?;
    r.end()?;
    Ok(m)
}

/// A session as stored.
#[derive(Debug)]
pub(crate) struct SessionRecord {
    /// Protocol level of the last connection (3, 4, 5).
    pub level: u8,
    /// Session Expiry Interval, seconds (`u32::MAX`: never).
    pub expiry_interval: u32,
    /// When the last connection ended (ms since the epoch); 0 while a
    /// connection holds the session.
    pub disconnected_at: u64,
    /// The Will: while connected, the connection's (published if the
    /// broker stops without the connection ending); while disconnected,
    /// a Will waiting for its delay.
    pub will: Option<Will>,
    /// When a waiting Will is due (ms since the epoch).
    pub will_due: u64,
}

pub(crate) fn encode_session(s: &SessionRecord) -> Vec<u8> {
    let mut w = Writer::new();
    w.u8(s.level)
        .u32(s.expiry_interval)
        .u64(s.disconnected_at)
        .u64(s.will_due);
    match &s.will {
        Some(will) => {
            w.u8(1);
            put_message(&mut w, &will.message);
            w.u32(will.delay_interval)
                .opt_u32(will.expiry_interval)
                .opt_bytes(will.mountpoint.as_deref().map(str::as_bytes));
        }
        None => {
            w.u8(0);
        }
    }
    w.finish()
}

pub(crate) fn decode_session(v: &[u8]) -> Result<SessionRecord, Malformed> {
    let mut r = Reader::new(v)?;
    let level = r.u8()?;
    let expiry_interval = r.u32()?;
    let disconnected_at = r.u64()?;
    let will_due = r.u64()?;
    let will = if r.flag()? {
        let message = get_message(&mut r)?;
        Some(Will {
            message,
            delay_interval: r.u32()?,
            expiry_interval: r.opt_u32()?,
            mountpoint: r.opt_string()?.map(Arc::from),
        })
    } else {
        None
    };
    r.end()?;
    Ok(SessionRecord {
        level,
        expiry_interval,
        disconnected_at,
        will,
        will_due,
    })
}

/// A subscription's options and identifier.
pub(crate) fn encode_subscription(o: &SubscriptionOptions, identifier: Option<u32>) -> Vec<u8> {
    let rh = match o.retain_handling {
        RetainHandling::OnSubscribe => 0,
        RetainHandling::OnNewSubscribe => 1,
        RetainHandling::Never => 2,
    };
    let mut w = Writer::new();
    w.u8(o.qos as u8 | u8::from(o.no_local) << 2 | u8::from(o.retain_as_published) << 3 | rh << 4)
        .opt_u32(identifier);
    w.finish()
}

pub(crate) fn decode_subscription(
    v: &[u8],
) -> Result<(SubscriptionOptions, Option<u32>), Malformed> {
    let mut r = Reader::new(v)?;
    let b = r.u8()?;
    let identifier = r.opt_u32()?;
    r.end()?;
    let retain_handling = match b >> 4 {
        0 => RetainHandling::OnSubscribe,
        1 => RetainHandling::OnNewSubscribe,
        2 => RetainHandling::Never,
        _ => return Err(Malformed("bad retain handling")),
    };
    Ok((
        SubscriptionOptions {
            qos: qos(b & 3)?,
            no_local: b & 4 != 0,
            retain_as_published: b & 8 != 0,
            retain_handling,
        },
        identifier,
    ))
}

/// Where a stored delivery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DeliveryState {
    /// In the session's queue.
    Queued,
    /// Sent with a packet id, waiting in this state.
    Sent(PacketId, OutState),
}

/// A delivery as stored (`queue`): the message by id.
#[derive(Debug)]
pub(crate) struct DeliveryRecord {
    pub message: u64,
    pub qos: QoS,
    pub retain: bool,
    pub subscription_ids: Vec<u32>,
    pub state: DeliveryState,
}

pub(crate) fn encode_delivery(d: &DeliveryRecord) -> Vec<u8> {
    let mut w = Writer::new();
    w.u64(d.message)
        .u8(d.qos as u8 | u8::from(d.retain) << 2)
        .u32(u32::try_from(d.subscription_ids.len()).unwrap_or(u32::MAX));
    for id in &d.subscription_ids {
        w.u32(*id);
    }
    match d.state {
        DeliveryState::Queued => w.u8(0).u16(0),
        DeliveryState::Sent(pid, state) => w
            .u8(match state {
                OutState::AwaitingPubAck => 1,
                OutState::AwaitingPubRec => 2,
                OutState::AwaitingPubComp => 3,
            })
            .u16(pid.get()),
    };
    w.finish()
}

pub(crate) fn decode_delivery(v: &[u8]) -> Result<DeliveryRecord, Malformed> {
    let mut r = Reader::new(v)?;
    let message = r.u64()?;
    let flags = r.u8()?;
    let n = r.u32()?;
    let mut subscription_ids = Vec::with_capacity((n as usize).min(64));
    for _ in 0..n {
        subscription_ids.push(r.u32()?);
    }
    let state = r.u8()?;
    let pid = r.u16()?;
    r.end()?;
    let state = match state {
        0 => DeliveryState::Queued,
        s => {
            let pid = PacketId::new(pid).ok_or(Malformed("packet id 0"))?;
            DeliveryState::Sent(
                pid,
                match s {
                    1 => OutState::AwaitingPubAck,
                    2 => OutState::AwaitingPubRec,
                    3 => OutState::AwaitingPubComp,
                    _ => return Err(Malformed("bad delivery state")),
                },
            )
        }
    };
    Ok(DeliveryRecord {
        message,
        qos: qos(flags & 3)?,
        retain: flags & 4 != 0,
        subscription_ids,
        state,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> Message {
        Message {
            topic: TopicName::new("a/b").unwrap(),
            payload: Bytes::from_static(b"hello"),
            qos: QoS::ExactlyOnce,
            retain: true,
            properties: MessageProperties {
                payload_format_indicator: Some(1),
                content_type: Some("text/plain".into()),
                response_topic: None,
                correlation_data: Some(Bytes::from_static(b"\x00\x01")),
                user_properties: vec![("k".into(), "v".into())],
            },
            expires_at: Some(Instant::now() + Duration::from_secs(60)),
        }
    }

    #[test]
    fn messages_round_trip() {
        let m = message();
        let back = decode_message(&encode_message(&m)).unwrap();
        assert_eq!(back.topic, m.topic);
        assert_eq!(back.payload, m.payload);
        assert_eq!((back.qos, back.retain), (m.qos, m.retain));
        assert_eq!(back.properties, m.properties);
        let left = back.remaining_expiry(Instant::now()).unwrap();
        assert!((59..=60).contains(&left), "{left}");
    }

    #[test]
    fn sessions_subscriptions_and_deliveries_round_trip() {
        let s = SessionRecord {
            level: 5,
            expiry_interval: 3600,
            disconnected_at: 17,
            will: Some(Will {
                message: Message {
                    expires_at: None,
                    ..message()
                },
                delay_interval: 30,
                expiry_interval: Some(9),
                mountpoint: Some(Arc::from("m/")),
            }),
            will_due: 99,
        };
        let back = decode_session(&encode_session(&s)).unwrap();
        assert_eq!((back.level, back.expiry_interval), (5, 3600));
        assert_eq!((back.disconnected_at, back.will_due), (17, 99));
        let will = back.will.unwrap();
        assert_eq!((will.delay_interval, will.expiry_interval), (30, Some(9)));
        assert_eq!(will.mountpoint.as_deref(), Some("m/"));

        let o = SubscriptionOptions {
            qos: QoS::AtLeastOnce,
            no_local: true,
            retain_as_published: true,
            retain_handling: RetainHandling::Never,
        };
        assert_eq!(
            decode_subscription(&encode_subscription(&o, Some(7))).unwrap(),
            (o, Some(7))
        );

        let d = DeliveryRecord {
            message: 42,
            qos: QoS::ExactlyOnce,
            retain: true,
            subscription_ids: vec![1, 2],
            state: DeliveryState::Sent(PacketId::new(9).unwrap(), OutState::AwaitingPubComp),
        };
        let back = decode_delivery(&encode_delivery(&d)).unwrap();
        assert_eq!(back.message, 42);
        assert_eq!(back.subscription_ids, [1, 2]);
        assert_eq!(back.state, d.state);
    }

    #[test]
    fn damaged_values_are_refused() {
        let v = encode_message(&message());
        for cut in 0..v.len() {
            assert!(decode_message(&v[..cut]).is_err(), "cut at {cut}");
        }
        let mut other = v.clone();
        other[0] = 9;
        assert!(decode_message(&other).is_err());
    }
}
