//! The one `bindgen!` of the host: Rust types and glue for `wit/plugin.wit`.

wasmtime::component::bindgen!({
    world: "handler",
    path: "../wit",
    exports: { default: async },
    additional_derives: [PartialEq],
});

pub use streamhost::plugin::log::Level;
pub use streamhost::plugin::types::Field;
