//! The transform itself, independent of the plugin interface (so that it is
//! unit tested on the host): the configuration and the stamping of one
//! JSON payload.

use serde_json::{Map, Value};
use sluice_plugin_sdk::template::Template;
use sluice_plugin_sdk::{FromConfig, Settings, config::invalid};

/// Who receives the message: the values the placeholders stand for.
#[derive(Clone, Copy, Debug)]
pub struct Delivery<'a> {
    pub client_id: &'a str,
    pub username: Option<&'a str>,
    pub mountpoint: &'a str,
    pub topic: &'a str,
}

/// The whole configuration.
#[derive(Debug)]
pub struct Stamp {
    /// Only messages whose topic starts with this are stamped.
    pub prefix: String,
    field: String,
    /// `%c`, `%u`, `%m` and `%t` stand for the subscriber's client id,
    /// username and mountpoint and the topic.
    value: Template,
}

impl FromConfig for Stamp {
    /// An error names the key and what is wrong with it.
    fn from_config(s: &Settings) -> Result<Stamp, String> {
        let prefix = s.get("prefix").unwrap_or_default();
        if prefix.contains(['+', '#']) {
            return Err(invalid(
                "prefix",
                prefix,
                "a topic prefix, not a filter (no '+' or '#')",
            ));
        }
        let field = s
            .require("field")
            .map_err(|e| format!("{e}: the name of the field to add"))?;
        if field.is_empty() {
            return Err(invalid("field", field, "the name of the field to add"));
        }
        let value = s
            .require("value")
            .map_err(|e| format!("{e}: the text to put in the field"))?;
        let stamp = Stamp {
            prefix: prefix.to_owned(),
            field: field.to_owned(),
            value: Template::parse(value, &['c', 'u', 'm', 't'])
                .map_err(|e| invalid("value", value, e))?,
        };
        s.finish()
            .map_err(|e| format!("{e} (keys: prefix, field, value)"))?;
        Ok(stamp)
    }
}

impl Stamp {
    /// Whether messages on `topic` are stamped (decided before the payload
    /// is read).
    pub fn applies_to(&self, topic: &str) -> bool {
        topic.starts_with(&self.prefix)
    }

    /// The value for this delivery, placeholders substituted (`%u` is empty
    /// for a client without username, `%m` in the default tree).
    pub fn value_for(&self, d: &Delivery<'_>) -> String {
        let value = self.value.render(|letter| {
            Some(match letter {
                'c' => d.client_id,
                'u' => d.username.unwrap_or_default(),
                'm' => d.mountpoint,
                _ => d.topic,
            })
        });
        value.unwrap_or_default().into_owned()
    }

    /// The stamped payload, or `None` when the payload is not a JSON
    /// object (not JSON at all, or another JSON value). The field is set,
    /// replacing one of the same name (a publisher cannot forge the stamp);
    /// the other fields keep their order.
    pub fn apply(&self, payload: &[u8], d: &Delivery<'_>) -> Option<Vec<u8>> {
        let mut object: Map<String, Value> = match serde_json::from_slice(payload) {
            Ok(Value::Object(o)) => o,
            _ => return None,
        };
        object.insert(self.field.clone(), Value::String(self.value_for(d)));
        serde_json::to_vec(&object).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TO: Delivery<'static> = Delivery {
        client_id: "sub-1",
        username: Some("alice"),
        mountpoint: "",
        topic: "telemetry/t1",
    };

    fn stamp(pairs: &[(&str, &str)]) -> Stamp {
        match Stamp::from_config(&Settings::new(pairs.iter().copied())) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        }
    }

    fn text(bytes: Option<Vec<u8>>) -> Option<String> {
        bytes.map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    #[test]
    fn json_objects_are_stamped_in_order() {
        let s = stamp(&[
            ("prefix", "telemetry/"),
            ("field", "seen_by"),
            ("value", "%c (%u) via %t, 100%%"),
        ]);
        assert!(s.applies_to("telemetry/t1"));
        assert!(!s.applies_to("other/telemetry/t1"));
        assert_eq!(
            text(s.apply(br#"{"z":1,"a":[true,null]}"#, &TO)).as_deref(),
            Some(r#"{"z":1,"a":[true,null],"seen_by":"sub-1 (alice) via telemetry/t1, 100%"}"#)
        );
        // An existing field is replaced, in place.
        assert_eq!(
            text(s.apply(br#"{"seen_by":"forged","v":2}"#, &TO)).as_deref(),
            Some(r#"{"seen_by":"sub-1 (alice) via telemetry/t1, 100%","v":2}"#)
        );
    }

    #[test]
    fn anything_else_is_left_alone() {
        let s = stamp(&[("field", "f"), ("value", "x")]);
        for payload in [
            &b"plain text"[..],
            b"",
            b"[1,2]",
            b"42",
            b"\"text\"",
            b"{\"unterminated\":",
            b"\xff\xfe",
        ] {
            assert_eq!(s.apply(payload, &TO), None, "{payload:?}");
        }
    }

    #[test]
    fn placeholders_without_a_value_are_empty() {
        let s = stamp(&[("field", "f"), ("value", "[%u|%m]")]);
        let anon = Delivery {
            username: None,
            ..TO
        };
        assert_eq!(s.value_for(&anon), "[|]");
        assert!(s.applies_to("anything"), "no prefix: every topic");
    }

    #[test]
    fn invalid_configuration_is_refused() {
        for (pairs, why) in [
            (&[("value", "x")][..], "field is missing"),
            (&[("field", "f")][..], "value is missing"),
            (&[("field", ""), ("value", "x")][..], "field = \"\""),
            (
                &[("field", "f"), ("value", "%q")][..],
                "unknown placeholder %q",
            ),
            (&[("field", "f"), ("value", "x%")][..], "'%' at the end"),
            (
                &[("field", "f"), ("value", "x"), ("prefix", "a/+")][..],
                "not a filter",
            ),
            (
                &[("field", "f"), ("value", "x"), ("feild", "g")][..],
                "unknown configuration key",
            ),
        ] {
            match Stamp::from_config(&Settings::new(pairs.iter().copied())) {
                Ok(_) => panic!("{pairs:?} accepted"),
                Err(e) => assert!(e.contains(why), "{pairs:?}: {e}"),
            }
        }
    }
}
