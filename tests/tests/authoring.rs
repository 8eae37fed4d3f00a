//! The authoring flow, per language, as a newcomer runs it: `streamhost new`,
//! the project's own unit test, `streamhost build`, `streamhost invoke` on
//! its fixtures, and `streamhost dev --once` on a private redis-server. A
//! template that rots fails here. A missing toolchain fails (with the build
//! step's install advice), it does not skip.

use std::path::Path;
use std::process::{Command, Output};

use streamhost_tests::streamhost_bin;

fn run(what: &str, cmd: &mut Command) -> String {
    let out: Output = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(
        out.status.success(),
        "{what} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    stdout
}

/// Extra environment of every command a test runs.
type Env = &'static [(&'static str, fn() -> String)];

fn streamhost(dir: &Path, env: Env) -> Command {
    let mut cmd = Command::new(streamhost_bin());
    cmd.current_dir(dir).env("NO_COLOR", "1");
    for (k, v) in env {
        cmd.env(k, v());
    }
    cmd
}

/// The checks every language's template must pass; `unit_test` runs the
/// project's own test in its directory.
fn new_build_invoke(lang: &str, env: Env, unit_test: fn(&Path) -> Command) {
    let tmp = tempfile::tempdir().unwrap();
    let name = format!("my-{lang}");
    run(
        "streamhost new",
        streamhost(tmp.path(), env).args(["new", &name, "--lang", lang]),
    );
    let project = tmp.path().join(&name);
    for file in ["streamhost.toml", "fixtures.jsonl", ".gitignore"] {
        assert!(project.join(file).is_file(), "{lang}: {file} written");
    }
    // `new` refuses to overwrite.
    let again = streamhost(tmp.path(), env)
        .args(["new", &name, "--lang", lang])
        .output()
        .unwrap();
    assert_eq!(
        again.status.code(),
        Some(2),
        "{lang}: new into a non-empty dir"
    );

    let mut test = unit_test(&project);
    for (k, v) in env {
        test.env(k, v());
    }
    run(&format!("{lang} unit test"), &mut test);

    let built = run("streamhost build", streamhost(&project, env).arg("build"));
    assert!(built.contains("1 plugin(s) valid"), "{lang}: {built}");
    let component = project.join(format!("{name}.wasm"));
    assert!(component.is_file(), "{lang}: component written");

    let invoked = run(
        "streamhost invoke",
        streamhost(&project, env).args([
            "invoke",
            component.to_str().unwrap(),
            "--fixtures",
            "fixtures.jsonl",
            "--config",
            "streamhost.toml",
        ]),
    );
    let outcomes: Vec<&str> = invoked.lines().filter(|l| l.starts_with('#')).collect();
    assert_eq!(
        outcomes.len(),
        4,
        "{lang}: one report per fixture:\n{invoked}"
    );
    assert!(
        outcomes[0].ends_with(": ok") && outcomes[1].ends_with(": ok"),
        "{invoked}"
    );
    assert!(
        outcomes[2].contains("reject: data must be a JSON object with an integer order_id"),
        "{invoked}"
    );
    assert!(
        outcomes[3].contains("reject: missing field `data`"),
        "{invoked}"
    );
    assert!(
        invoked.contains("log info: order 1 is valid"),
        "{lang}: logs shown:\n{invoked}"
    );
    assert!(invoked.contains("fuel="), "{invoked}");
    // Every template emits; the config allows exactly that.
    let emit = format!("effect emit {name}.valid {{order_id=1}}");
    assert!(invoked.contains(&emit), "{lang}: {emit:?} in\n{invoked}");

    // `--field` builds one message from the command line.
    let one = run(
        "streamhost invoke --field",
        streamhost(&project, env).args([
            "invoke",
            component.to_str().unwrap(),
            "--field",
            "data={\"order_id\": 9}",
        ]),
    );
    assert!(one.contains("#1 --field: ok"), "{lang}: {one}");

    // dev: a private redis-server, the fixtures fed, each outcome printed.
    let dev = run(
        "streamhost dev --once",
        streamhost(&project, env).args(["dev", "--once"]),
    );
    let lines: Vec<&str> = dev.lines().filter(|l| l.contains(" attempt 1: ")).collect();
    assert_eq!(lines.len(), 4, "{lang}: dev printed each outcome:\n{dev}");
    assert_eq!(
        lines.iter().filter(|l| l.ends_with(": ok")).count(),
        2,
        "{dev}"
    );
}

#[test]
fn python_new_build_invoke_dev() {
    new_build_invoke("python", &[], |dir| {
        let mut cmd = Command::new("python3");
        cmd.current_dir(dir).args(["-m", "unittest", "-q"]);
        cmd
    });
}

#[test]
fn js_new_build_invoke_dev() {
    new_build_invoke("js", &[], |dir| {
        let mut cmd = Command::new("node");
        cmd.current_dir(dir).arg("--test");
        cmd
    });
}

#[test]
fn rust_new_build_invoke_dev() {
    // One target dir across runs, so a warm run does not rebuild the SDK.
    fn target() -> String {
        format!("{}/authoring-rust", env!("CARGO_TARGET_TMPDIR"))
    }
    new_build_invoke("rust", &[("CARGO_TARGET_DIR", target)], |dir| {
        let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        cmd.current_dir(dir).args(["test", "--quiet"]);
        cmd
    });
}
