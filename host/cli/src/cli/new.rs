//! `streamhost new NAME --lang rust|python|js`: writes a ready project from
//! the templates in `host/cli/templates/<lang>/`: handler, build file, a
//! config whose `[plugin.allow]` matches the handler, fixtures and a test.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};

use super::BadInput;

/// A handler language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Lang {
    /// Rust with `streamhost-sdk` (cargo, target wasm32-wasip2).
    Rust,
    /// Python with `guest-sdk/python` (componentize-py).
    Python,
    /// JavaScript with `guest-sdk/js` (componentize-js).
    Js,
}

/// Arguments of `streamhost new`.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// The plugin name: lower-case letters, digits and `-`, starting with a letter.
    pub name: String,
    /// The handler's language.
    #[arg(long, value_enum)]
    pub lang: Lang,
    /// Where to create the project (default: `./NAME`).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// `(path in the project, template text)` per language.
fn files(lang: Lang) -> &'static [(&'static str, &'static str)] {
    match lang {
        Lang::Rust => &[
            (
                "Cargo.toml",
                include_str!("../../templates/rust/Cargo.toml"),
            ),
            (
                "src/lib.rs",
                include_str!("../../templates/rust/src/lib.rs"),
            ),
        ],
        Lang::Python => &[
            (
                "handler.py",
                include_str!("../../templates/python/handler.py"),
            ),
            (
                "test_handler.py",
                include_str!("../../templates/python/test_handler.py"),
            ),
        ],
        Lang::Js => &[
            ("handler.js", include_str!("../../templates/js/handler.js")),
            (
                "handler.test.js",
                include_str!("../../templates/js/handler.test.js"),
            ),
            (
                "package.json",
                include_str!("../../templates/js/package.json"),
            ),
        ],
    }
}

const FIXTURES: &str = include_str!("../../templates/fixtures.jsonl");

/// The repository holding `guest-sdk/` and `wit/`: `$STREAMHOST_SDK_ROOT`,
/// else the one this binary was built from.
pub fn sdk_root() -> PathBuf {
    std::env::var_os("STREAMHOST_SDK_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
}

/// Writes the project; refuses a name that is not a plugin name or a
/// directory that exists and is not empty.
pub fn new(args: NewArgs) -> anyhow::Result<ExitCode> {
    check_name(&args.name)?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    if dir.exists()
        && std::fs::read_dir(&dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        return Err(BadInput(format!(
            "{} exists and is not empty; choose another NAME or --dir",
            dir.display()
        ))
        .into());
    }
    let root = sdk_root();
    let root = root.canonicalize().unwrap_or(root);
    let literal = |p: PathBuf| format!("{:?}", p.display().to_string());
    let vars = [
        ("{{name}}", args.name.clone()),
        ("{{python_sdk}}", literal(root.join("guest-sdk/python"))),
        ("{{rust_sdk}}", literal(root.join("guest-sdk"))),
        (
            "{{js_sdk}}",
            root.join("guest-sdk/js").display().to_string(),
        ),
    ];
    let render = |text: &str| {
        vars.iter()
            .fold(text.to_owned(), |t, (k, v)| t.replace(k, v))
    };
    for (path, text) in files(args.lang) {
        write(&dir.join(path), &render(text))?;
    }
    write(&dir.join("fixtures.jsonl"), FIXTURES)?;
    write(&dir.join("streamhost.toml"), &config(&args.name))?;
    write(
        &dir.join(".gitignore"),
        "*.wasm\n/target\nnode_modules\n__pycache__\n",
    )?;
    if args.lang == Lang::Js {
        link_js_sdk(&dir, &root.join("guest-sdk/js"))?;
    }
    println!(
        "created {} ({:?} handler {:?})",
        dir.display(),
        args.lang,
        args.name
    );
    println!(
        "next: cd {} && streamhost build && streamhost invoke {}.wasm --fixtures fixtures.jsonl",
        dir.display(),
        args.name
    );
    Ok(ExitCode::SUCCESS)
}

/// Plugin names become consumer group names, key parts and file names.
fn check_name(name: &str) -> Result<(), BadInput> {
    let ok = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(BadInput(format!(
            "NAME {name:?}: use 1-64 lower-case letters, digits and `-`, starting with a letter"
        )))
    }
}

/// The config: one plugin on stream `NAME.orders`, its component beside the
/// config, and `[plugin.allow]` naming exactly what the template emits.
fn config(name: &str) -> String {
    let allow = format!(
        "# Every stream the handler emits to must be listed (or its emits are refused).\n[plugin.allow]\nemit = [\"{name}.valid\"]\n"
    );
    format!(
        "# streamhost config for {name} (`streamhost run`, `streamhost dev`).\n\
         [redis]\nurl = \"redis://127.0.0.1:6379\"\n\n\
         [[plugin]]\nname = \"{name}\"\n\
         # Written by `streamhost build`.\ncomponent = \"{name}.wasm\"\n\
         stream = \"{name}.orders\"\n\n{allow}"
    )
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// `node_modules/@streamhost/sdk` -> the SDK, what `npm install` of the
/// `file:` dependency would make, without needing the network.
fn link_js_sdk(dir: &Path, sdk: &Path) -> anyhow::Result<()> {
    let scope = dir.join("node_modules/@streamhost");
    std::fs::create_dir_all(&scope)
        .with_context(|| format!("cannot create {}", scope.display()))?;
    std::os::unix::fs::symlink(sdk, scope.join("sdk"))
        .with_context(|| format!("cannot link {} to the SDK", scope.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_configs_parse_with_matching_allow_lists() {
        assert!(check_name("my-plugin2").is_ok());
        for bad in ["", "My", "2x", "a b", "a_b", "a/b"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        // Every template emits to NAME.valid, and the config allows exactly that.
        let config = streamhost::Config::parse(&config("x")).unwrap();
        assert_eq!(config.plugins[0].allow.emit, ["x.valid"]);
    }
}
