//! A bounds-checked cursor over the body of one framed packet.
//!
//! The decoder only parses a packet once all its bytes are in the buffer, so
//! a read that runs past the end of the frame (or of a property block) means
//! the packet lied about its lengths: it is Malformed, never "need more".
//! Strings and binary data are returned as borrowed slices of the frame, so
//! validation costs no allocation.

use super::DecodeError;

/// A Malformed Packet error.
pub(crate) fn malformed(message: impl Into<String>) -> DecodeError {
    DecodeError::Malformed(message.into())
}

/// A Protocol Error.
pub(crate) fn protocol(message: impl Into<String>) -> DecodeError {
    DecodeError::Protocol(message.into())
}

/// Reads MQTT data types from the front of a byte slice. `what` arguments
/// name the field being read, for error messages.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    /// Bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The next `n` bytes.
    pub(crate) fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], DecodeError> {
        match self.buf.split_at_checked(n) {
            Some((head, tail)) => {
                self.buf = tail;
                Ok(head)
            }
            None => Err(malformed(format!(
                "{what}: needs {n} bytes but only {} remain",
                self.buf.len()
            ))),
        }
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], DecodeError> {
        match self.buf.split_first_chunk::<N>() {
            Some((head, tail)) => {
                self.buf = tail;
                Ok(*head)
            }
            None => Err(malformed(format!(
                "{what}: needs {N} bytes but only {} remain",
                self.buf.len()
            ))),
        }
    }

    pub(crate) fn u8(&mut self, what: &str) -> Result<u8, DecodeError> {
        let [b] = self.array::<1>(what)?;
        Ok(b)
    }

    /// A Two Byte Integer (big endian).
    pub(crate) fn u16(&mut self, what: &str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    /// A Four Byte Integer (big endian).
    pub(crate) fn u32(&mut self, what: &str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    /// A Variable Byte Integer: at most 4 bytes, so at most 268,435,455.
    pub(crate) fn varint(&mut self, what: &str) -> Result<u32, DecodeError> {
        let mut value = 0u32;
        for i in 0..4 {
            let b = self.u8(what)?;
            value |= u32::from(b & 0x7F) << (7 * i);
            if b & 0x80 == 0 {
                // MQTT 5 §1.5.5: the fewest bytes that hold the value (a
                // last byte of 0 after the first adds nothing).
                if i > 0 && b == 0 {
                    return Err(malformed(format!(
                        "{what}: variable byte integer not in its shortest form"
                    )));
                }
                return Ok(value);
            }
        }
        Err(malformed(format!(
            "{what}: variable byte integer longer than 4 bytes"
        )))
    }

    /// Binary Data: a two-byte length, then that many bytes.
    pub(crate) fn binary(&mut self, what: &str) -> Result<&'a [u8], DecodeError> {
        let len = self.u16(what)?;
        self.take(usize::from(len), what)
    }

    /// A UTF-8 Encoded String: valid UTF-8 without U+0000 (MQTT 5 §1.5.4;
    /// the same rule holds for 3.1.1).
    pub(crate) fn string(&mut self, what: &str) -> Result<&'a str, DecodeError> {
        let bytes = self.binary(what)?;
        let s = std::str::from_utf8(bytes)
            .map_err(|_| malformed(format!("{what} is not valid UTF-8")))?;
        if s.contains('\0') {
            return Err(malformed(format!("{what} contains U+0000")));
        }
        Ok(s)
    }

    /// A reader over the next `n` bytes, which this reader skips.
    pub(crate) fn sub(&mut self, n: usize, what: &str) -> Result<Reader<'a>, DecodeError> {
        self.take(n, what).map(Reader::new)
    }
}
