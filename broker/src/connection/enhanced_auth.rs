//! Enhanced authentication during the handshake (MQTT 5 AUTH packets):
//! the exchange with the plugins' `on-auth-m5` chain, bounded in rounds
//! (`limits.max_auth_rounds`) and by the connect timeout.

use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::handshake::{Handshake, Incoming, Refusal, read_packet};
use super::{Transport, write_all};
use crate::codec::{self, Auth, Packet};
use crate::limits::Limit;
use crate::plugins::{AuthOutcome, AuthRequest, AuthStep};
use crate::reason::ReasonCode;
use crate::session::SubscriberId;

impl Handshake<'_> {
    /// Runs an enhanced-authentication exchange (AUTH packets) to its end;
    /// returns the data for CONNACK.
    pub(super) async fn enhanced_auth<T: Transport>(
        &mut self,
        stream: &T,
        id: &SubscriberId,
        method: &str,
    ) -> Result<Option<Vec<u8>>, Refusal> {
        let timeout = Duration::from_secs(u64::from(self.ctx.config.server.connect_timeout_secs));
        let mut step = AuthStep::Connect;
        let mut data = self.connect.properties.authentication_data.clone();
        let max_rounds = self.ctx.config.limits.max_auth_rounds;
        let mut rounds = 0;
        loop {
            let request = AuthRequest {
                conn: self.conn_info,
                id,
                username: self.connect.username.as_deref(),
                step,
                method,
                data: data.as_deref(),
            };
            match self.ctx.plugins.enhanced_auth(&request, false).await {
                AuthOutcome::Success(d) => return Ok(d),
                AuthOutcome::Continue(d) => {
                    let mut buf = BytesMut::new();
                    codec::encode_auth(
                        &mut buf,
                        &Auth {
                            reason: ReasonCode::CONTINUE_AUTHENTICATION,
                            method: Some(method.to_owned()),
                            data: d.map(Bytes::from),
                            ..Auth::default()
                        },
                    );
                    write_all(stream, &buf)
                        .await
                        .map_err(|e| Refusal::new(ReasonCode::UNSPECIFIED_ERROR, e.to_string()))?;
                    let next = tokio::time::timeout(
                        timeout,
                        read_packet(self.ctx, stream, self.rbuf, self.decoder),
                    )
                    .await;
                    let auth = match next {
                        Ok(Incoming::Packet(Packet::Auth(a))) => a,
                        Ok(Incoming::Packet(Packet::Disconnect(_))) | Ok(Incoming::Gone) => {
                            return Err(Refusal::new(
                                ReasonCode::UNSPECIFIED_ERROR,
                                "client left during enhanced authentication",
                            ));
                        }
                        Ok(Incoming::Packet(other)) => {
                            return Err(Refusal::new(
                                ReasonCode::PROTOCOL_ERROR,
                                format!("{} during enhanced authentication", other.name()),
                            ));
                        }
                        Ok(Incoming::Refused(e)) => {
                            return Err(Refusal::new(e.reason_code(), e.to_string()));
                        }
                        Err(_) => {
                            return Err(Refusal::new(
                                ReasonCode::NOT_AUTHORIZED,
                                "enhanced authentication timed out",
                            ));
                        }
                    };
                    if auth.reason != ReasonCode::CONTINUE_AUTHENTICATION
                        || auth.method.as_deref() != Some(method)
                    {
                        return Err(Refusal::new(
                            ReasonCode::PROTOCOL_ERROR,
                            "AUTH must continue authentication with the same method",
                        ));
                    }
                    rounds += 1;
                    if rounds > max_rounds {
                        self.ctx.metrics.limits.hit(
                            Limit::AuthRounds,
                            id,
                            &format_args!("{rounds} AUTH packets at CONNECT"),
                        );
                        return Err(Refusal::new(
                            ReasonCode::QUOTA_EXCEEDED,
                            format!("more than {max_rounds} AUTH rounds (limits.max_auth_rounds)"),
                        ));
                    }
                    step = AuthStep::Continue;
                    data = auth.data;
                }
                AuthOutcome::Refused(r) => {
                    return Err(r.into());
                }
                AuthOutcome::Unhandled => {
                    return Err(Refusal::new(
                        ReasonCode::BAD_AUTHENTICATION_METHOD,
                        format!("no plugin handles authentication method {method:?}"),
                    ));
                }
            }
        }
    }
}
