//! Python and JavaScript handlers into components: runs the SDKs' build
//! steps (componentize-py, componentize-js) and caches the result by a hash
//! of everything that goes in, so a warm build does not componentize again.
//!
//! Unlike [`crate::build_plugins`] nothing here panics: a missing toolchain
//! is an [`Err`] with install advice, for the caller to report where it
//! belongs (a test fails with it; `streamhost build` exits 2 with it).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The componentize-py release the Python SDK is tested with.
pub const COMPONENTIZE_PY: &str = "0.25.1";

/// A guest language with an SDK under `guest-sdk/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// `guest-sdk/python`, built with componentize-py.
    Python,
    /// `guest-sdk/js`, built with componentize-js.
    Js,
}

impl Lang {
    /// The handler module a project of this language has.
    pub fn handler_file(self) -> &'static str {
        match self {
            Lang::Python => "handler.py",
            Lang::Js => "handler.js",
        }
    }

    /// Lower-case name, as in `--lang`.
    pub fn name(self) -> &'static str {
        match self {
            Lang::Python => "python",
            Lang::Js => "js",
        }
    }

    /// The SDK's files, relative to the repository root (part of the cache key).
    fn sdk_files(self) -> &'static [&'static str] {
        match self {
            Lang::Python => &[
                "guest-sdk/python/streamhost/__init__.py",
                "guest-sdk/python/streamhost/_backend.py",
                "guest-sdk/python/streamhost/_errors.py",
                "guest-sdk/python/streamhost/_guest.py",
                "guest-sdk/python/streamhost/_handler.py",
                "guest-sdk/python/streamhost/_message.py",
                "guest-sdk/python/streamhost/build.py",
                "guest-sdk/python/streamhost/effects.py",
                "guest-sdk/python/streamhost/log.py",
            ],
            Lang::Js => &[
                "guest-sdk/js/backend.js",
                "guest-sdk/js/build.js",
                "guest-sdk/js/bytes.js",
                "guest-sdk/js/effects.js",
                "guest-sdk/js/errors.js",
                "guest-sdk/js/guest.js",
                "guest-sdk/js/index.js",
                "guest-sdk/js/log.js",
                "guest-sdk/js/message.js",
                "guest-sdk/js/package-lock.json",
            ],
        }
    }

    /// Every file that decides the component besides the project's own:
    /// the SDK's and the WIT (for `rerun-if-changed`).
    pub fn inputs(self, repo: &Path) -> Vec<PathBuf> {
        self.sdk_files()
            .iter()
            .chain(&["wit/plugin.wit"])
            .map(|f| repo.join(f))
            .collect()
    }
}

/// Runs the SDK's build step: `handler` (a `.py` or `.js` file) into `output`.
///
/// # Errors
///
/// The tool's output, or install advice when the toolchain is missing.
pub fn componentize(lang: Lang, repo: &Path, handler: &Path, output: &Path) -> Result<(), String> {
    let mut cmd = match lang {
        Lang::Python => {
            let mut cmd = Command::new("python3");
            cmd.env("PYTHONPATH", repo.join("guest-sdk/python"))
                .args(["-m", "streamhost.build"]);
            cmd
        }
        Lang::Js => {
            let sdk = repo.join("guest-sdk/js");
            if !sdk
                .join("node_modules/@bytecodealliance/componentize-js")
                .is_dir()
            {
                return Err(format!(
                    "componentize-js is not installed: run `npm ci` in {} (needs node and npm)",
                    sdk.display()
                ));
            }
            let mut cmd = Command::new("node");
            cmd.arg(sdk.join("build.js"));
            cmd
        }
    };
    cmd.env("STREAMHOST_WIT", repo.join("wit"))
        .arg(handler)
        .arg("-o")
        .arg(output);
    let tool = match lang {
        Lang::Python => format!("python3 (and `pip install componentize-py=={COMPONENTIZE_PY}`)"),
        Lang::Js => "node (and `npm ci` in guest-sdk/js)".to_owned(),
    };
    let done = cmd
        .output()
        .map_err(|e| format!("cannot run {tool}: {e}; install it"))?;
    if done.status.success() && output.is_file() {
        return Ok(());
    }
    Err(format!(
        "building {} failed ({}):\n{}{}",
        handler.display(),
        done.status,
        String::from_utf8_lossy(&done.stdout),
        String::from_utf8_lossy(&done.stderr)
    ))
}

/// Builds the project in `dir` (its handler file and every `.py`/`.js` file
/// beside it) into `cache/<name>-<hash>.wasm`, unless that exists already.
///
/// # Errors
///
/// As [`componentize`], or when the project cannot be read.
pub fn build_cached(
    lang: Lang,
    repo: &Path,
    dir: &Path,
    name: &str,
    cache: &Path,
) -> Result<PathBuf, String> {
    let mut inputs = project_files(lang, dir)?;
    inputs.extend(lang.inputs(repo));
    let mut hash = Fnv::default();
    hash.write(lang.name().as_bytes());
    for file in &inputs {
        let bytes =
            std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        hash.write(
            file.strip_prefix(repo)
                .unwrap_or(file)
                .to_string_lossy()
                .as_bytes(),
        );
        hash.write(&bytes);
    }
    std::fs::create_dir_all(cache)
        .map_err(|e| format!("cannot create {}: {e}", cache.display()))?;
    let output = cache.join(format!("{name}-{:016x}.wasm", hash.0));
    if output.is_file() {
        return Ok(output);
    }
    // Written aside and renamed, so a build cut short leaves no cache entry.
    let partial = output.with_extension("partial.wasm");
    componentize(lang, repo, &dir.join(lang.handler_file()), &partial)?;
    std::fs::rename(&partial, &output)
        .map_err(|e| format!("cannot move {} into place: {e}", partial.display()))?;
    Ok(output)
}

/// The project's source files (not its tests), sorted.
pub fn project_files(lang: Lang, dir: &Path) -> Result<Vec<PathBuf>, String> {
    let ext = match lang {
        Lang::Python => "py",
        Lang::Js => "js",
    };
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == ext) && p.is_file())
        .filter(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            !name.starts_with("test_") && !name.ends_with(".test.js")
        })
        .collect();
    files.sort();
    if !files.contains(&dir.join(lang.handler_file())) {
        return Err(format!("{} has no {}", dir.display(), lang.handler_file()));
    }
    Ok(files)
}

/// FNV-1a, 64 bit: a cache key stable across Rust releases (std's hasher is not).
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        // Length first, so ("ab", "c") and ("a", "bc") differ.
        for b in (bytes.len() as u64).to_le_bytes().iter().chain(bytes) {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_separates_boundaries() {
        let (mut a, mut b) = (Fnv::default(), Fnv::default());
        a.write(b"ab");
        a.write(b"c");
        b.write(b"a");
        b.write(b"bc");
        assert_ne!(a.0, b.0);
    }

    #[test]
    fn project_files_skip_tests_and_need_the_handler() {
        let dir = std::env::temp_dir().join(format!("sh-bs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("handler.js"), "").unwrap();
        std::fs::write(dir.join("handler.test.js"), "").unwrap();
        std::fs::write(dir.join("util.js"), "").unwrap();
        let files = project_files(Lang::Js, &dir).unwrap();
        assert_eq!(files, [dir.join("handler.js"), dir.join("util.js")]);
        assert!(
            project_files(Lang::Python, &dir)
                .unwrap_err()
                .contains("handler.py")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
