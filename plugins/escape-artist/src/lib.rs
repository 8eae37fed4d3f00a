//! Tries to reach outside the sandbox (files, directories, environment,
//! arguments) and rejects with `escaped: ...` if anything worked.

use std::{env, fs, io};

use streamhost_sdk::{HandlerError, Message, handler};

/// What one probe saw when it succeeded, or why it was refused.
type Outcome = Result<String, String>;

#[handler]
fn handle(_msg: Message) -> Result<(), HandlerError> {
    let mut escaped = Vec::new();
    for (what, outcome) in probes() {
        match outcome {
            Ok(seen) => {
                streamhost_sdk::warn!("escape-artist: {what}: SUCCEEDED: {seen}");
                escaped.push(format!("{what} ({seen})"));
            }
            Err(why) => streamhost_sdk::info!("escape-artist: {what}: refused: {why}"),
        }
    }
    if escaped.is_empty() {
        Ok(())
    } else {
        Err(HandlerError::reject(format!(
            "escaped: {}",
            escaped.join(", ")
        )))
    }
}

fn probes() -> [(&'static str, Outcome); 7] {
    [
        (
            "read /etc/passwd",
            io_probe(fs::read("/etc/passwd"), |b| format!("{} bytes", b.len())),
        ),
        ("list /", io_probe(fs::read_dir("/"), count_entries)),
        ("list .", io_probe(fs::read_dir("."), count_entries)),
        (
            "open /tmp/escape-artist.txt for writing",
            io_probe(fs::File::create("/tmp/escape-artist.txt"), |_| {
                "opened".to_owned()
            }),
        ),
        (
            "env var PATH",
            env::var("PATH")
                .map(|path| format!("PATH={path}"))
                .map_err(|e| e.to_string()),
        ),
        ("env vars", non_empty(env::vars().count(), "variables")),
        ("args", non_empty(env::args().count(), "arguments")),
    ]
}

fn io_probe<T>(result: io::Result<T>, seen: impl FnOnce(T) -> String) -> Outcome {
    result.map(seen).map_err(|e| e.to_string())
}

fn count_entries(dir: fs::ReadDir) -> String {
    format!("{} entries", dir.count())
}

/// Seeing any variables or arguments at all counts as a leak.
fn non_empty(count: usize, what: &str) -> Outcome {
    if count == 0 {
        Err(format!("no {what}"))
    } else {
        Ok(format!("{count} {what}"))
    }
}
