//! MQTT 5 answers as MQTT 3 ones, as the broker reads an MQTT 5 answer
//! for an MQTT 3.x client: what the client cannot receive is left out
//! (properties, `receive-maximum`, `topic-alias-maximum`), and a refusal
//! becomes its MQTT 3 form, its reason string (or the code's name) the
//! logged text. The `_any` hooks answer through these. And a QoS as its
//! number.

use crate::{
    DeliverVerdict, DeliverVerdictM5, Denial, PublishVerdict, PublishVerdictM5, Qos,
    RegisterModifiers, RegisterVerdict, RegisterVerdictM5, RetainHandling, SubscribeVerdict,
    SubscribeVerdictM5, SubscriptionOptions, TopicRequest, TopicResult, TopicResultM5,
    TopicSubscription, UnsubscribeVerdict, UnsubscribeVerdictM5, reason,
};

impl From<RegisterVerdictM5> for RegisterVerdict {
    /// 0x86 "bad user name or password" becomes `InvalidCredentials`
    /// (CONNACK 4), every other refusal `NotAuthorized` (CONNACK 5).
    ///
    /// ```
    /// use sluice_plugin_sdk::{Denial, M5Denial, RegisterVerdict, RegisterVerdictM5, reason};
    ///
    /// let v3 = RegisterVerdict::from(RegisterVerdictM5::Error(M5Denial::new(reason::BAD_USER_NAME_OR_PASSWORD)));
    /// assert!(matches!(v3, RegisterVerdict::Error(Denial::InvalidCredentials(_))));
    /// ```
    fn from(v: RegisterVerdictM5) -> Self {
        match v {
            RegisterVerdictM5::Ok(m) => RegisterVerdict::Ok(m.map(|m| RegisterModifiers {
                receive_maximum: None,
                topic_alias_maximum: None,
                ..m
            })),
            RegisterVerdictM5::Next => RegisterVerdict::Next,
            RegisterVerdictM5::Error(d) => {
                let text = reason::text(d.reason_code, d.reason_string);
                RegisterVerdict::Error(if d.reason_code == reason::BAD_USER_NAME_OR_PASSWORD {
                    Denial::InvalidCredentials(text)
                } else {
                    Denial::NotAuthorized(text)
                })
            }
        }
    }
}

impl From<SubscribeVerdictM5> for SubscribeVerdict {
    /// A topic refused with any code is `Rejected` (SUBACK 0x80).
    fn from(v: SubscribeVerdictM5) -> Self {
        match v {
            SubscribeVerdictM5::Ok(changes) => {
                SubscribeVerdict::Ok(changes.and_then(|c| c.topics).map(|topics| {
                    topics
                        .into_iter()
                        .map(|t| match t {
                            TopicResultM5::Granted(s) => TopicResult::Granted(s.into()),
                            TopicResultM5::Rejected(_) => TopicResult::Rejected,
                        })
                        .collect()
                }))
            }
            SubscribeVerdictM5::Next => SubscribeVerdict::Next,
            SubscribeVerdictM5::Error(e) => {
                SubscribeVerdict::Error(reason::text(e.reason_code, e.reason_string))
            }
        }
    }
}

impl From<UnsubscribeVerdictM5> for UnsubscribeVerdict {
    fn from(v: UnsubscribeVerdictM5) -> Self {
        match v {
            UnsubscribeVerdictM5::Ok(c) => UnsubscribeVerdict::Ok(c.and_then(|c| c.topics)),
            UnsubscribeVerdictM5::Next => UnsubscribeVerdict::Next,
            UnsubscribeVerdictM5::Error(e) => UnsubscribeVerdict::Error(e),
        }
    }
}

impl From<PublishVerdictM5> for PublishVerdict {
    fn from(v: PublishVerdictM5) -> Self {
        match v {
            PublishVerdictM5::Ok(m) => PublishVerdict::Ok(m),
            PublishVerdictM5::Next => PublishVerdict::Next,
            PublishVerdictM5::Error(e) => {
                PublishVerdict::Error(reason::text(e.reason_code, e.reason_string))
            }
        }
    }
}

impl From<DeliverVerdictM5> for DeliverVerdict {
    /// New properties are left out: an MQTT 3.x subscriber has none.
    fn from(v: DeliverVerdictM5) -> Self {
        match v {
            DeliverVerdictM5::Ok(m) => DeliverVerdict::Ok(m.map(|mut m| {
                m.properties = None;
                m
            })),
            DeliverVerdictM5::Next => DeliverVerdict::Next,
            DeliverVerdictM5::Error(e) => DeliverVerdict::Error(e),
        }
    }
}

