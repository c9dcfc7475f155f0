//! MQTT 3.1.1 packets as the load generator needs them: encoded once, up
//! front, and a minimal frame reader for what brokers send back.

/// Appends a remaining length.
fn varint(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            return;
        }
    }
}

fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 5);
    out.push(first);
    varint(&mut out, body.len());
    out.extend_from_slice(body);
    out
}

fn string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

pub fn connect(client_id: &str, clean: bool, keep_alive: u16) -> Vec<u8> {
    let mut body = Vec::new();
    string(&mut body, "MQTT");
    body.push(4);
    body.push(if clean { 0x02 } else { 0 });
    body.extend_from_slice(&keep_alive.to_be_bytes());
    string(&mut body, client_id);
    packet(0x10, &body)
}

pub fn subscribe(packet_id: u16, filter: &str, qos: u8) -> Vec<u8> {
    let mut body = packet_id.to_be_bytes().to_vec();
    string(&mut body, filter);
    body.push(qos);
    packet(0x82, &body)
}

pub fn publish(topic: &str, qos: u8, packet_id: u16, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(topic.len() + payload.len() + 4);
    string(&mut body, topic);
    if qos > 0 {
        body.extend_from_slice(&packet_id.to_be_bytes());
    }
    body.extend_from_slice(payload);
    packet(0x30 | (qos << 1), &body)
}

/// One SUBSCRIBE holding `copies` copies of `filter` (MQTT 3.1.1 allows
/// any number of filters in a packet).
pub fn subscribe_many(packet_id: u16, filter: &str, copies: usize, qos: u8) -> Vec<u8> {
    let mut body = packet_id.to_be_bytes().to_vec();
    for _ in 0..copies {
        string(&mut body, filter);
        body.push(qos);
    }
    packet(0x82, &body)
}

/// MQTT 5 CONNECT that keeps its session `session_expiry` seconds after
/// the connection ends (clean start 0) and carries a QoS 0 Will published
/// `will_delay` seconds after an abrupt close.
pub fn connect_v5_will(
    client_id: &str,
    session_expiry: u32,
    will_topic: &str,
    will_delay: u32,
    will_payload: &[u8],
) -> Vec<u8> {
    let mut body = Vec::new();
    string(&mut body, "MQTT");
    body.push(5);
    body.push(0x04); // Will flag; clean start 0
    body.extend_from_slice(&0u16.to_be_bytes());
    // Properties: Session Expiry Interval.
    body.push(5);
    body.push(0x11);
    body.extend_from_slice(&session_expiry.to_be_bytes());
    string(&mut body, client_id);
    // Will properties: Will Delay Interval.
    body.push(5);
    body.push(0x18);
    body.extend_from_slice(&will_delay.to_be_bytes());
    string(&mut body, will_topic);
    body.extend_from_slice(&(will_payload.len() as u16).to_be_bytes());
    body.extend_from_slice(will_payload);
    packet(0x10, &body)
}

/// MQTT 5 CONNECT with clean start, no keep-alive and no properties.
pub fn connect_v5(client_id: &str) -> Vec<u8> {
    let mut body = Vec::new();
    string(&mut body, "MQTT");
    body.push(5);
    body.push(0x02);
    body.extend_from_slice(&0u16.to_be_bytes());
    body.push(0); // no properties
    string(&mut body, client_id);
    packet(0x10, &body)
}

/// MQTT 5 SUBSCRIBE of one filter, no properties.
pub fn subscribe_v5(packet_id: u16, filter: &str, qos: u8) -> Vec<u8> {
    let mut body = packet_id.to_be_bytes().to_vec();
    body.push(0);
    string(&mut body, filter);
    body.push(qos);
    packet(0x82, &body)
}

/// MQTT 5 PUBLISH without properties.
pub fn publish_v5(topic: &str, qos: u8, packet_id: u16, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(topic.len() + payload.len() + 5);
    string(&mut body, topic);
    if qos > 0 {
        body.extend_from_slice(&packet_id.to_be_bytes());
    }
    body.push(0);
    body.extend_from_slice(payload);
    packet(0x30 | (qos << 1), &body)
}

/// Packet id and payload of an MQTT 5 PUBLISH frame (its properties
/// skipped); `None` if it is malformed.
pub fn publish_parts_v5<'a>(buf: &'a [u8], f: &Frame) -> Option<(Option<u16>, &'a [u8])> {
    let body = &buf[f.start..f.end];
    let tlen = usize::from(u16::from_be_bytes([*body.first()?, *body.get(1)?]));
    let mut at = 2 + tlen;
    let id = if (f.first >> 1) & 3 > 0 {
        at += 2;
        Some(u16::from_be_bytes([*body.get(at - 2)?, *body.get(at - 1)?]))
    } else {
        None
    };
    let (props, n) = read_varint(body.get(at..)?)?;
    body.get(at + n + props..).map(|payload| (id, payload))
}

