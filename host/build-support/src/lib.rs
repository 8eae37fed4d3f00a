//! Build-script helper: compiles the workspace's plugin crates into Wasm components.
//!
//! Meant to be called from `build.rs`; like any build script it reports
//! failures by panicking with a message that says what went wrong.

pub mod guests;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The target plugins are compiled for; its builds are already components.
const TARGET: &str = "wasm32-wasip2";
/// The cargo profile for plugins, defined in the workspace `Cargo.toml`.
const PROFILE: &str = "plugin";

/// Environment variables cargo sets for the outer build (or build scripts)
/// that would leak into the nested build and change or break it.
const LEAKED_VARS: &[&str] = &[
    "CARGO_ENCODED_RUSTFLAGS",
    "RUSTFLAGS",
    "CARGO_TARGET_DIR",
    "CARGO_MAKEFLAGS",
    "MAKEFLAGS",
    "MFLAGS",
    "CARGO_BUILD_TARGET",
    "RUSTC_WORKSPACE_WRAPPER",
    "RUSTC_WRAPPER",
    "TARGET",
    "HOST",
    "OUT_DIR",
    "OPT_LEVEL",
    "PROFILE",
    "DEBUG",
];
/// Prefixes of leaking variables: profile overrides and the outer target's cfgs.
const LEAKED_PREFIXES: &[&str] = &["CARGO_PROFILE_", "CARGO_CFG_"];

/// A plugin compiled into a component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    /// The plugin's crate name, e.g. `order-validator`.
    pub name: String,
    /// Absolute path of the component (`.wasm`).
    pub path: PathBuf,
}

impl Built {
    /// The name as a Rust constant: `order-validator` -> `ORDER_VALIDATOR`.
    pub fn const_name(&self) -> String {
        self.name.replace('-', "_").to_uppercase()
    }

    /// The path as a Rust string literal, for generated code.
    ///
    /// # Panics
    ///
    /// When the path is not UTF-8, which a string literal cannot hold.
    pub fn path_literal(&self) -> String {
        let path = self
            .path
            .to_str()
            .unwrap_or_else(|| panic!("component path {} is not UTF-8", self.path.display()));
        format!("{path:?}")
    }
}

/// Builds the named crates under `<workspace>/plugins/` into components.
///
/// Uses profile `plugin` and a target dir of its own under the calling build
/// script's `OUT_DIR` (the outer build holds the lock on the normal one:
/// sharing it would deadlock, and a build script may write only there). Asks
/// cargo to re-run the build script when a file listed in a plugin's dep-info
/// (`.d`) changes. Adds the `wasm32-wasip2` target with rustup when it is missing.
///
/// # Panics
///
/// When `OUT_DIR` is unset (not called from a build script), the target
/// cannot be added, or the build fails (with cargo's output).
pub fn build_plugins(workspace_root: &Path, names: &[&str]) -> Vec<Built> {
    rerun_if_changed(workspace_root);
    ensure_target_installed(workspace_root);
    let out_dir = std::env::var_os("OUT_DIR").expect("build_plugins runs from a build script");
    let target_dir = Path::new(&out_dir).join("wasm-plugins");
    run_cargo_build(workspace_root, &target_dir, names);
    let built: Vec<Built> = names
        .iter()
        .map(|name| artifact(&target_dir, name))
        .collect();
    for plugin in &built {
        rerun_if_dependencies_change(&plugin.path.with_extension("d"));
    }
    built
}

/// Emits `rerun-if-changed` for every source file cargo's dep-info file lists
/// (`output: dep dep ...`, spaces in paths escaped as `\ `).
fn rerun_if_dependencies_change(dep_info: &Path) {
    let text = std::fs::read_to_string(dep_info)
        .unwrap_or_else(|e| panic!("cannot read dep-info {}: {e}", dep_info.display()));
    for path in dep_info_paths(&text) {
        println!("cargo:rerun-if-changed={path}");
    }
}

/// The dependency paths of a dep-info file's first rule.
fn dep_info_paths(text: &str) -> Vec<String> {
    let Some((_, deps)) = text.lines().next().and_then(|rule| rule.split_once(": ")) else {
        return Vec::new();
    };
    let mut paths = Vec::new();
    let mut current = String::new();
    let mut chars = deps.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&' ') => {
                current.push(' ');
                chars.next();
            }
            ' ' => paths.extend((!current.is_empty()).then(|| std::mem::take(&mut current))),
            c => current.push(c),
        }
    }
    paths.extend((!current.is_empty()).then_some(current));
    paths
}

