//! Test fixture: the `policy` plugin with only the MQTT 3.x hook, to test
//! that it also serves MQTT 5 clients.

wit_bindgen::generate!({
    inline: r#"
        package fixtures:policy-v3;
        world policy-v3 {
            include sluice:plugin/imports@0.1.0;
            export sluice:plugin/lifecycle@0.1.0;
            export sluice:plugin/auth-on-register@0.1.0;
        }
    "#,
    path: "../../../wit",
    generate_all,
});

include!("../../policy/src/common.rs");

export!(Policy);
