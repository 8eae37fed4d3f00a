//! Compiles every plugin crate and generates `artifacts.rs` with their
//! component paths; componentizes the Python and JS test guests under
//! `tests/guests/` and generates `guests.rs` (a missing toolchain becomes an
//! error the test that needs the guest fails with, not a build failure).

use std::path::{Path, PathBuf};

use streamhost_build_support::guests::{Lang, build_cached};
use streamhost_build_support::{all_plugins, build_plugins};

/// Test guests: `(language, directory under tests/guests/<lang>/)`.
const GUESTS: &[(Lang, &str)] = &[
    (Lang::Python, "order-validator"),
    (Lang::Python, "effects-example"),
    (Lang::Python, "hostile"),
    (Lang::Js, "order-validator"),
    (Lang::Js, "effects-example"),
    (Lang::Js, "hostile"),
];

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

    let out_dir = PathBuf::from(env_var("OUT_DIR"));
    let out = out_dir.join("artifacts.rs");
    std::fs::write(&out, source).unwrap_or_else(|e| panic!("cannot write {}: {e}", out.display()));

    let guests = guests(workspace_root, &out_dir.join("guests"));
    let out = out_dir.join("guests.rs");
    std::fs::write(&out, guests).unwrap_or_else(|e| panic!("cannot write {}: {e}", out.display()));
}

/// Builds the guests in parallel (each toolchain is mostly single-threaded)
/// and renders one `Guest` constant per guest.
fn guests(root: &Path, cache: &Path) -> String {
    for lang in [Lang::Python, Lang::Js] {
        for input in lang.inputs(root) {
            println!("cargo:rerun-if-changed={}", input.display());
        }
    }
    let results: Vec<(Lang, &str, Result<PathBuf, String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = GUESTS
            .iter()
            .map(|&(lang, name)| {
                let dir = root.join("tests/guests").join(lang.name()).join(name);
                println!("cargo:rerun-if-changed={}", dir.display());
                let id = format!("{}-{name}", lang.name());
                let handle = s.spawn(move || build_cached(lang, root, &dir, &id, cache));
                (lang, name, handle)
            })
            .collect();
        handles
            .into_iter()
            .map(|(lang, name, h)| {
                let result = h
                    .join()
                    .unwrap_or_else(|_| Err("the build thread panicked".into()));
                (lang, name, result)
            })
            .collect()
    });
    let mut source = String::new();
    for (lang, name, result) in results {
        let constant = format!("{}_{}", lang.name(), name)
            .replace('-', "_")
            .to_uppercase();
        let built = match result {
            Ok(path) => format!("Ok({:?})", path.to_str().expect("OUT_DIR is UTF-8")),
            Err(e) => {
                println!(
                    "cargo:warning=test guest {}/{name} not built: {}",
                    lang.name(),
                    e.lines().next().unwrap_or("")
                );
                format!("Err({e:?})")
            }
        };
        source += &format!(
            "/// Component built from `tests/guests/{}/{name}`.\npub const {constant}: crate::Guest = crate::Guest {{ name: \"{}/{name}\", built: {built} }};\n",
            lang.name(),
            lang.name()
        );
    }
    source
}

fn env_var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|e| panic!("cargo did not set {name}: {e}"))
}
