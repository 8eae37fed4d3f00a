//! Loading components: size and format checks, the import allow-list, the
//! world check, compilation, and pre-instantiation.

use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, HasSelf, Linker};

use super::bindings::WIT_PACKAGES;
use super::bindings::{v0_1, v0_2};
use super::engine::WasmEngine;
use super::native::{Code, InvocationTap, NativeHandler, Pre};
use super::preflight;
use super::state::HostState;
use crate::config::LimitsConfig;
use crate::effects::EffectPolicy;
use crate::error::LoadError;

/// Import prefixes a handler may use. Every one is linked with no ambient
/// authority (see `state.rs` and SECURITY.md): no preopened directories, an
/// empty environment and no arguments, stdin empty, stdout and stderr into the
/// plugin's bounded log, and `wasi:sockets` linked with every operation
/// denied (no address allowed, no name lookup, no TCP, no UDP), because stock
/// toolchains (CPython's libc in componentize-py) import it whatever the world.
pub const ALLOWED_IMPORTS: &[&str] = &[
    "streamhost:plugin/",
    "wasi:cli/environment@",
    "wasi:cli/exit@",
    "wasi:cli/stdin@",
    "wasi:cli/stdout@",
    "wasi:cli/stderr@",
    "wasi:cli/terminal-",
    "wasi:io/",
    "wasi:clocks/",
    "wasi:random/",
    "wasi:filesystem/",
    "wasi:sockets/",
];

const ALLOWED_SUMMARY: &str = "streamhost:plugin/*, wasi:cli (environment, exit, stdio, terminal), wasi:io, wasi:clocks, wasi:random, wasi:filesystem (no preopens), wasi:sockets (every operation denied)";

/// A validated, compiled, pre-linked handler component. Clones share the
/// compiled code.
#[derive(Clone)]
pub struct LoadedPlugin {
    /// The plugin name from the config.
    pub name: Arc<str>,
    /// `sha256:<hex>` of the component bytes: the version that handled an entry.
    pub digest: Arc<str>,
    /// Per-invocation limits.
    pub limits: LimitsConfig,
    /// What the plugin's effects may touch (default: nothing).
    pub effects: Arc<EffectPolicy>,
    /// The component, or a native function (see `native.rs`).
    pub(crate) code: Code,
    pub(crate) engine: Arc<WasmEngine>,
    /// Sees every invocation as it returns (the benchmark's latency probe).
    pub(crate) tap: Option<InvocationTap>,
    /// Effect functions the component imports (`emit`, `kv-get`, ...).
    pub effects_used: Vec<String>,
    /// The WIT package the component was built against (one of
    /// [`WIT_PACKAGES`]; a native plugin's is the current one).
    pub wit_package: &'static str,
}

impl LoadedPlugin {
    /// Reads, validates and compiles a component file. CPU-heavy: call from a blocking thread.
    pub fn load_file(
        engine: &Arc<WasmEngine>,
        name: &str,
        path: &Path,
        limits: &LimitsConfig,
    ) -> Result<LoadedPlugin, LoadError> {
        let bytes = read_component(name, path, limits)?;
        LoadedPlugin::load_bytes(engine, name, &bytes, &path.display().to_string(), limits)
    }

