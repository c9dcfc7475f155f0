//! MQTT over WebSocket (`ws` and `wss` listeners; tokio-tungstenite): the
//! HTTP upgrade on the listener's path with the `mqtt` subprotocol, then
//! [`WsStream`], a byte stream over binary messages. MQTT packets may span
//! messages and a message may hold several packets: the messages are only
//! the carrier of one byte stream in each direction.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use futures_sink::Sink;
use futures_util::Stream as _;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::{CapacityError, ProtocolError};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode, header};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// Subprotocols accepted, by preference: `mqtt` (MQTT 3.1.1 and 5), and
/// `mqttv3.1`, which some MQTT 3.1 clients offer instead.
const SUBPROTOCOLS: [&str; 2] = ["mqtt", "mqttv3.1"];

/// Read buffer of a WebSocket connection (held for its whole life, so
/// kept small; larger messages grow it while they are read).
const READ_BUFFER: usize = 4 * 1024;

/// Largest message the broker sends: longer writes go out as several.
const MAX_OUT_MESSAGE: usize = 64 * 1024;

/// Smallest limit on an incoming message or frame: a message may carry
/// several small packets.
const MIN_IN_MESSAGE: usize = 64 * 1024;

/// Control messages (pings, pongs) handled in one read before yielding to
/// other tasks.
const CONTROL_BUDGET: u32 = 32;

/// Runs the WebSocket upgrade on an accepted stream (TCP, or TLS for
/// `wss`; the caller bounds its time). Refuses, with an HTTP error, a
/// request for another path than `path` (404) or one that does not offer
/// the `mqtt` subprotocol (400). Incoming messages and frames are limited
/// to `max_packet_size` (at least 64 KiB).
pub(crate) async fn accept<S>(
    stream: S,
    path: &str,
    max_packet_size: u32,
) -> io::Result<WsStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let limit = usize::try_from(max_packet_size)
        .unwrap_or(usize::MAX)
        .max(MIN_IN_MESSAGE);
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        // Each write goes out at once: the connection batches its output.
        .write_buffer_size(0)
        .max_message_size(Some(limit))
        .max_frame_size(Some(limit));
    #[allow(
        clippy::result_large_err,
        reason = "the error is tungstenite's HTTP response, once per connection"
    )]
    let callback = |request: &Request, response: Response| upgrade(request, response, path);
    let ws = tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(config))
        .await
        .map_err(|e| match e {
            WsError::Http(response) => {
                io::Error::other(format!("WebSocket upgrade refused: {}", response.status()))
            }
            e => to_io(e),
        })?;
    Ok(WsStream {
        ws,
        read: Bytes::new(),
        closing: false,
    })
}

/// Checks an upgrade request and picks the subprotocol.
#[allow(
    clippy::result_large_err,
    reason = "tungstenite's callback signature: the error is the HTTP response"
)]
fn upgrade(
    request: &Request,
    mut response: Response,
    path: &str,
) -> Result<Response, ErrorResponse> {
    if request.uri().path() != path {
        return Err(refusal(
            StatusCode::NOT_FOUND,
            format!("no MQTT WebSocket endpoint here; use {path}\n"),
        ));
    }
    let offered: Vec<&str> = request
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let Some(chosen) = SUBPROTOCOLS
        .iter()
        .find(|p| offered.iter().any(|o| o.eq_ignore_ascii_case(p)))
    else {
        return Err(refusal(
            StatusCode::BAD_REQUEST,
            "MQTT over WebSocket needs the \"mqtt\" subprotocol (Sec-WebSocket-Protocol: mqtt)\n"
                .into(),
        ));
    };
    response.headers_mut().insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(chosen),
    );
    Ok(response)
}

fn refusal(status: StatusCode, body: String) -> ErrorResponse {
    let mut response = ErrorResponse::new(None);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    *response.body_mut() = Some(body);
    response
}

/// A WebSocket connection as a byte stream: reads return the payloads of
/// binary messages in order; each write is sent as one binary message.
/// A text message is an error (MQTT over WebSocket is binary only); pings
/// are answered; a close message is answered and reads as end of file.
pub(crate) struct WsStream<S> {
    ws: WebSocketStream<S>,
    /// What is left of the last binary message.
    read: Bytes,
    /// The client closed: the reply is being sent, then reads end.
    closing: bool,
}

