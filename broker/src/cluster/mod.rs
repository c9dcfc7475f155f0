//! Several Sluice nodes serving one MQTT namespace over NATS (issue 16).
//!
//! Built so far: [`subject`], the reversible mapping of MQTT topics and
//! filters onto NATS subjects that routing by interest rests on. The NATS
//! connection, interest tracking, cluster-wide retained messages and
//! client ids come next; until then nothing here runs in the broker.

#[cfg_attr(
    not(test),
    expect(
        dead_code,
        reason = "used by its tests until the NATS connection that routes with it lands"
    )
)]
pub(crate) mod subject;
