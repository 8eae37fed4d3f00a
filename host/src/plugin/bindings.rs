//! The host's `bindgen!`s: Rust types and glue for the WIT packages it
//! accepts, `wit/v0.2/plugin.wit` (the current contract, whose types the
//! whole host uses) and `wit/plugin.wit` (0.1.0, still run: its imports are
//! bound by converting to the 0.2 ones in `compat.rs`).

// Generated items; the WIT documents them.
#![allow(missing_docs)]

/// `streamhost:plugin@0.2.0`.
pub mod v0_2 {
    wasmtime::component::bindgen!({
        world: "handler",
        path: "../wit/v0.2/plugin.wit",
        // kv-get reads Redis during the call; everything else is buffered in memory.
        imports: { "streamhost:plugin/effects.kv-get": async },
        exports: { default: async },
        additional_derives: [PartialEq],
    });
}

/// `streamhost:plugin@0.1.0`: the stream name instead of a source, no
/// `push` or `zadd`.
pub mod v0_1 {
    wasmtime::component::bindgen!({
        world: "handler",
        path: "../wit/plugin.wit",
        imports: { "streamhost:plugin/effects.kv-get": async },
        exports: { default: async },
        additional_derives: [PartialEq],
    });
}

pub use v0_2::streamhost;
pub use v0_2::streamhost::plugin::effects::EffectError;
pub use v0_2::streamhost::plugin::log::Level;
pub use v0_2::streamhost::plugin::types::{
    Field, HandlerError, Message, PubsubMessage, SortedSetMember, Source, StreamEntry,
};

/// The WIT packages (with versions) a component may be built against to run
/// on this host: what the `bindgen!`s above were generated from. Shown by
/// `streamhost --version`.
pub const WIT_PACKAGES: &[&str] = &["streamhost:plugin@0.2.0", "streamhost:plugin@0.1.0"];

#[cfg(test)]
mod tests {
    fn package(wit: &str) -> &str {
        wit.lines()
            .find_map(|l| l.strip_prefix("package "))
            .and_then(|l| l.strip_suffix(';'))
            .expect("a package line")
    }

    #[test]
    fn wit_packages_name_the_packages_of_the_wit_files() {
        let current = package(include_str!("../../../wit/v0.2/plugin.wit"));
        let old = package(include_str!("../../../wit/plugin.wit"));
        assert_eq!(super::WIT_PACKAGES, [current, old]);
        assert_eq!(crate::metrics::WIT_VERSION, current);
    }
}
