//! MQTT 5 enhanced authentication and re-authentication through the
//! `challenge` plugin (HMAC challenge-response).

use super::*;

/// AUTH packets for the enhanced-authentication tests.
fn auth_packet(reason: u8, method: &str, data: Option<&[u8]>) -> Vec<u8> {
    let mut buf = BytesMut::new();
    sluice_broker::codec::encode_auth(
        &mut buf,
        &sluice_broker::codec::Auth {
            reason: sluice_broker::reason::ReasonCode(reason),
            method: Some(method.into()),
            data: data.map(bytes::Bytes::copy_from_slice),
            ..Default::default()
        },
    );
    buf.to_vec()
}

/// (reason, method, data) of an AUTH frame.
fn parse_auth(f: &crate::support::raw::Frame) -> (u8, Option<String>, Option<Vec<u8>>) {
    assert_eq!(f.kind(), 15, "expected AUTH, got {f:?}");
    let reason = f.body[0];
    let (n, len) = crate::support::raw::varint(&f.body[1..]);
    let mut props = &f.body[1 + n..1 + n + len];
    let (mut method, mut data) = (None, None);
    while let Some((&id, rest)) = props.split_first() {
        let l = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        let value = &rest[2..2 + l];
        match id {
            0x15 => method = Some(String::from_utf8_lossy(value).into_owned()),
            0x16 => data = Some(value.to_vec()),
            _ => {}
        }
        props = &rest[2 + l..];
    }
    (reason, method, data)
}

fn hmac(secret: &[u8], nonce: &[u8]) -> Vec<u8> {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).expect("any key size");
    mac.update(nonce);
    mac.finalize().into_bytes().to_vec()
}

const METHOD: &str = "SLUICE-HMAC-SHA256";

#[tokio::test]
async fn enhanced_authentication_challenge_response_and_reauth() {
    let dir = PluginDir::new();
    dir.add("challenge", "challenge");
    let broker = broker_with(&dir, |c| {
        plugin_config(c, "challenge", &[("secret", "s3cret")])
    });
    let connect = connect_v5("hmac", true, 60, |p| {
        p.authentication_method = Some(METHOD.into())
    });

    // Right answer.
    let mut raw = Raw::connect(broker.addr).await;
    raw.send(&connect).await;
    let (reason, method, nonce) = parse_auth(&raw.recv().await);
    assert_eq!((reason, method.as_deref()), (0x18, Some(METHOD)));
    let nonce = nonce.expect("nonce");
    assert_eq!(nonce.len(), 16);
    raw.send(&auth_packet(0x18, METHOD, Some(&hmac(b"s3cret", &nonce))))
        .await;
    let ack = raw.recv().await.connack_v5();
    assert_eq!(ack.code as u8, 0);
    let props = ack.properties.expect("properties");
    assert_eq!(props.authentication_method.as_deref(), Some(METHOD));
    assert_eq!(props.authentication_data.as_deref(), Some(&b"welcome"[..]));
    assert_eq!(
        broker
            .ctx
            .plugins
            .kv_get("challenge", "registered/hmac")
            .as_deref(),
        Some(&b"yes"[..]),
        "auth-on-register-m5 ran after the exchange"
    );

    // Re-authentication on the live connection.
    raw.send(&auth_packet(0x19, METHOD, None)).await;
    let (reason, _, nonce) = parse_auth(&raw.recv().await);
    assert_eq!(reason, 0x18);
    raw.send(&auth_packet(
        0x18,
        METHOD,
        Some(&hmac(b"s3cret", &nonce.expect("nonce"))),
    ))
    .await;
    let (reason, _, data) = parse_auth(&raw.recv().await);
    assert_eq!((reason, data.as_deref()), (0x00, Some(&b"welcome"[..])));
    // A failed re-authentication ends the connection.
    raw.send(&auth_packet(0x19, METHOD, None)).await;
    parse_auth(&raw.recv().await);
    raw.send(&auth_packet(0x18, METHOD, Some(b"wrong"))).await;
    // The plugin's 0x86 cannot end a connection (it is a CONNACK code):
    // DISCONNECT says 0x87 "not authorized".
    assert_eq!(
        raw.expect_closed()
            .await
            .last()
            .map(|f| f.disconnect_reason()),
        Some(0x87)
    );

    // Wrong answer at CONNECT.
    let mut raw = Raw::connect(broker.addr).await;
    raw.send(&connect).await;
    parse_auth(&raw.recv().await);
    raw.send(&auth_packet(0x18, METHOD, Some(b"guess"))).await;
    assert_eq!(raw.expect_closed().await[0].connack().1, 0x86);

    // The method must not change.
    let mut raw = Raw::connect(broker.addr).await;
    raw.send(&connect).await;
    parse_auth(&raw.recv().await);
    raw.send(&auth_packet(0x18, "OTHER", Some(b"x"))).await;
    assert_eq!(raw.expect_closed().await[0].connack().1, 0x82);

    // A method no plugin handles.
    let (_, ack) = connack(
        &broker,
        &connect_v5("nomethod", true, 60, |p| {
            p.authentication_method = Some("KERBEROS".into())
        }),
    )
    .await;
    assert_eq!(ack.connack().1, 0x8C);
}
