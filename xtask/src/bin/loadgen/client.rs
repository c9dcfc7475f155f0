//! A raw MQTT connection for the load generator: buffered reads, frames
//! handed to a callback without copying.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::wire::{self, Frame};

/// Read buffer size.
const BUF: usize = 256 * 1024;

/// The keep alive of every MQTT 3.1.1 CONNECT, in seconds (`--keep-alive`;
/// 0, none, unless given).
static KEEP_ALIVE: AtomicU16 = AtomicU16::new(0);

/// Sets the keep alive [`Conn::open`] and [`Conn::open_session`] ask for.
pub fn set_keep_alive(secs: u16) {
    KEEP_ALIVE.store(secs, Ordering::Relaxed);
}

fn keep_alive() -> u16 {
    KEEP_ALIVE.load(Ordering::Relaxed)
}

pub struct Conn {
    pub stream: TcpStream,
    buf: Vec<u8>,
    /// Bytes of `buf` holding data.
    len: usize,
}

impl Conn {
    /// Connects and completes the MQTT CONNECT (clean session).
    pub async fn open(addr: SocketAddr, client_id: &str) -> Result<Conn> {
        Self::open_with_buffer(addr, client_id, BUF).await
    }

    /// Like [`Conn::open`] with a read buffer of `buf` bytes (small for
    /// connections that only sit idle).
    pub async fn open_with_buffer(addr: SocketAddr, client_id: &str, buf: usize) -> Result<Conn> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connect to {addr}"))?;
        stream.set_nodelay(true)?;
        let mut conn = Conn {
            stream,
            buf: vec![0; buf],
            len: 0,
        };
        conn.stream
            .write_all(&wire::connect(client_id, true, keep_alive()))
            .await?;
        let ack = conn.expect(2).await?;
        if ack.1 != [0, 0] {
            bail!("CONNACK refused for {client_id}: {:?}", ack.1);
        }
        Ok(conn)
    }

    /// Connects with an MQTT 3.1.1 CONNECT of `clean` session and a read
    /// buffer of `buf` bytes; returns the connection and the CONNACK's
    /// session-present flag.
    pub async fn open_session(
        addr: SocketAddr,
        client_id: &str,
        clean: bool,
        buf: usize,
    ) -> Result<(Conn, bool)> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connect to {addr}"))?;
        stream.set_nodelay(true)?;
        let mut conn = Conn {
            stream,
            buf: vec![0; buf],
            len: 0,
        };
        conn.stream
            .write_all(&wire::connect(client_id, clean, keep_alive()))
            .await?;
        // Only the CONNACK: what a session present sends right after it
        // stays buffered (see `buffered`).
        let (first, body) = tokio::time::timeout(Duration::from_secs(30), conn.first_frame())
            .await
            .context("timed out waiting for the broker")??;
        if first >> 4 != 2 || body.get(1) != Some(&0) {
            bail!("CONNACK refused for {client_id}: {first:#x} {body:?}");
        }
        let present = body.first().is_some_and(|flags| flags & 1 == 1);
        Ok((conn, present))
    }

    /// Reads until one frame is complete and takes only that one: (first
    /// byte, body). The bytes after it stay in the buffer.
    async fn first_frame(&mut self) -> Result<(u8, Vec<u8>)> {
        loop {
            if let Some(f) = wire::parse(&self.buf[..self.len], 0) {
                let frame = (f.first, self.buf[f.start..f.end].to_vec());
                self.buf.copy_within(f.end..self.len, 0);
                self.len -= f.end;
                return Ok(frame);
            }
            if self.len == self.buf.len() {
                self.buf.resize(self.buf.len() * 2, 0);
            }
            let n = self.stream.read(&mut self.buf[self.len..]).await?;
            if n == 0 {
                bail!("connection closed by the broker");
            }
            self.len += n;
        }
    }

    /// Calls `on_frame` for every complete frame already buffered, without
    /// reading.
    pub fn buffered(&mut self, mut on_frame: impl FnMut(&[u8], &Frame)) {
        let mut at = 0;
        while let Some(f) = wire::parse(&self.buf[..self.len], at) {
            on_frame(&self.buf[..self.len], &f);
            at = f.end;
        }
        self.buf.copy_within(at..self.len, 0);
        self.len -= at;
    }

    /// Connects and completes an MQTT 5 CONNECT (clean start).
    pub async fn open_v5(addr: SocketAddr, client_id: &str) -> Result<Conn> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connect to {addr}"))?;
        stream.set_nodelay(true)?;
        let mut conn = Conn {
            stream,
            buf: vec![0; 64 * 1024],
            len: 0,
        };
        conn.stream.write_all(&wire::connect_v5(client_id)).await?;
        let (_, body) = conn.expect(2).await?;
        if body.get(1) != Some(&0) {
            bail!("CONNACK refused for {client_id}: {body:?}");
        }
        Ok(conn)
    }

    /// Subscribes (MQTT 5) and waits for SUBACK.
    pub async fn subscribe_v5(&mut self, filter: &str, qos: u8) -> Result<()> {
        self.stream
            .write_all(&wire::subscribe_v5(1, filter, qos))
            .await?;
        let (_, body) = self.expect(9).await?;
        // One filter: its reason code is the last byte.
        if body.last().is_none_or(|code| *code >= 0x80) || body.len() < 4 {
            bail!("SUBSCRIBE {filter} refused");
        }
        Ok(())
    }

    /// Subscribes and waits for SUBACK.
    pub async fn subscribe(&mut self, filter: &str, qos: u8) -> Result<()> {
        self.stream
            .write_all(&wire::subscribe(1, filter, qos))
            .await?;
        let (_, body) = self.expect(9).await?;
        if body.get(2).is_none_or(|code| *code >= 0x80) {
            bail!("SUBSCRIBE {filter} refused");
        }
        Ok(())
    }

    /// Reads until a frame of `kind` arrives; returns (first byte, body).
    pub async fn expect(&mut self, kind: u8) -> Result<(u8, Vec<u8>)> {
        let mut found = None;
        tokio::time::timeout(Duration::from_secs(30), async {
            while found.is_none() {
                self.read_some(|buf, f| {
                    if f.kind() == kind && found.is_none() {
                        found = Some((f.first, buf[f.start..f.end].to_vec()));
                    }
                })
                .await?;
            }
            anyhow::Ok(())
        })
        .await
        .context("timed out waiting for the broker")??;
        found.context("no frame")
    }

    /// One read from the socket; calls `on_frame` for every complete frame.
    /// Fails when the connection closes.
    pub async fn read_some(&mut self, mut on_frame: impl FnMut(&[u8], &Frame)) -> Result<()> {
        let n = self.stream.read(&mut self.buf[self.len..]).await?;
        if n == 0 {
            bail!("connection closed by the broker");
        }
        self.len += n;
        let mut at = 0;
        while let Some(f) = wire::parse(&self.buf[..self.len], at) {
            on_frame(&self.buf[..self.len], &f);
            at = f.end;
        }
        self.buf.copy_within(at..self.len, 0);
        self.len -= at;
        if self.len == self.buf.len() {
            // A frame larger than the buffer: grow.
            self.buf.resize(self.buf.len() * 2, 0);
        }
        Ok(())
    }

    /// Sends PINGREQ and waits for PINGRESP: everything sent before it has
    /// been processed by the broker.
    pub async fn barrier(&mut self) -> Result<()> {
        self.stream.write_all(&wire::PINGREQ).await?;
        self.expect(13).await.map(|_| ())
    }
}
