//! A client that speaks raw bytes: for CONNECT variants, malformed input,
//! exact reason codes, and flows client libraries hide.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::PATIENCE;

/// One packet from the broker: the first byte and the rest after the
/// remaining length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub byte1: u8,
    pub body: Bytes,
}

impl Frame {
    /// The packet type nibble.
    pub fn kind(&self) -> u8 {
        self.byte1 >> 4
    }

    /// The whole packet as sent.
    pub fn to_bytes(&self) -> BytesMut {
        let mut b = BytesMut::new();
        b.extend_from_slice(&[self.byte1]);
        let mut len = self.body.len();
        loop {
            let mut byte = (len % 128) as u8;
            len /= 128;
            if len > 0 {
                byte |= 0x80;
            }
            b.extend_from_slice(&[byte]);
            if len == 0 {
                break;
            }
        }
        b.extend_from_slice(&self.body);
        b
    }

    /// CONNACK: (session present, return/reason code).
    pub fn connack(&self) -> (bool, u8) {
        assert_eq!(self.kind(), 2, "expected CONNACK, got {self:?}");
        (self.body[0] & 1 == 1, self.body[1])
    }

    /// MQTT 5 DISCONNECT reason code.
    pub fn disconnect_reason(&self) -> u8 {
        assert_eq!(self.kind(), 14, "expected DISCONNECT, got {self:?}");
        self.body.first().copied().unwrap_or(0)
    }

    /// Packet id of an ack (PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK, UNSUBACK).
    pub fn packet_id(&self) -> u16 {
        u16::from_be_bytes([self.body[0], self.body[1]])
    }

    /// Reason code of an MQTT 5 PUBACK/PUBREC/PUBREL/PUBCOMP (0 if absent).
    pub fn ack_reason(&self) -> u8 {
        self.body.get(2).copied().unwrap_or(0)
    }

    /// Parses an MQTT 3.1.1 PUBLISH.
    pub fn publish_v4(&self) -> mqttbytes::v4::Publish {
        assert_eq!(self.kind(), 3, "expected PUBLISH, got {self:?}");
        let mut b = self.to_bytes();
        match mqttbytes::v4::read(&mut b, usize::MAX) {
            Ok(mqttbytes::v4::Packet::Publish(p)) => p,
            other => panic!("not a v4 PUBLISH: {other:?}"),
        }
    }

    /// Parses an MQTT 5 PUBLISH.
    pub fn publish_v5(&self) -> mqttbytes::v5::Publish {
        assert_eq!(self.kind(), 3, "expected PUBLISH, got {self:?}");
        let mut b = self.to_bytes();
        match mqttbytes::v5::read(&mut b, usize::MAX) {
            Ok(mqttbytes::v5::Packet::Publish(p)) => p,
            other => panic!("not a v5 PUBLISH: {other:?}"),
        }
    }

    /// Parses an MQTT 5 CONNACK.
    pub fn connack_v5(&self) -> mqttbytes::v5::ConnAck {
        let mut b = self.to_bytes();
        match mqttbytes::v5::read(&mut b, usize::MAX) {
            Ok(mqttbytes::v5::Packet::ConnAck(c)) => c,
            other => panic!("not a v5 CONNACK: {other:?}"),
        }
    }

    /// SUBACK / UNSUBACK reason codes (after the MQTT 5 properties when
    /// `v5`).
    pub fn ack_codes(&self, v5: bool) -> Vec<u8> {
        let mut body = self.body.clone();
        body.advance(2);
        if v5 {
            let (n, len) = varint(&body);
            body.advance(n + len);
        }
        body.to_vec()
    }
}

/// Decodes a variable byte integer: (bytes used, value).
pub fn varint(b: &[u8]) -> (usize, usize) {
    let mut value = 0usize;
    for (i, byte) in b.iter().enumerate().take(4) {
        value |= usize::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return (i + 1, value);
        }
    }
    panic!("bad varint in {b:?}");
}

/// A raw TCP client.
pub struct Raw {
    pub stream: TcpStream,
    buf: BytesMut,
}

impl Raw {
    pub async fn connect(addr: SocketAddr) -> Raw {
        let stream = TcpStream::connect(addr).await.expect("connect to broker");
        stream.set_nodelay(true).expect("nodelay");
        Raw {
            stream,
            buf: BytesMut::new(),
        }
    }

    /// Wraps an already connected stream.
    pub fn from_stream(stream: TcpStream) -> Raw {
        Raw {
            stream,
            buf: BytesMut::new(),
        }
    }

    /// Connects and sends `connect`, expecting a successful CONNACK.
    pub async fn handshake(addr: SocketAddr, connect: &[u8]) -> Raw {
        let mut raw = Raw::connect(addr).await;
        raw.send(connect).await;
        let ack = raw.recv().await;
        assert_eq!(ack.connack().1, 0, "CONNACK refused: {ack:?}");
        raw
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write to broker");
    }

    fn parse(&mut self) -> Option<Frame> {
        if self.buf.len() < 2 {
            return None;
        }
        let mut len = 0usize;
        let mut i = 1;
        loop {
            let byte = *self.buf.get(i)?;
            len |= usize::from(byte & 0x7F) << (7 * (i - 1));
            i += 1;
            if byte & 0x80 == 0 {
                break;
            }
        }
        if self.buf.len() < i + len {
            return None;
        }
        let byte1 = self.buf[0];
        self.buf.advance(i);
        let body = self.buf.split_to(len).freeze();
        Some(Frame { byte1, body })
    }

    /// The next packet, or `None` if the connection closed or `wait`
    /// passed.
    pub async fn recv_within(&mut self, wait: Duration) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(f) = self.parse() {
                return Some(f);
            }
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
                Ok(Ok(_)) => {}
            }
        }
    }

    /// The next packet; panics if none arrives in time.
    pub async fn recv(&mut self) -> Frame {
        self.recv_within(PATIENCE)
            .await
            .expect("a packet from the broker")
    }

    /// The next packet of kind `kind`, skipping others (returned too).
    pub async fn recv_kind(&mut self, kind: u8) -> Frame {
        loop {
            let f = self.recv().await;
            if f.kind() == kind {
                return f;
            }
        }
    }

    /// Asserts nothing arrives for `wait` (and the connection stays open).
    pub async fn expect_silence(&mut self, wait: Duration) {
        if let Some(f) = self.recv_within(wait).await {
            panic!("expected no packet, got {f:?}");
        }
    }

    /// Reads until the connection ends; returns what came before and how
    /// it ended: `Ok` for an orderly close (EOF), the error for a reset.
    /// Panics if it stays open.
    pub async fn read_until_closed(&mut self) -> (Vec<Frame>, std::io::Result<()>) {
        let mut frames = Vec::new();
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            while let Some(f) = self.parse() {
                frames.push(f);
            }
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                Ok(Ok(0)) => return (frames, Ok(())),
                Ok(Err(e)) => return (frames, Err(e)),
                Ok(Ok(_)) => {}
                Err(_) => panic!("connection still open; got {frames:?}"),
            }
        }
    }

    /// Reads until the broker closes the connection; returns what came
    /// before. Panics if it stays open.
    pub async fn expect_closed(&mut self) -> Vec<Frame> {
        let mut frames = Vec::new();
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            while let Some(f) = self.parse() {
                frames.push(f);
            }
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return frames,
                Ok(Ok(_)) => {}
                Err(_) => panic!("connection still open; got {frames:?}"),
            }
        }
    }
}