    /// Validates and compiles component bytes; `what` names their origin in errors.
    pub fn load_bytes(
        engine: &Arc<WasmEngine>,
        name: &str,
        bytes: &[u8],
        what: &str,
        limits: &LimitsConfig,
    ) -> Result<LoadedPlugin, LoadError> {
        check_size(name, bytes.len() as u64, limits)?;
        check_format(name, bytes, what)?;
        let shape = preflight::shape(bytes).map_err(|detail| LoadError::Malformed {
            plugin: name.to_owned(),
            what: what.to_owned(),
            detail,
        })?;
        check_imports(name, &shape)?;
        check_cost(name, &shape, limits)?;
        let wasm_engine = engine;
        let engine = engine
            .engine_for(limits.metering)
            .map_err(|e| LoadError::Compile {
                plugin: name.to_owned(),
                detail: e.to_string(),
            })?;
        let digest = digest(bytes);
        let component =
            super::code_cache::component(engine, wasm_engine.cache_dir(), &digest, bytes).map_err(
                |e| LoadError::Compile {
                    plugin: name.to_owned(),
                    detail: super::limits::name_the_key(format!("{e:#}")),
                },
            )?;
        check_exports(name, engine, &component)?;
        let linker = linker(engine).map_err(|e| LoadError::Compile {
            plugin: name.to_owned(),
            detail: format!("{e:#}"),
        })?;
        let instance_pre =
            linker
                .instantiate_pre(&component)
                .map_err(|e| LoadError::WrongWorld {
                    plugin: name.to_owned(),
                    detail: format!("{e:#}"),
                })?;
        let pre = handler_pre(&shape, instance_pre).map_err(|e| LoadError::WrongWorld {
            plugin: name.to_owned(),
            detail: format!("{e:#}"),
        })?;
        Ok(LoadedPlugin {
            name: name.into(),
            digest: digest.into(),
            limits: limits.clone(),
            effects: Arc::new(EffectPolicy::deny_all(name)),
            wit_package: match pre {
                Pre::Current(_) => WIT_PACKAGES[0],
                Pre::V0_1(_) => WIT_PACKAGES[1],
            },
            code: Code::Wasm(pre),
            engine: wasm_engine.clone(),
            tap: None,
            effects_used: shape.effects_used,
        })
    }
}

impl LoadedPlugin {
    /// Grants the effect capabilities of a plugin's config.
    pub fn with_effects(mut self, policy: EffectPolicy) -> LoadedPlugin {
        self.effects = Arc::new(policy);
        self
    }
}

/// Reads a component file, never more than `limits.max_component_mib` (+1
/// byte, to tell "too large"), whatever the file is. It is opened without
/// blocking (opening a FIFO otherwise waits for a writer) and refused unless
/// the opened file is a regular one (`/dev/zero` never ends); a regular file
/// that grows while read is cut off at the limit.
pub fn read_component(
    name: &str,
    path: &Path,
    limits: &LimitsConfig,
) -> Result<Vec<u8>, LoadError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let read_err = |source| LoadError::Read {
        plugin: name.to_owned(),
        path: path.to_owned(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(read_err)?;
    let kind = file.metadata().map_err(read_err)?.file_type();
    if !kind.is_file() {
        return Err(LoadError::NotAFile {
            plugin: name.to_owned(),
            path: path.to_owned(),
            kind: file_kind(&kind),
        });
    }
    let limit = limits.max_component_mib.saturating_mul(1 << 20);
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    check_size(name, bytes.len() as u64, limits)?;
    Ok(bytes)
}

fn file_kind(kind: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "a special file"
    }
}

/// Waits for the right to compile a hot-swap candidate: one at a time per
/// process, so deploys never compile in parallel beside running plugins.
pub async fn candidate_permit() -> tokio::sync::SemaphorePermit<'static> {
    static CANDIDATES: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);
    // Never closed, so acquiring cannot fail; fall back to waiting forever
    // rather than panicking if it ever were.
    match CANDIDATES.acquire().await {
        Ok(permit) => permit,
        Err(_) => std::future::pending().await,
    }
}

/// `sha256:<hex>` of some bytes.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn check_size(name: &str, size: u64, limits: &LimitsConfig) -> Result<(), LoadError> {
    let limit = limits.max_component_mib.saturating_mul(1 << 20);
    if size > limit {
        return Err(LoadError::TooLarge {
            plugin: name.to_owned(),
            size,
            limit,
        });
    }
    Ok(())
}

/// Tells apart random bytes, core modules and components before compiling,
/// because wasmtime's own message for a core module is cryptic to users.
fn check_format(name: &str, bytes: &[u8], what: &str) -> Result<(), LoadError> {
    let not_component = |hint| LoadError::NotAComponent {
        plugin: name.to_owned(),
        what: what.to_owned(),
        hint,
    };
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(not_component(
            " (it is not WebAssembly at all: no `\\0asm` header)",
        ));
    }
    if bytes[4..8] == [1, 0, 0, 0] {
        return Err(not_component(
            " (it is a core Wasm module; build the handler with `--target wasm32-wasip2`, which produces a component)",
        ));
    }
    Ok(())
}

