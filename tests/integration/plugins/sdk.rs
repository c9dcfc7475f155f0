//! Plugins written with the Rust SDK (`plugin-sdk/`): a component exports
//! the hooks its `impl Plugin` block defines, and only those. The example
//! plugins `payload-transform`, `topic-acl`, `password-file`, `jwt-auth`
//! and `limits` are written with it.

use sluice_broker::plugins::Hook;

use super::*;

/// `payload-transform` implements `init`, `on_deliver` and `on_deliver_m5`
/// of the SDK's `Plugin` trait: the broker finds exactly those two hooks
/// (`init` is exported as `lifecycle`, which is not a hook), although the
/// trait defines every hook with a default body.
#[tokio::test]
async fn sdk_plugins_export_only_the_hooks_they_implement() {
    let dir = PluginDir::new();
    dir.add("stamp", "payload-transform");
    let broker = broker_with(&dir, |c| {
        plugin_config(
            c,
            "stamp",
            &[("prefix", "t/"), ("field", "f"), ("value", "v")],
        );
    });
    let plugin = broker.ctx.plugins.get("stamp").expect("loaded");
    assert_eq!(
        plugin.hooks().iter().collect::<Vec<_>>(),
        [Hook::OnDeliver, Hook::OnDeliverM5]
    );
    // `init` ran (it is what parses the configuration): with an invalid
    // one, the plugin is refused at load.
    let e = TestBroker::try_with(|c| {
        dir.configure(c);
        plugin_config(c, "stamp", &[("prefix", "t/#")]);
    })
    .err()
    .expect("refused");
    assert!(e.contains("invalid payload-transform configuration"), "{e}");
}

/// `topic-acl` implements `init`, the four publish / subscribe
/// authorisation hooks and the read check `auth-on-deliver`.
#[tokio::test]
async fn sdk_acl_exports_its_five_hooks() {
    let dir = PluginDir::new();
    dir.add("acl", "topic-acl");
    let broker = broker_with(&dir, |c| plugin_config(c, "acl", &[("publish", "#")]));
    let plugin = broker.ctx.plugins.get("acl").expect("loaded");
    assert_eq!(
        plugin.hooks().iter().collect::<Vec<_>>(),
        [
            Hook::AuthOnSubscribe,
            Hook::AuthOnSubscribeM5,
            Hook::AuthOnPublish,
            Hook::AuthOnPublishM5,
            Hook::AuthOnDeliver,
        ]
    );
}

/// `password-file` implements `init` and the two registration hooks: the
/// broker finds exactly `auth-on-register` and `auth-on-register-m5`.
#[tokio::test]
async fn sdk_password_file_exports_the_two_register_hooks() {
    let dir = PluginDir::new();
    dir.add("pw", "password-file");
    let broker = broker_with(&dir, |c| {
        plugin_config(
            c,
            "pw",
            &[(
                "users",
                "alice:$pbkdf2-sha256$1000$VHMb3/XsuTvs5N41mdv/LA==$tKbsn9iCHoO3z+a6wrJcLC+590sy6S6LTxmdDR34W5k=",
            )],
        );
    });
    let plugin = broker.ctx.plugins.get("pw").expect("loaded");
    assert_eq!(
        plugin.hooks().iter().collect::<Vec<_>>(),
        [Hook::AuthOnRegister, Hook::AuthOnRegisterM5]
    );
}
