//! A plugin's call statistics: counters per plugin version, and for each
//! hook it exports a latency histogram of its calls' wall time and the
//! calls by [`Outcome`]. The call path updates them with a few relaxed
//! atomic adds (no lock, no allocation); `Plugins::status` reads them for
//! `/plugins` and `/metrics`.
//!
//! Per-hook storage exists only for the hooks the plugin exports, found by
//! the hook's rank in the plugin's [`HookSet`]: a plugin exporting two hooks
//! carries two histograms.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use super::bindings::exports::sluice::plugin::{
    auth_on_deliver, auth_on_publish, auth_on_publish_m5, auth_on_register, auth_on_register_m5,
    auth_on_subscribe, auth_on_subscribe_m5, on_auth_m5, on_deliver, on_deliver_m5, on_unsubscribe,
    on_unsubscribe_m5,
};
use super::failure::CallFailure;
use super::hooks::{Hook, HookSet};
use super::latency::{Histogram, Latency};

/// How a hook call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The plugin answered: a verdict other than `next` and `error` (for a
    /// notification hook, which answers nothing, any return).
    Ok,
    /// It answered `next`.
    Next,
    /// It answered `error`.
    Error,
    /// It trapped (a stack overflow included), or a new instance for the
    /// call failed to instantiate or to run `init`.
    Trap,
    /// It exceeded its memory limit.
    Memory,
    /// It ran out of fuel.
    Fuel,
    /// It missed its deadline.
    Deadline,
    /// No instance became free within the deadline.
    Busy,
    /// Its circuit breaker was open: the plugin was not entered.
    Disabled,
}

impl Outcome {
    pub const COUNT: usize = 9;

    /// Every outcome, in label order.
    pub const ALL: [Outcome; Outcome::COUNT] = [
        Outcome::Ok,
        Outcome::Next,
        Outcome::Error,
        Outcome::Trap,
        Outcome::Memory,
        Outcome::Fuel,
        Outcome::Deadline,
        Outcome::Busy,
        Outcome::Disabled,
    ];

    /// The `outcome` label.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Next => "next",
            Outcome::Error => "error",
            Outcome::Trap => "trap",
            Outcome::Memory => "memory",
            Outcome::Fuel => "fuel",
            Outcome::Deadline => "deadline",
            Outcome::Busy => "busy",
            Outcome::Disabled => "disabled",
        }
    }

    /// What a failed call counts as.
    pub(crate) fn of_failure(failure: &CallFailure) -> Outcome {
        match failure {
            CallFailure::Disabled => Outcome::Disabled,
            CallFailure::Busy(_) => Outcome::Busy,
            CallFailure::Deadline(_) => Outcome::Deadline,
            CallFailure::OutOfFuel => Outcome::Fuel,
            CallFailure::Memory => Outcome::Memory,
            CallFailure::StackOverflow
            | CallFailure::Trap(_)
            | CallFailure::Instantiate(_)
            | CallFailure::Init(_) => Outcome::Trap,
        }
    }
}

/// A hook's answer, as an [`Outcome`].
pub(crate) trait Verdict {
    fn outcome(&self) -> Outcome;
}

/// Notification hooks answer nothing.
impl Verdict for () {
    fn outcome(&self) -> Outcome {
        Outcome::Ok
    }
}

/// Every chain hook's verdict has a `next` and an `error(..)` case; any
/// other case accepts.
macro_rules! verdicts {
    ($($ty:ty),* $(,)?) => {$(
        impl Verdict for $ty {
            fn outcome(&self) -> Outcome {
                match self {
                    Self::Next => Outcome::Next,
                    Self::Error(_) => Outcome::Error,
                    _ => Outcome::Ok,
                }
            }
        }
    )*};
}

verdicts!(
    auth_on_register::RegisterVerdict,
    auth_on_register_m5::RegisterVerdictM5,
    on_auth_m5::AuthVerdict,
    auth_on_subscribe::SubscribeVerdict,
    auth_on_subscribe_m5::SubscribeVerdictM5,
    on_unsubscribe::UnsubscribeVerdict,
    on_unsubscribe_m5::UnsubscribeVerdictM5,
    auth_on_publish::PublishVerdict,
    auth_on_publish_m5::PublishVerdictM5,
    auth_on_deliver::DeliverAuthVerdict,
    on_deliver::DeliverVerdict,
    on_deliver_m5::DeliverVerdictM5,
);

/// Counters per plugin version (a reload starts them again).
#[derive(Debug)]
pub struct Stats {
    pub calls: AtomicU64,
    /// Chain calls the plugin answered with its `error` value.
    pub errors: AtomicU64,
    /// Calls that failed (trap, fuel, memory, deadline, busy, disabled).
    pub failures: AtomicU64,
    /// Failures where the instance was lost: traps, fuel, memory, stack,
    /// deadline (a subset of `failures`).
    pub traps: AtomicU64,
    /// Calls cut at their deadline (a subset of `traps`).
    pub deadlines: AtomicU64,
    /// Calls that ran out of fuel (a subset of `traps`).
    pub out_of_fuel: AtomicU64,
    /// Calls that found no free instance within the deadline.
    pub busy: AtomicU64,
    /// Answers refused as invalid (a modifier out of range or past the
    /// operator's limits).
    pub invalid: AtomicU64,
    pub fuel_used: AtomicU64,
    pub instances_created: AtomicU64,
    /// The hooks `per_hook` holds, in [`Hook::ALL`] order.
    exports: HookSet,
    per_hook: Box<[HookStats]>,
}

