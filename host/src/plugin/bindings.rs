//! The one `bindgen!` of the host: Rust types and glue for `wit/plugin.wit`.

// Generated items; the WIT documents them.
#![allow(missing_docs)]

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

/// The WIT packages (with versions) a component may import from this host:
/// what `bindgen!` above was generated from. Shown by `streamhost --version`.
pub const WIT_PACKAGES: &[&str] = &["streamhost:plugin@0.1.0"];

#[cfg(test)]
mod tests {
    #[test]
    fn wit_packages_name_the_package_of_the_wit_file() {
        let wit = include_str!("../../../wit/plugin.wit");
        let package = wit
            .lines()
            .find_map(|l| l.strip_prefix("package "))
            .and_then(|l| l.strip_suffix(';'))
            .expect("a package line");
        assert!(super::WIT_PACKAGES.contains(&package), "{package}");
    }
}