/// All plugin crate names (directories under `plugins/` with a `Cargo.toml`), sorted.
///
/// # Panics
///
/// When `plugins/` cannot be listed or holds a name that is not UTF-8.
pub fn all_plugins(workspace_root: &Path) -> Vec<String> {
    let dir = workspace_root.join("plugins");
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list plugin crates in {}: {e}", dir.display()));
    let mut names: Vec<String> = entries
        .map(|entry| entry.unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display())))
        .filter(|entry| entry.path().join("Cargo.toml").is_file())
        .map(|entry| {
            entry
                .file_name()
                .into_string()
                .unwrap_or_else(|name| panic!("plugin directory name {name:?} is not UTF-8"))
        })
        .collect();
    names.sort();
    names
}

/// Rebuild when what dep-info does not list changes: a manifest, the lock
/// file, or the WIT (read by the bindings macro). A new plugin directory adds
/// itself through `plugins/`'s listing.
fn rerun_if_changed(workspace_root: &Path) {
    for path in ["plugins", "wit", "Cargo.toml", "Cargo.lock"] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace_root.join(path).display()
        );
    }
}

/// Runs `rustup target add wasm32-wasip2` unless the sysroot already has it.
///
/// rustup installs `rust-toolchain.toml` targets only when it installs the
/// toolchain itself, so a preinstalled toolchain may lack it.
fn ensure_target_installed(workspace_root: &Path) {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let sysroot = command_stdout(
        Command::new(&rustc)
            .args(["--print", "sysroot"])
            .current_dir(workspace_root),
    );
    let target_lib = Path::new(sysroot.trim()).join("lib/rustlib").join(TARGET);
    if target_lib.is_dir() {
        return;
    }
    command_stdout(
        Command::new("rustup")
            .args(["target", "add", TARGET])
            .current_dir(workspace_root),
    );
}

/// One `cargo build` for all requested plugins; panics with cargo's output on failure.
fn run_cargo_build(workspace_root: &Path, target_dir: &Path, names: &[&str]) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root)
        .args([
            "build",
            "--color",
            "never",
            "--profile",
            PROFILE,
            "--target",
            TARGET,
        ])
        .arg("--target-dir")
        .arg(target_dir);
    for name in names {
        cmd.args(["-p", name]);
    }
    remove_leaked_env(&mut cmd);
    command_stdout(&mut cmd);
}

/// Clears the outer build's variables from the nested cargo's environment.
fn remove_leaked_env(cmd: &mut Command) {
    for var in LEAKED_VARS {
        cmd.env_remove(var);
    }
    for (var, _) in std::env::vars_os() {
        if is_leaked_prefix(&var) {
            cmd.env_remove(var);
        }
    }
}

fn is_leaked_prefix(var: &OsStr) -> bool {
    var.to_str()
        .is_some_and(|var| LEAKED_PREFIXES.iter().any(|p| var.starts_with(p)))
}

/// Where cargo puts a plugin's component; panics if it is not there.
fn artifact(target_dir: &Path, name: &str) -> Built {
    let file = format!("{}.wasm", name.replace('-', "_"));
    let path = target_dir.join(TARGET).join(PROFILE).join(file);
    assert!(
        path.is_file(),
        "plugin `{name}` built, but {} is missing (is it a cdylib?)",
        path.display()
    );
    Built {
        name: name.to_owned(),
        path,
    }
}

/// Runs a command to completion and returns its stdout; panics with its output on failure.
fn command_stdout(cmd: &mut Command) -> String {
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{}`: {e}", describe(cmd)));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "`{}` failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{}",
        describe(cmd),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Program and arguments only: `Command`'s `Debug` also lists every removed variable.
fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|part| part.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaked_prefixes_match_profile_and_cfg_vars() {
        assert!(is_leaked_prefix(OsStr::new("CARGO_PROFILE_RELEASE_LTO")));
        assert!(is_leaked_prefix(OsStr::new("CARGO_CFG_TARGET_OS")));
        assert!(!is_leaked_prefix(OsStr::new("CARGO_HOME")));
    }

    #[test]
    fn built_renders_rust_names_and_literals() {
        let built = Built {
            name: "order-validator".into(),
            path: PathBuf::from("/a \"b\"/order_validator.wasm"),
        };
        assert_eq!(built.const_name(), "ORDER_VALIDATOR");
        assert_eq!(built.path_literal(), r#""/a \"b\"/order_validator.wasm""#);
    }

    #[test]
    fn dep_info_paths_split_on_unescaped_spaces() {
        let text = "/t/x.wasm: /a/lib.rs /b\\ c/d.rs /e.wit\n\n/a/lib.rs:\n";
        assert_eq!(dep_info_paths(text), ["/a/lib.rs", "/b c/d.rs", "/e.wit"]);
        assert!(dep_info_paths("").is_empty());
    }

    #[test]
    fn all_plugins_lists_crates_sorted() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let names = all_plugins(&root);
        assert!(names.contains(&"echo".to_owned()), "{names:?}");
        assert!(names.is_sorted());
    }
}
