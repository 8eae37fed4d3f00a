//! Per-instance resource limits: the memory budget shared by all linear
//! memories and tables of an instance, the counts of instances, memories and
//! tables a store may create, and the remembering of refusals so a trap that
//! follows is classified as "memory limit".
//!
//! The counts are the plugin's `limits.max_core_instances`, `max_memories`
//! and `max_tables`; the pooling allocator (see `engine.rs`) is sized from the
//! largest of each, so a component that passes these limits finds a pool slot.

use wasmtime::ResourceLimiter;

/// Elements one table may hold. Also the pooling allocator's per-table slot size.
pub const MAX_TABLE_ELEMENTS: usize = 20_000;
/// What one table element is charged against the memory budget: a funcref is
/// a pointer in wasmtime's table representation.
const TABLE_ELEMENT_BYTES: usize = std::mem::size_of::<usize>();

/// Wasmtime's refusals (the pool's at compile time, the store's limiter's at
/// instantiation) name its own settings or none: say which key raises them.
pub(crate) fn name_the_key(detail: String) -> String {
    let has = |needles: &[&str]| needles.iter().any(|n| detail.contains(n));
    let key = if has(&["core module instances", "instance count too high"]) {
        "limits.max_core_instances"
    } else if has(&["linear memories", "memory count too high"]) {
        "limits.max_memories"
    } else if has(&["tables, which", "table count too high"]) {
        "limits.max_tables"
    } else if has(&["memory does not fit"]) {
        "limits.memory_mib"
    } else {
        return detail;
    };
    format!("{detail} (raise {key})")
}

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
    counts: Counts,
}

/// How many core instances, memories and tables one instance may create.
#[derive(Debug, Clone, Copy)]
pub struct Counts {
    /// `limits.max_core_instances`.
    pub core_instances: u32,
    /// `limits.max_memories`.
    pub memories: u32,
    /// `limits.max_tables`.
    pub tables: u32,
}

impl Counts {
    /// The counts of a plugin's limits.
    pub fn of(limits: &crate::config::LimitsConfig) -> Counts {
        Counts {
            core_instances: limits.max_core_instances,
            memories: limits.max_memories,
            tables: limits.max_tables,
        }
    }
}

impl Limiter {
    /// A limiter with `budget` bytes for all memories and tables of one instance.
    pub fn new(budget: usize, counts: Counts) -> Limiter {
        Limiter {
            budget,
            used: 0,
            refused: false,
            counts,
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
        self.counts.core_instances as usize
    }

    fn tables(&self) -> usize {
        self.counts.tables as usize
    }

    fn memories(&self) -> usize {
        self.counts.memories as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts() -> Counts {
        Counts::of(&crate::config::LimitsConfig::default())
    }

    #[test]
    fn all_memories_and_tables_share_one_budget() {
        let mut l = Limiter::new(10 << 20, counts());
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
        let mut l = Limiter::new(8 << 20, counts());
        assert!(l.memory_growing(0, 1 << 20, None).unwrap());
        assert!(l.memory_growing(1 << 20, 8 << 20, None).unwrap());
        assert!(!l.refused);
        assert!(l.memory_growing(8 << 20, (8 << 20) + 65536, None).is_err());
    }

    #[test]
    fn declared_maximum_and_table_cap_are_enforced() {
        let mut l = Limiter::new(usize::MAX, counts());
        assert!(l.memory_growing(0, 2 << 20, Some(1 << 20)).is_err());
        let mut l = Limiter::new(usize::MAX, counts());
        assert!(l.table_growing(0, MAX_TABLE_ELEMENTS + 1, None).is_err());
        assert!(l.refused);
    }

    #[test]
    fn failed_grows_trap_and_are_remembered() {
        let mut l = Limiter::new(1 << 20, counts());
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
