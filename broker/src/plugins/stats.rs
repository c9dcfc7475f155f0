//! A plugin's call statistics: counters per plugin version, updated with
//! relaxed atomic adds on the call path and read by `Plugins::status` for
//! `/plugins` and `/metrics`.

use std::sync::atomic::AtomicU64;

/// Counters per plugin version (a reload starts them again).
#[derive(Debug, Default)]
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
}
