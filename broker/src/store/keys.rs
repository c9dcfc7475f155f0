//! The store's keys, as ordered byte strings.
//!
//! A session's identity is `len(mountpoint) ‖ mountpoint ‖ len(client id)
//! ‖ client id` (lengths as big-endian u16), so that everything of one
//! session shares a prefix and no identity is the prefix of another; its
//! queue entries, incoming QoS 2 ids and subscriptions follow it.

use std::sync::Arc;

use super::records::Malformed;
use crate::session::SubscriberId;
use crate::topic::{ClientId, PacketId};

/// The key prefix of everything belonging to session `id`.
pub(crate) fn id_key(id: &SubscriberId) -> Vec<u8> {
    let mut k = Vec::with_capacity(4 + id.mountpoint.len() + id.client_id.as_str().len());
    put_short(&mut k, id.mountpoint.as_bytes());
    put_short(&mut k, id.client_id.as_str().as_bytes());
    k
}

/// `id_key(id) ‖ n` (queue sequence numbers).
pub(crate) fn seq_key(id_key: &[u8], seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(id_key.len() + 8);
    k.extend_from_slice(id_key);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// `id_key(id) ‖ packet id` (incoming QoS 2).
pub(crate) fn pid_key(id_key: &[u8], pid: PacketId) -> Vec<u8> {
    let mut k = Vec::with_capacity(id_key.len() + 2);
    k.extend_from_slice(id_key);
    k.extend_from_slice(&pid.get().to_be_bytes());
    k
}

/// `id_key(id) ‖ subscription` (as written in SUBSCRIBE).
pub(crate) fn sub_key(id_key: &[u8], subscription: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(id_key.len() + subscription.len());
    k.extend_from_slice(id_key);
    k.extend_from_slice(subscription.as_bytes());
    k
}

/// `len(mountpoint) ‖ mountpoint ‖ topic` (retained messages).
pub(crate) fn retained_key(mountpoint: &str, topic: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + mountpoint.len() + topic.len());
    put_short(&mut k, mountpoint.as_bytes());
    k.extend_from_slice(topic.as_bytes());
    k
}

/// `len(plugin) ‖ plugin ‖ key` (plugin key-value entries).
pub(crate) fn kv_key(plugin: &str, key: &str) -> Vec<u8> {
    retained_key(plugin, key)
}

fn put_short(k: &mut Vec<u8>, s: &[u8]) {
    let len = u16::try_from(s.len()).unwrap_or(u16::MAX);
    k.extend_from_slice(&len.to_be_bytes());
    k.extend_from_slice(&s[..usize::from(len)]);
}

/// Splits a key into a length-prefixed string and the rest.
pub(crate) fn split_short(k: &[u8]) -> Result<(&str, &[u8]), Malformed> {
    let (len, rest) = k.split_first_chunk::<2>().ok_or(Malformed("short key"))?;
    let len = usize::from(u16::from_be_bytes(*len));
    if rest.len() < len {
        return Err(Malformed("short key"));
    }
    let (s, rest) = rest.split_at(len);
    let s = std::str::from_utf8(s).map_err(|_| Malformed("key not UTF-8"))?;
    Ok((s, rest))
}

/// Splits a key into the session identity and the rest.
pub(crate) fn split_id(k: &[u8]) -> Result<(SubscriberId, usize, &[u8]), Malformed> {
    let (mountpoint, rest) = split_short(k)?;
    let (client, rest) = split_short(rest)?;
    let client_id = ClientId::new(client).map_err(|_| Malformed("invalid client id"))?;
    let id = SubscriberId {
        mountpoint: if mountpoint.is_empty() {
            crate::session::default_mountpoint()
        } else {
            Arc::from(mountpoint)
        },
        client_id,
    };
    Ok((id, k.len() - rest.len(), rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_split_back() {
        let id = SubscriberId {
            mountpoint: Arc::from("m/"),
            client_id: ClientId::new("c").unwrap(),
        };
        let key = seq_key(&id_key(&id), 5);
        let (back, at, rest) = split_id(&key).unwrap();
        assert_eq!(back, id);
        assert_eq!(at, key.len() - 8);
        assert_eq!(rest, 5u64.to_be_bytes());
    }
}
