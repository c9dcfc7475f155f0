//! Fuzz target `config`: the configuration loader, `Config::parse`, on
//! arbitrary text (inputs that are not UTF-8 are skipped: `Config::load`
//! refuses them before parsing).
//!
//! Checked, besides "never panics": an error has a message and, when it
//! names a line, a line of the text; an accepted configuration validates,
//! and its TOML (`Config::to_toml`) is accepted again and prints the same.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_broker::Config;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        run(text);
    }
});

fn run(text: &str) {
    let config = match Config::parse(text) {
        Ok(config) => config,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            if let Some(line) = e.line() {
                let lines = text.split('\n').count();
                assert!((1..=lines).contains(&line), "line {line} of {lines}: {e}");
            }
            return;
        }
    };
    if let Err(e) = config.validate() {
        panic!("accepted by parse, refused by validate: {e}");
    }
    let _ = config.listeners();
    let toml = match config.to_toml() {
        Ok(toml) => toml,
        Err(e) => panic!("an accepted configuration cannot be written: {e}"),
    };
    match Config::parse(&toml) {
        Ok(again) => match again.to_toml() {
            Ok(toml_again) => assert_eq!(toml, toml_again, "TOML changed on a round trip"),
            Err(e) => panic!("a read-back configuration cannot be written: {e}"),
        },
        Err(e) => panic!("the configuration's own TOML is refused: {e}\n{toml}"),
    }
}
