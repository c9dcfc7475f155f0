//! Test fixture: a plugin that exports every publish/subscribe hook, answers
//! from its configuration, and records every call in its key-value store.
//! The `pubsub-v3` fixture is the same plugin (these modules, these keys)
//! with only the MQTT 3 forms of the hooks.
//!
//! # Configuration
//!
//! Every key is optional; an unknown key (or a value that does not parse)
//! makes `init` fail, so a typo in a test refuses the plugin instead of
//! silently testing nothing.
//!
//! - A *list* is comma-separated topics or filters, compared exactly; `*`
//!   matches every topic.
//! - A *map* is comma-separated `TOPIC=>VALUE` entries; the value for a
//!   topic is that of its exact entry, else of a `*=>VALUE` entry or of an
//!   entry without `=>` (which applies to every topic).
//! - Numbers are decimal or `0x` hexadecimal; a user property is
//!   `NAME=VALUE`.
//!
//! Subscribe (`auth-on-subscribe`, `auth-on-subscribe-m5`), checked in this
//! order; a SUBSCRIBE with nothing to change is answered `ok(none)`:
//! - `sub_panic` (list): a requested filter in it makes the call trap.
//! - `sub_error` (list): a requested filter in it refuses the whole
//!   SUBSCRIBE (`error`); `sub_error_code` (map of numbers by that filter,
//!   default 0x87) is the MQTT 5 code.
//! - `sub_next` (list): a requested filter in it makes the plugin answer
//!   `next`.
//! - `sub_reject` (list): these filters are `rejected`; `sub_code` (map of
//!   numbers, default 0x87) is the MQTT 5 code of each.
//! - `sub_rewrite` (map `FROM=>TO`): granted under the new filter.
//! - `sub_max_qos` (map of 0..=2): granted QoS is at most this.
//! - `sub_bad_list` (list): a requested filter in it adds one result too
//!   many to the answer (a list of the wrong length).
//! - `suback_reason`, `suback_user_property`: Reason String and user
//!   property of the MQTT 5 answer.
//!
//! Unsubscribe (`on-unsubscribe`, `on-unsubscribe-m5`):
//! - `unsub_error` (list): a requested filter in it answers `error`.
//! - `unsub_rewrite` (map `FROM=>TO`): unsubscribe the new filter instead.
//! - `unsuback_reason`, `unsuback_user_property`: for the MQTT 5 answer.
//!
//! Publish (`auth-on-publish`, `auth-on-publish-m5`), checked in order:
//! - Wills (`is-will`): `will_deny` (list) refuses them; nothing else
//!   applies to Wills, which are otherwise accepted unchanged.
//! - `pub_panic` (list): trap.
//! - `pub_deny` (list): `error`; `pub_code` (map of numbers, default 0x87)
//!   and `pub_reason` (text) make the MQTT 5 error.
//! - `pub_next` (list): `next`.
//! - Modifiers, each a map by the published topic: `pub_rewrite_topic`
//!   (new topic), `pub_payload` (new payload), `pub_qos` (0..=2),
//!   `pub_retain` (true/false), `pub_mountpoint`, `pub_throttle_ms`,
//!   `pub_user_property` (appended to the message's properties),
//!   `pub_cache_secs`. No modifier: `ok(none)`.
//!
//! Deliver (`on-deliver`, `on-deliver-m5`), maps and lists by the topic of
//! the message:
//! - `deliver_clients` (list of subscriber client ids): only these
//!   subscribers' messages are changed (default: every subscriber's).
//! - `deliver_panic` (list): trap; `deliver_error` (list): `error`;
//!   `deliver_next` (list): `next`.
//! - `deliver_topic` (map): new topic; `deliver_payload` (map): new
//!   payload; `deliver_prefix` (map): prepended to the payload (read from
//!   the handle); `deliver_user_property` (map): appended to the message's
//!   properties (also by `on-deliver`, where it is invalid for an MQTT 3.x
//!   subscriber). No change: `ok(none)`.
//!
//! - `record_payload` (`true`): records also read the payload.
//!
//! # Records
//!
//! Each call appends a line to two keys of the store: `HOOK/CLIENT-ID`
//! (the fields only) and `log/CLIENT-ID` (`HOOK FIELDS`, for the order of
//! a client's calls). Fields are `name=value` separated by one space, in
//! this order, optional ones only when they apply:
//! - subscribe hooks: `topics=F:QOS,...` (MQTT 5 options add `+nl`, `+rap`,
//!   `+rh1`/`+rh2` when not default), `id=N`, `up=NAME=VALUE;...`;
//! - unsubscribe hooks: `topics=F,...`, `up=...`; `on-topic-unsubscribed`:
//!   `all` or `topics=F,...`;
//! - `auth-on-publish(-m5)`: `topic=T qos=N retain=0|1 will=0|1 size=N`;
//!   `on-publish(-m5)`, `on-deliver(-m5)`, `on-offline-message`:
//!   `topic=T qos=N retain=0|1 size=N`; `on-message-drop`:
//!   `topic=T qos=N reason=expired|queue-full|max-packet-size-exceeded
//!   size=N`; then `payload=TEXT` (with `record_payload`), `up=...` and
//!   `expiry=N` (MQTT 5 properties, when present);
//! - then, for every hook with them, `user=NAME` (when there is a username)
//!   and `mp=MOUNTPOINT` (when not the default tree).

wit_bindgen::generate!({
    inline: r#"
        package fixtures:pubsub;
        world pubsub {
            include sluice:plugin/imports@0.1.0;
            export sluice:plugin/lifecycle@0.1.0;
            export sluice:plugin/auth-on-subscribe@0.1.0;
            export sluice:plugin/auth-on-subscribe-m5@0.1.0;
            export sluice:plugin/on-subscribe@0.1.0;
            export sluice:plugin/on-subscribe-m5@0.1.0;
            export sluice:plugin/on-unsubscribe@0.1.0;
            export sluice:plugin/on-unsubscribe-m5@0.1.0;
            export sluice:plugin/on-topic-unsubscribed@0.1.0;
            export sluice:plugin/auth-on-publish@0.1.0;
            export sluice:plugin/auth-on-publish-m5@0.1.0;
            export sluice:plugin/on-publish@0.1.0;
            export sluice:plugin/on-publish-m5@0.1.0;
            export sluice:plugin/on-deliver@0.1.0;
            export sluice:plugin/on-deliver-m5@0.1.0;
            export sluice:plugin/on-offline-message@0.1.0;
            export sluice:plugin/on-message-drop@0.1.0;
        }
    "#,
    path: "../../../wit",
    generate_all,
});

// Shared with `pubsub-v3` (which declares these modules with `#[path]`):
// the configuration, the records, and per hook family the decision and the
// MQTT 3 forms of the hooks.
mod config;
mod deliver;
mod publish;
mod record;
mod subscribe;

// Only in this fixture.
mod m5;
mod session;

/// The plugin; its hooks are implemented in the modules.
struct Pubsub;

export!(Pubsub);
