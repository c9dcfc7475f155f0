//! Constructors and builder-style setters for the records hooks answer
//! with, whose generated form has many optional fields.

use crate::{
    DeliverModifiers, M5Denial, M5Error, MessageProperties, PublishModifiers, Qos,
    RegisterModifiers, SubscriberId,
};

/// Setters for `Option` fields: `name(value)` sets the field to
/// `Some(value)`. `into` setters take anything that converts (`&str` for a
/// `String`, for example).
macro_rules! setters {
    ($ty:ident { $($field:ident : $kind:tt $t:ty = $example:expr;)* }) => {
        impl $ty {
            $(setters!(@one $ty, $field, $kind, $t, $example);)*
        }
    };
    (@one $ty:ident, $field:ident, plain, $t:ty, $example:expr) => {
        #[doc = concat!("Sets `", stringify!($field), "`.")]
        ///
        /// ```
        #[doc = concat!("# use sluice_plugin_sdk::*;")]
        #[doc = concat!("let m = ", stringify!($ty), "::new().", stringify!($field), "(", stringify!($example), ");")]
        #[doc = concat!("assert!(m.", stringify!($field), ".is_some());")]
        /// ```
        #[must_use]
        pub fn $field(mut self, value: $t) -> Self {
            self.$field = Some(value);
            self
        }
    };
    (@one $ty:ident, $field:ident, into, $t:ty, $example:expr) => {
        #[doc = concat!("Sets `", stringify!($field), "`.")]
        ///
        /// ```
        #[doc = concat!("# use sluice_plugin_sdk::*;")]
        #[doc = concat!("let m = ", stringify!($ty), "::new().", stringify!($field), "(", stringify!($example), ");")]
        #[doc = concat!("assert!(m.", stringify!($field), ".is_some());")]
        /// ```
        #[must_use]
        pub fn $field(mut self, value: impl Into<$t>) -> Self {
            self.$field = Some(value.into());
            self
        }
    };
}

impl RegisterModifiers {
    /// No change: every field `None`. Set the ones you need with the
    /// setters.
    ///
    /// ```
    /// use sluice_plugin_sdk::{RegisterModifiers, RegisterVerdict};
    ///
    /// let verdict = RegisterVerdict::Ok(Some(
    ///     RegisterModifiers::new().max_message_rate(100).allow_subscribe(false),
    /// ));
    /// ```
    pub const fn new() -> Self {
        RegisterModifiers {
            subscriber_id: None,
            username: None,
            clean_start: None,
            session_expiry_interval: None,
            max_packet_size: None,
            max_message_rate: None,
            max_inflight_messages: None,
            receive_maximum: None,
            topic_alias_maximum: None,
            upgrade_qos: None,
            allow_publish: None,
            allow_subscribe: None,
            allow_unsubscribe: None,
            max_online_messages: None,
            max_offline_messages: None,
            max_connection_lifetime: None,
        }
    }
}

impl Default for RegisterModifiers {
    /// [`RegisterModifiers::new`].
    ///
    /// ```
    /// let m = sluice_plugin_sdk::RegisterModifiers::default();
    /// assert_eq!(m, sluice_plugin_sdk::RegisterModifiers::new());
    /// ```
    fn default() -> Self {
        Self::new()
    }
}

setters!(RegisterModifiers {
    subscriber_id: plain SubscriberId = SubscriberId::new("tenant-a", "device-1");
    username: into String = "alice";
    clean_start: plain bool = true;
    session_expiry_interval: plain u32 = 3600;
    max_packet_size: plain u32 = 65536;
    max_message_rate: plain u32 = 100;
    max_inflight_messages: plain u16 = 10;
    receive_maximum: plain u16 = 10;
    topic_alias_maximum: plain u16 = 16;
    upgrade_qos: plain bool = true;
    allow_publish: plain bool = false;
    allow_subscribe: plain bool = false;
    allow_unsubscribe: plain bool = false;
    max_online_messages: plain u32 = 1000;
    max_offline_messages: plain u32 = 1000;
    max_connection_lifetime: plain u32 = 86400;
});

