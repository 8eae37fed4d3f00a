//! Everything about running handler components: bindings, engine, limits,
//! loading, instances.

pub mod bindings;
mod code_cache;
mod compat;
mod effects_host;
pub mod engine;
pub mod instance;
pub mod invoker;
pub mod limits;
pub mod native;
pub mod output;
pub mod preflight;
pub mod registry;
pub mod state;

pub use bindings::{
    Field, HandlerError, Message, PubsubMessage, SortedSetMember, Source, StreamEntry, WIT_PACKAGES,
};
pub use engine::{EngineOptions, WasmEngine};
pub use instance::{Invocation, PluginInstance};
pub use invoker::{Invoker, Report};
pub use native::{InvocationTap, NativeHandler};
pub use registry::{LoadedPlugin, digest};
