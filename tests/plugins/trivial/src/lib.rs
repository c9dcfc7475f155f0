//! Test and benchmark fixture: the cheapest possible authentication hook.
//! Its answer (`verdict` = ok | next | deny) is read once per instance, in
//! `init`, so a call does no work beyond answering.

wit_bindgen::generate!({
    inline: r#"
        package fixtures:trivial;
        world trivial {
            include sluice:plugin/imports@0.1.0;
            export sluice:plugin/lifecycle@0.1.0;
            export sluice:plugin/auth-on-register@0.1.0;
        }
    "#,
    path: "../../../wit",
    generate_all,
});

use std::sync::atomic::{AtomicU8, Ordering};

use exports::sluice::plugin::auth_on_register::{Guest, RegisterVerdict};
use exports::sluice::plugin::lifecycle;
use sluice::plugin::host;
use sluice::plugin::types::{Connection, Denial, SubscriberId};

const OK: u8 = 0;
const NEXT: u8 = 1;
const DENY: u8 = 2;

static VERDICT: AtomicU8 = AtomicU8::new(OK);

struct Trivial;

impl lifecycle::Guest for Trivial {
    fn init() -> Result<(), String> {
        let verdict = match host::config()
            .into_iter()
            .find(|(k, _)| k == "verdict")
            .map(|(_, v)| v)
            .as_deref()
        {
            None | Some("ok") => OK,
            Some("next") => NEXT,
            Some("deny") => DENY,
            Some(other) => return Err(format!("unknown verdict {other:?}")),
        };
        VERDICT.store(verdict, Ordering::Relaxed);
        Ok(())
    }
}

impl Guest for Trivial {
    fn auth_on_register(
        _conn: Connection,
        _subscriber_id: SubscriberId,
        _username: Option<String>,
        _password: Option<Vec<u8>>,
        _clean_session: bool,
    ) -> RegisterVerdict {
        match VERDICT.load(Ordering::Relaxed) {
            OK => RegisterVerdict::Ok(None),
            NEXT => RegisterVerdict::Next,
            _ => RegisterVerdict::Error(Denial::NotAuthorized("denied".into())),
        }
    }
}

export!(Trivial);