impl PublishModifiers {
    /// No change: every field `None`.
    ///
    /// ```
    /// use sluice_plugin_sdk::{PublishModifiers, PublishVerdict, Qos};
    ///
    /// let verdict = PublishVerdict::Ok(Some(
    ///     PublishModifiers::new().topic("archive/in").qos(Qos::AtLeastOnce),
    /// ));
    /// ```
    pub const fn new() -> Self {
        PublishModifiers {
            topic: None,
            payload: None,
            qos: None,
            retain: None,
            mountpoint: None,
            throttle_ms: None,
            properties: None,
            cache_secs: None,
        }
    }
}

impl Default for PublishModifiers {
    /// [`PublishModifiers::new`].
    ///
    /// ```
    /// let m = sluice_plugin_sdk::PublishModifiers::default();
    /// assert_eq!(m, sluice_plugin_sdk::PublishModifiers::new());
    /// ```
    fn default() -> Self {
        Self::new()
    }
}

setters!(PublishModifiers {
    topic: into String = "archive/in";
    payload: into Vec<u8> = b"new payload".to_vec();
    qos: plain Qos = Qos::AtLeastOnce;
    retain: plain bool = false;
    mountpoint: into String = "tenant-a";
    throttle_ms: plain u32 = 100;
    properties: plain MessageProperties = MessageProperties::new();
    cache_secs: plain u32 = 60;
});

impl DeliverModifiers {
    /// No change: every field `None`.
    ///
    /// ```
    /// use sluice_plugin_sdk::{DeliverModifiers, DeliverVerdict};
    ///
    /// let verdict = DeliverVerdict::Ok(Some(DeliverModifiers::new().payload(b"redacted".to_vec())));
    /// ```
    pub const fn new() -> Self {
        DeliverModifiers {
            topic: None,
            payload: None,
            properties: None,
        }
    }
}

impl Default for DeliverModifiers {
    /// [`DeliverModifiers::new`].
    ///
    /// ```
    /// let m = sluice_plugin_sdk::DeliverModifiers::default();
    /// assert_eq!(m, sluice_plugin_sdk::DeliverModifiers::new());
    /// ```
    fn default() -> Self {
        Self::new()
    }
}

setters!(DeliverModifiers {
    topic: into String = "public/out";
    payload: into Vec<u8> = b"new payload".to_vec();
    properties: plain MessageProperties = MessageProperties::new();
});

/// `changes()` for the modifier records: `None` for no change, the
/// answer a hook gives when it changes nothing.
macro_rules! changes {
    ($($ty:ident: $example:expr;)*) => {$(
        impl $ty {
            /// `Some(self)` if it changes anything, `None` if every field is
            /// `None`: what `Ok` takes when the changes are computed.
            ///
            /// ```
            #[doc = concat!("use sluice_plugin_sdk::", stringify!($ty), ";")]
            ///
            #[doc = concat!("assert_eq!(", stringify!($ty), "::new().changes(), None);")]
            #[doc = concat!("assert!(", stringify!($ty), "::new().", stringify!($example), ".changes().is_some());")]
            /// ```
            pub fn changes(self) -> Option<Self> {
                (self != Self::new()).then_some(self)
            }
        }
    )*};
}

changes! {
    RegisterModifiers: allow_publish(false);
    PublishModifiers: cache_secs(60);
    DeliverModifiers: topic("public/out");
}

impl MessageProperties {
    /// No properties.
    ///
    /// ```
    /// use sluice_plugin_sdk::MessageProperties;
    ///
    /// let p = MessageProperties::new()
    ///     .content_type("application/json")
    ///     .user_property("origin", "gateway-3");
    /// assert_eq!(p.user_properties, [("origin".to_owned(), "gateway-3".to_owned())]);
    /// ```
    pub const fn new() -> Self {
        MessageProperties {
            payload_format_indicator: None,
            message_expiry_interval: None,
            content_type: None,
            response_topic: None,
            correlation_data: None,
            user_properties: Vec::new(),
        }
    }

