//! Test fixture: a plugin that imports an interface the broker does not
//! provide; the broker must refuse it at load and name the import.

wit_bindgen::generate!({
    inline: r#"
        package fixtures:bogus;
        interface teleport {
            beam: func(target: string) -> bool;
        }
        world bad-import {
            include sluice:plugin/imports@0.1.0;
            import teleport;
            export sluice:plugin/on-client-wakeup@0.1.0;
        }
    "#,
    path: "../../../wit",
    generate_all,
});

struct Bad;

impl exports::sluice::plugin::on_client_wakeup::Guest for Bad {
    fn on_client_wakeup(subscriber_id: sluice::plugin::types::SubscriberId) {
        fixtures::bogus::teleport::beam(&subscriber_id.client_id);
    }
}

export!(Bad);
