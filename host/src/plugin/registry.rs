//! Loading components: size and format checks, the import allow-list, the
//! world check, compilation, and pre-instantiation.

use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, HasSelf, Linker};

use super::bindings::{Handler, HandlerPre};
use super::engine::WasmEngine;
use super::native::{Code, InvocationTap};
use super::state::HostState;
use crate::config::LimitsConfig;
use crate::effects::EffectPolicy;
use crate::error::LoadError;

/// Import prefixes a handler may use. WASI is linked because every
/// `wasm32-wasip2` guest imports parts of it through `std`; the context grants
/// no files, env, args, stdio or network, so these give only clocks and randomness.
/// `wasi:sockets` is neither allowed nor linked (see `add_wasi_to_linker`).
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
];

const ALLOWED_SUMMARY: &str = "streamhost:plugin/*, wasi:cli (environment, exit, stdio, terminal), wasi:io, wasi:clocks, wasi:random, wasi:filesystem";

/// A validated, compiled, pre-linked handler component.
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
}

impl LoadedPlugin {
    /// Reads, validates and compiles a component file. CPU-heavy: call from a blocking thread.
    pub fn load_file(
        engine: &Arc<WasmEngine>,
        name: &str,
        path: &Path,
        limits: &LimitsConfig,
    ) -> Result<LoadedPlugin, LoadError> {
        let read_err = |source| LoadError::Read {
            plugin: name.to_owned(),
            path: path.to_owned(),
            source,
        };
        let size = std::fs::metadata(path).map_err(read_err)?.len();
        check_size(name, size, limits)?;
        let bytes = std::fs::read(path).map_err(read_err)?;
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
        let component = Component::new(engine.engine(), bytes).map_err(|e| LoadError::Compile {
            plugin: name.to_owned(),
            detail: format!("{e:#}"),
        })?;
        check_imports(name, engine, &component)?;
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
        let pre = HandlerPre::new(instance_pre).map_err(|e| LoadError::WrongWorld {
            plugin: name.to_owned(),
            detail: format!("{e:#}"),
        })?;
        Ok(LoadedPlugin {
            name: name.into(),
            digest: digest(bytes).into(),
            limits: limits.clone(),
            effects: Arc::new(EffectPolicy::deny_all(name)),
            code: Code::Wasm(pre),
            engine: engine.clone(),
            tap: None,
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

fn check_imports(name: &str, engine: &WasmEngine, component: &Component) -> Result<(), LoadError> {
    let ty = component.component_type();
    for (import, _) in ty.imports(engine.engine()) {
        if !ALLOWED_IMPORTS.iter().any(|p| import.starts_with(p)) {
            return Err(LoadError::ForbiddenImport {
                plugin: name.to_owned(),
                import: import.to_owned(),
                allowed: ALLOWED_SUMMARY,
            });
        }
    }
    Ok(())
}

fn check_exports(name: &str, engine: &WasmEngine, component: &Component) -> Result<(), LoadError> {
    let ty = component.component_type();
    let names: Vec<String> = ty
        .exports(engine.engine())
        .map(|(n, _)| n.to_owned())
        .collect();
    let has_handle = ty
        .exports(engine.engine())
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

fn linker(engine: &WasmEngine) -> wasmtime::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine.engine());
    add_wasi_to_linker(&mut linker)?;
    Handler::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)?;
    Ok(linker)
}

/// The WASI interfaces of [`ALLOWED_IMPORTS`] and nothing else: unlike
/// `wasmtime_wasi::p2::add_to_linker_async`, no `wasi:sockets`, so the linker
/// itself refuses a socket import even if the allow-list check were bypassed.
fn add_wasi_to_linker(l: &mut Linker<HostState>) -> wasmtime::Result<()> {
    use wasmtime_wasi::WasiView;
    use wasmtime_wasi::cli::{WasiCli, WasiCliView as _};
    use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView as _};
    use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemView as _};
    use wasmtime_wasi::p2::bindings::{cli, clocks, filesystem, io, random};
    use wasmtime_wasi::random::{WasiRandom, WasiRandomView as _};
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
    Ok(())
}

/// `wasi:io` host functions work on the resource table alone.
struct WasiIo;

impl wasmtime::component::HasData for WasiIo {
    type Data<'a> = &'a mut wasmtime::component::ResourceTable;
}
