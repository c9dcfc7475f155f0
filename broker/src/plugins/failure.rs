//! Why a hook call produced no answer ([`CallFailure`]): what wasmtime's
//! errors mean for a call, and how each failure counts (against the
//! client, against the plugin's circuit breaker, as a lost instance).

use std::time::Duration;

use wasmtime::Trap;

use super::limiter::LimitExceeded;

/// Why a hook call produced no answer.
#[derive(Clone, Debug, thiserror::Error)]
pub enum CallFailure {
    #[error("disabled by its circuit breaker after repeated failures")]
    Disabled,
    #[error("no instance became free within the deadline of {0:?}")]
    Busy(Duration),
    #[error("missed its deadline of {0:?}")]
    Deadline(Duration),
    #[error("ran out of fuel")]
    OutOfFuel,
    #[error("exceeded its memory limit")]
    Memory,
    #[error("overflowed its stack")]
    StackOverflow,
    #[error("trapped: {0}")]
    Trap(String),
    #[error("could not be instantiated: {0}")]
    Instantiate(String),
    #[error("init failed: {0}")]
    Init(String),
}

impl CallFailure {
    /// Whether the call used up a limit its request can drive: the
    /// deadline, fuel, memory, or no free instance. A client whose requests
    /// do this is slowed down; it never disables the plugin for everyone.
    pub fn is_overrun(&self) -> bool {
        matches!(
            self,
            CallFailure::Busy(_)
                | CallFailure::Deadline(_)
                | CallFailure::OutOfFuel
                | CallFailure::Memory
        )
    }

    /// Whether it is the plugin's own fault (a trap, a failed
    /// instantiation): what the circuit breaker counts.
    pub fn is_fault(&self) -> bool {
        matches!(
            self,
            CallFailure::StackOverflow
                | CallFailure::Trap(_)
                | CallFailure::Instantiate(_)
                | CallFailure::Init(_)
        )
    }

    /// Whether the instance was lost to it (a trap or a host limit).
    pub fn is_trap(&self) -> bool {
        matches!(
            self,
            CallFailure::Deadline(_)
                | CallFailure::OutOfFuel
                | CallFailure::Memory
                | CallFailure::StackOverflow
                | CallFailure::Trap(_)
        )
    }

    /// The failure `e` is, for a call with `deadline`.
    pub(super) fn from_wasmtime(e: &wasmtime::Error, deadline: Duration) -> Self {
        if e.downcast_ref::<LimitExceeded>().is_some() {
            return CallFailure::Memory;
        }
        match e.downcast_ref::<Trap>() {
            // Only the epoch callback interrupts: the deadline passed.
            Some(Trap::Interrupt) => CallFailure::Deadline(deadline),
            Some(Trap::OutOfFuel) => CallFailure::OutOfFuel,
            Some(Trap::StackOverflow) => CallFailure::StackOverflow,
            Some(Trap::MemoryOutOfBounds) | Some(Trap::AllocationTooLarge) => CallFailure::Memory,
            _ => {
                let text = format!("{e:#}");
                // A memory whose minimum size is already past the budget
                // fails at instantiation with a plain error.
                if text.contains("memory minimum size") {
                    CallFailure::Memory
                } else {
                    CallFailure::Trap(text)
                }
            }
        }
    }
}
