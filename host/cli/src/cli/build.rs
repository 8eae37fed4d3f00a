//! `streamhost build`: builds the project in a directory (Rust with cargo,
//! Python with componentize-py, JS with componentize-js) into the component
//! its `streamhost.toml` names, then validates it like `check --offline`.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::Context;
use clap::Args;

use streamhost_build_support::guests::{self, Lang as GuestLang};

use super::BadInput;
use super::new::{Lang, sdk_root};

/// The target Rust handlers are built for; its output is a component.
const RUST_TARGET: &str = "wasm32-wasip2";

/// Arguments of `streamhost build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The project directory.
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// The config naming the component to write (its first plugin's
    /// `component`); relative to `--dir`.
    #[arg(short, long, default_value = "streamhost.toml")]
    pub config: PathBuf,
}

/// Builds, then checks the config and component offline.
pub async fn build(args: BuildArgs) -> anyhow::Result<ExitCode> {
    let config_path = args.dir.join(&args.config);
    let component = build_project(&args.dir, &config_path).await?;
    println!("built {}", component.display());
    super::check::check(&config_path, true).await
}

/// Builds the project; returns the component written.
pub async fn build_project(dir: &Path, config_path: &Path) -> anyhow::Result<PathBuf> {
    let config = super::load_config(config_path)?;
    let Some(plugin) = config.plugins.first() else {
        return Err(BadInput(format!(
            "{} has no [[plugin]]: nothing names the component to build",
            config_path.display()
        ))
        .into());
    };
    let component = plugin.component.clone();
    let lang = detect(dir)?;
    let (dir, out) = (dir.to_owned(), component.clone());
    tokio::task::spawn_blocking(move || match lang {
        Lang::Rust => build_rust(&dir, &out),
        Lang::Python => guest(GuestLang::Python, &dir, &out),
        Lang::Js => guest(GuestLang::Js, &dir, &out),
    })
    .await
    .context("the build thread failed")??;
    Ok(component)
}

/// The language of the project in `dir`, from the files it has.
pub fn detect(dir: &Path) -> Result<Lang, BadInput> {
    if dir.join("Cargo.toml").is_file() {
        Ok(Lang::Rust)
    } else if dir.join("handler.py").is_file() {
        Ok(Lang::Python)
    } else if dir.join("handler.js").is_file() {
        Ok(Lang::Js)
    } else {
        Err(BadInput(format!(
            "{} holds no Cargo.toml, handler.py or handler.js: not a project (`streamhost new` makes one)",
            dir.display()
        )))
    }
}

/// Files whose change means a rebuild (for `dev`).
pub fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                if !matches!(name.as_str(), "target" | "node_modules" | "__pycache__")
                    && !name.starts_with('.')
                {
                    stack.push(path);
                }
            } else if [".rs", ".py", ".js", ".toml"]
                .iter()
                .any(|ext| name.ends_with(ext))
            {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn guest(lang: GuestLang, dir: &Path, out: &Path) -> anyhow::Result<()> {
    let handler = dir.join(lang.handler_file());
    guests::componentize(lang, &sdk_root(), &handler, out)
        .map_err(|e| BadInput(format!("{} build: {e}", lang.name())).into())
}

fn build_rust(dir: &Path, out: &Path) -> anyhow::Result<()> {
    ensure_rust_target()?;
    let manifest = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest)
        .with_context(|| format!("cannot read {}", manifest.display()))?;
    let parsed: toml::Table =
        toml::from_str(&text).map_err(|e| BadInput(format!("{}: {e}", manifest.display())))?;
    let Some(name) = parsed
        .get("package")
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
    else {
        return Err(BadInput(format!("{} has no [package] name", manifest.display())).into());
    };
    // The small release profile when the project defines it (templates do).
    let profile = if parsed
        .get("profile")
        .and_then(|p| p.get("plugin"))
        .is_some()
    {
        "plugin"
    } else {
        "release"
    };
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| dir.join("target"));
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["build", "--profile", profile, "--target", RUST_TARGET])
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target_dir)
        .status()
        .context("cannot run cargo (install Rust: https://rustup.rs)")?;
    if !status.success() {
        return Err(BadInput(format!("cargo build failed ({status})")).into());
    }
    let artifact = target_dir
        .join(RUST_TARGET)
        .join(profile)
        .join(format!("{}.wasm", name.replace('-', "_")));
    std::fs::copy(&artifact, out).with_context(|| {
        format!(
            "cannot copy {} to {} (is the crate a cdylib?)",
            artifact.display(),
            out.display()
        )
    })?;
    Ok(())
}

/// `rustup target add wasm32-wasip2` when the active toolchain lacks it.
fn ensure_rust_target() -> anyhow::Result<()> {
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .context("cannot run rustc (install Rust: https://rustup.rs)")?;
    let sysroot = String::from_utf8_lossy(&sysroot.stdout).trim().to_owned();
    if Path::new(&sysroot)
        .join("lib/rustlib")
        .join(RUST_TARGET)
        .is_dir()
    {
        return Ok(());
    }
    println!("adding the {RUST_TARGET} target (rustup target add {RUST_TARGET})");
    let status = Command::new("rustup")
        .args(["target", "add", RUST_TARGET])
        .status()
        .context(
            "cannot run rustup to add the wasm32-wasip2 target (install rustup, or add the target)",
        )?;
    anyhow::ensure!(
        status.success(),
        "rustup target add {RUST_TARGET} failed ({status})"
    );
    Ok(())
}
