//! The byte stream a connection runs on, used by readiness: an idle
//! connection waits for the socket to become readable without holding a
//! read buffer or any stored future, which keeps idle connections small.
//! TCP implements it directly; TLS and WebSocket listeners will implement it
//! over their own buffers.

use std::future::{Future, poll_fn};
use std::io;
use std::task::{Context, Poll};

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::io::Interest;
use tokio::net::TcpStream;

/// What the connection task needs from a stream.
pub(crate) trait Transport: Send + Sync {
    /// Ready when a read may make progress (it may still find nothing).
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    /// Reads what is available into `buf`'s spare capacity; `WouldBlock`
    /// when nothing is. A read shorter than the spare capacity drained the
    /// stream: an implementation may then forget the stream's readiness,
    /// so that the next wait sleeps instead of waking to find nothing.
    fn try_read_buf(&self, buf: &mut BytesMut) -> io::Result<usize>;
    /// Ready when a write may make progress.
    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    /// Writes what the stream takes now; `WouldBlock` when it takes nothing.
    fn try_write(&self, buf: &[u8]) -> io::Result<usize>;
    /// Ends the writing side (after the last bytes are queued).
    fn shutdown(&mut self) -> impl Future<Output = io::Result<()>> + Send;

    /// Waits until a read may make progress.
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send
    where
        Self: Sized,
    {
        poll_fn(move |cx| self.poll_read_ready(cx))
    }

    /// Waits until a write may make progress.
    fn writable(&self) -> impl Future<Output = io::Result<()>> + Send
    where
        Self: Sized,
    {
        poll_fn(move |cx| self.poll_write_ready(cx))
    }
}

impl Transport for TcpStream {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        TcpStream::poll_read_ready(self, cx)
    }

    fn try_read_buf(&self, buf: &mut BytesMut) -> io::Result<usize> {
        let room = buf.capacity() - buf.len();
        let mut got = 0;
        // A short read emptied the socket's receive queue: answering
        // `WouldBlock` to `try_io` clears the readiness that read was
        // based on (saving a `recv` that would only say EAGAIN). Data or
        // EOF arriving after it is a new readiness event, which tokio
        // does not clear (it clears by event tick, and never clears
        // "closed").
        let res = self.try_io(Interest::READABLE, || {
            let n = TcpStream::try_read_buf(self, buf)?;
            got = n;
            if n > 0 && n < room {
                Err(io::ErrorKind::WouldBlock.into())
            } else {
                Ok(n)
            }
        });
        match res {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && got > 0 => Ok(got),
            other => other,
        }
    }

    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        TcpStream::poll_write_ready(self, cx)
    }

    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        TcpStream::try_write(self, buf)
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        AsyncWriteExt::shutdown(self).await
    }
}
