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
use tokio::net::TcpStream;

/// What the connection task needs from a stream.
pub(crate) trait Transport: Send + Sync {
    /// Ready when a read may make progress (it may still find nothing).
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    /// Reads what is available into `buf`; `WouldBlock` when nothing is.
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
        TcpStream::try_read_buf(self, buf)
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
