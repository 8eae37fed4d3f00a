//! The compiled-code cache (`[cache]`): a component compiled once is kept
//! as wasmtime's serialized code, one uncompressed file per component digest
//! and engine, and mapped from that file on later loads — no compile, no
//! decompression, no copy (wasmtime's own cache decompressed and copied
//! ~50 MiB for a Python component: most of a 200 ms cached start). It holds
//! only code this host compiled (SECURITY.md), at most [`MAX_ENTRIES`] files.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

/// Cached components kept; the least recently written beyond this are removed.
const MAX_ENTRIES: usize = 64;

/// The file name ending of a cache entry.
const SUFFIX: &str = ".cwasm";

/// `bytes` (whose digest is `digest`) compiled by `engine`: from the cache
/// in `dir` when it holds them, else compiled and then stored there.
pub(crate) fn component(
    engine: &Engine,
    dir: Option<&Path>,
    digest: &str,
    bytes: &[u8],
) -> wasmtime::Result<Component> {
    let Some(dir) = dir else {
        return Component::new(engine, bytes);
    };
    let path = entry(engine, dir, digest);
    if path.is_file() {
        // SAFETY: the file is wasmtime's serialization of code this host
        // compiled (`store` renames it into place whole), in a directory only
        // the host's user may write (SECURITY.md); wasmtime refuses code made
        // by an incompatible engine, and the file is not changed while mapped.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(component) => return Ok(component),
            Err(e) => tracing::debug!(path = %path.display(), error = %e,
                "compiled-code cache entry not usable; compiling again"),
        }
    }
    let component = Component::new(engine, bytes)?;
    if let Err(e) = store(&component, &path) {
        tracing::debug!(path = %path.display(), error = %e, "cannot store compiled code in the cache");
    }
    prune(dir);
    Ok(component)
}

/// The cache file of `digest` compiled by `engine` (its settings and
/// wasmtime version are in the name: another engine's code is never tried).
fn entry(engine: &Engine, dir: &Path, digest: &str) -> PathBuf {
    let mut hasher = std::hash::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    let digest = digest.strip_prefix("sha256:").unwrap_or(digest);
    dir.join(format!("{digest}-{:016x}{SUFFIX}", hasher.finish()))
}

/// Writes the serialized code beside `path` and renames it into place, so a
/// reader (another host on the same cache) never maps a partial file.
fn store(component: &Component, path: &Path) -> std::io::Result<()> {
    let code = component.serialize().map_err(std::io::Error::other)?;
    let partial = path.with_extension(format!("partial-{}", std::process::id()));
    std::fs::write(&partial, code)?;
    std::fs::rename(&partial, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&partial);
    })
}

/// Removes the entries written longest ago beyond [`MAX_ENTRIES`].
fn prune(dir: &Path) {
    let Ok(read) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<(std::time::SystemTime, PathBuf)> = read
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(SUFFIX))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    if entries.len() <= MAX_ENTRIES {
        return;
    }
    entries.sort();
    let excess = entries.len() - MAX_ENTRIES;
    for (_, path) in entries.into_iter().take(excess) {
        // A host that mapped it keeps its mapping; the next load compiles again.
        let _ = std::fs::remove_file(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest component: no imports, no exports.
    const EMPTY: &[u8] = b"\0asm\x0d\0\x01\0";

    #[test]
    fn a_compiled_component_is_stored_once_and_mapped_after() {
        let engine = Engine::default();
        let dir = tempfile::tempdir().expect("temp dir");
        component(&engine, Some(dir.path()), "sha256:ab", EMPTY).expect("compiles");
        let files: Vec<_> = std::fs::read_dir(dir.path())
            .expect("read")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
        assert!(files[0].starts_with("ab-") && files[0].ends_with(SUFFIX));
        // A damaged entry is compiled again, not trusted.
        let path = dir.path().join(&files[0]);
        std::fs::write(&path, b"not code").expect("write");
        component(&engine, Some(dir.path()), "sha256:ab", EMPTY).expect("compiles again");
        assert!(std::fs::read(&path).expect("read").len() > 8, "rewritten");
    }

    #[test]
    fn the_cache_keeps_at_most_its_bound() {
        let engine = Engine::default();
        let dir = tempfile::tempdir().expect("temp dir");
        for i in 0..MAX_ENTRIES + 3 {
            std::fs::write(dir.path().join(format!("{i:04}-0{SUFFIX}")), b"x").expect("write");
        }
        std::fs::write(dir.path().join("unrelated"), b"x").expect("write");
        component(&engine, Some(dir.path()), "sha256:cd", EMPTY).expect("compiles");
        let left = std::fs::read_dir(dir.path()).expect("read").count();
        assert_eq!(left, MAX_ENTRIES + 1, "the bound, plus the unrelated file");
    }
}