    /// Appends a user property (names may repeat).
    ///
    /// ```
    /// let p = sluice_plugin_sdk::MessageProperties::new().user_property("a", "1").user_property("a", "2");
    /// assert_eq!(p.user_properties.len(), 2);
    /// ```
    #[must_use]
    pub fn user_property(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.user_properties.push((name.into(), value.into()));
        self
    }
}

impl Default for MessageProperties {
    /// [`MessageProperties::new`].
    ///
    /// ```
    /// let p = sluice_plugin_sdk::MessageProperties::default();
    /// assert_eq!(p, sluice_plugin_sdk::MessageProperties::new());
    /// ```
    fn default() -> Self {
        Self::new()
    }
}

setters!(MessageProperties {
    payload_format_indicator: plain bool = true;
    message_expiry_interval: plain u32 = 60;
    content_type: into String = "application/json";
    response_topic: into String = "replies/device-1";
    correlation_data: into Vec<u8> = b"req-17".to_vec();
});

impl SubscriberId {
    /// A session's identity: mountpoint (`""` for the default topic tree)
    /// and client id.
    ///
    /// ```
    /// let id = sluice_plugin_sdk::SubscriberId::new("", "device-1");
    /// assert_eq!(id.client_id, "device-1");
    /// ```
    pub fn new(mountpoint: impl Into<String>, client_id: impl Into<String>) -> Self {
        SubscriberId {
            mountpoint: mountpoint.into(),
            client_id: client_id.into(),
        }
    }
}

impl M5Denial {
    /// A refusal with this CONNACK reason code (0x80 or above), without
    /// reason string or server reference.
    ///
    /// ```
    /// use sluice_plugin_sdk::{M5Denial, RegisterVerdictM5};
    ///
    /// let verdict = RegisterVerdictM5::Error(M5Denial::new(sluice_plugin_sdk::reason::USE_ANOTHER_SERVER).server_reference("other.example:1883"));
    /// ```
    pub const fn new(reason_code: u8) -> Self {
        M5Denial {
            reason_code,
            reason_string: None,
            server_reference: None,
        }
    }
}

impl M5Error {
    /// A refusal with this reason code (0x80 or above, see [`reason`](crate::reason)), without reason
    /// string.
    ///
    /// ```
    /// use sluice_plugin_sdk::{M5Error, PublishVerdictM5};
    ///
    /// let verdict = PublishVerdictM5::Error(M5Error::new(sluice_plugin_sdk::reason::NOT_AUTHORIZED).reason_string("read-only topic"));
    /// ```
    pub const fn new(reason_code: u8) -> Self {
        M5Error {
            reason_code,
            reason_string: None,
        }
    }
}

impl M5Denial {
    /// Sets the Reason String.
    ///
    /// ```
    /// let d = sluice_plugin_sdk::M5Denial::new(sluice_plugin_sdk::reason::NOT_AUTHORIZED).reason_string("not today");
    /// assert_eq!(d.reason_string.as_deref(), Some("not today"));
    /// ```
    #[must_use]
    pub fn reason_string(mut self, value: impl Into<String>) -> Self {
        self.reason_string = Some(value.into());
        self
    }

    /// Sets the Server Reference (with 0x9C "use another server" / 0x9D
    /// "server moved").
    ///
    /// ```
    /// let d = sluice_plugin_sdk::M5Denial::new(sluice_plugin_sdk::reason::SERVER_MOVED).server_reference("other.example:1883");
    /// assert!(d.server_reference.is_some());
    /// ```
    #[must_use]
    pub fn server_reference(mut self, value: impl Into<String>) -> Self {
        self.server_reference = Some(value.into());
        self
    }
}

impl M5Error {
    /// Sets the Reason String (sent only to clients that asked for problem
    /// information).
    ///
    /// ```
    /// let e = sluice_plugin_sdk::M5Error::new(sluice_plugin_sdk::reason::NOT_AUTHORIZED).reason_string("not today");
    /// assert_eq!(e.reason_string.as_deref(), Some("not today"));
    /// ```
    #[must_use]
    pub fn reason_string(mut self, value: impl Into<String>) -> Self {
        self.reason_string = Some(value.into());
        self
    }
}
