//! Test fixture: a plugin built against another version of the plugin
//! interface (`sluice:plugin@0.9.0`): it exports a hook by the right name
//! but of the wrong version, so the broker must refuse it and say which
//! version it expects.

wit_bindgen::generate!({
    inline: r#"
        package sluice:plugin@0.9.0;
        interface auth-on-register {
            auth-on-register: func(client-id: string) -> bool;
        }
        world other-version {
            export auth-on-register;
        }
    "#,
    generate_all,
});

struct Other;

impl exports::sluice::plugin::auth_on_register::Guest for Other {
    fn auth_on_register(_client_id: String) -> bool {
        true
    }
}

export!(Other);