/// The reason code of an MQTT 5 PUBACK body (0 when it is left out).
pub fn puback_code(body: &[u8]) -> u8 {
    body.get(2).copied().unwrap_or(0)
}

/// A variable byte integer at the front of `bytes`: (value, its length).
fn read_varint(bytes: &[u8]) -> Option<(usize, usize)> {
    let mut n = 0usize;
    for (i, b) in bytes.iter().take(4).enumerate() {
        n |= usize::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            return Some((n, i + 1));
        }
    }
    None
}

pub fn puback(packet_id: u16) -> [u8; 4] {
    let id = packet_id.to_be_bytes();
    [0x40, 2, id[0], id[1]]
}

pub const PINGREQ: [u8; 2] = [0xC0, 0];
pub const DISCONNECT: [u8; 2] = [0xE0, 0];

/// One packet received: first byte and body range in the buffer.
#[derive(Clone, Copy, Debug)]
pub struct Frame {
    pub first: u8,
    pub start: usize,
    pub end: usize,
}

impl Frame {
    pub fn kind(&self) -> u8 {
        self.first >> 4
    }
}

/// Parses the frame at the front of `buf[at..]`; `None` when incomplete.
pub fn parse(buf: &[u8], at: usize) -> Option<Frame> {
    let rest = buf.get(at..)?;
    let first = *rest.first()?;
    let mut len = 0usize;
    let mut i = 1;
    loop {
        let b = *rest.get(i)?;
        len |= usize::from(b & 0x7F) << (7 * (i - 1));
        i += 1;
        if b & 0x80 == 0 {
            break;
        }
        if i > 4 {
            return None;
        }
    }
    let start = at + i;
    let end = start + len;
    (end <= buf.len()).then_some(Frame { first, start, end })
}

/// Topic and payload of a PUBLISH frame.
pub fn publish_parts<'a>(buf: &'a [u8], f: &Frame) -> (&'a [u8], Option<u16>, &'a [u8]) {
    let body = &buf[f.start..f.end];
    let tlen = usize::from(u16::from_be_bytes([body[0], body[1]]));
    let topic = &body[2..2 + tlen];
    let qos = (f.first >> 1) & 3;
    if qos > 0 {
        let id = u16::from_be_bytes([body[2 + tlen], body[3 + tlen]]);
        (topic, Some(id), &body[4 + tlen..])
    } else {
        (topic, None, &body[2 + tlen..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut buf = publish("bench/1", 1, 7, b"hello");
        buf.extend_from_slice(&PINGREQ);
        let f = parse(&buf, 0).unwrap();
        assert_eq!(f.kind(), 3);
        assert_eq!(
            publish_parts(&buf, &f),
            (&b"bench/1"[..], Some(7), &b"hello"[..])
        );
        let g = parse(&buf, f.end).unwrap();
        assert_eq!((g.kind(), g.end), (12, buf.len()));
        assert!(parse(&buf[..buf.len() - 1], f.end).is_none());
    }

    #[test]
    fn v5_publish_and_puback() {
        let p = publish_v5("spin/0", 1, 9, b"payload");
        let f = parse(&p, 0).unwrap();
        assert_eq!((f.kind(), f.end), (3, p.len()));
        assert_eq!(publish_parts_v5(&p, &f), Some((Some(9), &b"payload"[..])));
        // A PUBLISH as a broker may send it: QoS 0, two bytes of properties.
        let mut body = vec![0, 1, b't', 3, 0x01, 0x01, 0x00];
        body.extend_from_slice(b"xy");
        let q = packet(0x30, &body);
        let g = parse(&q, 0).unwrap();
        assert_eq!(publish_parts_v5(&q, &g), Some((None, &b"xy"[..])));
        assert_eq!(puback_code(&[0, 9]), 0);
        assert_eq!(puback_code(&[0, 9, 0x87, 0]), 0x87);
        let c = connect_v5("id");
        let h = parse(&c, 0).unwrap();
        assert_eq!(&c[h.start + 6..h.start + 7], &[5]);
        assert!(c.ends_with(&[0, 0, 2, b'i', b'd']));
    }

    #[test]
    fn many_filters_and_v5_will() {
        let sub = subscribe_many(3, "amp/#", 1000, 0);
        let f = parse(&sub, 0).unwrap();
        assert_eq!((f.first, f.end), (0x82, sub.len()));
        assert_eq!(f.end - f.start, 2 + 1000 * 8);
        let c = connect_v5_will("id", 600, "w/t", 300, b"bye");
        let f = parse(&c, 0).unwrap();
        assert_eq!((f.kind(), f.end), (1, c.len()));
        // Protocol level 5, Will flag, then the client id after 5 bytes
        // of properties.
        assert_eq!(&c[f.start + 6..f.start + 8], &[5, 0x04]);
        assert_eq!(&c[f.start + 16..f.start + 20], &[0, 2, b'i', b'd']);
        assert!(c.ends_with(&[0, 3, b'b', b'y', b'e']));
    }
}
