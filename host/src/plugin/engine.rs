//! The process-wide wasmtime `Engine`, its production settings and the epoch ticker.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig,
    Strategy,
};

use super::limits::MAX_TABLE_ELEMENTS;
use crate::config::{LimitsConfig, Metering};
use crate::error::Error;

/// How often the epoch advances: the granularity of wall-clock limits, and how
/// often a long-running guest yields its thread to other tasks.
pub const EPOCH_TICK: Duration = Duration::from_millis(2);

/// Guest wasm stack; deep enough for real handlers, small enough that unbounded
/// recursion traps quickly.
pub const MAX_WASM_STACK: usize = 512 * 1024;

/// The largest linear memory a pool slot holds: all a 32-bit memory can address.
const MAX_SLOT_BYTES: usize = 4 << 30;

/// Sizing of the engine, derived from the plugins it will run.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Instances alive at once across all plugins (pool slots).
    pub max_instances: u32,
    /// The largest `limits.memory_mib` of any plugin, in bytes.
    pub max_memory_bytes: usize,
    /// The largest `limits.max_core_instances` of any plugin.
    pub max_core_instances: u32,
    /// The largest `limits.max_memories` of any plugin.
    pub max_memories: u32,
    /// The largest `limits.max_tables` of any plugin.
    pub max_tables: u32,
    /// Use the pooling allocator (preallocated slots, copy-on-write images).
    pub pooling: bool,
    /// Directory of the compiled-code cache (keyed by component bytes and
    /// engine settings; holds only code this host compiled). `None`: no cache.
    pub cache_dir: Option<std::path::PathBuf>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            max_instances: 64,
            max_memory_bytes: 64 << 20,
            max_core_instances: LimitsConfig::default().max_core_instances,
            max_memories: LimitsConfig::default().max_memories,
            max_tables: LimitsConfig::default().max_tables,
            pooling: true,
            cache_dir: None,
        }
    }
}

impl EngineOptions {
    /// These options with pool counts and memory raised to fit `limits`.
    pub fn fitting(mut self, limits: &LimitsConfig) -> EngineOptions {
        let memory =
            usize::try_from(limits.memory_mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
        self.max_memory_bytes = self.max_memory_bytes.max(memory);
        self.max_core_instances = self.max_core_instances.max(limits.max_core_instances);
        self.max_memories = self.max_memories.max(limits.max_memories);
        self.max_tables = self.max_tables.max(limits.max_tables);
        self
    }
}

/// The shared engine plus the thread that ticks its epoch; the thread stops
/// and is joined when the last handle is dropped.
pub struct WasmEngine {
    engine: Engine,
    /// The engine of `limits.metering = "epoch-only"` plugins: the same
    /// settings without fuel counting (compiled code differs, so it is an
    /// engine of its own, with its own pool), built when the first such
    /// plugin loads.
    unmetered: Arc<OnceLock<Engine>>,
    options: EngineOptions,
    ticker: Option<Ticker>,
}

struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl WasmEngine {
    /// Builds the engine: Cranelift, fuel, epochs, guard pages, bounded stack.
    pub fn new(options: &EngineOptions) -> Result<Arc<WasmEngine>, Error> {
        low_priority_compile_threads();
        let engine = build(options, Metering::Fuel)?;
        let unmetered = Arc::new(OnceLock::new());
        let ticker = Ticker::start(engine.clone(), unmetered.clone()).map_err(Error::Ticker)?;
        Ok(Arc::new(WasmEngine {
            engine,
            unmetered,
            options: options.clone(),
            ticker: Some(ticker),
        }))
    }

    /// The wasmtime engine of fuel-metered plugins (the default).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The compiled-code cache directory, if caching is on.
    pub(crate) fn cache_dir(&self) -> Option<&std::path::Path> {
        self.options.cache_dir.as_deref()
    }

    /// The wasmtime engine for a plugin's `limits.metering`.
    pub fn engine_for(&self, metering: Metering) -> Result<&Engine, Error> {
        match metering {
            Metering::Fuel => Ok(&self.engine),
            Metering::EpochOnly => {
                if let Some(engine) = self.unmetered.get() {
                    return Ok(engine);
                }
                let built = build(&self.options, Metering::EpochOnly)?;
                // A racing loader may have set it first; either is the same.
                Ok(self.unmetered.get_or_init(|| built))
            }
        }
    }
}

/// A wasmtime engine with the production settings and the given metering.
fn build(options: &EngineOptions, metering: Metering) -> Result<Engine, Error> {
    let mut config = Config::new();
    config
        .strategy(Strategy::Cranelift)
        .cranelift_opt_level(OptLevel::Speed)
        .wasm_component_model(true)
        .consume_fuel(metering == Metering::Fuel)
        .epoch_interruption(true)
        .max_wasm_stack(MAX_WASM_STACK)
        .async_stack_size(MAX_WASM_STACK + 1024 * 1024)
        .memory_init_cow(true);
    if options.pooling {
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool_config(options)));
    }
    // The compiled-code cache is the loader's (`code_cache.rs`); a directory
    // that cannot be made is bad config, said before anything loads.
    if let Some(dir) = &options.cache_dir {
        std::fs::create_dir_all(dir).map_err(|e| Error::CompileCache {
            dir: dir.clone(),
            detail: e.to_string(),
        })?;
    }
    let engine = Engine::new(&config).map_err(|e| {
        let detail = format!("{e:#}");
        // The pool reserves every slot's address space up front; its size
        // follows the config (`concurrency`), so this is bad input.
        if options.pooling && detail.contains("pool") {
            Error::PoolReservation {
                slots: pool_slots(options),
                detail,
            }
        } else {
            Error::EngineConfig { detail }
        }
    })?;
    Ok(engine)
}