/// One exported hook's figures. Aligned to a cache line, so that calls of
/// two hooks on two threads do not contend for one.
#[derive(Debug, Default)]
#[repr(align(64))]
struct HookStats {
    latency: Histogram,
    outcomes: [AtomicU64; Outcome::COUNT],
    /// `ok` answers then refused as invalid (counted under `ok` too).
    invalid: AtomicU64,
}

impl Stats {
    /// Zeroed counters for a plugin exporting `exports`.
    pub(crate) fn new(exports: HookSet) -> Self {
        Stats {
            calls: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            traps: AtomicU64::new(0),
            deadlines: AtomicU64::new(0),
            out_of_fuel: AtomicU64::new(0),
            busy: AtomicU64::new(0),
            invalid: AtomicU64::new(0),
            fuel_used: AtomicU64::new(0),
            instances_created: AtomicU64::new(0),
            exports,
            per_hook: exports.iter().map(|_| HookStats::default()).collect(),
        }
    }

    fn hook(&self, hook: Hook) -> Option<&HookStats> {
        if !self.exports.contains(hook) {
            return None;
        }
        self.per_hook.get(self.exports.rank(hook))
    }

    /// Records a call of `hook` that took `took` (wall time) and ended in
    /// `result`.
    pub(crate) fn record_call<R: Verdict>(
        &self,
        hook: Hook,
        took: Duration,
        result: &Result<R, CallFailure>,
    ) {
        let outcome = match result {
            Ok(answer) => {
                let outcome = answer.outcome();
                if outcome == Outcome::Error {
                    self.errors.fetch_add(1, Relaxed);
                }
                outcome
            }
            Err(failure) => {
                self.failures.fetch_add(1, Relaxed);
                if failure.is_trap() {
                    self.traps.fetch_add(1, Relaxed);
                }
                match failure {
                    CallFailure::Deadline(_) => self.deadlines.fetch_add(1, Relaxed),
                    CallFailure::OutOfFuel => self.out_of_fuel.fetch_add(1, Relaxed),
                    CallFailure::Busy(_) => self.busy.fetch_add(1, Relaxed),
                    _ => 0,
                };
                Outcome::of_failure(failure)
            }
        };
        if let Some(h) = self.hook(hook) {
            h.latency.record(took);
            h.outcomes[outcome as usize].fetch_add(1, Relaxed);
        }
    }

    /// Counts an `ok` answer of `hook` refused as invalid.
    pub(crate) fn record_invalid(&self, hook: Hook) {
        self.invalid.fetch_add(1, Relaxed);
        if let Some(h) = self.hook(hook) {
            h.invalid.fetch_add(1, Relaxed);
        }
    }

    /// Each exported hook's figures, in [`Hook::ALL`] order.
    pub fn hooks(&self) -> Vec<HookStatus> {
        self.exports
            .iter()
            .zip(self.per_hook.iter())
            .map(|(hook, h)| {
                let latency = h.latency.snapshot();
                HookStatus {
                    hook: hook.name(),
                    calls: latency.count(),
                    outcomes: OutcomeCounts(h.outcomes.each_ref().map(|c| c.load(Relaxed))),
                    invalid: h.invalid.load(Relaxed),
                    p50_micros: latency.quantile_micros(0.5),
                    p99_micros: latency.quantile_micros(0.99),
                    latency,
                }
            })
            .collect()
    }
}

/// One hook of a plugin, for `/plugins` and `/metrics`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct HookStatus {
    /// The WIT name.
    pub hook: &'static str,
    /// Calls counted in the histogram.
    pub calls: u64,
    /// Calls by outcome, keyed by the `outcome` label.
    pub outcomes: OutcomeCounts,
    /// `ok` answers then refused as invalid.
    pub invalid: u64,
    /// The median call's wall time, estimated from the histogram
    /// (microseconds; none before the first call).
    pub p50_micros: Option<f64>,
    /// The 99th percentile, likewise.
    pub p99_micros: Option<f64>,
    /// The histogram itself (in `/metrics`, not in the JSON).
    #[serde(skip)]
    pub latency: Latency,
}

/// Calls by [`Outcome`], in [`Outcome::ALL`] order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutcomeCounts(pub [u64; Outcome::COUNT]);

impl OutcomeCounts {
    pub fn get(&self, outcome: Outcome) -> u64 {
        self.0[outcome as usize]
    }