/// Every import outside [`ALLOWED_IMPORTS`], listed in one error (wasmtime's
/// linker would refuse them too, but only after compiling, and one at a time).
fn check_imports(name: &str, shape: &preflight::Shape) -> Result<(), LoadError> {
    let refused: Vec<&str> = shape
        .imports
        .iter()
        .filter(|i| !ALLOWED_IMPORTS.iter().any(|p| i.starts_with(p)))
        .map(String::as_str)
        .collect();
    if refused.is_empty() {
        return Ok(());
    }
    Err(LoadError::ForbiddenImport {
        plugin: name.to_owned(),
        imports: refused.join("`, `"),
        count: refused.len(),
        allowed: ALLOWED_SUMMARY,
    })
}

/// What compiling and instantiating would cost, against the plugin's limits.
fn check_cost(
    name: &str,
    shape: &preflight::Shape,
    limits: &LimitsConfig,
) -> Result<(), LoadError> {
    let mib = |bytes: u64| bytes.div_ceil(1 << 20);
    let checks: [(&str, u64, u64, &str); 7] = [
        (
            "functions",
            shape.functions,
            limits.max_functions,
            "limits.max_functions",
        ),
        (
            "MiB of function bodies",
            mib(shape.code_bytes),
            limits.max_code_mib,
            "limits.max_code_mib",
        ),
        (
            "KiB in its largest function",
            shape.largest_function.div_ceil(1024),
            limits.max_function_kib,
            "limits.max_function_kib",
        ),
        (
            "core module instances",
            shape.core_instances,
            u64::from(limits.max_core_instances),
            "limits.max_core_instances",
        ),
        (
            "linear memories",
            shape.memories,
            u64::from(limits.max_memories),
            "limits.max_memories",
        ),
        (
            "tables",
            shape.tables,
            u64::from(limits.max_tables),
            "limits.max_tables",
        ),
        (
            "MiB of initial linear memory",
            mib(shape.largest_memory),
            limits.memory_mib,
            "limits.memory_mib",
        ),
    ];
    for (what, found, limit, key) in checks {
        if found > limit {
            return Err(LoadError::TooCostly {
                plugin: name.to_owned(),
                what,
                found,
                limit,
                key,
            });
        }
    }
    Ok(())
}

fn check_exports(
    name: &str,
    engine: &wasmtime::Engine,
    component: &Component,
) -> Result<(), LoadError> {
    let ty = component.component_type();
    let names: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_owned()).collect();
    let has_handle = ty
        .exports(engine)
        .any(|(n, item)| n == "handle" && matches!(item.ty, ComponentItem::ComponentFunc(_)));
    if !has_handle {
        let found = if names.is_empty() {
            "it exports nothing".to_owned()
        } else {
            format!("it exports {}", names.join(", "))
        };
        return Err(LoadError::WrongWorld {
            plugin: name.to_owned(),
            detail: format!("missing export `handle` ({found})"),
        });
    }
    Ok(())
}

fn linker(engine: &wasmtime::Engine) -> wasmtime::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    add_wasi_to_linker(&mut linker)?;
    // Both versions' imports are linked (their names carry the version);
    // a component uses those of the package it was built against.
    v0_2::Handler::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)?;
    v0_1::Handler::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)?;
    Ok(linker)
}

/// The component's `handle`, typed by the WIT package it was built against:
/// the one its imports name (a world's `use` imports the `types` interface),
/// else whichever version's `message` its export takes. The error is that
/// of the version the component names, or of the current one.
fn handler_pre(
    shape: &preflight::Shape,
    instance_pre: wasmtime::component::InstancePre<HostState>,
) -> wasmtime::Result<Pre> {
    let old = shape
        .imports
        .iter()
        .any(|i| i.starts_with("streamhost:plugin/") && i.ends_with("@0.1.0"));
    if old {
        return v0_1::HandlerPre::new(instance_pre).map(Pre::V0_1);
    }
    match v0_2::HandlerPre::new(instance_pre.clone()) {
        Ok(pre) => Ok(Pre::Current(pre)),
        Err(current) => v0_1::HandlerPre::new(instance_pre)
            .map(Pre::V0_1)
            .map_err(|_| current),
    }
}