/// Pool sizes derived from the plugins' per-instance limits (the largest of
/// each `limits.max_*` count): every component instance that passes its
/// plugin's limits finds its memories, tables and core instances in the pool, so the only way to exhaust the pool is to have
/// more component instances alive than `max_instances` (then instantiation
/// fails with a clear error and the entry is retried later).
fn pool_config(options: &EngineOptions) -> PoolingAllocationConfig {
    let slots = pool_slots(options);
    let (instances, memories, tables) = (
        options.max_core_instances.max(1),
        options.max_memories.max(1),
        options.max_tables.max(1),
    );
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(slots)
        .total_core_instances(slots.saturating_mul(instances))
        .max_core_instances_per_component(instances)
        .total_memories(slots.saturating_mul(memories))
        .max_memories_per_component(memories)
        .total_tables(slots.saturating_mul(tables))
        .max_tables_per_component(tables)
        .table_elements(MAX_TABLE_ELEMENTS)
        // One fiber stack per call in flight; at most one call per instance.
        .total_stacks(slots)
        // The largest `limits.memory_mib` of any plugin; each store's limiter
        // enforces its own plugin's (smaller or equal) budget. A 32-bit
        // memory cannot pass 4 GiB, and the pool refuses slots larger than
        // the 4 GiB reservation, so a larger setting means "no cap but 4 GiB".
        .max_memory_size(options.max_memory_bytes.min(MAX_SLOT_BYTES))
        // Reset a freed slot by rewriting only the pages the guest dirtied
        // (found with PAGEMAP_SCAN where the kernel has it, Linux 6.7+)
        // instead of `madvise`: with `isolation = "per-message"` the
        // madvise calls, their TLB-shootdown IPIs and the page faults that
        // follow were most of the cost of an entry (BENCHMARKS.md).
        .linear_memory_keep_resident(KEEP_RESIDENT)
        .table_keep_resident(KEEP_RESIDENT)
        .pagemap_scan(Enabled::Auto);
    pool
}

/// Builds rayon's global pool, where wasmtime compiles functions in
/// parallel, with threads at a low CPU priority (nice 10): a hot-swap
/// candidate being compiled then takes only CPU the running plugins leave
/// idle. Once per process; if the pool exists already, it is left as is.
fn low_priority_compile_threads() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let built = rayon::ThreadPoolBuilder::new()
            .thread_name(|i| format!("compile-{i}"))
            .start_handler(|_| {
                // On Linux, PRIO_PROCESS with 0 names the calling thread.
                // SAFETY: setpriority only reads its integer arguments.
                unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 10) };
            })
            .build_global();
        if let Err(e) = built {
            tracing::debug!(error = %e, "compile threads keep their priority");
        }
    });
}

fn pool_slots(options: &EngineOptions) -> u32 {
    options.max_instances.max(8)
}

/// Bytes of a freed memory or table reset in place rather than decommitted.
const KEEP_RESIDENT: usize = 2 << 20;

impl Drop for WasmEngine {
    fn drop(&mut self) {
        if let Some(mut ticker) = self.ticker.take() {
            ticker.stop.store(true, Ordering::Relaxed);
            if let Some(thread) = ticker.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

impl Ticker {
    fn start(engine: Engine, unmetered: Arc<OnceLock<Engine>>) -> std::io::Result<Ticker> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("epoch-ticker".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                    if let Some(unmetered) = unmetered.get() {
                        unmetered.increment_epoch();
                    }
                }
            })?;
        Ok(Ticker {
            stop,
            thread: Some(thread),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_limits_beyond_4_gib_still_build_an_engine() {
        let options = EngineOptions {
            max_instances: 8,
            max_memory_bytes: 8 << 30,
            ..EngineOptions::default()
        };
        assert!(WasmEngine::new(&options).is_ok());
    }

    #[test]
    fn a_cache_dir_that_cannot_be_made_is_named() {
        let file = tempfile::NamedTempFile::new().expect("temp file");
        let dir = file.path().join("cache");
        let options = EngineOptions {
            cache_dir: Some(dir.clone()),
            ..EngineOptions::default()
        };
        match WasmEngine::new(&options) {
            Err(crate::error::Error::CompileCache { dir: named, .. }) => assert_eq!(named, dir),
            Err(other) => panic!("{other}"),
            Ok(_) => panic!("a cache dir under a file was accepted"),
        }
    }
}
