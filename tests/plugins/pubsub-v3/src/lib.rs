//! Test fixture: the `pubsub` plugin with only the MQTT 3 forms of the
//! publish/subscribe hooks (`auth-on-subscribe`, `on-subscribe`,
//! `on-unsubscribe`, `auth-on-publish`, `on-publish`, `on-deliver`), to test
//! that the broker serves MQTT 5 clients with them when a plugin has no m5
//! form. Same configuration keys, same records, as `pubsub` (see its crate
//! documentation); the keys of the MQTT 5 answers are accepted and unused.

wit_bindgen::generate!({
    inline: r#"
        package fixtures:pubsub-v3;
        world pubsub-v3 {
            include sluice:plugin/imports@0.1.0;
            export sluice:plugin/lifecycle@0.1.0;
            export sluice:plugin/auth-on-subscribe@0.1.0;
            export sluice:plugin/on-subscribe@0.1.0;
            export sluice:plugin/on-unsubscribe@0.1.0;
            export sluice:plugin/auth-on-publish@0.1.0;
            export sluice:plugin/on-publish@0.1.0;
            export sluice:plugin/on-deliver@0.1.0;
        }
    "#,
    path: "../../../wit",
    generate_all,
});

// The modules of `pubsub` that do not depend on its MQTT 5 hooks. A few of
// their helpers serve only those hooks (user properties, MQTT 5 codes),
// hence unused here.
#[allow(dead_code)]
#[path = "../../pubsub/src/config.rs"]
mod config;
#[path = "../../pubsub/src/deliver.rs"]
mod deliver;
#[path = "../../pubsub/src/publish.rs"]
mod publish;
#[allow(dead_code)]
#[path = "../../pubsub/src/record.rs"]
mod record;
#[allow(dead_code)]
#[path = "../../pubsub/src/subscribe.rs"]
mod subscribe;

/// The plugin; its hooks are implemented in `pubsub`'s modules.
struct Pubsub;

export!(Pubsub);
