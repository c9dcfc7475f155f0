//! The end of a connection: the session handed back first, then the
//! goodbye (DISCONNECT for MQTT 5 where the broker closes), the last
//! bytes flushed and the socket closed without a reset, each bounded in
//! time.

use super::*;

/// How long a closing connection may take to flush its last bytes.
pub(super) const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the broker, closing a connection, keeps reading (and
/// discarding) what the client still sends, and how much of it: enough for
/// the client to read the reason code before the socket closes (closing
/// with unread input makes the kernel reset the connection, and the reset
/// can overtake the last bytes).
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 1 << 20;

impl Connection {
    /// Ends the connection: hands the session back to the registry (which
    /// parks its state, publishes or schedules the Will, and lets a
    /// connection waiting to take it over have it), then says goodbye
    /// (DISCONNECT for MQTT 5 where the broker closes), flushes and closes,
    /// each step bounded in time. The session is released before the
    /// socket is done with, so a client that stopped reading delays no
    /// takeover.
    pub(super) async fn finish<T: Transport>(mut self: Box<Self>, stream: &mut T, close: Close) {
        let client = self.session.id().clone();
        let mut reason_string = None;
        let reason = match &close {
            Close::Server {
                reason,
                detail,
                reason_string: text,
            } => {
                tracing::info!(client = %client, peer = %self.peer, reason = %reason, "closing connection: {detail}");
                reason_string = text.clone();
                Some(*reason)
            }
            Close::TakenOver => {
                tracing::info!(client = %client, peer = %self.peer, "session taken over by a new connection");
                Some(ReasonCode::SESSION_TAKEN_OVER)
            }
            Close::Shutdown => {
                // Send what is queued before saying goodbye.
                let _ = if self.ctx.plugins.rewrites_deliveries() {
                    self.fill_outgoing_rewritten().await
                } else {
                    self.fill_outgoing()
                };
                Some(ReasonCode::SERVER_SHUTTING_DOWN)
            }
            Close::ClientDisconnect { .. } => {
                tracing::debug!(client = %client, "client disconnected");
                None
            }
            Close::Io(e) => {
                tracing::debug!(client = %client, "connection lost: {e}");
                None
            }
        };
        if let (Some(reason), ProtocolVersion::V5) = (reason, self.neg.version) {
            let mut goodbye = Disconnect {
                reason,
                reason_string,
                ..Disconnect::default()
            };
            encode_within(
                &mut self.out,
                self.neg.client_max_packet,
                &mut goodbye,
                codec::encode_disconnect,
                |d| d.reason_string = None,
            );
        }
        self.flush_stats();
        let will = if close.publishes_will() {
            self.neg.will.take().map(|w| *w)
        } else {
            None
        };
        let departure = Departure {
            inflight: std::mem::take(&mut self.inflight),
            will,
            expiry_interval: self.neg.session_expiry,
        };
        self.ctx.registry.detach(&self.session, departure);
        self.finished = true;
        self.ctx.registry.release(&self.session);

        if matches!(close, Close::ClientDisconnect { .. } | Close::Io(_)) {
            // The client ended it: dropping the socket closes it.
            return;
        }
        let _ = tokio::time::timeout(FLUSH_TIMEOUT, write_all(&*stream, &self.out)).await;
        close_gracefully(stream).await;
    }
}

/// Encodes `packet` into `out` with its optional properties (reason
/// string, user properties: often a plugin's) if it then fits `max`, the
/// client's Maximum Packet Size, and otherwise again without them (`strip`
/// removes them): MQTT 5 forbids sending them past the client's limit.
/// Returns whether they were left out.
pub(super) fn encode_within<P>(
    out: &mut BytesMut,
    max: u32,
    packet: &mut P,
    encode: impl Fn(&mut BytesMut, &P),
    strip: impl FnOnce(&mut P),
) -> bool {
    let start = out.len();
    encode(out, packet);
    if u32::try_from(out.len() - start).unwrap_or(u32::MAX) <= max {
        return false;
    }
    out.truncate(start);
    strip(packet);
    encode(out, packet);
    true
}

/// Writes all of `bytes`, waiting for the socket as needed.
pub(super) async fn write_all<T: Transport>(stream: &T, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        stream.writable().await?;
        match stream.try_write(bytes) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The broker's side of closing a connection it ends (after a DISCONNECT
/// or a refused CONNECT): half-close after the last bytes, then read and
/// discard what the client still sends for a short, bounded time (or until
/// it closes too), so the client reads those bytes instead of a reset.
pub(super) async fn close_gracefully<T: Transport>(stream: &mut T) {
    let _ = tokio::time::timeout(FLUSH_TIMEOUT, stream.shutdown()).await;
    let _ = tokio::time::timeout(LINGER, async {
        let mut scratch = BytesMut::with_capacity(8 * 1024);
        let mut discarded = 0;
        while discarded < LINGER_BYTES {
            if stream.readable().await.is_err() {
                return;
            }
            scratch.clear();
            match stream.try_read_buf(&mut scratch) {
                // The client closed its side too.
                Ok(0) => return,
                Ok(n) => discarded += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
    })
    .await;
}
