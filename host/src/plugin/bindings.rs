//! The one `bindgen!` of the host: Rust types and glue for `wit/plugin.wit`.

wasmtime::component::bindgen!({
    world: "handler",
    path: "../wit",
    // kv-get reads Redis during the call; everything else is buffered in memory.
    imports: { "streamhost:plugin/effects.kv-get": async },
    exports: { default: async },
    additional_derives: [PartialEq],
});

pub use self::streamhost::plugin::effects::EffectError;
pub use self::streamhost::plugin::log::Level;
pub use self::streamhost::plugin::types::Field;
