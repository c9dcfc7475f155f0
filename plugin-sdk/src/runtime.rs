//! What the `#[plugin]` expansion calls: the configuration, parsed once
//! per instance, and the answer of a hook when it cannot be (never after a
//! successful `init`, which parses it first).

use std::sync::OnceLock;

use crate::{
    AuthVerdict, DeliverAuthVerdict, DeliverVerdict, DeliverVerdictM5, Denial, FromConfig,
    M5Denial, M5Error, Plugin, PublishVerdict, PublishVerdictM5, RegisterVerdict,
    RegisterVerdictM5, Settings, SubscribeVerdict, SubscribeVerdictM5, UnsubscribeVerdict,
    UnsubscribeVerdictM5, reason,
};

/// Where an instance keeps its parsed configuration.
pub type ConfigCell<C> = OnceLock<Result<C, String>>;

/// The configuration, parsed from the broker's settings on first use.
fn config<C: FromConfig>(cell: &'static ConfigCell<C>) -> Result<&'static C, &'static str> {
    cell.get_or_init(|| C::from_config(&Settings::from_host()))
        .as_ref()
        .map_err(String::as_str)
}

/// `lifecycle.init`: parses the configuration (an error refuses the
/// instance, naming the plugin's package), then runs the plugin's `init`.
pub fn init<P: Plugin>(cell: &'static ConfigCell<P::Config>, package: &str) -> Result<(), String> {
    let config = config(cell).map_err(|e| format!("invalid {package} configuration: {e}"))?;
    P::init(config)
}

/// Runs a hook with the configuration, or answers `R::fallback`.
pub fn hook<C: FromConfig, R: Fallback>(
    cell: &'static ConfigCell<C>,
    f: impl FnOnce(&'static C) -> R,
) -> R {
    match config(cell) {
        Ok(c) => f(c),
        Err(e) => R::fallback(format!("not configured: {e}")),
    }
}

/// A hook's answer without a configuration: refuse (fail closed), or
/// change nothing.
pub trait Fallback {
    fn fallback(why: String) -> Self;
}

impl Fallback for () {
    fn fallback(_: String) -> Self {}
}

impl Fallback for Result<(), String> {
    fn fallback(why: String) -> Self {
        Err(why)
    }
}

macro_rules! fallback {
    ($($ty:ty => |$why:ident| $answer:expr;)*) => {$(
        impl Fallback for $ty {
            fn fallback($why: String) -> Self {
                $answer
            }
        }
    )*};
}

fallback! {
    RegisterVerdict => |why| RegisterVerdict::Error(Denial::NotAuthorized(why));
    RegisterVerdictM5 => |why| RegisterVerdictM5::Error(M5Denial::new(reason::UNSPECIFIED_ERROR).reason_string(why));
    AuthVerdict => |why| AuthVerdict::Error(M5Denial::new(reason::UNSPECIFIED_ERROR).reason_string(why));
    SubscribeVerdict => |why| SubscribeVerdict::Error(why);
    SubscribeVerdictM5 => |why| SubscribeVerdictM5::Error(M5Error::new(reason::UNSPECIFIED_ERROR).reason_string(why));
    UnsubscribeVerdict => |why| UnsubscribeVerdict::Error(why);
    UnsubscribeVerdictM5 => |why| UnsubscribeVerdictM5::Error(why);
    PublishVerdict => |why| PublishVerdict::Error(why);
    PublishVerdictM5 => |why| PublishVerdictM5::Error(M5Error::new(reason::UNSPECIFIED_ERROR).reason_string(why));
    DeliverAuthVerdict => |why| DeliverAuthVerdict::Error(why);
    DeliverVerdict => |why| DeliverVerdict::Error(why);
    DeliverVerdictM5 => |why| DeliverVerdictM5::Error(why);
}
