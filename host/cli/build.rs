//! Compiles the plugins the host bundles and generates `bundled_plugins.rs` to embed them.

use std::path::{Path, PathBuf};

use streamhost_build_support::build_plugins;

/// Plugins embedded in the host binary.
const BUNDLED: &[&str] = &["order-validator", "echo"];

fn main() {
    let manifest_dir = PathBuf::from(env_var("CARGO_MANIFEST_DIR"));
    let workspace_root = manifest_dir
        .ancestors()
        .nth(2)
        .expect("the CLI crate lives two levels below the workspace root (host/cli)");
    let source: String = build_plugins(workspace_root, BUNDLED)
        .iter()
        .map(|built| {
            format!(
                "pub const {}: &[u8] = include_bytes!({});\n",
                built.const_name(),
                built.path_literal()
            )
        })
        .collect();
    let out = Path::new(&env_var("OUT_DIR")).join("bundled_plugins.rs");
    std::fs::write(&out, source).unwrap_or_else(|e| panic!("cannot write {}: {e}", out.display()));
}

fn env_var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|e| panic!("cargo did not set {name}: {e}"))
}
