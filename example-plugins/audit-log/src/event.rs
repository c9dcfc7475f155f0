//! The audit events and their JSON form (no SDK calls: unit-tested on the
//! host).

use serde_json::{Value, json};
use sluice_plugin_sdk::{Peer, SubscriberId};

/// One audit event.
pub enum Event<'a> {
    Connected {
        id: &'a SubscriberId,
        username: Option<&'a str>,
        peer: &'a Peer,
    },
    Disconnected {
        id: &'a SubscriberId,
        /// The session stays for the client's return.
        session_kept: bool,
    },
}

impl Event<'_> {
    /// The last topic level of the event.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Connected { .. } => "connected",
            Event::Disconnected { .. } => "disconnected",
        }
    }

    /// The message body.
    pub fn json(&self) -> String {
        let id =
            |id: &SubscriberId| -> (Value, Value) { (json!(id.client_id), json!(id.mountpoint)) };
        let body = match self {
            Event::Connected {
                id: i,
                username,
                peer,
            } => {
                let (client_id, mountpoint) = id(i);
                json!({
                    "event": self.kind(),
                    "client_id": client_id,
                    "mountpoint": mountpoint,
                    "username": username,
                    "peer": format!("{}:{}", peer.addr, peer.port),
                })
            }
            Event::Disconnected {
                id: i,
                session_kept,
            } => {
                let (client_id, mountpoint) = id(i);
                json!({
                    "event": self.kind(),
                    "client_id": client_id,
                    "mountpoint": mountpoint,
                    "session_kept": session_kept,
                })
            }
        };
        body.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> SubscriberId {
        SubscriberId {
            mountpoint: String::new(),
            client_id: "dev \"1\"".into(),
        }
    }

    #[test]
    fn connected_carries_who_and_from_where() {
        let peer = Peer {
            addr: "::1".into(),
            port: 5000,
        };
        let e = Event::Connected {
            id: &id(),
            username: Some("ann"),
            peer: &peer,
        };
        assert_eq!(e.kind(), "connected");
        let v: Value = serde_json::from_str(&e.json()).unwrap();
        assert_eq!(v["client_id"], "dev \"1\"");
        assert_eq!(v["username"], "ann");
        assert_eq!(v["peer"], "::1:5000");
    }

    #[test]
    fn disconnected_says_whether_the_session_stays() {
        let e = Event::Disconnected {
            id: &id(),
            session_kept: false,
        };
        assert_eq!(e.kind(), "disconnected");
        let v: Value = serde_json::from_str(&e.json()).unwrap();
        assert_eq!(v["session_kept"], false);
        assert_eq!(v["username"], Value::Null);
    }
}