/// A WebSocket error as an IO error.
fn to_io(e: WsError) -> io::Error {
    match e {
        WsError::Io(e) => e,
        WsError::ConnectionClosed | WsError::AlreadyClosed => io::ErrorKind::NotConnected.into(),
        e @ (WsError::Capacity(_) | WsError::Protocol(_) | WsError::Utf8(_)) => {
            io::Error::new(io::ErrorKind::InvalidData, e.to_string())
        }
        e => io::Error::other(e.to_string()),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let mut control = 0;
        loop {
            if !this.read.is_empty() {
                let n = this.read.len().min(buf.remaining());
                buf.put_slice(&this.read.split_to(n));
                return Poll::Ready(Ok(()));
            }
            if this.closing {
                // Send the reply to the client's close before the end of
                // file ends the connection (which then closes TCP, as the
                // server should). Errors: the connection is ending anyway.
                let _ = ready!(Pin::new(&mut this.ws).poll_flush(cx));
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut this.ws).poll_next(cx)) {
                // Closed (after the close handshake) or the TCP connection
                // ended without one: both are the end of the stream.
                None
                | Some(Err(WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake))) => {
                    return Poll::Ready(Ok(()));
                }
                Some(Ok(Message::Binary(data))) => this.read = data,
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "text message on an MQTT WebSocket (MQTT needs binary messages)",
                    )));
                }
                Some(Ok(Message::Close(_))) => this.closing = true,
                // Pings are answered by tungstenite (flushed on the next
                // read or write); pongs need nothing.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {
                    control += 1;
                    if control >= CONTROL_BUDGET {
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                }
                Some(Err(WsError::Capacity(CapacityError::MessageTooLong { size, max_size }))) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("WebSocket message of {size} bytes is over the limit ({max_size})"),
                    )));
                }
                Some(Err(e)) => return Poll::Ready(Err(to_io(e))),
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        // Pending while an earlier message is still being written out.
        ready!(Pin::new(&mut this.ws).poll_ready(cx)).map_err(to_io)?;
        let n = buf.len().min(MAX_OUT_MESSAGE);
        Pin::new(&mut this.ws)
            .start_send(Message::Binary(Bytes::copy_from_slice(&buf[..n])))
            .map_err(to_io)?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().ws)
            .poll_flush(cx)
            .map_err(to_io)
    }

    /// Sends a close message, then ends the underlying stream.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // An error here (already closed, connection gone) still ends with
        // shutting the stream down.
        let _ = ready!(Pin::new(&mut this.ws).poll_close(cx));
        Pin::new(this.ws.get_mut()).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures_util::StreamExt as _;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    use super::*;

    type Client = WebSocketStream<DuplexStream>;

    /// A broker-side [`WsStream`] and a tungstenite client on a pipe.
    async fn pair(
        protocol: Option<&str>,
        path: &str,
    ) -> (io::Result<WsStream<DuplexStream>>, Option<Client>) {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let mut request = format!("ws://localhost{path}")
            .into_client_request()
            .unwrap();
        if let Some(p) = protocol {
            request.headers_mut().insert(
                header::SEC_WEBSOCKET_PROTOCOL,
                HeaderValue::from_str(p).unwrap(),
            );
        }
        let (server, client) = tokio::join!(
            accept(a, "/mqtt", 1024),
            tokio_tungstenite::client_async(request, b)
        );
        (
            server,
            client.ok().map(|(c, response)| {
                if protocol.is_some() {
                    assert!(
                        response
                            .headers()
                            .get(header::SEC_WEBSOCKET_PROTOCOL)
                            .is_some()
                    );
                }
                c
            }),
        )
    }

    async fn next_binary(client: &mut Client) -> Vec<u8> {
        loop {
            match tokio::time::timeout(Duration::from_secs(5), client.next()).await {
                Ok(Some(Ok(Message::Binary(b)))) => return b.to_vec(),
                Ok(Some(Ok(_))) => {}
                other => panic!("expected a binary message, got {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn bytes_flow_both_ways_across_message_boundaries() {
        let (server, client) = pair(Some("mqtt"), "/mqtt").await;
        let mut server = server.unwrap();
        let mut client = client.unwrap();
        // Several messages read as one stream, in small reads too.
        futures_util::SinkExt::send(&mut client, Message::Binary(Bytes::from_static(b"abc")))
            .await
            .unwrap();
        futures_util::SinkExt::send(&mut client, Message::Binary(Bytes::from_static(b"defgh")))
            .await
            .unwrap();
        let mut got = [0u8; 8];
        server.read_exact(&mut got[..2]).await.unwrap();
        server.read_exact(&mut got[2..]).await.unwrap();
        assert_eq!(&got, b"abcdefgh");
        // Each write is one binary message; long ones are split.
        server.write_all(b"hello").await.unwrap();
        server.flush().await.unwrap();
        assert_eq!(next_binary(&mut client).await, b"hello");
        let big = vec![7u8; MAX_OUT_MESSAGE + 10];
        let writer = async {
            server.write_all(&big).await.unwrap();
            server.flush().await.unwrap();
            server
        };
        let reader = async {
            let mut all = next_binary(&mut client).await;
            assert_eq!(all.len(), MAX_OUT_MESSAGE);
            all.extend(next_binary(&mut client).await);
            all
        };
        let (mut server, all) = tokio::join!(writer, reader);
        assert_eq!(all, big);
        // Pings are answered while reading.
        futures_util::SinkExt::send(&mut client, Message::Ping(Bytes::from_static(b"p")))
            .await
            .unwrap();
        futures_util::SinkExt::send(&mut client, Message::Binary(Bytes::from_static(b"x")))
            .await
            .unwrap();
        let mut one = [0u8; 1];
        server.read_exact(&mut one).await.unwrap();
        assert_eq!(&one, b"x");
        match tokio::time::timeout(Duration::from_secs(5), client.next()).await {
            Ok(Some(Ok(Message::Pong(p)))) => assert_eq!(&p[..], b"p"),
            other => panic!("expected a pong, got {other:?}"),
        }
        // A close reads as end of file, after the reply is sent.
        futures_util::SinkExt::send(&mut client, Message::Close(None))
            .await
            .unwrap();
        let mut rest = Vec::new();
        server.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
        match tokio::time::timeout(Duration::from_secs(5), client.next()).await {
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) => {}
            other => panic!("expected the close reply, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn text_messages_are_an_error() {
        let (server, client) = pair(Some("mqtt"), "/mqtt").await;
        let mut server = server.unwrap();
        let mut client = client.unwrap();
        futures_util::SinkExt::send(&mut client, Message::Text("hello".into()))
            .await
            .unwrap();
        let mut buf = [0u8; 16];
        let e = server.read(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }

    #[tokio::test]
    async fn oversized_messages_are_an_error() {
        let (server, client) = pair(Some("mqtt"), "/mqtt").await;
        let mut server = server.unwrap();
        let mut client = client.unwrap();
        let big = Bytes::from(vec![0u8; MIN_IN_MESSAGE + 1]);
        // The broker stops reading at the frame header: the rest of the
        // message may never leave the client.
        let sender = tokio::spawn(async move {
            let _ = futures_util::SinkExt::send(&mut client, Message::Binary(big)).await;
            client
        });
        let mut buf = [0u8; 16];
        let e = server.read(&mut buf).await.unwrap_err();
        sender.abort();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("over the limit"), "{e}");
    }

    #[tokio::test]
    async fn subprotocols_and_paths() {
        // Several offered, in one header: mqtt is picked.
        let (server, client) = pair(Some("wamp, mqtt"), "/mqtt").await;
        assert!(server.is_ok() && client.is_some());
        let (server, client) = pair(Some("mqttv3.1"), "/mqtt").await;
        assert!(server.is_ok() && client.is_some());

        let (server, client) = pair(None, "/mqtt").await;
        let e = server.err().expect("refused");
        assert!(e.to_string().contains("400"), "{e}");
        assert!(client.is_none());

        let (server, client) = pair(Some("mqtt"), "/other").await;
        let e = server.err().expect("refused");
        assert!(e.to_string().contains("404"), "{e}");
        assert!(client.is_none());

        // A query string does not change the path.
        let (server, client) = pair(Some("mqtt"), "/mqtt?token=1").await;
        assert!(server.is_ok() && client.is_some());
    }

    #[tokio::test]
    async fn shutdown_sends_a_close() {
        let (server, client) = pair(Some("mqtt"), "/mqtt").await;
        let mut server = server.unwrap();
        let mut client = client.unwrap();
        server.write_all(b"bye").await.unwrap();
        server.shutdown().await.unwrap();
        assert_eq!(next_binary(&mut client).await, b"bye");
        match tokio::time::timeout(Duration::from_secs(5), client.next()).await {
            Ok(Some(Ok(Message::Close(_)))) => {}
            other => panic!("expected a close, got {other:?}"),
        }
    }
    /// The connection's transport over a WebSocket: what it relies on when
    /// the socket is slower than the broker.
    mod as_transport {
        use std::sync::Arc;

        use bytes::BytesMut;

        use super::*;
        use crate::connection::{Stream, Transport};

        async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
            tokio::time::timeout(Duration::from_secs(5), fut)
                .await
                .unwrap_or_else(|_| panic!("timed out: {what}"))
        }

        /// The broker's side as a [`Stream`] and a tungstenite client, on
        /// a pipe of `pipe` bytes.
        async fn ws_pair(pipe: usize) -> (Stream<WsStream<DuplexStream>>, Client) {
            let (a, b) = tokio::io::duplex(pipe);
            let mut request = "ws://localhost/mqtt".into_client_request().unwrap();
            request.headers_mut().insert(
                header::SEC_WEBSOCKET_PROTOCOL,
                HeaderValue::from_static("mqtt"),
            );
            let (server, client) = tokio::join!(
                accept(a, "/mqtt", 1 << 20),
                tokio_tungstenite::client_async(request, b)
            );
            (Stream::new(server.unwrap()), client.unwrap().0)
        }

        /// Bytes the WebSocket took but could not send (the pipe was full)
        /// go out once the peer reads, though the connection only waits to
        /// read (its own output buffer is empty).
        #[tokio::test]
        async fn buffered_output_is_flushed_while_waiting_to_read() {
            let (stream, mut client) = ws_pair(4096).await;
            let stream = Arc::new(stream);
            let mut written = 0;
            let chunk = [5u8; 1000];
            loop {
                match stream.try_write(&chunk) {
                    Ok(n) => written += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => panic!("{e}"),
                }
            }
            assert!(stream.is_unflushed(), "the last write is still buffered");
            let idle = tokio::spawn({
                let stream = stream.clone();
                async move {
                    let _ = stream.readable().await;
                }
            });
            let mut received = 0;
            while received < written {
                match within("client reads", client.next()).await {
                    Some(Ok(Message::Binary(b))) => received += b.len(),
                    other => panic!("unexpected {other:?}"),
                }
            }
            assert_eq!(received, written);
            idle.abort();
        }

        /// A writer that got WouldBlock waits in `writable` and is woken
        /// when the peer reads; input arrives in between.
        #[tokio::test]
        async fn blocked_writer_is_woken_when_the_peer_reads() {
            let (stream, mut client) = ws_pair(4096).await;
            let stream = Arc::new(stream);
            let total = 200_000;
            let writer = tokio::spawn({
                let stream = stream.clone();
                async move {
                    let data = vec![9u8; total];
                    let mut sent = 0;
                    while sent < data.len() {
                        stream.writable().await.unwrap();
                        match stream.try_write(&data[sent..]) {
                            Ok(n) => sent += n,
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                            Err(e) => panic!("{e}"),
                        }
                    }
                    // Output done: input is waited for, as when idle.
                    stream.readable().await.unwrap();
                    let mut buf = BytesMut::with_capacity(64);
                    stream.try_read_buf(&mut buf).unwrap();
                    buf
                }
            });
            let mut received = 0;
            while received < total {
                match within("client reads", client.next()).await {
                    Some(Ok(Message::Binary(b))) => received += b.len(),
                    other => panic!("unexpected {other:?}"),
                }
            }
            assert_eq!(received, total);
            futures_util::SinkExt::send(&mut client, Message::Binary(Bytes::from_static(b"in")))
                .await
                .unwrap();
            assert_eq!(&within("writer reads", writer).await.unwrap()[..], b"in");
        }
    }
}
