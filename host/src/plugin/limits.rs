//! Per-instance resource limits: the memory budget shared by all linear
//! memories and tables of an instance, the counts of instances, memories and
//! tables a store may create, and the remembering of refusals so a trap that
//! follows is classified as "memory limit".
//!
//! The pooling allocator (see `engine.rs`) is sized from the same constants,
//! so a component that passes these limits always finds a pool slot.

use wasmtime::ResourceLimiter;

/// Linear memories one instance may create. Rust components have one.
pub const MAX_MEMORIES: u32 = 2;
/// Tables one instance may create (the main module's, plus the small
/// indirection tables `wit-component` adds for imports).
pub const MAX_TABLES: u32 = 8;
/// Core module instances one component instance may create.
pub const MAX_CORE_INSTANCES: u32 = 16;
/// Elements one table may hold. Also the pooling allocator's per-table slot size.
pub const MAX_TABLE_ELEMENTS: usize = 20_000;
/// What one table element is charged against the memory budget: a funcref is
/// a pointer in wasmtime's table representation.
const TABLE_ELEMENT_BYTES: usize = std::mem::size_of::<usize>();

/// A [`ResourceLimiter`] that charges every memory and table of an instance
/// against one byte budget (`limits.memory_mib`) and traps on any refused or
/// failed grow. `refused` tells the classifier why the trap happened.
pub struct Limiter {
    /// The budget for all memories and tables together, in bytes.
    budget: usize,
    /// Bytes currently granted to memories and tables.
    used: usize,
    /// Set when a grow was refused or failed; reset per invocation.
    pub(crate) refused: bool,
}

impl Limiter {
    /// A limiter with `budget` bytes for all memories and tables of one instance.
    pub fn new(budget: usize) -> Limiter {
        Limiter {
            budget,
            used: 0,
            refused: false,
        }
    }

    /// Bytes granted so far to all memories and tables.
    pub fn used(&self) -> usize {
        self.used
    }

    /// Grants `current -> desired` if the total stays within the budget.
    /// Creation is reported by wasmtime as growth from 0, so it is charged too.
    fn grow(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> bool {
        let extra = desired.saturating_sub(current);
        let within_type = maximum.is_none_or(|max| desired <= max);
        match self.used.checked_add(extra) {
            Some(total) if total <= self.budget && within_type => {
                self.used = total;
                true
            }
            _ => false,
        }
    }

    /// A refusal is a trap (not a `-1` the guest could ignore and retry in a loop).
    fn refuse(&mut self, what: &str, desired: usize) -> wasmtime::Result<bool> {
        self.refused = true;
        Err(wasmtime::Error::msg(format!(
            "growing {what} to {desired} would exceed the instance's budget of {} bytes (limits.memory_mib; {} bytes in use)",
            self.budget, self.used
        )))
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if self.grow(current, desired, maximum) {
            Ok(true)
        } else {
            self.refuse("a linear memory", desired)
        }
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.refused = true;
        Err(error.context("growing a linear memory failed"))
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let bytes = |elements: usize| elements.saturating_mul(TABLE_ELEMENT_BYTES);
        let within_cap = desired <= MAX_TABLE_ELEMENTS;
        let max_bytes = maximum.map(bytes);
        if within_cap && self.grow(bytes(current), bytes(desired), max_bytes) {
            Ok(true)
        } else {
            self.refuse("a table", desired)
        }
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.refused = true;
        Err(error.context("growing a table failed"))
    }

    fn instances(&self) -> usize {
        MAX_CORE_INSTANCES as usize
    }

    fn tables(&self) -> usize {
        MAX_TABLES as usize
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_memories_and_tables_share_one_budget() {
        let mut l = Limiter::new(10 << 20);
        assert!(l.memory_growing(0, 4 << 20, None).unwrap());
        assert!(l.memory_growing(0, 4 << 20, None).unwrap());
        // A third memory of 4 MiB would pass a per-memory limit; not the shared one.
        assert!(l.memory_growing(0, 4 << 20, None).is_err());
        assert!(l.refused);
        assert_eq!(l.used(), 8 << 20);
        assert!(l.table_growing(0, 1000, None).unwrap());
        assert_eq!(l.used(), (8 << 20) + 1000 * TABLE_ELEMENT_BYTES);
    }

    #[test]
    fn growth_is_charged_by_its_increment() {
        let mut l = Limiter::new(8 << 20);
        assert!(l.memory_growing(0, 1 << 20, None).unwrap());
        assert!(l.memory_growing(1 << 20, 8 << 20, None).unwrap());
        assert!(!l.refused);
        assert!(l.memory_growing(8 << 20, (8 << 20) + 65536, None).is_err());
    }

    #[test]
    fn declared_maximum_and_table_cap_are_enforced() {
        let mut l = Limiter::new(usize::MAX);
        assert!(l.memory_growing(0, 2 << 20, Some(1 << 20)).is_err());
        let mut l = Limiter::new(usize::MAX);
        assert!(l.table_growing(0, MAX_TABLE_ELEMENTS + 1, None).is_err());
        assert!(l.refused);
    }

    #[test]
    fn failed_grows_trap_and_are_remembered() {
        let mut l = Limiter::new(1 << 20);
        let err = l
            .memory_grow_failed(wasmtime::Error::msg("mmap failed"))
            .unwrap_err();
        assert!(
            format!("{err:#}").contains("growing a linear memory failed"),
            "{err:#}"
        );
        assert!(l.refused);
    }
}
