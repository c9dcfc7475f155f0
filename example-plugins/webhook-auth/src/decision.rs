//! What the HTTP service is asked and what its answers mean (no SDK or
//! WASI calls: unit-tested on the host). The protocol is EMQX's HTTP
//! authentication and authorization: a JSON POST, answered by a JSON body
//! `{"result": "allow" | "deny" | "ignore"}` (204 No Content allows).

use serde_json::{Value, json};

/// What the service decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny(String),
    /// No opinion: the next plugin decides.
    Ignore,
}

/// What a failed call (transport error, timeout, unexpected status or
/// body) counts as: `on_error` in the configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnError {
    Deny,
    Ignore,
}

impl OnError {
    pub fn parse(s: Option<&str>) -> Result<OnError, String> {
        match s {
            None | Some("deny") => Ok(OnError::Deny),
            Some("next") => Ok(OnError::Ignore),
            Some(other) => Err(format!("on_error = {other:?}: use \"deny\" or \"next\"")),
        }
    }

    /// The decision for a failure `why`.
    pub fn decide(self, why: String) -> Decision {
        match self {
            OnError::Deny => Decision::Deny(why),
            OnError::Ignore => Decision::Ignore,
        }
    }
}

/// The decision in a response with `status` and `body`.
pub fn decide(status: u16, body: &[u8], on_error: OnError) -> Decision {
    match status {
        204 => Decision::Allow,
        200..=299 => match serde_json::from_slice::<Value>(body)
            .ok()
            .as_ref()
            .and_then(|v| v.get("result"))
            .and_then(Value::as_str)
        {
            Some("allow") => Decision::Allow,
            Some("deny") => Decision::Deny("denied by the HTTP service".into()),
            Some("ignore") => Decision::Ignore,
            _ => on_error.decide(format!("HTTP service answered {status} without a result")),
        },
        _ => on_error.decide(format!("HTTP service answered {status}")),
    }
}

/// The body of an authentication request.
pub fn register_body(
    client_id: &str,
    mountpoint: &str,
    username: Option<&str>,
    password: Option<&[u8]>,
    peer: &str,
) -> String {
    json!({
        "action": "connect",
        "client_id": client_id,
        "mountpoint": mountpoint,
        "username": username,
        "password": password.map(String::from_utf8_lossy),
        "peer": peer,
    })
    .to_string()
}

/// The body of an authorization request for a PUBLISH.
pub fn publish_body(
    client_id: &str,
    mountpoint: &str,
    username: Option<&str>,
    topic: &str,
    qos: u8,
    retain: bool,
) -> String {
    json!({
        "action": "publish",
        "client_id": client_id,
        "mountpoint": mountpoint,
        "username": username,
        "topic": topic,
        "qos": qos,
        "retain": retain,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_and_statuses() {
        let d = |s, b: &str| decide(s, b.as_bytes(), OnError::Deny);
        assert_eq!(d(200, r#"{"result":"allow"}"#), Decision::Allow);
        assert_eq!(d(204, ""), Decision::Allow);
        assert_eq!(d(200, r#"{"result":"ignore"}"#), Decision::Ignore);
        assert!(matches!(d(200, r#"{"result":"deny"}"#), Decision::Deny(_)));
        assert!(matches!(d(200, "not json"), Decision::Deny(_)));
        assert!(matches!(d(500, r#"{"result":"allow"}"#), Decision::Deny(_)));
        assert_eq!(
            decide(503, b"", OnError::Ignore),
            Decision::Ignore,
            "on_error = next"
        );
    }

    #[test]
    fn bodies_carry_the_request() {
        let v: Value =
            serde_json::from_str(&register_body("c1", "", Some("ann"), Some(b"pw"), "::1:5"))
                .unwrap();
        assert_eq!(
            (v["username"].as_str(), v["password"].as_str()),
            (Some("ann"), Some("pw"))
        );
        let v: Value =
            serde_json::from_str(&publish_body("c1", "m", None, "a/b", 1, true)).unwrap();
        assert_eq!(
            (v["topic"].as_str(), v["qos"].as_u64()),
            (Some("a/b"), Some(1))
        );
        assert_eq!(v["username"], Value::Null);
    }
}
