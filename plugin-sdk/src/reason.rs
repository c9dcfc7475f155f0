//! MQTT 5 reason codes (MQTT 5 §2.4) by name, for refusals
//! ([`M5Denial`](crate::M5Denial), [`M5Error`](crate::M5Error),
//! [`TopicResultM5::Rejected`](crate::TopicResultM5::Rejected)).
//!
//! ```
//! use sluice_plugin_sdk::{M5Denial, RegisterVerdictM5, reason};
//!
//! let verdict = RegisterVerdictM5::Error(
//!     M5Denial::new(reason::BAD_USER_NAME_OR_PASSWORD).reason_string("try again"),
//! );
//! assert_eq!(reason::name(reason::NOT_AUTHORIZED), Some("not authorized"));
//! ```

use crate::ReasonCode;

macro_rules! codes {
    ($($name:ident = $code:literal, $text:literal;)*) => {
        $(
            #[doc = concat!("`", stringify!($code), "` ", $text, ".")]
            pub const $name: ReasonCode = $code;
        )*

        /// The specification's name of a refusal code, if it is one.
        ///
        /// ```
        /// assert_eq!(sluice_plugin_sdk::reason::name(0x97), Some("quota exceeded"));
        /// assert_eq!(sluice_plugin_sdk::reason::name(0x00), None);
        /// ```
        pub fn name(code: ReasonCode) -> Option<&'static str> {
            match code {
                $($code => Some($text),)*
                _ => None,
            }
        }
    };
}

codes! {
    UNSPECIFIED_ERROR = 0x80, "unspecified error";
    MALFORMED_PACKET = 0x81, "malformed packet";
    PROTOCOL_ERROR = 0x82, "protocol error";
    IMPLEMENTATION_SPECIFIC_ERROR = 0x83, "implementation specific error";
    UNSUPPORTED_PROTOCOL_VERSION = 0x84, "unsupported protocol version";
    CLIENT_IDENTIFIER_NOT_VALID = 0x85, "client identifier not valid";
    BAD_USER_NAME_OR_PASSWORD = 0x86, "bad user name or password";
    NOT_AUTHORIZED = 0x87, "not authorized";
    SERVER_UNAVAILABLE = 0x88, "server unavailable";
    SERVER_BUSY = 0x89, "server busy";
    BANNED = 0x8A, "banned";
    BAD_AUTHENTICATION_METHOD = 0x8C, "bad authentication method";
    TOPIC_FILTER_INVALID = 0x8F, "topic filter invalid";
    TOPIC_NAME_INVALID = 0x90, "topic name invalid";
    PACKET_IDENTIFIER_IN_USE = 0x91, "packet identifier in use";
    PACKET_TOO_LARGE = 0x95, "packet too large";
    QUOTA_EXCEEDED = 0x97, "quota exceeded";
    PAYLOAD_FORMAT_INVALID = 0x99, "payload format invalid";
    RETAIN_NOT_SUPPORTED = 0x9A, "retain not supported";
    QOS_NOT_SUPPORTED = 0x9B, "QoS not supported";
    USE_ANOTHER_SERVER = 0x9C, "use another server";
    SERVER_MOVED = 0x9D, "server moved";
    SHARED_SUBSCRIPTIONS_NOT_SUPPORTED = 0x9E, "shared subscriptions not supported";
    CONNECTION_RATE_EXCEEDED = 0x9F, "connection rate exceeded";
    SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED = 0xA1, "subscription identifiers not supported";
    WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED = 0xA2, "wildcard subscriptions not supported";
}

/// The text of a refusal with `code` and maybe a reason string: the
/// reason string, else the code's name.
pub(crate) fn text(code: ReasonCode, reason_string: Option<String>) -> String {
    reason_string.unwrap_or_else(|| match name(code) {
        Some(n) => format!("{n} ({code:#04x})"),
        None => format!("refused with {code:#04x}"),
    })
}
