//! Compiles every plugin crate and generates `artifacts.rs` with their component paths.

use std::path::{Path, PathBuf};

use streamhost_build_support::{all_plugins, build_plugins};

fn main() {
    let manifest_dir = PathBuf::from(env_var("CARGO_MANIFEST_DIR"));
    let workspace_root = manifest_dir
        .parent()
        .expect("tests crate lives one level below the workspace root");
    let names = all_plugins(workspace_root);
    let names: Vec<&str> = names.iter().map(String::as_str).collect();

    let mut source = String::new();
    let mut all = String::new();
    for built in build_plugins(workspace_root, &names) {
        let (name, path) = (built.const_name(), built.path_literal());
        source += &format!("/// Component built from `plugins/{}`.\n", built.name);
        source += &format!("pub const {name}: &str = {path};\n");
        all += &format!("    ({:?}, {name}),\n", built.name);
    }
    source += "/// Every plugin as `(crate name, component path)`, sorted by name.\n";
    source += &format!("pub const ALL: &[(&str, &str)] = &[\n{all}];\n");

    let out = Path::new(&env_var("OUT_DIR")).join("artifacts.rs");
    std::fs::write(&out, source).unwrap_or_else(|e| panic!("cannot write {}: {e}", out.display()));
}

fn env_var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|e| panic!("cargo did not set {name}: {e}"))
}
