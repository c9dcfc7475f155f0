//! Low-level writing of MQTT data types, generic over a [`Sink`] so that the
//! same code both measures a packet (with a [`Counter`]) and writes it (into
//! a `BytesMut`). Sizes therefore always match what is written, and nothing
//! is allocated besides the output buffer.
//!
//! Strings and binary data longer than 65,535 bytes cannot be encoded; they
//! are truncated to that length (strings at a character boundary) rather
//! than corrupting the packet.

use bytes::BytesMut;

use super::UserProperty;

/// Where encoded bytes go.
pub(crate) trait Sink {
    fn put_all(&mut self, bytes: &[u8]);
}

impl Sink for BytesMut {
    fn put_all(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// A sink that only counts bytes.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Counter(pub(crate) usize);

impl Sink for Counter {
    fn put_all(&mut self, bytes: &[u8]) {
        self.0 += bytes.len();
    }
}

/// A set of MQTT 5 properties that can be written to any sink.
pub(crate) trait WriteProperties {
    /// Writes the properties, without the property length.
    fn write_properties<S: Sink>(&self, s: &mut S);

    /// The size of the properties, without the property length.
    fn properties_len(&self) -> usize {
        let mut counter = Counter::default();
        self.write_properties(&mut counter);
        counter.0
    }

    /// Whether there is no property to write.
    fn has_no_properties(&self) -> bool {
        self.properties_len() == 0
    }
}

const MAX_LEN: usize = u16::MAX as usize;

/// `s` cut to at most 65,535 bytes at a character boundary.
pub(crate) fn clamp_str(s: &str) -> &str {
    if s.len() <= MAX_LEN {
        return s;
    }
    let mut end = MAX_LEN;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

/// `b` cut to at most 65,535 bytes.
pub(crate) fn clamp_bin(b: &[u8]) -> &[u8] {
    b.get(..MAX_LEN).unwrap_or(b)
}

pub(crate) fn put_u8<S: Sink>(s: &mut S, v: u8) {
    s.put_all(&[v]);
}

pub(crate) fn put_u16<S: Sink>(s: &mut S, v: u16) {
    s.put_all(&v.to_be_bytes());
}

pub(crate) fn put_u32<S: Sink>(s: &mut S, v: u32) {
    s.put_all(&v.to_be_bytes());
}

/// A Variable Byte Integer. Callers keep values below 268,435,456, the
/// largest that fits in the 4 bytes MQTT allows.
pub(crate) fn put_varint<S: Sink>(s: &mut S, mut v: usize) {
    loop {
        let mut byte = (v & 0x7F) as u8;
        v >>= 7;
        if v > 0 {
            byte |= 0x80;
        }
        put_u8(s, byte);
        if v == 0 {
            return;
        }
    }
}

/// The number of bytes [`put_varint`] writes for `v`.
pub(crate) fn varint_len(mut v: usize) -> usize {
    let mut len = 1;
    while v >= 0x80 {
        v >>= 7;
        len += 1;
    }
    len
}

/// Binary Data: two-byte length, then the bytes.
pub(crate) fn put_binary<S: Sink>(s: &mut S, v: &[u8]) {
    let v = clamp_bin(v);
    put_u16(s, u16::try_from(v.len()).unwrap_or(u16::MAX));
    s.put_all(v);
}

/// A UTF-8 Encoded String.
pub(crate) fn put_string<S: Sink>(s: &mut S, v: &str) {
    put_binary(s, clamp_str(v).as_bytes());
}

pub(crate) fn prop_u8<S: Sink>(s: &mut S, id: u8, v: Option<u8>) {
    if let Some(v) = v {
        put_u8(s, id);
        put_u8(s, v);
    }
}

/// A byte property holding 0 or 1.
pub(crate) fn prop_bool<S: Sink>(s: &mut S, id: u8, v: Option<bool>) {
    prop_u8(s, id, v.map(u8::from));
}

pub(crate) fn prop_u16<S: Sink>(s: &mut S, id: u8, v: Option<u16>) {
    if let Some(v) = v {
        put_u8(s, id);
        put_u16(s, v);
    }
}

pub(crate) fn prop_u32<S: Sink>(s: &mut S, id: u8, v: Option<u32>) {
    if let Some(v) = v {
        put_u8(s, id);
        put_u32(s, v);
    }
}

pub(crate) fn prop_varint<S: Sink>(s: &mut S, id: u8, v: u32) {
    put_u8(s, id);
    put_varint(s, v as usize);
}

pub(crate) fn prop_string<S: Sink>(s: &mut S, id: u8, v: Option<&str>) {
    if let Some(v) = v {
        put_u8(s, id);
        put_string(s, v);
    }
}

pub(crate) fn prop_binary<S: Sink>(s: &mut S, id: u8, v: Option<&[u8]>) {
    if let Some(v) = v {
        put_u8(s, id);
        put_binary(s, v);
    }
}

pub(crate) fn prop_user_properties<S: Sink>(s: &mut S, props: &[UserProperty]) {
    for (key, value) in props {
        put_u8(s, super::properties::USER_PROPERTY);
        put_string(s, key);
        put_string(s, value);
    }
}
