//! The memory budget (`limits.max_memory_mb`): how much heap the broker
//! may hold, and how close it is.
//!
//! Heap use is counted by [`CountingAllocator`], a wrapper around the
//! system allocator that the `sluice` executable installs as its global
//! allocator. Each thread adds up its own allocations and frees and moves
//! the sum to one shared counter every [`FLUSH`] bytes, so the count is
//! exact to within `FLUSH` per thread and costs a thread-local addition per
//! allocation. A process that does not install it (a library user with its
//! own allocator) has no count, and the budget is then not enforced (the
//! broker says so at start).
//!
//! The broker reads [`Budget::pressure`] where new work arrives and
//! refuses it rather than grow: see `docs/config.md` for what each level
//! refuses.

#![allow(
    unsafe_code,
    reason = "a global allocator is an unsafe trait; it only forwards to the system allocator"
)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};

use crate::config::LimitsConfig;

/// Bytes a thread may allocate (or free) before it updates the shared
/// count.
pub const FLUSH: isize = 64 * 1024;

/// Heap bytes in use, as far as the threads have reported them.
static ALLOCATED: AtomicIsize = AtomicIsize::new(0);
/// Set by the first report to `ALLOCATED`.
static COUNTING: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// This thread's allocations not yet added to `ALLOCATED`. A `const`
    /// `Cell` of an integer: no lazy initialisation and no destructor, so
    /// using it inside the allocator cannot allocate or recurse.
    static UNREPORTED: Cell<isize> = const { Cell::new(0) };
}

fn record(delta: isize) {
    let reported = UNREPORTED.try_with(|cell| {
        let sum = cell.get() + delta;
        if sum.abs() >= FLUSH {
            ALLOCATED.fetch_add(sum, Ordering::Relaxed);
            COUNTING.store(true, Ordering::Relaxed);
            cell.set(0);
        } else {
            cell.set(sum);
        }
    });
    if reported.is_err() {
        ALLOCATED.fetch_add(delta, Ordering::Relaxed);
    }
}

/// The system allocator, counting the bytes in use.
#[derive(Debug, Default, Clone, Copy)]
pub struct CountingAllocator;

fn size(layout: Layout) -> isize {
    isize::try_from(layout.size()).unwrap_or(isize::MAX)
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged and returns its result; the counting touches only atomics and
// a destructor-free thread-local, and never allocates.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            record(size(layout));
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            record(size(layout));
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` through this allocator
        // with `layout` (the caller's contract).
        unsafe { System.dealloc(ptr, layout) };
        record(-size(layout));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `dealloc`, and `new_size` is the caller's.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            record(isize::try_from(new_size).unwrap_or(isize::MAX) - size(layout));
        }
        p
    }
}

/// Whether this process allocates through [`CountingAllocator`] (true
/// once a thread has reported [`FLUSH`] bytes, which every broker does
/// while it starts).
pub fn counting() -> bool {
    COUNTING.load(Ordering::Relaxed)
}

/// Heap bytes in use (0 without [`CountingAllocator`]).
pub fn allocated() -> usize {
    usize::try_from(ALLOCATED.load(Ordering::Relaxed)).unwrap_or(0)
}

/// How close the broker is to its budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Pressure {
    /// Below 90 %.
    Normal,
    /// 90 % or more: QoS 0 messages are dropped.
    High,
    /// 100 % or more: new work is refused.
    Over,
}

/// The memory budget.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    /// Bytes; `usize::MAX` when there is no count to compare with.
    limit: usize,
}

impl Budget {
    /// The budget `[limits]` sets (or the automatic one).
    pub fn from_config(c: &LimitsConfig) -> Self {
        let limit = match c.max_memory_mb {
            Some(mb) => usize::try_from(mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX),
            None => automatic(),
        };
        Budget { limit }
    }

    /// A budget of `bytes`.
    pub fn of(bytes: usize) -> Self {
        Budget { limit: bytes }
    }

    /// The budget in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Whether the budget is enforced (the allocator counts).
    pub fn enforced(&self) -> bool {
        counting()
    }

    /// The pressure now.
    pub fn pressure(&self) -> Pressure {
        self.pressure_at(allocated())
    }

    fn pressure_at(&self, used: usize) -> Pressure {
        if used >= self.limit {
            Pressure::Over
        } else if used >= self.limit / 10 * 9 {
            Pressure::High
        } else {
            Pressure::Normal
        }
    }

    /// Whether holding `extra` more bytes would take the broker over its
    /// budget.
    pub fn would_exceed(&self, extra: usize) -> bool {
        counting() && allocated().saturating_add(extra) >= self.limit
    }
}

/// Half of the memory this process may use: its cgroup's limit (v2
/// `memory.max`, v1 `memory.limit_in_bytes`) if it has one, else the
/// machine's memory; 1 GiB if neither can be read.
fn automatic() -> usize {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    let cgroup = read("/sys/fs/cgroup/memory.max")
        .or_else(|| read("/sys/fs/cgroup/memory/memory.limit_in_bytes"))
        .and_then(|s| s.trim().parse::<u64>().ok());
    let machine = read("/proc/meminfo").and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|kib| kib * 1024)
    });
    let total = match (cgroup, machine) {
        (Some(c), Some(m)) => c.min(m),
        (Some(x), None) | (None, Some(x)) => x,
        (None, None) => 2 << 30,
    };
    usize::try_from(total / 2).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pressure_levels() {
        let b = Budget::of(1000);
        assert_eq!(b.pressure_at(0), Pressure::Normal);
        assert_eq!(b.pressure_at(899), Pressure::Normal);
        assert_eq!(b.pressure_at(900), Pressure::High);
        assert_eq!(b.pressure_at(999), Pressure::High);
        assert_eq!(b.pressure_at(1000), Pressure::Over);
    }

    #[test]
    fn the_automatic_budget_is_some_of_the_machine() {
        let b = Budget::from_config(&LimitsConfig::default());
        assert!(b.limit() >= 64 << 20, "{}", b.limit());
        let b = Budget::from_config(&LimitsConfig {
            max_memory_mb: Some(64),
            ..LimitsConfig::default()
        });
        assert_eq!(b.limit(), 64 << 20);
    }
}
