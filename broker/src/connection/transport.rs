//! The byte stream a connection runs on, used by readiness: an idle
//! connection waits for the socket to become readable without holding a
//! read buffer or any stored future, which keeps idle connections small.
//! TCP implements it directly; [`Stream`] implements it over any tokio
//! stream (TLS, WebSocket), which has no readiness of its own.

use std::future::{Future, poll_fn};
use std::io;
use std::pin::{Pin, pin};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, Interest, ReadBuf};
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
    /// Whether the stream holds bytes it took but has not pushed out yet
    /// (TLS records, WebSocket frames): the connection then waits for
    /// write readiness, which flushes them, even with nothing of its own to
    /// write.
    fn has_pending_output(&self) -> bool {
        false
    }

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

/// Bytes a readiness poll of a [`Stream`] reads ahead (on the stack; kept
/// only when something was read).
const READ_AHEAD: usize = 2 * 1024;

/// An async byte stream (TLS, WebSocket, or both) as a [`Transport`].
///
/// Such a stream can only tell it is readable by reading, and may hold
/// written bytes in its own buffers (TLS records, WebSocket frames) until
/// the socket takes them. So:
/// - `poll_read_ready` reads up to [`READ_AHEAD`] bytes ahead, which
///   `try_read_buf` hands out first;
/// - `try_read_buf` and `try_write` poll once with a no-op waker and answer
///   `WouldBlock` where the stream is pending. The connection task always
///   polls `poll_read_ready` (while it wants input) or `poll_write_ready`
///   (while it has output) before it sleeps, and both poll the stream
///   itself with the task's waker, which replaces the no-op one, so no
///   wake-up is lost;
/// - a write the stream took but could not push out (`unflushed`) is
///   flushed by both readiness polls, with the task's waker, so it goes
///   out even when the connection's own output buffer is empty
///   ([`Transport::has_pending_output`] makes the connection wait for
///   write readiness then, also while it does not read);
/// - `poll_write_ready` flushes: for TLS and WebSocket streams, a write is
///   pending only while their buffered bytes cannot go out, which is
///   exactly when a flush is pending too.
///
/// The lock is never contended (one connection task owns the stream); it
/// only lets the `&self` methods reach the stream.
pub(crate) struct Stream<S> {
    inner: Mutex<Inner<S>>,
}

struct Inner<S> {
    io: S,
    /// What `poll_read_ready` read, for the next reads (no capacity when
    /// empty: an idle connection holds no buffer).
    ahead: BytesMut,
    /// The stream reported end of file.
    eof: bool,
    /// A read error seen after bytes that were handed out first; reported
    /// by the next read.
    error: Option<io::Error>,
    /// The stream took bytes it has not pushed out yet.
    unflushed: bool,
}

