//! Everything about running handler components: bindings, engine, limits,
//! loading, instances.

pub mod bindings;
mod effects_host;
pub mod engine;
pub mod instance;
pub mod limits;
pub mod native;
pub mod output;
pub mod preflight;
pub mod registry;
pub mod state;

pub use bindings::{Field, HandlerError, Message, WIT_PACKAGES};
pub use engine::{EngineOptions, WasmEngine};
pub use instance::{Invocation, PluginInstance};
pub use native::{InvocationTap, NativeHandler};
pub use registry::{LoadedPlugin, digest};
