//! What a component is before it is compiled: its imports, and what compiling
//! and instantiating it would cost (functions, code bytes, core instances,
//! memories, tables), read from its bytes alone with `wasmparser`.
//!
//! Compiling is the expensive, attacker-controlled step (a few MB of empty
//! functions cost minutes and gigabytes in Cranelift), so every bound is
//! checked here, and every refused import is listed in one message, before
//! the engine sees the bytes.

use wasmparser::{
    CanonicalFunction, ComponentAlias, ComponentExternalKind, ComponentTypeRef, Encoding, Instance,
    Parser, Payload,
};

/// The counts of a component that its limits are checked against.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Shape {
    /// Names of the top-level component imports other than types
    /// (`wasi:cli/stdout@0.2.6`, ...).
    pub imports: Vec<String>,
    /// Core functions with a body, across every core module.
    pub functions: u64,
    /// Bytes of function bodies across every core module.
    pub code_bytes: u64,
    /// The largest single function body, in bytes.
    pub largest_function: u64,
    /// Core module instantiations, across nested components.
    pub core_instances: u64,
    /// Linear memories defined by the instantiated core modules.
    pub memories: u64,
    /// Tables defined by the instantiated core modules.
    pub tables: u64,
    /// The largest initial size of any defined table, in elements.
    pub largest_table: u64,
    /// The largest initial size of any defined memory, in bytes.
    pub largest_memory: u64,
    /// Functions of `streamhost:plugin/effects` the component lowers into
    /// core code (`emit`, `kv-get`, ...), in the order first lowered. A
    /// compiled language's linker keeps only the imports its code calls;
    /// an interpreter's toolchain lowers the whole interface.
    pub effects_used: Vec<String>,
}

/// The import whose functions count as effects.
const EFFECTS: &str = "streamhost:plugin/effects@";

/// What one core module defines (per instantiation).
#[derive(Debug, Default, Clone, Copy)]
struct ModuleShape {
    memories: u64,
    tables: u64,
}

/// Parses a component's sections without validating or compiling it.
/// `Err` carries wasmparser's message (malformed binary).
pub fn shape(bytes: &[u8]) -> Result<Shape, String> {
    let mut shape = Shape::default();
    // Nesting: one entry per module or component being parsed; modules are
    // recorded in the order they appear, which is their core module index
    // within the (flattened) component, close enough for counting.
    let mut stack: Vec<Encoding> = Vec::new();
    let mut modules: Vec<ModuleShape> = Vec::new();
    let mut instantiated: Vec<u32> = Vec::new();
    // The top level's component instance index space: the import name of
    // each imported instance, `None` for instances made any other way.
    let mut instances: Vec<Option<String>> = Vec::new();
    // The top level's component function index space: the effect's name
    // for functions aliased from the effects import, `None` otherwise.
    let mut funcs: Vec<Option<String>> = Vec::new();
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| e.to_string())?;
        match payload {
            Payload::Version { encoding, .. } => {
                if encoding == Encoding::Module {
                    modules.push(ModuleShape::default());
                }
                stack.push(encoding);
            }
            Payload::End(_) => {
                stack.pop();
            }
            Payload::ComponentImportSection(reader) if stack.len() == 1 => {
                for import in reader {
                    let import = import.map_err(|e| e.to_string())?;
                    // Type imports (a world's `use`) carry no authority.
                    if !matches!(import.ty, ComponentTypeRef::Type(_)) {
                        shape.imports.push(import.name.name.to_owned());
                    }
                    match import.ty {
                        ComponentTypeRef::Instance(_) => {
                            instances.push(Some(import.name.name.to_owned()));
                        }
                        ComponentTypeRef::Func(_) => funcs.push(None),
                        _ => {}
                    }
                }
            }
            Payload::ComponentInstanceSection(reader) if stack.len() == 1 => {
                instances.extend(std::iter::repeat_n(None, reader.count() as usize));
            }
            Payload::ComponentExportSection(reader) if stack.len() == 1 => {
                for export in reader {
                    match export.map_err(|e| e.to_string())?.kind {
                        ComponentExternalKind::Instance => instances.push(None),
                        ComponentExternalKind::Func => funcs.push(None),
                        _ => {}
                    }
                }
            }
            Payload::ComponentAliasSection(reader) if stack.len() == 1 => {
                for alias in reader {
                    match alias.map_err(|e| e.to_string())? {
                        ComponentAlias::InstanceExport {
                            kind: ComponentExternalKind::Func,
                            instance_index,
                            name,
                        } => {
                            let from = instances.get(instance_index as usize).cloned().flatten();
                            let effect = from.is_some_and(|i| i.starts_with(EFFECTS));
                            funcs.push(effect.then(|| name.to_owned()));
                        }
                        ComponentAlias::InstanceExport {
                            kind: ComponentExternalKind::Instance,
                            ..
                        } => instances.push(None),
                        ComponentAlias::Outer { .. } | ComponentAlias::InstanceExport { .. } => {}
                        ComponentAlias::CoreInstanceExport { .. } => {}
                    }
                }
            }
            Payload::ComponentCanonicalSection(reader) if stack.len() == 1 => {
                for canon in reader {
                    match canon.map_err(|e| e.to_string())? {
                        CanonicalFunction::Lift { .. } => funcs.push(None),
                        CanonicalFunction::Lower { func_index, .. } => {
                            if let Some(Some(name)) = funcs.get(func_index as usize)
                                && !shape.effects_used.contains(name)
                            {
                                shape.effects_used.push(name.clone());
                            }
                        }
                        // The rest define core functions, not component ones.
                        _ => {}
                    }
                }
            }
            Payload::MemorySection(reader) => {
                for memory in reader {
                    let memory = memory.map_err(|e| e.to_string())?;
                    let page = 1u64 << memory.page_size_log2.unwrap_or(16);
                    shape.largest_memory = shape
                        .largest_memory
                        .max(memory.initial.saturating_mul(page));
                    if let Some(m) = modules.last_mut() {
                        m.memories += 1;
                    }
                }
            }
            Payload::TableSection(reader) => {
                for table in reader {
                    let table = table.map_err(|e| e.to_string())?;
                    shape.largest_table = shape.largest_table.max(table.ty.initial);
                    if let Some(m) = modules.last_mut() {
                        m.tables += 1;
                    }
                }
            }
            Payload::CodeSectionStart { count, size, .. } => {
                shape.functions += u64::from(count);
                shape.code_bytes += u64::from(size);
            }
            Payload::CodeSectionEntry(body) => {
                shape.largest_function = shape.largest_function.max(body.range().len() as u64);
            }
            Payload::InstanceSection(reader) => {
                for instance in reader {
                    if let Instance::Instantiate { module_index, .. } =
                        instance.map_err(|e| e.to_string())?
                    {
                        instantiated.push(module_index);
                    }
                }
            }
            _ => {}
        }
    }
    shape.core_instances = instantiated.len() as u64;
    // Module indices are per component; in a flat component (what wit-component
    // and the stock toolchains produce) they index `modules` directly. Where
    // they do not (nested components), count the largest module's resources.
    let widest = modules
        .iter()
        .fold(ModuleShape::default(), |a, m| ModuleShape {
            memories: a.memories.max(m.memories),
            tables: a.tables.max(m.tables),
        });
    for index in instantiated {
        let m = modules.get(index as usize).copied().unwrap_or(widest);
        shape.memories += m.memories;
        shape.tables += m.tables;
    }
    Ok(shape)
}