/// The WASI interfaces of [`ALLOWED_IMPORTS`] and nothing else (the same set
/// as `wasmtime_wasi::p2::add_to_linker_async`, spelled out so that adding an
/// interface is a visible decision). Sockets are linked, and the context of
/// every store denies every socket operation (`HostState::new`).
fn add_wasi_to_linker(l: &mut Linker<HostState>) -> wasmtime::Result<()> {
    use wasmtime_wasi::WasiView;
    use wasmtime_wasi::cli::{WasiCli, WasiCliView as _};
    use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView as _};
    use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemView as _};
    use wasmtime_wasi::p2::bindings::{cli, clocks, filesystem, io, random, sockets};
    use wasmtime_wasi::random::{WasiRandom, WasiRandomView as _};
    use wasmtime_wasi::sockets::{WasiSockets, WasiSocketsView as _};
    type T = HostState;

    io::error::add_to_linker::<T, WasiIo>(l, |t| t.ctx().table)?;
    io::poll::add_to_linker::<T, WasiIo>(l, |t| t.ctx().table)?;
    io::streams::add_to_linker::<T, WasiIo>(l, |t| t.ctx().table)?;
    clocks::wall_clock::add_to_linker::<T, WasiClocks>(l, T::clocks)?;
    clocks::monotonic_clock::add_to_linker::<T, WasiClocks>(l, T::clocks)?;
    random::random::add_to_linker::<T, WasiRandom>(l, T::random)?;
    random::insecure::add_to_linker::<T, WasiRandom>(l, T::random)?;
    random::insecure_seed::add_to_linker::<T, WasiRandom>(l, T::random)?;
    cli::exit::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::environment::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::stdin::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::stdout::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::stderr::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_input::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_output::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_stdin::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_stdout::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_stderr::add_to_linker::<T, WasiCli>(l, T::cli)?;
    filesystem::types::add_to_linker::<T, WasiFilesystem>(l, T::filesystem)?;
    filesystem::preopens::add_to_linker::<T, WasiFilesystem>(l, T::filesystem)?;
    sockets::network::add_to_linker::<T, WasiSockets>(l, &Default::default(), T::sockets)?;
    sockets::instance_network::add_to_linker::<T, WasiSockets>(l, T::sockets)?;
    sockets::ip_name_lookup::add_to_linker::<T, WasiSockets>(l, T::sockets)?;
    sockets::tcp::add_to_linker::<T, WasiSockets>(l, T::sockets)?;
    sockets::tcp_create_socket::add_to_linker::<T, WasiSockets>(l, T::sockets)?;
    sockets::udp::add_to_linker::<T, WasiSockets>(l, T::sockets)?;
    sockets::udp_create_socket::add_to_linker::<T, WasiSockets>(l, T::sockets)?;
    Ok(())
}

/// `wasi:io` host functions work on the resource table alone.
struct WasiIo;

impl wasmtime::component::HasData for WasiIo {
    type Data<'a> = &'a mut wasmtime::component::ResourceTable;
}

impl LoadedPlugin {
    /// A plugin backed by a native function. Its instances still get a store
    /// (so effects and accounting work as for components) from `engine`.
    pub fn native(engine: &Arc<WasmEngine>, name: &str, handler: NativeHandler) -> LoadedPlugin {
        LoadedPlugin {
            name: name.into(),
            digest: format!("native:{name}").into(),
            limits: LimitsConfig::default(),
            effects: Arc::new(EffectPolicy::deny_all(name)),
            code: Code::Native(handler),
            engine: engine.clone(),
            tap: None,
            effects_used: Vec::new(),
            wit_package: WIT_PACKAGES[0],
        }
    }

    /// Calls `tap` after every invocation of this plugin's instances.
    pub fn with_tap(mut self, tap: InvocationTap) -> LoadedPlugin {
        self.tap = Some(tap);
        self
    }
}
