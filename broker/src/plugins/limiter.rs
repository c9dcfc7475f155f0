//! What one plugin instance may hold: one budget for all its linear
//! memories and tables together (a component can contain many core
//! modules, each with its own memory and tables, so a per-memory cap would
//! not bound the instance), and caps on how many core instances, memories
//! and tables it may create. Growing past the budget traps the call with
//! [`LimitExceeded`], which the call wrapper reports as a memory failure.

use wasmtime::ResourceLimiter;

/// Bytes a table element is counted as: Wasmtime keeps a pointer per
/// element, and the instance's bookkeeping some more.
pub const TABLE_ELEMENT_BYTES: usize = 16;
/// Core instances a plugin instance may create (a Rust component has a
/// handful; interpreters packed as components a few dozen).
pub const MAX_INSTANCES: usize = 256;
/// Linear memories a plugin instance may create.
pub const MAX_MEMORIES: usize = 64;
/// Tables a plugin instance may create.
pub const MAX_TABLES: usize = 256;
/// Host resources (WASI streams and pollables, lent payloads) a plugin
/// instance may hold at once.
pub const MAX_HOST_RESOURCES: usize = 4096;

/// A plugin instance went past its memory budget.
#[derive(Debug, thiserror::Error)]
#[error("plugin instance would hold {wanted} bytes of memories and tables, more than its {budget}")]
pub struct LimitExceeded {
    pub wanted: usize,
    pub budget: usize,
}

/// The limiter of one instance's store.
#[derive(Debug)]
pub struct InstanceLimits {
    /// Bytes of linear memory and table elements together.
    budget: usize,
    /// Bytes granted so far.
    used: usize,
}

impl InstanceLimits {
    /// Limits with `budget` bytes for every memory and table together.
    pub fn new(budget: usize) -> Self {
        InstanceLimits { budget, used: 0 }
    }

    /// Bytes of memories and tables the instance holds.
    pub fn used(&self) -> usize {
        self.used
    }

    fn grow(&mut self, more: usize) -> wasmtime::Result<bool> {
        let wanted = self.used.saturating_add(more);
        if wanted > self.budget {
            return Err(LimitExceeded {
                wanted,
                budget: self.budget,
            }
            .into());
        }
        self.used = wanted;
        Ok(true)
    }
}

impl ResourceLimiter for InstanceLimits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.grow(desired.saturating_sub(current))
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        // The growth was counted when it was allowed; the instance is lost
        // with the call anyway, so the count need not be exact after this.
        Ok(())
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let more = desired.saturating_sub(current);
        self.grow(more.saturating_mul(TABLE_ELEMENT_BYTES))
    }

    fn table_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        Ok(())
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memories_and_tables_share_one_budget() {
        let mut l = InstanceLimits::new(1 << 20);
        assert!(l.memory_growing(0, 512 << 10, None).unwrap());
        // A second memory: the sum counts, not each one.
        assert!(l.memory_growing(0, 256 << 10, None).unwrap());
        let e = l.memory_growing(0, 512 << 10, None).unwrap_err();
        assert!(e.downcast_ref::<LimitExceeded>().is_some(), "{e}");
        // Tables count their elements.
        assert!(l.table_growing(0, 1000, None).unwrap());
        assert_eq!(l.used(), (768 << 10) + 1000 * TABLE_ELEMENT_BYTES);
        let e = l.table_growing(1000, 1_000_000, None).unwrap_err();
        assert!(e.downcast_ref::<LimitExceeded>().is_some(), "{e}");
    }
}