impl<S> Stream<S> {
    pub(crate) fn new(io: S) -> Self {
        Stream {
            inner: Mutex::new(Inner {
                io,
                ahead: BytesMut::new(),
                eof: false,
                error: None,
                unflushed: false,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner<S>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the stream holds written bytes it could not push out yet.
    #[cfg(test)]
    pub(crate) fn is_unflushed(&self) -> bool {
        self.lock().unflushed
    }
}

impl<S: AsyncWrite + Unpin> Inner<S> {
    /// Flushes with `cx`; `Err` only for a stream error.
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.io).poll_flush(cx);
        match &r {
            Poll::Ready(Ok(())) => self.unflushed = false,
            Poll::Ready(Err(_)) | Poll::Pending => self.unflushed = true,
        }
        r
    }
}

impl<S> Transport for Stream<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    fn has_pending_output(&self) -> bool {
        self.lock().unflushed
    }

    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        if inner.unflushed {
            if let Poll::Ready(Err(e)) = inner.poll_flush(cx) {
                return Poll::Ready(Err(e));
            }
        }
        if !inner.ahead.is_empty() || inner.eof || inner.error.is_some() {
            return Poll::Ready(Ok(()));
        }
        let mut chunk = [0u8; READ_AHEAD];
        let mut chunk = ReadBuf::new(&mut chunk);
        match Pin::new(&mut inner.io).poll_read(cx, &mut chunk) {
            Poll::Ready(Ok(())) => {
                if chunk.filled().is_empty() {
                    inner.eof = true;
                } else {
                    inner.ahead.extend_from_slice(chunk.filled());
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    fn try_read_buf(&self, buf: &mut BytesMut) -> io::Result<usize> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let room = buf.capacity() - buf.len();
        let mut got = 0;
        if !inner.ahead.is_empty() {
            got = inner.ahead.len().min(room);
            buf.extend_from_slice(&inner.ahead[..got]);
            if got == inner.ahead.len() {
                inner.ahead = BytesMut::new();
            } else {
                inner.ahead.advance(got);
            }
            if got == room {
                return Ok(got);
            }
        }
        if let Some(e) = inner.error.take() {
            return if got > 0 {
                inner.error = Some(e);
                Ok(got)
            } else {
                Err(e)
            };
        }
        if inner.eof {
            return Ok(got);
        }
        // More may be there already (a TLS record holds more than was read
        // ahead): one read that does not wait.
        let mut cx = Context::from_waker(Waker::noop());
        let read = pin!(inner.io.read_buf(buf)).poll(&mut cx);
        match read {
            Poll::Ready(Ok(0)) => {
                inner.eof = true;
                Ok(got)
            }
            Poll::Ready(Ok(n)) => Ok(got + n),
            Poll::Ready(Err(e)) if got > 0 => {
                inner.error = Some(e);
                Ok(got)
            }
            Poll::Ready(Err(e)) => Err(e),
            Poll::Pending if got > 0 => Ok(got),
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.lock().poll_flush(cx)
    }

    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let mut cx = Context::from_waker(Waker::noop());
        match Pin::new(&mut inner.io).poll_write(&mut cx, buf) {
            Poll::Ready(Ok(n)) => {
                // Push it out now if the socket takes it; if not (or on an
                // error), the readiness polls flush, or report the error.
                let _ = inner.poll_flush(&mut cx);
                Ok(n)
            }
            Poll::Ready(Err(e)) => Err(e),
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        let inner = self.inner.get_mut().unwrap_or_else(PoisonError::into_inner);
        // Flushes first (TLS and WebSocket streams send what they hold,
        // then their close message), then ends the socket's writing side.
        AsyncWriteExt::shutdown(&mut inner.io).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    const PATIENCE: Duration = Duration::from_secs(5);

    async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
        tokio::time::timeout(PATIENCE, fut)
            .await
            .unwrap_or_else(|_| panic!("timed out: {what}"))
    }

    /// Reads what is there now (after a readiness poll), as the
    /// connection's `read_some` does.
    fn drain(stream: &impl Transport, out: &mut Vec<u8>) -> io::Result<bool> {
        let mut buf = BytesMut::with_capacity(1000);
        loop {
            buf.clear();
            match stream.try_read_buf(&mut buf) {
                Ok(0) => return Ok(false),
                Ok(_) => out.extend_from_slice(&buf),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                Err(e) => return Err(e),
            }
        }
    }

    #[tokio::test]
    async fn reads_what_is_sent_then_eof() {
        let (a, mut peer) = tokio::io::duplex(64 * 1024);
        let stream = Stream::new(a);
        // Nothing yet: WouldBlock, and nothing is held.
        let mut buf = BytesMut::with_capacity(100);
        let e = stream.try_read_buf(&mut buf).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        assert_eq!(stream.lock().ahead.capacity(), 0);

        let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        peer.write_all(&data).await.unwrap();
        let mut got = Vec::new();
        while got.len() < data.len() {
            within("readable", stream.readable()).await.unwrap();
            assert!(drain(&stream, &mut got).unwrap());
        }
        assert_eq!(got, data);
        // Drained: no buffer kept.
        assert_eq!(stream.lock().ahead.capacity(), 0);

        drop(peer);
        within("eof", stream.readable()).await.unwrap();
        assert!(!drain(&stream, &mut got).unwrap(), "end of file");
        // And again.
        within("eof again", stream.readable()).await.unwrap();
        assert_eq!(stream.try_read_buf(&mut buf).unwrap(), 0);
    }

    /// A reader that polled with the no-op waker (nothing there) and then
    /// waits with its own is woken by data arriving later.
    #[tokio::test]
    async fn no_wakeup_is_lost_after_a_noop_poll() {
        let (a, mut peer) = tokio::io::duplex(1024);
        let stream = Arc::new(Stream::new(a));
        for round in 0..20u8 {
            let mut buf = BytesMut::with_capacity(64);
            assert_eq!(
                stream.try_read_buf(&mut buf).unwrap_err().kind(),
                io::ErrorKind::WouldBlock
            );
            let waiter = tokio::spawn({
                let stream = stream.clone();
                async move {
                    stream.readable().await.unwrap();
                    let mut got = Vec::new();
                    drain(&*stream, &mut got).unwrap();
                    got
                }
            });
            tokio::time::sleep(Duration::from_millis(5)).await;
            peer.write_all(&[round]).await.unwrap();
            assert_eq!(within("woken", waiter).await.unwrap(), [round]);
        }
    }

    #[tokio::test]
    async fn writes_reach_the_peer_and_shutdown_ends_them() {
        let (a, mut peer) = tokio::io::duplex(64 * 1024);
        let mut stream = Stream::new(a);
        within("writable", stream.writable()).await.unwrap();
        assert_eq!(stream.try_write(b"hello").unwrap(), 5);
        stream.shutdown().await.unwrap();
        let mut got = Vec::new();
        peer.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"hello");
    }
}