impl From<TopicSubscription> for TopicRequest {
    /// The filter and maximum QoS (all an MQTT 3.x subscription has).
    fn from(s: TopicSubscription) -> Self {
        TopicRequest {
            filter: s.filter,
            qos: s.options.qos,
        }
    }
}

impl From<TopicRequest> for TopicSubscription {
    /// An MQTT 3.x subscription: its QoS, the other options false /
    /// send-on-subscribe.
    ///
    /// ```
    /// use sluice_plugin_sdk::{Qos, TopicRequest, TopicSubscription};
    ///
    /// let s = TopicSubscription::from(TopicRequest { filter: "a/#".into(), qos: Qos::AtLeastOnce });
    /// assert_eq!(TopicRequest::from(s).qos, Qos::AtLeastOnce);
    /// ```
    fn from(r: TopicRequest) -> Self {
        TopicSubscription {
            filter: r.filter,
            options: SubscriptionOptions {
                qos: r.qos,
                no_local: false,
                retain_as_published: false,
                retain_handling: RetainHandling::SendOnSubscribe,
            },
        }
    }
}

impl From<Qos> for u8 {
    /// 0, 1 or 2.
    ///
    /// ```
    /// assert_eq!(u8::from(sluice_plugin_sdk::Qos::ExactlyOnce), 2);
    /// ```
    fn from(qos: Qos) -> u8 {
        match qos {
            Qos::AtMostOnce => 0,
            Qos::AtLeastOnce => 1,
            Qos::ExactlyOnce => 2,
        }
    }
}

impl TryFrom<u8> for Qos {
    type Error = String;

    /// The QoS of number 0, 1 or 2.
    ///
    /// ```
    /// use sluice_plugin_sdk::Qos;
    ///
    /// assert_eq!(Qos::try_from(1), Ok(Qos::AtLeastOnce));
    /// assert!(Qos::try_from(3).is_err());
    /// ```
    fn try_from(n: u8) -> Result<Qos, String> {
        match n {
            0 => Ok(Qos::AtMostOnce),
            1 => Ok(Qos::AtLeastOnce),
            2 => Ok(Qos::ExactlyOnce),
            _ => Err("expected a QoS: 0, 1 or 2".into()),
        }
    }
}

impl<'de> serde::Deserialize<'de> for Qos {
    /// A setting `qos = 1` (0, 1 or 2: see [`config`](crate::config)).
    ///
    /// ```
    /// use sluice_plugin_sdk::{Qos, Settings};
    ///
    /// let s = Settings::new([("qos", "2"), ("bad", "3")]);
    /// assert_eq!(s.value::<Qos>("qos"), Ok(Some(Qos::ExactlyOnce)));
    /// assert_eq!(s.value::<Qos>("bad").err().as_deref(), Some(r#"bad = "3": expected a QoS: 0, 1 or 2"#));
    /// ```
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Qos::try_from(u8::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{M5Error, SubscribeChanges};

    #[test]
    fn refusals_keep_their_text() {
        let v = PublishVerdict::from(PublishVerdictM5::Error(M5Error::new(
            reason::QUOTA_EXCEEDED,
        )));
        assert_eq!(v, PublishVerdict::Error("quota exceeded (0x97)".into()));
        let v = RegisterVerdict::from(RegisterVerdictM5::Error(
            crate::M5Denial::new(reason::BANNED).reason_string("go away"),
        ));
        assert_eq!(
            v,
            RegisterVerdict::Error(Denial::NotAuthorized("go away".into()))
        );
    }

    #[test]
    fn mqtt5_only_fields_are_left_out() {
        let m = RegisterModifiers::new()
            .receive_maximum(5)
            .max_message_rate(10);
        let RegisterVerdict::Ok(Some(m)) = RegisterVerdictM5::Ok(Some(m)).into() else {
            panic!("not ok");
        };
        assert_eq!((m.receive_maximum, m.max_message_rate), (None, Some(10)));
        let granted = TopicSubscription::from(TopicRequest {
            filter: "a".into(),
            qos: Qos::AtMostOnce,
        });
        let v = SubscribeVerdict::from(SubscribeVerdictM5::Ok(Some(SubscribeChanges {
            topics: Some(vec![
                TopicResultM5::Granted(granted),
                TopicResultM5::Rejected(reason::NOT_AUTHORIZED),
            ]),
            reason_string: None,
            user_properties: Vec::new(),
        })));
        let SubscribeVerdict::Ok(Some(results)) = v else {
            panic!("not ok");
        };
        assert!(matches!(
            results[..],
            [TopicResult::Granted(_), TopicResult::Rejected]
        ));
    }
}