    /// Each outcome with its count.
    pub fn iter(&self) -> impl Iterator<Item = (Outcome, u64)> + '_ {
        Outcome::ALL.into_iter().zip(self.0)
    }
}

impl serde::Serialize for OutcomeCounts {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(Outcome::COUNT))?;
        for (outcome, n) in self.iter() {
            map.serialize_entry(outcome.label(), &n)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_counted_per_exported_hook_by_outcome() {
        let exports: HookSet = [Hook::AuthOnPublish, Hook::OnDeliver].into_iter().collect();
        let stats = Stats::new(exports);
        assert_eq!(stats.per_hook.len(), 2, "storage for exported hooks only");
        let us = Duration::from_micros;
        let next: Result<_, CallFailure> = Ok(on_deliver::DeliverVerdict::Next);
        stats.record_call(Hook::OnDeliver, us(3), &next);
        let ok: Result<_, CallFailure> = Ok(auth_on_publish::PublishVerdict::Ok(None));
        stats.record_call(Hook::AuthOnPublish, us(30), &ok);
        let error: Result<_, CallFailure> = Ok(auth_on_publish::PublishVerdict::Error("no".into()));
        stats.record_call(Hook::AuthOnPublish, us(30), &error);
        let fuel: Result<auth_on_publish::PublishVerdict, _> = Err(CallFailure::OutOfFuel);
        stats.record_call(Hook::AuthOnPublish, us(900), &fuel);
        // A hook the plugin does not export has nowhere to go.
        stats.record_call(Hook::OnPublish, us(3), &Ok::<(), CallFailure>(()));
        stats.record_invalid(Hook::AuthOnPublish);

        let hooks = stats.hooks();
        assert_eq!(hooks.len(), 2);
        let publish = &hooks[0];
        assert_eq!(publish.hook, "auth-on-publish");
        assert_eq!(publish.calls, 3);
        assert_eq!(publish.outcomes.get(Outcome::Ok), 1);
        assert_eq!(publish.outcomes.get(Outcome::Error), 1);
        assert_eq!(publish.outcomes.get(Outcome::Fuel), 1);
        assert_eq!(publish.outcomes.iter().map(|(_, n)| n).sum::<u64>(), 3);
        assert_eq!(publish.invalid, 1);
        assert_eq!(publish.latency.sum_nanos, 960_000);
        assert_eq!(hooks[1].hook, "on-deliver");
        assert_eq!(hooks[1].calls, 1);
        assert_eq!(hooks[1].outcomes.get(Outcome::Next), 1);
        assert_eq!(stats.errors.load(Relaxed), 1);
        assert_eq!(stats.invalid.load(Relaxed), 1);
        for counter in [&stats.failures, &stats.traps, &stats.out_of_fuel] {
            assert_eq!(counter.load(Relaxed), 1);
        }
        assert_eq!(stats.deadlines.load(Relaxed), 0);

        let json = serde_json::to_value(&hooks[1]).expect("JSON");
        assert_eq!(json["hook"], "on-deliver");
        assert_eq!(json["outcomes"]["next"], 1);
        assert_eq!(json["outcomes"]["ok"], 0);
        assert_eq!(json["p50_micros"], 2.5);
        assert!(json.get("latency").is_none(), "{json}");
    }

    #[test]
    fn verdicts_and_failures_have_their_outcome() {
        assert_eq!(().outcome(), Outcome::Ok);
        assert_eq!(
            on_auth_m5::AuthVerdict::Success(None).outcome(),
            Outcome::Ok
        );
        assert_eq!(
            on_auth_m5::AuthVerdict::ContinueAuthentication(None).outcome(),
            Outcome::Ok
        );
        assert_eq!(on_auth_m5::AuthVerdict::Next.outcome(), Outcome::Next);
        assert_eq!(
            auth_on_deliver::DeliverAuthVerdict::Error(String::new()).outcome(),
            Outcome::Error
        );
        for (failure, outcome) in [
            (CallFailure::Disabled, Outcome::Disabled),
            (CallFailure::Busy(Duration::ZERO), Outcome::Busy),
            (CallFailure::Deadline(Duration::ZERO), Outcome::Deadline),
            (CallFailure::OutOfFuel, Outcome::Fuel),
            (CallFailure::Memory, Outcome::Memory),
            (CallFailure::StackOverflow, Outcome::Trap),
            (CallFailure::Trap(String::new()), Outcome::Trap),
            (CallFailure::Instantiate(String::new()), Outcome::Trap),
            (CallFailure::Init(String::new()), Outcome::Trap),
        ] {
            assert_eq!(Outcome::of_failure(&failure), outcome, "{failure}");
        }
        let labels: Vec<&str> = Outcome::ALL.iter().map(|o| o.label()).collect();
        assert_eq!(
            labels,
            [
                "ok", "next", "error", "trap", "memory", "fuel", "deadline", "busy", "disabled"
            ]
        );
        assert!(
            Outcome::ALL
                .iter()
                .enumerate()
                .all(|(i, o)| *o as usize == i)
        );
    }
}
